"""Train an embedded completion model on FIM samples in the serving layout (CPU or CUDA).

    python -m engine_builds.train --preset target --data data/stdlib --out runs/target --minutes 60
    python -m engine_builds.train --preset target --data data/stdlib --out runs/target --resume

Reads what prepare_data wrote (corpus + tokenizer), builds samples on the fly (fim_samples.py) in
DataLoader workers, trains with AdamW + warmup + cosine decay, evaluates on held-out `val` files,
checkpoints (model, optimizer, step, schedule) every few minutes and resumes from it, and exports the
best checkpoint as a Hugging Face directory (config.json, model.safetensors, tokenizer.json,
generation_config.json, train_log.json). bf16 autocast on CUDA; fp32 on CPU unless --bf16.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from completer.completion.fim import detect_template
from completer.engines.model_config import ModelConfig
from completer.engines.torch.model import Transformer, init_weights, load_model
from completer.tokenizer import Tokenizer
from engine_builds.fim_samples import CONTEXT, TARGET, SampleBuilder, SampleMix


def preset(name: str, vocab_size: int) -> ModelConfig:
    shapes = {  # hidden, layers, heads, kv heads, mlp
        "draft": (128, 2, 4, 2, 384),
        "small": (192, 4, 6, 2, 512),
        "target": (256, 6, 8, 4, 704),
        "large": (512, 8, 8, 4, 1408),
    }
    d, n_layers, heads, kv, ff = shapes[name]
    return ModelConfig(vocab_size=vocab_size, hidden_size=d, intermediate_size=ff, num_hidden_layers=n_layers,
                       num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=2048,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=None,
                       eos_token_id=0)


@dataclass
class TrainConfig:
    preset: str = "target"
    seq_len: int = 2048
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    context_weight: float = 0.25  # loss weight of prefix/suffix tokens relative to targets
    steps: int = 0  # 0: derive from --minutes after measuring the first steps
    minutes: float = 0.0
    stop_minutes: float = 0.0  # continue a run for this long, annealing the LR from lr/2 by the clock
    eval_every: int = 250
    eval_rows: int = 48
    ckpt_minutes: float = 5.0
    seed: int = 1234
    workers: int = 2
    bf16: bool = False
    compile: bool = False
    syntax_windows: float = 0.5  # of FIM samples: windows cut at statement boundaries, as serving cuts them


def load_corpus(data_dir: Path) -> list[dict]:
    with gzip.open(data_dir / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class Rows(IterableDataset):
    """Endless packed rows from one split; each worker draws from its own seeded stream."""

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


def weighted_loss(logits, targets, classes, context_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted cross entropy, and the plain mean over TARGET tokens (what we report and select on)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    classes = classes.reshape(-1)
    w = (classes == TARGET).float() + context_weight * (classes == CONTEXT).float()
    loss = (ce * w).sum() / w.sum().clamp(min=1)
    is_target = (classes == TARGET).float()
    target_loss = (ce * is_target).sum() / is_target.sum().clamp(min=1)
    return loss, target_loss


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model, val_batches, device, cfg: TrainConfig, autocast) -> float:
    model.eval()
    total, n = 0.0, 0
    for ids, classes in val_batches:
        ids, classes = ids.to(device), classes.to(device)
        with autocast():
            logits = model(ids[:, :-1])
        _, target_loss = weighted_loss(logits, ids[:, 1:], classes[:, 1:], cfg.context_weight)
        total += float(target_loss)
        n += 1
    model.train()
    return total / max(1, n)


def export(model: Transformer, tok_dir: Path, out: Path, log: dict, dtype: torch.dtype, shard_mb: float) -> None:
    """A Hugging Face directory; weights sharded below `shard_mb` so each file stays small."""
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
        if current and size + nbytes > shard_mb * 2**20:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/stdlib"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--export", type=Path, help="write the best model here in Hugging Face layout")
    ap.add_argument("--export-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--shard-mb", type=float, default=15.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init-from", type=Path, help="start from this model's weights (fine-tuning; shapes must match --preset)")
    ap.add_argument("--device", default="auto")
    for f, v in asdict(TrainConfig()).items():
        kind = type(v)
        if kind is bool:
            ap.add_argument(f"--{f.replace('_', '-')}", action="store_true", default=v)
        else:
            ap.add_argument(f"--{f.replace('_', '-')}", type=kind, default=v)
    args = ap.parse_args()
    cfg = TrainConfig(**{f: getattr(args, f) for f in asdict(TrainConfig())})
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.manual_seed(cfg.seed)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    tok = Tokenizer(args.data / "tokenizer")
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
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                            fused=device == "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "ckpt.pt"
    state = {"step": 0, "total_steps": cfg.steps, "best_val": float("inf"), "log": [], "seconds": 0.0}
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        if cfg.steps:  # an explicit --steps extends (or shortens) a resumed run
            state["total_steps"] = cfg.steps
        print(f"resumed at step {state['step']} of {state['total_steps']}", flush=True)
    fwd_model = torch.compile(model) if cfg.compile else model

    use_bf16 = device == "cuda" or cfg.bf16

    def autocast():
        return torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16,
                              enabled=use_bf16)

    val_iter = iter(Rows(args.data, "val", cfg.seq_len, seed=99, syntax_windows=cfg.syntax_windows))
    val_rows = [next(val_iter) for _ in range(cfg.eval_rows)]
    val_batches = [(torch.stack([r[0] for r in val_rows[i:i + cfg.batch_size]]),
                    torch.stack([r[1] for r in val_rows[i:i + cfg.batch_size]]))
                   for i in range(0, len(val_rows), cfg.batch_size)]
    loader = DataLoader(Rows(args.data, "train", cfg.seq_len, seed=cfg.seed + state["step"],
                             syntax_windows=cfg.syntax_windows),
                        batch_size=cfg.batch_size, num_workers=cfg.workers, pin_memory=device == "cuda",
                        persistent_workers=cfg.workers > 0, prefetch_factor=8 if cfg.workers else None)
    print(f"{cfg.preset}: {model.num_params():,} parameters on {device}{' bf16' if use_bf16 else ''}, "
          f"batch {cfg.batch_size} x {cfg.seq_len}", flush=True)

    best_dir = args.out / "best"
    t_start = time.time() - state["seconds"]
    t_ckpt = time.time()
    tokens_seen, t_window, loss_window = 0, time.time(), []

    def save_ckpt():
        state["seconds"] = time.time() - t_start
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "cfg": asdict(cfg)},
                   ckpt_path.with_suffix(".tmp"))
        os.replace(ckpt_path.with_suffix(".tmp"), ckpt_path)

    def do_eval():
        val = evaluate(fwd_model, val_batches, device, cfg, autocast)
        entry = {"step": state["step"], "val_target_loss": round(val, 4), "minutes": round((time.time() - t_start) / 60, 2)}
        state["log"].append(entry)
        improved = val < state["best_val"]
        if improved:
            state["best_val"] = val
            best_dir.mkdir(exist_ok=True)
            torch.save(model.state_dict(), best_dir / "model.pt")
        print(f"  eval step {state['step']}: val target loss {val:.4f}{' (best)' if improved else ''}", flush=True)

    model.train()
    t_loop = time.time()
    for ids, classes in loader:
        step = state["step"]
        if state["total_steps"] == 0 and step == 30 and cfg.minutes:
            per_step = (time.time() - t_start) / 30
            state["total_steps"] = max(60, int(cfg.minutes * 60 / per_step))
            print(f"  {per_step * 1000:.0f} ms/step -> {state['total_steps']} steps in {cfg.minutes} min", flush=True)
        total = state["total_steps"] or 10**9
        if step >= total:
            break
        lr = lr_at(step, cfg, total)
        if cfg.stop_minutes:
            progress = (time.time() - t_loop) / (cfg.stop_minutes * 60)
            if progress >= 1:
                break
            peak, floor = cfg.lr / 2, cfg.lr * cfg.min_lr_ratio
            lr = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, classes = ids.to(device, non_blocking=True), classes.to(device, non_blocking=True)
        with autocast():
            logits = fwd_model(ids[:, :-1])
        loss, target_loss = weighted_loss(logits, ids[:, 1:], classes[:, 1:], cfg.context_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        state["step"] = step + 1
        tokens_seen += ids.numel()
        loss_window.append(float(target_loss.detach()) if step % 10 == 0 else None)
        if state["step"] % 50 == 0:
            elapsed = time.time() - t_start
            tps = tokens_seen / (time.time() - t_window)
            tokens_seen, t_window = 0, time.time()
            recent = [x for x in loss_window if x is not None]
            loss_window = []
            eta = (total - state["step"]) * elapsed / max(1, state["step"]) if state["total_steps"] else 0
            bar = "#" * int(30 * state["step"] / total) if state["total_steps"] else ""
            print(f"[{bar:<30}] step {state['step']}/{state['total_steps'] or '?'} target loss "
                  f"{sum(recent) / max(1, len(recent)):.3f} lr {lr:.2e} {tps / 1000:.0f}k tok/s "
                  f"elapsed {elapsed / 60:.1f} min eta {eta / 60:.1f} min", flush=True)
        if state["step"] % cfg.eval_every == 0:
            do_eval()
        if time.time() - t_ckpt > cfg.ckpt_minutes * 60:
            save_ckpt()
            t_ckpt = time.time()
    do_eval()
    save_ckpt()
    if args.export:
        model.load_state_dict(torch.load(best_dir / "model.pt", map_location=device))
        log = {"train_config": asdict(cfg), "model_config": asdict(mcfg), "device": device,
               "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
               "torch": torch.__version__, "python": sys.version.split()[0],
               "minutes": round((time.time() - t_start) / 60, 2), "steps": state["step"],
               "tokens": state["step"] * cfg.batch_size * cfg.seq_len, "best_val_target_loss": state["best_val"],
               "evals": state["log"]}
        export(model, args.data / "tokenizer", args.export, log, getattr(torch, args.export_dtype), args.shard_mb)
        print(f"exported {args.export}", flush=True)


if __name__ == "__main__":
    main()
