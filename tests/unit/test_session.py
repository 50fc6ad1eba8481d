"""The session file format: round trip, streaming, and clear errors for bad files."""

import msgpack
import pytest

from completer.replay.session import (
    VERSION,
    Session,
    SessionError,
    SessionWriter,
    event,
    parse_session,
    read_session,
    write_session,
)


def _session() -> Session:
    return Session("recorded", "utf-16", {"note": "é"}, [
        event("open", 0, uri="file:///a.py", language_id="python", version=1, text="x = 1\n"),
        event("change", 12.5, uri="file:///a.py", version=2, changes=[[0, 5, 0, 5, "0"], [None, None, None, None, "y\n"]]),
        event("request", 13, rid=1, uri="file:///a.py", version=2, line=0, character=1, trigger=2),
        event("answer", 20, rid=1, text=" = 2", ms=6.5),
        event("accept", 400, rid=1, text=" = 2", how="full"),
    ])


def test_round_trip(tmp_path):
    path = tmp_path / "s.msgpack"
    write_session(path, _session())
    back = read_session(path)
    assert back.kind == "recorded" and back.encoding == "utf-16" and back.meta == {"note": "é"}
    assert back.events == _session().events
    assert back.created  # stamped at write time


def test_writer_flushes_each_event_so_a_crash_keeps_them(tmp_path):
    path = tmp_path / "live.msgpack"
    writer = SessionWriter(path, "recorded", private=True)
    writer.write(event("open", 0, uri="u", language_id="python", version=1, text=""))
    assert len(read_session(path).events) == 1  # readable while still open
    assert path.stat().st_mode & 0o777 == 0o600
    writer.close()


def test_newer_version_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "new.msgpack"
    path.write_bytes(msgpack.packb({"format": "completer-session", "version": VERSION + 1, "kind": "recorded"}))
    with pytest.raises(SessionError, match="newer"):
        read_session(path)


@pytest.mark.parametrize("data, message", [
    (b"", "not a completer session"),
    (b"\x00\x01garbage", "not a completer session"),
    (msgpack.packb({"hello": 1}), "not a completer session"),
    (msgpack.packb({"format": "completer-session", "version": 1, "kind": "nope"}), "unknown kind"),
    (msgpack.packb({"format": "completer-session", "version": 1, "kind": "recorded"}) + msgpack.packb({"e": "open", "t": 0}),
     "open without"),
    (msgpack.packb({"format": "completer-session", "version": 1, "kind": "recorded"}) + msgpack.packb({"e": "what", "t": 0}),
     "unknown event"),
    (msgpack.packb({"format": "completer-session", "version": 1, "kind": "recorded"})
     + msgpack.packb({"e": "change", "t": 0, "uri": "u", "version": 2, "changes": [[0, -1, 0, 0, "x"]]}), "bad change"),
    (msgpack.packb({"format": "completer-session", "version": 1, "kind": "synthetic"})
     + msgpack.packb({"e": "plan", "t": 0, "uri": "u", "line": 0, "character": 0, "text": "ab",
                      "steps": [["type", 5, "a", 1]]}), "bad plan step"),
])
def test_corrupt_files_are_refused(data, message):
    with pytest.raises(SessionError, match=message):
        parse_session(data, "x.msgpack")


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "s.msgpack"
    write_session(path, _session())
    data = path.read_bytes()
    with pytest.raises(SessionError, match="corrupt|cut off"):
        parse_session(data[:-3], "cut.msgpack")


def test_missing_file_is_a_session_error(tmp_path):
    with pytest.raises(SessionError, match="cannot read"):
        read_session(tmp_path / "none.msgpack")
