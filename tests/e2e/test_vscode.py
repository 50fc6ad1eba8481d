"""The VS Code extension in real VS Code (code-server) in headless Chromium, driven by Playwright,
with the real server and the embedded model: type into a Python file, ghost text appears, Tab
accepts, the line holds the suggestion and, saved, the file on disk, the server counted the
acceptance; screenshots are saved. Four times: an LF file, a CRLF one (a Windows checkout), whose
line breaks the save keeps, with VS Code closing brackets and quotes as they are typed (its
default), a line whose suggestion runs through the `")` the editor put right of the cursor: it
shows around them, and Tab leaves the line as meant instead of doubling them; and with the
extension's completer.askAtEveryKey off, where the language client's provider answers after VS
Code's 50 ms wait instead of the extension's own (its log says which answered). Ctrl+Right takes
the suggestion's next word only, and the server hears how many characters. A server killed under
the editor is started again by the language client, and suggestions come back. In a Jupyter
notebook, a cell's suggestion draws on the cells above it.

Needs what `make e2e-vscode` installs (minutes): code-server from npm (Node 24), Debian's Chromium,
Playwright, and editors/vscode/completer.vsix. Without them the test is skipped, saying what is
missing; `make e2e-vscode` runs it with COMPLETER_E2E_VSCODE=1, where a skip is a failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
VSIX = ROOT / "editors" / "vscode" / "completer.vsix"
CODE_SERVER = os.environ.get("COMPLETER_CODE_SERVER") or shutil.which("code-server")
CHROMIUM = os.environ.get("COMPLETER_CHROMIUM") or shutil.which("chromium")
ARTIFACTS = Path(os.environ.get("COMPLETER_ARTIFACTS", ROOT / "test-artifacts"))

missing = [name for name, ok in (("code-server", CODE_SERVER), ("chromium", CHROMIUM), ("completer.vsix", VSIX.exists()))
           if not ok]
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    missing.append("playwright")
required = os.environ.get("COMPLETER_E2E_VSCODE") == "1"

SOURCE = "class Inventory:\n    def __init__(self):\n        self.items = {}\n\n    def count(self):\n"
HANDLERS = "".join(f'def on_{i}(event):\n    log_event("handler_{i}", event.kind)\n    return event\n\n\n'
                   for i in range(30)) + "def on_30(event):\n"


@dataclass(frozen=True)
class Variant:
    newline: str
    file: str
    source: str
    typed: str  # typed on the file's last (empty) line
    auto_close: bool  # the editor closes brackets and quotes as they are typed
    accepted: str | None = None  # the line after Tab, where it is known (else: typed + the ghost text)
    ask_at_every_key: bool = True  # the extension's setting: off, VS Code waits 50 ms before it asks


VARIANTS = {
    "lf": Variant("\n", "inventory.py", SOURCE, "        return len(self.", False),
    "crlf": Variant("\r\n", "inventory.py", SOURCE, "        return len(self.", False),
    # the language client's own provider, which VS Code asks after its 50 ms (code-server lets every
    # extension use proposed API, so the others ask at every key)
    "waiting": Variant("\n", "inventory.py", SOURCE, "        return len(self.", False, ask_at_every_key=False),
    # VS Code makes `log_event(` `log_event()` and `"` `""`: the line reads `log_event("handler_30")`
    "auto-closed": Variant("\n", "handlers.py", HANDLERS, '    log_event("handler_30', True,
                           '    log_event("handler_30", event.kind)'),
}

# A Jupyter notebook (VS Code's built-in ipynb support, no kernel): typed into its last code cell,
# whose suggestion can only come from the first cell (the server joins a notebook's code cells).
NOTEBOOK_CELLS = [
    ("code", ("import pandas as pd\n\n\ndef summarize_quarterly_revenue(frame):\n"
              "    return frame.groupby(['region', 'quarter'])['revenue_total'].sum()\n\n\n"
              "sales = pd.read_csv('sales_2025.csv')\nprint(summarize_quarterly_revenue(sales))")),
    ("markdown", "## The same for 2026"),
    ("code", "sales = pd.read_csv('sales_2026.csv')\n"),
]
NOTEBOOK = json.dumps({
    "cells": [{"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True),
               **({"execution_count": None, "outputs": []} if kind == "code" else {})} for kind, text in NOTEBOOK_CELLS],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5}, indent=1)
# Named by tests that ask for them, not run by every test over VARIANTS.
NAMED_VARIANTS = {"notebook": Variant("\n", "analysis.ipynb", NOTEBOOK, "totals = summarize_q", False)}

EDITOR = ".part.editor .monaco-editor"  # the main editor area, not the chat input (also a Monaco editor)


def need_vscode() -> None:
    """A skip without what `make e2e-vscode` installs; a failure there (COMPLETER_E2E_VSCODE=1)."""
    if missing:
        if required:
            pytest.fail(f"VS Code end-to-end requirements missing: {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)} (make e2e-vscode installs them)")


@pytest.fixture(params=list(VARIANTS))
def code_server(tmp_path, request):
    need_vscode()
    data, ws = tmp_path / "data", tmp_path / "ws"
    ws.mkdir()
    variant = {**VARIANTS, **NAMED_VARIANTS}[request.param]
    # "\r\n": a Windows checkout's file; VS Code keeps its line breaks (status bar "CRLF") and sends them
    (ws / variant.file).write_bytes(variant.source.replace("\n", variant.newline).encode())
    log = tmp_path / "server.log"
    settings = {
        "completer.serverCommand": sys.executable,
        # Every suggestion shown (--min-confidence 0): this test is about the editor; the confidence
        # gate has tests of its own.
        "completer.serverArgs": ["-m", "completer", "serve", "--stdio", "--min-confidence", "0", "--log-level", "INFO",
                                 "--log-file", str(log)],
        "workbench.startupEditor": "none",
        "security.workspace.trust.enabled": False,
        "telemetry.telemetryLevel": "off",
        "editor.inlineSuggest.enabled": True,
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "editor.suggestOnTriggerCharacters": False,
        "extensions.autoCheckUpdates": False,
        "workbench.tips.enabled": False,
        "chat.disableAIFeatures": True,  # no chat panel taking focus
        # the typed line is exactly what the test typed, or what VS Code makes of it by default
        "editor.autoClosingBrackets": "always" if variant.auto_close else "never",
        "editor.autoClosingQuotes": "always" if variant.auto_close else "never",
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "completer.askAtEveryKey": variant.ask_at_every_key,
    }
    proc, port = launch_code_server(CODE_SERVER, data, ws, settings)
    yield f"http://127.0.0.1:{port}/?folder={ws}", log, ws / variant.file, variant, data
    proc.terminate()
    proc.wait(timeout=30)


def launch_code_server(code_server: str, data: Path, folder: Path, settings: dict) -> tuple[subprocess.Popen, int]:
    """code-server with these user settings and the extension installed under `data`, serving `folder`
    on a free port once it accepts connections (bench/vscode_latency.py starts it the same way)."""
    (data / "user" / "User").mkdir(parents=True)
    (data / "user" / "User" / "settings.json").write_text(json.dumps(settings))
    common = ["--user-data-dir", str(data / "user"), "--extensions-dir", str(data / "ext")]
    subprocess.run([code_server, *common, "--install-extension", str(VSIX)], check=True, capture_output=True,
                   timeout=180)
    port = free_port()
    proc = subprocess.Popen([code_server, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry",
                             "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
                             *common, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "EXTENSIONS_GALLERY": '{"serviceUrl": "http://127.0.0.1:9/"}'})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    return proc, port


LINE_WITHOUT_GHOST = """(needle) => {
    // Monaco renders ghost text inside the line's DOM: strip it, then find the typed line.
    for (const line of document.querySelectorAll('.part.editor .monaco-editor .view-lines .view-line')) {
        const copy = line.cloneNode(true);
        copy.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text')
            .forEach(e => e.remove());
        const text = copy.textContent.replace(/\\u00a0/g, ' ');
        if (text.includes(needle)) return {text, ghost: !!line.querySelector('.ghost-text-decoration')};
    }
    return null;
}"""


@contextmanager
def file_in_code_server(url: str, file: str, chromium: str | None = CHROMIUM, shown: str = EDITOR + " .view-lines"):
    """Headless Chromium on code-server's page with `file` open in the editor (`shown` is there), once
    the extension's status bar item shows (bench/vscode_latency.py opens its file the same way).
    The file is opened after that: a notebook opened before the extensions are read is shown as JSON."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector(".monaco-workbench", timeout=90_000)
            page.wait_for_function("document.querySelector('.statusbar') && "
                                   "document.querySelector('.statusbar').textContent.includes('completer')",
                                   timeout=60_000)
            page.wait_for_selector(f".explorer-viewlet >> text={file}", timeout=60_000)
            page.dblclick(f".explorer-viewlet >> text={file}")
            page.wait_for_selector(shown, timeout=30_000)
            yield page
        finally:
            browser.close()


