"""Do quantized weights pay on this CPU? Decode and verification steps with fp32, bf16 and
weight-only INT8 weights, interleaved in one process, and a fake-quantized copy of the model for the
quality side (bench/quality.py compares it with the original in one run).

    python bench/quant_bench.py [--model embedded] [--repeats 15] [--context 600]
    python bench/quant_bench.py --random 512:8:1408     # a random model of that shape (~28M, issue 22's size)
    python bench/quant_bench.py --write-int8 /tmp/embedded-int8      # then:
    python bench/quality.py --models embedded /tmp/embedded-int8 --ood data/ood/corpus.jsonl.gz

Weight-only INT8: one scale per output channel (max |w| / 127, symmetric), activations in fp32,
products through aten._weight_int8pack_mm (int8 weights unpacked in the kernel). bf16: the same
weights cast, products in bf16 (the eager engine's decode copies). Every row runs the same model,
eager, the same K/V context and the same tokens; the fp32 row is the reference the others are
compared with (max |logit difference|, greedy next token agreement).

Fields printed every run: format, decode ms (1 token), verify ms (5 tokens), linear-only ms per
decode step, weight MB, max |dlogit|, next-token agreement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from completer.engines.loading import resolve_model
from completer.engines.model_config import ModelConfig
from completer.engines.torch.model import InferenceLinear, Transformer, init_weights, load_model


def int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] fp32 -> (int8 [N, K], scales [N]) with w ~= q * scales[:, None]."""
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


class Int8Forward:
    """Swaps an InferenceLinear's product for the weight-only INT8 kernel."""

    def __init__(self, lin: InferenceLinear):
        self.q, self.scales = int8_per_channel(lin.weight.float())
        self.bias = lin.bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), self.q, self.scales.to(x.dtype))
        y = y.view(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


class Bf16Forward:
    def __init__(self, lin: InferenceLinear):
        self.w = lin.weight.to(torch.bfloat16)
        self.bias = None if lin.bias is None else lin.bias.to(torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.w, self.bias).to(x.dtype)


def linears(model) -> list[InferenceLinear]:
    return [m for m in model.modules() if isinstance(m, InferenceLinear)]


def set_format(model, fmt: str, saved: dict) -> None:
    for lin in linears(model):
        if fmt == "fp32":
            lin.forward = saved[id(lin)]
        else:
            lin.forward = (Int8Forward if fmt == "int8" else Bf16Forward)(lin)


def weight_mb(model, fmt: str) -> float:
    total = 0
    for lin in linears(model):
        n = lin.weight.numel()
        total += n * {"fp32": 4, "bf16": 2, "int8": 1}[fmt] + (lin.weight.shape[0] * 4 if fmt == "int8" else 0)
    return total / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--context", type=int, default=600, help="tokens already in the K/V cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random", metavar="HIDDEN:LAYERS:FFN",
                    help="time a randomly initialised model of this shape instead (64-wide heads, 4 query heads "
                    "per K/V head, the embedded vocabulary): how a larger target would fare")
    ap.add_argument("--write-int8", type=Path, metavar="DIR",
                    help="write the model with its weights rounded through INT8 (fp32 files) to DIR and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    if args.write_int8:
        write_fake_int8(model_dir, args.write_int8)
        return
    torch.manual_seed(0)
    if args.random:
        hidden, layers, ffn = map(int, args.random.split(":"))
        base = load_model(model_dir, device="cpu", dtype=torch.float32).config
        cfg = ModelConfig(vocab_size=base.vocab_size, hidden_size=hidden, intermediate_size=ffn,
                          num_hidden_layers=layers, num_attention_heads=hidden // 64,
                          num_key_value_heads=max(1, hidden // 256), max_position_embeddings=2048,
                          tie_word_embeddings=True)
        model = Transformer(cfg)
        init_weights(model, seed=0)
    else:
        model = load_model(model_dir, device="cpu", dtype=torch.float32)
    params = model.num_params()
    model.prepare_for_inference(None)
    model.setup_cache(args.context + 64)
    vocab = model.config.vocab_size
    prompt = torch.randint(7, vocab, (1, args.context))
    saved = {id(lin): lin.forward for lin in linears(model)}
    formats = ("fp32", "bf16", "int8")
    times: dict[str, dict[str, list[float]]] = {f: {"decode": [], "verify": [], "linears": []} for f in formats}
    ref_logits = None
    quality = {}
    with torch.inference_mode():
        model(prompt, 0)  # the shared context
        tok1 = torch.randint(7, vocab, (1, 1))
        tok5 = torch.randint(7, vocab, (1, 5))
        x1 = torch.randn(1, 1, model.config.hidden_size)
        for fmt in formats:  # warm-up, and each format's logits against fp32's
            set_format(model, fmt, saved)
            logits = model(tok5, args.context)[0].float()
            if ref_logits is None:
                ref_logits = logits
            quality[fmt] = ((logits - ref_logits).abs().max().item(),
                            (logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item())
        for _ in range(args.repeats):
            for fmt in formats:  # interleaved: the shared machine's noise falls on every format alike
                set_format(model, fmt, saved)
                t0 = time.perf_counter()
                model(tok1, args.context)
                t1 = time.perf_counter()
                model(tok5, args.context)
                t2 = time.perf_counter()
                h = x1
                for lin in linears(model):  # each product once, on a row of the right width
                    lin(h if h.shape[-1] == lin.weight.shape[1] else torch.randn(1, 1, lin.weight.shape[1]))
                t3 = time.perf_counter()
                times[fmt]["decode"].append((t1 - t0) * 1000)
                times[fmt]["verify"].append((t2 - t1) * 1000)
                times[fmt]["linears"].append((t3 - t2) * 1000)
    print(f"model {args.random or model_dir.name}: {params:,} parameters, context {args.context} tokens, "
          f"{args.threads} threads, eager, torch {torch.__version__}, medians of {args.repeats}")
    print(f"{'format':8s} {'decode ms':>10s} {'verify5 ms':>11s} {'linears ms':>11s} {'weights MB':>11s} "
          f"{'max|dlogit|':>12s} {'next-token agree':>17s}")
    base = statistics.median(times["fp32"]["decode"])
    for fmt in formats:
        d, v, lin = (statistics.median(times[fmt][k]) for k in ("decode", "verify", "linears"))
        print(f"{fmt:8s} {d:10.3f} {v:11.3f} {lin:11.3f} {weight_mb(model, fmt):11.2f} {quality[fmt][0]:12.4f} "
              f"{quality[fmt][1]:17.1%}   decode {base / d:.2f}x fp32")


def write_fake_int8(model_dir: Path, out: Path) -> None:
    """The model's 2-D weights rounded through per-channel INT8 and stored back as fp32: what an INT8
    engine computes with, in files every tool here reads (bench/quality.py --models A B)."""
    import shutil

    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, out / f.name)
    tensors = load_file(str(model_dir / "model.safetensors"))
    rounded, n_int8 = {}, 0
    for name, t in tensors.items():
        if t.ndim == 2:  # projections, and the embedding (tied with the output head)
            q, s = int8_per_channel(t.float())
            t, n_int8 = q.float() * s[:, None], n_int8 + 1
        rounded[name] = t.float().contiguous()
    save_file(rounded, str(out / "model.safetensors"))
    print(f"wrote {out}: {n_int8} of {len(rounded)} tensors rounded through INT8 (the 2-D ones)")


if __name__ == "__main__":
    main()
