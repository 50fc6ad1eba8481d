"""Train an embedded completion model on FIM samples in the serving layout (CPU or CUDA).

    # the multi-language corpus: token shards + tokenizer under ROOT (engine_builds/corpus.py builds
    # data/corpus; engine_builds/gpu_unpack.py rebuilds one from data/gpu_pack)
    python -m engine_builds.train --preset s --tokens data/corpus --out runs/s --minutes 60 --export runs/s/hf
    python -m engine_builds.train --preset s --tokens data/corpus --out runs/s --minutes 60 --resume
    # the standard-library corpus of prepare_data.py (text; samples built on the fly)
    python -m engine_builds.train --preset s --data data/stdlib --out runs/s --steps 3000
    # the predicted throughput of each preset on one H200, bf16 (prints a table, trains nothing)
    python -m engine_builds.train --predict --presets draft,s,m,l --minutes 6

Data. With --tokens, samples are cut from the memory-mapped token shards in token space
(token_samples.py: the same layout, mix and loss classes as fim_samples.py, exact, millions of tokens
per second per core) by DataLoader workers that each build whole batches. With --data, the old text
path: fim_samples.py tokenises samples on the fly (one file per worker; slow, but it can cut
syntax-aware windows).

Schedule. Linear warm-up over --warmup-steps, then cosine decay to --min-lr-ratio of the peak, either
by steps (--steps N) or by the clock (--minutes M): the cosine ends exactly when M minutes of training
have run, counted from the end of the first --clock-after steps, so start-up (imports, DataLoader
workers, CUDA and cuBLAS initialisation, a compile) never eats the budget. --end-by (seconds since the
epoch) caps the clock at a deadline: the cosine is shortened to end there. The clock's progress is
checkpointed: --resume continues the same schedule (a new --minutes sets a new total).
--stop-minutes M restarts a resumed run with a fresh clock-annealed cosine from half the peak.

Distillation (a draft for speculation): --distill-from TEACHER adds the KL divergence from the teacher's
next-token distribution over its --distill-top-k tokens to the loss, weighted --distill-weight against
the data's cross entropy, on the same positions and weights. A draft is worth what share of the
target's greedy tokens it guesses, and the teacher's choices teach that more directly than the data's
one token. Evaluation then also reports, per set, how often the model's top token is the teacher's at
target positions (`agree`: the acceptance rate of greedy draft verification, teacher-forced on the data).

Evaluation: held-out `val` rows (per language with --tokens) every --eval-every steps and/or
--eval-seconds seconds and at the end; the checkpoint with the lowest mean target-token loss is the
one exported (Hugging Face directory: config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, generation_config.json, train_log.json). bf16 autocast on CUDA; fp32 on CPU
unless --bf16. --compile compiles the model (off by default: its compile time against its gain has
not been measured on a GPU; a CPU cannot tell).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from completer.completion.fim import detect_template
from completer.engines.model_config import ModelConfig
from completer.engines.torch.model import Transformer, init_weights, load_model
from completer.tokenizer import Tokenizer
from engine_builds.fim_samples import CONTEXT, TARGET, SampleBuilder, SampleMix

SHAPES = {  # hidden, layers, heads, kv heads, mlp; head size 32 except xl (64)
    "tiny": (32, 1, 2, 1, 64),  # tests and dry runs only
    "draft": (128, 2, 4, 2, 384),  # 1.44 M parameters with 8,192 tokens
    "s": (192, 4, 6, 2, 512),  # 3.15 M (the shipped target's shape)
    "m": (256, 6, 8, 4, 704),  # 6.5 M
    "l": (384, 8, 12, 4, 1024),  # 15.7 M
    "xl": (512, 8, 8, 4, 1408),  # 27.8 M
}
ALIASES = {"small": "s", "target": "m", "large": "xl"}  # the presets' earlier names
H200_BF16_TFLOPS = 790.0  # dense bf16 matrix products measured on one of the lent H200s (device/KINDS.md)


def preset(name: str, vocab_size: int) -> ModelConfig:
    d, n_layers, heads, kv, ff = SHAPES[ALIASES.get(name, name)]
    return ModelConfig(vocab_size=vocab_size, hidden_size=d, intermediate_size=ff, num_hidden_layers=n_layers,
                       num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=2048,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=None,
                       eos_token_id=0)


@dataclass
class TrainConfig:
    preset: str = "m"
    seq_len: int = 2048
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    context_weight: float = 0.25  # loss weight of prefix/suffix tokens relative to targets
    steps: int = 0  # a step-count schedule; 0: by the clock (--minutes)
    minutes: float = 0.0  # the clock schedule's budget, from the end of the first clock_after steps
    clock_after: int = 5  # steps before the clock starts (start-up is not training time)
    end_by: float = 0.0  # seconds since the epoch: the clock schedule ends by then at the latest
    stop_minutes: float = 0.0  # restart a resumed run: a fresh cosine from lr/2 over this many minutes
    eval_every: int = 250  # steps; 0: only by eval_seconds and at the end
    eval_seconds: float = 0.0
    eval_rows: int = 48  # held-out rows (per language with --tokens)
    log_every: int = 50
    log_seconds: float = 0.0  # at most one progress line per this many seconds
    ckpt_minutes: float = 5.0  # 0: only at the end
    seed: int = 1234
    workers: int = 2
    bf16: bool = False
    compile: bool = False
    syntax_windows: float = 0.5  # text path only: FIM windows cut at statement boundaries, as serving cuts them
    languages: str = ""  # --tokens: train on these languages only (comma-separated); all by default
    distill_weight: float = 0.5  # with --distill-from: the KL term's share of the loss (0..1)
    distill_top_k: int = 32  # the teacher's top tokens the KL term compares


# ---- data ------------------------------------------------------------------------------------------

def load_corpus(data_dir: Path) -> list[dict]:
    with gzip.open(data_dir / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class Rows(IterableDataset):
    """Text path: endless packed rows from one split; each worker draws from its own seeded stream."""

    def __init__(self, data_dir: Path, split: str, seq_len: int, seed: int, syntax_windows: float = 0.0):
        self.data_dir, self.split, self.seq_len, self.seed = data_dir, split, seq_len, seed
        self.syntax_windows = syntax_windows

    def builder(self) -> SampleBuilder:
        tok = Tokenizer(self.data_dir / "tokenizer")
        files = [f for f in load_corpus(self.data_dir) if f["split"] == self.split]
        return SampleBuilder(tok, detect_template(tok), files, SampleMix(syntax=self.syntax_windows))

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 1000 + wid)
        b = self.builder()
        while True:
            ids, mask = b.row(rng, self.seq_len + 1)
            yield torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.uint8)


class TokenBatches(IterableDataset):
    """Token path: endless whole batches [batch, seq_len + 1] cut from the token shards."""

    def __init__(self, root: Path, split: str, batch: int, seq_len: int, seed: int,
                 languages: list[str] | None = None, mix: SampleMix | None = None):
        self.root, self.split, self.batch, self.seq_len, self.seed = root, split, batch, seq_len, seed
        self.languages, self.mix = languages, mix or SampleMix()

    def builder(self):
        from engine_builds.token_samples import TokenCorpus, TokenSampleBuilder

        tok = Tokenizer(self.root / "tokenizer")
        return TokenSampleBuilder(tok, detect_template(tok), TokenCorpus(self.root / "tokens", self.split,
                                                                         self.languages), self.mix)

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 1000 + wid)
        b = self.builder()
        while True:
            ids = np.empty((self.batch, self.seq_len + 1), dtype=np.int32)
            classes = np.empty((self.batch, self.seq_len + 1), dtype=np.uint8)
            for r in range(self.batch):
                ids[r], classes[r] = b.row(rng, self.seq_len + 1)
            yield torch.from_numpy(ids), torch.from_numpy(classes)


def val_sets(args, cfg: TrainConfig) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Fixed held-out batches: one set per language (token path) or one "all" set (text path)."""
    def batches(rows):
        return [(torch.stack([torch.as_tensor(r[0]) for r in rows[i:i + cfg.batch_size]]).long(),
                 torch.stack([torch.as_tensor(r[1]) for r in rows[i:i + cfg.batch_size]]))
                for i in range(0, len(rows), cfg.batch_size)]

    if args.tokens:
        from engine_builds.token_samples import TokenCorpus, TokenSampleBuilder, shard_languages

        tok = Tokenizer(args.tokens / "tokenizer")
        tpl = detect_template(tok)
        out = {}
        for lang in shard_languages(args.tokens / "tokens", "val"):
            b = TokenSampleBuilder(tok, tpl, TokenCorpus(args.tokens / "tokens", "val", [lang]))
            rng = random.Random(f"val:{lang}")
            out[lang] = batches([b.row(rng, cfg.seq_len + 1) for _ in range(cfg.eval_rows)])
        return out
    it = iter(Rows(args.data, "val", cfg.seq_len, seed=99, syntax_windows=cfg.syntax_windows))
    return {"all": batches([next(it) for _ in range(cfg.eval_rows)])}


