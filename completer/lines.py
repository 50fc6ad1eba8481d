"""A document as LSP sees it: a list of lines (split_lines), positions in the negotiated encoding,
and range edits. One implementation for the server's document store, the scripted editor, the
replay's copy of a document and the prefetch's "as if accepted" document.

Columns are code-point indexes unless a name says client units (utf-8 bytes, utf-16 code units or
code points for utf-32).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def split_lines(text: str) -> list[str]:
    """Lines with their terminators, by LSP rules (\\n, \\r\\n, \\r only; not \\f or U+2028)."""
    if "\r" not in text:
        parts = text.split("\n")
        return [p + "\n" for p in parts[:-1]] + [parts[-1]]
    lines = _LINE_RE.findall(text)
    lines.append(text[sum(map(len, lines)):])
    return lines


def units(ch: str, encoding: str) -> int:
    """How many client units one character takes."""
    cp = ord(ch)
    if encoding == "utf-16":
        return 2 if cp > 0xFFFF else 1
    if encoding == "utf-8":
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 1


# Text this long is worth a cache rather than a copy or a count at each call (here and reuse._split).
LONG_LINE = 1 << 14
# A head of a long line whose units were counted: (encoding, head, its units). A minified file's
# megabyte line is converted several times a key, each time the same head plus the character just
# typed, and counting a non-ASCII head is a pass of the codec over all of it (1.5 ms at 700k
# characters); a kept head is compared in C, without a copy, and only what follows it is counted.
_HEADS_KEPT = 2
_heads: list[tuple[str, str, int]] = []  # most recent first; replaced whole, so threads read a whole list


def _count_units(head: str, encoding: str) -> int:
    if encoding == "utf-32" or head.isascii():  # isascii reads a flag of the string: no pass
        return len(head)
    if encoding == "utf-16":
        return len(head.encode("utf-16-le", "surrogatepass")) // 2
    return len(head.encode("utf-8", "surrogatepass"))


def to_client_units(line: str, index: int, encoding: str) -> int:
    """Code-point index -> client column: the units of line[:index]. Counted by the codec, in C: a
    minified file's one line of megabytes took a second per conversion character by character.
    "surrogatepass" counts a lone surrogate as `units` does (one UTF-16 unit, three UTF-8 bytes)."""
    global _heads
    if index < LONG_LINE or encoding == "utf-32":
        return _count_units(line[:index], encoding)
    heads = _heads
    for kept_encoding, kept, units in heads:
        if kept_encoding == encoding and len(kept) <= index and line.startswith(kept):
            rest = line[len(kept):index]
            if len(rest) < LONG_LINE:
                return units + _count_units(rest, encoding)
            break
    head = line[:index]
    units = _count_units(head, encoding)
    if not head.isascii():  # an ASCII head costs nothing to count again
        _heads = [(encoding, head, units), *heads[:_HEADS_KEPT - 1]]
    return units


def forget_kept_heads() -> None:
    """Let go of the kept heads (a closed document's megabyte line would stay alive in them)."""
    global _heads
    _heads = []


def to_codepoints(line: str, character: int, encoding: str) -> int:
    """Client column (in `encoding` units) -> code-point index; past the end clamps to the end, and a
    column inside a surrogate pair or UTF-8 sequence rounds down to the character's start: the
    largest index whose units do not pass `character`."""
    character = max(character, 0)
    if encoding == "utf-32":
        return min(character, len(line))
    # Every character takes at least one unit, so the answer is at most `character`.
    lo, hi = 0, min(character, len(line))
    total = to_client_units(line, hi, encoding)
    if total - character <= 256:  # a few wide characters before the cursor: step back over them
        while total > character:
            hi -= 1
            total -= units(line[hi], encoding)
        return hi
    while lo < hi:  # many (CJK text in UTF-8): bisect; invariant units(line[:lo]) <= character < units(line[:hi + 1])
        mid = (lo + hi + 1) // 2
        if to_client_units(line, mid, encoding) <= character:
            lo = mid
        else:
            hi = mid - 1
    return lo


def line_body(line: str) -> str:
    return line.rstrip("\r\n")


def terminator_length(line: str) -> int:
    """How many characters of the line are its line break (0, 1, or 2 for "\r\n")."""
    return 2 if line.endswith("\r\n") else 1 if line.endswith(("\n", "\r")) else 0


def as_lf(text: str) -> str:
    """`text` with LF line breaks: what the model reads and the copies search. The model was trained
    on LF text; in a CRLF (Windows) or CR document every break was a token it had hardly seen, and its
    suggestions were measurably worse (MODEL.md, "Documents with CRLF line breaks"). Positions within
    a line do not change: a line's break follows its last character."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def clamp(lines: Sequence[str], line: int, character: int, encoding: str) -> tuple[int, int]:
    """Client position -> (line, code-point column), clamped into the document."""
    if line < 0:
        return 0, 0
    if line >= len(lines):
        last = len(lines) - 1
        return last, len(lines[last]) - terminator_length(lines[last])
    # On the line as it is, then clamped to its body: the same column as on the body (the break comes
    # after it), without a copy of the line per conversion.
    text = lines[line]
    return line, min(to_codepoints(text, max(character, 0), encoding), len(text) - terminator_length(text))


class Lines(list):
    """A version of a document's lines that knows, when an edit within one line made it, a version it
    differs from at that line only: `edited_from` = (base, row), or None. Whether the document changed
    anywhere but the cursor's line since a suggestion was shown (reuse.typed_since, at every key) is
    then read from two versions' bases instead of a pass over both lists (6 ms a key at 500k lines).
    A base keeps no base of its own (replace_range clears it), so no chain of old versions stays alive."""

    __slots__ = ("edited_from",)

    def __init__(self, lines: Sequence[str] = (), edited_from: tuple[Sequence[str], int] | None = None):
        super().__init__(lines)
        self.edited_from = edited_from


def same_but_for_row(old: Sequence[str], new: Sequence[str], row: int) -> bool:
    """True when the versions' history shows that `new` equals `old` except perhaps at `row`; False
    when it does not show it (they may still be equal: compare them)."""
    if new is old:
        return True
    made = getattr(new, "edited_from", None)
    if made is None or made[1] != row:
        return False
    was = getattr(old, "edited_from", None)
    return made[0] is old or (was is not None and was[0] is made[0] and was[1] == row)


def _edited_within(lines: Sequence[str], row: int) -> tuple[Sequence[str], int]:
    """The edited_from of a version made from `lines` by an edit within `row`."""
    made = getattr(lines, "edited_from", None)
    if made is not None and made[1] == row:  # more typing on the same line: the same base
        return made
    if isinstance(lines, Lines):
        lines.edited_from = None  # it becomes a base: one version kept alive, not a chain of them
    return lines, row


def replace_range(lines: Sequence[str], start: tuple[int, int], end: tuple[int, int], text: str) -> list[str]:
    """The lines with [start, end) (code-point positions inside the document) replaced by `text`.

    The re-split covers the line before and the line after the range, so a "\\r" and a "\\n" that the
    edit brings together become one line break."""
    if end < start:  # an inverted range: treat it as the ordered one
        start, end = end, start
    (sl, sc), (el, ec) = start, end
    if sl == el < len(lines) and ec <= len(lines[sl]) - terminator_length(lines[sl]) and "\n" not in text \
            and "\r" not in text \
            and (sc > 0 or sl == 0 or not lines[sl - 1].endswith("\r")):
        # Typing within a line (nearly every edit): no line break comes or goes, and none meets the one
        # before (a "\r" above and this line's "\n"), so nothing to re-split. One copy of the list, the
        # line set in it: building it from two slices took 7x as long (8.5 ms a key at 166k lines).
        out = Lines(lines, _edited_within(lines, sl))
        out[sl] = lines[sl][:sc] + text + lines[sl][ec:]
        return out
    first, last = max(sl - 1, 0), min(el + 2, len(lines))
    region = "".join(lines[first:last])
    offset_start = sum(len(ln) for ln in lines[first:sl]) + sc
    offset_end = sum(len(ln) for ln in lines[first:el]) + ec
    new_lines = split_lines(region[:offset_start] + text + region[offset_end:])
    if last < len(lines):
        # The region ended with a terminator, so split_lines added an empty last piece.
        new_lines.pop()
    out = list(lines)
    out[first:last] = new_lines
    return out


def insert_at(lines: Sequence[str], line: int, character: int, text: str,
              replace: int = 0) -> tuple[list[str], int, int]:
    """The lines with `text` inserted at (line, code-point column), in place of the `replace` characters
    after it, and the position just after it."""
    inserted = split_lines(lines[line][:character] + text)
    return replace_range(lines, (line, character), (line, character + replace), text), \
        line + len(inserted) - 1, len(inserted[-1])
