"""completer.completion.closers: a suggestion that runs through the closers the editor put right of the
cursor replaces them, so that accepting it leaves the line as meant."""

import pytest

from completer.completion.closers import closers_taken, woven


@pytest.mark.parametrize("left, text, right, line", [
    # the suggestion goes on past the closers: both replaced
    ('f("ab', 'c", 1)', '")', 'f("abc", 1)'),
    ("    def test_recvmsg(", "self):", ")", "    def test_recvmsg(self):"),
    ('    if sys.platform == "sereni', 'tyos":', '"', '    if sys.platform == "serenityos":'),
    ("print(foo(", "a), b)", "))", "print(foo(a), b)"),
    # it stops after the quote: only the quote is replaced, the bracket stays
    ('f("ab', 'c", 1', '")', 'f("abc", 1)'),
    # it stops before the closers: a plain insertion
    ('f("ab', "c", '")', 'f("abc")'),
    ("x = [1, ", "2, 3", "]", "x = [1, 2, 3]"),
    # text after the closers is kept
    ("y = g(", "a, b)", ") + 1", "y = g(a, b) + 1"),
])
def test_the_accepted_line(left, text, right, line):
    assert woven(text, left, right) == line


def test_a_plain_insertion_takes_nothing():
    assert closers_taken("c", 'f("ab', '")') == 0
    assert closers_taken("x", "g(", "") == 0
    assert closers_taken("x, y)", "g(", ", z)") == 0  # the rest of the line is not closers


def test_closers_must_occur_in_the_suggestion_in_order():
    # the `)` may not take the editor's `])`: the `]` before it is not in the suggestion
    assert closers_taken("1)", "g(h[", "])") == 0


def test_multi_line_suggestions_are_inserted():
    assert closers_taken("a,\n    b)", "f(", ")") == 0


def test_escaped_quotes_do_not_close_a_string():
    # `\"` inside the suggestion is no closer: the string is closed by the editor's quote
    assert woven('a\\"b", c)', 's = f("', '")') == 's = f("a\\"b", c)'


def test_a_line_already_broken_is_not_made_worse():
    # the line has an unmatched `]` of its own; the suggestion's `)` still takes the editor's `)`
    assert woven("a)]", "x = g(", ")") == "x = g(a)]"


def test_a_minified_line_is_read_only_near_the_cursor():
    # megabytes of balanced code either side (a minified file's one line) decide nothing, and a run
    # of closers longer than the suggestion is cut to it: the same answer as on the short line
    far_left, far_right = "a(b[1], 'c');" * 150_000, ";d(e)" * 400_000
    assert closers_taken('c", 1)', far_left + 'f("ab', '")' + far_right) == 2
    assert closers_taken("a)", far_left + "g(h(", ")" * 1_000_000) == 1
    assert closers_taken("c", far_left + 'f("ab', '")' + far_right) == 0


def test_scan_tells_code_from_strings():
    from completer.pairs import open_string, scan

    assert [(ch, q, e) for ch, q, e in scan('a"b\\"c"')] == [
        ("a", None, ""), ('"', '"', "open"), ("b", '"', ""), ("\\", '"', ""), ('"', '"', ""), ("c", '"', ""),
        ('"', '"', "close")]
    assert open_string("f('it") == "'" and open_string('x = "a" + b') is None
    assert open_string('c"', quote='"') is None  # it started inside a string, and closed it
