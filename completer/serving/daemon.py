"""`completer engine`: one model and one KV cache shared by every editor window (Contract 3).

Language servers started with `--engine auto|connect` send token-level generation requests here
(engine_protocol.py). One worker thread runs the engine, one request at a time, in arrival order;
each connection has its own reader thread, so a cancel reaches a running generation at once. The
engine keeps its per-session cache slots, so windows keep their own warm caches (session affinity
by the request's session key). With no client for `idle_exit_s` the daemon exits.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from completer.engines.contract import Engine

from .wire import VERSION, request_from_wire

log = logging.getLogger(__name__)


class DaemonRunningError(RuntimeError):
    """Another daemon already answers on this socket."""


@dataclass
class _Job:
    conn: "_Connection"
    rid: int
    request: dict
    cancel: threading.Event = field(default_factory=threading.Event)


class _Connection:
    def __init__(self, daemon: "EngineDaemon", sock: socket.socket, number: int):
        self.daemon = daemon
        self.sock = sock
        self.number = number
        self.jobs: dict[int, _Job] = {}
        self._send_lock = threading.Lock()
        self.alive = True

    def send(self, msg: dict) -> None:
        if not self.alive:
            return
        data = msgpack.packb(msg, use_bin_type=True)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError:
            self.close()

    def close(self) -> None:
        if self.alive:
            self.alive = False
            for job in list(self.jobs.values()):
                job.cancel.set()
            try:
                self.sock.close()
            except OSError:
                pass
            self.daemon.connection_closed(self)

    def serve(self) -> None:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        greeted = False
        try:
            while self.alive:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                unpacker.feed(chunk)
                for msg in unpacker:
                    if not isinstance(msg, dict):
                        raise ValueError("message is not a map")
                    if not greeted:
                        if msg.get("op") != "hello" or msg.get("v") != VERSION:
                            self.send({"op": "error", "message": f"protocol version {msg.get('v')!r} unsupported; "
                                       f"this engine speaks {VERSION} (restart the daemon with the same completer)"})
                            return
                        greeted = True
                        self.send({"op": "hello", "v": VERSION, "engine": self.daemon.describe(), "pid": os.getpid()})
                        continue
                    self.handle(msg)
        except (OSError, ValueError, msgpack.UnpackException) as exc:
            log.info("client %d: %s", self.number, exc)
        finally:
            self.close()

    def handle(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "generate" and isinstance(msg.get("id"), int) and isinstance(msg.get("req"), dict):
            job = _Job(self, msg["id"], msg["req"])
            self.jobs[job.rid] = job
            self.daemon.jobs.put(job)
        elif op == "cancel":
            job = self.jobs.get(msg.get("id"))
            if job is not None:
                job.cancel.set()
        elif op == "health":
            self.send(self.daemon.health())
        else:
            self.send({"op": "error", "id": msg.get("id"), "message": f"unknown or malformed request {op!r}"})


class EngineDaemon:
    def __init__(self, engine: Engine, socket_path: str | os.PathLike, idle_exit_s: float = 600.0):
        self.engine = engine
        self.socket_path = Path(socket_path)
        self.idle_exit_s = idle_exit_s
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.connections: set[_Connection] = set()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.requests = 0
        self.started = time.monotonic()
        self.last_client = time.monotonic()
        self._stop = threading.Event()

    def describe(self) -> dict:
        return {**self.engine.describe(), "daemon_pid": os.getpid(), "socket": str(self.socket_path)}

    def health(self) -> dict:
        return {"op": "health", "ok": True, "pid": os.getpid(), "clients": len(self.connections),
                "requests": self.requests, "uptime_s": round(time.monotonic() - self.started, 1),
                "engine": self.describe()}

    def connection_closed(self, conn: _Connection) -> None:
        with self._lock:
            self.connections.discard(conn)
            self.last_client = time.monotonic()

    # -- the engine worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            conn = job.conn
            try:
                if job.cancel.is_set() or not conn.alive:
                    conn.send({"op": "done", "id": job.rid, "stats": {"finish_reason": "cancelled"}})
                    continue
                self.requests += 1
                stream = self.engine.generate(request_from_wire(job.request), job.cancel)
                for delta in stream:
                    conn.send({"op": "delta", "id": job.rid, "ids": delta.token_ids, "text": delta.text})
                conn.send({"op": "done", "id": job.rid, "stats": stream.stats.as_dict()})
            except Exception as exc:  # a bad request must not take the daemon down
                log.exception("generation failed")
                conn.send({"op": "error", "id": job.rid, "message": f"{type(exc).__name__}: {exc}"})
            finally:
                conn.jobs.pop(job.rid, None)

    # -- serving ------------------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        path = self.socket_path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A lock held for the daemon's life: of two daemons started at once for one socket, one serves.
        self._lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise DaemonRunningError(f"an engine daemon already serves {path}") from None
        path.unlink(missing_ok=True)  # left behind by a daemon that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.settimeout(1.0)
        return sock

    def serve_forever(self) -> None:
        sock = self.bind()
        worker = threading.Thread(target=self._work, name="completer-engine", daemon=True)
        worker.start()
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        log.info("engine daemon %d on %s: %s", os.getpid(), self.socket_path, self.engine.describe())
        try:
            while not self._stop.is_set():
                try:
                    client, _ = sock.accept()
                except socket.timeout:
                    idle = time.monotonic() - self.last_client
                    if self.idle_exit_s and not self.connections and idle > self.idle_exit_s:
                        log.info("no client for %.0f s: exiting", idle)
                        break
                    continue
                conn = _Connection(self, client, next(self._numbers))
                with self._lock:
                    self.connections.add(conn)
                threading.Thread(target=conn.serve, name=f"completer-client-{conn.number}", daemon=True).start()
        finally:
            sock.close()
            self.socket_path.unlink(missing_ok=True)
            self.jobs.put(None)
            for conn in list(self.connections):
                conn.close()
