"""Copies from the other files open in the workspace, over the real server with the embedded model:
a line typed in another open file is among the suggestions here, though no chunk of that file fits
the prompt."""

import asyncio
from pathlib import Path

import pytest
from pytest_lsp import LanguageClient

from tests.conftest import ROOT, invoked_at, open_document, server_command, workspace_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

EMBEDDED = ROOT / "completer" / "models" / "embedded"
WANTED = 'response = session.request("PATCH", endpoint_url, json=payload_body, timeout=retry_seconds)'
# Each 24-line chunk of api.py is longer than the prompt's share for context (~1,536 characters), so
# none is chosen for the prompt: the line can only come from the copy lookup over the open files.
FILLER = "".join(f"    audit_log_entries.append(build_audit_record(event_kind_{i:02}, user_identity, timestamp_now, "
                 f"source_address))\n" for i in range(69))  # 72 lines in all: three chunks of 24 long lines
API = "def send(session, endpoint_url, payload_body, retry_seconds):\n" + FILLER + f"    {WANTED}\n    return response\n"


def server():
    # The embedded model (a later --model wins), every suggestion shown: the test is about what is offered.
    return server_command("--model", str(EMBEDDED), "--min-confidence", "0")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    (root / "api.py").write_text(API)
    return root


client = workspace_client(server())


async def test_a_line_from_another_open_file_is_offered(client: LanguageClient, workspace: Path):
    open_document(client, (workspace / "api.py").as_uri(), API)
    main = workspace / "main.py"
    text = "def update(session, endpoint_url, payload_body, retry_seconds):\n    response = session.req\n"
    main.write_text(text)
    uri = main.as_uri()
    open_document(client, uri, text)
    # Elsewhere first (an answer at the same place would be reused): it waits for the model to load.
    await client.text_document_inline_completion_async(invoked_at(uri, 0, 4))
    await asyncio.sleep(2.0)  # the user pauses: the server refreshes the document's context (after 0.8 s)
    stats = await client.protocol.send_request_async("completer/stats", None)
    assert not next((entry.paths for entry in stats.context if entry.uri == uri), [])  # nothing in the prompt
    result = await client.text_document_inline_completion_async(invoked_at(uri, 1, 26))
    items = result.items if hasattr(result, "items") else result
    # Among the suggestions (the first shown, the others offered for cycling): which comes first is the
    # reranker's call, measured by bench/quality.py --workspace, not this test's.
    assert any(item.insert_text.endswith(WANTED[len("response = session.req"):]) for item in items)
