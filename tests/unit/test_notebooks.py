"""Notebooks kept as one joined document (lsp/notebooks.py), in process: what the joined text is, where
each cell lands in it, that cell edits, structure changes and recordings keep it equal to the cells,
and what closing leaves behind."""

import random

from lsprotocol import types

from completer.lines import split_lines
from completer.replay.session import read_session
from lsp.documents import Document
from lsp.recording import Recorder
from lsp.server import create_server

NB = "file:///w/analysis.ipynb"
CODE, MARKUP = types.NotebookCellKind.Code, types.NotebookCellKind.Markup


def cell_uri(n: int) -> str:
    return f"vscode-notebook-cell:/w/analysis.ipynb#cell{n}"


def open_notebook(server, cells: list[tuple[int, str, str]]) -> None:
    """cells: (number, language id, text); a "markdown" cell is a markup cell."""
    list(server.protocol.lsp_notebook_document__did_open(types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(
            uri=NB, notebook_type="jupyter-notebook", version=1,
            cells=[types.NotebookCell(kind=MARKUP if lang == "markdown" else CODE, document=cell_uri(n))
                   for n, lang, _ in cells]),
        cell_text_documents=[types.TextDocumentItem(uri=cell_uri(n), language_id=lang, version=1, text=text)
                             for n, lang, text in cells])))


def change(server, version: int, structure=None, edits=()) -> None:
    """edits: (cell number, ((sl, sc), (el, ec)) or None for the whole cell, text)."""
    content = [types.NotebookDocumentCellContentChanges(
        document=types.VersionedTextDocumentIdentifier(uri=cell_uri(n), version=version),
        changes=[types.TextDocumentContentChangeWholeDocument(text=text) if span is None else
                 types.TextDocumentContentChangePartial(
                     range=types.Range(start=types.Position(*span[0]), end=types.Position(*span[1])), text=text)])
        for n, span, text in edits]
    list(server.protocol.lsp_notebook_document__did_change(types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(uri=NB, version=version),
        change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(
            structure=structure, text_content=content or None)))))


def splice(start: int, delete: int, cells=(), opened=(), closed=()):
    """A structure change: cells (number, kind) put at `start` after `delete` are taken out."""
    return types.NotebookDocumentCellChangeStructure(
        array=types.NotebookCellArrayChange(start=start, delete_count=delete, cells=[
            types.NotebookCell(kind=kind, document=cell_uri(n)) for n, kind in cells]),
        did_open=[types.TextDocumentItem(uri=cell_uri(n), language_id=lang, version=1, text=text)
                  for n, lang, text in opened] or None,
        did_close=[types.TextDocumentIdentifier(uri=cell_uri(n)) for n in closed] or None)


def joined(server) -> Document:
    return server.store.get(NB + "#cells")


def test_code_cells_are_joined_in_order_with_a_blank_line_after_each():
    server = create_server()
    open_notebook(server, [(0, "python", "import os\nx = 1"), (1, "markdown", "# Totals"), (2, "python", "y = x\n")])
    doc = joined(server)
    assert doc.text == "import os\nx = 1\n\ny = x\n\n\n"
    assert doc.language_id == "python" and doc.name == "analysis.py"  # the model learned names of code files
    assert doc.syntax is not None  # parsed as one Python file
    first = server.store.locate(cell_uri(0))
    third = server.store.locate(cell_uri(2))
    assert (first.key, first.first_line, first.line_count) == (NB + "#cells", 0, 2)
    assert (third.first_line, third.line_count) == (3, 2)
    assert doc.lines[third.first_line] == "y = x\n"
    assert server.store.locate(cell_uri(1)) is None  # markdown: nothing to complete


