"""Raw JSON-RPC frames a real client would never send: the server answers what it can and survives."""

import json
import queue
import subprocess
import threading

import pytest

from tests.conftest import server_command


def framed(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def encoded(message: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode()


def frame(message: dict) -> bytes:
    return framed(encoded(message))


class RawServer:
    def __init__(self, *extra: str, cwd=None, keep_stderr: bool = False):
        """keep_stderr: collect the server's log in self.stderr (else it is dropped)."""
        self.proc = subprocess.Popen(server_command(*extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL, cwd=cwd)
        self.messages: queue.Queue = queue.Queue()
        self.seen: list[dict] = []  # what response() read past
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        if keep_stderr:
            threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.messages.put(json.loads(out.read(length)))

    def send_bytes(self, body: bytes):
        self.proc.stdin.write(framed(body))
        self.proc.stdin.flush()

    def send(self, message: dict):
        self.send_bytes(encoded(message))

    def response(self, msg_id, timeout=60):
        while True:
            msg = self.messages.get(timeout=timeout)
            if msg.get("id") == msg_id and "method" not in msg:
                return msg
            self.seen.append(msg)

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def raw():
    server = RawServer()
    server.send({"id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}})
    assert "result" in server.response(1)
    server.send({"method": "initialized", "params": {}})
    yield server
    server.close()


def inline(msg_id, uri, line, character):
    return {"id": msg_id, "method": "textDocument/inlineCompletion",
            "params": {"textDocument": {"uri": uri}, "position": {"line": line, "character": character},
                       "context": {"triggerKind": 2}}}


def test_malformed_messages_do_not_kill_the_server(raw):
    raw.send_bytes(b"{this is not json")
    raw.send_bytes(b"[1, 2, 3]")
    raw.send_bytes(b'"just a string"')
    raw.send({"id": 2, "method": "textDocument/inlineCompletion", "params": {"position": "nonsense"}})
    assert raw.response(2)["error"]["code"] == -32602  # Invalid Params, not silence
    raw.send({"id": 3, "method": "textDocument/inlineCompletion", "params": None})
    assert raw.response(3)["error"]["code"] == -32602
    raw.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": 5}, "contentChanges": "x"}})
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {"uri": "file:///a.py"}}})
    raw.send({"id": 4, "method": "no/such/method", "params": {}})
    assert raw.response(4)["error"]["code"] == -32601
    folders = "workspace/didChangeWorkspaceFolders"
    raw.send({"method": folders, "params": {"event": "x"}})
    raw.send({"method": folders, "params": {"event": {"added": [{"uri": 5}], "removed": []}}})
    raw.send({"method": folders, "params": {"event": {"removed": [], "added": [  # none of them a folder here
        {"uri": "untitled:Untitled-1", "name": "u"}, {"uri": "file:///no/such/dir", "name": "n"},
        {"uri": "file:///etc/hostname", "name": "f"}]}}})
    # still serving, with a real document
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///ok.py", "languageId": "python", "version": 1, "text": "def f(x):\n    return x\n"}}})
    raw.send(inline(5, "file:///ok.py", 1, 12))
    ok = raw.response(5)
    assert "result" in ok and isinstance(ok["result"]["items"], list)
    assert raw.proc.poll() is None
    # pygls shows the user an error for each message it cannot read: a client whose requests do not
    # match the types would raise one at every keystroke. Shown once; the rest is logged.
    popups = [m for m in list(raw.messages.queue) + raw.seen if m.get("method") == "window/showMessage"]
    assert len(popups) == 1 and popups[0]["params"]["type"] == 1


def test_binary_and_huge_documents_get_graceful_answers(raw):
    binary = "".join(chr(c) for c in range(0, 256)) + "\x00\x00\ufffd\n" * 3
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///bin.dat", "languageId": "plaintext", "version": 1, "text": binary}}})
    raw.send(inline(10, "file:///bin.dat", 1, 2))
    assert "result" in raw.response(10)
    huge = ("x = " + "1 + " * 50 + "1\n") * 50_000  # ~10 MB, 50k lines
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///huge.py", "languageId": "python", "version": 1, "text": huge}}})
    raw.send({"method": "textDocument/didChange", "params": {
        "textDocument": {"uri": "file:///huge.py", "version": 2},
        "contentChanges": [{"range": {"start": {"line": 25000, "character": 0}, "end": {"line": 25000, "character": 0}},
                            "text": "y = "}]}})
    raw.send(inline(11, "file:///huge.py", 25000, 4))
    assert "result" in raw.response(11)
    long_line = "z = [" + "0, " * 400_000 + "]\n"
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///long.py", "languageId": "python", "version": 1, "text": long_line}}})
    raw.send(inline(12, "file:///long.py", 0, 600_000))
    assert "result" in raw.response(12)
    assert raw.proc.poll() is None


# -- the stdio transport (lsp/transport.py): the event loop reads a pipe, pygls' reader anything else --

INITIALIZE = {"id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}}


def test_an_overlong_header_line_is_dropped_and_serving_goes_on(raw):
    raw.proc.stdin.write(b"X-Junk: " + b"j" * 300_000 + b"\r\n")  # over the stream's 64 KiB line limit
    raw.proc.stdin.flush()
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///ok.py", "languageId": "python", "version": 1, "text": "def f(x):\n    return x\n"}}})
    raw.send(inline(2, "file:///ok.py", 1, 12))
    assert "result" in raw.response(2)
    assert raw.proc.poll() is None


def test_input_ending_inside_a_message_ends_the_server_without_a_traceback():
    proc = subprocess.Popen(server_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate(frame(INITIALIZE) + b"Content-Length: 100\r\n\r\n{\"jsonrpc\": ", timeout=120)
    assert b'"id": 1' in out  # the complete message was answered
    assert proc.returncode == 0
    assert b"Traceback" not in err, err.decode(errors="replace")


def test_stdin_from_a_regular_file_is_served_by_pygls_reader(tmp_path):
    # asyncio cannot watch a regular file: the server falls back to pygls' own reader.
    script = tmp_path / "session.jsonrpc"
    script.write_bytes(frame(INITIALIZE) + frame({"method": "initialized", "params": {}})
                       + frame({"id": 2, "method": "shutdown"}) + frame({"method": "exit"}))
    with open(script, "rb") as stdin:
        proc = subprocess.run(server_command(), stdin=stdin, capture_output=True, timeout=120)
    assert b'"id": 1' in proc.stdout and b'"id": 2' in proc.stdout
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
