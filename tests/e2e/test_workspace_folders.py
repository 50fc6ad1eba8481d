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


async def context_of(client: LanguageClient, uri: str) -> list[str]:
    stats = await client.protocol.send_request_async("completer/stats", None)
    return next((entry.paths for entry in stats.context if entry.uri == uri), [])


async def context_when(client: LanguageClient, uri: str, ready) -> list[str]:
    """The paths in the document's prompt once `ready(paths)` holds (an idle refresh chooses them
    all at once); fails after 30 s."""
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        paths = await context_of(client, uri)
        if ready(paths):
            return paths
        await asyncio.sleep(0.3)
    raise AssertionError(f"the context never got there: {paths}")


async def test_every_folder_feeds_the_context_under_its_name(client: LanguageClient, folders):
    for name in ("api", "web"):
        for rel in ("models.py", "private/orders.py"):
            open_document(client, (folders[name] / rel).as_uri(), MODELS)
    main = folders["web"] / "main.py"
    open_document(client, main.as_uri(), MAIN)
    paths = await context_when(client, main.as_uri(), lambda paths: "api/private/orders.py" in paths)
    assert "web/models.py" in paths and "api/models.py" in paths  # api has no .gitignore: its private/ too
    assert "web/private/orders.py" not in paths  # web's .gitignore holds in its folder


async def test_a_removed_folder_leaves_the_context_and_an_added_one_joins(client: LanguageClient, folders):
    web_main = (folders["web"] / "main.py").as_uri()
    assert any(path.startswith("api/") for path in await context_of(client, web_main))
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(
            added=[types.WorkspaceFolder(uri=folders["tools"].as_uri(), name="tools")],
            removed=[types.WorkspaceFolder(uri=folders["api"].as_uri(), name="api")])))
    # web/main.py is not edited, so nothing refreshes its context: only the withdrawal can change it.
    paths = await context_when(client, web_main, lambda paths: not any(p.startswith("api/") for p in paths))
    assert "web/models.py" in paths
    open_document(client, (folders["tools"] / "models.py").as_uri(), MODELS)
    main = folders["tools"] / "main.py"
    open_document(client, main.as_uri(), MAIN)
    paths = await context_when(client, main.as_uri(), lambda paths: "tools/models.py" in paths)
    assert "web/models.py" in paths and not any(path.startswith("api/") for path in paths)
