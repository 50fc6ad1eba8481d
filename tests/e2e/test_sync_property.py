"""Property test through the real server: random incremental edits in each position encoding, and
after every step the server's text equals the client's (compared by hash via completer/stats)."""

import asyncio
import hashlib
import os
import random

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from completer.replay.driver import Mirror
from tests.conftest import server_command

# Multi-byte and astral characters, every LSP line break, and the separators LSP does not split on.
ALPHABET = ["a", "b", "é", "中", "😀", "𝔘", " ", "\n", "\r\n", "\r", "\u2028", "\f", "\t", "xyz"]
STEPS = 150


def _random_position(mirror: Mirror, rng: random.Random) -> tuple[int, int, int]:
    """(line, code-point index, client units) of a valid position."""
    line = rng.randrange(len(mirror.lines))
    body = mirror.lines[line].rstrip("\r\n")
    index = rng.randint(0, len(body))
    return line, index, mirror.to_units(line, index)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_random_edits_keep_server_and_client_text_equal(encoding):
    async def main():
        client = LanguageClient("sync-test", "1")
        await client.start_io(*server_command(), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            caps = types.ClientCapabilities(general=types.GeneralClientCapabilities(position_encodings=[encoding]))
            result = await client.initialize_async(types.InitializeParams(capabilities=caps))
            assert result.capabilities.position_encoding == encoding
            client.initialized(types.InitializedParams())
            uri = "file:///work/sync.py"
            mirror = Mirror("start é😀\r\nline two\rthree\n", encoding)
            client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=mirror.text)))
            rng = random.Random(f"sync:{encoding}")
            for step in range(STEPS):
                a, b = sorted([_random_position(mirror, rng), _random_position(mirror, rng)])
                text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))
                change = [a[0], a[2], b[0], b[2], text]
                mirror.apply(change)
                mirror.version += 1
                client.text_document_did_change(types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=mirror.version),
                    content_changes=[types.TextDocumentContentChangePartial(
                        range=types.Range(start=types.Position(line=a[0], character=a[2]),
                                          end=types.Position(line=b[0], character=b[2])), text=text)]))
                stats = await client.protocol.send_request_async("completer/stats", {"documents": True})
                doc = next(d for d in stats.documents if d.uri == uri)
                assert doc.version == mirror.version
                assert doc.sha256 == _sha(mirror.text), f"step {step}: {change!r} left the texts different"
        finally:
            await asyncio.wait_for(client.shutdown_async(None), 10)
            client.exit(None)
            await client.stop()

    asyncio.run(main())
