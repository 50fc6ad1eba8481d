"""bench/big_documents.py: its shapes are what their names say, and a short run on the fixture model
types into real servers and reports every field (no latency thresholds: RELIABILITY.md, "Bench")."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import bench_module

ROOT = Path(__file__).resolve().parents[2]


def test_each_shape_has_one_cursor_and_the_size_its_name_says():
    m = bench_module("big_documents")
    sizes = {"parsed-900kb": 0.9e6, "big-1.5mb": 1.5e6, "huge-5mb": 5e6, "lines-500k": 5.4e6,
             "min-140kb": 140e3, "min-1.4mb": 1.4e6, "min-1.4mb-utf": 1.4e6}
    for shape in m.SHAPES:
        language, marked, suffix = m.shape_text(shape)
        assert marked.count(m.CURSOR) == 1 and marked.endswith("\n")
        left, right = marked.split(m.CURSOR)
        assert left.endswith("(") and right.startswith(")")  # the closer the editor put there
        if shape in sizes:
            assert abs(len(marked.encode()) - sizes[shape]) < 0.05 * sizes[shape]
        if shape == "lines-500k":
            assert marked.count("\n") > 500_000
        if shape.startswith("min-"):
            assert language == "javascript" and marked.count("\n") == 1
        else:
            assert language == "python" and suffix == ".py" and max(map(len, marked.splitlines())) < 100
    assert "😀" in m.shape_text("min-1.4mb-utf")[1].split(m.CURSOR)[0]


def test_a_short_run_types_into_each_shape_and_reports_it(tmp_path):
    out = tmp_path / "big.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "big_documents.py"), "--model", "fixture", "--keys", "3",
                        "--pause-ms", "20", "--shapes", "ordinary", "min-140kb", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for field in ("machine", "date", "server", "keys", "shape", "p50_ms", "p95_ms", "rss_mb", "alive"):
        assert field in r.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["shape"] for row in rows] == ["ordinary", "min-140kb"]
    assert all(row["alive"] and row["keys"] == 3 and row["p50_ms"] is not None for row in rows)
    assert all(row["rss_mb"] > 50 for row in rows)  # a server with torch and a model loaded
    assert rows[1]["longest_line"] > 100_000
