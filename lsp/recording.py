"""`serve --record DIR`: write what the editor did as a Contract 4 session file (opt-in, local only).

One file per server process, DIR/session-<UTC time>-<pid>.msgpack, created 0600 in a 0700
directory: it holds the user's source text. Events are appended and flushed as they happen, so a
crash loses nothing before it. The file is opened at the first didOpen, once the position encoding
is negotiated. A failure to write stops recording (logged) and never disturbs serving.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from pathlib import Path

from completer import __version__
from completer.replay.session import SessionWriter, event

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()
        self.encoding = "utf-16"
        self.path: Path | None = None
        self._writer: SessionWriter | None = None
        self._t0 = time.monotonic()
        self._failed = False
        self._items: dict[str, tuple[int, str]] = {}  # accept-command item id -> (rid, text)
        self._next_rid = 0

    def _now(self) -> float:
        return (time.monotonic() - self._t0) * 1000

    def _write(self, kind: str, **fields) -> None:
        if self._failed:
            return
        try:
            if self._writer is None:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
                self.path = self.directory / f"session-{stamp}-{os.getpid()}.msgpack"
                self._writer = SessionWriter(self.path, "recorded", self.encoding,
                                             {"recorder": f"completer {__version__}"}, private=True)
                log.info("recording this session to %s", self.path)
            self._writer.write(event(kind, self._now(), **fields))
        except Exception:
            self._failed = True
            log.exception("recording failed; serving goes on without it")

    # -- documents ----------------------------------------------------------------------------------

    def opened(self, uri: str, language_id: str, version: int, text: str) -> None:
        self._write("open", uri=uri, language_id=language_id, version=version, text=text)

    def changed(self, uri: str, version: int, changes: list[list]) -> None:
        self._write("change", uri=uri, version=version, changes=changes)

    def closed(self, uri: str) -> None:
        self._write("close", uri=uri)

    # -- completions --------------------------------------------------------------------------------

    def request(self, uri: str, version: int, line: int, character: int, trigger: int) -> int:
        self._next_rid += 1
        self._write("request", rid=self._next_rid, uri=uri, version=version, line=line, character=character,
                    trigger=trigger)
        return self._next_rid

    def answer(self, rid: int, text: str, ms: float, item_id: str | None) -> None:
        self._write("answer", rid=rid, text=text, ms=round(ms, 3))
        if item_id is not None:
            self._items[item_id] = (rid, text)
            if len(self._items) > 4096:  # only recent items can still be accepted
                self._items.pop(next(iter(self._items)))

    def cancelled(self, rid: int) -> None:
        self._write("cancel", rid=rid)

    def accepted(self, item_id: str, length: int | None = None) -> None:
        rid, text = self._items.get(item_id, (0, ""))
        if length is None:
            self._write("accept", rid=rid, text=text, how="full")
        else:
            self._write("accept", rid=rid, text=text[:length], how="partial")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
