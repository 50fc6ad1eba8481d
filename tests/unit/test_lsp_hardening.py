"""Issue 24 findings in the language server's own state, in process (RELIABILITY.md lists which test
pins which finding): what a closed document leaves behind, the request log's bound, the idle context
refresh's bounded work, and what recording writes (secret files, file and directory modes)."""

import asyncio
import os
import threading

import pytest
from lsprotocol import types

from completer.completion.context import ContextRing, Workspace
from completer.records import AnswerRecord
from completer.replay.session import read_session
from completer.syntax import MAX_PARSE_BYTES
from lsp import context_updates
from lsp.recording import Recorder
from lsp.server import RequestLog, create_server


def _open(server, uri, text, language_id="python"):
    list(server.protocol.lsp_text_document__did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text))))


def _close(server, uri):
    list(server.protocol.lsp_text_document__did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri))))


# -- finding 13: bounded per-document state ---------------------------------------------------------

async def test_did_close_forgets_the_cursor_and_the_context_task():
    server = create_server()
    uri = "file:///w/a.py"
    _open(server, uri, "x = 1\n")
    server.last_cursor[uri] = (0, 3)
    task = server.context_tasks[uri] = asyncio.get_running_loop().create_task(asyncio.sleep(60))
    _close(server, uri)
    await asyncio.sleep(0)
    assert uri not in server.last_cursor and uri not in server.context_tasks and task.cancelled()
    assert server.store.get(uri) is None


def test_did_close_lets_go_of_the_kept_long_lines():
    # lines._heads and reuse._splits keep the last long lines whole; a closed minified file's line
    # must not stay alive in them (5.6 MB a version for 1.4 MB with an emoji).
    from completer import lines
    from completer.completion import reuse

    server = create_server()
    uri = "file:///w/min.js"
    line = "var a=1;" * 4_000 + "/* 😀 */ f("
    _open(server, uri, line + ");\n", "javascript")
    doc = server.store.get(uri)
    assert doc.clamp(0, len(line) + 1, "utf-16") == (0, len(line))  # converts through a kept head
    reuse._split(doc.lines, 0, len(line))
    assert any(kept is doc.lines[0] for kept, *_ in reuse._splits) and lines._heads
    _close(server, uri)
    assert reuse._splits == [] and lines._heads == []


def test_a_failing_notification_handler_is_logged_with_its_traceback(monkeypatch, caplog):
    # pygls only shows such a failure to the user ("Error in server: ..."); the server's log must say
    # where a didChange went wrong, since the user's text may be out of step from then on.
    from lsp.documents import Document

    server = create_server()
    uri = "file:///w/a.py"
    _open(server, uri, "x = 1\n")

    def planted(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(Document, "apply_change", planted)
    change = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)),
            text="y")])
    with caplog.at_level("ERROR", logger="lsp.server"):
        server.protocol._handle_notification(types.TEXT_DOCUMENT_DID_CHANGE, change)
    logged = [r for r in caplog.records if r.name == "lsp.server"]
    assert logged and "planted failure" in logged[0].getMessage()
    assert "in planted" in logged[0].getMessage()  # the traceback, down to the failing function


async def test_a_finished_context_task_leaves_the_table(monkeypatch, tmp_path):
    monkeypatch.setattr(context_updates, "IDLE_S", 0.0)
    server = create_server()
    server.ring = ContextRing(Workspace(tmp_path))
    uri = (tmp_path / "a.txt").as_uri()
    _open(server, uri, "hello\n", "plaintext")  # schedules a refresh
    task = server.context_tasks[uri]
    await task
    await asyncio.sleep(0)
    assert uri not in server.context_tasks


def test_the_request_log_is_bounded_to_a_few_megabytes():
    log = RequestLog()
    size = log.records.maxlen
    assert size <= 5_000  # ~1 KB a record
    for i in range(size + 10):
        log.add(AnswerRecord(i, 0, 0, "engine"))
    assert len(log.records) == size and log.records[0].version == 10


# -- finding 10: the idle refresh's work is bounded and off the event loop ----------------------------

async def _refresh(monkeypatch, tmp_path, text):
    calls = []

    def scan(workspace, path, source, language, max_chars, tree):
        calls.append((threading.current_thread() is threading.main_thread(), len(source)))
        return []

    async def no_warm_up(*args):
        return None

    monkeypatch.setattr(context_updates, "import_definitions", scan)
    monkeypatch.setattr(context_updates, "warm_up", no_warm_up)
    server = create_server()
    server.ring = ContextRing(Workspace(tmp_path))
    uri = (tmp_path / "big.py").as_uri()
    server.store.open(uri, "python", 1, text)  # no change hooks: the refresh below is the only one
    await context_updates.refresh_after_idle(server, uri)
    return calls


