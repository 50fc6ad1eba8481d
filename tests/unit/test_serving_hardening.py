"""Issue 24 findings in the engine daemon, its wire and its client, with real unix sockets in process
and a fake engine (RELIABILITY.md lists which test pins which finding)."""

import dataclasses
import os
import socket
import stat
import threading
import time
from types import SimpleNamespace

import msgpack
import pytest

from completer.engines.contract import GenerationRequest, GenerationStats, GenerationStream, ScoreRequest, TokenDelta
from completer.engines.options import EngineOptions
from completer.serving import daemon as daemon_module
from completer.serving import remote_engine, wire
from completer.serving.daemon import EngineDaemon
from tests.conftest import FIXTURE_MODEL, until

VOCAB = 100


class FakeEngine:
    name, device, max_seq, can_heal, can_score = "fake", "cpu", 64, True, False

    def __init__(self, deltas=1, text="a", gate: threading.Event | None = None):
        self.tokenizer = SimpleNamespace(vocab_size=VOCAB)
        self.seen: list[tuple[int, ...]] = []
        self.deltas, self.text, self.gate = deltas, text, gate

    def generate(self, request, cancel=None):
        self.seen.append(request.prompt_ids)
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids), finish_reason="max_tokens")

        def run():
            if self.gate is not None:
                self.gate.wait(30)
            for _ in range(self.deltas):
                if cancel is not None and cancel.is_set():
                    return
                yield TokenDelta([1], self.text)
        return GenerationStream(run(), stats)

    def describe(self):
        return {"backend": "fake", "device": "cpu", "model_dir": str(FIXTURE_MODEL), "max_seq": 64}

    def close(self):
        pass


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(engine=None) -> tuple[EngineDaemon, os.PathLike]:
        path = tmp_path / f"d{len(started)}.sock"
        daemon = EngineDaemon(engine or FakeEngine(), path, idle_exit_s=0)
        thread = threading.Thread(target=daemon.serve_forever, daemon=True)
        thread.start()
        started.append((daemon, thread))
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return daemon, path

    yield start
    for daemon, thread in started:
        daemon._stop.set()
        if daemon.engine.__class__ is FakeEngine and daemon.engine.gate is not None:
            daemon.engine.gate.set()
        thread.join(5)


