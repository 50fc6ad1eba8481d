"""bench/vscode_latency.py: a short run in real VS Code (code-server, headless Chromium) reports every
field of bench/neovim_latency.py (no latency thresholds: BENCHMARKS.md). Needs what `make e2e-vscode`
installs; skipped without it, a failure under COMPLETER_E2E_VSCODE=1."""

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_vscode import need_vscode

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_run_reports_every_field(tmp_path):
    need_vscode()
    out = tmp_path / "vscode.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "vscode_latency.py"), "--lines", "2", "--pace-ms", "60",
                        "--json", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [row] = json.loads(out.read_text())["rows"]
    for field in ("keys", "ghost_after_pct", "new_p50_ms", "new_p95_ms", "through_keys", "through_p50_ms",
                  "through_p95_ms", "through_blank_pct", "stale_pct"):
        assert field in row
    assert row["keys"] > 10  # every key of two lines of code was stamped in the page
