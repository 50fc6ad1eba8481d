"""Issue 24's findings that need the real server, daemon or HTTP server (RELIABILITY.md lists which
test pins which finding): bad input that must not break a document, a recording or the server."""

import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from completer.replay.session import read_session
from tests.conftest import server_command
from tests.e2e.test_malformed_input import RawServer, encoded, framed, inline


class Server(RawServer):
    """`completer serve --stdio` with extra flags, initialized, spoken to in raw JSON-RPC frames."""

    def __init__(self, *extra: str):
        super().__init__(*extra)
        self.send({"id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}})
        assert "result" in self.response(1)
        self.send({"method": "initialized", "params": {}})

    def stats(self, msg_id, **params):
        self.send({"id": msg_id, "method": "completer/stats", "params": params})
        return self.response(msg_id)["result"]

    def open(self, uri, language_id, text, version=1):
        self.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": language_id, "version": version, "text": text}}})

    def insert(self, uri, version, line, character, text):
        pos = {"line": line, "character": character}
        self.send({"method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {"start": pos, "end": pos}, "text": text}]}})

    def close(self):
        try:
            self.send({"id": 99_999, "method": "shutdown"})
            self.response(99_999, timeout=10)
            self.send({"method": "exit"})
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- finding 9: a lone UTF-16 surrogate ------------------------------------------------------------

def test_documents_with_a_lone_surrogate_open_complete_and_are_recorded(tmp_path):
    log = tmp_path / "server.log"
    server = Server("--record", str(tmp_path / "rec"), "--log-file", str(log), "--max-tokens", "4")
    try:
        # JSON "\ud800" decodes to a lone surrogate, as an editor sends it (VS Code strings are UTF-16).
        texts = {"file:///w/s.py": "x = '\ud800'\ndef f(a):\n    return ",
                 "file:///w/s.txt": "note \udc00 here\nand then "}
        for uri, text in texts.items():
            server.open(uri, "python" if uri.endswith(".py") else "plaintext", text)
        server.insert("file:///w/s.py", 2, 2, 11, "a")
        server.insert("file:///w/s.txt", 2, 1, 9, "\ud83d")  # another lone one, typed
        texts["file:///w/s.py"] += "a"
        texts["file:///w/s.txt"] += "\ud83d"
        server.send(inline(2, "file:///w/s.py", 2, 12))
        server.send(inline(3, "file:///w/s.txt", 1, 10))
        assert "result" in server.response(2) and "result" in server.response(3)
        stats = server.stats(4, documents=True)
        held = {d["uri"]: d["sha256"] for d in stats["documents"]}
        assert held == {uri: _sha(text) for uri, text in texts.items()}  # opened, and the user's text intact
        assert stats["counters"]["errors"] == 0 and stats["counters"]["requests"] == 2
    finally:
        server.close()
    assert "Traceback" not in log.read_text(errors="replace")
    recording = read_session(next((tmp_path / "rec").glob("session-*.msgpack")))
    kinds = [e["e"] for e in recording.events]
    assert kinds.count("open") == 2 and kinds.count("change") == 2 and kinds.count("answer") == 2
    assert recording.of_kind("open")[0]["text"] == "x = '\ud800'\ndef f(a):\n    return "


# -- finding 11: a daemon takes its lock before it loads a model ------------------------------------

def test_a_second_daemon_exits_before_loading_a_model(tmp_path):
    sock = tmp_path / "d.sock"
    fd = os.open(f"{sock}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another daemon started a moment ago, loading its model
    try:
        r = subprocess.run([sys.executable, "-m", "completer", "engine", "--socket", str(sock), "--model",
                            str(tmp_path / "no-such-model")], capture_output=True, text=True, timeout=60)
    finally:
        os.close(fd)
    assert r.returncode == 1 and "already serves" in r.stderr, r.stderr  # no model load was even tried
    assert not sock.exists()


# -- finding 4: serve --tcp takes one client, with the token ----------------------------------------

class TcpClient:
    def __init__(self, port):
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def send(self, message: dict):
        self.sock.sendall(framed(encoded(message)))

    def receive(self) -> dict | None:
        """The next message, or None once the server closed the connection."""
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if sep:
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    return json.loads(rest[:length])
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk

    def response(self, msg_id):
        while (msg := self.receive()) is not None:
            if msg.get("id") == msg_id and "method" not in msg:
                return msg
        return None


def _listening(proc, timeout=60.0) -> str:
    """The server's "LSP on HOST:PORT" line from its stderr."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, "the server ended before listening"
            continue
        if "LSP on" in line:
            return line
    raise AssertionError("the server never said where it listens")


def _initialize(token=None, msg_id=1):
    options = {} if token is None else {"token": token}
    return {"id": msg_id, "method": "initialize", "params": {"capabilities": {}, "processId": None,
                                                             "initializationOptions": options}}


def test_tcp_needs_the_token_and_serves_one_client(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "COMPLETER_LSP_TOKEN": "t0ken-for-test"}
    proc = subprocess.Popen(server_command()[:4] + ["--tcp", f"127.0.0.1:{port}", *server_command()[5:]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()  # (refused, as any intruder)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server never listened"
                time.sleep(0.1)
        time.sleep(0.3)
        assert proc.poll() is None, "a connection that sent nothing stopped the server"
        # No token, a wrong token, a request before initialize, garbage: refused, and the server lives on.
        for first in (_initialize(), _initialize("wrong"), {"id": 1, "method": "workspace/didChangeConfiguration",
                                                            "params": {"settings": {"model": "/tmp/evil"}}}):
            intruder = TcpClient(port)
            intruder.send(first)
            answer = intruder.response(1)
            assert answer is None or "error" in answer, answer
            assert intruder.receive() is None  # closed
        intruder = TcpClient(port)
        intruder.sock.sendall(b"garbage\r\n\r\n")
        intruder.sock.close()
        time.sleep(0.3)
        assert proc.poll() is None, "a refused connection stopped the server"
        client = TcpClient(port)
        client.send(_initialize("t0ken-for-test"))
        assert "result" in client.response(1)
        client.send({"method": "initialized", "params": {}})
        second = TcpClient(port)  # with the right token too: one client at a time
        second.send(_initialize("t0ken-for-test"))
        assert (second.response(1) or {"error": 1}).get("error") and second.receive() is None
        client.send({"id": 2, "method": "completer/stats", "params": {}})
        assert "result" in client.response(2)  # the first client's output was not taken over
    finally:
        proc.kill()
        proc.wait()


def test_tcp_without_a_token_in_the_environment_writes_one_to_a_private_file(tmp_path):
    import re
    import stat

    env = {k: v for k, v in os.environ.items() if k != "COMPLETER_LSP_TOKEN"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    proc = subprocess.Popen(server_command()[:4] + ["--tcp", "0", *server_command()[5:]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = _listening(proc)
        path = Path(re.search(r"the token: ([^)]+)\)", line).group(1))
        assert path.parent == tmp_path / "completer" and stat.S_IMODE(path.stat().st_mode) == 0o600
        port = int(re.search(r"LSP on [^ ]+:(\d+)", line).group(1))
        client = TcpClient(port)
        client.send(_initialize(path.read_text().strip()))
        assert "result" in client.response(1)
    finally:
        proc.kill()
        proc.wait()


# -- finding 17: demo and replay logs are new private files, never a fixed name in /tmp ---------------

def test_demo_and_replay_never_write_through_a_planted_log_name(tmp_path):
    import stat

    from completer.replay.session import Session, event, write_session
    from tests.conftest import FIXTURE_MODEL

    shared = tmp_path / "tmp"  # the shared temp dir, as the subprocesses see it ($TMPDIR)
    shared.mkdir()
    victim = tmp_path / "victim"  # where another local user wants a file of ours created
    for name in ("completer-replay-server.log", "completer-demo-server.log"):
        (shared / name).symlink_to(victim)  # planted by that user
    text = "def f(x):\n    return \n"
    session = tmp_path / "s.msgpack"
    write_session(session, Session("synthetic", "utf-16", {"name": "s"}, [
        event("open", 0, uri="file:///work/s.py", language_id="python", version=1, text=text),
        event("plan", 0, uri="file:///work/s.py", line=1, character=11, text="x", steps=[["type", 0, "x", 10.0]])]))
    env = {**os.environ, "TMPDIR": str(shared)}
    model = ["--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-tokens", "4"]
    for args in (["replay", str(session), "--speed", "10", *model], ["demo", "--session", str(session), *model]):
        r = subprocess.run([sys.executable, "-m", "completer", *args], capture_output=True, text=True, timeout=240,
                           env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    assert not victim.exists()
    logs = [p for p in shared.iterdir() if not p.is_symlink()]
    assert len(logs) == 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in logs), logs


def test_a_model_directory_that_comes_back_is_loaded_again_without_a_restart(tmp_path):
    # The server starts on a model directory that is not there (an unmounted disk, a sync in progress);
    # requests answer empty with an error status, and once the directory is back, a later request
    # loads it (failed loads are retried, the first time after 2 s), with no restart or setting change.
    from tests.conftest import FIXTURE_MODEL

    model = tmp_path / "model"
    server = Server("--model", str(model))
    try:
        server.open("file:///w/a.py", "python", "def add(a, b):\n    return ")
        server.send(inline(2, "file:///w/a.py", 1, 11))
        answer = server.response(2)
        assert answer["result"] is None or answer["result"]["items"] == []
        assert server.stats(3)["engineInfo"] is None
        shutil.copytree(FIXTURE_MODEL, model)
        time.sleep(2.5)
        for msg_id in range(4, 20):  # the retry's load takes a moment; each request waits for it
            server.send(inline(msg_id, "file:///w/a.py", 1, 11))
            server.response(msg_id)
            if server.stats(100 + msg_id)["engineInfo"] is not None:
                break
            time.sleep(0.5)
        records = server.stats(200, requests=True)["requests"]
        assert records[0]["kind"] == "error" and any(r["kind"] == "engine" for r in records), records
    finally:
        server.close()
