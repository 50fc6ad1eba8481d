from completer.completion.postprocess import (
    Context,
    cut_runaway_repetition,
    drop_repetition,
    drop_suffix_overlap,
    postprocess,
    stop_at_existing_code,
)


def ctx(left="", right="", next_lines=(), multiline=False):
    return Context(left, right, list(next_lines), multiline)


def test_suffix_overlap_removes_a_repeated_closing_bracket():
    assert drop_suffix_overlap("x, y)", ctx("print(", ")")) == "x, y"
    assert drop_suffix_overlap("foo()", ctx("print(", ")")) == "foo()"  # balanced call: keep
    assert drop_suffix_overlap("self, key):", ctx("    def get(", "):")) == "self, key"
    assert drop_suffix_overlap("abc", ctx("x = ", "")) == "abc"


def test_suffix_overlap_removes_a_repeated_closing_quote():
    # The editor closed the string when its quote was typed (VS Code's autoClosingQuotes): the model's
    # closing quote would be a second one.
    assert drop_suffix_overlap('ld"', ctx('msg = "hello wor', '"')) == "ld"
    assert drop_suffix_overlap("s fine'", ctx("print('it", "')")) == "s fine"
    assert drop_suffix_overlap('t\\"s"', ctx('s = "i', '"')) == 't\\"s'  # an escaped quote does not count
    assert drop_suffix_overlap('"', ctx("x = ", '"')) == '"'  # an empty string the line did not close: keep
    assert drop_suffix_overlap("abc'", ctx("say(\"don't ", '"')) == "abc'"  # another quote: no overlap
    assert drop_suffix_overlap('a", "b"', ctx('f("', '"')) == 'a", "b'


def test_multiline_stops_before_the_code_below():
    text = "if x:\n        return 1\n    return 2"
    assert stop_at_existing_code(text, ctx(next_lines=["", "    return 2"])) == "if x:\n        return 1"


def test_repetition_is_cut():
    assert drop_repetition("a\nb\nb\nb\nb", ctx()) == "a\nb"


def test_a_loop_that_ran_out_of_tokens_keeps_what_came_before_it():
    truncated = Context("    ", "", [], False, truncated=True)
    # Seen from the embedded model on held-out stdlib tests (bench/quality.py, E2-block).
    assert cut_runaway_repetition("self.nav.ess(1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5,", truncated) == \
        "self.nav.ess(1, 2, 3, 4, 5"
    assert cut_runaway_repetition("self._test(b'foo = bar\nbar\nbar\nbar\nbar\nbar\nba", truncated) == \
        "self._test(b'foo = bar"
    assert cut_runaway_repetition("name = first + second + third", truncated) == "name = first + second + third"
    assert cut_runaway_repetition("x = y))))", truncated) == "x = y))))"  # too short to call a loop
    # A suggestion that ended by itself keeps its table or ruler.
    done = Context("    ", "", [], False)
    assert cut_runaway_repetition("row = [0, 0, 0, 0, 0, 0, 0, 0]", done) == "row = [0, 0, 0, 0, 0, 0, 0, 0]"
    assert postprocess('print("=-=-=-=-=-=-=-=-=-', truncated) == 'print("=-'


def test_postprocess_trims_and_drops_whitespace_only():
    assert postprocess("x = 1   \n", ctx(multiline=True)) == "x = 1"
    assert postprocess("   \n  ", ctx()) == ""


def test_block_truncation_uses_the_syntax_tree():
    from completer.completion.postprocess import truncate_at_block_end
    from completer.syntax import DocumentSyntax

    text = "def f(x):\n    \n\ndef g():\n    pass\n"
    snap = DocumentSyntax("python", text).snapshot
    ctx = Context("    ", "", ["", "def g():", "    pass"], True, snap, len("def f(x):\n    "))
    suggestion = "y = x + 1\n    return y\n\ndef h():\n    return 0"
    assert truncate_at_block_end(suggestion, ctx) == "y = x + 1\n    return y"
    no_tree = Context("    ", "", [], True)
    assert truncate_at_block_end(suggestion, no_tree) == suggestion


def test_a_closer_the_document_already_has_is_dropped():
    from completer.completion.postprocess import drop_duplicate_closer

    assert drop_duplicate_closer("return x;\n}", ctx(next_lines=["}", ""])) == "return x;"
    assert drop_duplicate_closer("return x;\n}", ctx(next_lines=["int g() {"])) == "return x;\n}"
    assert drop_duplicate_closer("y = 1\nend", ctx(next_lines=["end"])) == "y = 1"


def test_indentation_follows_the_file():
    from completer.completion.postprocess import match_indentation

    tabbed = ctx(left="\t", next_lines=["\treturn x", "\t\ty = 1"], multiline=True)
    assert match_indentation("if x:\n        y()\n    z()", tabbed) == "if x:\n\t\ty()\n\tz()"
    spaced = ctx(left="  ", next_lines=["  a = 1", "    b = 2"], multiline=True)
    assert match_indentation("if x:\n\t\ty()", spaced) == "if x:\n    y()"
    assert match_indentation("one line", tabbed) == "one line"
