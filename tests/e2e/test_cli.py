"""The `completer` command line as a user runs it (subprocesses, fixture model)."""

import json
import re
import subprocess
import sys

from tests.conftest import FIXTURE_MODEL, ROOT

SAMPLE = ROOT / "completer" / "replay" / "demo_data" / "inventory.py"


def completer(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "completer", *args], capture_output=True, text=True, timeout=timeout)


def test_complete_json_has_text_timings_and_stats():
    r = completer("complete", str(SAMPLE), "--line", "10", "--character", "4", "--json", "--model", str(FIXTURE_MODEL),
                  "--max-tokens", "8")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert isinstance(out["text"], str)
    for key in ("prompt_ms", "engine_ms", "total_ms"):
        assert out["timings"][key] >= 0
    stats = out["stats"]
    for key in ("cached_tokens", "prefill_tokens", "decode_tokens", "drafted_tokens", "accepted_tokens"):
        assert isinstance(stats[key], int)
    assert stats["prefill_tokens"] > 0 and 0 < stats["decode_tokens"] <= 8


def test_complete_flags_switch_off_speculation_and_cache():
    r = completer("complete", str(SAMPLE), "--line", "20", "--character", "8", "--json", "--model", str(FIXTURE_MODEL),
                  "--no-speculative", "--no-cache")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)["stats"]
    assert stats["drafted_tokens"] == 0 and stats["cached_tokens"] == 0


def test_clear_errors_and_exit_codes(tmp_path):
    r = completer("complete", str(SAMPLE), "--line", "9999", "--character", "0", "--model", str(FIXTURE_MODEL))
    assert r.returncode == 2 and "outside" in r.stderr
    r = completer("complete", str(tmp_path / "missing.py"), "--line", "0", "--character", "0")
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "bin.py").write_bytes(b"\xff\xfe\x00garbage")
    r = completer("complete", str(tmp_path / "bin.py"), "--line", "0", "--character", "0")
    assert r.returncode == 2 and "not UTF-8" in r.stderr
    r = completer("complete", str(SAMPLE), "--line", "0", "--character", "0", "--model", str(tmp_path))
    assert r.returncode == 1 and "config.json" in r.stderr and "Traceback" not in r.stderr
    r = completer("complete", str(SAMPLE), "--line", "0", "--character", "0", "--backend", "trtllm")
    assert r.returncode == 1 and "tensorrt_llm is not installed" in r.stderr and "Traceback" not in r.stderr
    r = completer("serve", "--tcp", "localhost:notaport")
    assert r.returncode != 0 and "HOST:PORT" in r.stderr
    r = completer()
    assert r.returncode == 2
    for sub in ("serve", "complete", "demo", "doctor", "version"):
        assert completer(sub, "--help").returncode == 0


def test_version_and_doctor():
    r = completer("version")
    assert r.returncode == 0 and r.stdout.startswith("completer ")
    r = completer("doctor", "--json", "--model", str(FIXTURE_MODEL))
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["backends"]["torch"]["can_run"]
    assert report["model"]["fim_template"] == "qwen"
    r = completer("doctor", "--model", "/no/such/model")
    assert r.returncode == 1 and "cannot serve" in r.stdout


def test_doctor_says_whether_the_targets_draft_pays_here():
    r = completer("doctor", "--json", "--model", "embedded")
    assert r.returncode == 0, r.stdout + r.stderr
    draft = json.loads(r.stdout)["model"]["engine"]["draft"]
    assert draft["model"] == "embedded-draft" and not draft["given"] and 0 < draft["acceptance"] < 1
    assert draft["used"] == (draft["pays_from"] is not None and draft["acceptance"] >= draft["pays_from"])
    r = completer("doctor", "--model", "embedded", "--draft-model", "none")
    assert r.returncode == 0 and "drafts:" not in r.stdout
    r = completer("doctor", "--model", "embedded")
    assert re.search(r"^drafts: .* draft model embedded-draft (used|loaded, not used): .* measured acceptance 5\d%",
                     r.stdout, re.M)  # measured again: on a noisy machine the two runs may decide apart


def test_demo_types_through_the_real_server():
    r = completer("demo", "--model", str(FIXTURE_MODEL), "--cps", "0", "--lines", "3", "--max-tokens", "8",
                  timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "server ready" in r.stdout
    assert "latency keystroke -> suggestion" in r.stdout
    assert "final document equals the original file: yes" in r.stdout
