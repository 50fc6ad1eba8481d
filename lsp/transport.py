"""stdio for the server: stdin read by the event loop itself; and `serve --tcp`.

pygls reads stdin through its thread pool, one hop per header line and one per body: three thread
round trips per message, six for the didChange + inlineCompletion pair each keystroke sends. On two
busy cores each hop costs ~0.1-0.2 ms, and they sit in front of every answer, typed-through ones
included. Here stdin is an asyncio pipe: when the two messages arrive together the loop reads them
in one wake-up. The framing and dispatch stay pygls' own (`run_async`).

Only pipes and sockets (what editors give a language server) are read this way: asyncio would set
O_NONBLOCK on the file description, which a terminal shares with the shell that started us, and
regular files cannot be watched. Anything else keeps pygls' reader.

TCP (`serve_tcp`) is open to every local user, so it takes one authenticated client at a time: the
first message of a connection must be `initialize` with `initializationOptions.token` equal to the
server's token (compared in constant time, removed before the message is handled), within
AUTH_TIMEOUT_S; any other connection is closed without touching the server's state, output or
lifetime. Once a client is in, further connections are refused; when its session ends (exit or
disconnect) the server ends, as over stdio.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import stat
import sys
import threading
from typing import BinaryIO, Callable

from pygls.io_ import StdoutWriter, run_async

log = logging.getLogger(__name__)


def is_pipe_or_socket(stream: BinaryIO) -> bool:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Reader:
    """What pygls' `run_async` reads from, over an asyncio stream."""

    def __init__(self, stream: asyncio.StreamReader):
        self.stream = stream

    async def readline(self) -> bytes:
        try:
            return await self.stream.readline()
        except ValueError:  # a header line over the stream's 64 KiB limit: the stream dropped it
            log.warning("dropped an overlong header line")
            return b"<overlong header line>\r\n"  # neither a Content-Length nor the blank line

    async def readexactly(self, n: int) -> bytes:
        return await self.stream.readexactly(n)  # bodies have no size limit


def serve_stdio(server, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """Run `server` (a pygls LanguageServer) over stdin/stdout until exit or end of input."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    server._stop_event = threading.Event()  # what pygls' own start_io sets up; shutdown() sets it
    server.protocol.set_writer(StdoutWriter(stdout))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
        try:
            await run_async(stop_event=server._stop_event, reader=_Reader(stream), protocol=server.protocol,
                            logger=log, error_handler=server.report_server_error)
        except asyncio.IncompleteReadError:
            log.error("input ended inside a message; shutting down")

    try:
        asyncio.run(main())
    except BrokenPipeError:
        log.error("the client closed the connection; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


# -- TCP ---------------------------------------------------------------------------------------------

AUTH_TIMEOUT_S = 10.0
MAX_FIRST_MESSAGE = 1 << 20  # an initialize request is a few KB


class _Replay(_Reader):
    """The reader run_async gets: the (re-framed) first message, then the rest of the stream."""

    def __init__(self, first: bytes, stream: asyncio.StreamReader):
        super().__init__(stream)
        self.buffer = first

    async def readline(self) -> bytes:
        if self.buffer:
            end = self.buffer.find(b"\n") + 1 or len(self.buffer)
            line, self.buffer = self.buffer[:end], self.buffer[end:]
            return line
        return await super().readline()

    async def readexactly(self, n: int) -> bytes:
        head, self.buffer = self.buffer[:n], self.buffer[n:]
        return head + (await self.stream.readexactly(n - len(head)) if len(head) < n else b"")


async def _first_message(stream: asyncio.StreamReader) -> dict | None:
    """The first JSON-RPC message of a connection, or None if it is not one (framing, size, JSON)."""
    length = None
    while True:
        line = await stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None
    if length is None or not 0 < length <= MAX_FIRST_MESSAGE:
        return None
    try:
        message = json.loads(await stream.readexactly(length))
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _token_of(message: dict | None) -> str | None:
    """initializationOptions.token of an initialize request (removed from the message), else None."""
    if not message or message.get("method") != "initialize" or not isinstance(message.get("params"), dict):
        return None
    options = message["params"].get("initializationOptions")
    token = options.pop("token", None) if isinstance(options, dict) else None
    return token if isinstance(token, str) else None


def _refuse(writer: asyncio.StreamWriter, message: dict | None, why: str) -> None:
    if isinstance(message, dict) and "id" in message and "method" in message:
        body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32600, "message": why}}).encode()
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    writer.close()


def serve_tcp(server, host: str, port: int, token: str, ready: Callable[[str, int], None] | None = None) -> None:
    """Serve LSP on host:port to one client holding `token` (see the module docstring)."""
    if not token:
        raise ValueError("serve --tcp needs a token")
    server._stop_event = threading.Event()

    async def main() -> None:
        ended = asyncio.Event()
        taken = False

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal taken
            peer = writer.get_extra_info("peername")
            if taken:
                log.warning("refused an LSP connection from %s: a client is connected", peer)
                return _refuse(writer, None, "")
            try:
                message = await asyncio.wait_for(_first_message(reader), AUTH_TIMEOUT_S)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                message = None
            given = _token_of(message)
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                log.warning("refused an LSP connection from %s: no valid initializationOptions.token", peer)
                return _refuse(writer, message, "completer: this server needs initializationOptions.token")
            if taken:
                log.warning("refused an LSP connection from %s: a client is connected", peer)
                return _refuse(writer, message, "completer: another client is connected")
            taken = True
            log.info("LSP client %s connected", peer)
            body = json.dumps(message).encode()
            server.protocol.set_writer(writer)
            try:
                await run_async(stop_event=server._stop_event,
                                reader=_Replay(b"Content-Length: %d\r\n\r\n%s" % (len(body), body), reader),
                                protocol=server.protocol, logger=log, error_handler=server.report_server_error)
            except (asyncio.IncompleteReadError, ConnectionError):
                log.error("the client's connection ended inside a message; shutting down")
            finally:
                ended.set()

        tcp = await asyncio.start_server(connection, host, port)
        server._server = tcp
        if ready is not None:
            bound = tcp.sockets[0].getsockname()
            ready(bound[0], bound[1])
        async with tcp:
            await ended.wait()

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
