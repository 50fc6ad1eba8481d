"""tokenizer.json (Hugging Face `tokenizers`) with what completion needs on top:

- special tokens by name, always inserted as ids; user text that happens to contain "<|fim_prefix|>"
  is encoded as plain text, never as a sentinel;
- the exact bytes of every token, for streaming detokenisation and for token healing (constraining
  the first generated tokens to extend text the user already typed);
- any text: a lone UTF-16 surrogate (an editor may send one) is encoded as U+FFFD, one code point
  for one, instead of failing (Hugging Face tokenizers refuse such strings);
- the prompt windows encoded a line at a time, where the tokenizer allows it (encode_cached): a
  window of 150 lines is re-encoded from the lines it already knows, not from scratch, when the
  cursor moves to another line.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str, every surrogate is a lone one

# Text that decides whether a tokenizer encodes lines apart (Tokenizer._encodes_lines_apart): what
# could make a token span a line break, blank and blank-looking lines, runs of them, a line of
# whitespace, a sentinel's text, non-ASCII and an unterminated last line.
_LINES_PROBE = (
    "import os\n\n\nclass A(B):\n    def f(self, x):  # \u00e9\u2713 \U0001d518\n        return x  \n"
    "\t\tif y:\n \n  \n\t\n\n\n\n\n\n\n\n\n\nx = '<|fim_middle|>'\n}\n\n  end\n-- a\u00a0b\n\f\n\x0b\n"
    "fn main() {\n    let s = \"\\n\";\n}\n\n#include <stdio.h>\n  \n    // \u65e5\u672c\nlast"
)
# The lines whose tokens are kept: a million characters (21,000 lines of the standard library, 14 MB
# of Python objects), the oldest forgotten first; a line longer than 2,000 characters (minified code)
# is encoded each time, never kept.
_BODY_CACHE_CHARS = 1_000_000
_BODY_CACHE_LINE_CHARS = 2_000


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Tokenizer:
    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: the model directory needs a tokenizer.json")
        self.path = path
        self._tok = HFTokenizer.from_file(str(path))
        self._tok.encode_special_tokens = True  # sentinels only ever enter as ids
        # Read from the loaded tokenizer, not by parsing the file again: with a model loaded beside it,
        # the garbage collector made that parse take ~90 ms of the server's start.
        added = self._tok.get_added_tokens_decoder()
        self.special: dict[str, int] = {t.content: i for i, t in sorted(added.items()) if t.special}
        self.special_ids = frozenset(self.special.values())
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        decoder = self._tok.decoder  # its state is its JSON, a ByteLevel one possibly inside a Sequence
        self._byte_level = decoder is not None and b'"ByteLevel"' in decoder.__getstate__()
        self._encode_cache: dict[str, tuple[int, ...]] = {}
        self.token_bytes: list[bytes] = [self._bytes_of(i) for i in range(self.vocab_size)]
        self._body_cache: dict[str, tuple[int, ...]] = {}  # a line without its "\n" -> its tokens
        self._body_cache_chars = 0  # of the lines in _body_cache
        self._newline_cache: dict[int, tuple[int, ...]] = {}  # n -> tokens of "\n" * n
        self.encodes_lines_apart = self._encodes_lines_apart()

    def _bytes_of(self, token_id: int) -> bytes:
        piece = self._tok.id_to_token(token_id)
        if piece is None:
            return b""
        if token_id in self.special_ids:
            return piece.encode("utf-8")
        if self._byte_level:
            table = _byte_level_decoder()
            try:
                return bytes(table[ch] for ch in piece)
            except KeyError:  # an added non-special token stored as plain text
                return piece.encode("utf-8")
        # SentencePiece-style vocabularies (CodeLlama, Mistral): byte fallback and the ▁ space marker.
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return bytes([int(piece[3:5], 16)])
        return piece.replace("\u2581", " ").encode("utf-8")

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if not text.isascii():
            text = _SURROGATE.sub("\ufffd", text)
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_cached(self, text: str) -> tuple[int, ...]:
        """encode() memoised for the large, slowly changing prompt windows: a window is hit on every
        keystroke within a line, and its lines are reused when the cursor moves to another line."""
        hit = self._encode_cache.get(text)
        if hit is None:
            if len(self._encode_cache) >= 64:
                self._encode_cache.pop(next(iter(self._encode_cache)))
            lines_apart = self.encodes_lines_apart and "\n" in text and "\r" not in text
            hit = self._encode_cache[text] = self._encode_by_lines(text) if lines_apart else tuple(self.encode(text))
        return hit

    def clear_caches(self) -> None:
        """Forget every encoded window and line, as a new server would have none (benchmarks)."""
        self._encode_cache.clear()
        self._body_cache.clear()
        self._body_cache_chars = 0

    def _encode_by_lines(self, text: str) -> tuple[int, ...]:
        """encode(text) for a tokenizer that encodes lines apart, from the tokens of each line's body
        (cached) and of each run of line breaks. `text` has no "\r" (a "\r\n" is one pre-token)."""
        ids: list[int] = []
        breaks = 0  # line breaks since the last non-empty body: one run, one pre-token
        for i, body in enumerate(text.split("\n")):
            breaks += i > 0
            if body:
                if breaks:
                    ids += self._newlines(breaks)
                    breaks = 0
                ids += self._body(body)
        if breaks:
            ids += self._newlines(breaks)
        return tuple(ids)

    def _body(self, body: str) -> tuple[int, ...]:
        hit = self._body_cache.get(body)
        if hit is None:
            hit = tuple(self.encode(body))
            if len(body) <= _BODY_CACHE_LINE_CHARS:
                while self._body_cache and self._body_cache_chars + len(body) > _BODY_CACHE_CHARS:
                    oldest = next(iter(self._body_cache))  # the oldest lines go first
                    del self._body_cache[oldest]
                    self._body_cache_chars -= len(oldest)
                self._body_cache[body] = hit
                self._body_cache_chars += len(body)
        return hit

    def _newlines(self, n: int) -> tuple[int, ...]:
        hit = self._newline_cache.get(n)
        if hit is None:
            hit = tuple(self.encode("\n" * n))
            if n <= 256:
                self._newline_cache[n] = hit
        return hit

    def _encodes_lines_apart(self) -> bool:
        """Whether a text's tokens are its lines' bodies' tokens and its runs of line breaks' tokens,
        each encoded alone. Tokens merge only within a pre-token, so it holds where nothing rewrites
        the text before it is split (no normalizer) and no pre-token spans a line break except a run
        of them (ours: `(?:\r?\n)+` is a pre-token of its own; GPT-2-style regexes join a break to the
        indentation after it). The pre-tokenizer is judged on the probe, which must also encode the
        same both ways; the tests hold the shipped tokenizers to it on real files."""
        pre = self._tok.pre_tokenizer
        if self._tok.normalizer is not None or pre is None:
            return False
        if any("\n" in t.content or "\r" in t.content for t in self._tok.get_added_tokens_decoder().values()
               if not t.special):
            return False  # an added token is matched before the pre-tokenizer, across lines too
        for _, (start, end) in pre.pre_tokenize_str(_LINES_PROBE):
            piece = _LINES_PROBE[start:end]
            if "\n" in piece and piece.strip("\n"):
                return False
        return self._encode_by_lines(_LINES_PROBE) == tuple(self.encode(_LINES_PROBE))

    def decode_bytes(self, ids) -> bytes:
        tb = self.token_bytes
        return b"".join(tb[i] for i in ids)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def id_of(self, name: str) -> int | None:
        """Id of a special (added) token."""
        return self.special.get(name)

    def token_id(self, token: str) -> int | None:
        """Id of any vocabulary entry by its exact string (sentinels are not always 'special')."""
        return self.special.get(token, self._tok.token_to_id(token))

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_ids
