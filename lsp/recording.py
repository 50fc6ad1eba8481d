"""`serve --record DIR`: write what the editor did as a Contract 4 session file (opt-in, local only).

One file per server process, DIR/session-<UTC time>-<pid>.msgpack, created 0600 in a 0700
directory: it holds the user's source text. Events are appended and flushed as they happen, so a
crash loses nothing before it. The file is opened at the first didOpen, once the position encoding
is negotiated. A failure to write stops recording (logged) and never disturbs serving.

The file is a new one (O_EXCL: never an existing file, never through a symlink); DIR must be a
directory of ours (not a symlink), and is made 0700 if others could enter it. A document that looks
like a secret (the context filter's list: .env, keys, .npmrc, kubeconfig, ...) is not recorded: its
open event carries no text and `skipped: "secret"`, and its edits, requests and answers are left out.
"""

from __future__ import annotations

import datetime
import logging
import os
import stat
import time
from pathlib import Path

from pygls.uris import to_fs_path

from completer import __version__
from completer.completion.context import looks_secret
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
        self._secret: set[str] = set()  # uris of open documents that are not recorded
        self._secret_rids: set[int] = set()

    def _now(self) -> float:
        return (time.monotonic() - self._t0) * 1000

    def _write(self, kind: str, **fields) -> None:
        if self._failed:
            return
        try:
            if self._writer is None:
                self._open()
            self._writer.write(event(kind, self._now(), **fields))
        except Exception:
            self._failed = True
            log.exception("recording failed; serving goes on without it")

    def _open(self) -> None:
        private_directory(self.directory)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        for n in range(100):
            self.path = self.directory / f"session-{stamp}-{os.getpid()}{f'-{n}' if n else ''}.msgpack"
            try:
                self._writer = SessionWriter(self.path, "recorded", self.encoding,
                                             {"recorder": f"completer {__version__}"}, private=True)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free session file name in {self.directory}")
        log.info("recording this session to %s", self.path)

    # -- documents ----------------------------------------------------------------------------------

    def opened(self, uri: str, language_id: str, version: int, text: str) -> None:
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if path and looks_secret(path):
            self._secret.add(uri)
            log.info("not recording %s: it looks like a secret file", uri)
            self._write("open", uri=uri, language_id=language_id, version=version, text="", skipped="secret")
            return
        self._secret.discard(uri)
        self._write("open", uri=uri, language_id=language_id, version=version, text=text)

    def changed(self, uri: str, version: int, changes: list[list]) -> None:
        if uri not in self._secret:
            self._write("change", uri=uri, version=version, changes=changes)

    def closed(self, uri: str) -> None:
        self._secret.discard(uri)
        self._write("close", uri=uri)

    # -- completions --------------------------------------------------------------------------------

    def request(self, uri: str, version: int, line: int, character: int, trigger: int) -> int:
        self._next_rid += 1
        if uri in self._secret:
            self._secret_rids.add(self._next_rid)
            if len(self._secret_rids) > 4096:
                self._secret_rids.discard(min(self._secret_rids))
            return self._next_rid
        self._write("request", rid=self._next_rid, uri=uri, version=version, line=line, character=character,
                    trigger=trigger)
        return self._next_rid

    def answer(self, rid: int, text: str, ms: float, item_id: str | None) -> None:
        if rid in self._secret_rids:
            return
        self._write("answer", rid=rid, text=text, ms=round(ms, 3))
        if item_id is not None:
            self._items[item_id] = (rid, text)
            if len(self._items) > 4096:  # only recent items can still be accepted
                self._items.pop(next(iter(self._items)))

    def cancelled(self, rid: int) -> None:
        if rid not in self._secret_rids:
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


def private_directory(directory: Path) -> None:
    """`directory`, created 0700 if missing; refused if it is a symlink, not a directory or someone
    else's; made 0700 if others could enter it (it is about to hold source text)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{directory} is not a directory (a symlink?): not recording there")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to another user: not recording there")
    if st.st_mode & 0o077:
        log.warning("%s could be read by others: making it 0700 before recording into it", directory)
        os.chmod(directory, 0o700)
