"""Typing sessions (Contract 4): the msgpack file that `serve --record` writes, the typist
synthesizes and `completer replay` reads.

A session file is a stream of msgpack maps. The first is the header:

    {"format": "completer-session", "version": 1, "kind": "recorded" | "synthetic",
     "encoding": "utf-16" | "utf-8" | "utf-32",   # the unit of every `character` below
     "created": ISO-8601 UTC, "meta": {...free-form: source file, seed, server command...}}

Every later map is one event, {"e": KIND, "t": ms since the session started, ...fields}:

    open     uri, language_id, version, text            a document as the editor opened it
    change   uri, version, changes                      didChange; changes = [[sl, sc, el, ec, text], ...],
                                                        or [None, None, None, None, text] for a full replace
    request  rid, uri, version, line, character, trigger   inlineCompletion (trigger 1 invoked, 2 automatic)
    answer   rid, text, ms                              what the server answered (ms: server-side)
    cancel   rid                                        the editor cancelled the request
    accept   rid, text, how                             the user took a suggestion: how = full | line | word
    close    uri
    plan     uri, line, character, text, steps          synthetic only: the user is about to type `text`
                                                        at (line, character); steps = [[op, at, text, delay_ms]]
                                                        with op type | typo | backspace | paste | jump

Writing appends one map per event and flushes, so a recording survives a crash up to its last
event. A reader refuses a file that is not a session, is cut or corrupt, or comes from a newer
format version, with a SessionError that says which.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import msgpack

FORMAT = "completer-session"
VERSION = 1

# Fields each event kind must carry (beyond "e" and "t"); extra fields are kept and ignored.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "open": ("uri", "language_id", "version", "text"),
    "change": ("uri", "version", "changes"),
    "request": ("rid", "uri", "version", "line", "character", "trigger"),
    "answer": ("rid", "text", "ms"),
    "cancel": ("rid",),
    "accept": ("rid", "text", "how"),
    "close": ("uri",),
    "plan": ("uri", "line", "character", "text", "steps"),
}
STEP_OPS = ("type", "typo", "backspace", "paste", "jump")


class SessionError(ValueError):
    """The file is not a session this version of completer can read."""


@dataclass
class Session:
    kind: str  # recorded | synthetic
    encoding: str = "utf-16"
    meta: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""
    path: str = ""  # where it was read from, for messages

    def header(self) -> dict[str, Any]:
        created = self.created or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "encoding": self.encoding,
                "created": created, "meta": self.meta}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["e"] == kind]

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else self.meta.get("name", "session")


def event(kind: str, t: float, **fields: Any) -> dict[str, Any]:
    missing = [f for f in EVENT_FIELDS[kind] if f not in fields]
    if missing:
        raise ValueError(f"{kind} event needs {', '.join(missing)}")
    return {"e": kind, "t": round(float(t), 3), **fields}


def write_session(path: str | os.PathLike, session: Session) -> None:
    with SessionWriter(path, session.kind, session.encoding, session.meta) as writer:
        for ev in session.events:
            writer.write(ev)


class SessionWriter:
    """Appends events to a new session file as they happen (recording)."""

    def __init__(self, path: str | os.PathLike, kind: str, encoding: str = "utf-16", meta: dict | None = None,
                 private: bool = False):
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._packer = msgpack.Packer(use_bin_type=True)
        self._file.write(self._packer.pack(Session(kind, encoding, meta or {}).header()))
        self._file.flush()

    def write(self, ev: dict[str, Any]) -> None:
        if ev.get("e") not in EVENT_FIELDS:
            raise ValueError(f"unknown session event {ev.get('e')!r}")
        self._file.write(self._packer.pack(ev))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "SessionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_session(path: str | os.PathLike) -> Session:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SessionError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_session(data, str(path))


def parse_session(data: bytes, name: str = "<bytes>") -> Session:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        items = list(unpacker)
    except (msgpack.UnpackException, ValueError) as exc:
        raise SessionError(f"{name}: corrupt session file ({exc})") from None
    if not items or not isinstance(items[0], dict) or items[0].get("format") != FORMAT:
        raise SessionError(f"{name}: not a completer session file")
    if unpacker.tell() != len(data):
        raise SessionError(f"{name}: corrupt session file (cut off after {unpacker.tell()} of {len(data)} bytes)")
    header = items[0]
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise SessionError(f"{name}: corrupt session file (bad version {version!r})")
    if version > VERSION:
        raise SessionError(f"{name}: session format version {version} is newer than this completer reads "
                           f"(up to {VERSION}); upgrade completer")
    if header.get("kind") not in ("recorded", "synthetic"):
        raise SessionError(f"{name}: corrupt session file (unknown kind {header.get('kind')!r})")
    if header.get("encoding", "utf-16") not in ("utf-8", "utf-16", "utf-32"):
        raise SessionError(f"{name}: corrupt session file (unknown encoding {header.get('encoding')!r})")
    events = items[1:]
    for i, ev in enumerate(events):
        _check_event(ev, i, name)
    return Session(kind=header["kind"], encoding=header.get("encoding", "utf-16"), meta=header.get("meta") or {},
                   events=events, created=header.get("created", ""), path=name)


def _check_event(ev: Any, i: int, name: str) -> None:
    where = f"{name}: corrupt session file (event {i}"
    if not isinstance(ev, dict) or ev.get("e") not in EVENT_FIELDS:
        kind = ev.get("e") if isinstance(ev, dict) else type(ev).__name__
        raise SessionError(f"{where}: unknown event {kind!r})")
    if not isinstance(ev.get("t"), (int, float)):
        raise SessionError(f"{where}: no time)")
    missing = [f for f in EVENT_FIELDS[ev["e"]] if f not in ev]
    if missing:
        raise SessionError(f"{where}: {ev['e']} without {', '.join(missing)})")
    if ev["e"] == "change":
        _check_changes(ev["changes"], where)
    if ev["e"] == "plan":
        _check_steps(ev["steps"], len(ev["text"]) if isinstance(ev["text"], str) else -1, where)


def _check_changes(changes: Any, where: str) -> None:
    if not isinstance(changes, list):
        raise SessionError(f"{where}: changes is not a list)")
    for c in changes:
        if not (isinstance(c, list) and len(c) == 5 and isinstance(c[4], str)):
            raise SessionError(f"{where}: bad change {c!r})")
        if c[0] is None:
            if any(x is not None for x in c[1:4]):
                raise SessionError(f"{where}: bad change {c!r})")
        elif not all(isinstance(x, int) and x >= 0 for x in c[:4]):
            raise SessionError(f"{where}: bad change range {c[:4]!r})")


def _check_steps(steps: Any, n: int, where: str) -> None:
    if n < 0 or not isinstance(steps, list):
        raise SessionError(f"{where}: bad plan)")
    for s in steps:
        if not (isinstance(s, list) and len(s) == 4 and s[0] in STEP_OPS and isinstance(s[1], int)
                and 0 <= s[1] <= n and isinstance(s[2], str) and isinstance(s[3], (int, float)) and s[3] >= 0):
            raise SessionError(f"{where}: bad plan step {s!r})")


def iter_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Session files named directly or found in directories (sorted, *.msgpack)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(p.glob("*.msgpack")) if p.is_dir() else [p]
    return out
