"""Seeded random traffic through the real server over stdio: every feature it registers, with valid,
out-of-range and mistyped params, some frames that are not JSON-RPC at all, documents that are not
open or not in the workspace, notebooks opened, edited, restructured and closed (their cells also
sent as text documents), settings and workspace changes in between. The server must answer every
request (a result, or the JSON-RPC error for bad params), log no failure of its own, and still
complete a fresh document and a fresh notebook's cell afterwards (seeds 1-12 passed when notebooks
were added). test_malformed_input.py pins the individual cases; this one
looks for the combinations nobody wrote down."""

import json
import queue
import random
import re
import time

import pytest

from tests.e2e.test_malformed_input import RawServer

# Errors a request may get: bad params, not a request, cancelled (a newer request superseded it).
ALLOWED_ERRORS = {-32602, -32600, -32800}
# What the server's stderr may say at ERROR level: pygls refusing a frame it cannot read. A handler that
# fails is logged by the server (CompleterServer.report_server_error) and shown to the user.
ALLOWED_ERROR_LOGS = ("Unable to deserialize message", "Unable to handle message")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (ERROR|CRITICAL) (\S+): (.*)$", re.MULTILINE)

TEXTS = ["", "x", "def f(a, b):\n    return a + b\n", "😀😀\r\nimport os\r\nos.pa", "a\u2028b\x0cc\x85d\n\ne",
         "\x00\x01bin\xff", "x = '" + "é" * 300 + "\n", "\n" * 200, "\ud800lone\n", "\t\tif x:\n\t\t\t",
         "class A:\n    def m(self):\n        self.", "var a=1;" * 3_000 + "/* 😀 */ f(\n"]
INSERTS = ["", "a", "\n", "\r\n", "😀", "  ", "x.y(", "\r", "é\n", "\ud83d"]
ODD_VALUES = [None, -1, 2**31, 2**63, 1.5, "1", [], {}, True, "", "\x00", 10**30]


