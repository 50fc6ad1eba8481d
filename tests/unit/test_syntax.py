"""Tree-sitter layer: every listed grammar loads from its wheel; incremental trees equal full
parses; block-end detection per language."""

import random
from pathlib import Path

import pytest

from completer.syntax import (
    GRAMMARS,
    MAX_PARSE_BYTES,
    DocumentSyntax,
    byte_offset,
    enclosing_block_end,
    get_language,
    language_for,
    minified,
    parser_for,
)

SAMPLES = {
    "python": "def f(x):\n    if x:\n        return 1\n    return 2\n",
    "javascript": "function f(x) {\n  if (x) {\n    return 1;\n  }\n  return 2;\n}\n",
    "typescript": "function f(x: number): number {\n  return x + 1;\n}\n",
    "tsx": "const A = () => <div>{1}</div>;\n",
    "go": "package main\n\nfunc f(x int) int {\n\treturn x + 1\n}\n",
    "rust": "fn f(x: i32) -> i32 {\n    x + 1\n}\n",
    "java": "class A {\n  int f(int x) {\n    return x + 1;\n  }\n}\n",
    "c": "int f(int x) {\n  return x + 1;\n}\n",
    "cpp": "int f(int x) {\n  return x + 1;\n}\n",
    "lua": "local function f(x)\n  return x + 1\nend\n",
}


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_every_grammar_loads_and_parses(name):
    assert get_language(name) is not None
    tree = parser_for(name).parse(SAMPLES[name].encode())
    assert not tree.root_node.has_error


def test_language_detection_and_fallbacks():
    assert language_for("python") == "python"
    assert language_for("typescriptreact") == "tsx"
    assert language_for("", "src/main.rs") == "rust"
    assert language_for("plaintext", "notes.txt") is None
    assert language_for("cobol", "x.cbl") is None


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_incremental_updates_equal_full_parses(name):
    rng = random.Random(name)
    text = SAMPLES[name] * 3
    doc = DocumentSyntax(name, text)
    pieces = ["x", " ", "\n", "(", ")", "{", "}", "é", "return ", ";", "  "]
    compared = 0
    for i in range(60):
        if i % 3 == 0:  # come back to valid code now and then, where trees must match exactly
            text = SAMPLES[name] * 3
            assert str(doc.update(text).tree.root_node) == str(parser_for(name).parse(text.encode()).root_node)
            compared += 1
            continue
        a = rng.randrange(len(text) + 1)
        b = min(len(text), a + rng.randrange(4))
        text = text[:a] + "".join(rng.choice(pieces) for _ in range(rng.randrange(3))) + text[b:]
        snap = doc.update(text)
        assert snap.source == text.encode() and snap.tree.root_node.end_byte <= len(snap.source)
        fresh = parser_for(name).parse(text.encode())
        if not fresh.root_node.has_error:  # error recovery may legitimately differ when re-parsing
            assert str(snap.tree.root_node) == str(fresh.root_node)
            compared += 1
    assert compared >= 20


def test_snapshots_are_never_mutated_by_later_edits():
    doc = DocumentSyntax("python", SAMPLES["python"])
    first = doc.snapshot
    before = str(first.tree.root_node)
    doc.update("x = 1\n" + SAMPLES["python"])
    assert str(first.tree.root_node) == before and first.source == SAMPLES["python"].encode()


