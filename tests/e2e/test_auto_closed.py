"""Closers the editor put right of the cursor, over the real server with the embedded model: VS Code
closed `log_event("handler_30` with `")`, and the suggestion goes on past them, so its item's range
covers them (accepting it leaves the line as meant, not `..., event.kind)")`); typing over the
editor's `"`, or typing a `(` the editor closes at once, goes on through the same suggestion."""

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.conftest import ROOT, invoked_at, open_document, server_command, workspace_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

EMBEDDED = ROOT / "completer" / "models" / "embedded"
DOC = "".join(f'def on_{i}(event):\n    log_event("handler_{i}", event.kind)\n    return event\n\n\n'
              for i in range(30))
TYPED = '    log_event("handler_30'
WANTED = '    log_event("handler_30", event.kind)'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("auto-closed")


# Every suggestion shown (the test is about where it goes), no debounce, no context from other files.
client = workspace_client(server_command("--model", str(EMBEDDED), "--min-confidence", "0", "--no-debounce",
                                         "--no-context"))


def accepted(line: str, item: types.InlineCompletionItem) -> str:
    """The line once the editor replaces the item's range with its text."""
    assert item.range.start.line == item.range.end.line
    return line[:item.range.start.character] + item.insert_text + line[item.range.end.character:]


async def test_a_suggestion_through_the_editors_closers_replaces_them(client: LanguageClient, workspace: Path):
    uri = (workspace / "handlers.py").as_uri()
    line = TYPED + '")'  # as VS Code has it: the quote and the bracket closed as they were typed
    open_document(client, uri, DOC + "def on_30(event):\n" + line + "\n")
    row = DOC.count("\n") + 1
    first = await client.text_document_inline_completion_async(invoked_at(uri, row, len(TYPED)))
    item = first.items[0]
    assert item.insert_text == '", event.kind)'
    assert (item.range.start.character, item.range.end.character) == (len(TYPED), len(TYPED) + 2)
    assert accepted(line, item) == WANTED
    # The user types `"`: VS Code moves past its own `"`, so the line is unchanged and the cursor one on.
    again = await client.text_document_inline_completion_async(invoked_at(uri, row, len(TYPED) + 1))
    stats = await client.protocol.send_request_async("completer/stats", None)
    item = again.items[0]
    assert item.insert_text == ", event.kind)"
    assert (item.range.start.character, item.range.end.character) == (len(TYPED) + 1, len(TYPED) + 2)
    assert accepted(line, item) == WANTED
    assert stats.counters.reuse_typed_through >= 1  # the same suggestion, typed through, not the model again



async def test_typing_an_opener_the_editor_closes_keeps_the_suggestion(client: LanguageClient, workspace: Path):
    """`(` typed into `log_event` as the suggestion says: VS Code makes it `()`. The rest of the same
    suggestion answers (typed through, not the model), its range now covering the editor's `)`."""
    uri = (workspace / "opener.py").as_uri()
    typed = "    log_event"
    open_document(client, uri, DOC + "def on_30(event):\n" + typed + "\n")
    row = DOC.count("\n") + 1
    first = (await client.text_document_inline_completion_async(invoked_at(uri, row, len(typed)))).items[0]
    assert first.insert_text.startswith("(") and first.range.end.character == len(typed)  # nothing to replace
    at = types.Position(line=row, character=len(typed))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text="()")]))
    again = (await client.text_document_inline_completion_async(invoked_at(uri, row, len(typed) + 1))).items[0]
    stats = await client.protocol.send_request_async("completer/stats", {"requests": True})
    assert list(stats.requests)[-1].kind == "typed_through"
    assert again.insert_text == first.insert_text[1:]
    assert (again.range.start.character, again.range.end.character) == (len(typed) + 1, len(typed) + 2)
    assert accepted(typed + "()", again) == typed + first.insert_text
