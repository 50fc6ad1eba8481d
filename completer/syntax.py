"""Tree-sitter parsing for completion: languages from the per-language grammar wheels, one tree per
document kept up to date incrementally, and the few syntax questions prompts and post-processing ask.

Grammars come only from the installed `tree-sitter-<language>` wheels (no download at run time).
In the language server, a document of WINDOW_FROM_BYTES up to MAX_PARSE_BYTES is parsed in a window
around the cursor (`window_around`), not whole, so that a keystroke's re-parse stays small (offline
tools parse such files whole). Unknown languages, missing
grammars, files over MAX_PARSE_BYTES and minified files (`minified`) get no tree: every caller then
falls back to line-based behaviour, never to an error. So does, for the
language server's documents (`DocumentSyntax(..., bounded=True)`), a parse that runs past its time
budget (PARSE_S_BASE + PARSE_S_PER_MB per MB): some inputs make a grammar's parse quadratic (in
tree-sitter-python 0.25, a definition followed by thousands of comment lines: 10,000 lines took
4.5 s, and as long again at each keystroke at their end), and the server parses on its event loop. A
document whose parse ran out of time is not parsed again (its snapshots say `gave_up`); a first
parse is stopped at its budget, an incremental one is timed and counts once it is done (see _parse).
Offline tools parse unbounded, so that their output never depends on the machine's load.

Text becomes bytes as UTF-8 with surrogatepass (WTF-8): an editor may send a lone UTF-16 surrogate
(JSON allows "\\ud800"), which strict UTF-8 refuses; tree-sitter takes the three bytes as an invalid
character, and every byte offset here is computed the same way.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

from tree_sitter import Language, Parser, Point, Range, Tree

log = logging.getLogger(__name__)

# Bounded work per keystroke: larger files are handled line by line. tree-sitter's incremental
# re-parse of one typed character grows faster than the file (Python or JavaScript, our 2-core CPU:
# 1 ms at 150 KB, 9 ms at 500 KB, 20 ms at 1 MB, 23-45 ms at 1.5 MB; bench/big_documents.py), so
# documents from WINDOW_FROM_BYTES on are parsed in windows (below). Past this size even that costs
# a few ms a key more than line-based handling (the whole text is still encoded and compared: 1.5 MB
# +9 ms, 5 MB +12 ms at p95 in the bench), for syntax-aware prompts in files nobody types into often.
MAX_PARSE_BYTES = 1_000_000
# A document this large is parsed in a window around the cursor instead, WINDOW_HALF bytes either side
# widened to top-level lines (`window_around`; tree-sitter's ranges keep every offset the document's):
# typing into a 900 KB Python file re-parsed it in 13 ms a key, a 128 KB window of it in 0.7 ms.
# A snapshot asked for at a byte has at least WINDOW_MARGIN of tree on each side of it (or the
# document's edge), more than a prompt's windows read; a move past that parses a new window (20-45 ms).
WINDOW_FROM_BYTES = 256_000
WINDOW_HALF, WINDOW_MARGIN = 48_000, 24_000
WINDOW_MAX_WIDEN = 256_000  # how far a window edge looks for a top-level line before it cuts at any line
PARSE_S_BASE, PARSE_S_PER_MB = 0.25, 1.5  # a parse's time budget (an ordinary 1.2 MB file takes ~0.9 s)
# A file of lines this long on average is minified or generated: no tree. Typing into the one line
# of a 1.4 MB minified JavaScript file re-parsed it incrementally in 0.24 s a key, on the event loop.
MINIFIED_MIN_BYTES, MINIFIED_MEAN_LINE_BYTES = 50_000, 1_000
_CHUNK = 16384  # bytes handed to the parser per read
_BLOCK = 4096  # bytes compared at a time to find what an edit changed
UTF8 = ("utf-8", "surrogatepass")  # encode(*UTF8): see the module docstring

# our name -> (module of the grammar wheel, function returning the language pointer)
GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "lua": ("tree_sitter_lua", "language"),
}
LANGUAGE_IDS = {  # LSP languageId -> our name
    "python": "python", "javascript": "javascript", "javascriptreact": "javascript", "typescript": "typescript",
    "typescriptreact": "tsx", "go": "go", "rust": "rust", "java": "java", "c": "c", "cpp": "cpp", "lua": "lua",
}
EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".lua": "lua",
}
# A grammar of its own for a dialect of a language (a model trained on TypeScript knows TSX).
DIALECT_OF = {"tsx": "typescript"}
# Node types that are blocks: a suggestion that closes one and goes on has left it.
BLOCK_TYPES = {
    "python": {"block", "module"},
    "javascript": {"statement_block", "class_body", "program", "object", "switch_body"},
    "typescript": {"statement_block", "class_body", "program", "object", "switch_body", "interface_body",
                   "enum_body", "object_type"},
    "go": {"block", "source_file", "field_declaration_list", "literal_value"},
    "rust": {"block", "source_file", "declaration_list", "field_declaration_list", "match_block"},
    "java": {"block", "class_body", "program", "interface_body", "enum_body", "switch_block",
             "constructor_body"},
    "c": {"compound_statement", "translation_unit", "field_declaration_list", "initializer_list"},
    "cpp": {"compound_statement", "translation_unit", "field_declaration_list", "declaration_list",
            "initializer_list"},
    "lua": {"block", "chunk"},
}
BLOCK_TYPES["tsx"] = BLOCK_TYPES["typescript"]
# Definitions whose header (signature line) is worth keeping in the prompt when the cursor is inside.
DEFINITION_TYPES = {
    "python": {"function_definition", "class_definition"},
    "javascript": {"function_declaration", "method_definition", "class_declaration", "generator_function_declaration"},
    "typescript": {"function_declaration", "method_definition", "class_declaration", "interface_declaration",
                   "abstract_class_declaration"},
    "go": {"function_declaration", "method_declaration", "type_declaration"},
    "rust": {"function_item", "impl_item", "trait_item", "mod_item"},
    "java": {"method_declaration", "class_declaration", "interface_declaration", "constructor_declaration",
             "enum_declaration"},
    "c": {"function_definition", "struct_specifier"},
    "cpp": {"function_definition", "class_specifier", "struct_specifier", "namespace_definition"},
    "lua": {"function_declaration", "function_definition"},
}
DEFINITION_TYPES["tsx"] = DEFINITION_TYPES["typescript"]
MAX_HEADER_ROWS = 3  # of one definition's signature


@lru_cache(maxsize=None)
def get_language(name: str) -> Language | None:
    spec = GRAMMARS.get(name)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec[0])
    except ImportError:
        return None
    return Language(getattr(module, spec[1])())


def language_for(language_id: str = "", path: str = "") -> str | None:
    """Our language name from an LSP languageId, else from the file extension; None if unknown."""
    name = LANGUAGE_IDS.get(language_id or "")
    if name is None and path:
        name = EXTENSIONS.get(PurePosixPath(path).suffix.lower())
    return name if name is not None and get_language(name) is not None else None


_local = threading.local()


def parser_for(name: str) -> Parser:
    """One Parser per thread and language (parsers are not thread-safe)."""
    cache = getattr(_local, "parsers", None)
    if cache is None:
        cache = _local.parsers = {}
    parser = cache.get(name)
    if parser is None:
        parser = cache[name] = Parser(get_language(name))
    return parser


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix: block by block, then by binary search inside the first block that
    differs (slices of whole documents compared by binary search copied megabytes per key)."""
    n, at = min(len(a), len(b)), 0
    while at < n and a[at:at + _BLOCK] == b[at:at + _BLOCK]:
        at = min(at + _BLOCK, n)
    lo, hi = at, min(at + _BLOCK, n)
    while lo < hi:  # invariant: a[:lo] == b[:lo]
        mid = (lo + hi + 1) // 2
        if a[at:mid] == b[at:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most min(len(a), len(b)) - limit (it may not overlap the prefix)."""
    n, at = min(len(a), len(b)) - limit, 0
    la, lb = len(a), len(b)
    while at < n:
        step = min(at + _BLOCK, n)
        if a[la - step:la - at] != b[lb - step:lb - at]:
            break
        at = step
    lo, hi = at, min(at + _BLOCK, n)
    while lo < hi:  # invariant: the last lo bytes agree
        mid = (lo + hi + 1) // 2
        if a[la - mid:la - at] == b[lb - mid:lb - at]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(source: bytes, offset: int, known: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(row, byte column) of `offset`. Rows are counted from `known`, a (byte offset, its row) pair:
    near one, a point in a document of megabytes costs no count of all its lines."""
    at, row = known
    row += source.count(b"\n", at, offset) if offset >= at else -source.count(b"\n", offset, at)
    return row, offset - (source.rfind(b"\n", 0, offset) + 1)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view for one document version: never edited after it is made."""

    language: str
    tree: Tree | None
    source: bytes
    bounded: bool = False  # parses of this document have a time budget (the module docstring)
    gave_up: bool = False  # one ran out of time: no tree, and no more parsing, from here on
    window: tuple[int, int] | None = None  # the bytes the tree covers, for a document parsed in a window

    def covers(self, at: int) -> bool:
        """Whether the tree reaches WINDOW_MARGIN bytes past `at` on both sides (or the document's edge)."""
        if self.tree is None or self.window is None:
            return self.tree is not None
        return _covers(self.window, len(self.source), at)


def _covers(window: tuple[int, int], size: int, at: int) -> bool:
    start, end = window
    return (start == 0 or start + WINDOW_MARGIN <= at) and (end == size or at <= end - WINDOW_MARGIN)


def minified(source: bytes) -> bool:
    """Whether a file is minified or generated code: long, in few lines (a count at memchr speed)."""
    return len(source) >= MINIFIED_MIN_BYTES and len(source) > MINIFIED_MEAN_LINE_BYTES * (source.count(b"\n") + 1)


def parseable(source: bytes) -> bool:
    """Whether a file gets a tree of the whole of it: within MAX_PARSE_BYTES and not minified."""
    return len(source) <= MAX_PARSE_BYTES and not minified(source)


def windowed(source: bytes) -> bool:
    """Whether a document is parsed in windows (WINDOW_FROM_BYTES) rather than whole."""
    return WINDOW_FROM_BYTES <= len(source) <= MAX_PARSE_BYTES


# Lines a window may start at: where a top-level item can begin, after a blank line. Python's are
# named, since a blank line then text at column 0 also occurs inside a string.
_TOP_LEVEL = {"python": re.compile(rb"(?:async[ \t]+)?def[ \t]+\w|class[ \t]+\w|import[ \t]+\w|"
                                   rb"from[ \t]+[\w.]+[ \t]+import\b|@\w")}
_ANY_TOP_LEVEL = re.compile(rb"[A-Za-z_#@/]")
_BLANK_LINE = re.compile(rb"\n(?:\r?\n)+")  # a line break, then blank lines (LF or CRLF)


def _top_level_line(source: bytes, language: str, at: int, forward: bool) -> int:
    """The start of the nearest line at or before `at` (after it, forward) where a top-level item
    begins (_TOP_LEVEL); the line start nearest `at` if none is within WINDOW_MAX_WIDEN."""
    starts = _TOP_LEVEL.get(language, _ANY_TOP_LEVEL)
    if forward:
        for gap in _BLANK_LINE.finditer(source, at, min(len(source), at + WINDOW_MAX_WIDEN)):
            if starts.match(source, gap.end()):
                return gap.end()
        cut = source.find(b"\n", at) + 1
        return cut if cut > 0 else len(source)
    pos, limit = at, max(0, at - WINDOW_MAX_WIDEN)
    while pos > limit:
        gap = max(source.rfind(b"\n\n", limit, pos), source.rfind(b"\n\r\n", limit, pos))
        if gap < 0:
            break
        line = _BLANK_LINE.match(source, gap).end()
        if line <= at and starts.match(source, line):
            return line
        pos = gap
    return source.rfind(b"\n", 0, at) + 1


def window_around(source: bytes, language: str, at: int) -> tuple[int, int]:
    """The bytes to parse for a cursor at byte `at`: WINDOW_HALF either side, widened to top-level lines
    (so the definitions around the cursor start inside it, however long they are)."""
    start = 0 if at - WINDOW_HALF <= 0 else _top_level_line(source, language, at - WINDOW_HALF, forward=False)
    end = len(source) if at + WINDOW_HALF >= len(source) else _top_level_line(source, language, at + WINDOW_HALF,
                                                                                  forward=True)
    return start, end


def _parse(language: str, source: bytes, old: Tree | None, bounded: bool = False,
           window: tuple[int, int] | None = None, known: tuple[int, int] = (0, 0)) -> Snapshot:
    # A window is parsed whatever the document's size (windowed documents are within the limit).
    treeless = minified(source) if window is not None else not parseable(source)
    if treeless:
        return Snapshot(language, None, source, bounded)
    return _run_parser(language, source, old, bounded, window, known)


def _run_parser(language: str, source: bytes, old: Tree | None, bounded: bool,
                window: tuple[int, int] | None = None, known: tuple[int, int] = (0, 0)) -> Snapshot:
    """_parse for a source already known to be parseable; `window`: only those bytes (`known`: as
    _point takes it)."""
    parser = parser_for(language)
    if window is None:
        parser.included_ranges = []  # the whole document (the parser is shared, per thread)
        size = len(source)
    else:
        start, end = window
        parser.included_ranges = [Range(Point(*_point(source, start, known)), Point(*_point(source, end, known)),
                                        start, end)]
        size = end - start
    if not bounded:
        return Snapshot(language, parser.parse(source, old) if old else parser.parse(source), source, window=window)
    deadline = time.monotonic() + PARSE_S_BASE + PARSE_S_PER_MB * size / 1e6
    if old is not None:
        # Incremental: parsed whole and timed after the fact. Through a read callback (which can stop a
        # parse) py-tree-sitter 0.26 leaks every chunk handed to an incremental parse, ~14 KB a
        # keystroke. The last parse of this document fit the budget and an edit changes little, so
        # one over-budget parse can happen, once: after it the document is handled line by line.
        tree = parser.parse(source, old)
        expired = time.monotonic() > deadline
    else:
        expired = False

        def read(offset: int, _point) -> bytes:  # the parser reads through this, so it can be stopped
            nonlocal expired
            if expired or time.monotonic() > deadline:
                expired = True
                return b""  # the end of the input: the parse finishes at once, and its tree is dropped
            return source[offset:offset + _CHUNK]

        tree = parser.parse(read)
    if expired:
        log.warning("a %s parse of %d bytes ran out of time: this document is handled line by line from now on",
                    language, len(source))
        return Snapshot(language, None, source, bounded, gave_up=True, window=window)
    return Snapshot(language, tree, source, bounded, window=window)


def _edited(old: Snapshot, new: bytes) -> tuple[Tree, int, int, int, tuple[int, int]]:
    """old's tree edited to `new` (a copy: snapshots handed out earlier stay untouched), the edit's
    start, old end and new end, and (start, its row) (for _point)."""
    start = _common_prefix(old.source, new)
    suffix = _common_suffix(old.source, new, start)
    old_end, new_end = len(old.source) - suffix, len(new) - suffix
    start_point = _point(old.source, start)
    known = (start, start_point[0])  # the same row in both: they agree up to start
    edited = old.tree.copy()
    edited.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end, start_point=start_point,
                old_end_point=_point(old.source, old_end, known), new_end_point=_point(new, new_end, known))
    return edited, start, old_end, new_end, known


def reparse(old: Snapshot, text: str, near: int | None = None, windows: bool = False) -> Snapshot:
    """The snapshot of `text`, parsed incrementally from `old` (which stays untouched). With
    `windows`, a large document (`windowed`) gets a tree that covers byte `near` (Snapshot.covers),
    or the edit if None."""
    new = text.encode(*UTF8)
    if old.gave_up:
        return Snapshot(old.language, None, new, old.bounded, gave_up=True)
    if windows and windowed(new):
        return _reparse_window(old, new, near)
    if old.tree is None or old.window is not None:
        return _parse(old.language, new, None, old.bounded)
    if not parseable(new):  # checked once a key: the newline count reads the whole document
        return Snapshot(old.language, None, new, old.bounded)
    return _run_parser(old.language, new, _edited(old, new)[0], old.bounded)


def _reparse_window(old: Snapshot, new: bytes, near: int | None) -> Snapshot:
    """reparse for a document parsed in windows: the old window, its end moved by the edit, while the
    edit lies inside it and it covers `near`; else a new window around `near` (or the edit)."""
    if minified(new):
        return Snapshot(old.language, None, new, old.bounded)
    if old.tree is not None and old.window is not None:
        if new == old.source:
            if near is None or old.covers(near):
                return old
        else:
            start, end = old.window
            edited, at, old_end, new_end, known = _edited(old, new)
            moved = (start, end + new_end - old_end)
            if start <= at and old_end <= end and _covers(moved, len(new), at if near is None else near):
                return _run_parser(old.language, new, edited, old.bounded, moved, known)
            near = at if near is None else near
    if near is None:  # nothing says where: no tree until a caller does
        return Snapshot(old.language, None, new, old.bounded)
    return _run_parser(old.language, new, None, old.bounded, window_around(new, old.language, near))


class DocumentSyntax:
    """The tree of one document, updated from each new text by an incremental re-parse; `bounded`:
    with a time budget per parse (the module docstring). With `windows` (the server's documents,
    where each keystroke's re-parse counts), a large one (`windowed`) is parsed in a window around
    `near` (a byte offset) and has no tree until one is given; offline tools parse files whole."""

    def __init__(self, language: str, text: str, bounded: bool = False, near: int | None = None,
                 windows: bool = False):
        self.language, self.windows = language, windows
        source = text.encode(*UTF8)
        if windows and windowed(source):
            empty = Snapshot(language, None, source, bounded)
            self.snapshot = empty if near is None else _reparse_window(empty, source, near)
        else:
            self.snapshot = _parse(language, source, None, bounded)

    @property
    def windowed(self) -> bool:
        return self.windows and windowed(self.snapshot.source)

    def update(self, text: str, near: int | None = None) -> Snapshot:
        self.snapshot = reparse(self.snapshot, text, near, self.windows)
        return self.snapshot


def byte_offset(lines, line: int, character: int) -> int:
    """UTF-8 byte offset of (line, code-point column) in the document made of `lines`. Joined and
    encoded in C: a line at a time in Python took ~10 ms at line 80,000."""
    head = "".join(lines[:line]) + lines[line][:character]
    return len(head) if head.isascii() else len(head.encode(*UTF8))


def enclosing_block_end(snapshot: Snapshot, cursor: int, inserted: bytes) -> int | None:
    """Where the block enclosing the cursor ends once `inserted` is typed at byte `cursor`, as an
    offset into `inserted`; None if the block does not end inside it (or there is no tree).

    Parses the document with the insertion (incrementally from the snapshot's tree) and walks up
    from the cursor to the nearest block node that starts before it.
    """
    if snapshot.tree is None or not inserted:
        return None
    source = snapshot.source[:cursor] + inserted + snapshot.source[cursor:]
    edited = snapshot.tree.copy()
    end = cursor + len(inserted)
    at = _point(snapshot.source, cursor)
    edited.edit(start_byte=cursor, old_end_byte=cursor, new_end_byte=end, start_point=at, old_end_point=at,
                new_end_point=_point(source, end, (cursor, at[0])))
    window = snapshot.window
    if window is not None:  # the insertion inside it moves its end
        if not window[0] <= cursor <= window[1]:
            return None
        window = (window[0], window[1] + len(inserted))
    tree = _parse(snapshot.language, source, edited, snapshot.bounded, window, (cursor, at[0])).tree
    if tree is None:  # ran out of time
        return None
    blocks = BLOCK_TYPES.get(snapshot.language, set())
    opens_block = inserted[:1] in (b"{", b"(", b"[")
    node = tree.root_node.descendant_for_byte_range(cursor, cursor)
    while node is not None:
        # A Python or Lua block starts at its first statement, which may be the inserted text; a
        # block the insertion itself opens ("{ ...") is not the enclosing one.
        starts_before = node.start_byte < cursor or (node.start_byte == cursor and not opens_block)
        if node.type in blocks and starts_before and cursor <= node.end_byte:
            if node.end_byte < end and node.parent is not None:
                return node.end_byte - cursor
            return None
        node = node.parent
    return None


def _byte_col(line: str, character: int) -> int:
    return len(line[:character].encode(*UTF8))


def anchor_point(snapshot: Snapshot, lines, row: int) -> tuple[int, int] | None:
    """Where the cursor's context is read from: the last character of the last non-blank line above it. Never the
    cursor line itself, whose text changes with every keystroke: the prompt prefix must not."""
    prev = row - 1
    while prev >= 0 and not lines[prev].strip():
        prev -= 1
    if prev < 0:
        return None
    text = lines[prev].rstrip()
    return prev, _byte_col(text, len(text) - 1)  # on its last character: inside, not at a node's end


def is_statement_boundary(snapshot: Snapshot, lines, row: int, anchor: tuple[int, int] | None = None) -> bool:
    """Whether a window may start (or end) at `row`: the smallest node spanning the line break before
    it is a block or a definition (between statements, or between a signature and its body), and,
    given the anchor (anchor_point), one around it: a window never starts or ends in the middle of a
    sibling definition."""
    if snapshot.tree is None or row <= 0 or row >= len(lines):
        return True
    body = lines[row].rstrip("\r\n")
    first = len(body) - len(body.lstrip())
    prev = lines[row - 1].rstrip("\r\n")
    node = snapshot.tree.root_node.named_descendant_for_point_range(
        (row - 1, _byte_col(prev, len(prev))), (row, _byte_col(body, first)))
    if node is None or node.parent is None:
        return True
    if node.type not in BLOCK_TYPES.get(snapshot.language, ()) and \
            node.type not in DEFINITION_TYPES.get(snapshot.language, ()):
        return False
    return anchor is None or node.start_point <= anchor <= node.end_point


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" \t"))


def enclosing_header_rows(snapshot: Snapshot, lines, row: int, character: int) -> list[int]:
    """Rows of the signature lines of the definitions around the cursor, outermost first: those
    containing the anchor (anchor_point) and indented less than the cursor line."""
    anchor = anchor_point(snapshot, lines, row)
    if snapshot.tree is None or anchor is None:
        return []
    kinds = DEFINITION_TYPES.get(snapshot.language, ())
    cursor_indent = _indent(lines[row].rstrip("\r\n")[:character])
    node = snapshot.tree.root_node.named_descendant_for_point_range(anchor, anchor)
    rows: list[int] = []
    while node is not None:
        start = node.start_point.row
        if node.type in kinds and start < row and _indent(lines[start]) < cursor_indent:
            body = node.child_by_field_name("body")
            end = body.start_point.row if body is not None and body.start_point.row > start else start + 1
            rows[:0] = range(start, min(end, start + MAX_HEADER_ROWS, row))
        node = node.parent
    return rows
