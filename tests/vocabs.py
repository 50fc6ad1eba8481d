"""Real tokenizers of code-model families for golden tests, rebuilt from llama.cpp's vocabulary files.

llama.cpp ships the vocabularies of several model families (token strings, token types, BPE merges)
as `models/ggml-vocab-<name>.gguf`, together with tokenizer test vectors (`.inp`: strings; `.out`:
the token ids the family's reference tokenizer gives them). The llama-cpp-python source distribution
on PyPI vendors them. At test-setup time (never at run time) this module:

    python -m tests.vocabs            # fetch: pinned sdist from PyPI -> .cache/vocabs/

and for tests, `tokenizer_json(family)` writes a Hugging Face tokenizer.json from the vocabulary,
with the family's pre-tokenisation (written here from the families' published tokenizer configs);
`test_vectors(family)` gives the reference ids, so a test proves the rebuilt tokenizer is the real
one before anything is pinned on it.

Families: Qwen2 byte-level BPE (Qwen2.5-Coder's base vocabulary: its FIM sentinels are placeholders
`[PAD151659]`... in this file, so they are named here at the ids Qwen2.5-Coder's tokenizer gives
them), StarCoder (the StarCoder2 specials: `<fim_*>` at 1-4, `<repo_name>` 5, `<file_sep>` 6) and
DeepSeek-Coder (`<｜fim▁*｜>` at 32015-32017). CodeLlama (SentencePiece) and Codestral have no usable
file there and keep their synthetic stand-ins (test_fim_templates.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

SDIST = ("llama-cpp-python", "0.3.36", "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "vocabs"
FAMILIES = ("qwen2", "starcoder", "deepseek-coder")
INDEX = "https://pypi.org/simple/{name}/"

# Pre-tokenisation per family, as each family's tokenizer.json configures it.
_LETTER_RUNS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_PRE_TOKENIZERS = {
    "qwen2": [{"type": "Split", "pattern": {"Regex": _LETTER_RUNS}, "behavior": "Isolated", "invert": False},
              {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}],
    "starcoder": [{"type": "Digits", "individual_digits": True},
                  {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}],
    "deepseek-coder": [
        {"type": "Split", "pattern": {"Regex": r"[\r\n]"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\s?\p{L}+"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\s?\p{P}+"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}],
}
_NORMALIZERS = {"qwen2": {"type": "NFC"}}
# Qwen2.5-Coder's added tokens, which the Qwen2 file only holds as placeholders.
_QWEN_CODER_SPECIALS = {151659: "<|fim_prefix|>", 151660: "<|fim_middle|>", 151661: "<|fim_suffix|>",
                        151662: "<|fim_pad|>", 151663: "<|repo_name|>", 151664: "<|file_sep|>"}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


def vocab_file(family: str) -> Path:
    return CACHE / f"ggml-vocab-{family}.gguf"


def available() -> bool:
    return all(vocab_file(f).exists() and vocab_file(f).with_suffix(".gguf.out").exists() for f in FAMILIES)


def fetch() -> None:
    """Download the pinned sdist from PyPI (checked against its sha256) and extract the vocabularies."""
    name, version, sha = SDIST
    page = urllib.request.urlopen(INDEX.format(name=name), timeout=60).read().decode()
    url = next((urllib.request.urljoin(INDEX.format(name=name), h.split("#")[0])
                for h in re.findall(r'href="([^"]+)"', page)
                if h.split("#")[0].endswith(f"/{name.replace('-', '_')}-{version}.tar.gz")), None)
    if url is None:
        raise SystemExit(f"{name}=={version}: no sdist on the index")
    data = urllib.request.urlopen(url, timeout=300).read()
    if hashlib.sha256(data).hexdigest() != sha:
        raise SystemExit(f"{name}=={version}: sha256 does not match the pinned {sha}")
    CACHE.mkdir(parents=True, exist_ok=True)
    wanted = {f"ggml-vocab-{f}.gguf{ext}" for f in FAMILIES for ext in ("", ".inp", ".out")}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and "/vendor/llama.cpp/models/" in member.name and base in wanted:
                (CACHE / base).write_bytes(tar.extractfile(member).read())
    missing = sorted(w for w in wanted if not (CACHE / w).exists())
    if missing:
        raise SystemExit(f"not in the sdist: {', '.join(missing)}")


def _strings(reader, key: str) -> list[str]:
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def tokenizer_json(family: str, out_dir: Path) -> Path:
    """Write the family's tokenizer.json (byte-level BPE) into out_dir and return its path."""
    from gguf import GGUFReader

    reader = GGUFReader(vocab_file(family))
    tokens = _strings(reader, "tokenizer.ggml.tokens")
    types_field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    merges = _strings(reader, "tokenizer.ggml.merges")
    if family == "qwen2":
        for i, name in _QWEN_CODER_SPECIALS.items():
            tokens[i], types[i] = name, _CONTROL
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": types[i] == _CONTROL}
             for i, t in enumerate(tokens) if types[i] in (_CONTROL, _USER_DEFINED)]
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": _NORMALIZERS.get(family),
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": _PRE_TOKENIZERS[family]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return path


def test_vectors(family: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test vectors: (text, reference ids without BOS)."""
    base = vocab_file(family)
    texts = base.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outs = base.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    texts = texts[:-1] if texts and texts[-1] == "" else texts
    return [(t, [int(x) for x in o.split()]) for t, o in zip(texts, outs)]


if __name__ == "__main__":
    if available() and "--force" not in sys.argv:
        print(f"vocabularies already in {CACHE}")
    else:
        fetch()
        print(f"vocabularies of {', '.join(FAMILIES)} in {CACHE}")
