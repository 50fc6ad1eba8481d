"""Cross-file context over the real server: chosen when idle, warmed up, private files left out."""

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.conftest import server_command, workspace_client

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "models.py").write_text(
        "class Order:\n    def discounted(self, rate):\n        return self.total * (1 - rate)\n\n\n"
        "def load_orders(path):\n    return []\n")
    (root / ".env").write_text("API_TOKEN=do-not-leak\n")
    return root


client = workspace_client(server_command())


async def stats(client):
    return await client.protocol.send_request_async("completer/stats", None)


async def test_context_is_chosen_when_idle_and_warmed_up(client: LanguageClient, workspace: Path):
    env_uri = (workspace / ".env").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=env_uri, language_id="dotenv", version=1, text="API_TOKEN=do-not-leak\n")))
    main = workspace / "main.py"
    text = "from pkg.models import Order, load_orders\n\norders = load_orders('x')\ntotal = \n"
    main.write_text(text)
    uri = main.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=text)))
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=3, character=8),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    await client.text_document_inline_completion_async(params)
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.3)
        now = await stats(client)
        if now.counters.warmups >= 1:
            break
    assert now.counters.context_updates >= 1 and now.counters.warmups >= 1
    chosen = next(entry.paths for entry in now.context if entry.uri == uri)
    assert "pkg/models.py" in chosen and ".env" not in chosen
    # the warm-up prefilled the new prompt: the next request computes only a few tokens
    await client.text_document_inline_completion_async(params)
    after = await stats(client)
    computed = after.engine.prefill_tokens - now.engine.prefill_tokens
    assert after.engine.engine_requests == now.engine.engine_requests + 1 and computed <= 2


async def test_a_renamed_or_deleted_file_leaves_every_context_at_once(client: LanguageClient, workspace: Path):
    operations = client.initialize_result.capabilities.workspace.file_operations  # VS Code sends only these
    assert operations.did_rename.filters[0].scheme == "file" and operations.did_delete.filters
    notes = workspace / "notes.py"
    notes.write_text("def rotate_api_keys(vault):\n    return vault.rotate()\n")
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=notes.as_uri(), language_id="python", version=1, text=notes.read_text())))
    main = workspace / "ops.py"
    text = "vault = open_vault()\nrotate_api_keys(vault)\n\n"
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=main.as_uri(), language_id="python", version=1, text=text)))
    deadline = asyncio.get_running_loop().time() + 30
    chosen = []
    while "notes.py" not in chosen and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.3)
        chosen = next((e.paths for e in (await stats(client)).context if e.uri == main.as_uri()), [])
    assert "notes.py" in chosen
    notes.rename(workspace / ".env.notes")
    client.workspace_did_rename_files(types.RenameFilesParams(files=[types.FileRename(
        old_uri=notes.as_uri(), new_uri=(workspace / ".env.notes").as_uri())]))
    await asyncio.sleep(0.2)  # a notification: no answer to wait for
    chosen = next((e.paths for e in (await stats(client)).context if e.uri == main.as_uri()), [])
    assert "notes.py" not in chosen
