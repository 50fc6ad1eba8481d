"""The synthetic typist: span choice, a deterministic plan per seed, and one that types the target."""

import random

from completer.acceptance import decide_accept
from completer.replay.driver import Mirror
from completer.replay.typist import TypingModel, find_spans, plan_typing, synthesize, synthesize_tree

PY = '''import os


def walk(root, pattern):
    """Files under root matching pattern."""
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(pattern):
                found.append(os.path.join(dirpath, name))
    return found
'''

JS = '''function total(items) {
  let sum = 0;
  for (const item of items) {
    sum += item.price * item.count;
  }
  return sum;
}
'''

GO = '''package main

func Total(items []Item) int {
	sum := 0
	for _, item := range items {
		sum += item.Price * item.Count
	}
	return sum
}
'''


def _replay_plan(target: str, steps: list) -> str:
    """Apply a plan's steps with no suggestions: what ends up typed."""
    out = ""
    for op, at, text, _ in steps:
        if op in ("type", "paste", "typo"):
            out += text
        elif op == "backspace":
            out = out[:-1]
    return out


def test_plan_types_exactly_the_target():
    rng = random.Random(1)
    model = TypingModel(typo_p=0.3, paste_p=0.3, jump_p=0.3)
    steps = plan_typing(PY, rng, model)
    assert _replay_plan(PY, steps) == PY
    ops = {s[0] for s in steps}
    assert {"type", "typo", "backspace"} <= ops
    assert all(s[3] >= 0 for s in steps)
    # indentation arrives with Enter
    assert any(s[0] == "type" and s[2].startswith("\n    ") for s in steps)


def test_plan_is_deterministic_for_a_seed():
    a = plan_typing(PY, random.Random(7))
    b = plan_typing(PY, random.Random(7))
    c = plan_typing(PY, random.Random(8))
    assert a == b
    assert a != c


def test_timing_is_slower_at_boundaries_and_line_starts():
    steps = plan_typing("abcdefghij(klmnop)\n" * 40, random.Random(3), TypingModel(typo_p=0, paste_p=0, jump_p=0))
    inside = [s[3] for s in steps if s[2].isalpha() and s[1] > 0 and "abcdefghij(klmnop)\n"[(s[1] - 1) % 19].isalpha()]
    after_paren = [s[3] for s in steps if s[1] % 19 == 11]
    inside.sort(), after_paren.sort()
    assert after_paren[len(after_paren) // 2] > 2 * inside[len(inside) // 2]


def test_spans_in_python_javascript_and_go(tmp_path):
    for name, text, lang in (("a.py", PY, "python"), ("a.js", JS, "javascript"), ("a.ts", JS, "typescript"),
                             ("a.go", GO, "go")):
        kinds = {s.kind for s in find_spans(text, lang)}
        assert "body" in kinds and "line" in kinds, (name, kinds)
        assert "block" in kinds, (name, kinds)
        path = tmp_path / name
        path.write_text(text)
        sessions = synthesize_tree([path], 3, seed=1)
        assert sessions, name
        for session in sessions:
            opened, plan = session.of_kind("open")[0], session.of_kind("plan")[0]
            m = Mirror(opened["text"], "utf-16")
            m.apply([plan["line"], plan["character"], plan["line"], plan["character"], plan["text"]])
            assert m.text == text  # typing the plan back restores the file


def test_synthesize_is_deterministic(tmp_path):
    path = tmp_path / "walk.py"
    path.write_text(PY)
    a = [s.events for s in synthesize_tree([path], 2, seed=5)]
    b = [s.events for s in synthesize_tree([path], 2, seed=5)]
    assert a == b


def test_body_span_keeps_signature_and_indent(tmp_path):
    path = tmp_path / "walk.py"
    path.write_text(PY)
    span = next(s for s in find_spans(PY, "python") if s.kind == "body")
    session = synthesize(path, span, seed=0)
    opened, plan = session.of_kind("open")[0], session.of_kind("plan")[0]
    assert "def walk(root, pattern):\n    \n" in opened["text"]
    assert plan["character"] == 4 and plan["text"].startswith('"""Files')


def test_decide_accept():
    assert decide_accept("foo(bar)", "foo(bar)\nx") == ("full", "foo(bar)")
    assert decide_accept("x = 1\n    y = 2", "x = 1\n    z = 3") == ("line", "x = 1")
    assert decide_accept("result.append(item)", "result.extend(items)") == ("word", "result.")
    assert decide_accept("items_list", "items = 3") == ("", "")  # a half word is not offered
    assert decide_accept("a", "a") == ("", "")  # too short to bother
    assert decide_accept("zzz", "abc") == ("", "")


def test_mirror_applies_utf16_changes():
    m = Mirror("a😀b\nsecond\n", "utf-16")
    m.apply([0, 3, 0, 3, "X"])  # after the emoji: 1 + 2 units
    assert m.text == "a😀Xb\nsecond\n"
    m.apply([0, 4, 1, 3, ""])
    assert m.text == "a😀Xond\n"
    m.apply([None, None, None, None, "new"])
    assert m.text == "new"
