"""Retraining the tokenizer on the corpus mix and measuring it.

The training text is sampled per language (whole files, in a seeded hash order, up to a character
budget per language; Python, the language the models serve first, gets twice the budget) so that no
language dominates the merges. Compression is measured as characters per token on held-out text
(E2/E3 for Python, E4 for the other languages; val where a language has no hold-out) for each
vocabulary size tried.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine_builds.corpus_filters import LANGUAGES, unit_hash
from engine_builds.train_tokenizer import train_tokenizer

LANGUAGE_WEIGHT = {"python": 2.0}  # others 1.0


def read_docs(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def sample_texts(text_dir: Path, split: str, lang: str, budget_chars: int, seed: int, key: str) -> list[str]:
    path = text_dir / f"{split}-{lang}.jsonl"
    if not path.exists():
        return []
    docs = sorted(read_docs(path), key=lambda d: unit_hash(seed, f"{key}:{d['project']}/{d['path']}"))
    out, used = [], 0
    for d in docs:
        if used >= budget_chars:
            break
        out.append(d["text"])
        used += len(d["text"])
    return out


def training_sample(text_dir: Path, per_language_chars: int, seed: int) -> dict[str, list[str]]:
    return {lang: sample_texts(text_dir, "train", lang, int(per_language_chars * LANGUAGE_WEIGHT.get(lang, 1.0)),
                               seed, "tok") for lang in LANGUAGES}


def heldout_sample(text_dir: Path, chars: int, seed: int) -> dict[str, list[str]]:
    out = {}
    for lang in LANGUAGES:
        splits = ("e2", "e3") if lang == "python" else ("e4",)
        texts = []
        for split in splits:
            texts += sample_texts(text_dir, split, lang, chars // len(splits), seed, "measure")
        if not texts:
            texts = sample_texts(text_dir, "val", lang, chars, seed, "measure")
        if texts:
            out[lang] = texts
    return out


def chars_per_token(tok, texts: list[str]) -> float:
    n_tok = sum(len(e.ids) for e in tok.encode_batch(texts))
    return sum(len(t) for t in texts) / max(n_tok, 1)


def train_and_measure(text_dir: Path, vocab_sizes: list[int], per_language_chars: int, seed: int,
                      heldout_chars: int = 2_000_000):
    sample = training_sample(text_dir, per_language_chars, seed)
    flat = [t for lang in LANGUAGES for t in sample[lang]]
    held = heldout_sample(text_dir, heldout_chars, seed)
    report = {"training_sample_chars": {lang: sum(map(len, sample[lang])) for lang in LANGUAGES},
              "heldout_chars": {lang: sum(map(len, t)) for lang, t in held.items()},
              "chars_per_token": {}}
    tokenizers = {}
    for v in vocab_sizes:
        tok = train_tokenizer(flat, v)
        tokenizers[v] = tok
        report["chars_per_token"][str(v)] = {lang: round(chars_per_token(tok, texts), 4) for lang, texts in held.items()}
        all_texts = [t for texts in held.values() for t in texts]
        report["chars_per_token"][str(v)]["all"] = round(chars_per_token(tok, all_texts), 4)
    return tokenizers, report