class Traffic:
    """Random messages for one workspace; remembers document versions so that most edits are in order."""

    def __init__(self, rng: random.Random, root: str):
        self.rng, self.root = rng, root
        self.uris = [root + "/pkg/a.py", root + "/pkg/b.ts", root + "/secret/s.py", "untitled:Untitled-1",
                     "file:///etc/passwd", root + "/x.log", root + "/pkg/%ZZ.py", "notauri", root + "/pkg/c.rs"]
        self.versions: dict[str, int] = {}
        self.notebooks = [root + "/pkg/nb.ipynb", root + "/secret/s.ipynb", "untitled:Untitled-2.ipynb"]
        self.cells = [f"vscode-notebook-cell:{nb.split(':', 1)[1]}#W{i}sZmlsZQ%3D%3D" for nb in self.notebooks
                      for i in range(3)]
        self.uris += self.cells[::2]  # text sync and requests for cells too (some joined, some not open)

    def position(self) -> dict:
        rng = self.rng
        if rng.random() < 0.3:
            return {"line": rng.choice([0, 3, 100, -1, 2**31]), "character": rng.choice([0, 7, 1000, -1, 30_000])}
        return {"line": rng.randint(0, 4), "character": rng.randint(0, 12)}

    def mangled(self, value):
        """`value` with some fields dropped, retyped or added."""
        rng = self.rng
        if rng.random() < 0.08:
            return rng.choice(ODD_VALUES)
        if isinstance(value, dict):
            value = {k: self.mangled(v) for k, v in value.items() if rng.random() > 0.05}
            if rng.random() < 0.05:
                value["extra"] = rng.choice(ODD_VALUES)
        elif isinstance(value, list):
            value = [self.mangled(v) for v in value]
        return value

    def notebook_message(self) -> dict:
        """notebookDocument/didOpen, didChange (cell text and structure) or didClose."""
        rng, notebook, roll = self.rng, self.rng.choice(self.notebooks), self.rng.random()
        cells = [cell for cell in self.cells if notebook.split(":", 1)[1] in cell]

        def cell(uri):
            return {"kind": rng.choice([1, 2, 2, 2]), "document": uri}

        def item(uri):
            return {"uri": uri, "languageId": rng.choice(["python", "python", "javascript", "markdown"]),
                    "version": 1, "text": rng.choice(TEXTS)}

        if roll < 0.3:
            chosen = rng.sample(cells, rng.randint(0, len(cells)))
            return {"method": "notebookDocument/didOpen", "params": {
                "notebookDocument": {"uri": notebook, "notebookType": "jupyter-notebook", "version": 1,
                                     "cells": [cell(uri) for uri in chosen]},
                "cellTextDocuments": [item(uri) for uri in chosen if rng.random() > 0.1]}}
        if roll < 0.9:
            change = {}
            if rng.random() < 0.7:
                change["textContent"] = [{"document": {"uri": rng.choice(cells), "version": rng.randint(1, 50)},
                                          "changes": [{"range": {"start": self.position(), "end": self.position()},
                                                       "text": rng.choice(INSERTS)}]}]
            if rng.random() < 0.4:
                added = rng.sample(cells, rng.randint(0, 2))
                change["structure"] = {
                    "array": {"start": rng.choice([0, 1, 5, -1]), "deleteCount": rng.choice([0, 1, 3, -2]),
                              "cells": [cell(uri) for uri in added]},
                    "didOpen": [item(uri) for uri in added if rng.random() > 0.3],
                    "didClose": [{"uri": uri} for uri in rng.sample(cells, rng.randint(0, 1))]}
            return {"method": "notebookDocument/didChange", "params": {
                "notebookDocument": {"uri": notebook, "version": rng.randint(1, 50)}, "change": {"cells": change}}}
        return {"method": "notebookDocument/didClose", "params": {
            "notebookDocument": {"uri": notebook}, "cellTextDocuments": [{"uri": uri} for uri in cells]}}

    def message(self) -> dict:
        rng, uri, roll = self.rng, self.rng.choice(self.uris), self.rng.random()
        if rng.random() < 0.12:
            msg = self.notebook_message()
        elif roll < 0.15:
            self.versions[uri] = 1
            msg = {"method": "textDocument/didOpen", "params": {"textDocument": {
                "uri": uri, "languageId": rng.choice(["python", "typescript", "rust", "plaintext", "weird"]),
                "version": 1, "text": rng.choice(TEXTS)}}}
        elif roll < 0.45:
            self.versions[uri] = self.versions.get(uri, 0) + 1
            changes = [{"range": {"start": self.position(), "end": self.position()}, "text": rng.choice(INSERTS)}
                       for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.1:
                changes.append({"text": rng.choice(TEXTS)})
            msg = {"method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": self.versions[uri]}, "contentChanges": changes}}
        elif roll < 0.7:
            msg = {"id": 0, "method": "textDocument/inlineCompletion", "params": {
                "textDocument": {"uri": uri}, "position": self.position(),
                "context": {"triggerKind": rng.choice([1, 2]), "selectedCompletionInfo": rng.choice(
                    [None, {"range": {"start": self.position(), "end": self.position()}, "text": "ab"}])}}}
        elif roll < 0.75:
            msg = {"id": 0, "method": "textDocument/completion",
                   "params": {"textDocument": {"uri": uri}, "position": self.position()}}
        elif roll < 0.8:
            msg = {"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}}
        elif roll < 0.83:
            msg = {"method": "textDocument/didSave", "params": {"textDocument": {"uri": uri}, "text": rng.choice(TEXTS)}}
        elif roll < 0.86:
            msg = {"method": "workspace/didChangeConfiguration", "params": {"settings": rng.choice([
                {}, None, {"completer": {"multiline": True, "minConfidence": 0.9}},
                {"completer": {"promptTokens": -5, "cacheMb": 10**9, "maxTokens": "many"}},
                {"completer": {"multiline": False, "minConfidence": 0}}])}}
        elif roll < 0.89:
            msg = {"method": "workspace/didChangeWorkspaceFolders", "params": {"event": {
                "added": [{"uri": rng.choice([self.root, self.root + "/pkg", "file:///", "bad"]), "name": "n"}],
                "removed": rng.choice([[], [{"uri": self.root, "name": "w"}]])}}}
        elif roll < 0.91:
            msg = {"method": "workspace/didRenameFiles",
                   "params": {"files": [{"oldUri": uri, "newUri": rng.choice(self.uris)}]}}
        elif roll < 0.93:
            msg = {"method": "workspace/didDeleteFiles", "params": {"files": [{"uri": uri}]}}
        elif roll < 0.95:
            msg = {"method": "textDocument/didShowCompletion", "params": {"item": {"insertText": "x"}}}
        elif roll < 0.97:
            msg = {"method": "textDocument/didPartiallyAcceptCompletion",
                   "params": {"item": {"insertText": "abc"}, "acceptedLength": rng.choice([0, 2, -1, 99])}}
        elif roll < 0.98:
            msg = {"id": 0, "method": "completer/stats", "params": rng.choice([{}, None, [], {"documents": True}])}
        else:
            msg = {"method": "$/cancelRequest", "params": {"id": rng.randint(1, 10_000)}}
        if rng.random() < 0.25:
            msg["params"] = self.mangled(msg["params"])
        return msg


class Server(RawServer):
    """The server in a workspace, its log kept; answer() also replies to the server's own requests."""

    def __init__(self, cwd):
        super().__init__(cwd=cwd, keep_stderr=True)

    def answer(self, msg_id, timeout=60):
        """The response to msg_id; requests from the server meanwhile get a null result."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.messages.get(timeout=1)
            except queue.Empty:
                continue
            if "method" not in msg and msg.get("id") == msg_id:
                return msg
            if "method" in msg and "id" in msg:
                self.send({"id": msg["id"], "result": [None] if msg["method"] == "workspace/configuration" else None})
        return None


@pytest.mark.parametrize("seed", [1, 2])
def test_random_traffic_is_answered_and_leaves_the_server_serving(seed, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / ".gitignore").write_text("secret/\n*.log\n")
    (tmp_path / "pkg" / "util.py").write_text("def helper(x):\n    return x * 2\n")
    root = tmp_path.as_uri()
    rng = random.Random(seed)
    server = Server(tmp_path)
    try:
        encodings = rng.choice([["utf-8"], ["utf-16"], ["utf-32"], []])
        server.send({"id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": root, "workspaceFolders": [{"uri": root, "name": "w"}],
            "capabilities": {"general": {"positionEncodings": encodings},
                             "workspace": {"configuration": True, "workspaceFolders": True},
                             "notebookDocument": {"synchronization": {}}}}})
        assert "result" in server.answer(1)
        server.send({"method": "initialized", "params": {}})
        traffic, next_id = Traffic(rng, root), 10
        for step in range(250):
            msg = traffic.message()
            if rng.random() < 0.02:  # a frame that is no JSON-RPC message
                server.send_bytes(rng.choice([b"{", b"[]", b"null", b'{"jsonrpc":"2.0","id":5}',
                                              bytes(rng.randrange(256) for _ in range(40))]))
                continue
            if "id" in msg:
                msg["id"], next_id = next_id, next_id + 1
            server.send(msg)
            if "id" in msg:
                reply = server.answer(msg["id"])
                assert reply is not None, f"step {step}: no answer to {json.dumps(msg)[:300]}"
                if "error" in reply:
                    assert reply["error"]["code"] in ALLOWED_ERRORS, (step, reply["error"], json.dumps(msg)[:300])
            assert server.proc.poll() is None, f"step {step}: the server exited after {json.dumps(msg)[:300]}"
        uri = root + "/pkg/fresh.py"
        server.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": "def add(a, b):\n    return a"}}})
        server.send({"id": 99_999, "method": "textDocument/inlineCompletion", "params": {
            "textDocument": {"uri": uri}, "position": {"line": 1, "character": 12}, "context": {"triggerKind": 1}}})
        reply = server.answer(99_999)
        assert reply is not None and "items" in reply["result"]
        notebook, cell = root + "/pkg/fresh.ipynb", "vscode-notebook-cell:" + root.split(":", 1)[1] + "/pkg/fresh.ipynb#c1"
        server.send({"method": "notebookDocument/didOpen", "params": {
            "notebookDocument": {"uri": notebook, "notebookType": "jupyter-notebook", "version": 1,
                                 "cells": [{"kind": 2, "document": cell}]},
            "cellTextDocuments": [{"uri": cell, "languageId": "python", "version": 1,
                                   "text": "def add(a, b):\n    return a"}]}})
        server.send({"id": 100_000, "method": "textDocument/inlineCompletion", "params": {
            "textDocument": {"uri": cell}, "position": {"line": 1, "character": 12}, "context": {"triggerKind": 1}}})
        reply = server.answer(100_000)
        assert reply is not None and "items" in reply["result"]
    finally:
        server.close()
    time.sleep(0.2)  # the stderr thread reads to the end
    failures = [m.group(0) for m in LOG_LINE.finditer(b"".join(server.stderr).decode("utf-8", "replace"))
                if not m.group(3).startswith(ALLOWED_ERROR_LOGS)]
    assert not failures, failures[:5]
