"""Byte-level BPE for code, trained with Hugging Face `tokenizers`.

Pre-tokenisation is chosen for completion cursors: newline runs, indentation and other runs of two or
more blanks are tokens of their own, and a single space attaches to the word after it (` return`).
So a cursor line "    ret" is `"    " + "ret"` exactly as in training text, where GPT-2's regex would
give `"   " + " ret"` and make every cursor after indentation an unseen token boundary.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|file_sep|>",
    "<|repo_name|>",
]

PRETOKENIZE_REGEX = (
    r"(?:\r?\n)+"  # newline runs
    r"|[ \t]{2,}|\t"  # indentation and other blank runs
    r"| ?[\p{L}_][\p{L}\p{N}_]*"  # identifiers and keywords, with one leading space
    r"| ?\p{N}+"  # numbers
    r"| ?[^\s\p{L}\p{N}_]+"  # operator / punctuation runs
    r"|\s"  # any other single blank
)


def new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,  # ids 0..6 in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save(tok: Tokenizer, out_dir: Path, model_max_length: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    # Enough for transformers' AutoTokenizer (PreTrainedTokenizerFast) to load the same vocabulary.
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|fim_pad|>",
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="training text files")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    tok = train_tokenizer((p.read_text(encoding="utf-8", errors="replace") for p in args.files), args.vocab_size)
    save(tok, args.out, args.max_length)
    print(f"wrote {args.out / 'tokenizer.json'} ({tok.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
