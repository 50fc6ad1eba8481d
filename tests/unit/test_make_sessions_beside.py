"""bench/make_sessions.py --neighbors: the files put open beside a session come from its own project,
from its directory first, never the session's own file, and the session itself is unchanged."""

from completer.replay.session import Session, event
from tests.conftest import bench_module


def make_sessions_module():
    return bench_module("make_sessions")


def test_open_beside_takes_the_projects_files_nearest_first():
    m = make_sessions_module()
    projects = {
        "cjson": [("e4/cjson/src/cJSON.c", "int a;"), ("e4/cjson/src/cJSON_Utils.c", "int b;"),
                  ("e4/cjson/src/cJSON.h", "int c;"), ("e4/cjson/tests/parse_test.c", "int d;"),
                  ("e4/cjson/README.md", "not code")],
        "jansson": [("e4/jansson/src/dump.c", "int e;")],
    }
    plan = event("plan", 0, uri="file:///workspace/cJSON.c", line=0, character=0, text="x", steps=[])
    own = event("open", 0, uri="file:///workspace/cJSON.c", language_id="c", version=1, text="int a;")
    session = Session("synthetic", "utf-16", {"name": "cJSON-body-1"}, [own, plan])
    m.open_beside(session, "e4/cjson/src/cJSON.c", projects, 2, seed=3)
    opened = [e["uri"] for e in session.of_kind("open")]
    assert sorted(opened[:2]) == ["file:///workspace/cjson/src/cJSON.h", "file:///workspace/cjson/src/cJSON_Utils.c"]
    assert session.events[2:] == [own, plan] and session.meta["open_beside"] == opened[:2]
    again = Session("synthetic", "utf-16", {}, [own, plan])
    m.open_beside(again, "e4/cjson/src/cJSON.c", projects, 9, seed=3)
    beside = [e["uri"] for e in again.of_kind("open")][:-1]
    assert beside[:2] == opened[:2]  # seeded: the same draw
    assert beside[2:] == ["file:///workspace/cjson/tests/parse_test.c"]  # then the rest of the project; no README
