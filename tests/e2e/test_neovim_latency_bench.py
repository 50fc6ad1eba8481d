"""bench/neovim_latency.py: its scoring of keys and ghost texts, on stamps made up here, and a short
run in real Neovim that reports every field (no latency thresholds: BENCHMARKS.md)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import bench_module
from tests.e2e.test_neovim import neovim_binary

ROOT = Path(__file__).resolve().parents[2]
MS = 1_000_000  # stamps are nanoseconds, as vim.uv.hrtime gives them


def test_keys_are_scored_as_typed_through_new_blank_or_stale():
    score = bench_module("neovim_latency").score_line
    ghosts = [[-5 * MS, "abc"],                       # shown before the first key
              [MS // 2, None], [MS, "bc"],            # 'a' typed through it: the rest placed at once
              [101 * MS, None], [140 * MS, "c"]]      # 'b': taken away, back 39 ms later (a flicker)
    first, second = score("ab", [0, 100 * MS], ghosts, 0.1)
    assert first == {"through": True, "ms": 1.0, "blank": False, "stale": False}
    assert second == {"through": True, "ms": 40.0, "blank": True, "stale": False}
    # a key that differs, after which the old text shows on from the cursor: stale, not an answer
    [stale] = score("x", [0], [[-5 * MS, "abc"], [MS, "bc"]], 0.1)
    assert stale == {"through": False, "ms": None, "blank": False, "stale": True}
    # a new suggestion after a key that differs, and a key with nothing after it
    new, nothing = score("xq", [0, 100 * MS], [[-5 * MS, "abc"], [MS, None], [12 * MS, "yz"]], 0.1)
    assert new == {"through": False, "ms": 12.0, "blank": False, "stale": False}
    assert nothing["ms"] is None and not nothing["through"]


def test_a_short_run_reports_every_field(tmp_path):
    neovim_binary("0.12")
    out = tmp_path / "nvim.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "neovim_latency.py"), "--lines", "2", "--pace-ms", "60",
                        "--configs", "0.12 plugin", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fields = ("keys", "ghost_after_pct", "new_p50_ms", "new_p95_ms", "through_keys", "through_p50_ms",
              "through_p95_ms", "through_blank_pct", "stale_pct")
    for field in fields:
        assert field in r.stdout
    [row] = json.loads(out.read_text())["rows"]
    assert row["config"] == "0.12 plugin" and set(fields) <= set(row)
    assert row["keys"] > 10  # every key of two lines of code was stamped inside Neovim
