"""Open documents, kept as line lists and updated incrementally by LSP rules.

Why not pygls' workspace: it re-splits the whole text with `str.splitlines`, which also breaks lines
at \\f, \\v, \\x1c-\\x1e, \\x85, U+2028 and U+2029 (LSP knows only \\n, \\r\\n and \\r), so edits after
such characters land in the wrong place; and it walks every line in Python on each keystroke.

Here an edit touches only the lines it spans (plus one on each side, where a \\r and a \\n may meet),
and every edit produces a new list, so a completion running on a worker thread keeps reading a
consistent snapshot while the next keystroke is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from completer.prompt import split_lines
from completer.syntax import DocumentSyntax, Snapshot, language_for

ENCODINGS = ("utf-8", "utf-16", "utf-32")


def _units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == "utf-16":
        return 2 if cp > 0xFFFF else 1
    if encoding == "utf-8":
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 1


def to_codepoints(line: str, character: int, encoding: str) -> int:
    """Client column (in `encoding` units) -> code-point index; past the end clamps to the end, and a
    column inside a surrogate pair or UTF-8 sequence rounds down to the character's start."""
    if encoding == "utf-32":
        return max(0, min(character, len(line)))
    units = 0
    for i, ch in enumerate(line):
        units += _units(ch, encoding)
        if units > character:
            return i
    return len(line)


def to_client_units(line: str, index: int, encoding: str) -> int:
    if encoding == "utf-32":
        return index
    return sum(_units(ch, encoding) for ch in line[:index])


def line_body(line: str) -> str:
    return line.rstrip("\r\n")


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    lines: list[str] = field(default_factory=lambda: [""])  # every line but the last ends with its terminator
    syntax: DocumentSyntax | None = None  # the tree-sitter tree, for languages with a grammar
    # Chunks of other files for the prompt: changed only when the user is idle (cache stability).
    context: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_text(cls, uri: str, language_id: str, version: int, text: str) -> "Document":
        language = language_for(language_id, uri)
        return cls(uri, language_id, version, split_lines(text), DocumentSyntax(language, text) if language else None)

    def reparse(self) -> None:
        """Bring the tree up to date with the lines (incrementally); once per didChange."""
        if self.syntax is not None:
            self.syntax.update(self.text)

    @property
    def snapshot(self) -> Snapshot | None:
        return self.syntax.snapshot if self.syntax is not None else None

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def clamp(self, line: int, character: int, encoding: str) -> tuple[int, int]:
        """Client position -> (line, code-point column), clamped into the document."""
        if line < 0:
            return 0, 0
        if line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(line_body(self.lines[last]))
        return line, to_codepoints(line_body(self.lines[line]), max(character, 0), encoding)

    def apply_change(self, start: tuple[int, int] | None, end: tuple[int, int] | None, text: str,
                     encoding: str) -> None:
        """Replace the client range [start, end) with `text`; no range means the whole document."""
        if start is None or end is None:
            self.lines = split_lines(text)
            return
        (sl, sc), (el, ec) = self.clamp(*start, encoding), self.clamp(*end, encoding)
        if (el, ec) < (sl, sc):  # an inverted range: treat it as the ordered one
            (sl, sc), (el, ec) = (el, ec), (sl, sc)
        lines = self.lines
        # A range end at (n, 0) just past the last line clamps to the end of the last line.
        first, last = max(sl - 1, 0), min(el + 2, len(lines))
        region = "".join(lines[first:last])
        offset_start = sum(len(ln) for ln in lines[first:sl]) + sc
        offset_end = sum(len(ln) for ln in lines[first:el]) + ec
        new_region = region[:offset_start] + text + region[offset_end:]
        new_lines = split_lines(new_region)
        if last < len(lines):
            # The region ended with a terminator, so split_lines added an empty last piece.
            new_lines.pop()
        self.lines = lines[:first] + new_lines + lines[last:]


class DocumentStore:
    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.encoding = "utf-16"

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = self.documents[uri] = Document.from_text(uri, language_id, version, text)
        return doc

    def close(self, uri: str) -> None:
        self.documents.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self.documents.get(uri)
