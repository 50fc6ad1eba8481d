"""bench/start_up.py: a short run starts real servers from two checkouts, alternating, and reports
every field (no time thresholds: timings belong in BENCHMARKS.md, not in tests)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_run_starts_both_checkouts_servers_and_reports_them(tmp_path):
    out = tmp_path / "start.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "start_up.py"), "--rounds", "2", "--against", str(ROOT),
                        "--server-arg=--model", "--server-arg=fixture", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for field in ("machine", "date", "ready_s", "first_answer_ms", "rss_mb", "median this", "median against", "ratio"):
        assert field in r.stdout, field
    data = json.loads(out.read_text())
    assert [(row["round"], row["variant"]) for row in data["rows"]] == \
        [(1, "this"), (1, "against"), (2, "against"), (2, "this")]  # alternating, so load hits both alike
    assert all(row["answered"] and row["ready_s"] > 0 for row in data["rows"])
