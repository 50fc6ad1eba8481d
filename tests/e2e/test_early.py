"""Early answers (lsp/early.py) in the real server over stdio, fixture model: a client that shows
inline completions and asks only a while after the keystroke (as VS Code does, 50 ms) gets the
answer the model started on the keystroke's didChange, the same text as without early starts; a
request elsewhere cancels the run; a client without inline completion starts none."""

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import server_command
from tests.e2e.test_server import inline_params, open_doc, type_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = "def total(items):\n    result = 0\n    for item in items:\n        \n"
ROW = 3


async def start(client: LanguageClient, inline: bool) -> None:
    caps = pytest_lsp.client_capabilities("neovim")
    if inline:
        caps.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    ready = asyncio.ensure_future(client.wait_for_notification("completer/status"))
    await client.initialize_session(types.InitializeParams(capabilities=caps))
    await ready
    # the model loaded: a first request waits for it
    open_doc(client, "file:///work/project/warm.py", "x = 1\n")
    await client.text_document_inline_completion_async(inline_params("file:///work/project/warm.py", 1, 0))


async def counters(client: LanguageClient):
    return (await client.protocol.send_request_async("completer/stats", None)).counters


async def typed_then_asked(client: LanguageClient, uri: str, wait_s: float, elsewhere: bool = False) -> str:
    open_doc(client, uri, TEXT)
    _, character = type_text(client, uri, ROW, 8, "res", 1)
    await asyncio.sleep(wait_s)  # the editor's own wait before it asks
    row, col = (0, 4) if elsewhere else (ROW, character)
    answer = await client.text_document_inline_completion_async(inline_params(uri, row, col))
    return answer.items[0].insert_text if answer and answer.items else ""


def server(name: str, *flags: str, inline: bool = True):
    """A module-scoped client of its own server (every suggestion shown: --min-confidence 0)."""
    config = ClientServerConfig(server_command=server_command("--min-confidence", "0", *flags))

    @pytest_lsp.fixture(config=config, scope="module", name=name)
    async def fixture(lsp_client: LanguageClient):
        await start(lsp_client, inline)
        yield
        await lsp_client.shutdown_session()
    return fixture


client = server("client")
without = server("without", "--no-early")
items_client = server("items_client", inline=False)


async def test_a_request_after_the_keystroke_takes_the_run_started_on_it(client: LanguageClient,
                                                                        without: LanguageClient):
    before = await counters(client)
    text = await typed_then_asked(client, "file:///work/project/early.py", 0.3)
    after = await counters(client)
    assert after.early_started == before.early_started + 3  # one a keystroke: each cancels the one before
    assert after.early_answers == before.early_answers + 1
    assert after.answered == before.answered + 1
    assert text and text == await typed_then_asked(without, "file:///work/project/early.py", 0.3)
    assert (await counters(without)).early_started == 0


async def test_a_request_at_once_takes_the_run_over(client: LanguageClient):
    """As the Neovim plugin asks: right after the didChange, while the model still runs."""
    before = await counters(client)
    text = await typed_then_asked(client, "file:///work/project/at_once.py", 0.0)
    after = await counters(client)
    assert after.early_answers == before.early_answers + 1 and text


async def test_a_request_elsewhere_cancels_the_run(client: LanguageClient):
    before = await counters(client)
    await typed_then_asked(client, "file:///work/project/elsewhere.py", 0.0, elsewhere=True)
    after = await counters(client)
    assert after.early_started == before.early_started + 3
    assert after.early_answers == before.early_answers


async def test_a_client_without_inline_completion_starts_none(items_client: LanguageClient):
    await typed_then_asked(items_client, "file:///work/project/items.py", 0.1)
    assert (await counters(items_client)).early_started == 0
