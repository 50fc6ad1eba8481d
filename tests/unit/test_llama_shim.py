"""The llama.vim emulation of bench/llama_shim.py (the llama-server side of the side-by-side)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("llama_shim", Path(__file__).resolve().parents[2] / "bench" / "llama_shim.py")
shim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shim)


def test_local_context_splits_like_llama_vim():
    lines = ["import os", "def f(x):", "    return x + 1", "", "print(f(2))"]
    ctx = shim.local_context(lines, 2, 11)
    assert ctx["prefix"] == "import os\ndef f(x):\n"
    assert ctx["middle"] == "    return "
    assert ctx["suffix"] == "x + 1\n\nprint(f(2))\n"
    assert ctx["indent"] == 4 and ctx["right"] == "x + 1"


def test_blank_line_starts_from_column_zero():
    ctx = shim.local_context(["def f():", "    ", "x = 1"], 1, 4)
    assert ctx["middle"] == "" and ctx["indent"] == 0
    assert ctx["suffix"] == "\nx = 1\n"
    # the model writes the line from column 0; the indentation already typed is not shown again
    assert shim.shown_text("    return 1\n", ctx, ["x = 1"]) == "return 1"


def test_cache_answers_a_context_typed_through():
    cache = shim.AnswerCache()
    before = shim.local_context(["x = ", ""], 0, 4)
    cache.put(before, "compute(a, b)")
    assert cache.get(before) == "compute(a, b)"
    after = shim.local_context(["x = com", ""], 0, 7)  # the user typed "com"
    assert cache.get(after) == "pute(a, b)"
    diverged = shim.local_context(["x = cxm", ""], 0, 7)
    assert cache.get(diverged) is None


def test_cache_evicts_beyond_its_size():
    cache = shim.AnswerCache(size=2)
    ctxs = [shim.local_context([f"v{i} = "], 0, 5) for i in range(3)]
    for i, c in enumerate(ctxs):
        cache.put(c, f"{i}")
    assert cache.get(ctxs[0]) is None and cache.get(ctxs[2]) == "2"


def test_answers_that_repeat_the_document_are_not_shown():
    ctx = shim.local_context(["total = a", "return total"], 0, 8)
    assert shim.shown_text(" + b\n\n", ctx, ["return total"]) == " + b"  # trailing empty lines dropped
    ctx = shim.local_context(["x = f(a)", "return x"], 0, 6)
    assert shim.shown_text("a)", ctx, ["return x"]) == ""  # only the rest of the line again
    ctx = shim.local_context(["ret", "return x"], 0, 3)
    assert shim.shown_text("urn x", ctx, ["return x"]) == ""  # only the next line again
    assert shim.shown_text("  \n ", ctx, ["return x"]) == ""