def connect(path, timeout=5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    try:
        sock.sendall(msgpack.packb({"op": "hello", "v": wire.VERSION}))
    except BrokenPipeError:  # refused at once: the test reads why
        pass
    return sock


def replies(sock, until, unpacker=None):
    """Messages until one whose op is in `until` (returned last); [] and closed if the peer hung up."""
    unpacker = unpacker or msgpack.Unpacker(raw=False)
    out = []
    while True:
        for msg in unpacker:
            out.append(msg)
            if msg.get("op") in until:
                return out
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return out + [{"op": "closed"}]
        unpacker.feed(chunk)


def drain(sock, seconds) -> list:
    """Every message that arrives within `seconds`."""
    unpacker, end = msgpack.Unpacker(raw=False), time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            break
        if not chunk:
            break
        unpacker.feed(chunk)
    return list(unpacker)


def generate(rid, ids):
    return msgpack.packb({"op": "generate", "id": rid, "req": {"prompt_ids": ids, "max_new_tokens": 2}})


# -- finding 8: only a socket is ever removed ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "symlink", "directory"])
def test_the_socket_path_is_never_something_else_deleted(tmp_path, kind):
    path = tmp_path / "engine.sock"
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    if kind == "file":
        path.write_text("keep me")
    elif kind == "symlink":
        path.symlink_to(precious)
    else:
        path.mkdir()
    with pytest.raises(RuntimeError, match="not a socket"):
        EngineDaemon(FakeEngine(), path).bind()
    assert precious.read_text() == "keep me" and os.path.lexists(path)
    if kind == "file":
        assert path.read_text() == "keep me"


def test_a_stale_socket_is_replaced(tmp_path):
    path = tmp_path / "engine.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a daemon that died
    sock = EngineDaemon(FakeEngine(), path).bind()
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        sock.close()


# -- finding 14: the daemon's bounds ---------------------------------------------------------------------

def test_out_of_range_token_ids_never_reach_the_engine(serve):
    daemon, path = serve()
    with connect(path) as sock:
        sock.sendall(generate(1, [1, 2, VOCAB]) + generate(2, [-1]) + generate(3, [1, 2, 3]))
        got = {m["id"]: m for m in replies(sock, {"done"}) if m.get("id")}
        got.update({m["id"]: m for m in replies(sock, {"done", "error"}) if m.get("id")} if 3 not in got else {})
    assert got[1]["op"] == "error" and "vocabulary" in got[1]["message"]
    assert got[2]["op"] == "error" and got[3]["op"] == "done"
    assert daemon.engine.seen == [(1, 2, 3)]


def test_an_oversized_message_drops_only_its_connection(serve):
    _, path = serve()
    with connect(path) as sock:
        replies(sock, {"hello"})
        huge = b"\xdb" + (32 << 20).to_bytes(4, "big") + b"x" * (6 << 20)  # 6 MB of a 32 MB string, unfinished
        try:
            sock.sendall(huge)
        except OSError:
            pass  # dropped while sending: as good
        assert replies(sock, {"never"})[-1]["op"] == "closed"
    with connect(path) as sock:  # the daemon serves on
        sock.sendall(generate(1, [1, 2]))
        assert replies(sock, {"done"})[-1]["op"] == "done"


def test_requests_past_the_queue_bound_are_answered_busy(serve):
    gate = threading.Event()
    daemon, path = serve(FakeEngine(gate=gate))
    with connect(path) as sock:
        sock.sendall(b"".join(generate(i, [1]) for i in range(1, 41)))  # while the engine is busy
        errors = [m for m in drain(sock, 2.0) if m.get("op") == "error"]
        assert errors and all("busy" in m["message"] for m in errors)
        assert len(daemon.engine.seen) + daemon.jobs.qsize() <= daemon_module.MAX_QUEUED_PER_CONNECTION + 1
        gate.set()


def test_connections_past_the_bound_are_refused(serve, monkeypatch):
    monkeypatch.setattr(daemon_module, "MAX_CONNECTIONS", 2, raising=False)
    daemon, path = serve()
    held = [connect(path), connect(path)]
    for sock in held:
        replies(sock, {"hello"})
    with connect(path) as third:
        msgs = replies(third, {"hello", "error"})
        assert msgs[0]["op"] == "error" and "busy" in msgs[0]["message"]
    held.pop().close()
    until(lambda: len(daemon.connections) == 1)  # the daemon has seen the close
    with connect(path) as again:
        assert replies(again, {"hello", "error"})[-1]["op"] == "hello"
    for sock in held:
        sock.close()


def test_a_refused_client_that_greets_after_the_refusal_is_not_reset(serve, monkeypatch):
    # The remote engine greets first and reads after: the daemon must not have closed on it by then,
    # or its greeting fails with a broken pipe and it never reads why it was refused.
    monkeypatch.setattr(daemon_module, "MAX_CONNECTIONS", 1, raising=False)
    _, path = serve()
    held = connect(path)
    replies(held, {"hello"})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
        late.settimeout(5)
        late.connect(str(path))
        [refusal] = replies(late, {"error"})
        assert "busy" in refusal["message"]
        time.sleep(0.2)  # a daemon that closes right after the refusal has closed by now
        late.sendall(msgpack.packb({"op": "hello", "v": wire.VERSION}))  # no BrokenPipeError
        assert late.recv(1) == b""  # then it closes in order
    held.close()


def test_a_client_that_stops_reading_does_not_stall_the_others(serve, monkeypatch):
    monkeypatch.setattr(daemon_module, "SEND_TIMEOUT_S", 0.5, raising=False)
    _, path = serve(FakeEngine(deltas=400, text="x" * 65536))  # 26 MB of answer
    stalled = connect(path)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(generate(1, [1]))  # and never reads
    time.sleep(0.2)
    result: list = []

    def other():
        with connect(path, timeout=30) as sock:
            sock.sendall(generate(2, [1]))
            result.append(replies(sock, {"done", "error"})[-1])

    t = threading.Thread(target=other, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(20)
    stalled.close()
    assert result and result[0]["op"] == "done", "the engine worker stayed blocked on the stalled client"
    assert time.monotonic() - t0 < 15


def test_other_users_are_refused(serve, monkeypatch):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    assert daemon_module.peer_uid(a) == os.getuid()
    a.close()
    b.close()
    monkeypatch.setattr(daemon_module, "peer_uid", lambda sock: os.getuid() + 4242, raising=False)
    _, path = serve()
    with connect(path) as sock:
        assert replies(sock, {"hello", "error"})[-1]["op"] == "closed"


@pytest.mark.parametrize("fallback", [False, True])
def test_the_runtime_dir_is_never_a_symlink(tmp_path, monkeypatch, fallback):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if fallback:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setattr(wire.tempfile, "gettempdir", lambda: str(tmp_path))
        link = tmp_path / f"completer-{os.getuid()}"
    else:
        (tmp_path / "xdg").mkdir()
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
        link = tmp_path / "xdg" / "completer"
    link.symlink_to(elsewhere)  # planted by someone else, before us
    with pytest.raises(PermissionError, match="symlink"):
        wire.runtime_dir()
    link.unlink()
    assert wire.runtime_dir() == link and os.stat(link).st_mode & 0o777 == 0o700


# -- finding 5: a hung daemon is given up on ----------------------------------------------------------

class HungDaemon:
    """Greets like a daemon, then reads requests and never answers (a daemon stopped mid-request).
    Past `greetings` connections it greets no more (stopped before it could)."""

    def __init__(self, path, greetings: int = 1_000):
        self.path, self.connections, self.greetings = path, 0, greetings
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.held = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)
            if self.connections > self.greetings:
                continue
            conn.recv(1 << 16)
            conn.sendall(msgpack.packb({"op": "hello", "v": wire.VERSION, "engine": {
                "model_dir": str(FIXTURE_MODEL), "max_seq": 64, "backend": "fake"}}))

    def close(self):
        self.server.close()
        for conn in self.held:
            conn.close()


def test_a_hung_daemon_answers_empty_after_the_deadline_and_reconnects(tmp_path, monkeypatch):
    monkeypatch.setattr(remote_engine, "GRACE_S", 0.3, raising=False)
    monkeypatch.setattr(remote_engine, "RETRY_S", 0.0)
    hung = HungDaemon(tmp_path / "hung.sock")
    engine = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=tmp_path / "hung.sock")
    out: list = []

    def ask():
        stream = engine.generate(GenerationRequest((1, 2, 3), max_new_tokens=4,
                                                   deadline_s=time.monotonic() + 0.2))
        out.append(([d.text for d in stream], stream.stats.finish_reason))

    try:
        t0 = time.monotonic()
        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        thread.join(10)
        assert out == [([], "unavailable")], "deltas() waited past the deadline"
        assert time.monotonic() - t0 < 3
        thread = threading.Thread(target=ask, daemon=True)  # the next request reconnects
        thread.start()
        thread.join(10)
        assert hung.connections == 2 and out[1] == ([], "unavailable")
    finally:
        engine.close()
        hung.close()


