"""Llama-architecture decoder, gpt-fast style; also Qwen2 (qkv bias, GQA, tied embeddings) and
StarCoder2 (LayerNorm, plain GELU MLP, biases everywhere), which differ only in those parts.

Module and parameter names mirror transformers' LlamaForCausalLM exactly, so a Hugging Face
`model.safetensors` loads with a plain `load_state_dict` and our checkpoints load in transformers.

Two ways to call `forward`:
- training / scoring: `forward(idx)` with no cache, causal attention over idx.
- serving: after `setup_cache(max_seq)`, `forward(idx, start_pos)` writes K/V for positions
  [start_pos, start_pos + T) into the preallocated cache and attends to [0, start_pos + T).
  Prefill, one decode step and speculative verification are the same call with different ranges;
  rolling back is just calling again with an earlier start_pos (stale entries beyond the new end are
  never read).
- CUDA graphs: `forward_static(idx, positions)` is the same serving call with every shape fixed for
  a given T: K/V are written at the position tensor and attention covers the whole cache under a
  mask, so one captured graph serves every position.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from completer.engines.model_config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op: this runs twice per layer per decode step
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # Normalise in fp32 like transformers, then cast back: bf16 variance is too coarse.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class KVCache(nn.Module):
    """Preallocated keys/values of one layer. k, v: [B, n_kv_heads, max_seq, head_dim]."""

    def __init__(self, batch: int, max_seq: int, n_kv_heads: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, start: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # k, v: [B, n_kv, T, hd] -> views of the cache over [0, start + T)
        if isinstance(start, torch.Tensor):  # positions [T] (static shapes): the whole cache
            self.k.index_copy_(2, start, k)
            self.v.index_copy_(2, start, v)
            return self.k, self.v
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(cfg: ModelConfig, max_seq: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [max_seq, head_dim] in fp32, transformers' (non-interleaved) layout."""
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32, device=device) / cfg.head_dim))
    freqs = torch.outer(torch.arange(max_seq, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rerotate_keys(k: torch.Tensor, cfg: ModelConfig, delta: int) -> torch.Tensor:
    """Keys cached at position p, as if computed at p + delta: RoPE rotations compose, so rotating
    by delta's angle moves them. k: [..., head_dim] (any leading shape)."""
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32, device=k.device) / cfg.head_dim))
    angles = torch.cat((inv_freq, inv_freq)) * delta
    cos, sin = angles.cos(), angles.sin()
    kf = k.float()
    return (kf * cos + rotate_half(kf) * sin).to(k.dtype)


