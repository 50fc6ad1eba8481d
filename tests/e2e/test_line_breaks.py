"""A Windows (CRLF) file over the real server: the model reads the prompt of its LF twin (it was
trained on LF text; a "\\r" token before every line break made its suggestions worse), so the engine
finds that prompt cached, and no suggestion carries a "\\r"."""

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.conftest import invoked_at, open_document, server_command, workspace_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = "".join(f"def scale_{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(40)) + "def last(x):\n    return x"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("line-breaks")


# The full prompt on every key (no short first prompt), no context from other files, no debounce.
client = workspace_client(server_command("--cold-prompt-tokens", "0", "--no-context", "--no-debounce"))


async def engine_totals(client):
    return (await client.protocol.send_request_async("completer/stats", None)).engine


async def test_a_crlf_file_reads_as_its_lf_twin(client: LanguageClient, workspace: Path):
    uri = (workspace / "scale.py").as_uri()
    line, character = DOC.count("\n"), len(DOC.rsplit("\n", 1)[1])
    answers, work = [], []
    for text in (DOC, DOC.replace("\n", "\r\n")):
        open_document(client, uri, text)
        before = await engine_totals(client)
        answers.append(await client.text_document_inline_completion_async(invoked_at(uri, line, character)))
        after = await engine_totals(client)
        work.append((after.prompt_tokens - before.prompt_tokens, after.prefill_tokens - before.prefill_tokens))
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
    (lf_prompt, lf_prefill), (crlf_prompt, crlf_prefill) = work
    assert lf_prefill > 100  # the LF file's prompt was computed...
    assert crlf_prompt == lf_prompt and crlf_prefill <= 8  # ...and the CRLF file's is the same, found cached
    for answer in answers:
        assert answer.items and all("\r" not in item.insert_text for item in answer.items)