def test_scoring_on_a_hung_daemon_gives_up_after_the_completions_deadline(tmp_path, monkeypatch):
    # Reranking asks the daemon for scores after the generation: that wait keeps to the completion's
    # deadline too (it used to wait 30 s, the whole time the daemon was stopped).
    monkeypatch.setattr(remote_engine, "GRACE_S", 0.3, raising=False)
    hung = HungDaemon(tmp_path / "hung.sock")
    engine = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=tmp_path / "hung.sock")
    try:
        t0 = time.monotonic()
        scores = engine.score(ScoreRequest((1, 2, 3), ((4, 5),), deadline_s=time.monotonic() + 0.2))
        assert scores == [] and time.monotonic() - t0 < 3
    finally:
        engine.close()
        hung.close()


def test_a_reconnect_to_a_daemon_that_never_greets_costs_a_request_little(tmp_path, monkeypatch):
    # Stopped after the first connection: the kernel still accepts connections, nobody greets. A
    # request that tries to reconnect must not wait the first connection's 10 s for the greeting.
    monkeypatch.setattr(remote_engine, "GRACE_S", 0.3, raising=False)
    monkeypatch.setattr(remote_engine, "RETRY_S", 0.0)
    hung = HungDaemon(tmp_path / "hung.sock", greetings=1)
    engine = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=tmp_path / "hung.sock")
    try:
        request = GenerationRequest((1, 2, 3), max_new_tokens=4, deadline_s=time.monotonic() + 0.2)
        with engine.generate(request) as stream:
            assert list(stream) == [] and stream.stats.finish_reason == "unavailable"
        t0 = time.monotonic()
        with engine.generate(dataclasses.replace(request, deadline_s=time.monotonic() + 0.2)) as stream:
            assert list(stream) == [] and stream.stats.finish_reason == "unavailable"
        assert engine.score(ScoreRequest((1, 2, 3), ((4, 5),), deadline_s=time.monotonic() + 0.2)) == []
        assert hung.connections >= 2 and time.monotonic() - t0 < 2 * remote_engine.RECONNECT_TIMEOUT_S + 0.5
    finally:
        engine.close()
        hung.close()