# ---- model, loss, schedule -------------------------------------------------------------------------

def position_weights(classes, context_weight: float) -> torch.Tensor:
    """Each position's loss weight, flattened: 1 for TARGET tokens, context_weight for CONTEXT, 0 else."""
    classes = classes.reshape(-1)
    return (classes == TARGET).float() + context_weight * (classes == CONTEXT).float()


def weighted_loss(logits, targets, classes, context_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted cross entropy, and the plain mean over TARGET tokens (what we report and select on)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    w = position_weights(classes, context_weight)
    loss = (ce * w).sum() / w.sum().clamp(min=1)
    is_target = (classes.reshape(-1) == TARGET).float()
    target_loss = (ce * is_target).sum() / is_target.sum().clamp(min=1)
    return loss, target_loss


def distill_loss(logits, teacher_logits, classes, context_weight: float, top_k: int = 32) -> torch.Tensor:
    """KL(teacher || student) per position over the teacher's top_k tokens (its distribution renormalised
    there), weighted as weighted_loss weighs the cross entropy. The full-vocabulary KL made a draft's
    training step 1.7x slower on a CPU (log-softmax, exp and products over every logit, each a fresh
    gigabyte at 16 x 2048 x 8,192); the top tokens carry what a draft needs, the teacher's first choice
    and its runners-up.
    Zero only where the student's distribution is the renormalised teacher's, positive elsewhere.
    logits, teacher_logits: [B, T, V]; classes: [B, T]."""
    top, idx = teacher_logits.float().topk(min(top_k, teacher_logits.shape[-1]), -1)  # [B, T, k]
    p = top.log_softmax(-1)
    log_q = logits.gather(-1, idx).float() - torch.logsumexp(logits.float(), -1, keepdim=True)
    kl = (p.exp() * (p - log_q)).sum(-1).reshape(-1)
    w = position_weights(classes, context_weight)
    return (kl * w).sum() / w.sum().clamp(min=1)


def top1_agreement(logits, teacher_logits, classes) -> tuple[int, int]:
    """How many TARGET positions have the same top token in both, and how many there are."""
    same = (logits.argmax(-1) == teacher_logits.argmax(-1)) & (classes == TARGET)
    return int(same.sum()), int((classes == TARGET).sum())


def cosine(progress: float, floor: float) -> float:
    progress = min(1.0, max(0.0, progress))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """The step schedule: linear warm-up, then cosine to min_lr_ratio at step `total`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * cosine((step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps), cfg.min_lr_ratio)


def clock_lr(step: int, cfg: TrainConfig, progress: float, peak: float, warm: bool = True) -> float:
    """The clock schedule: linear warm-up by steps times a cosine over the clock's progress (0..1)."""
    w = min(1.0, (step + 1) / max(1, cfg.warmup_steps)) if warm else 1.0
    return peak * w * cosine(progress, cfg.min_lr_ratio * cfg.lr / peak)


@torch.no_grad()
def evaluate(model, val: dict, device, cfg: TrainConfig, autocast, teacher=None) -> tuple[dict, dict]:
    """Mean target-token loss per set (language), and with a teacher the top-1 agreement per set."""
    model.eval()
    out, agree = {}, {}
    for name, batches in val.items():
        total, n, same, count = 0.0, 0, 0, 0
        for ids, classes in batches:
            ids, classes = ids.to(device), classes.to(device)
            with autocast():
                logits = model(ids[:, :-1])
            _, target_loss = weighted_loss(logits, ids[:, 1:], classes[:, 1:], cfg.context_weight)
            total += float(target_loss)
            n += 1
            if teacher is not None:
                with autocast():
                    teacher_logits = teacher(ids[:, :-1])
                a, c = top1_agreement(logits, teacher_logits, classes[:, 1:])
                same, count = same + a, count + c
        out[name] = total / max(1, n)
        if teacher is not None:
            agree[name] = same / max(1, count)
    model.train()
    return out, agree


def export(model: Transformer, tok_dir: Path, out: Path, log: dict, dtype: torch.dtype, shard_mb: float = 0) -> None:
    """A Hugging Face directory, as completer/models/embedded. shard_mb > 0 shards the weights below
    that size (model-0000N-of-0000M.safetensors + index)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()
             if not (cfg.tie_word_embeddings and k == "lm_head.weight")}
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    shards, current, size = [], {}, 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if current and shard_mb > 0 and size + nbytes > shard_mb * 2**20:
            shards.append(current)
            current, size = {}, 0
        current[k] = v
        size += nbytes
    shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        total = sum(v.numel() * v.element_size() for v in state.values())
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    hf = cfg.to_hf_dict()
    hf["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / name, out / name)
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": cfg.eos_token_id, "pad_token_id": 4, "do_sample": False}, indent=2) + "\n")
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")


def attention_path(device: str) -> str:
    """Make sure training attention runs a fused kernel on CUDA. The model passes grouped K/V heads with
    enable_gqa; where flash attention does not take them (older PyTorch), SDPA would fall back to the
    math kernel, which keeps a batch x heads x seq x seq matrix per layer for the backward pass (tens of
    GB at 32 x 2048). Then the model module's attention gets K/V expanded to every head first
    (repeat_interleave; training only, in this process), which flash attention always takes."""
    if not device.startswith("cuda"):
        return "sdpa (cpu)"
    import types

    from torch.nn.attention import SDPBackend, sdpa_kernel

    import completer.engines.torch.model as model_module

    q = torch.randn(2, 4, 256, 32, device=device, dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(2, 2, 256, 32, device=device, dtype=torch.bfloat16, requires_grad=True)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True).sum().backward()
        return "flash attention, grouped K/V"
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0][:120]
    sdpa = F.scaled_dot_product_attention

    def expanded(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if enable_gqa and k.shape[1] != q.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], 1)
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)

    model_module.F = types.SimpleNamespace(**{**vars(F), "scaled_dot_product_attention": expanded})
    return f"K/V expanded per head (flash attention refused grouped K/V: {reason})"


# ---- predicted throughput --------------------------------------------------------------------------

def flops_per_token(cfg: ModelConfig, seq_len: int, params: int) -> float:
    """Training FLOPs per token: 6 x parameters (the tied embedding counted once, as the LM head's
    product) plus causal attention's score and value products, 6 x layers x seq_len x attention width
    (forward 2 x layers x seq_len x width on average over a causal row, backward twice that)."""
    return 6.0 * params + 6.0 * cfg.num_hidden_layers * seq_len * cfg.num_attention_heads * cfg.head_dim


def utilisation_guess(hidden: int) -> float:
    """Model FLOPs utilisation of an eager bf16 step at these widths (a guess, not a measurement):
    narrow matrix products, the fp32 cross entropy over 8,192 logits per token and the memory-bound
    norms and activations keep small models far below the matrix peak."""
    points = [(128, 0.08), (192, 0.12), (256, 0.15), (384, 0.22), (512, 0.28), (1024, 0.40)]
    if hidden <= points[0][0]:
        return points[0][1]
    for (h0, u0), (h1, u1) in itertools.pairwise(points):
        if hidden <= h1:
            return u0 + (u1 - u0) * (hidden - h0) / (h1 - h0)
    return points[-1][1]


def predict(presets: list[str], seq_len: int, minutes: float, vocab: int = 8192, train_tokens: float = 86.4e6,
            tflops: float = H200_BF16_TFLOPS) -> list[dict]:
    """Predicted tokens/s per preset alone on the GPU and when the presets share it (time-sliced, so
    each gets 1/n of it), and the tokens each sees in `minutes`."""
    rows = []
    for name in presets:
        if ALIASES.get(name, name) not in SHAPES:
            raise SystemExit(f"unknown preset {name!r} (presets: {', '.join(SHAPES)}; also {', '.join(ALIASES)})")
        cfg = preset(name, vocab)
        with torch.device("meta"):
            params = Transformer(cfg).num_params()
        f = flops_per_token(cfg, seq_len, params)
        u = utilisation_guess(cfg.hidden_size)
        alone = u * tflops * 1e12 / f
        shared = alone / len(presets)
        rows.append({"preset": name, "params": params, "mflops_per_token": round(f / 1e6, 1), "utilisation": u,
                     "tokens_per_s_alone": alone, "tokens_per_s_shared": shared,
                     "tokens": shared * minutes * 60, "epochs": shared * minutes * 60 / train_tokens})
    return rows


def print_prediction(rows: list[dict], minutes: float, seq_len: int) -> None:
    n = len(rows)
    print(f"predicted on one H200 (bf16, {H200_BF16_TFLOPS:.0f} TFLOP/s dense peak, seq {seq_len}; "
          f"{n} models time-share the GPU; utilisation is a guess):")
    print(f"{'preset':<8}{'params':>12}{'MFLOP/tok':>11}{'util':>6}{'tok/s alone':>13}{'tok/s shared':>14}"
          f"{f'tokens in {minutes:g} min':>20}{'epochs':>8}")
    for r in rows:
        print(f"{r['preset']:<8}{r['params']:>12,}{r['mflops_per_token']:>11.1f}{r['utilisation']:>6.2f}"
              f"{r['tokens_per_s_alone'] / 1e6:>11.2f} M{r['tokens_per_s_shared'] / 1e6:>12.2f} M"
              f"{r['tokens'] / 1e6:>18.0f} M{r['epochs']:>8.1f}")
    print("(epochs over the pack's 86.4 M training tokens; the run prints the measured tokens/s)", flush=True)


# ---- training --------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=Path, help="corpus root with tokens/ (token shards) and tokenizer/")
    ap.add_argument("--data", type=Path, default=Path("data/stdlib"), help="text path: prepare_data's directory")
    ap.add_argument("--out", type=Path, help="checkpoints and logs")
    ap.add_argument("--export", type=Path, help="write the best model here in Hugging Face layout")
    ap.add_argument("--export-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--shard-mb", type=float, default=0.0, help="shard exported weights below this size (0: one file)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init-from", type=Path, help="start from this model's weights (fine-tuning; shapes must match --preset)")
    ap.add_argument("--distill-from", type=Path, help="teacher model (same tokenizer): add its KL term to the loss")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--predict", action="store_true", help="print the predicted H200 throughput of --presets and exit")
    ap.add_argument("--presets", default="draft,s,m,l", help="with --predict")
    ap.add_argument("--predict-json", type=Path, help="with --predict: also write the table here")
    for f, v in asdict(TrainConfig()).items():
        kind = type(v)
        if kind is bool:
            ap.add_argument(f"--{f.replace('_', '-')}", action="store_true", default=v)
        else:
            ap.add_argument(f"--{f.replace('_', '-')}", type=kind, default=v)
    args = ap.parse_args(argv)
    if not args.predict and args.out is None:
        ap.error("--out is required")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = TrainConfig(**{f: getattr(args, f) for f in asdict(TrainConfig())})
    if args.predict:
        minutes = cfg.minutes or 6.0
        rows = predict(args.presets.split(","), cfg.seq_len, minutes)
        print_prediction(rows, minutes, cfg.seq_len)
        if args.predict_json:
            args.predict_json.parent.mkdir(parents=True, exist_ok=True)
            args.predict_json.write_text(json.dumps({"minutes": minutes, "seq_len": cfg.seq_len,
                                                     "tflops": H200_BF16_TFLOPS, "rows": rows}, indent=1) + "\n")
        return
    if not (cfg.steps or cfg.minutes or cfg.stop_minutes or args.resume):
        raise SystemExit("give a schedule: --steps N or --minutes M")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.manual_seed(cfg.seed)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tok_dir = (args.tokens if args.tokens else args.data) / "tokenizer"
    if args.tokens and not (args.tokens / "tokens").is_dir():
        raise SystemExit(f"{args.tokens}/tokens not found: build the shards (engine_builds/corpus.py shards, or "
                         "engine_builds/gpu_unpack.py from the pack)")
    tok = Tokenizer(tok_dir)
    mcfg = preset(cfg.preset, tok.vocab_size)
    model = Transformer(mcfg)
    init_weights(model, cfg.seed)
    if args.init_from and not (args.resume and (args.out / "ckpt.pt").exists()):
        start = load_model(args.init_from)
        shape = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads")
        if any(getattr(start.config, f) != getattr(mcfg, f) for f in shape):
            raise SystemExit(f"--init-from {args.init_from}: its shape {start.config} is not preset {cfg.preset!r}")
        model.load_state_dict(start.state_dict())
        print(f"starting from the weights of {args.init_from}", flush=True)
    model.to(device)
    teacher = None
    if args.distill_from:
        teacher = load_model(args.distill_from).to(device).eval().requires_grad_(False)
        if teacher.config.vocab_size != mcfg.vocab_size or \
                Tokenizer(args.distill_from).token_bytes != tok.token_bytes:
            raise SystemExit(f"--distill-from {args.distill_from}: its tokenizer is not the data's")
        if not 0 <= cfg.distill_weight <= 1:
            raise SystemExit("--distill-weight must be within 0..1")
        print(f"distilling from {args.distill_from} ({teacher.num_params():,} parameters), "
              f"KL weight {cfg.distill_weight}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                            fused=device.startswith("cuda"))
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "ckpt.pt"
    state = {"step": 0, "total_steps": cfg.steps, "best_val": float("inf"), "best_by_set": {}, "log": [],
             "seconds": 0.0, "clock_seconds": 0.0, "budget_seconds": cfg.minutes * 60, "tokens": 0,
             "peak_lr": cfg.lr, "warm": True}
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state.update(ck["state"])
        if cfg.steps:  # an explicit --steps extends (or shortens) a resumed run
            state["total_steps"] = cfg.steps
        if cfg.minutes:  # an explicit --minutes sets the clock schedule's total
            state["budget_seconds"] = cfg.minutes * 60
        print(f"resumed at step {state['step']} of {state['total_steps'] or 'the clock'} "
              f"({state['clock_seconds'] / 60:.2f} of {state['budget_seconds'] / 60:.2f} clock minutes)", flush=True)
    if cfg.stop_minutes:  # a fresh clock-annealed cosine from half the peak, no warm-up
        state.update(budget_seconds=cfg.stop_minutes * 60, clock_seconds=0.0, peak_lr=cfg.lr / 2, warm=False,
                     total_steps=0)
    fwd_model = torch.compile(model) if cfg.compile else model
    use_bf16 = device.startswith("cuda") or cfg.bf16

    def autocast():
        return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                              enabled=use_bf16)

    attention = attention_path(device)
    t_setup = time.time()
    val = val_sets(args, cfg)
    seed = cfg.seed + state["step"]  # a resumed run does not replay the samples it has seen
    pin = device.startswith("cuda")
    workers_kw = {"num_workers": cfg.workers, "pin_memory": pin, "prefetch_factor": 4 if cfg.workers else None}
    if args.tokens:
        langs = [x for x in cfg.languages.split(",") if x] or None
        loader = DataLoader(TokenBatches(args.tokens, "train", cfg.batch_size, cfg.seq_len, seed, langs),
                            batch_size=None, **workers_kw)
    else:
        loader = DataLoader(Rows(args.data, "train", cfg.seq_len, seed=seed, syntax_windows=cfg.syntax_windows),
                            batch_size=cfg.batch_size, **workers_kw)
    print(f"{cfg.preset}: {model.num_params():,} parameters on {device}{' bf16' if use_bf16 else ''}, "
          f"batch {cfg.batch_size} x {cfg.seq_len}, data {'tokens ' + str(args.tokens) if args.tokens else args.data}, "
          f"val sets {', '.join(val)} ({time.time() - t_setup:.1f}s to build); attention: {attention}", flush=True)

    best_dir = args.out / "best"
    t_start = time.time() - state["seconds"]
    t_ckpt = time.time()
    t_clock: float | None = None  # when this invocation's clock started
    clock_base = state["clock_seconds"]
    tokens_at_clock = 0
    t_log, last_eval = time.time(), time.time()
    loss_sum = torch.zeros((), device=device)
    loss_n = 0
    eval_time = 0.0  # seconds of evaluation inside the clock (not training throughput)
    steps_here = 0  # steps run by this invocation (the clock starts after cfg.clock_after of them)
    step_tokens = cfg.batch_size * cfg.seq_len

    def clock_elapsed() -> float:
        return clock_base + (time.time() - t_clock if t_clock is not None else 0.0)

    def save_ckpt():
        state["seconds"] = time.time() - t_start
        state["clock_seconds"] = clock_elapsed()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "cfg": asdict(cfg)},
                   ckpt_path.with_suffix(".tmp"))
        os.replace(ckpt_path.with_suffix(".tmp"), ckpt_path)

    def do_eval():
        nonlocal eval_time
        t0 = time.time()
        res, agree = evaluate(fwd_model, val, device, cfg, autocast, teacher)
        eval_time += time.time() - t0
        mean = sum(res.values()) / max(1, len(res))
        entry = {"step": state["step"], "val_target_loss": round(mean, 4),
                 "by_set": {k: round(v, 4) for k, v in res.items()}, "tokens": state["tokens"],
                 "minutes": round((time.time() - t_start) / 60, 2), "clock_minutes": round(clock_elapsed() / 60, 2)}
        if agree:
            entry["agree"] = round(sum(agree.values()) / len(agree), 4)
            entry["agree_by_set"] = {k: round(v, 4) for k, v in agree.items()}
        state["log"].append(entry)
        improved = mean < state["best_val"]
        if improved:
            state["best_val"], state["best_by_set"], state["best_step"] = mean, entry["by_set"], state["step"]
            best_dir.mkdir(exist_ok=True)
            torch.save(model.state_dict(), best_dir / "model.pt")
        detail = " ".join(f"{k} {v:.3f}" for k, v in res.items()) if len(res) > 1 else ""
        print(f"  eval step {state['step']}: val target loss {mean:.4f}{' (best)' if improved else ''}"
              f"{'  ' + detail if detail else ''}", flush=True)
        if agree:
            print(f"    top-1 agreement with the teacher {entry['agree']:.4f}  "
                  + " ".join(f"{k} {v:.3f}" for k, v in agree.items()), flush=True)

    model.train()
    stop_reason = "schedule"
    for ids, classes in loader:
        step = state["step"]
        if state["budget_seconds"]:
            progress = clock_elapsed() / state["budget_seconds"]
            if progress >= 1:
                break
            lr = clock_lr(step, cfg, progress, state["peak_lr"], state["warm"])
        else:
            total = state["total_steps"]
            if step >= total:
                break
            lr = lr_at(step, cfg, total)
        if cfg.end_by and time.time() >= cfg.end_by:
            stop_reason = "deadline"
            break
        for g in opt.param_groups:
            g["lr"] = lr
        ids = ids.to(device, non_blocking=True).long()
        classes = classes.to(device, non_blocking=True)
        with autocast():
            logits = fwd_model(ids[:, :-1])
        loss, target_loss = weighted_loss(logits, ids[:, 1:], classes[:, 1:], cfg.context_weight)
        if teacher is not None:
            with torch.no_grad(), autocast():
                teacher_logits = teacher(ids[:, :-1])
            kl = distill_loss(logits, teacher_logits, classes[:, 1:], cfg.context_weight, cfg.distill_top_k)
            loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * kl
            del teacher_logits
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        state["step"] = step + 1
        state["tokens"] += step_tokens
        loss_sum += target_loss.detach()
        loss_n += 1
        steps_here += 1
        if t_clock is None and steps_here >= cfg.clock_after:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t_clock = time.time()
            tokens_at_clock = state["tokens"]
            eval_time = 0.0
            if cfg.end_by and state["budget_seconds"]:
                left = cfg.end_by - t_clock
                if clock_base + left < state["budget_seconds"]:
                    print(f"  the deadline leaves {left / 60:.2f} clock minutes: the schedule ends then", flush=True)
                    state["budget_seconds"] = max(1.0, clock_base + left)
            print(f"  clock started after {state['step']} steps ({time.time() - t_start:.1f}s of start-up)"
                  + (f"; cosine over {state['budget_seconds'] / 60:.2f} min" if state["budget_seconds"] else ""),
                  flush=True)
        now = time.time()
        if state["step"] % cfg.log_every == 0 and now - t_log >= cfg.log_seconds:
            mean_loss = float(loss_sum) / max(1, loss_n)
            loss_sum.zero_()
            loss_n = 0
            span = now - t_clock - eval_time if t_clock else 0
            tps = (state["tokens"] - tokens_at_clock) / span if span > 0 else 0
            if state["budget_seconds"]:
                done = clock_elapsed() / state["budget_seconds"]
                where = f"clock {clock_elapsed() / 60:.2f}/{state['budget_seconds'] / 60:.2f} min"
            else:
                done = state["step"] / max(1, state["total_steps"])
                where = f"step {state['step']}/{state['total_steps']}"
            bar = "#" * int(30 * min(1.0, done))
            print(f"[{bar:<30}] step {state['step']} {where} target loss {mean_loss:.3f} lr {lr:.2e} "
                  f"{tps / 1000:.0f}k tok/s tokens {state['tokens'] / 1e6:.1f}M", flush=True)
            t_log = now
        if (cfg.eval_every and state["step"] % cfg.eval_every == 0) or \
                (cfg.eval_seconds and now - last_eval >= cfg.eval_seconds):
            do_eval()
            last_eval = time.time()
        if cfg.ckpt_minutes and time.time() - t_ckpt > cfg.ckpt_minutes * 60:
            save_ckpt()
            t_ckpt = time.time()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_end = time.time()
    clock_span = (t_end - t_clock - eval_time) if t_clock else 0.0
    tokens_per_s = (state["tokens"] - tokens_at_clock) / clock_span if clock_span > 0 else 0.0
    print(f"stopped at step {state['step']} ({stop_reason}): {state['tokens'] / 1e6:.1f}M tokens, "
          f"{tokens_per_s / 1000:.0f}k tok/s after warm-up", flush=True)
    do_eval()
    save_ckpt()
    if args.export:
        model.load_state_dict(torch.load(best_dir / "model.pt", map_location=device, weights_only=True))
        log = {"train_config": asdict(cfg), "model_config": asdict(mcfg), "preset": cfg.preset,
               "params": model.num_params(), "device": device,
               "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "python": sys.version.split()[0],
               "data": str(args.tokens or args.data), "minutes": round((time.time() - t_start) / 60, 2),
               "clock_minutes": round(clock_elapsed() / 60, 2), "steps": state["step"], "tokens": state["tokens"],
               "tokens_per_second": round(tokens_per_s), "stop": stop_reason, "attention": attention,
               "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
               if device.startswith("cuda") else None,
               "best_step": state.get("best_step"), "best_val_target_loss": state["best_val"],
               "best_val_by_set": state["best_by_set"], "evals": state["log"],
               "distilled_from": str(args.distill_from) if args.distill_from else None}
        export(model, tok_dir, args.export, log, getattr(torch, args.export_dtype), args.shard_mb)
        print(f"exported {args.export}", flush=True)


if __name__ == "__main__":
    main()
