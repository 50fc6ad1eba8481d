"""stdio for the server: stdin read by the event loop itself.

pygls reads stdin through its thread pool, one hop per header line and one per body: three thread
round trips per message, six for the didChange + inlineCompletion pair each keystroke sends. On two
busy cores each hop costs ~0.1-0.2 ms, and they sit in front of every answer, typed-through ones
included. Here stdin is an asyncio pipe: when the two messages arrive together the loop reads them
in one wake-up. The framing and dispatch stay pygls' own (`run_async`).

Only pipes and sockets (what editors give a language server) are read this way: asyncio would set
O_NONBLOCK on the file description, which a terminal shares with the shell that started us, and
regular files cannot be watched. Anything else keeps pygls' reader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
from typing import BinaryIO

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
