"""The real `completer serve --stdio` under a real LSP client (pytest-lsp), fixture model."""

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcMethodNotFound, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import server_command

pytestmark = pytest.mark.asyncio(loop_scope="module")

URI = "file:///work/project/sample.py"
TEXT = "def add(a, b):\n    return a\n\n\nprint(add(1, 2))\n"


def inline_params(uri, line, character, kind=types.InlineCompletionTriggerKind.Automatic):
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind))


def open_doc(client, uri=URI, text=TEXT, version=1):
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))


def type_text(client, uri, line, character, text, version):
    """One didChange per character, like an editor; returns the new version and column."""
    for ch in text:
        version += 1
        pos = types.Position(line=line, character=character)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=pos, end=pos), text=ch)]))
        character += 1
    return version, character


async def initialize(client, profile="neovim", options=None):
    caps = pytest_lsp.client_capabilities(profile)
    status = asyncio.ensure_future(client.wait_for_notification("completer/status"))
    result = await client.initialize_session(types.InitializeParams(capabilities=caps,
                                                                    initialization_options=options))
    return result, status


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command()), scope="module")
async def client(lsp_client: LanguageClient):
    result, _ = await initialize(lsp_client)
    lsp_client.init_result = result
    yield
    await lsp_client.shutdown_session()


async def test_capabilities(client: LanguageClient):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert "completer.didAcceptCompletion" in caps.execute_command_provider.commands
    assert caps.position_encoding == types.PositionEncodingKind.Utf8  # Neovim offers utf-8 first
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental


async def test_typing_gets_a_suggestion_at_the_cursor_with_an_accept_command(client: LanguageClient):
    uri = "file:///work/project/typing.py"
    open_doc(client, uri, "def add(a, b):\n    \n")
    version, col = type_text(client, uri, 1, 4, "return a", 1)
    result = await client.text_document_inline_completion_async(inline_params(uri, 1, col))
    assert len(result.items) == 1
    item = result.items[0]
    assert item.insert_text and "\n" not in item.insert_text  # mid-line: a single-line suggestion
    assert item.range.start == item.range.end == types.Position(line=1, character=col)
    assert item.command.command == "completer.didAcceptCompletion"
    assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=item.command.command, arguments=list(item.command.arguments))) is None


async def test_unknown_document_gets_an_empty_answer(client: LanguageClient):
    result = await client.text_document_inline_completion_async(inline_params("file:///nowhere.py", 0, 0))
    assert len(result.items) == 0


async def test_positions_past_the_end(client: LanguageClient):
    uri = "file:///work/project/short.py"
    open_doc(client, uri, "x = 1\n")
    result = await client.text_document_inline_completion_async(inline_params(uri, 99, 0))
    assert len(result.items) == 0
    result = await client.text_document_inline_completion_async(inline_params(uri, 0, 500))
    for item in result.items:  # a column past the end clamps to the end of the line
        assert item.range.start == types.Position(line=0, character=5)


async def test_unknown_methods_and_unopened_documents_do_not_break_the_server(client: LanguageClient):
    with pytest.raises(JsonRpcMethodNotFound):
        await client.protocol.send_request_async("completer/noSuchMethod", {})
    client.text_document_did_change(types.DidChangeTextDocumentParams(  # a document that was never opened
        text_document=types.VersionedTextDocumentIdentifier(uri="file:///never.py", version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="x")]))
    open_doc(client, "file:///work/project/after.py", TEXT)
    result = await client.text_document_inline_completion_async(inline_params("file:///work/project/after.py", 1, 12))
    assert isinstance(result.items, (list, tuple))


async def test_multibyte_text_before_the_cursor(client: LanguageClient):
    uri = "file:///work/project/unicode.py"
    open_doc(client, uri, "s = '𝔘é'\nt = s +\n")
    # utf-8 negotiated: '𝔘' is 4 units (columns 5-8), 'é' 2; the line ends at column 12
    result = await client.text_document_inline_completion_async(inline_params(uri, 0, 12))
    assert len(result.items) == 1 and result.items[0].range.start == types.Position(line=0, character=12)
    # a column inside '𝔘' means the start of '𝔘'
    result = await client.text_document_inline_completion_async(inline_params(uri, 0, 7))
    for item in result.items:
        assert item.range.start == types.Position(line=0, character=5)


