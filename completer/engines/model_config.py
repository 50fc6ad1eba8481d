"""Typed model configuration, read from and written to Hugging Face `config.json`.

One dataclass covers the Llama family (Llama, CodeLlama, DeepSeek-Coder v1), the Llama-shaped Qwen2
(qkv bias, GQA, tied embeddings) and StarCoder2 (LayerNorm with bias, a plain GELU MLP, biases on
every projection). Anything we cannot run correctly is refused here, loudly, rather than producing
wrong logits later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Starcoder2ForCausalLM": "starcoder2",
}
_ACTIVATIONS = {"silu", "gelu_pytorch_tanh", "gelu"}


class UnsupportedModelError(ValueError):
    """The model directory describes something this engine cannot run."""


def read_hf_config(model_dir: str | Path) -> dict:
    """The raw config.json of a Hugging Face model directory; every backend reads it through here."""
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedModelError(f"{path} not found: not a Hugging Face model directory") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedModelError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UnsupportedModelError(f"{path}: expected a JSON object")
    return raw


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    head_dim: int = 0  # 0 -> hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2 has bias on q/k/v (not on o)
    architecture: str = "LlamaForCausalLM"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    norm: str = "rms"  # "rms" (RMSNorm) or "layer" (LayerNorm with bias, StarCoder2)
    gated_mlp: bool = True  # SwiGLU gate/up/down, or c_fc -> activation -> c_proj (StarCoder2)
    hidden_act: str = "silu"
    proj_bias: bool = False  # bias on o_proj and the MLP projections (StarCoder2)
    sliding_window: int | None = None

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.num_attention_heads % self.num_key_value_heads:
            raise UnsupportedModelError("num_attention_heads must be a multiple of num_key_value_heads")

    @property
    def family(self) -> str:
        return SUPPORTED_ARCHITECTURES[self.architecture]

    @classmethod
    def from_hf_dict(cls, raw: dict) -> "ModelConfig":
        archs = raw.get("architectures") or ["LlamaForCausalLM"]
        arch = archs[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModelError(
                f"architecture {arch!r} is not supported by the torch engine "
                f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
        scaling = raw.get("rope_scaling")
        if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
            raise UnsupportedModelError(f"rope_scaling {scaling!r} is not supported yet")
        act = raw.get("hidden_act", "silu")
        if act not in _ACTIVATIONS:
            raise UnsupportedModelError(f"hidden_act {act!r} is not supported")
        eos = raw.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        rope_theta = raw.get("rope_theta")
        if rope_theta is None:  # transformers 5 nests it under rope_parameters
            rope_theta = (raw.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        starcoder2 = arch == "Starcoder2ForCausalLM"
        use_bias = bool(raw.get("use_bias", True)) if starcoder2 else False
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=raw["num_attention_heads"],
            num_key_value_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
            max_position_embeddings=raw.get("max_position_embeddings", 2048),
            head_dim=raw.get("head_dim") or 0,
            rms_norm_eps=raw.get("norm_epsilon", 1e-5) if starcoder2 else raw.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", starcoder2)),
            attention_bias=use_bias if starcoder2 else bool(raw.get("attention_bias", arch == "Qwen2ForCausalLM")),
            architecture=arch,
            bos_token_id=raw.get("bos_token_id"),
            eos_token_id=eos,
            norm="layer" if starcoder2 else "rms",
            gated_mlp=not starcoder2,
            hidden_act=act,
            proj_bias=use_bias,
            sliding_window=raw.get("sliding_window") if starcoder2 else None,
        )

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> "ModelConfig":
        return cls.from_hf_dict(read_hf_config(model_dir))

    def to_hf_dict(self) -> dict:
        """config.json as transformers writes it for each supported architecture."""
        d = asdict(self)
        arch = d.pop("architecture")
        for internal in ("norm", "gated_mlp", "proj_bias"):
            d.pop(internal)
        d.update(
            architectures=[arch],
            model_type=SUPPORTED_ARCHITECTURES[arch],
            rope_scaling=None,
            torch_dtype="float32",
            use_cache=True,
        )
        if arch == "LlamaForCausalLM":
            d.update(mlp_bias=False, attention_dropout=0.0, pretraining_tp=1)
            d.pop("sliding_window")
        elif arch == "Starcoder2ForCausalLM":
            d.update(use_bias=self.proj_bias, norm_epsilon=d.pop("rms_norm_eps"), residual_dropout=0.0,
                     embedding_dropout=0.0, attention_dropout=0.0)
            d.pop("attention_bias")
        else:
            d.pop("sliding_window")
            d.pop("attention_bias")
            d.update(use_sliding_window=False, sliding_window=None, max_window_layers=d["num_hidden_layers"])
        return d
