"""The `openai` backend against a real OpenAI-compatible server (`completer serve-openai` in a
subprocess, torch engine behind it), and the real language server using it over stdio."""

import asyncio
import json
import subprocess
import sys
import time

import pytest

from completer.engines.contract import GenerationRequest, StopRules
from completer.engines.loading import create_engine
from completer.engines.openai_compat import ServerError
from completer.replay.editor_client import EditorClient
from tests.conftest import FIXTURE_MODEL, ROOT, OpenAIServer, free_port, server_command

EMBEDDED = ROOT / "completer" / "models" / "embedded"

TEXT = "import os\n\n\ndef list_files(root):\n    names = []\n    for name in os.listdir(root):\n        \n"
LINE = 6


def test_api_key_from_the_environment_is_sent_and_required(monkeypatch):
    with OpenAIServer("--require-api-key", env={"COMPLETER_API_KEY": "s3cret"}) as server:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("COMPLETER_API_KEY", raising=False)
        with pytest.raises(ServerError, match="401"):
            create_engine("openai", FIXTURE_MODEL, server_url=server.url)
        monkeypatch.setenv("COMPLETER_API_KEY", "s3cret")
        engine = create_engine("openai", FIXTURE_MODEL, server_url=server.url)
        stream = engine.generate(GenerationRequest(tuple(engine.tokenizer.encode("def f(")), max_new_tokens=3,
                                                   stop=StopRules(max_lines=0)))
        assert len("".join(d.text for d in stream)) > 0 and stream.stats.decode_tokens == 3
        assert engine.describe()["api_key"] == "set" and engine.served_model
        engine.close()


def test_a_server_that_is_down_answers_unavailable_at_once_then_recovers():
    port = free_port()
    engine = create_engine("openai", FIXTURE_MODEL, server_url=f"http://127.0.0.1:{port}/v1")
    assert engine.describe()["status"].startswith("down")
    request = GenerationRequest(tuple(engine.tokenizer.encode("def f(")), max_new_tokens=3, stop=StopRules(max_lines=0))
    t0 = time.perf_counter()
    stream = engine.generate(request)
    assert list(stream) == [] and stream.stats.finish_reason == "unavailable"
    assert time.perf_counter() - t0 < 1.0  # no pile of connects on a keystroke
    with OpenAIServer(port=port):
        time.sleep(engine.down_s)
        stream = engine.generate(request)
        assert "".join(d.text for d in stream) and stream.stats.finish_reason == "max_tokens"
        assert engine.describe()["status"] == "ok"
    engine.close()


def test_unknown_served_model_is_a_clear_error():
    with OpenAIServer() as server:
        with pytest.raises(ServerError, match="does not serve 'nope'"):
            create_engine("openai", FIXTURE_MODEL, server_url=server.url, served_model="nope")


def test_language_server_on_the_openai_backend_survives_the_server_going_away(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    # The embedded model: the fixture model's answers rarely re-type a heal prefix, which an
    # unconstrained backend needs (see OutputShaper).
    cmd = server_command("--backend", "openai", "--server-url", url, "--max-tokens", "6", "--no-reuse",
                         "--model", str(EMBEDDED))

    async def main(server):
        client = EditorClient(cmd, "file:///work/a.py", TEXT)
        await client.start()
        await client.wait_ready(timeout=60)
        try:
            line, col = client.insert(LINE, 8, "n")
            first = await client.complete(line, col, timeout=30)
            assert first.text
            assert (await client.stats())["engineInfo"]["backend"] == "openai"
            server.__exit__(None, None, None)
            # Edits while the server is away: answered with nothing, quickly; the status says why.
            line, col = client.insert(line, col, "ame")
            t0 = time.perf_counter()
            away = await client.complete(line, col, timeout=30)
            assert away.text == "" and time.perf_counter() - t0 < 5
            assert client.status.get("state") == "error" and "unavailable" in client.status.get("message", "")
            line, col = client.insert(line, col, ".st")
            server.__enter__()
            answer = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and answer is None:
                await asyncio.sleep(0.5)
                answer = (await client.complete(line, col, timeout=30)).text or None
            assert answer is not None, "no answer after the server came back"
            assert client.status.get("state") == "ready"
            assert (await client.stats())["counters"]["unavailable"] >= 1
            return first, answer, client.text, line, col
        finally:
            await client.stop()

    with OpenAIServer(port=port, model=EMBEDDED) as server:
        first, answer, text, line, col = asyncio.run(main(server))
        # The server kept every edit made while the backend was away: its answer is what
        # `completer complete` gets for the client's text from the same server.
        path = tmp_path / "a.py"
        path.write_text(text)
        r = subprocess.run([sys.executable, "-m", "completer", "complete", str(path), "--line", str(line),
                            "--character", str(col), "--json", "--model", str(EMBEDDED), "--backend", "openai",
                            "--server-url", url, "--max-tokens", "6"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["text"] == answer