@contextmanager
def editor_at_end(url: str, file: str):
    """`file` open in code-server with the cursor at its end."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with file_in_code_server(url, file) as page:
        page.click(EDITOR + " .view-lines")
        page.keyboard.press("Control+End")
        yield page


def extension_log(data: Path) -> str:
    """What the extension wrote to its output channel, which VS Code keeps as a file in its logs."""
    return "".join(f.read_text() for f in (data / "user" / "logs").rglob("*completer.log"))


def test_ghost_text_and_tab_accept_in_code_server(code_server):
    url, log, path, variant, data = code_server
    newline = variant.newline
    shot = {"\r\n": "-crlf.png"}.get(newline, "-auto-closed.png" if variant.auto_close else ".png")
    shot = shot if variant.ask_at_every_key else "-waiting.png"
    typed = variant.typed.lstrip()
    with editor_at_end(url, variant.file) as page:
        page.keyboard.type(variant.typed, delay=80)
        try:
            ghost = page.wait_for_selector(EDITOR + " .ghost-text-decoration", timeout=60_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / ("vscode-no-ghost-text" + shot)))
            raise AssertionError("no ghost text; server log:\n" + (log.read_text() if log.exists() else "(none)"))
        suggestion = ghost.text_content()
        page.screenshot(path=str(ARTIFACTS / ("vscode-ghost-text" + shot)))
        assert suggestion
        shown = page.evaluate(LINE_WITHOUT_GHOST, typed)["text"].replace("\u00a0", " ")
        page.keyboard.press("Tab")
        page.wait_for_function(f"(n) => {{ const r = ({LINE_WITHOUT_GHOST})(n); return r && !r.ghost; }}",
                               arg=typed, timeout=10_000)
        line = page.evaluate(LINE_WITHOUT_GHOST, typed)["text"].replace("\u00a0", " ")
        page.screenshot(path=str(ARTIFACTS / ("vscode-accepted" + shot)))
        if variant.auto_close:
            assert shown.rstrip() == variant.typed + '")'  # VS Code closed the quote and the bracket
            assert line.rstrip() == variant.accepted, (line, suggestion)
        else:
            assert line.rstrip() == (variant.typed + suggestion.replace("\u00a0", " ")).rstrip()
        page.keyboard.press("Control+S")  # the file on disk: the suggestion in it, its line breaks kept
        accepted = line.rstrip()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and accepted not in path.read_bytes().decode():
            time.sleep(0.2)
        saved = path.read_bytes().decode()
        assert accepted in saved and "\r" not in suggestion
        assert saved.count(newline) == saved.count("\n") == variant.source.count("\n")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "accepted" not in log.read_text():
        time.sleep(0.3)
    assert "accepted" in log.read_text()  # the item's command reached the server
    # the provider that answered: the extension's own, without VS Code's wait, unless the setting is off
    expected = "asked at every key" if variant.ask_at_every_key else "askAtEveryKey is off"
    assert expected in extension_log(data), extension_log(data)


@pytest.mark.parametrize("code_server", ["lf"], indirect=True)
def test_accept_next_word_in_code_server(code_server):
    """Ctrl+Right takes the suggestion's next word only: the line gains it, the rest stays in view,
    and the server hears how many characters were taken (didPartiallyAcceptCompletion)."""
    url, log, _, variant, _ = code_server
    typed = variant.typed.lstrip()
    with editor_at_end(url, variant.file) as page:
        page.keyboard.type(variant.typed, delay=80)
        suggestion = page.wait_for_selector(EDITOR + " .ghost-text-decoration", timeout=60_000).text_content()
        suggestion = suggestion.replace("\u00a0", " ")
        page.keyboard.press("Control+ArrowRight")
        page.wait_for_function(f"(n) => {{ const r = ({LINE_WITHOUT_GHOST})(n); return r && r.text.trimEnd() !== n; }}",
                               arg=variant.typed, timeout=10_000)
        after = page.evaluate(LINE_WITHOUT_GHOST, typed)
        line = after["text"].replace("\u00a0", " ").rstrip()
        page.screenshot(path=str(ARTIFACTS / "vscode-accepted-word.png"))
    taken = line[len(variant.typed):]
    assert line.startswith(variant.typed) and taken and suggestion.startswith(taken), (line, suggestion)
    assert after["ghost"] == (len(taken) < len(suggestion.rstrip())), (line, suggestion)  # the rest stays in view
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "partially accepted" not in log.read_text():
        time.sleep(0.3)
    assert f": {len(taken)} characters" in log.read_text(), log.read_text()[-2000:]


def server_running(log: Path) -> int | None:
    """The pid of the server VS Code started for this test (its command line names the test's log
    file), if one runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(log).encode() in args and b"serve" in args and state != "Z":
            return int(cmdline.parent.name)
    return None


