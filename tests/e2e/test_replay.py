"""`completer replay` against the real server over stdio (fixture model): the report, the JSON and the
plot, acceptance of a suggestion that matches what the typist intends, recording with
`serve --record`, and replaying that recording (its twin) into the same kind of report."""

import json
import shlex
import subprocess
import sys

from completer.replay.session import Session, event, read_session, write_session
from tests.conftest import FIXTURE_MODEL, ROOT, server_command

ABOVE = "import os\n\n\ndef list_files(root):\n    names = []\n    for name in os.listdir(root):\n        "
BELOW = "\n    return names\n"


def completer(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "completer", *args], capture_output=True, text=True, timeout=timeout)


def _suggestion_after(tmp_path, first: str) -> str:
    """What the fixture model suggests once `first` is typed at the hole (greedy: deterministic)."""
    probe = tmp_path / "probe.py"
    probe.write_text(ABOVE + first + BELOW)
    line = ABOVE.count("\n")
    r = completer("complete", str(probe), "--line", str(line), "--character", str(8 + len(first)), "--json",
                  "--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-tokens", "8")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["text"]


def _session(target: str, steps: list) -> Session:
    line = ABOVE.count("\n")
    return Session("synthetic", "utf-16", {"name": "list-files"}, [
        event("open", 0, uri="file:///work/list_files.py", language_id="python", version=1, text=ABOVE + BELOW),
        event("plan", 0, uri="file:///work/list_files.py", line=line, character=8, text=target, steps=steps),
    ])


