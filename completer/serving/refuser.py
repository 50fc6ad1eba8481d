"""Refusing a connection past a server's bound, so that the client reads why.

Closing a socket whose client is still sending resets it (TCP) or fails the client's next write
(Unix sockets: EPIPE), and the client then sees a broken pipe instead of the refusal. So a refused
connection gets its answer, its write side shut, and what the client still sends read and dropped for
up to `linger_s` before it is closed. One thread does this for every refused connection, at most
`capacity` waiting: past that they are closed at once, so a flood costs no thread per connection.
Both servers use it: serve-openai (a 429) and the engine daemon (a msgpack "busy" error).
"""

from __future__ import annotations

import queue
import socket
import threading
import time


def refuse_gently(sock: socket.socket, answer: bytes, linger_s: float) -> None:
    """Send `answer`, shut the write side, drain the client for up to linger_s. Does not close."""
    deadline = time.monotonic() + linger_s
    try:
        sock.settimeout(linger_s)
        sock.sendall(answer)
        sock.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:
        pass


class Refuser:
    def __init__(self, name: str, capacity: int = 16, linger_s: float = 1.0):
        self.linger_s = linger_s
        self._waiting: queue.Queue = queue.Queue(maxsize=capacity)
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def refuse(self, sock: socket.socket, answer: bytes) -> None:
        """Answer and close `sock` on the refusing thread (now, closed unanswered, when too many wait)."""
        try:
            self._waiting.put_nowait((sock, answer))
        except queue.Full:
            _close(sock)

    def close(self) -> None:
        try:
            self._waiting.put_nowait(None)
        except queue.Full:
            pass  # the thread is a daemon; it ends with the process

    def _loop(self) -> None:
        while (item := self._waiting.get()) is not None:
            sock, answer = item
            try:
                refuse_gently(sock, answer, self.linger_s)
            finally:
                _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