def test_random_cell_edits_keep_the_joined_document_equal_to_its_cells():
    rng = random.Random(7)
    server = create_server()
    cells = {0: "import numpy as np\n", 1: "def f(a):\n    return a\n", 2: "f(😀)"}
    open_notebook(server, [(n, "python", text) for n, text in cells.items()])
    notebook = server.store.notebooks[NB]
    pieces = ["x", "\n", "\r\n", "\r", "😀", "é", "", "  return"]
    for version in range(2, 1500):
        n = rng.randrange(3)
        lines = split_lines(cells[n])
        sl = rng.randrange(len(lines))
        el = rng.randrange(sl, len(lines))
        units = [len(line.rstrip("\r\n").encode("utf-16-le")) // 2 for line in lines]
        sc, ec = rng.randint(0, units[sl] + 2), rng.randint(0, units[el] + 2)  # past the end: clamped
        if (sl, sc) > (el, ec):
            sc, ec = ec, sc
        change(server, version, edits=[(n, ((sl, sc), (el, ec)), rng.choice(pieces))])
        cells[n] = notebook.cell(cell_uri(n)).text
        doc = joined(server)
        assert doc.lines == split_lines(doc.text)
        assert len(doc.lines) == notebook.joined_line_count()
        for m in range(3):  # each cell's lines are the joined document's lines at its place
            at = server.store.locate(cell_uri(m))
            cell_lines = split_lines(cells[m])
            got = doc.lines[at.first_line:at.first_line + at.line_count]
            assert [line.rstrip("\r\n") for line in got] == [line.rstrip("\r\n") for line in cell_lines]
    change(server, 2000, edits=[(1, None, "def g():\n    pass")])  # the whole cell
    assert notebook.cell(cell_uri(1)).text == "def g():\n    pass"
    at = server.store.locate(cell_uri(1))
    got = joined(server).lines[at.first_line:at.first_line + at.line_count]
    assert [line.rstrip("\r\n") for line in got] == ["def g():", "    pass"]


def test_cells_added_moved_and_removed():
    server = create_server()
    open_notebook(server, [(0, "python", "a = 1"), (1, "python", "b = 2")])
    change(server, 2, structure=splice(1, 0, [(2, CODE)], opened=[(2, "python", "c = 3")]))
    assert joined(server).text == "a = 1\n\nc = 3\n\nb = 2\n\n"
    # Cell 0 moves to the end: one splice over the cells it passes, without opening or closing any.
    change(server, 4, structure=splice(0, 3, [(2, CODE), (1, CODE), (0, CODE)]))
    assert joined(server).text == "c = 3\n\nb = 2\n\na = 1\n\n"
    change(server, 5, structure=splice(1, 1, [], closed=[1]))
    assert joined(server).text == "c = 3\n\na = 1\n\n"
    assert server.store.locate(cell_uri(1)) is None and cell_uri(1) not in server.store.cell_notebooks
    assert server.store.locate(cell_uri(0)).first_line == 2


def test_a_cell_in_another_language_is_a_document_of_its_own():
    server = create_server()
    open_notebook(server, [(0, "python", "x = 1"), (1, "javascript", "let y = 2"), (2, "python", "z = x")])
    assert joined(server).text == "x = 1\n\nz = x\n\n"
    alone = server.store.locate(cell_uri(1))
    assert (alone.key, alone.first_line, alone.doc.text, alone.doc.language_id) == \
        (cell_uri(1), 0, "let y = 2", "javascript")
    change(server, 2, edits=[(1, ((0, 9), (0, 9)), ";")])
    assert server.store.get(cell_uri(1)).text == "let y = 2;"
    # Two more JavaScript cells: JavaScript is the main language now, and the Python cells stand alone.
    change(server, 3, structure=splice(3, 0, [(3, CODE), (4, CODE)],
                                        opened=[(3, "javascript", "y += 1"), (4, "javascript", "y")]))
    assert joined(server).language_id == "javascript" and joined(server).name == "analysis.js"
    assert joined(server).text == "let y = 2;\n\ny += 1\n\ny\n\n"
    assert server.store.get(cell_uri(0)).text == "x = 1" and server.store.get(cell_uri(1)) is None


def test_closing_the_notebook_forgets_all_of_it():
    server = create_server()
    open_notebook(server, [(0, "python", "x = 1"), (1, "lua", "print(1)")])
    server.last_cursor[NB + "#cells"] = (0, 2)
    list(server.protocol.lsp_notebook_document__did_close(types.DidCloseNotebookDocumentParams(
        notebook_document=types.NotebookDocumentIdentifier(uri=NB),
        cell_text_documents=[types.TextDocumentIdentifier(uri=cell_uri(0)), types.TextDocumentIdentifier(uri=cell_uri(1))])))
    assert not server.store.documents and not server.store.notebooks and not server.store.cell_notebooks
    assert not server.last_cursor


def test_a_change_to_a_notebook_that_is_not_open_is_ignored():
    server = create_server()
    change(server, 2, edits=[(0, ((0, 0), (0, 0)), "x")])
    assert not server.store.documents


def test_a_recording_replays_into_the_same_joined_document(tmp_path):
    server = create_server()
    server.recorder = Recorder(tmp_path / "rec")
    open_notebook(server, [(0, "python", "import os\n"), (1, "python", "s = 'é😀'\nprint(s)")])
    change(server, 2, edits=[(1, ((0, 8), (0, 8)), "x")])  # after the emoji: utf-16 columns in the record
    change(server, 3, edits=[(0, ((1, 0), (1, 0)), "import sys\n")])
    change(server, 4, structure=splice(2, 0, [(2, CODE)], opened=[(2, "python", "sys.exit()")]))
    change(server, 5, edits=[(1, ((1, 6), (1, 7)), "len(s)")])
    server.recorder.close()
    events = read_session(server.recorder.path).events
    opened = next(e for e in events if e["e"] == "open")
    assert opened["uri"] == NB + "#cells"
    replayed = Document.from_text(opened["uri"], opened["language_id"], 1, opened["text"])
    for event in events:
        if event["e"] == "change":
            for sl, sc, el, ec, text in event["changes"]:
                replayed.apply_change(None if sl is None else (sl, sc), None if el is None else (el, ec), text, "utf-16")
    assert replayed.text == joined(server).text == "import os\nimport sys\n\n\ns = 'é😀x'\nprint(len(s))\n\nsys.exit()\n\n"