def test_replay_accepts_a_matching_suggestion_records_it_and_replays_the_recording(tmp_path):
    first = "n"
    suggestion = _suggestion_after(tmp_path, first)
    assert len(suggestion.split("\n")[0]) >= 2, f"fixture suggests too little to test acceptance: {suggestion!r}"
    suggestion = suggestion.split("\n")[0]
    target = first + suggestion + " = 1"
    # Type the first key, pause long enough to read the suggestion, then type the rest quickly.
    steps = [["type", 0, first, 50.0], ["type", 1, target[1], 2500.0]]
    steps += [["type", i, target[i], 60.0] for i in range(2, len(target))]
    session_path = tmp_path / "typed.msgpack"
    write_session(session_path, _session(target, steps))

    record_dir = tmp_path / "recorded"
    server = shlex.join(server_command("--record", str(record_dir), "--max-tokens", "8"))  # short: fast answers
    out_json, out_png = tmp_path / "report.json", tmp_path / "report.png"
    r = completer("replay", str(session_path), "--server-cmd", server, "--json", str(out_json), "--plot", str(out_png))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "latency p50 ms" in r.stdout and "share of text from suggestions" in r.stdout
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out_json.read_text())
    summary = report["configs"][0]["summary"]
    assert summary["texts_ok"] is True
    assert summary["accepts"] >= 1 and summary["chars_accepted"] >= len(suggestion)
    assert summary["chars_typed"] + summary["chars_accepted"] == len(target)
    assert summary["server_kinds"].get("unmatched", 0) == 0  # every request paired with the server's record
    assert summary["server_kinds"].get("engine", 0) >= 1
    spent = summary["engine_spent_mean_ms"]  # where the model answers' server-side time went
    assert spent["prompt"] > 0 and spent["decode"] > 0 and "server-side mean ms: reuse" in r.stdout
    requests = report["configs"][0]["sessions"][0]["requests"]
    assert requests[0]["text"] == suggestion or requests[0]["text"].startswith(suggestion)
    assert requests[0]["accepted"] == "full" and requests[0]["server"]["kind"] == "engine"
    assert "cpu" in report["machine"] or "platform" in report["machine"]

    # The server recorded what the editor did: the edits, the requests, the answer and the accept.
    recorded = list(record_dir.glob("session-*.msgpack"))
    assert len(recorded) == 1
    assert recorded[0].stat().st_mode & 0o777 == 0o600
    rec = read_session(recorded[0])
    assert rec.kind == "recorded" and rec.encoding == "utf-16"
    kinds = [e["e"] for e in rec.events]
    assert kinds[0] == "open" and {"change", "request", "answer", "accept"} <= set(kinds)
    accept = rec.of_kind("accept")[0]
    assert accept["text"] == requests[0]["text"] and accept["how"] == "full"

    # Replaying the recording gives the same kind of report, and the same server agrees with the user.
    r = completer("replay", str(recorded[0]), "--json", str(out_json), "--model", str(FIXTURE_MODEL), "--device", "cpu",
                  "--max-tokens", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads(out_json.read_text())["configs"][0]["summary"]
    assert set(again) >= set(summary) - {"recorded_agreement"}
    assert again["accepts"] == 1 and again["chars_accepted"] == len(accept["text"])
    assert again["recorded_agreement"] == 1.0
    assert again["requests"] == len(rec.of_kind("request"))


def test_ab_mode_runs_each_configuration_and_prints_ratios(tmp_path):
    target = "names.append(name)"
    steps = [["type", i, ch, 150.0] for i, ch in enumerate(target)]
    path = tmp_path / "s.msgpack"
    write_session(path, _session(target, steps))
    r = completer("replay", str(path), "--model", str(FIXTURE_MODEL), "--device", "cpu", "--no-accept", "--max-tokens", "8",
                  "--ab", "no-cache=--no-cache --no-reuse", "--json", str(tmp_path / "ab.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no-cache/default" in r.stdout
    report = json.loads((tmp_path / "ab.json").read_text())
    base, variant = (c["summary"] for c in report["configs"])
    assert variant["engine_per_request"]["cached_tokens"] == 0 < base["engine_per_request"]["cached_tokens"]
    assert "no-cache" in report["ratios"] and report["ratios"]["no-cache"]["latency_p50_ms"] is not None


def test_a_cold_start_replay_types_before_the_model_is_loaded_and_reports_the_first_minute(tmp_path):
    target = "names.append(name)"
    path = tmp_path / "s.msgpack"
    write_session(path, _session(target, [["type", i, ch, 300.0] for i, ch in enumerate(target)]))
    r = completer("replay", str(path), "--model", str(FIXTURE_MODEL), "--device", "cpu", "--no-accept",
                  "--max-tokens", "8", "--cold-start-s", "0.2", "--json", str(tmp_path / "cold.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "first suggestion, ms after first key" in r.stdout
    report = json.loads((tmp_path / "cold.json").read_text())
    (config,) = report["configs"]
    assert "--compile" not in config["server_cmd"]  # the server's own default, as an editor starts it
    cold = config["summary"]["cold_start"]
    assert 0.2 <= cold["first_key_s"] < 5
    # The first key came before the model had loaded (~1 s here): that request waited for the load.
    assert cold["first_answer_ms"] is None or cold["first_answer_ms"] > 100
    assert cold["first_suggestion_after_first_key_ms"] is not None
    assert cold["first_60s"]["requests"] == config["summary"]["requests"] and cold["after_60s"]["requests"] == 0


def test_replay_drives_another_lsp_server(tmp_path):
    """--server-cmd with a server that is not completer (no completer/status, no completer/stats):
    bench/lsp_floor_server.py, which answers "x" at once, over pygls and over plain framing."""
    target = "names.append(name)"
    path = tmp_path / "s.msgpack"
    write_session(path, _session(target, [["type", i, ch, 20.0] for i, ch in enumerate(target)]))
    floor = str(ROOT / "bench" / "lsp_floor_server.py")
    for flags in ("", " --raw"):
        r = completer("replay", str(path), "--no-accept", "--json", str(tmp_path / "floor.json"),
                      "--server-cmd", f"{shlex.quote(sys.executable)} {shlex.quote(floor)}{flags}")
        assert r.returncode == 0, r.stdout + r.stderr
        summary = json.loads((tmp_path / "floor.json").read_text())["configs"][0]["summary"]
        assert summary["requests"] >= len(target) - 1 and summary["with_text"] > summary["requests"] // 2
        assert summary["engine_requests"] == 0 and summary["errors"] == 0


def test_corrupt_and_newer_sessions_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x93garbage")
    r = completer("replay", str(bad), "--model", str(FIXTURE_MODEL))
    assert r.returncode == 2 and "not a completer session" in r.stderr and "Traceback" not in r.stderr
    import msgpack

    newer = tmp_path / "newer.msgpack"
    newer.write_bytes(msgpack.packb({"format": "completer-session", "version": 99, "kind": "recorded"}))
    r = completer("replay", str(newer), "--model", str(FIXTURE_MODEL))
    assert r.returncode == 2 and "newer" in r.stderr


def test_synthesize_then_replay_a_javascript_and_a_python_file_reported_per_language(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "total.js").write_text("function total(items) {\n  let sum = 0;\n  for (const item of items) {\n"
                                  "    sum += item.price * item.count;\n  }\n  return sum;\n}\n")
    (src / "area.py").write_text("def area(width, height):\n    product = width * height\n    return product\n")
    r = completer("synthesize", str(src), "--out", str(tmp_path / "sessions"), "--per-file", "1", "--seed", "4")
    assert r.returncode == 0, r.stderr
    sessions = sorted((tmp_path / "sessions").glob("*.msgpack"))
    assert sorted(read_session(s).meta["language"] for s in sessions) == ["javascript", "python"]
    r = completer("replay", str(tmp_path / "sessions"), "--model", str(FIXTURE_MODEL), "--device", "cpu",
                  "--speed", "4", "--max-pause-ms", "150", "--max-tokens", "8", "--json", str(tmp_path / "js.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((tmp_path / "js.json").read_text())["configs"][0]["summary"]
    assert summary["texts_ok"] and summary["requests"] > 0 and summary["latency_p50_ms"] is not None
    languages = summary["by_language"]
    assert sorted(languages) == ["javascript", "python"] and all(v["sessions"] == 1 for v in languages.values())
    assert sum(v["shown"] for v in languages.values()) == summary["shown"]
    assert "% of shown accepted: javascript " in r.stdout


def test_files_open_beside_a_session_feed_the_context_only_in_a_workspace(tmp_path):
    """A session made with other files of its project open (make_sessions.py --neighbors): under
    --workspace the server takes context from them (after the typist's first pause), without it none;
    either way the typed file ends as intended and the other files are left as they were."""
    target = "names.append(name)"
    steps = [["type", i, ch, 1200.0 if i == 0 else 60.0] for i, ch in enumerate(target)]  # a pause first
    session = _session(target, steps)
    beside = "def list_dirs(root):\n    names = []\n    for name in os.listdir(root):\n        names.append(name)\n"
    for ev in session.events:
        ev["uri"] = ev["uri"].replace("file:///work/", "file:///workspace/")
    session.events.insert(0, event("open", 0, uri="file:///workspace/pkg/dirs.py", language_id="python", version=1,
                                   text=beside))
    path = tmp_path / "s.msgpack"
    write_session(path, session)
    updates = {}
    for flags in ([], ["--workspace"]):
        out = tmp_path / f"r{len(flags)}.json"
        r = completer("replay", str(path), "--model", str(FIXTURE_MODEL), "--device", "cpu", "--no-accept",
                      "--max-tokens", "8", *flags, "--json", str(out))
        assert r.returncode == 0, r.stdout + r.stderr
        (config,) = json.loads(out.read_text())["configs"]
        assert config["summary"]["texts_ok"]
        updates[bool(flags)] = config["server_stats"]["counters"]["context_updates"]
    assert updates == {False: 0, True: updates[True]} and updates[True] >= 1


def test_demo_replays_a_session_with_a_live_display(tmp_path):
    target = "names.append(name)"
    path = tmp_path / "s.msgpack"
    write_session(path, _session(target, [["type", i, ch, 60.0] for i, ch in enumerate(target)]))
    r = completer("demo", "--session", str(path), "--model", str(FIXTURE_MODEL), "--device", "cpu",
                  "--max-tokens", "6")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "session s:" in r.stdout and "server ready" in r.stdout and "7 |" in r.stdout  # a suggestion shown
    verdict = [line for line in r.stdout.splitlines() if line.startswith("documents end as intended")]
    assert len(verdict) == 1 and verdict[0].split()[-1] == "True"


def test_an_editor_that_closes_brackets_takes_a_suggestion_only_where_it_replaces_them(tmp_path):
    """`--auto-close` with the embedded model: typing `log_event("handler_30` leaves `")` right of the
    cursor; the suggestion `", event.kind)` runs through them. The server's item replaces them, so the
    typist takes it and the document ends as planned; with --no-closers the item would double them,
    and the typist does not take it."""
    handlers = "".join(f'def on_{i}(event):\n    log_event("handler_{i}", event.kind)\n    return event\n\n\n'
                       for i in range(30)) + "def on_30(event):\n"
    target = '    log_event("handler_30", event.kind)'
    pause_at = len('    log_event("handler_30')  # reads the suggestion before typing the `"`
    # `    log_event` pasted: typed, its suggestion `("handler_28"...` would be taken a word at a time
    pasted = len("    log_event")
    steps = [["paste", 0, target[:pasted], 40.0]]
    steps += [["type", i, target[i], 2500.0 if i == pause_at else 40.0] for i in range(pasted, len(target))]
    uri = "file:///work/handlers.py"
    path = tmp_path / "s.msgpack"
    write_session(path, Session("synthetic", "utf-16", {"name": "handlers"}, [
        event("open", 0, uri=uri, language_id="python", version=1, text=handlers),
        event("plan", 0, uri=uri, line=handlers.count("\n"), character=0, text=target, steps=steps)]))
    r = completer("replay", str(path), "--auto-close", "--model", str(ROOT / "completer" / "models" / "embedded"),
                  "--device", "cpu", "--min-confidence", "0", "--ab", "no-closers=--no-closers",
                  "--json", str(tmp_path / "ab.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "ab.json").read_text())
    woven, inserted = (c["summary"] for c in report["configs"])
    assert woven["texts_ok"] and inserted["texts_ok"]  # the editor's closers typed over or replaced, never doubled
    requests = report["configs"][0]["sessions"][0]["requests"]
    taken = [q for q in requests if q["accepted"]]
    assert [(q["text"], q["replaces"], q["accepted"]) for q in taken] == [('", event.kind)', 2, "full")]
    assert woven["chars_accepted"] == len('", event.kind)')
    # shown too, but taking it would have left `, event.kind)")`: at most a later, shorter one is taken
    assert inserted["chars_accepted"] < woven["chars_accepted"]
