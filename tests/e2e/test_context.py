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
    (root / "web").mkdir()
    (root / "web" / "store.ts").write_text(
        "export class Store {\n  add(item: string): void {\n    this.items.push(item)\n  }\n}\n")
    (root / "web" / "secret.ts").write_text("export const token = 'do-not-leak'\n")
    (root / ".gitignore").write_text("web/secret.ts\n")
    return root


client = workspace_client(server_command())


async def stats(client):
    return await client.protocol.send_request_async("completer/stats", None)


async def open_and_ask(client, path: Path, language_id: str, text: str, line: int, character: int):
    """Write the file, open it as an editor would and ask for a suggestion at (line, character);
    returns the request's params, to ask again."""
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id=language_id, version=1, text=text)))
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    await client.text_document_inline_completion_async(params)
    return params


async def test_context_is_chosen_when_idle_and_warmed_up(client: LanguageClient, workspace: Path):
    env_uri = (workspace / ".env").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=env_uri, language_id="dotenv", version=1, text="API_TOKEN=do-not-leak\n")))
    main = workspace / "main.py"
    text = "from pkg.models import Order, load_orders\n\norders = load_orders('x')\ntotal = \n"
    params = await open_and_ask(client, main, "python", text, 3, 8)
    uri = main.as_uri()
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


async def test_a_typescript_file_gets_the_declarations_of_what_it_imports(client: LanguageClient, workspace: Path):
    """Neither imported file is open: the server reads store.ts from disk; secret.ts is ignored by git."""
    main = workspace / "web" / "main.ts"
    text = "import { Store } from './store'\nimport { token } from './secret'\n\nconst store = new Store()\nstore.\n"
    await open_and_ask(client, main, "typescript", text, 4, 6)
    uri = main.as_uri()
    chosen = []
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline and "web/store.ts" not in chosen:
        await asyncio.sleep(0.3)
        chosen = next((entry.paths for entry in (await stats(client)).context if entry.uri == uri), [])
    assert "web/store.ts" in chosen and "web/secret.ts" not in chosen