async def model_loaded(client: LanguageClient) -> None:
    """Waits until the engine has loaded. The tests time a request against an edit 50 ms later: with
    the model still loading, the request would wait for it, and the edit arrive first."""
    for _ in range(600):
        if (await client.protocol.send_request_async("completer/stats", None)).engineInfo is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the model did not load in 60 s")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command()), loop_scope="module")
async def long_client(lsp_client: LanguageClient):
    # Long generations (up to the 400 ms deadline) so that cancellation has something to cancel.
    _, status = await initialize(lsp_client, "visual-studio-code", {"maxTokens": 1000, "lineMaxTokens": 1000})
    await status
    await model_loaded(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def test_cancel_request(long_client: LanguageClient):
    open_doc(long_client)
    fut = asyncio.ensure_future(long_client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(URI, 1, 12), msg_id=4242))
    await asyncio.sleep(0.05)
    long_client.cancel_request(types.CancelParams(id=4242))
    with pytest.raises(JsonRpcRequestCancelled):
        await fut
    result = await long_client.text_document_inline_completion_async(inline_params(URI, 1, 12))
    assert isinstance(result.items, (list, tuple))


async def test_a_new_request_cancels_the_previous_one(long_client: LanguageClient):
    open_doc(long_client)
    first = asyncio.ensure_future(long_client.text_document_inline_completion_async(inline_params(URI, 1, 12)))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(long_client.text_document_inline_completion_async(inline_params(URI, 1, 12)))
    first_result, second_result = await asyncio.gather(first, second)
    assert len(first_result.items) == 0
    assert len(second_result.items) == 1


async def test_answers_for_an_old_version_are_dropped(long_client: LanguageClient):
    # A document of its own: at the same place in URI an earlier test's suggestion could answer at once
    # (reuse of a recent suggestion), before the edit.
    uri = "file:///work/project/stale.py"
    open_doc(long_client, uri)
    pending = asyncio.ensure_future(long_client.text_document_inline_completion_async(inline_params(uri, 1, 12)))
    await asyncio.sleep(0.05)
    type_text(long_client, uri, 1, 12, "x", 1)  # the user keeps typing, no new request
    assert len((await pending).items) == 0


async def test_typed_through_answers_without_the_model(client: LanguageClient):
    uri = "file:///work/project/reuse.py"
    open_doc(client, uri, "def add(a, b):\n    \n")
    version, col = type_text(client, uri, 1, 4, "return a", 1)
    first = await client.text_document_inline_completion_async(inline_params(uri, 1, col))
    suggestion = first.items[0].insert_text
    before = await client.protocol.send_request_async("completer/stats", None)
    version, col = type_text(client, uri, 1, col, suggestion[0], version)  # the user types what was shown
    second = await client.text_document_inline_completion_async(inline_params(uri, 1, col))
    after = await client.protocol.send_request_async("completer/stats", None)
    assert len(suggestion) > 1  # the fixture model's suggestion here is long (deterministic)
    assert second.items[0].insert_text == suggestion[1:]
    assert after.counters.reuse_typed_through == before.counters.reuse_typed_through + 1
    assert after.engine.engine_requests == before.engine.engine_requests  # no model call
    version, col = type_text(client, uri, 1, col, "#", version)  # something the suggestion did not predict
    third = await client.text_document_inline_completion_async(inline_params(uri, 1, col))
    final = await client.protocol.send_request_async("completer/stats", None)
    assert final.engine.engine_requests == after.engine.engine_requests + 1
    assert isinstance(third.items, (list, tuple))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command("--model", "embedded",
                                                                            "--min-confidence", "1")),
                    loop_scope="module")
async def gated_client(lsp_client: LanguageClient):
    # The embedded model and its reranker, every suggestion withheld (no probability reaches 1).
    await initialize(lsp_client)
    await model_loaded(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def test_typing_into_a_withheld_suggestion_needs_no_model(gated_client: LanguageClient):
    uri = "file:///work/project/gated.py"
    open_doc(gated_client, uri, "def f(self):\n    self.assertEqual(a, 1)\n    self.assertEqual(b, 2)\n    self.ass\n")
    first = await gated_client.text_document_inline_completion_async(inline_params(uri, 3, 12))
    before = await gated_client.protocol.send_request_async("completer/stats", None)
    # What the copies of the lines above ("ertEqual(a, 1)", "ertEqual(b, 2)") predict.
    version, col = type_text(gated_client, uri, 3, 12, "e", 1)
    second = await gated_client.text_document_inline_completion_async(inline_params(uri, 3, col))
    after = await gated_client.protocol.send_request_async("completer/stats", None)
    assert len(first.items) == len(second.items) == 0  # withheld, then still withheld
    assert after.counters.reuse_reconsidered == before.counters.reuse_reconsidered + 1
    assert after.engine.engine_requests == before.engine.engine_requests  # no model call
    version, col = type_text(gated_client, uri, 3, col, "#", version)  # no candidate predicted this
    await gated_client.text_document_inline_completion_async(inline_params(uri, 3, col))
    final = await gated_client.protocol.send_request_async("completer/stats", None)
    assert final.engine.engine_requests == after.engine.engine_requests + 1


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command("--no-reuse", "--no-prefetch")),
                    loop_scope="module")