def test_huge_documents_get_no_tree():
    text = "x = 1\n" * (MAX_PARSE_BYTES // 6 + 10)
    doc = DocumentSyntax("python", text, near=len(text) // 2, windows=True)
    assert doc.snapshot.tree is None and doc.update(text, len(text) // 2).tree is None
    assert doc.update("x = 2\n").tree is not None


def test_large_documents_get_a_tree_only_around_a_cursor():
    text = "x = 1\n" * (MAX_PARSE_BYTES // 12)
    whole = DocumentSyntax("python", text)  # offline tools: whole files, as before
    assert not whole.windowed and whole.snapshot.tree is not None and whole.snapshot.window is None
    doc = DocumentSyntax("python", text, windows=True)  # the server's documents
    assert doc.windowed and doc.snapshot.tree is None  # nothing says where yet: no parse at all
    near = len(text) // 2
    around = doc.update(text, near)
    assert around.tree is not None and around.window[0] < near < around.window[1] < len(text)
    assert doc.update("x = 2\n").tree is not None and doc.snapshot.window is None  # small again: whole


def _repository_python(size: int) -> str:
    """Real code of at least `size` bytes: this repository's Python files, one after another."""
    root = Path(__file__).resolve().parents[2]
    parts, total = [], 0
    for path in sorted((root / "completer").rglob("*.py")) + sorted((root / "lsp").glob("*.py")):
        parts.append(path.read_text())
        total += len(parts[-1])
        if total >= size:
            break
    return "\n\n".join(parts)


def _answers(snapshot, lines, row: int, character: int) -> tuple:
    """What prompts and post-processing ask of a tree at a cursor (prompt.syntax_cuts, and where a
    block would end after a suggestion)."""
    from completer.syntax import anchor_point, enclosing_header_rows, is_statement_boundary

    anchor = anchor_point(snapshot, lines, row)
    cuts = tuple(is_statement_boundary(snapshot, lines, r, anchor) for r in range(max(1, row - 80), row + 40))
    cursor = byte_offset(lines, row, character)
    ends = tuple(enclosing_block_end(snapshot, cursor, text.encode()) for text in ("x = 1\n", "pass\n\nfoo()\n}\n"))
    return anchor, cuts, tuple(enclosing_header_rows(snapshot, lines, row, character)), ends


@pytest.mark.parametrize("language", ["python", "python-crlf", "typescript", "lua"])
def test_a_window_answers_what_the_whole_tree_answers_near_the_cursor(language):
    """A large document is parsed only around the cursor: the same answers, at cursors anywhere in
    real code, as the tree of the whole document (parsed whole here, under the old size limit)."""
    from completer.lines import split_lines
    from completer.syntax import WINDOW_FROM_BYTES, _parse

    root = Path(__file__).resolve().parents[2]
    if language.startswith("python"):
        text = _repository_python(WINDOW_FROM_BYTES * 2)
        if language == "python-crlf":  # blank lines are "\r\n\r\n" there
            text, language = text.replace("\n", "\r\n"), "python"
    else:
        one = {"typescript": root / "editors/vscode/src/extension.ts",
               "lua": root / "editors/neovim/lua/completer/init.lua"}[language].read_text()
        text = "\n".join([one] * (WINDOW_FROM_BYTES * 2 // len(one) + 1))
    assert WINDOW_FROM_BYTES * 2 <= len(text.encode()) <= MAX_PARSE_BYTES
    lines = split_lines(text)
    whole = _parse(language, text.encode(), None)
    assert whole.window is None and whole.tree is not None
    rng = random.Random(3)
    checked = 0
    for row in sorted(rng.sample(range(100, len(lines) - 50), 24)):
        body = lines[row].rstrip("\r\n")
        character = len(body) - len(body.lstrip())
        doc = DocumentSyntax(language, text, near=byte_offset(lines, row, character), windows=True)
        window = doc.snapshot.window
        assert window is not None and window[1] - window[0] < len(text.encode()) // 2
        assert _answers(doc.snapshot, lines, row, character) == _answers(whole, lines, row, character), (row, window)
        checked += 1
    assert checked == 24


def test_typing_keeps_the_window_and_a_cursor_far_away_moves_it():
    from completer.syntax import WINDOW_FROM_BYTES, WINDOW_MARGIN

    text = _repository_python(WINDOW_FROM_BYTES * 2)
    at = text.index("\n\ndef ", len(text) // 2) + 1  # a blank line before a function
    doc = DocumentSyntax("python", text, bounded=True, near=len(text[:at].encode()), windows=True)
    start, end = doc.snapshot.window
    assert text.encode()[start:].startswith((b"def ", b"class ", b"@", b"import ", b"from ", b"async def "))
    assert not doc.snapshot.tree.root_node.has_error
    for i, ch in enumerate("x = compute(1)\n"):  # typed at the cursor: incremental, the window's end moves along
        text = text[:at + i] + ch + text[at + i:]
        snapshot = doc.update(text, len((text[:at + i + 1]).encode()))
        assert snapshot.window == (start, end + i + 1)
    assert not snapshot.tree.root_node.has_error
    node = snapshot.tree.root_node.descendant_for_byte_range(len(text[:at].encode()), len(text[:at].encode()) + 1)
    assert node.text.decode().startswith("x")
    assert snapshot.covers(len(text[:at].encode())) and not snapshot.covers(end + WINDOW_MARGIN * 4)
    far = len(text[:200].encode())
    moved = doc.update(text, far)  # no edit, another place: a new window around it
    assert moved.window[0] == 0 and moved.covers(far) and moved.window != (start, end + 15)
    assert doc.update(text, far) is moved  # covered: nothing parsed


def test_the_span_an_edit_changed_is_what_byte_by_byte_comparison_finds():
    from completer.syntax import _common_prefix, _common_suffix

    def by_bytes(a, b, limit=0, from_end=False):
        n, i = min(len(a), len(b)) - limit, 0
        while i < n and (a[-1 - i] == b[-1 - i] if from_end else a[i] == b[i]):
            i += 1
        return i

    rng = random.Random(5)
    for _ in range(400):  # lengths around the 4,096-byte blocks, edits small and large
        a = bytes(rng.choice(b"ab\n") for _ in range(rng.choice([0, 1, 5, 4095, 4096, 4097, 9000])))
        b = bytearray(a)
        for _ in range(rng.randrange(3)):
            at, size = rng.randrange(len(b) + 1), rng.choice([1, 3, 5000])
            if rng.random() < 0.5:
                b[at:at] = bytes(rng.choice(b"ab\n") for _ in range(size))
            else:
                del b[at:at + size]
        b = bytes(b)
        prefix = _common_prefix(a, b)
        assert prefix == by_bytes(a, b)
        assert _common_suffix(a, b, prefix) == by_bytes(a, b, prefix, from_end=True)


def test_minified_documents_get_no_tree():
    one_line = "var a=function(b){return b+1};" * 2_000  # 60 KB in one line
    assert minified(one_line.encode()) and not minified(("x = 1\n" * 10_000).encode())
    assert not minified(b"var a=1;" * 1_000)  # a long line in a small file is parsed
    doc = DocumentSyntax("javascript", "let x = 1;\n")
    assert doc.snapshot.tree is not None
    assert doc.update(one_line).tree is None  # pasted in: handled line by line from then on
    assert DocumentSyntax("javascript", one_line).snapshot.tree is None
    assert doc.update("let x = 2;\n").tree is not None


# (language, document with | at the cursor, multi-line suggestion, what survives block truncation)
BLOCK_CASES = [
    ("python", "def f(x):\n    |\n\ndef g():\n    pass\n",
     "y = x + 1\n    return y\n\ndef h():\n    pass", "y = x + 1\n    return y"),
    ("python", "class A:\n    def f(self):\n        |\n", "return 1", None),
    ("javascript", "function f(x) {\n  |\n}\n", "const y = x + 1;\n  return y;\n}\nfunction g() {}", "const y = x + 1;\n  return y;\n}"),
    ("typescript", "function f(x: number) {\n  |\n}\n", "return x;\n}\nlet z = 1;", "return x;\n}"),
    ("go", "package main\n\nfunc f(x int) int {\n\t|\n}\n", "y := x + 1\n\treturn y\n}\nfunc g() {}", "y := x + 1\n\treturn y\n}"),
    ("rust", "fn f(x: i32) -> i32 {\n    |\n}\n", "let y = x + 1;\n    y\n}\nfn g() {}", "let y = x + 1;\n    y\n}"),
    ("java", "class A {\n  int f(int x) {\n    |\n  }\n}\n", "return x;\n  }\n  int g() { return 0; }", "return x;\n  }"),
    ("c", "int f(int x) {\n  |\n}\n", "return x;\n}\nint g(void) { return 0; }", "return x;\n}"),
    ("cpp", "int f(int x) {\n  |\n}\n", "return x;\n}\nint g() { return 0; }", "return x;\n}"),
    # Lua's block ends before `end`, which the document already has after the cursor
    ("lua", "local function f(x)\n  |\nend\n", "local y = x + 1\n  return y\nend\nlocal function g() end",
     "local y = x + 1\n  return y"),
]


@pytest.mark.parametrize("lang,doc,suggestion,kept", BLOCK_CASES)
def test_block_end_detection(lang, doc, suggestion, kept):
    text = doc.replace("|", "")
    cursor_text = doc[:doc.index("|")]
    lines = text.splitlines(keepends=True)
    line = cursor_text.count("\n")
    character = len(cursor_text) - (cursor_text.rfind("\n") + 1)
    snap = DocumentSyntax(lang, text).snapshot
    cut = enclosing_block_end(snap, byte_offset(lines, line, character), suggestion.encode())
    got = suggestion if cut is None else suggestion.encode()[:cut].decode()
    assert got == (suggestion if kept is None else kept)


def test_a_parse_past_its_time_budget_leaves_the_document_line_based():
    """A definition followed by thousands of comment lines makes tree-sitter-python's parse quadratic
    (10,000 lines: ~4.5 s, and as long again per keystroke at their end); the server's documents
    parse with a time budget and, once over it, are not parsed again."""
    import time

    from completer.syntax import PARSE_S_BASE, PARSE_S_PER_MB, DocumentSyntax

    text = "def generated(): ...\n" + "# padding\n" * 12_000
    budget = PARSE_S_BASE + PARSE_S_PER_MB * len(text) / 1e6
    t0 = time.monotonic()
    doc = DocumentSyntax("python", text, bounded=True)
    assert time.monotonic() - t0 < budget + 0.5
    assert doc.snapshot.tree is None and doc.snapshot.gave_up
    t0 = time.monotonic()
    assert doc.update(text + "x = 1\n").tree is None and time.monotonic() - t0 < 0.1  # no second try
    ordinary = DocumentSyntax("python", "def f(x):\n    return x\n" * 2000, bounded=True)
    assert ordinary.snapshot.tree is not None and not ordinary.snapshot.gave_up


def test_incremental_reparses_of_a_bounded_document_keep_no_memory():
    """py-tree-sitter 0.26 leaks every chunk a read callback hands to an incremental parse (~14 KB a
    keystroke, the soak's steady memory growth): bounded documents re-parse without one."""
    import gc
    import tracemalloc

    from completer.syntax import DocumentSyntax

    text = "def f(x):\n    return x\n" * 600  # ~14 KB
    doc = DocumentSyntax("python", text, bounded=True)
    for _ in range(20):
        text = text[:5000] + "y" + text[5000:]
        doc.update(text)
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            text = text[:5000] + "y" + text[5000:]
            assert doc.update(text).tree is not None
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 300 * 1024, f"{grown / 300:.0f} bytes kept per keystroke"


def test_an_incremental_parse_over_its_budget_gives_up_once(monkeypatch):
    """Timed after the fact: the document is handled line by line from the next keystroke on."""
    from completer import syntax
    from completer.syntax import DocumentSyntax

    doc = DocumentSyntax("python", "def f(x):\n    return x\n", bounded=True)
    assert doc.snapshot.tree is not None
    clock = iter([0.0, 100.0])
    monkeypatch.setattr(syntax.time, "monotonic", lambda: next(clock))
    snap = doc.update("def f(x):\n    return x + 1\n")
    assert snap.tree is None and snap.gave_up
    monkeypatch.undo()
    assert doc.update("def f(x):\n    return x + 2\n").gave_up  # not parsed again


def test_byte_offset_against_a_line_at_a_time():
    from completer.lines import split_lines

    lines = split_lines("abc\ncafé ✓\n😀 x\r\n\ud800 lone\nend")
    for line, text in enumerate(lines):
        for character in range(len(text.rstrip("\r\n")) + 1):
            expected = sum(len(ln.encode("utf-8", "surrogatepass")) for ln in lines[:line]) \
                + len(text[:character].encode("utf-8", "surrogatepass"))
            assert byte_offset(lines, line, character) == expected, (line, character)
