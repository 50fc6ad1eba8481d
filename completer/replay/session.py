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
event. A reader refuses a file that is not a session, is cut (even inside an event) or corrupt, has
a field of the wrong type, or comes from a newer format version, with a SessionError that says
which. Text is stored as the editor sent it: a lone UTF-16 surrogate travels as its WTF-8 bytes
(surrogatepass), so a recording never stops at one. Reading bounds what a file can make the reader
allocate (msgpack builds a container at the size its header claims, before reading its items).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

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
# The type of every field above (bool is not an int here); line/character/version/rid are >= 0.
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "uri": (str,), "language_id": (str,), "version": (int,), "text": (str,), "changes": (list,),
    "rid": (int,), "line": (int,), "character": (int,), "trigger": (int,), "ms": (int, float),
    "how": (str,), "steps": (list,),
}
NON_NEGATIVE = ("version", "rid", "line", "character")

# What one file may make the reader allocate. A container is preallocated at the length its header
# claims and containers nest up to msgpack's stack (1024 deep): without a cap a 200 KB file of
# nested array headers took 82 MB. Files are read with the small caps first (at most 1024 levels x
# 1024 slots, ~8 MB); one with a longer array (a plan's steps, a reformat's changes) is read again
# with the large caps once a scan has shown its nesting is no deeper than the format's.
MAX_STR = 64 << 20  # one document's text
SMALL_CONTAINER = 1024
MAX_ARRAY = 100_000
MAX_MAP = 4096
MAX_DEPTH = 8  # header -> meta -> ...; change events nest 3 deep, plans 3
UNICODE = "surrogatepass"  # lone surrogates are the editor's text too (see the module docstring)


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
    """Appends events to a new session file as they happen (recording).

    Never writes through a symlink (O_NOFOLLOW). `private` (a recording, the user's source text): the
    file is created 0600 and must not exist yet (O_EXCL, FileExistsError); otherwise (synthesized
    sessions) it is 0644 and an existing file is replaced.

    Each event is written whole or not at all: a write that fails (a full disk) is cut back to the end
    of the last whole event before the error is raised, so the file stays a readable session."""

    def __init__(self, path: str | os.PathLike, kind: str, encoding: str = "utf-16", meta: dict | None = None,
                 private: bool = False):
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_EXCL if private else os.O_TRUNC)
        self._fd: int | None = os.open(self.path, flags, 0o600 if private else 0o644)
        self._size = 0  # bytes of whole items written
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors=UNICODE)
        try:
            self._append(self._packer.pack(Session(kind, encoding, meta or {}).header()))
        except BaseException:
            self.close()
            raise

    def write(self, ev: dict[str, Any]) -> None:
        if ev.get("e") not in EVENT_FIELDS:
            raise ValueError(f"unknown session event {ev.get('e')!r}")
        self._append(self._packer.pack(ev))

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("write to a closed session file")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
                os.lseek(self._fd, self._size, os.SEEK_SET)
            except OSError:
                pass
            raise
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

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
    try:
        items = _unpack_all(data, SMALL_CONTAINER, SMALL_CONTAINER, name)
    except _TooLong:
        depth = _nesting_depth(data, MAX_DEPTH)
        if depth > MAX_DEPTH:
            raise SessionError(f"{name}: corrupt session file (containers nested deeper than {MAX_DEPTH})") from None
        try:
            items = _unpack_all(data, MAX_ARRAY, MAX_MAP, name)
        except _TooLong as exc:
            raise SessionError(f"{name}: corrupt session file ({exc})") from None
    if not items or not isinstance(items[0], dict) or items[0].get("format") != FORMAT:
        raise SessionError(f"{name}: not a completer session file")
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
    if not isinstance(header.get("meta") or {}, dict) or not isinstance(header.get("created", ""), str):
        raise SessionError(f"{name}: corrupt session file (bad header)")
    events = items[1:]
    for i, ev in enumerate(events):
        _check_event(ev, i, name)
    return Session(kind=header["kind"], encoding=header.get("encoding", "utf-16"), meta=header.get("meta") or {},
                   events=events, created=header.get("created", ""), path=name)


class _TooLong(ValueError):
    """A container longer than the caps of this pass."""