def server_pid(log: Path) -> int:
    pid = server_running(log)
    assert pid is not None, "no server process with " + str(log)
    return pid


@pytest.mark.parametrize("code_server", ["lf"], indirect=True)
def test_a_killed_server_is_started_again_in_code_server(code_server):
    """The language client starts a server that died (SIGKILL) again, and the extension's provider,
    which asks without VS Code's wait, goes on answering through it; after the fifth exit in 3
    minutes it stays down and the status bar shows the error instead of its last "ready"."""
    url, log, _, variant, _ = code_server
    with editor_at_end(url, variant.file) as page:
        page.keyboard.type(variant.typed, delay=80)
        page.wait_for_selector(EDITOR + " .ghost-text-decoration", timeout=60_000)
        first = server_pid(log)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server_running(log) in (None, first):
            time.sleep(0.3)
        assert server_running(log) not in (None, first)
        page.keyboard.press("Escape")
        page.keyboard.press("End")
        page.keyboard.press("Enter")
        page.keyboard.type(variant.typed.lstrip(), delay=80)
        try:
            page.wait_for_selector(EDITOR + " .ghost-text-decoration", timeout=60_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "vscode-after-a-restart.png"))
        # the fifth exit in 3 minutes: the language client gives up, and the status bar says so
        for _ in range(4):
            killed = server_pid(log)
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and server_running(log) in (None, killed):
                time.sleep(0.3)
        assert server_running(log) is None
        # completer's own item (the Problems item has a .codicon-error of its own)
        page.wait_for_function("[...document.querySelectorAll('.statusbar-item')].some(e => "
                               "e.textContent.includes('completer') && e.querySelector('.codicon-error'))",
                               timeout=10_000)


