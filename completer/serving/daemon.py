"""`completer engine`: one model and one KV cache shared by every editor window (Contract 3).

Language servers started with `--engine auto|connect` send token-level generation requests here
(wire.py). One worker thread runs the engine, one request at a time, in arrival order;
each connection has its own reader thread, so a cancel reaches a running generation at once. The
engine keeps its per-session cache slots, so windows keep their own warm caches (session affinity
by the request's session key). With no client for `idle_exit_s` the daemon exits. A warm-up
(prefill) gives way after its first piece to any request waiting behind it.

Start-up takes the socket's lock before the model loads (`lock()`, then load, then `serve_forever`),
so of several windows starting a daemon at once one loads a model and the others exit at once. The
path is only ever replaced if it is a socket (a stale one); anything else there is refused.

Bounded under load and faults: MAX_CONNECTIONS clients, each with up to MAX_MESSAGE_BYTES of unread
input and MAX_QUEUED_PER_CONNECTION requests waiting (MAX_QUEUED in all; more answer "busy"); a
client that stops reading is dropped after SEND_TIMEOUT_S instead of blocking the engine worker;
only processes of this user are served (SO_PEERCRED, on top of the 0600 socket); token ids outside
the vocabulary are refused before they reach the engine (on CUDA one would break it for everyone).
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import queue
import signal
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from completer.engines.contract import Engine

from .refuser import Refuser
from .wire import VERSION, request_from_wire, score_request_from_wire

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 << 20  # a request of 128k token ids is ~640 KB of msgpack
MAX_CONNECTIONS = 64  # editor windows (each has one), health probes
MAX_QUEUED_PER_CONNECTION = 16  # a language server has one request per document in flight
MAX_QUEUED = 256
SEND_TIMEOUT_S = 10.0  # a client that reads nothing for this long is dropped


class DaemonRunningError(RuntimeError):
    """Another daemon already answers on this socket."""


class SocketPathError(RuntimeError):
    """Something other than a socket is at the socket path: never deleted."""


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket (Linux SO_PEERCRED), None if unknown."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return None
    return uid


def check_ids(ids, vocab_size: int, what: str) -> None:
    if any(not 0 <= t < vocab_size for t in ids):
        raise ValueError(f"{what}: token id out of the vocabulary (0..{vocab_size - 1})")


@dataclass
class _Job:
    conn: "_Connection"
    rid: int
    request: dict
    op: str = "generate"  # or "score", "prefill"
    cancel: threading.Event = field(default_factory=threading.Event)


class _GiveWay:
    """A warm-up's cancel (Engine.prefill looks at is_set() before each piece): its own, or, after its
    first piece, any request waiting behind it. A warm-up only saves a later keystroke time, so it
    gives way to another window's keystroke now, keeping what it computed; the first piece always
    runs, so that under a steady queue each warm-up still gets one piece further (else that window's
    keys would stay on short prompts for as long as the others type)."""

    def __init__(self, own: threading.Event, waiting: queue.Queue):
        self.own, self.waiting, self.looked = own, waiting, 0

    def is_set(self) -> bool:
        self.looked += 1
        return self.own.is_set() or (self.looked > 1 and self.waiting.qsize() > 0)


class _Connection:
    def __init__(self, daemon: "EngineDaemon", sock: socket.socket, number: int):
        self.daemon = daemon
        self.sock = sock
        self.number = number
        self.jobs: dict[int, _Job] = {}
        self._send_lock = threading.Lock()
        self.alive = True

    def send(self, msg: dict) -> None:
        """Write one message; a client that does not read it within SEND_TIMEOUT_S (socket.timeout is
        an OSError) is dropped: part of the message may be gone, so the stream cannot go on."""
        if not self.alive:
            return
        data = msgpack.packb(msg, use_bin_type=True)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:
            log.info("client %d: dropped (%s)", self.number, exc if str(exc) else type(exc).__name__)
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
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_MESSAGE_BYTES)
        greeted = False
        try:
            while self.alive:
                try:
                    chunk = self.sock.recv(1 << 16)
                except socket.timeout:  # the timeout is for sends; an idle client is fine
                    continue
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
        queued = op in ("generate", "score", "prefill")
        if queued and isinstance(msg.get("id"), int) and isinstance(msg.get("req"), dict):
            if len(self.jobs) >= MAX_QUEUED_PER_CONNECTION or self.daemon.jobs.qsize() >= MAX_QUEUED:
                self.send({"op": "error", "id": msg["id"], "message": "busy: too many requests waiting; try again"})
                return
            job = _Job(self, msg["id"], msg["req"], op)
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
    def __init__(self, engine: Engine | None, socket_path: str | os.PathLike, idle_exit_s: float = 600.0):
        self.engine = engine  # None until loaded: lock() comes first (see the module docstring)
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
        self._lock_fd: int | None = None

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
                vocab = self.engine.tokenizer.vocab_size
                if job.op == "score":
                    request = score_request_from_wire(job.request)
                    check_ids(request.prompt_ids, vocab, "prompt")
                    for continuation in request.continuations:
                        check_ids(continuation, vocab, "continuation")
                    logprobs = self.engine.score(request, job.cancel)
                    conn.send({"op": "scores", "id": job.rid, "logprobs": logprobs})
                    continue
                request = request_from_wire(job.request)
                check_ids(request.prompt_ids, vocab, "prompt")
                if job.op == "prefill":
                    if not getattr(self.engine, "can_prefill", False):
                        raise NotImplementedError(f"the {self.engine.name} backend cannot prefill without generating")
                    stats = self.engine.prefill(request, _GiveWay(job.cancel, self.jobs))
                    conn.send({"op": "done", "id": job.rid, "stats": stats.as_dict()})
                    continue
                with self.engine.generate(request, job.cancel) as stream:
                    for delta in stream:
                        conn.send({"op": "delta", "id": job.rid, "ids": delta.token_ids, "text": delta.text})
                conn.send({"op": "done", "id": job.rid, "stats": stream.stats.as_dict()})
            except Exception as exc:  # a bad request must not take the daemon down
                log.exception("generation failed")
                conn.send({"op": "error", "id": job.rid, "message": f"{type(exc).__name__}: {exc}"})
            finally:
                conn.jobs.pop(job.rid, None)

    # -- serving ------------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the socket's lock, held for the daemon's life: of two daemons started at once for one
        socket, one serves (DaemonRunningError for the other). Call before loading the model."""
        if self._lock_fd is not None:
            return
        path = self.socket_path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = path.with_name(path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:  # ELOOP: a symlink
            raise SocketPathError(f"cannot open the lock file {lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonRunningError(f"an engine daemon already serves {path}") from None
        self._lock_fd = fd
        self._check_path()

    def _check_path(self) -> None:
        """Nothing at the socket path, or a socket left behind by a daemon that died (removed)."""
        path = self.socket_path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode) else "a file"
            raise SocketPathError(f"{path} is {kind}, not a socket: not removing it (choose another socket path)")
        path.unlink()

    def bind(self) -> socket.socket:
        self.lock()
        path = self.socket_path
        self._check_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under a temporary name and renamed once listening: a client that sees the path can
        # connect (between bind and listen a connection is refused, and clients take that for a daemon
        # that is gone). A path too long for the temporary name is bound directly.
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        if len(str(staging).encode()) >= 100:
            staging = path
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            sock.bind(str(staging))
        finally:
            os.umask(old)
        os.chmod(staging, 0o600)
        sock.listen(16)
        if staging != path:
            os.rename(staging, path)
        sock.settimeout(1.0)
        return sock

    def _accept(self, client: socket.socket) -> None:
        uid = peer_uid(client)
        if uid is not None and uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            client.close()
            return
        client.settimeout(SEND_TIMEOUT_S)
        with self._lock:
            full = len(self.connections) >= MAX_CONNECTIONS
        if full:  # answered on the refusing thread, which lets the client finish its greeting
            self.refuser.refuse(client, msgpack.packb({"op": "error", "message": f"busy: {MAX_CONNECTIONS} clients already"}))
            return
        conn = _Connection(self, client, next(self._numbers))
        with self._lock:
            self.connections.add(conn)
        threading.Thread(target=conn.serve, name=f"completer-client-{conn.number}", daemon=True).start()

    def serve_forever(self) -> None:
        sock = self.bind()
        self.refuser = Refuser("completer-refuse")
        worker = threading.Thread(target=self._work, name="completer-engine", daemon=True)
        worker.start()
        if threading.current_thread() is threading.main_thread():  # (tests serve from a thread)
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
                self._accept(client)
        finally:
            sock.close()
            self.refuser.close()
            try:
                self._check_path()  # removes our socket (never what someone put in its place)
            except SocketPathError as exc:
                log.warning("%s", exc)
            self.jobs.put(None)
            for conn in list(self.connections):
                conn.close()
