"""Contract 3: the wire protocol between language servers and a shared `completer engine` daemon.

A unix stream socket private to the user (the socket 0600 in a 0700 directory of the user's runtime
dir), carrying a stream of msgpack maps each way. The engine interface of Contract 2 crosses it
unchanged: token ids in, token deltas and stats out.

    client -> daemon                                   daemon -> client
    {"op": "hello", "v": 1}                            {"op": "hello", "v": 1, "engine": describe(), "pid"}
                                                       or {"op": "error", "message"} and close
    {"op": "generate", "id", "req": {...}}             {"op": "delta", "id", "ids": [...], "text"} ...
                                                       {"op": "done", "id", "stats": {...}}
                                                       or {"op": "error", "id", "message"}
    {"op": "score", "id", "req": {...}}                {"op": "scores", "id", "logprobs": [[...], ...]}
                                                       or {"op": "error", "id", "message"}
    {"op": "prefill", "id", "req": {...}}              {"op": "done", "id", "stats": {...}}  (a warm-up:
                                                       finish_reason "prefilled" or "cancelled")
                                                       or {"op": "error", "id", "message"}
    {"op": "cancel", "id"}                             (the generation stops within one decode step)
    {"op": "health"}                                   {"op": "health", "ok", "pid", "clients", "requests",
                                                        "uptime_s", "engine"}

`req` holds the GenerationRequest fields; its deadline travels as milliseconds left (the clocks of
two processes need not agree) and `heal_prefix` as bytes. A generate with `max_prefill` that would
prefill more is answered at once: "done" with finish_reason "cold" and no delta. "prefill" is there
when the greeting's engine says can_prefill.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tempfile
import time
from pathlib import Path

from completer.engines.contract import GenerationRequest, GenerationStats, ScoreRequest, StopRules
from completer.engines.options import EngineOptions

VERSION = 1


def runtime_dir() -> Path:
    """The user's private directory for sockets: $XDG_RUNTIME_DIR/completer, else a 0700 directory in
    the temp dir named after the uid. Refuses a symlink (another user could plant one in /tmp before
    us), anything not a directory, and a directory someone else owns; one others can enter is made
    0700."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "completer" if base and Path(base).is_dir() else \
        Path(tempfile.gettempdir()) / f"completer-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(path)  # not stat(): never through a symlink
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory (a symlink?); set --engine-socket to a path of your own")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user; set --engine-socket to a path of your own")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # a directory of ours, checked just above
    return path


def default_socket(options: EngineOptions) -> Path:
    """One daemon per engine configuration: the socket name carries a hash of the options."""
    return runtime_dir() / f"engine-{options.key()}.sock"


def request_to_wire(req: GenerationRequest) -> dict:
    out = dataclasses.asdict(req)
    out["prompt_ids"] = list(req.prompt_ids)
    out["stop"] = {"stop_token_ids": sorted(req.stop.stop_token_ids), "stop_strings": list(req.stop.stop_strings),
                   "max_lines": req.stop.max_lines, "min_indent": req.stop.min_indent}
    out.pop("deadline_s")
    out["deadline_ms"] = _ms_left(req.deadline_s)
    return out


def request_from_wire(data: dict) -> GenerationRequest:
    fields = {f.name for f in dataclasses.fields(GenerationRequest)}
    kw = {k: v for k, v in data.items() if k in fields}
    stop = data.get("stop") or {}
    kw["prompt_ids"] = tuple(int(t) for t in data["prompt_ids"])
    kw["stop"] = StopRules(stop_token_ids=frozenset(stop.get("stop_token_ids", ())),
                           stop_strings=tuple(stop.get("stop_strings", ())), max_lines=int(stop.get("max_lines", 1)),
                           min_indent=stop.get("min_indent"))
    kw["heal_prefix"] = bytes(data.get("heal_prefix") or b"")
    kw["deadline_s"] = _deadline(data.get("deadline_ms"))
    return GenerationRequest(**kw)


def _ms_left(deadline_s: float | None) -> float | None:
    """A deadline on the wire: milliseconds left (the two processes' clocks are not compared)."""
    return None if deadline_s is None else max(0.0, (deadline_s - time.monotonic()) * 1000)


def _deadline(deadline_ms) -> float | None:
    return None if deadline_ms is None else time.monotonic() + float(deadline_ms) / 1000


def stats_from_wire(data: dict) -> GenerationStats:
    fields = {f.name for f in dataclasses.fields(GenerationStats)}
    return GenerationStats(**{k: v for k, v in data.items() if k in fields})


def score_request_to_wire(req: ScoreRequest) -> dict:
    return {"prompt_ids": list(req.prompt_ids), "continuations": [list(c) for c in req.continuations],
            "session_key": req.session_key, "use_cache": req.use_cache, "cache_scope": req.cache_scope,
            "deadline_ms": _ms_left(req.deadline_s)}


def score_request_from_wire(data: dict) -> ScoreRequest:
    return ScoreRequest(prompt_ids=tuple(int(t) for t in data["prompt_ids"]),
                        continuations=tuple(tuple(int(t) for t in c) for c in data["continuations"]),
                        session_key=str(data.get("session_key", "")), use_cache=bool(data.get("use_cache", True)),
                        cache_scope=str(data.get("cache_scope", "")), deadline_s=_deadline(data.get("deadline_ms")))
