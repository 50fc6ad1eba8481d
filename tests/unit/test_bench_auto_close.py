"""bench/quality.py --auto-close: what an editor that closes brackets and quotes as they are typed has
right of the cursor, and which cuts the line closes with exactly that."""

from engine_builds.line_cases import Case
from tests.conftest import bench_module


def test_open_closers_are_innermost_first_and_ignore_brackets_inside_strings():
    q = bench_module("quality")
    assert q.open_closers('f(a, ["x') == '"])'
    assert q.open_closers("g(h(1), '(', k[") == "])"  # the '(' in quotes opens nothing
    assert q.open_closers("x = 1") == ""


def cut(line: str, rest: str, kind: str = "midline") -> Case:
    return Case(kind, "m.py", [line + "\n"], 0, len(line), rest)


def test_cuts_whose_line_closes_what_is_open_at_the_end_or_going_on_past_it():
    q = bench_module("quality")
    found = q.auto_close_cases([cut('f(a, "x', 'y")'), cut("it(name, functi", "on()"), cut("g(", ")"),
                                cut("    ", "f(x)", "indent"), cut("h(a", ") + 1"), cut('k("a', 'b", 2)')])
    # function's own () is not it('s closer, and the line leaves it( open; nothing but the closers is
    # not a completion; a line start has nothing open; a line that goes on past its closers is
    # "through" them
    assert [(c.target, closers, through) for c, closers, through in found] == [
        ('y")', '")', False), (") + 1", ")", True), ('b", 2)', '")', True)]
