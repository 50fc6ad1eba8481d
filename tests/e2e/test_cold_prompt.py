"""A newly opened file's first key over the real server: answered from a short prompt
(--cold-prompt-tokens), the full prompt warmed behind it, the next key served from the full prompt
with almost nothing to prefill; in process, and through a shared engine daemon (--engine auto)."""

import asyncio
import tempfile
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.conftest import open_document, server_command, workspace_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

COLD = 128
DOC = "".join(f"def scale_{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(60)) + "def last(x):\n    return x"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cold")


FLAGS = ("--cold-prompt-tokens", str(COLD), "--no-context", "--no-debounce")
client = workspace_client(server_command(*FLAGS))
# A daemon of this module's own, on a socket in a fresh private directory; it exits 30 s after the test.
daemon_client = workspace_client(server_command(
    *FLAGS, "--engine", "auto", "--engine-socket", str(Path(tempfile.mkdtemp(prefix="completer-cold-")) / "e.sock"),
    "--engine-idle-exit-s", "30"))


async def engine_totals(client):
    return (await client.protocol.send_request_async("completer/stats", None)).engine


async def test_the_first_key_is_answered_short_and_the_next_from_the_warmed_full_prompt(client: LanguageClient,
                                                                                       workspace: Path):
    await first_key_short_then_warm(client, (workspace / "scale.py").as_uri())


async def test_through_the_engine_daemon_too(daemon_client: LanguageClient, workspace: Path):
    await first_key_short_then_warm(daemon_client, (workspace / "scale_daemon.py").as_uri())
    stats = await daemon_client.protocol.send_request_async("completer/stats", None)
    assert stats.engineInfo.backend.endswith("(daemon)") and stats.engineInfo.can_prefill


async def first_key_short_then_warm(client: LanguageClient, uri: str) -> None:
    open_document(client, uri, DOC)
    lines = DOC.split("\n")
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=len(lines) - 1, character=len(lines[-1])),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    before = await engine_totals(client)
    await client.text_document_inline_completion_async(params)
    first = await engine_totals(client)
    assert first.engine_requests == before.engine_requests + 1
    assert first.prompt_tokens - before.prompt_tokens <= COLD  # the short prompt
    assert first.prefill_tokens - before.prefill_tokens <= COLD

    deadline = asyncio.get_running_loop().time() + 30  # the warm-up runs after the answer
    stats = await client.protocol.send_request_async("completer/stats", None)
    while stats.counters.warmups < 1 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        stats = await client.protocol.send_request_async("completer/stats", None)
    assert stats.counters.warmups >= 1

    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=params.position, end=params.position), text=" +")]))
    typed = types.InlineCompletionParams(
        text_document=params.text_document, context=params.context,
        position=types.Position(line=params.position.line, character=params.position.character + 2))
    await client.text_document_inline_completion_async(typed)
    second = await engine_totals(client)
    assert second.engine_requests == first.engine_requests + 1
    assert second.prompt_tokens - first.prompt_tokens > 2 * COLD  # the full prompt
    assert second.prefill_tokens - stats.engine.prefill_tokens <= 8  # cached by the warm-up