def test_the_socket_path_appears_only_once_the_daemon_listens(tmp_path, monkeypatch):
    """Between bind and listen a connection is refused, and a client takes that for a daemon that is
    gone: the daemon binds a temporary name and renames it once listening (a test that waited for
    the path and then connected failed this way under load)."""
    path = tmp_path / "d.sock"
    seen = []

    class Watched(socket.socket):
        def listen(self, *args):
            seen.append(path.exists())
            return super().listen(*args)

    monkeypatch.setattr(daemon_module.socket, "socket", Watched)
    sock = EngineDaemon(FakeEngine(), path, idle_exit_s=0).bind()
    try:
        assert seen == [False] and path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name != "d.sock" and p.suffix != ".lock"] == []
    finally:
        sock.close()


# -- the cold path through the daemon: max_prefill travels, prefill is an op of its own -----------------

class PrefillingEngine(FakeEngine):
    """Prefills in pieces until cancelled (as TorchEngine.prefill does), and records max_prefill."""
    can_prefill = True

    def __init__(self):
        super().__init__()
        self.started, self.pieces, self.max_prefill = threading.Event(), 0, []

    def generate(self, request, cancel=None):
        self.max_prefill.append(request.max_prefill)
        return super().generate(request, cancel)

    def prefill(self, request, cancel=None):
        self.started.set()
        while not cancel.is_set() and self.pieces < 1000:
            self.pieces += 1
            time.sleep(0.01)
        return GenerationStats(prompt_tokens=len(request.prompt_ids), prefill_tokens=self.pieces,
                               finish_reason="cancelled" if cancel.is_set() else "prefilled")

    def describe(self):
        return {**super().describe(), "can_prefill": True}


