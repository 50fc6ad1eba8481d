"""The engine daemon's wire format and where its sockets live."""

import os
import stat
import time

import msgpack

from completer.engines.contract import GenerationRequest, ScoreRequest, StopRules
from completer.engines.options import EngineOptions
from completer.serving.wire import (
    default_socket,
    request_from_wire,
    request_to_wire,
    runtime_dir,
    score_request_from_wire,
    score_request_to_wire,
)


def test_engine_sockets_live_in_a_private_directory_one_per_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    directory = runtime_dir()
    assert directory == tmp_path / "completer" and stat.S_IMODE(directory.stat().st_mode) == 0o700
    os.chmod(directory, 0o755)
    runtime_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # tightened again
    a = default_socket(EngineOptions(model="embedded", device="cpu"))
    assert a.parent == directory and a == default_socket(EngineOptions(device="cpu", model="embedded"))
    assert a != default_socket(EngineOptions(model="other", device="cpu"))


def test_generation_requests_cross_the_wire_unchanged():
    req = GenerationRequest((1, 2, 3), 9, time.monotonic() + 0.4, StopRules(frozenset({7}), ("\n\n",), 3, 4), "s",
                            False, True, None, b"\xe2\x82", 0.5, 0.9, 42)
    back = request_from_wire(msgpack.unpackb(msgpack.packb(request_to_wire(req), use_bin_type=True), raw=False))
    assert back.deadline_s is not None and abs(back.deadline_s - req.deadline_s) < 0.05
    assert back == GenerationRequest(**{**req.__dict__, "deadline_s": back.deadline_s})


def test_score_requests_cross_the_wire_unchanged_with_their_deadline():
    for deadline in (time.monotonic() + 0.4, None):
        req = ScoreRequest((1, 2, 3), ((4,), (5, 6), ()), "s", False, "scope", deadline)
        back = score_request_from_wire(msgpack.unpackb(msgpack.packb(score_request_to_wire(req)), raw=False))
        if deadline is None:
            assert back == req
        else:
            assert back.deadline_s is not None and abs(back.deadline_s - deadline) < 0.05
            assert back == ScoreRequest(**{**req.__dict__, "deadline_s": back.deadline_s})
