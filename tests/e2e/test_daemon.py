"""The shared engine daemon (Contract 3), with real processes: `completer serve --engine auto` under a
real LSP client, `completer engine` on a unix socket, the fixture model."""

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import msgpack
import pytest

from completer.replay.editor_client import EditorClient
from tests.conftest import FIXTURE_MODEL, server_command

TEXT = "import os\n\n\ndef list_files(root):\n    names = []\n    for name in os.listdir(root):\n        \n"
LINE = 6


def _talk(path, *messages, until="health", timeout=10.0) -> dict:
    """Send raw protocol messages, return the first reply whose op is `until` (or an error)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(b"".join(msgpack.packb(m) for m in messages))
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            unpacker.feed(chunk)
            for msg in unpacker:
                if msg.get("op") in (until, "error"):
                    return msg


def _health(path) -> dict:
    return _talk(path, {"op": "hello", "v": 1}, {"op": "health"})


def _kill(pid: int, sig=signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie of ours counts as gone
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


async def _window(sock, text=TEXT, name="a.py", *extra) -> EditorClient:
    cmd = server_command("--engine", "auto", "--engine-socket", str(sock), "--engine-idle-exit-s", "30",
                         "--max-tokens", "6", *extra)
    client = EditorClient(cmd, f"file:///work/{name}", text)
    await client.start()
    await client.wait_ready(timeout=120)
    return client


def test_two_windows_share_one_daemon(tmp_path):
    sock = tmp_path / "e.sock"

    async def main():
        a = await _window(sock, TEXT, "a.py")
        b = await _window(sock, TEXT.replace("names", "paths"), "b.py")
        daemon_pid = None
        try:
            for client in (a, b):
                line, col = client.insert(LINE, 8, "n")
                s = await client.complete(line, col, timeout=30)
                assert not s.cancelled and s.text, "a window got no suggestion from the daemon"
            info_a, info_b = (await a.stats())["engineInfo"], (await b.stats())["engineInfo"]
            daemon_pid = info_a["daemon_pid"]
            assert daemon_pid == info_b["daemon_pid"]  # one model, one cache
            assert info_a["backend"].endswith("(daemon)") and info_a["socket"] == str(sock)
            health = _health(sock)
            assert health["ok"] and health["clients"] >= 2 and health["requests"] >= 2
        finally:
            await a.stop()
            await b.stop()
            if daemon_pid:
                _kill(daemon_pid)

    asyncio.run(main())


def test_daemon_death_answers_nothing_then_recovers_with_the_documents_intact(tmp_path):
    sock = tmp_path / "e.sock"

    async def main():
        client = await _window(sock, TEXT, "a.py", "--no-reuse")
        pids = []
        try:
            line, col = client.insert(LINE, 8, "n")
            assert (await client.complete(line, col, timeout=30)).text
            pids.append((await client.stats())["engineInfo"]["daemon_pid"])
            _kill(pids[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not _gone(pids[0]) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            # Edits while the daemon is away: answered with nothing, quickly, and no error storm.
            line, col = client.insert(line, col, "ame")
            t0 = time.perf_counter()
            away = await client.complete(line, col, timeout=30)
            assert away.text == "" and not away.cancelled and time.perf_counter() - t0 < 5
            line, col = client.insert(line, col, ".st")
            # The server starts a new daemon in the background; a later request is answered by it.
            answer = None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                s = await client.complete(line, col, timeout=30)
                if s.text:
                    answer = s.text
                    break
            assert answer is not None, "no answer after the daemon died"
            stats = await client.stats()
            pids.append(stats["engineInfo"]["daemon_pid"])
            assert pids[1] != pids[0] and stats["counters"]["unavailable"] >= 1
            assert client.status.get("state") == "ready"
            text = client.text
        finally:
            await client.stop()
            for pid in pids:
                _kill(pid)
        return answer, text, line, col

    answer, text, line, col = asyncio.run(main())
    # The server kept every edit made while the engine was away: its answer is what the model says
    # for the client's text (greedy decoding, same model, same settings).
    path = tmp_path / "a.py"
    path.write_text(text)
    r = subprocess.run([sys.executable, "-m", "completer", "complete", str(path), "--line", str(line), "--character",
                        str(col), "--json", "--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-tokens", "6"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["text"] == answer


@pytest.fixture
def daemon(tmp_path):
    sock = tmp_path / "d.sock"
    proc = subprocess.Popen([sys.executable, "-m", "completer", "engine", "--socket", str(sock), "--model",
                             str(FIXTURE_MODEL), "--device", "cpu", "--idle-exit-s", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    yield sock, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_daemon_socket_is_private_and_speaks_one_version(daemon):
    sock, proc = daemon
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    reply = _talk(sock, {"op": "hello", "v": 99}, until="hello")
    assert reply["op"] == "error" and "version" in reply["message"]
    reply = _talk(sock, {"op": "hello", "v": 1}, {"op": "frobnicate", "id": 3}, until="never")
    assert reply["op"] == "error" and "frobnicate" in reply["message"]
    # A generation streams deltas and ends with stats; a malformed one gets an error, and the daemon lives on.
    reply = _talk(sock, {"op": "hello", "v": 1}, {"op": "generate", "id": 1, "req": {"prompt_ids": "x"}}, until="never")
    assert reply["op"] == "error" and reply["id"] == 1
    done = _talk(sock, {"op": "hello", "v": 1},
                 {"op": "generate", "id": 2, "req": {"prompt_ids": [1, 2, 3], "max_new_tokens": 4}}, until="done")
    assert done["op"] == "done" and 0 < done["stats"]["decode_tokens"] <= 4
    assert _health(sock)["requests"] >= 1 and proc.poll() is None
    # A second daemon on the same socket refuses to start.
    r = subprocess.run([sys.executable, "-m", "completer", "engine", "--socket", str(sock), "--model",
                        str(FIXTURE_MODEL)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "already" in r.stderr


def test_connect_mode_without_a_daemon_reports_a_clear_error(tmp_path):
    async def main():
        cmd = server_command("--engine", "connect", "--engine-socket", str(tmp_path / "none.sock"))
        client = EditorClient(cmd, "file:///work/a.py", TEXT)
        await client.start()
        try:
            with pytest.raises(RuntimeError, match="no completer engine daemon"):
                await client.wait_ready(timeout=60)
            s = await client.complete(LINE, 8, timeout=10)  # the server still answers, with nothing
            assert s.text == "" and not s.cancelled
        finally:
            await client.stop()

    asyncio.run(main())
