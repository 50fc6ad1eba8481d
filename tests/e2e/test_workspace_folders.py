"""Several workspace folders over the real server: files of every folder feed the context under the
folder's name, each folder's .gitignore holds, and workspace/didChangeWorkspaceFolders is followed."""

import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import open_document, server_command

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODELS = "class Order:\n    def discounted(self, rate):\n        return self.total * (1 - rate)\n"
MAIN = "from models import Order\n\norder = Order()\nprice = order.\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folders")
    made = {}
    for name in ("api", "web", "tools"):
        folder = root / name
        folder.mkdir()
        (folder / "models.py").write_text(MODELS)
        (folder / "private").mkdir()
        (folder / "private" / "orders.py").write_text(MODELS)
        made[name] = folder
    (made["web"] / ".gitignore").write_text("private/\n")
    return made


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command()), scope="module")
async def client(lsp_client: LanguageClient, folders: dict[str, Path]):
    capabilities = pytest_lsp.client_capabilities("visual-studio-code")
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=capabilities, root_uri=folders["api"].as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=folders[n].as_uri(), name=n) for n in ("api", "web")]))
    yield
    await lsp_client.shutdown_session()


async def chosen_context(client: LanguageClient, uri: str, updates_before: int) -> list[str]:
    """The paths in the document's prompt once an idle refresh after `updates_before` has chosen them."""
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.3)
        stats = await client.protocol.send_request_async("completer/stats", None)
        if stats.counters.context_updates > updates_before:
            return next((entry.paths for entry in stats.context if entry.uri == uri), [])
    raise AssertionError("no context update")


async def updates(client: LanguageClient) -> int:
    return (await client.protocol.send_request_async("completer/stats", None)).counters.context_updates


async def test_every_folder_feeds_the_context_under_its_name(client: LanguageClient, folders):
    before = await updates(client)
    for name in ("api", "web"):
        for rel in ("models.py", "private/orders.py"):
            open_document(client, (folders[name] / rel).as_uri(), MODELS)
    main = folders["web"] / "main.py"
    open_document(client, main.as_uri(), MAIN)
    paths = await chosen_context(client, main.as_uri(), before)
    assert "web/models.py" in paths and "api/models.py" in paths
    assert "api/private/orders.py" in paths  # api has no .gitignore
    assert "web/private/orders.py" not in paths  # web's .gitignore holds in its folder


async def test_a_removed_folder_leaves_the_context_and_an_added_one_joins(client: LanguageClient, folders):
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(
            added=[types.WorkspaceFolder(uri=folders["tools"].as_uri(), name="tools")],
            removed=[types.WorkspaceFolder(uri=folders["api"].as_uri(), name="api")])))
    await asyncio.sleep(0.5)  # the handler builds the new folders' rules on a thread
    stats = await client.protocol.send_request_async("completer/stats", None)
    web_main = next(entry.paths for entry in stats.context if entry.uri == (folders["web"] / "main.py").as_uri())
    assert web_main and not any(path.startswith("api/") for path in web_main)  # withdrawn at once
    before = await updates(client)
    open_document(client, (folders["tools"] / "models.py").as_uri(), MODELS)
    main = folders["tools"] / "main.py"
    open_document(client, main.as_uri(), MAIN)
    paths = await chosen_context(client, main.as_uri(), before)
    assert "tools/models.py" in paths and "web/models.py" in paths
    assert not any(path.startswith("api/") for path in paths)