def _unpack_all(data: bytes, max_array: int, max_map: int, name: str) -> list:
    """Every top-level map of the file; a SessionError if it is corrupt or cut, even inside an item."""
    size = max(len(data), 1)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=size,
                                max_str_len=min(MAX_STR, size), max_bin_len=min(MAX_STR, size),
                                max_array_len=min(max_array, size), max_map_len=min(max_map, size),
                                max_ext_len=0, unicode_errors=UNICODE)
    unpacker.feed(data)
    items, end = [], 0
    try:
        while True:
            try:
                items.append(unpacker.unpack())
            except msgpack.OutOfData:
                break
            end = unpacker.tell()  # tell() counts a partly read item too: keep the end of the last whole one
    except ValueError as exc:  # msgpack's limits and format errors are ValueErrors
        if "exceeds max_array_len" in str(exc) or "exceeds max_map_len" in str(exc):
            raise _TooLong(str(exc)) from None
        raise SessionError(f"{name}: corrupt session file ({exc})") from None
    except msgpack.UnpackException as exc:
        raise SessionError(f"{name}: corrupt session file ({type(exc).__name__} {exc})") from None
    if items and end != len(data):
        raise SessionError(f"{name}: corrupt session file (cut off after {end} of {len(data)} bytes, "
                           "inside an event)")
    return items


# msgpack type byte -> (bytes of the length or value that follow, kind): kind "a"/"m" = array/map
# with that many items (entries), "s" = that many payload bytes, "x" = ext (payload + 1 type byte).
_HEADS: dict[int, tuple[int, str]] = {
    0xc4: (1, "s"), 0xc5: (2, "s"), 0xc6: (4, "s"), 0xc7: (1, "x"), 0xc8: (2, "x"), 0xc9: (4, "x"),
    0xd9: (1, "s"), 0xda: (2, "s"), 0xdb: (4, "s"), 0xdc: (2, "a"), 0xdd: (4, "a"), 0xde: (2, "m"), 0xdf: (4, "m"),
}
_FIXED = {0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8,
          0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17}


def _nesting_depth(data: bytes, limit: int) -> int:
    """How deep containers nest in `data` (stopping once past `limit`), read from the headers alone:
    nothing is allocated. Malformed data is left for the unpacker to report."""
    pending: list[int] = []  # items still to read in each open container
    pos, n, deepest = 0, len(data), 0
    while pos < n:
        b = data[pos]
        pos += 1
        count = 0
        if b <= 0x7f or b >= 0xe0 or b in (0xc0, 0xc2, 0xc3):
            pass
        elif 0x80 <= b <= 0x8f:
            count = 2 * (b & 0x0f)
        elif 0x90 <= b <= 0x9f:
            count = b & 0x0f
        elif 0xa0 <= b <= 0xbf:
            pos += b & 0x1f
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _HEADS:
            width, kind = _HEADS[b]
            length = int.from_bytes(data[pos:pos + width], "big")
            pos += width
            if kind == "s":
                pos += length
            elif kind == "x":
                pos += 1 + length
            else:
                count = length * (2 if kind == "m" else 1)
        else:
            return deepest  # 0xc1: not msgpack
        if count:
            pending.append(count)
            deepest = max(deepest, len(pending))
            if deepest > limit:
                return deepest
            continue
        while pending:  # this item completes its container, and maybe the ones around it
            pending[-1] -= 1
            if pending[-1]:
                break
            pending.pop()
    return deepest


def _check_event(ev: Any, i: int, name: str) -> None:
    where = f"{name}: corrupt session file (event {i}"
    if not isinstance(ev, dict) or ev.get("e") not in EVENT_FIELDS:
        kind = ev.get("e") if isinstance(ev, dict) else type(ev).__name__
        raise SessionError(f"{where}: unknown event {kind!r})")
    if not _is_number(ev.get("t")):
        raise SessionError(f"{where}: no time)")
    missing = [f for f in EVENT_FIELDS[ev["e"]] if f not in ev]
    if missing:
        raise SessionError(f"{where}: {ev['e']} without {', '.join(missing)})")
    for f in EVENT_FIELDS[ev["e"]]:
        value, kinds = ev[f], FIELD_TYPES[f]
        if isinstance(value, bool) or not isinstance(value, kinds) or (f in NON_NEGATIVE and value < 0):
            raise SessionError(f"{where}: {ev['e']} field {f} is {type(value).__name__} {_short(value)})")
    if ev["e"] == "change":
        _check_changes(ev["changes"], where)
    if ev["e"] == "plan":
        _check_steps(ev["steps"], len(ev["text"]), where)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
