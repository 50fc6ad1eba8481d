"""The Engine of Contract 2, served by a `completer engine` daemon over its unix socket (Contract 3).

The language server keeps documents, prompts and post-processing; only token generation crosses
the socket. If the daemon goes away, requests answer nothing at once (no error storm) while the
engine reconnects, and with `auto` starts a new daemon, in the background; documents live in the
language server and are never lost.

A daemon that hangs with its socket open (stopped, deadlocked, swapping) is given up on: a request
(a generation or a scoring) waits until its deadline plus GRACE_S (NO_DEADLINE_S plus GRACE_S
without one; a warm-up, PREFILL_WAIT_S plus GRACE_S), and a cancelled one GRACE_S past its cancel
(a daemon that runs acknowledges a cancel within one step), then answers what it has with
finish_reason "unavailable" and drops the connection, so the next request reconnects. Language
servers send one request at a time, so a stalled wait would hold back every key after it.
Writes to the daemon time out after SEND_TIMEOUT_S the same way.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack

from completer.engines.contract import (
    GenerationRequest,
    GenerationStats,
    GenerationStream,
    ScoreRequest,
    TokenDelta,
)
from completer.engines.options import EngineOptions
from completer.tokenizer import Tokenizer

from .wire import (
    VERSION,
    default_socket,
    request_to_wire,
    runtime_dir,
    score_request_to_wire,
    stats_from_wire,
)

log = logging.getLogger(__name__)

_GONE = object()  # queued to every waiter when the connection drops
RETRY_S = 1.0  # at most one reconnect attempt per this many seconds
SPAWN_RETRY_S = 5.0
GRACE_S = 2.0  # past a request's deadline, how long to wait for the daemon's answer
NO_DEADLINE_S = 30.0  # how long a request without a deadline (or a score) may wait
# How long a warm-up (prefill) may wait: a daemon that runs prefills the longest prompt in well under
# a second on two cores, even behind a few other windows' requests.
PREFILL_WAIT_S = 5.0
SEND_TIMEOUT_S = 5.0
# A reconnect tried by a request: a daemon that accepts but does not greet within this is hung
# (stopped), and the request answers nothing rather than wait (a healthy daemon greets in a millisecond).
RECONNECT_TIMEOUT_S = 0.25
CONNECT_TIMEOUT_S = 10.0  # the first connection, and one to a daemon just started


def _give_up_at(deadline_s: float | None, started: float) -> float:
    """When a request stops waiting for the daemon: GRACE_S past its deadline, or past NO_DEADLINE_S."""
    return (deadline_s if deadline_s is not None else started + NO_DEADLINE_S) + GRACE_S


class EngineUnavailableError(RuntimeError):
    """No daemon answers on the socket (and none could be started)."""


def _receive(sock: socket.socket, unpacker: msgpack.Unpacker, op: str) -> dict:
    """Read until a message with this op (or an error) arrives; later messages stay in `unpacker`."""
    while True:
        for msg in unpacker:
            if isinstance(msg, dict) and msg.get("op") in (op, "error"):
                return msg
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the daemon closed the connection")
        unpacker.feed(chunk)


class RemoteEngine:
    name = "daemon"

    def __init__(self, options: EngineOptions, mode: str = "auto", socket_path: str | os.PathLike | None = None,
                 start_timeout_s: float = 120.0, idle_exit_s: float | None = None):
        if mode not in ("auto", "connect"):
            raise ValueError(f"engine mode {mode!r}: choose auto or connect")
        self.options = options
        self.mode = mode
        self.socket_path = Path(socket_path) if socket_path else default_socket(self.options)
        self.idle_exit_s = idle_exit_s
        self._ids = itertools.count(1)
        self._waiters: dict[int, queue.Queue] = {}
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._last_try = 0.0
        self._last_spawn = 0.0
        self.reconnects = 0
        self.info: dict = {}
        if not self._connect() and (mode != "auto" or not self._spawn_and_wait(start_timeout_s)):
            raise EngineUnavailableError(f"no completer engine daemon answers on {self.socket_path}"
                                         + ("" if mode == "auto" else " (start one with `completer engine`)"))
        self.tokenizer = Tokenizer(self.info["model_dir"])
        self.device = self.info.get("device", "")
        self.max_seq = int(self.info["max_seq"])
        self.can_heal = bool(self.info.get("can_heal", True))  # as the daemon's own backend can
        self.can_score = bool(self.info.get("can_score", False))
        self.can_prefill = bool(self.info.get("can_prefill", False))

    # -- connection ---------------------------------------------------------------------------------

    def _connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Connect and greet within timeout_s; True on success. Only one thread connects at a time."""
        with self._state_lock:
            if self._sock is not None:
                return True
            self._last_try = time.monotonic()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout_s)
                sock.connect(str(self.socket_path))
                sock.sendall(msgpack.packb({"op": "hello", "v": VERSION}))
                unpacker = msgpack.Unpacker(raw=False)
                reply = _receive(sock, unpacker, "hello")
                if reply.get("op") != "hello":
                    raise ConnectionError(reply.get("message", "unexpected greeting"))
                sock.settimeout(SEND_TIMEOUT_S)  # for writes; the reader waits on through timeouts
            except (OSError, ConnectionError, msgpack.UnpackException) as exc:
                sock.close()
                log.debug("engine daemon at %s: %s", self.socket_path, exc)
                return False
            if self.info and reply["engine"].get("model_dir") != self.info.get("model_dir"):
                log.warning("the daemon on %s now serves another model", self.socket_path)
            self.info = reply["engine"]
            self._sock = sock
            # Messages after the greeting may already sit in the unpacker: the reader continues from it.
            threading.Thread(target=self._read, args=(sock, unpacker), name="completer-daemon-reader",
                             daemon=True).start()
            log.info("connected to engine daemon %s on %s", reply.get("pid"), self.socket_path)
            return True

    def _spawn(self) -> None:
        self._last_spawn = time.monotonic()
        cmd = [sys.executable, "-m", "completer", "engine", "--socket", str(self.socket_path),
               *self.options.to_flags()]
        if self.idle_exit_s is not None:
            cmd += ["--idle-exit-s", str(self.idle_exit_s)]
        log_path = runtime_dir() / (self.socket_path.stem + ".log")
        with open(log_path, "ab") as out:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                             cwd=str(runtime_dir()))
        log.info("started an engine daemon: %s (log %s)", " ".join(cmd), log_path)

    def _spawn_and_wait(self, timeout_s: float) -> bool:
        self._spawn()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if self._connect():
                return True
        return False

    def _read(self, sock: socket.socket, unpacker: msgpack.Unpacker) -> None:
        try:
            while True:
                for msg in unpacker:
                    waiter = self._waiters.get(msg.get("id")) if isinstance(msg, dict) else None
                    if waiter is not None:
                        waiter.put(msg)
                try:
                    chunk = sock.recv(1 << 16)
                except socket.timeout:
                    if self._sock is not sock:  # given up on (a hung daemon) or closed
                        break
                    continue
                if not chunk:
                    break
                unpacker.feed(chunk)
        except (OSError, msgpack.UnpackException) as exc:
            log.info("engine daemon connection: %s", exc)
        finally:
            self._disconnected(sock)

    def _disconnected(self, sock: socket.socket) -> None:
        with self._state_lock:
            current = self._sock is sock
            if current:
                self._sock = None
                log.warning("lost the engine daemon on %s; answering nothing until it is back", self.socket_path)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes this connection's reader at once
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        if current:  # an old connection's reader ending later must not end the new one's requests
            self._wake_all()

    def _wake_all(self) -> None:
        for waiter in list(self._waiters.values()):
            waiter.put(_GONE)

    def _ensure_connected(self) -> bool:
        """Connected, or one rate-limited try to get there (starting a daemon in auto mode)."""
        if self._sock is not None:
            return True
        if time.monotonic() - self._last_try < RETRY_S:
            return False
        if self._connect(RECONNECT_TIMEOUT_S):
            self.reconnects += 1
            return True
        if self.mode == "auto" and time.monotonic() - self._last_spawn > SPAWN_RETRY_S:
            self._spawn()  # comes up in the background; a later request connects
        return False

    def _give_up(self, rid: int, waited_s: float) -> None:
        """The daemon did not answer in time: drop the connection (every request on it ends
        "unavailable"); the next request reconnects, or starts a daemon in auto mode."""
        sock = self._sock
        log.warning("the engine daemon on %s did not answer request %d within %.1f s; reconnecting",
                    self.socket_path, rid, waited_s)
        if sock is not None:
            self._disconnected(sock)

    def _send(self, msg: dict) -> bool:
        sock = self._sock
        if sock is None:
            return False
        try:
            with self._send_lock:
                sock.sendall(msgpack.packb(msg, use_bin_type=True))
            return True
        except OSError:
            self._disconnected(sock)
            return False

    # -- Engine --------------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStream:
        return self._stream_op("generate", request, cancel)

    def _stream_op(self, op: str, request: GenerationRequest, cancel: threading.Event | None) -> GenerationStream:
        """A request answered by deltas and "done" (generate; prefill, which sends no delta)."""
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids))
        rid = next(self._ids)
        waiter: queue.Queue = queue.Queue()
        self._waiters[rid] = waiter
        if not (self._ensure_connected() and self._send({"op": op, "id": rid, "req": request_to_wire(request)})):
            self._waiters.pop(rid, None)
            stats.finish_reason = "unavailable"
            return GenerationStream(iter(()), stats)

        started = time.monotonic()
        give_up = _give_up_at(request.deadline_s, started)

        def deltas():
            nonlocal give_up
            cancel_sent = False
            try:
                while True:
                    if cancel is not None and cancel.is_set() and not cancel_sent:
                        self._send({"op": "cancel", "id": rid})
                        cancel_sent = True
                        give_up = min(give_up, time.monotonic() + GRACE_S)
                    left = give_up - time.monotonic()
                    if left <= 0:
                        self._give_up(rid, time.monotonic() - started)
                        stats.finish_reason = "unavailable"
                        return
                    try:
                        msg = waiter.get(timeout=min(left, 0.005 if cancel is not None and not cancel_sent else 1.0))
                    except queue.Empty:
                        continue
                    if msg is _GONE:
                        stats.finish_reason = "unavailable"
                        return
                    op = msg.get("op")
                    if op == "delta":
                        yield TokenDelta(list(msg["ids"]), msg["text"])
                    elif op == "done":
                        for key, value in vars(stats_from_wire(msg.get("stats") or {})).items():
                            setattr(stats, key, value)
                        stats.prompt_tokens = stats.prompt_tokens or len(request.prompt_ids)
                        return
                    elif op == "error":
                        raise RuntimeError(f"engine daemon: {msg.get('message')}")
            finally:
                self._waiters.pop(rid, None)

        return GenerationStream(deltas(), stats)

    def score(self, request: ScoreRequest, cancel: threading.Event | None = None) -> list[list[float]]:
        """The daemon's scores; [] while it is away (the candidates are then not reranked)."""
        rid = next(self._ids)
        waiter: queue.Queue = queue.Queue()
        self._waiters[rid] = waiter
        try:
            if not (self._ensure_connected() and self._send({"op": "score", "id": rid,
                                                              "req": score_request_to_wire(request)})):
                return []
            started = time.monotonic()
            give_up = _give_up_at(request.deadline_s, started)
            while True:
                if cancel is not None and cancel.is_set():
                    self._send({"op": "cancel", "id": rid})
                    return []
                left = give_up - time.monotonic()
                if left <= 0:
                    self._give_up(rid, time.monotonic() - started)
                    return []
                try:
                    msg = waiter.get(timeout=min(left, 0.005 if cancel is not None else 1.0))
                except queue.Empty:
                    continue
                if msg is _GONE:
                    return []
                if msg.get("op") == "scores":
                    return [list(map(float, lp)) for lp in msg.get("logprobs") or []]
                if msg.get("op") == "error":
                    raise RuntimeError(f"engine daemon: {msg.get('message')}")
        finally:
            self._waiters.pop(rid, None)

    def prefill(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStats:
        """The daemon's warm-up of the request's prompt (Engine.prefill); a cancel reaches it within one
        piece. finish_reason "unavailable" while the daemon is away or does not answer in time. The
        deadline given here only bounds this wait: the daemon's prefill stops when cancelled."""
        if request.deadline_s is None:
            request = dataclasses.replace(request, deadline_s=time.monotonic() + PREFILL_WAIT_S)
        with self._stream_op("prefill", request, cancel) as stream:
            for _ in stream:  # a warm-up sends no delta
                pass
        return stream.stats

    def health(self, timeout_s: float = 5.0) -> dict:
        """The daemon's health record, over a connection of its own."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(self.socket_path))
            sock.sendall(msgpack.packb({"op": "hello", "v": VERSION}) + msgpack.packb({"op": "health"}))
            return _receive(sock, msgpack.Unpacker(raw=False), "health")

    def describe(self) -> dict:
        return {**self.info, "backend": f"{self.info.get('backend', '?')} (daemon)", "engine_mode": self.mode,
                "connected": self._sock is not None, "reconnects": self.reconnects}

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self._wake_all()
