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


def test_a_full_disk_leaves_a_readable_session_of_the_whole_events(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "full.msgpack"
    writer = SessionWriter(path, "recorded", private=True)
    events = _session().events
    writer.write(events[0])
    real_write = os.write

    def full_disk(fd, data):  # room for 5 more bytes, then ENOSPC (as a filling tmpfs does)
        if len(data) > 5:
            return real_write(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        writer.write(events[1])
    monkeypatch.setattr(os, "write", real_write)
    writer.close()
    assert read_session(path).events == events[:1]  # the cut event is gone, the file is whole


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


# -- hardening (issue 24: findings 9, 12, 17) -----------------------------------------------------

HEADER = msgpack.packb({"format": "completer-session", "version": 1, "kind": "recorded"})


def test_a_file_cut_inside_its_last_event_is_refused_at_every_cut(tmp_path):
    path = tmp_path / "s.msgpack"
    write_session(path, _session())
    data = path.read_bytes()
    last = len(msgpack.packb(_session().events[-1]))
    for cut in range(1, last):  # every byte of the last event, the last byte included
        with pytest.raises(SessionError, match="cut off"):
            parse_session(data[:-cut], "cut.msgpack")
    assert len(parse_session(data).events) == 5


def test_nested_array_headers_cannot_make_the_reader_allocate_gigabytes():
    import tracemalloc

    data = HEADER + b"\xdd\x00\x03\x0d\x40" * 40_000  # 200 KB: 40,000 nested arrays each claiming 200,000 items
    tracemalloc.start()
    try:
        with pytest.raises(SessionError, match="nested deeper|corrupt"):
            parse_session(data, "nested.msgpack")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak >> 20} MB to refuse a 200 KB file"


def test_long_arrays_of_a_real_session_are_read_after_the_nesting_check():
    steps = [["type", i, "a", 10.0] for i in range(3000)]  # past the first pass's 1024
    session = Session("synthetic", events=[event("plan", 0, uri="u", line=0, character=0, text="a" * 3000,
                                                  steps=steps)])
    data = msgpack.packb(session.header()) + b"".join(msgpack.packb(e) for e in session.events)
    assert parse_session(data).events[0]["steps"] == steps
    too_long = HEADER + msgpack.packb({"e": "change", "t": 0, "uri": "u", "version": 1,
                                       "changes": [[0, 0, 0, 0, ""]] * 100_001})
    with pytest.raises(SessionError, match="max_array_len"):
        parse_session(too_long)


@pytest.mark.parametrize("ev, field", [
    ({"e": "open", "t": 0, "uri": 5, "language_id": "python", "version": 1, "text": ""}, "uri"),
    ({"e": "open", "t": 0, "uri": "u", "language_id": "python", "version": "1", "text": ""}, "version"),
    ({"e": "open", "t": 0, "uri": "u", "language_id": "python", "version": 1, "text": ["x"]}, "text"),
    ({"e": "request", "t": 0, "rid": 1, "uri": "u", "version": 1, "line": -1, "character": 0, "trigger": 2}, "line"),
    ({"e": "request", "t": 0, "rid": True, "uri": "u", "version": 1, "line": 0, "character": 0, "trigger": 2}, "rid"),
    ({"e": "answer", "t": 0, "rid": 1, "text": "x", "ms": "fast"}, "ms"),
    ({"e": "accept", "t": 0, "rid": 1, "text": "x", "how": None}, "how"),
    ({"e": "change", "t": 0, "uri": "u", "version": 1, "changes": {"a": 1}}, "changes"),
    ({"e": "close", "t": True, "uri": "u"}, "time"),
])
def test_field_types_are_checked(ev, field):
    with pytest.raises(SessionError, match=field):
        parse_session(HEADER + msgpack.packb(ev), "typed.msgpack")


def test_a_lone_surrogate_is_written_and_read_back(tmp_path):
    path = tmp_path / "s.msgpack"
    session = Session("recorded", events=[event("open", 0, uri="u", language_id="python", version=1,
                                                 text="x = '\ud800'\n")])
    write_session(path, session)
    assert read_session(path).events[0]["text"] == "x = '\ud800'\n"


def test_a_recording_never_replaces_a_file_nor_follows_a_symlink(tmp_path):
    existing = tmp_path / "existing.msgpack"
    existing.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        SessionWriter(existing, "recorded", private=True)
    assert existing.read_bytes() == b"precious"
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    link = tmp_path / "link.msgpack"
    link.symlink_to(target)
    for private in (True, False):
        with pytest.raises(OSError):
            SessionWriter(link, "synthetic", private=private)
    assert target.read_bytes() == b"precious"
