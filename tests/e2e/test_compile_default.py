"""The server's default on CPU: on its first start it answers at once with the eager engine while a
separate process builds the compiled engine, then switches; a later start loads it from the cache and
serves compiled from its first answer (real `completer serve --stdio`, fixture model)."""

import asyncio
import time
from pathlib import Path

from completer.replay.editor_client import EditorClient
from tests.conftest import server_command

TEXT = "import os\n\n\ndef list_files(root):\n    names = []\n    for name in os.listdir(root):\n        \n"
LINE = 6


def test_server_answers_while_compiling_then_runs_compiled_and_starts_compiled_next_time(tmp_path, monkeypatch,
                                                                                        compile_cache_home):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)  # conftest turns it off for other tests
    # No compiled engine for the server's settings yet (test_compiled_engine builds another key there).
    monkeypatch.setenv("XDG_CACHE_HOME", str(compile_cache_home))
    uri = (tmp_path / "files.py").as_uri()
    Path(tmp_path / "files.py").write_text(TEXT)

    async def main():
        client = EditorClient(server_command(), uri, TEXT, log_path=str(tmp_path / "server.log"))
        await client.start()
        try:
            await client.wait_ready()
            assert client.status["compile"] == "compiling"
            line, col = client.insert(LINE, 8, "n")
            first = await client.complete(line, col, timeout=60)
            assert not first.cancelled and first.text
            deadline = time.monotonic() + 600
            while client.status.get("compile") == "compiling":  # the server says when it switches
                assert time.monotonic() < deadline, "the background compile never finished"
                await asyncio.sleep(0.5)
            assert client.status["compile"] == "compiled", client.status
            stats = await client.stats()
            assert stats["engineInfo"]["compiled"] and stats["engineInfo"]["compile"] == "compiled"
            line, col = client.insert(line, col, "ame.")  # not what was suggested: the model answers
            later = await client.complete(line, col, timeout=60)
            assert not later.cancelled and later.text
            assert (await client.stats())["engine"]["engine_requests"] > stats["engine"]["engine_requests"]
        finally:
            await client.stop()
        # The next start finds the packages: compiled before its first answer.
        again = EditorClient(server_command(), uri, TEXT, log_path=str(tmp_path / "server2.log"))
        await again.start()
        try:
            await again.wait_ready()
            assert again.status["compile"] == "compiled", again.status
            line, col = again.insert(LINE, 8, "n")
            first = await again.complete(line, col, timeout=60)
            assert not first.cancelled and first.text
            info = (await again.stats())["engineInfo"]
            assert info["compiled"] and Path(info["compiled_engine"]).parent == compile_cache_home / "completer" / "engines"
        finally:
            await again.stop()

    asyncio.run(main())
