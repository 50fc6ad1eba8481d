"""tokenizer.json (Hugging Face `tokenizers`) with what completion needs on top:

- special tokens by name, always inserted as ids; user text that happens to contain "<|fim_prefix|>"
  is encoded as plain text, never as a sentinel;
- the exact bytes of every token, for streaming detokenisation and for token healing (constraining
  the first generated tokens to extend text the user already typed);
- any text: a lone UTF-16 surrogate (an editor may send one) is encoded as U+FFFD, one code point
  for one, instead of failing (Hugging Face tokenizers refuse such strings).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str, every surrogate is a lone one


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
        """encode() memoised for the large, slowly changing prompt windows (hit on every keystroke)."""
        hit = self._encode_cache.get(text)
        if hit is None:
            if len(self._encode_cache) >= 64:
                self._encode_cache.pop(next(iter(self._encode_cache)))
            hit = self._encode_cache[text] = tuple(self.encode(text))
        return hit

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
