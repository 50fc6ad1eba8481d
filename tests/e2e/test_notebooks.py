"""Jupyter notebooks over the real server (stdio, pytest-lsp, the embedded model): the server asks for
notebook sync, and a cell is completed with the cells above it in the prompt and among the copies,
its answer in the cell's own lines."""

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import ROOT, invoked_at, server_command

pytestmark = pytest.mark.asyncio(loop_scope="module")

EMBEDDED = ROOT / "completer" / "models" / "embedded"
NB = "file:///work/project/analysis.ipynb"
WANTED = "summary = frame.groupby(['region', 'quarter'])['revenue_total'].agg(['sum', 'mean', 'count'])"
CELLS = [
    ("import pandas as pd\n\nframe = pd.read_csv('sales_2025.csv')\n" + WANTED + "\nprint(summary)", types.NotebookCellKind.Code,
     "python"),
    ("## The same for 2026", types.NotebookCellKind.Markup, "markdown"),
    ("frame = pd.read_csv('sales_2026.csv')\nsummary = frame.grou", types.NotebookCellKind.Code, "python"),
]


def cell_uri(n: int) -> str:
    return f"vscode-notebook-cell:/work/project/analysis.ipynb#W{n}sZmlsZQ%3D%3D"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command(
    "--model", str(EMBEDDED), "--min-confidence", "0")), scope="module")
async def client(lsp_client: LanguageClient):
    caps = pytest_lsp.client_capabilities("visual-studio-code")
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    caps.notebook_document = types.NotebookDocumentClientCapabilities(
        synchronization=types.NotebookDocumentSyncClientCapabilities())
    lsp_client.initialize_result = await lsp_client.initialize_session(types.InitializeParams(capabilities=caps))
    yield
    await lsp_client.shutdown_session()


async def test_the_server_asks_for_the_code_cells_of_notebooks(client: LanguageClient):
    sync = client.initialize_result.capabilities.notebook_document_sync
    languages = {cell.language for selector in sync.notebook_selector for cell in selector.cells}
    assert {"python", "javascript", "typescript", "go", "rust", "java", "c", "cpp", "lua"} <= languages
    assert "markdown" not in languages


async def test_a_cell_is_completed_from_the_cells_above(client: LanguageClient):
    client.notebook_document_did_open(types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(
            uri=NB, notebook_type="jupyter-notebook", version=1,
            cells=[types.NotebookCell(kind=kind, document=cell_uri(n)) for n, (_, kind, _) in enumerate(CELLS)]),
        cell_text_documents=[types.TextDocumentItem(uri=cell_uri(n), language_id=language, version=1, text=text)
                             for n, (text, _, language) in enumerate(CELLS)]))
    # The user types "p" at the end of the third cell.
    client.notebook_document_did_change(types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(uri=NB, version=2),
        change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(text_content=[
            types.NotebookDocumentCellContentChanges(
                document=types.VersionedTextDocumentIdentifier(uri=cell_uri(2), version=2),
                changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=1, character=20), end=types.Position(line=1, character=20)),
                    text="p")])]))))
    result = await client.text_document_inline_completion_async(invoked_at(cell_uri(2), 1, 21))
    items = result.items if hasattr(result, "items") else result
    assert items, "no suggestion in the cell"
    # The rest of the line is in the first cell only: offered as a copy from the notebook's joined text.
    assert any(item.insert_text.startswith(WANTED[len("summary = frame.group"):]) for item in items), \
        [item.insert_text for item in items]
    for item in items:  # in the cell's own lines, at the cursor
        assert item.range.start == types.Position(line=1, character=21)
    # A position past the cell's end is invalid, though the notebook's joined text has that line.
    beyond = await client.text_document_inline_completion_async(invoked_at(cell_uri(2), 3, 0))
    assert not (beyond.items if hasattr(beyond, "items") else beyond)
    stats = await client.protocol.send_request_async("completer/stats", {"documents": True})
    assert NB + "#cells" in {entry.uri for entry in stats.documents}


async def test_a_closed_notebook_gets_no_answers(client: LanguageClient):
    client.notebook_document_did_close(types.DidCloseNotebookDocumentParams(
        notebook_document=types.NotebookDocumentIdentifier(uri=NB),
        cell_text_documents=[types.TextDocumentIdentifier(uri=cell_uri(n)) for n in (0, 2)]))
    result = await client.text_document_inline_completion_async(invoked_at(cell_uri(2), 1, 21))
    assert not (result.items if hasattr(result, "items") else result)