@pytest.mark.parametrize("code_server", ["notebook"], indirect=True)
def test_ghost_text_in_a_notebook_cell_in_code_server(code_server):
    """In a Jupyter notebook's last code cell, the suggestion names a function that only the first
    cell defines (the server completes a cell with the cells above it); Tab takes it into the cell
    and the saved notebook has it."""
    url, log, path, variant, _ = code_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Notebook editors are drawn in an overlay outside .part.editor.
    cell_editor = ".notebook-editor .code-cell-row .monaco-editor"
    line_without_ghost = LINE_WITHOUT_GHOST.replace(".part.editor .monaco-editor", cell_editor)
    with file_in_code_server(url, variant.file, shown=cell_editor + " .view-lines") as page:
        page.locator(cell_editor).nth(1).click()
        page.keyboard.press("Control+End")
        page.keyboard.type(variant.typed, delay=80)
        try:
            ghost = page.wait_for_selector(cell_editor + " .ghost-text-decoration", timeout=60_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "vscode-no-ghost-text-notebook.png"))
            raise AssertionError("no ghost text; server log:\n" + (log.read_text() if log.exists() else "(none)"))
        suggestion = ghost.text_content().replace("\u00a0", " ")
        page.screenshot(path=str(ARTIFACTS / "vscode-ghost-text-notebook.png"))
        assert suggestion.startswith("uarterly_revenue"), suggestion
        page.keyboard.press("Tab")
        page.wait_for_function(f"(n) => {{ const r = ({line_without_ghost})(n); return r && !r.ghost; }}",
                               arg=variant.typed, timeout=10_000)
        line = page.evaluate(line_without_ghost, variant.typed)["text"].replace("\u00a0", " ").rstrip()
        assert line == (variant.typed + suggestion).rstrip(), (line, suggestion)
        page.keyboard.press("Control+S")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and line not in path.read_text():
            time.sleep(0.2)
    saved = json.loads(path.read_text())
    assert line in "".join(saved["cells"][2]["source"]), saved["cells"][2]
    assert "".join(saved["cells"][0]["source"]) == NOTEBOOK_CELLS[0][1]  # the other cells as they were
