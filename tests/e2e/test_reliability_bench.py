"""The fault bench (bench/reliability.py faults), a ~25-second version on the fixture model: real
server processes, a real daemon killed mid-request, recording onto a full disk (a 64 KB tmpfs when
root, else a read-only directory), an engine raising inside a generation. Asserts what the user sees
and that no document text is lost; no latency thresholds (RELIABILITY.md, "Bench")."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_faults_bench_loses_no_text_and_answers_through_each_fault(tmp_path):
    out = tmp_path / "faults.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "reliability.py"),
            "faults",
            "--only",
            "sigkill,disk-full,raise-inproc",
            "--model",
            "fixture",
            "--cps",
            "4",
            "--warm-s",
            "2",
            "--raise-s",
            "6",
            "--disk-free-kb",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(out.read_text())
    faults = {f["fault"]: f for f in result["faults"]}
    assert set(faults) == {"sigkill", "disk-full", "raise-inproc"}
    for f in faults.values():
        assert f["documents"]["ok"], f["documents"]  # the server's text is the client's, by sha256
        assert f["server_alive"]
    # The daemon killed: the request answers empty (never an error), the status says why, and a new
    # daemon answers later.
    kill = faults["sigkill"]
    assert kill["in_flight"] or kill["probe"]["kind"] == "engine"  # else the kill came after its answer
    if kill["in_flight"]:
        assert kill["probe"]["outcome"] == "empty"
    assert any(s["state"] == "error" and "unavailable" in s["message"] for s in kill["statuses"])
    assert kill["recovered_s"] is not None and kill["daemon_pid_after"] != kill["daemon_pid"]
    # Recording fails; serving goes on, and the recording keeps its whole events and reads back (with 2 KB
    # free the first event, the document's 4 KB, may already not fit).
    disk = faults["disk-full"]
    assert disk["after"]["requests"] > 0 and disk["after"]["server_kinds"].get("engine", 0) > 0
    assert disk["recordings"] and all(r["readable"] for r in disk["recordings"]), disk["recordings"]
    # The engine raises: an empty answer, an error status, and the model answers again afterwards.
    boom = faults["raise-inproc"]
    assert boom["probe"]["outcome"] == "empty" and boom["probe"]["kind"] == "error"
    assert any(s["message"] == "completion failed; see the server log" for s in boom["statuses"])
    assert boom["model_answers_after_first_error"] > 0
    assert r.stdout.splitlines()[-5].startswith("fault ")  # the table comes last: header, rule, 3 rows


def run_bench(tmp_path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "reliability.py"), *args, "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def test_a_short_soak_samples_the_server_and_reports_windows(tmp_path):
    result, stdout = run_bench(tmp_path, "soak", "--minutes", "0.25", "--sample-s", "1", "--window-minutes", "0.1",
                               "--warmup-minutes", "0.05", "--max-pause-ms", "200",
                               "--sessions", str(ROOT / "bench" / "sessions" / "utils-body-52.msgpack"),
                               "--server-flags", "--model fixture --compile off")
    assert result["texts_ok"] and result["iterations"] >= 1 and result["requests"] > 0
    memory = result["memory"]
    assert memory["samples"] >= 10 and memory["rss_mb_at_ready"] > 50 and memory["rss_slope_mb_per_h"] is not None
    assert len(result["windows"]) >= 2 and all(w["requests"] for w in result["windows"])
    assert "per window" in stdout and stdout.rstrip().splitlines()[-1].split()[0][0].isdigit()


def test_a_short_load_run_reports_every_client_and_no_starvation(tmp_path):
    result, _ = run_bench(tmp_path, "load", "--windows", "2", "--seconds", "5", "--http-clients", "2",
                          "--slow-readers", "1", "--http-seconds", "3", "--stall-s", "6",
                          "--engine-flags", "--model fixture --compile off")
    (run,) = result["window_runs"]
    assert run["windows"] == 2 and len(run["clients"]) == 2
    assert all(c["requests"] > 0 and c["errors"] == 0 and c["texts_ok"] for c in run["clients"])
    assert run["starvation"]["every_client_got_answers"]
    http = result["openai"]
    assert len(http["alone"]["clients"]) == 2 and all(c["requests"] > 0 for c in http["alone"]["clients"])
    assert http["health_after"] == 200
