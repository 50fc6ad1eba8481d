"""Completion fallback, selectedCompletionInfo and live configuration changes, on the real server
over stdio under pytest-lsp (fixture model)."""

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import server_command
from tests.e2e.test_server import inline_params, open_doc, type_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLAIN_CAPS = types.ClientCapabilities(
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
    text_document=types.TextDocumentClientCapabilities(completion=types.CompletionClientCapabilities()))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command()), loop_scope="module")
async def plain_client(lsp_client: LanguageClient):
    """A client without inline completion (completion items only)."""
    await lsp_client.initialize_session(types.InitializeParams(capabilities=PLAIN_CAPS))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command()), loop_scope="module")
async def vscode_client(lsp_client: LanguageClient):
    """VS Code's capabilities, with the inline completion it declares since 1.88."""
    caps = pytest_lsp.client_capabilities("visual-studio-code")
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    status = asyncio.ensure_future(lsp_client.wait_for_notification("completer/status"))
    await lsp_client.initialize_session(types.InitializeParams(capabilities=caps))
    await status
    yield
    await lsp_client.shutdown_session()


def completion_params(uri, line, character):
    return types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                                  position=types.Position(line=line, character=character))


async def test_completion_items_for_clients_without_inline_completion(plain_client: LanguageClient):
    uri = "file:///work/project/plain.py"
    open_doc(plain_client, uri, "def add(a, b):\n    \n")
    version, col = type_text(plain_client, uri, 1, 4, "return a", 1)
    result = await plain_client.text_document_completion_async(completion_params(uri, 1, col))
    assert result.is_incomplete and len(result.items) == 1
    item = result.items[0]
    # The word left of the cursor ("a") is replaced by itself plus the suggestion.
    assert item.text_edit.range.start == types.Position(line=1, character=col - 1)
    assert item.text_edit.range.end == types.Position(line=1, character=col)
    assert item.text_edit.new_text.startswith("a") and len(item.text_edit.new_text) > 1
    assert item.filter_text.startswith("a") and item.label
    assert item.command.command == "completer.didAcceptCompletion"


async def test_clients_with_inline_completion_get_no_completion_items(vscode_client: LanguageClient):
    uri = "file:///work/project/inline.py"
    open_doc(vscode_client, uri, "def add(a, b):\n    return a\n")
    result = await vscode_client.text_document_completion_async(completion_params(uri, 1, 12))
    assert not result.items


async def test_selected_completion_info_is_honoured(vscode_client: LanguageClient):
    uri = "file:///work/project/selected.py"
    open_doc(vscode_client, uri, "import os\n\nos.pa\n")
    # The widget offers `path` for the typed `pa`: the suggestion continues `os.path`.
    info = types.SelectedCompletionInfo(range=types.Range(start=types.Position(line=2, character=3),
                                                          end=types.Position(line=2, character=5)), text="path")
    params = inline_params(uri, 2, 5)
    params.context.selected_completion_info = info
    result = await vscode_client.text_document_inline_completion_async(params)
    assert len(result.items) == 1
    item = result.items[0]
    assert item.range == info.range  # VS Code requires the item to cover the selected item's range
    assert item.insert_text.startswith("path") and len(item.insert_text) > len("path")


async def test_configuration_changes_apply_without_a_restart(vscode_client: LanguageClient):
    uri = "file:///work/project/config.py"
    open_doc(vscode_client, uri, "def add(a, b):\n    \n")
    version, col = type_text(vscode_client, uri, 1, 4, "return a", 1)
    vscode_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"completer": {"maxTokens": 2, "reuse": False}}))
    await asyncio.sleep(0.1)
    first = await vscode_client.text_document_inline_completion_async(inline_params(uri, 1, col))
    suggestion = first.items[0].insert_text
    version, col = type_text(vscode_client, uri, 1, col, suggestion[0], version)
    await vscode_client.text_document_inline_completion_async(inline_params(uri, 1, col))
    stats = await vscode_client.protocol.send_request_async("completer/stats", {"requests": True})
    last_two = list(stats.requests)[-2:]
    assert [r.kind for r in last_two] == ["engine", "engine"]  # reuse is off: no typed-through answer
    assert all(r.work.decode_tokens <= 2 for r in last_two)
    for r in last_two:  # where the time went: each part measured, together within the total
        parts = [r.spent.parse, r.spent.wait, r.spent.prompt, r.spent.prefill, r.spent.decode, r.spent.post,
                 r.spent.back]
        assert min(parts) >= 0 and r.spent.prompt > 0 and sum(parts) <= r.ms + 0.01
    # A model change reloads the engine; documents stay open and requests keep working.
    statuses = []
    vscode_client.feature("completer/status")(lambda params: statuses.append(params.state))
    vscode_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"completer": {"device": "cpu", "cacheMb": 8}}))
    for _ in range(200):
        if "ready" in statuses:
            break
        await asyncio.sleep(0.05)
    assert statuses[0] == "loading" and "ready" in statuses
    after = await vscode_client.text_document_inline_completion_async(inline_params(uri, 1, col))
    assert isinstance(after.items, (list, tuple))
    info = (await vscode_client.protocol.send_request_async("completer/stats", None)).engineInfo
    assert info.cache_mb == 8.0


async def test_accepting_a_suggestion_finds_the_next_one_prefetched(vscode_client: LanguageClient):
    vscode_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"completer": {"maxTokens": 6, "reuse": True}}))
    uri = "file:///work/project/prefetch.py"
    open_doc(vscode_client, uri, "def add(a, b):\n    \n")
    version, col = type_text(vscode_client, uri, 1, 4, "return a", 1)
    before = await vscode_client.protocol.send_request_async("completer/stats", None)
    shown = (await vscode_client.text_document_inline_completion_async(inline_params(uri, 1, col))).items[0]
    for _ in range(100):  # the user reads the suggestion; the server prefetches meanwhile
        await asyncio.sleep(0.05)
        stats = await vscode_client.protocol.send_request_async("completer/stats", None)
        if stats.counters.prefetched > before.counters.prefetched:
            break
    assert stats.counters.prefetched == before.counters.prefetched + 1
    # Tab: the editor inserts the suggestion and asks again at its end.
    at = types.Position(line=1, character=col)
    vscode_client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version + 1),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at),
                                                                text=shown.insert_text)]))
    end = col + len(shown.insert_text)
    nxt = await vscode_client.text_document_inline_completion_async(inline_params(uri, 1, end))
    after = await vscode_client.protocol.send_request_async("completer/stats", {"requests": True})
    assert len(nxt.items) == 1 and nxt.items[0].range.start == types.Position(line=1, character=end)
    assert list(after.requests)[-1].kind == "recent"  # answered from the prefetch, not by the model
    assert after.engine.engine_requests == stats.engine.engine_requests
