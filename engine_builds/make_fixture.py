"""Regenerate the tiny fixture model used by the tests (completer/models/fixture).

Deterministic for a given Python: the tokenizer is trained on a fixed list of standard-library
modules, the weights come from a fixed seed. The fixture exists to exercise the protocol, caching,
cancellation and the file format; it is not meant to complete code well.

    python -m engine_builds.make_fixture [--out completer/models/fixture]
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from pathlib import Path

import torch

from completer.engines.model_config import ModelConfig
from completer.engines.torch.model import Transformer, init_weights, save_model
from engine_builds.train_tokenizer import SPECIAL_TOKENS, save, train_tokenizer

MODULES = ["textwrap.py", "string.py", "bisect.py", "heapq.py", "functools.py", "contextlib.py",
           "dataclasses.py", "fnmatch.py", "shlex.py", "glob.py"]
VOCAB = 1024
SEED = 0


def fixture_config(vocab_size: int) -> ModelConfig:
    # GQA (4 query heads, 2 KV heads) and tied embeddings, so the tests cover both paths.
    return ModelConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                       bos_token_id=None, eos_token_id=SPECIAL_TOKENS.index("<|endoftext|>"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("completer/models/fixture"))
    args = ap.parse_args()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / m).read_text(encoding="utf-8") for m in MODULES]
    tok = train_tokenizer(texts, VOCAB)
    cfg = fixture_config(tok.get_vocab_size())
    save(tok, args.out, cfg.max_position_embeddings)
    torch.manual_seed(SEED)
    model = Transformer(cfg)
    init_weights(model, SEED)
    save_model(model, args.out)
    (args.out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": cfg.eos_token_id, "do_sample": False}, indent=2) + "\n")
    (args.out / "MODEL.md").write_text(
        "# fixture\n\nRandom-weight test fixture (seed %d), %d parameters, tokenizer trained on %s "
        "from Python %s's standard library (PSF-2.0). Regenerate: `python -m engine_builds.make_fixture`.\n"
        % (SEED, model.num_params(), ", ".join(MODULES), sys.version.split()[0]))
    print(f"wrote {args.out}: {model.num_params():,} parameters, vocab {cfg.vocab_size}")


if __name__ == "__main__":
    main()
