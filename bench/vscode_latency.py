"""Keystroke to ghost text in real VS Code (code-server in headless Chromium), as bench/neovim_latency.py
measures it in Neovim, with the same fields.

The same lines of the same file (`packaging`'s specifiers.py by default) are blanked to their
indentation, then retyped key by key at a fixed pace through Playwright, with the extension and the
real server as a user has them (the confidence gate on). In the page, a capturing `keydown` listener
stamps each key and a MutationObserver stamps every change of the ghost text Monaco renders
(`.ghost-text-decoration`, the first line of a suggestion), both on `performance.now()`.

    python bench/vscode_latency.py --lines 25 --pace-ms 100 --json out.json
    python bench/vscode_latency.py --rounds 2 --variant shipped= --variant no-reuse=--no-reuse
    python bench/vscode_latency.py --rounds 2 --also-waiting   # and with VS Code's 50 ms wait

The extension asks at every key (completer.askAtEveryKey, through VS Code's proposed API, which
code-server enables for every extension); `--also-waiting` also runs each variant with that setting
off, where VS Code waits its 50 ms before it asks, as it does for an extension without the proposal.

Needs what `make e2e-vscode` installs (code-server with Node 24 on PATH, Debian's Chromium,
Playwright, editors/vscode/completer.vsix); COMPLETER_CODE_SERVER points at code-server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from neovim_latency import default_file, pick_lines, score_line, summarize

sys.path.insert(0, str(BENCH.parent))
from tests.e2e.test_vscode import EDITOR, file_in_code_server, launch_code_server, missing

VSIX = BENCH.parent / "editors" / "vscode" / "completer.vsix"
PROBE = """() => {
    window.__bench = { keys: [], ghosts: [] };
    document.addEventListener('keydown', e => {
        if (e.key.length === 1) window.__bench.keys.push(performance.now());
    }, true);
    let last = null;
    const ghost = () => [...document.querySelectorAll('.part.editor .monaco-editor .ghost-text-decoration')]
        .map(e => e.textContent.replace(/\\u00a0/g, ' ')).join('');
    new MutationObserver(() => {
        const now = ghost();
        if (now !== last) { last = now; window.__bench.ghosts.push([performance.now(), now || null]); }
    }).observe(document.querySelector('.part.editor'), { subtree: true, childList: true, characterData: true });
}"""


def settings_for(log: Path, server_args: list[str], ask_at_every_key: bool = True) -> dict:
    return {
        "completer.askAtEveryKey": ask_at_every_key,
        "completer.serverCommand": sys.executable,
        "completer.serverArgs": ["-m", "completer", "serve", "--stdio", "--log-file", str(log), *server_args],
        "workbench.startupEditor": "none", "security.workspace.trust.enabled": False,
        "telemetry.telemetryLevel": "off", "editor.inlineSuggest.enabled": True,
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "editor.suggestOnTriggerCharacters": False, "extensions.autoCheckUpdates": False,
        "workbench.tips.enabled": False, "chat.disableAIFeatures": True,
        # the typist types every character of the line itself
        "editor.autoClosingBrackets": "never", "editor.autoClosingQuotes": "never", "editor.autoIndent": "none",
        "workbench.secondarySideBar.defaultVisibility": "hidden",
    }


def run(source: Path, rows: list[int], pace_s: float, code_server: str, chromium: str,
        server_args: list[str], ask_at_every_key: bool = True) -> dict:
    lines = source.read_text().split("\n")
    for row in rows:  # each line to retype keeps its indentation only
        lines[row] = lines[row][: len(lines[row]) - len(lines[row].lstrip())]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        folder = workdir / "ws"
        folder.mkdir()
        (folder / source.name).write_text("\n".join(lines))
        settings = settings_for(workdir / "server.log", server_args, ask_at_every_key)
        proc, port = launch_code_server(code_server, workdir / "data", folder, settings)
        url = f"http://127.0.0.1:{port}/?folder={folder}"
        try:
            with file_in_code_server(url, source.name, chromium) as page:
                page.wait_for_selector(".statusbar .codicon-sparkle", timeout=120_000)  # the server is ready
                page.evaluate(PROBE)
                page.click(EDITOR + " .view-lines")
                original = source.read_text().split("\n")
                samples = []
                for row in rows:
                    page.keyboard.press("Control+g")
                    page.keyboard.type(str(row + 1))
                    page.keyboard.press("Enter")
                    page.keyboard.press("End")
                    time.sleep(0.3)  # a pause before the line, as in the Neovim bench
                    page.evaluate("() => { window.__bench.keys = []; window.__bench.ghosts = []; }")
                    typed = original[row].lstrip()
                    for ch in typed:
                        page.keyboard.type(ch)
                        time.sleep(pace_s)
                    time.sleep(0.3)
                    keys, ghosts = page.evaluate("() => [window.__bench.keys, window.__bench.ghosts]")
                    page.keyboard.press("Escape")  # the ghost text of the line's end goes
                    to_ns = [int(k * 1e6) for k in keys]
                    samples.extend(score_line(typed, to_ns, [[int(t * 1e6), g] for t, g in ghosts], pace_s))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return summarize(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=None,
                    help="the file to retype lines of (default: packaging's specifiers.py)")
    ap.add_argument("--lines", type=int, default=25)
    ap.add_argument("--pace-ms", type=float, default=100.0)
    ap.add_argument("--rounds", type=int, default=1, help="the variants in turn, this many times")
    ap.add_argument("--variant", action="append", default=None, metavar="NAME=ARGS",
                    help="a server to compare: its name and `completer serve` flags (repeatable; default: "
                         "'default=', the server as shipped)")
    ap.add_argument("--also-waiting", action="store_true",
                    help="also run each variant with completer.askAtEveryKey off (VS Code's own 50 ms wait)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    code_server = os.environ.get("COMPLETER_CODE_SERVER") or shutil.which("code-server")
    chromium = os.environ.get("COMPLETER_CHROMIUM") or shutil.which("chromium")
    if not code_server or not chromium or not VSIX.exists() or "playwright" in missing:
        sys.exit("needs code-server, chromium, Playwright and editors/vscode/completer.vsix "
                 "(make e2e-vscode installs them)")
    source = args.file or default_file()
    rows = pick_lines(source.read_text(), args.lines)
    variants = [v.partition("=") for v in (args.variant or ["default="])]
    results = []
    askings = [True, False] if args.also_waiting else [True]
    for round_ in range(args.rounds):
        for name, _, flags in variants:
            for every_key in askings:
                config = f"VS Code, {name}" + ("" if every_key else ", after VS Code's 50 ms wait")
                row = {"config": config, "round": round_ + 1,
                       **run(source, rows, args.pace_ms / 1000, code_server, chromium, flags.split(), every_key)}
                results.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{source.name}: {len(rows)} lines, a key every {args.pace_ms:g} ms, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"file": str(source), "lines": len(rows), "pace_ms": args.pace_ms,
                                         "rows": results}, indent=1))


if __name__ == "__main__":
    main()