def test_a_warm_up_through_the_daemon_is_cancelled_within_a_piece(serve):
    fake = PrefillingEngine()
    _, path = serve(fake)
    engine = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=path)
    try:
        assert engine.can_prefill
        stream = engine.generate(GenerationRequest((1, 2, 3), max_new_tokens=2, max_prefill=2))
        list(stream)
        assert fake.max_prefill == [2]  # the limit crossed the socket

        cancel, out = threading.Event(), []
        thread = threading.Thread(target=lambda: out.append(engine.prefill(GenerationRequest((1, 2, 3)), cancel)))
        thread.start()
        assert fake.started.wait(5)
        cancel.set()  # the next keystroke
        thread.join(5)
        assert out[0].finish_reason == "cancelled" and fake.pieces < 1000
    finally:
        engine.close()


def test_a_backend_that_cannot_prefill_is_neither_asked_nor_run(serve):
    _, path = serve(FakeEngine())
    engine = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=path)
    try:
        assert not engine.can_prefill  # so the completer neither sends max_prefill nor warms up this way
        sock = connect(path)
        sock.sendall(msgpack.packb({"op": "prefill", "id": 7, "req": {"prompt_ids": [1, 2]}}))
        reply = replies(sock, ("done", "error"))[-1]
        assert reply["op"] == "error" and reply["id"] == 7 and "cannot prefill" in reply["message"]
        sock.close()
    finally:
        engine.close()


def test_a_warm_up_on_a_hung_daemon_holds_the_next_key_back_only_briefly(tmp_path, monkeypatch):
    # The language server sends one request at a time: a warm-up waiting on a stopped daemon would hold
    # every key after it. Cancelled (the next key in its document), it waits GRACE_S more; left alone,
    # PREFILL_WAIT_S plus GRACE_S (it was NO_DEADLINE_S, 30 s).
    monkeypatch.setattr(remote_engine, "GRACE_S", 0.3)
    monkeypatch.setattr(remote_engine, "PREFILL_WAIT_S", 20.0)
    monkeypatch.setattr(remote_engine, "RETRY_S", 0.0)
    hung = HungDaemon(tmp_path / "hung.sock")
    engine = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=tmp_path / "hung.sock")
    try:
        cancel = threading.Event()
        threading.Timer(0.1, cancel.set).start()
        t0 = time.monotonic()
        assert engine.prefill(GenerationRequest((1, 2, 3)), cancel).finish_reason == "unavailable"
        assert time.monotonic() - t0 < 5  # the cancel's grace, not PREFILL_WAIT_S

        monkeypatch.setattr(remote_engine, "PREFILL_WAIT_S", 0.5)
        t0 = time.monotonic()
        assert engine.prefill(GenerationRequest((1, 2, 3))).finish_reason == "unavailable"  # reconnected, hung again
        assert 0.5 <= time.monotonic() - t0 < 5
    finally:
        engine.close()
        hung.close()


def test_a_warm_up_gives_way_to_another_windows_keystroke(serve):
    fake = PrefillingEngine()
    _, path = serve(fake)
    a = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=path)
    b = remote_engine.RemoteEngine(EngineOptions(), mode="connect", socket_path=path)  # another window
    try:
        out = []
        thread = threading.Thread(target=lambda: out.append(a.prefill(GenerationRequest((1, 2, 3)))))
        thread.start()
        assert fake.started.wait(5)
        stream = b.generate(GenerationRequest((4, 5), max_new_tokens=1))
        assert [d.text for d in stream] == ["a"]
        thread.join(5)
        assert out[0].finish_reason == "cancelled" and fake.pieces < 1000  # it stopped for b's key
    finally:
        a.close()
        b.close()


def test_a_warm_up_runs_its_first_piece_even_behind_a_queue():
    # Under a steady queue (many windows typing) each warm-up still gets one piece further, so a
    # window's keys do not stay on short prompts for as long as the others type.
    waiting = daemon_module.queue.Queue()
    waiting.put(object())
    give_way = daemon_module._GiveWay(threading.Event(), waiting)
    assert [give_way.is_set(), give_way.is_set()] == [False, True]
    own = threading.Event()
    own.set()  # the window's own next key stops it at once
    assert daemon_module._GiveWay(own, daemon_module.queue.Queue()).is_set()
