"""The transport floor: an LSP server that answers every inline completion at once with "x".

    completer replay SESSION --server-cmd "python bench/lsp_floor_server.py"          # pygls, as completer
    completer replay SESSION --server-cmd "python bench/lsp_floor_server.py --pygls-reader"  # pygls' own stdin reader
    completer replay SESSION --server-cmd "python bench/lsp_floor_server.py --raw"    # plain framing

Client-observed latency against it is what the process hop, JSON-RPC framing and pygls' dispatch
cost before any completion work; typed-through answers cannot beat it.
"""

from __future__ import annotations

import json
import sys


def serve_raw() -> None:
    """Content-Length framing and json, nothing else."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer

    def send(msg_id, result) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}).encode()
        out.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        out.flush()

    while True:
        length = 0
        while (line := inp.readline()) not in (b"\r\n", b"\n"):
            if not line:
                return
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        msg = json.loads(inp.read(length))
        method = msg.get("method")
        if "id" not in msg or method is None:
            continue
        if method == "initialize":
            send(msg["id"], {"capabilities": {"textDocumentSync": 2, "inlineCompletionProvider": True},
                             "serverInfo": {"name": "floor-raw"}})
        elif method == "textDocument/inlineCompletion":
            send(msg["id"], {"items": [{"insertText": "x"}]})
        else:
            send(msg["id"], None)


def serve_pygls(own_reader: bool) -> None:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    server = LanguageServer("floor-pygls", "1")

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION)
    def inline(params: types.InlineCompletionParams) -> types.InlineCompletionList:
        return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text="x")])

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def changed(params: types.DidChangeTextDocumentParams) -> None:
        pass

    if own_reader:  # pygls reads stdin on its thread pool, three hops per message
        server.start_io()
    else:  # as completer does: the event loop reads the pipe (lsp/transport.py)
        from lsp.transport import serve_stdio

        serve_stdio(server)


if __name__ == "__main__":
    serve_raw() if "--raw" in sys.argv[1:] else serve_pygls(own_reader="--pygls-reader" in sys.argv[1:])
