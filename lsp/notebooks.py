"""Notebooks (notebookDocument/*, LSP 3.17): a notebook's code cells completed as one file.

A cell alone is a poor prompt: the imports, data and helpers it uses are in the cells above it. So
the cells of a notebook's main language are joined into one Document, in notebook order with a blank
line after each, kept in the store under `<notebook URI>#cells`. A request in such a cell is
answered at the same place in that document and its range mapped back (DocumentStore.locate), so
everything the server does for a file applies to a notebook unchanged: the tree, the cache-stable
prompt with the cells above and below, copies from earlier cells, reuse, prefetch, context from
other files, recording. The prompt names it after the notebook, with its language's extension
(`analysis.ipynb` is `analysis.py`), since the model learned file names of code.

A cell's text edit is the same edit on the joined document shifted by the cell's first line: the
cell's lines are that document's lines there, so the client's columns hold. Changes of structure
(cells added, removed, moved, a cell's language changed) rebuild the joined text. A cell in another
language (a JavaScript cell in a Python notebook) is a document of its own under its cell URI.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from lsprotocol import types

from completer.lines import clamp, line_body, replace_range, split_lines, to_client_units
from completer.syntax import EXTENSIONS, LANGUAGE_IDS, language_for

from .documents import prompt_path

log = logging.getLogger(__name__)

JOINED_SUFFIX = "#cells"
# What the server asks the client to sync: code cells of the languages it parses, in any notebook.
SYNC = types.NotebookDocumentSyncOptions(notebook_selector=[types.NotebookDocumentFilterWithCells(
    notebook="*", cells=[types.NotebookCellLanguage(language=language_id) for language_id in LANGUAGE_IDS])])


@dataclass
class Cell:
    uri: str
    language_id: str
    lines: list[str]  # as documents.Document's: every line but the last ends with its terminator
    code: bool = True  # False for a markdown cell (kept only so that the client's cell indices hold)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@dataclass
class Notebook:
    uri: str
    cells: list[Cell] = field(default_factory=list)  # the synced cells, in notebook order
    language_id: str = ""  # the main language: its cells are joined
    version: int = 0  # of the joined document: one more at each change

    @property
    def key(self) -> str:
        return self.uri + JOINED_SUFFIX

    def members(self) -> list[Cell]:
        return [cell for cell in self.cells if self.joins(cell)]

    def joins(self, cell: Cell) -> bool:
        return cell.code and cell.language_id == self.language_id

    def place(self, cell_uri: str) -> tuple[int, int] | None:
        """(first line in the joined document, line count) of a joined cell; None for another."""
        first = 0
        for cell in self.members():
            if cell.uri == cell_uri:
                return first, len(cell.lines)
            first += len(cell.lines) + 1
        return None

    def joined_text(self) -> str:
        return "".join(text + _after(text) for text in (cell.text for cell in self.members()))

    def joined_line_count(self) -> int:
        members = self.members()
        return sum(len(cell.lines) for cell in members) + len(members) + 1

    def cell(self, uri: str) -> Cell | None:
        return next((cell for cell in self.cells if cell.uri == uri), None)

    def main_language(self) -> str:
        """The language most of its cells are in (the first cell's on a tie)."""
        counts = Counter(cell.language_id for cell in self.cells if cell.code)
        return max(counts, key=lambda language_id: (counts[language_id], -self._first_index(language_id)),
                   default="python")

    def _first_index(self, language_id: str) -> int:
        return next(i for i, cell in enumerate(self.cells) if cell.code and cell.language_id == language_id)

    def prompt_name(self) -> str:
        """`analysis.ipynb` shown as `analysis.py` for a Python notebook."""
        name = prompt_path(self.uri)
        language = language_for(self.language_id)
        extension = next((ext for ext, lang in EXTENSIONS.items() if lang == language), "")
        return str(PurePosixPath(name).with_suffix(extension)) if extension and "." in name else name + extension


def _after(text: str) -> str:
    """What ends a cell's last line, then the blank line. After a lone CR an LF would join it into
    one CRLF line break, and the lines (so every position) would no longer be the cell's."""
    return "\r\r\n" if text.endswith("\r") else "\n\n"


# -- the three notifications ------------------------------------------------------------------------

def opened(ls, params: types.DidOpenNotebookDocumentParams) -> None:
    texts = {item.uri: item for item in params.cell_text_documents}
    notebook = Notebook(params.notebook_document.uri)
    for cell in params.notebook_document.cells:
        item = texts.get(cell.document)
        if item is not None:
            notebook.cells.append(Cell(item.uri, item.language_id, split_lines(item.text),
                                       cell.kind == types.NotebookCellKind.Code))
    old = ls.store.notebooks.get(notebook.uri)
    if old is not None:  # opened twice: the second replaces the first
        closed(ls, old.uri)
    ls.store.notebooks[notebook.uri] = notebook
    _rebuild(ls, notebook)


def changed(ls, params: types.DidChangeNotebookDocumentParams) -> None:
    notebook = ls.store.notebooks.get(params.notebook_document.uri)
    if notebook is None:
        log.warning("notebookDocument/didChange for a notebook that is not open: %s", params.notebook_document.uri)
        return
    cells = params.change.cells
    if cells is None:
        return
    if cells.structure is not None:
        _restructure(notebook, cells.structure)
        _rebuild(ls, notebook)
    for content in cells.text_content or ():
        cell = notebook.cell(content.document.uri)
        if cell is None:
            log.warning("a change to a cell that is not synced: %s", content.document.uri)
            continue
        if notebook.joins(cell):
            _edit_joined(ls, notebook, cell, content.changes)
        elif cell.code:
            _edit_alone(ls, cell, content.document.version, content.changes)
        else:  # markdown: not completed, but kept, for when it turns into code
            cell.lines = _edited(cell.lines, content.changes, ls.store.encoding)


def closed(ls, uri: str) -> None:
    notebook = ls.store.notebooks.pop(uri, None)
    if notebook is None:
        return
    for cell in notebook.cells:
        if ls.store.cell_notebooks.get(cell.uri) != uri:  # a client reused the cell's URI elsewhere
            continue
        del ls.store.cell_notebooks[cell.uri]
        if cell.uri in ls.store.documents:
            _close(ls, cell.uri)
    if notebook.key in ls.store.documents:
        _close(ls, notebook.key)


# -- keeping the joined document -----------------------------------------------------------------

def _restructure(notebook: Notebook, structure: types.NotebookDocumentCellChangeStructure) -> None:
    """Splice the cell list as the client says. A cell that only moved keeps its text."""
    known = {cell.uri: cell for cell in notebook.cells}
    for item in structure.did_close or ():
        known.pop(item.uri, None)
    for item in structure.did_open or ():
        known[item.uri] = Cell(item.uri, item.language_id, split_lines(item.text))
    array = structure.array
    inserted = []
    for new in array.cells or ():
        cell = known.get(new.document)
        if cell is None:
            log.warning("a cell without its text: %s", new.document)
            continue
        cell.code = new.kind == types.NotebookCellKind.Code
        inserted.append(cell)
    start = max(0, min(array.start, len(notebook.cells)))
    notebook.cells[start:start + max(0, array.delete_count)] = inserted


def _rebuild(ls, notebook: Notebook) -> None:
    """The joined document anew (a new one if the main language changed), and each cell where it
    belongs: in it, or a document of its own."""
    store = ls.store
    language_id = notebook.main_language()
    for cell in notebook.cells:
        store.cell_notebooks[cell.uri] = notebook.uri
        alone = cell.code and cell.language_id != language_id
        if not alone and cell.uri in store.documents:
            _close(ls, cell.uri)
        elif alone and cell.uri not in store.documents:
            _open(ls, cell.uri, cell.language_id, 0, cell.text)
    live = {cell.uri for cell in notebook.cells}
    for uri in [uri for uri, owner in store.cell_notebooks.items() if owner == notebook.uri and uri not in live]:
        del store.cell_notebooks[uri]
        if uri in store.documents:
            _close(ls, uri)
    notebook.version += 1
    doc = store.get(notebook.key)
    if doc is not None and language_id == notebook.language_id:
        _replace_joined(ls, notebook, doc)
        return
    if doc is not None:
        _close(ls, notebook.key)
    notebook.language_id = language_id
    doc = _open(ls, notebook.key, language_id, notebook.version, notebook.joined_text())
    doc.name = notebook.prompt_name()


def _replace_joined(ls, notebook: Notebook, doc) -> None:
    text = notebook.joined_text()
    doc.apply_change(None, None, text, "utf-32")
    doc.version = notebook.version
    if ls.recorder:
        ls.recorder.changed(notebook.key, doc.version, [[None, None, None, None, text]])
    ls.document_changed(notebook.key)


def _edit_joined(ls, notebook: Notebook, cell: Cell, changes) -> None:
    doc = ls.store.get(notebook.key)
    placed = notebook.place(cell.uri)
    if doc is None or placed is None:
        return
    first, _ = placed
    encoding = ls.store.encoding
    records = []
    for change in changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            r = change.range
            start = clamp(cell.lines, r.start.line, r.start.character, encoding)
            end = clamp(cell.lines, r.end.line, r.end.character, encoding)
        else:  # the whole cell
            start, end = (0, 0), (len(cell.lines) - 1, len(cell.lines[-1]))
        start, end = sorted((start, end))
        records.append([first + start[0], _units(cell.lines, *start, encoding),
                        first + end[0], _units(cell.lines, *end, encoding), change.text])
        cell.lines = replace_range(cell.lines, start, end, change.text)
        doc.apply_change((first + start[0], start[1]), (first + end[0], end[1]), change.text, "utf-32")
    notebook.version += 1
    doc.version = notebook.version
    if len(doc.lines) != notebook.joined_line_count():  # a lone CR at a cell's end met the LF after it
        _replace_joined(ls, notebook, doc)
        return
    if ls.recorder:
        ls.recorder.changed(notebook.key, doc.version, records)
    ls.document_changed(notebook.key)


def _units(lines: list[str], line: int, column: int, encoding: str) -> int:
    """A code-point column in the client's units, for the recording."""
    return to_client_units(line_body(lines[line]), column, encoding)


def _edit_alone(ls, cell: Cell, version: int, changes) -> None:
    doc = ls.store.get(cell.uri)
    if doc is None:
        return
    for change in changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            r = change.range
            doc.apply_change((r.start.line, r.start.character), (r.end.line, r.end.character), change.text,
                             ls.store.encoding)
        else:
            doc.apply_change(None, None, change.text, ls.store.encoding)
    cell.lines = doc.lines
    doc.version = version
    ls.document_changed(cell.uri)


def _edited(lines: list[str], changes, encoding: str) -> list[str]:
    for change in changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            r = change.range
            start = clamp(lines, r.start.line, r.start.character, encoding)
            end = clamp(lines, r.end.line, r.end.character, encoding)
            lines = replace_range(lines, *sorted((start, end)), change.text)
        else:
            lines = split_lines(change.text)
    return lines


def _open(ls, uri: str, language_id: str, version: int, text: str):
    doc = ls.store.open(uri, language_id, version, text)
    if ls.recorder:
        ls.recorder.opened(uri, language_id, version, text)
    ls.document_changed(uri, opened=True)
    return doc


def _close(ls, uri: str) -> None:
    if ls.recorder:
        ls.recorder.closed(uri)
    ls.document_closed(uri)
