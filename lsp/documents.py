"""Open documents, kept as line lists and updated incrementally by LSP rules.

Why not pygls' workspace: it re-splits the whole text with `str.splitlines`, which also breaks lines
at \\f, \\v, \\x1c-\\x1e, \\x85, U+2028 and U+2029 (LSP knows only \\n, \\r\\n and \\r), so edits after
such characters land in the wrong place; and it walks every line in Python on each keystroke.

Here (completer/lines.py) an edit touches only the lines it spans (plus one on each side, where a \\r and a \\n may meet),
and every edit produces a new list, so a completion running on a worker thread keeps reading a
consistent snapshot while the next keystroke is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from completer.lines import clamp, replace_range, split_lines
from completer.syntax import MAX_PARSE_BYTES, DocumentSyntax, Snapshot, byte_offset, language_for


def prompt_path(uri: str) -> str:
    """The file name the prompt shows for a document (the model was trained on file names, not URIs):
    the last segment of the URI's path, percent-decoded (`my%20notes.py` is `my notes.py`); a
    fragment (a notebook cell's `#W2sZmlsZQ==`) is not part of it."""
    return unquote(uri.split("#", 1)[0].rsplit("/", 1)[-1]) or "untitled"


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    lines: list[str] = field(default_factory=lambda: [""])  # every line but the last ends with its terminator
    syntax: DocumentSyntax | None = None  # the tree-sitter tree, for languages with a grammar
    # Chunks of other files for the prompt: changed only when the user is idle (cache stability).
    context: tuple[tuple[str, str], ...] = ()
    open_files: tuple[tuple[str, str], ...] = ()  # the other files in the context ring, for copies
    _parsed: list[str] | None = None  # the `lines` list the tree was last brought up to date with
    # The document's length in code points, kept with each edit: past MAX_PARSE_BYTES (a code point
    # is at least one byte) no tree is made, and knowing that costs no join of megabytes.
    chars: int = 0
    name: str = ""  # the file name the prompt shows (prompt_path of the URI, unless set otherwise)

    def __post_init__(self) -> None:
        self.name = self.name or prompt_path(self.uri)

    @classmethod
    def from_text(cls, uri: str, language_id: str, version: int, text: str) -> "Document":
        language = language_for(language_id, uri)
        lines = split_lines(text)
        # Parsed on the event loop: with a time budget, and a large document in windows (syntax.py).
        syntax = DocumentSyntax(language, text, bounded=True, windows=True) if language else None
        return cls(uri, language_id, version, lines, syntax, _parsed=lines, chars=len(text))

    @property
    def snapshot(self) -> Snapshot | None:
        """The tree of the current lines. Re-parsed (incrementally) here, when a request needs it, not
        at each didChange: a typed-through answer needs no tree, and the keystrokes between two model
        requests cost one re-parse together. A large document is parsed in a window (syntax.py): this
        one is around its last edit; snapshot_at gives one around a cursor."""
        return self.snapshot_at(None)

    def snapshot_at(self, cursor: tuple[int, int] | None) -> Snapshot | None:
        """snapshot, with a tree around `cursor` (line, code-point column) in a large document. None
        when there is no grammar, or the document is too large for a tree: then no key joins and
        encodes its megabytes only to learn that again."""
        if self.syntax is None or self.chars > MAX_PARSE_BYTES:
            return None
        near = byte_offset(self.lines, *cursor) if cursor is not None and self.syntax.windowed else None
        if self._parsed is not self.lines or (near is not None and not self.syntax.snapshot.covers(near)):
            self.syntax.update(self.text, near)  # every edit makes a new list (see the module docstring)
            self._parsed = self.lines
        return self.syntax.snapshot

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def clamp(self, line: int, character: int, encoding: str) -> tuple[int, int]:
        """Client position -> (line, code-point column), clamped into the document."""
        return clamp(self.lines, line, character, encoding)

    def apply_change(self, start: tuple[int, int] | None, end: tuple[int, int] | None, text: str,
                     encoding: str) -> None:
        """Replace the client range [start, end) with `text`; no range means the whole document."""
        if start is None or end is None:
            self.lines = split_lines(text)
            self.chars = len(text)
            return
        # A range end at (n, 0) just past the last line clamps to the end of the last line.
        first, last = sorted((self.clamp(*start, encoding), self.clamp(*end, encoding)))
        self.chars += len(text) - span_length(self.lines, first, last)
        self.lines = replace_range(self.lines, first, last, text)


def span_length(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> int:
    """Code points from `start` to `end` (ordered, clamped (line, column) positions), line breaks
    included."""
    (sl, sc), (el, ec) = start, end
    if sl == el:
        return ec - sc
    return len(lines[sl]) - sc + sum(map(len, lines[sl + 1:el])) + ec


@dataclass(frozen=True)
class Located:
    """Where a client's document lives in the store: a file is a document of its own; a notebook
    cell is lines of its notebook's joined document (notebooks.py)."""
    key: str  # the document's key in DocumentStore.documents
    doc: Document
    first_line: int  # the client's line 0 is the document's line first_line
    line_count: int  # lines of the client's document


class DocumentStore:
    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.encoding = "utf-16"
        self.notebooks: dict = {}  # notebook URI -> notebooks.Notebook
        self.cell_notebooks: dict[str, str] = {}  # URI of a cell of an open notebook -> the notebook's URI

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = self.documents[uri] = Document.from_text(uri, language_id, version, text)
        return doc

    def close(self, uri: str) -> None:
        self.documents.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self.documents.get(uri)

    def locate(self, uri: str) -> Located | None:
        """The document a client's URI is, or is part of; None if it is not open."""
        doc = self.documents.get(uri)
        if doc is not None:
            return Located(uri, doc, 0, len(doc.lines))
        notebook = self.notebooks.get(self.cell_notebooks.get(uri, ""))
        placed = notebook.place(uri) if notebook is not None else None
        doc = self.documents.get(notebook.key) if placed is not None else None
        if doc is None:
            return None
        first_line, line_count = placed
        return Located(notebook.key, doc, first_line, line_count)