async def slow_client(lsp_client: LanguageClient):
    # Long generations (the fixture model never stops before the 400 ms deadline) and no reuse, so a
    # request that arrives mid-generation can only be answered by taking the generation over.
    _, status = await initialize(lsp_client, "visual-studio-code", {"maxTokens": 1000, "lineMaxTokens": 1000})
    await status
    await model_loaded(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def test_typing_what_is_being_generated_takes_the_generation_over(slow_client: LanguageClient):
    uri = "file:///work/project/recycle.py"
    open_doc(slow_client, uri, "def add(a, b):\n    return a\n")
    full = (await slow_client.text_document_inline_completion_async(inline_params(uri, 1, 12))).items[0].insert_text
    assert len(full) > 2
    # The same request again; while it generates, the user types its first character (the editor
    # cancels the old request and asks again).
    fut = asyncio.ensure_future(slow_client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 12), msg_id=777))
    await asyncio.sleep(0.15)
    slow_client.cancel_request(types.CancelParams(id=777))
    type_text(slow_client, uri, 1, 12, full[0], 1)
    second = await slow_client.text_document_inline_completion_async(inline_params(uri, 1, 13))
    with pytest.raises(JsonRpcRequestCancelled):
        await fut
    text = second.items[0].insert_text
    assert full[1:].startswith(text) or text.startswith(full[1:])  # greedy: the same continuation
    stats = await slow_client.protocol.send_request_async("completer/stats", {"requests": True})
    assert stats.counters.recycled == 1 and list(stats.requests)[-1].kind == "recycled"
    # {"requests": N}: only the latest N records (what a bench reading the log per session asks for).
    last = await slow_client.protocol.send_request_async("completer/stats", {"requests": 2})
    assert [r.version for r in last.requests] == [r.version for r in list(stats.requests)[-2:]]
    assert len(list(stats.requests)) > 2


async def test_a_burst_of_keys_faster_than_the_model_is_debounced(slow_client: LanguageClient):
    uri = "file:///work/project/burst.py"
    open_doc(slow_client, uri, "def add(a, b):\n    return a\n")
    # Learns the answer time: here the fixture model generates until the 400 ms deadline.
    await slow_client.text_document_inline_completion_async(inline_params(uri, 1, 12))
    before = await slow_client.protocol.send_request_async("completer/stats", None)
    await asyncio.sleep(1.1)  # a pause: the rhythm below is learnt from the burst alone
    version, col, pending = 1, 12, []
    for ch in "qz" * 10:  # 20 ms between keys; answers take ~400 ms
        version, col = type_text(slow_client, uri, 1, col, ch, version)
        pending.append(asyncio.ensure_future(slow_client.text_document_inline_completion_async(
            inline_params(uri, 1, col))))
        await asyncio.sleep(0.02)
    results = await asyncio.gather(*pending)
    after = await slow_client.protocol.send_request_async("completer/stats", None)
    assert after.counters.debounced > before.counters.debounced  # superseded while waiting: no model work
    assert len(results[-1].items) == 1  # the last key of the burst is answered
    assert after.engine.engine_requests - before.engine.engine_requests < len(pending)


async def test_a_new_unsaved_document_gets_suggestions(client: LanguageClient):
    # VS Code's File > New: an untitled: URI, no file on disk, no workspace path; language from the id.
    uri = "untitled:Untitled-1"
    open_doc(client, uri, "def add(a, b):\n    \n")
    _, col = type_text(client, uri, 1, 4, "return a", 1)
    result = await client.text_document_inline_completion_async(inline_params(uri, 1, col))
    assert len(result.items) == 1 and result.items[0].range.start == types.Position(line=1, character=col)
    stats = await client.protocol.send_request_async("completer/stats", None)
    assert stats.counters.errors == 0