class InferenceLinear(nn.Module):
    """Serving-only projection (weights as buffers, no autograd).

    Calls with few tokens (decode, draft verification: T <= small_max_t) can use a low-precision copy
    of the weight. On CPUs without bf16 matrix units decode is bound by memory bandwidth, so bf16
    weights decode faster, while fp32 keeps prefill (compute-bound) fast. Both copies stay resident.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, small_dtype=None, small_max_t=4):
        super().__init__()
        self.register_buffer("weight", weight.detach(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach(), persistent=False)
        small = None if small_dtype is None or small_dtype == weight.dtype else weight.detach().to(small_dtype)
        self.register_buffer("small_weight", small, persistent=False)
        self.register_buffer("small_bias", None if small is None or bias is None else bias.detach().to(small_dtype),
                             persistent=False)
        self.small_max_t = small_max_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.small_weight is not None and x.shape[-2] <= self.small_max_t:
            return F.linear(x.to(self.small_weight.dtype), self.small_weight, self.small_bias).to(x.dtype)
        return F.linear(x, self.weight, self.bias)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.hd, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.hd, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.hd, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.hd, cfg.hidden_size, bias=cfg.proj_bias)
        self.kv_cache: KVCache | None = None
        self.qkv: InferenceLinear | None = None  # set by Transformer.prepare_for_inference

    def fuse(self, small_dtype, small_max_t: int) -> None:
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        self.qkv = InferenceLinear(weight, bias, small_dtype, small_max_t)
        self.o_proj = InferenceLinear(self.o_proj.weight, self.o_proj.bias, small_dtype, small_max_t)
        del self.q_proj, self.k_proj, self.v_proj

    def forward(self, x, cos, sin, start_pos: int | torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        # x: [B, T, D]; cos, sin: [T, hd] for the positions of x
        B, T, _ = x.shape
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        if self.qkv is not None:  # serving: one projection, and RoPE on q and k heads together
            qkv = self.qkv(x).view(B, T, self.n_heads + 2 * self.n_kv, self.hd).transpose(1, 2)
            qk, v = qkv[:, : self.n_heads + self.n_kv], qkv[:, self.n_heads + self.n_kv:]
            qk = qk * cos + rotate_half(qk) * sin
            q, k = qk[:, : self.n_heads], qk[:, self.n_heads:]
        else:
            q = self.q_proj(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)
            k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
            v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        if start_pos is not None:
            k, v = self.kv_cache.update(start_pos, k, v)
        gqa = self.n_kv != self.n_heads
        if start_pos is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.gate_up: InferenceLinear | None = None  # set by Transformer.prepare_for_inference

    def fuse(self, small_dtype, small_max_t: int) -> None:
        weight = torch.cat([self.gate_proj.weight, self.up_proj.weight])
        self.gate_up = InferenceLinear(weight, None, small_dtype, small_max_t)
        self.down_proj = InferenceLinear(self.down_proj.weight, None, small_dtype, small_max_t)
        del self.gate_proj, self.up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class PlainMLP(nn.Module):
    """StarCoder2's MLP: c_fc -> GELU (tanh approximation) -> c_proj, with biases."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.proj_bias)
        self.c_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.proj_bias)
        self.approximate = "none" if cfg.hidden_act == "gelu" else "tanh"

    def fuse(self, small_dtype, small_max_t: int) -> None:
        self.c_fc = InferenceLinear(self.c_fc.weight, self.c_fc.bias, small_dtype, small_max_t)
        self.c_proj = InferenceLinear(self.c_proj.weight, self.c_proj.bias, small_dtype, small_max_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate))


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "layer":
        return nn.LayerNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
    return RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg) if cfg.gated_mlp else PlainMLP(cfg)
        self.input_layernorm = make_norm(cfg)
        self.post_attention_layernorm = make_norm(cfg)

    def forward(self, x, cos, sin, start_pos, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, start_pos, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """transformers' `model.` prefix: embeddings, layers, final norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = make_norm(cfg)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.max_seq = 0
        cos, sin = rope_tables(cfg, cfg.max_position_embeddings)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def setup_cache(self, max_seq: int, batch: int = 1) -> None:
        """Allocate K/V for `max_seq` positions once; serving never allocates per token."""
        cfg = self.config
        if max_seq > cfg.max_position_embeddings:
            raise ValueError(f"max_seq {max_seq} exceeds max_position_embeddings {cfg.max_position_embeddings}")
        p = self.lm_head.weight
        for layer in self.model.layers:
            layer.self_attn.kv_cache = KVCache(batch, max_seq, cfg.num_key_value_heads, cfg.head_dim, p.dtype, p.device)
        self.max_seq = max_seq
        self.register_buffer("_positions", torch.arange(max_seq, device=p.device), persistent=False)

    def kv_caches(self) -> list[KVCache]:
        """Each layer's cache, in layer order: what the engine copies K/V in and out of. setup_cache
        makes new ones, so a caller holding this list calls it again after that."""
        return [layer.self_attn.kv_cache for layer in self.model.layers]

    @torch.no_grad()
    def prepare_for_inference(self, small_dtype: torch.dtype | None = None, small_max_t: int = 4) -> None:
        """Serving only, one way: fuse q/k/v and gate/up projections (fewer, larger matrix products per
        step) and optionally keep `small_dtype` weight copies for calls of <= small_max_t tokens.
        The model can no longer be trained or saved in Hugging Face layout afterwards."""
        for layer in self.model.layers:
            layer.self_attn.fuse(small_dtype, small_max_t)
            layer.mlp.fuse(small_dtype, small_max_t)
        self.lm_head = InferenceLinear(self.lm_head.weight, None, small_dtype, small_max_t)

    def forward(self, idx: torch.Tensor, start_pos: int | None = None, num_logits: int | None = None) -> torch.Tensor:
        """idx: [B, T] token ids -> logits [B, num_logits or T, vocab] (fp32).

        start_pos=None: no cache, causal over idx (training). Otherwise positions start_pos.. in the cache.
        num_logits: compute the LM head only for the last n positions (prefill needs 1).
        """
        B, T = idx.shape
        if start_pos is None:
            cos, sin, mask = self.rope_cos[:T], self.rope_sin[:T], None
        else:
            end = start_pos + T
            if end > self.max_seq:
                raise ValueError(f"sequence end {end} exceeds the cache ({self.max_seq}); call setup_cache")
            cos, sin = self.rope_cos[start_pos:end], self.rope_sin[start_pos:end]
            # Query at position p sees keys 0..p. One query sees everything cached: no mask needed.
            mask = None if T == 1 else self._positions[:end][None, :] <= self._positions[start_pos:end][:, None]
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            x = layer(x, cos, sin, start_pos, mask)
        if num_logits is not None:
            x = x[:, -num_logits:]
        return self.lm_head(self.model.norm(x)).float()

    def forward_static(self, idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """idx: [B, T]; positions: [T] cache positions of idx (long, on the model's device) -> logits
        [B, T, vocab] (fp32), equal to forward(idx, positions[0]) up to rounding.

        No shape depends on the position: K/V go in with index_copy_, and attention runs over all
        max_seq cache entries with a mask (entries past a query's position, stale or never written,
        get no weight). What CUDA graph capture needs; on a CPU the full-length attention costs more
        than the exact-length one forward uses.
        """
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        mask = self._positions[None, :] <= positions[:, None]  # [T, max_seq]
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            x = layer(x, cos, sin, positions, mask)
        return self.lm_head(self.model.norm(x)).float()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(model: Transformer, seed: int, std: float = 0.02) -> None:
    """Deterministic GPT-2 style init; residual projections scaled down by depth."""
    gen = torch.Generator().manual_seed(seed)
    depth_scale = 1.0 / math.sqrt(2 * model.config.num_hidden_layers)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            nn.init.ones_(p)
        elif name.endswith(".bias"):
            nn.init.zeros_(p)
        else:
            s = std * depth_scale if name.endswith(("o_proj.weight", "down_proj.weight")) else std
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) * s)


@contextmanager
def _skip_default_init():
    """Build modules without their random init: the checkpoint overwrites every weight anyway.
    (Building on the meta device instead costs seconds: it imports torch._dynamo.)"""
    saved = nn.Linear.reset_parameters, nn.Embedding.reset_parameters, nn.LayerNorm.reset_parameters
    nn.Linear.reset_parameters = nn.Embedding.reset_parameters = nn.LayerNorm.reset_parameters = lambda self: None
    try:
        yield
    finally:
        nn.Linear.reset_parameters, nn.Embedding.reset_parameters, nn.LayerNorm.reset_parameters = saved


def load_model(model_dir: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Transformer:
    """Load a Hugging Face checkpoint directory (config.json + model.safetensors)."""
    from safetensors.torch import load_file

    from completer.engines.model_config import UnsupportedModelError

    model_dir = Path(model_dir)
    cfg = ModelConfig.from_dir(model_dir)
    files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise UnsupportedModelError(f"no model*.safetensors in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    with _skip_default_init():
        model = Transformer(cfg)
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    elif "lm_head.weight" not in state:
        raise UnsupportedModelError(f"{model_dir}: lm_head.weight missing and embeddings are not tied")
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
    unexpected = [u for u in unexpected if not u.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise UnsupportedModelError(f"{model_dir}: weights do not match config (missing {missing[:4]}, unexpected {unexpected[:4]})")
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.to(device=device, dtype=dtype).eval()


def save_model(model: Transformer, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> None:
    """Write config.json + model.safetensors in Hugging Face layout."""
    import json

    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    hf = cfg.to_hf_dict()
    hf["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out_dir / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