async def test_the_import_scan_runs_off_the_event_loop(monkeypatch, tmp_path):
    monkeypatch.setattr(context_updates, "IDLE_S", 0.0)
    calls = await _refresh(monkeypatch, tmp_path, "import os\n")
    assert calls == [(False, 10)]  # on a worker thread


async def test_no_import_scan_past_the_parse_limit(monkeypatch, tmp_path):
    monkeypatch.setattr(context_updates, "IDLE_S", 0.0)
    calls = await _refresh(monkeypatch, tmp_path, "import os\n" + "x = 1\n" * (MAX_PARSE_BYTES // 6 + 1))
    assert calls == []


# -- findings 15 and 17: what recording writes ---------------------------------------------------------

def test_secret_files_are_not_recorded_and_the_skip_is(tmp_path):
    rec = Recorder(tmp_path / "rec")
    secret = (tmp_path / "proj" / ".envrc").as_uri()
    code = (tmp_path / "proj" / "app.py").as_uri()
    rec.opened(secret, "shellscript", 1, "export TOKEN=hunter2\n")
    rec.changed(secret, 2, [[0, 0, 0, 0, "export KEY=swordfish\n"]])
    rid = rec.request(secret, 2, 0, 5, 2)
    rec.answer(rid, "hunter3", 5.0, "c1")
    rec.cancelled(rid)
    rec.closed(secret)
    rec.opened(code, "python", 1, "x = 1\n")
    rec.close()
    data = rec.path.read_bytes()
    assert b"hunter" not in data and b"swordfish" not in data
    session = read_session(rec.path)
    opened = session.of_kind("open")
    assert opened[0]["uri"] == secret and opened[0]["text"] == "" and opened[0]["skipped"] == "secret"
    assert opened[1]["text"] == "x = 1\n"
    assert [e["e"] for e in session.events] == ["open", "close", "open"]


def test_recording_tightens_a_shared_directory_and_refuses_a_symlink(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o777)
    rec = Recorder(shared)
    rec.opened("file:///w/a.py", "python", 1, "x\n")
    rec.close()
    assert shared.stat().st_mode & 0o777 == 0o700 and rec.path.stat().st_mode & 0o777 == 0o600
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    rec = Recorder(link)
    rec.opened("file:///w/a.py", "python", 1, "x\n")
    assert rec._failed and list(elsewhere.iterdir()) == []


def test_recording_never_overwrites_an_existing_file(tmp_path, monkeypatch):
    import datetime

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr("lsp.recording.datetime.datetime", Frozen)
    directory = tmp_path / "rec"
    directory.mkdir(mode=0o700)
    taken = directory / f"session-20300102T030405-{os.getpid()}.msgpack"
    taken.write_bytes(b"an earlier recording")
    rec = Recorder(directory)
    rec.opened("file:///w/a.py", "python", 1, "x\n")
    rec.close()
    assert taken.read_bytes() == b"an earlier recording" and rec.path != taken
    assert read_session(rec.path).events[0]["text"] == "x\n"


@pytest.mark.parametrize("uri", ["untitled:Untitled-1", "file:///w/notes.md"])
def test_ordinary_documents_are_recorded_in_full(tmp_path, uri):
    rec = Recorder(tmp_path / "rec")
    rec.opened(uri, "markdown", 1, "some text\n")
    rec.close()
    assert read_session(rec.path).events[0]["text"] == "some text\n"


# -- finding 1: a client setting cannot allocate gigabytes ---------------------------------------------

def test_cache_mb_from_a_client_is_capped():
    from lsp.options import ServerOptions, apply_client_settings

    assert apply_client_settings(ServerOptions(), {"cacheMb": 4096}).engine.cache_mb == 4096
    for too_much in (4097, 65536, 1e9):
        assert apply_client_settings(ServerOptions(), {"cacheMb": too_much}).engine == ServerOptions().engine


def test_notifications_leave_nothing_behind_in_the_protocol():
    """pygls 2.1 keeps a future per notification in _request_futures for good; the server's protocol
    takes each out once handled (a keystroke's didChange otherwise kept ~0.6 KB for the process's life)."""
    from lsprotocol import types

    from lsp.options import ServerOptions
    from lsp.server import CompleterServer

    server = CompleterServer(ServerOptions())
    protocol = server.protocol
    uri = "file:///work/notes.txt"
    protocol._handle_notification(types.TEXT_DOCUMENT_DID_OPEN, types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text="a")))
    for version in range(2, 202):
        protocol._handle_notification(types.TEXT_DOCUMENT_DID_CHANGE, types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text="a" * version)]))
    assert server.store.get(uri).version == 201
    assert len(protocol._request_futures) == 0
