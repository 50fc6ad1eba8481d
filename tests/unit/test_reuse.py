from completer.completion.reuse import SuggestionReuse, typed_into
from completer.lines import split_lines

DOC = "import os\n\n\ndef listing(path):\n    entries = os.listdir(path)\n    ret\n\nprint(listing('.'))\n"


def edit(lines, line, new_line):
    return lines[:line] + [new_line] + lines[line + 1:]


def test_typed_through_answers_the_rest_of_the_suggestion():
    r = SuggestionReuse()
    lines = split_lines(DOC)
    r.remember("u", lines, 5, 7, "urn entries")
    typed = edit(lines, 5, "    retu\n")
    assert r.lookup("u", typed, 5, 8) == ("rn entries", "typed_through")
    typed2 = edit(typed, 5, "    return e\n")
    assert r.lookup("u", typed2, 5, 12) == ("ntries", "typed_through")
    done = edit(typed2, 5, "    return entries\n")
    assert r.lookup("u", done, 5, 18) is None  # nothing left to suggest
    assert r.hits["typed_through"] == 2


def test_typing_into_a_suggestion_keeps_the_alternatives_that_still_fit():
    # The shown suggestion first, then the alternatives the editor cycles through.
    texts = ("nd(alpha, 1)", "nd(beta, 2)", "t_flag()", "n")
    assert typed_into(texts, "n") == ("d(alpha, 1)", "d(beta, 2)")  # "n" has nothing left to offer
    assert typed_into(texts, "nd(b") == ("eta, 2)",)
    assert typed_into(texts, "x") == ()
    assert typed_into(texts, "") == texts


def test_typed_through_needs_the_rest_of_the_document_unchanged():
    r = SuggestionReuse()
    lines = split_lines(DOC)
    r.remember("u", lines, 5, 7, "urn entries")
    other = edit(edit(lines, 5, "    retu\n"), 0, "import sys\n")
    assert r.lookup("u", other, 5, 8) is None
    diverged = edit(lines, 5, "    retx\n")  # typed something the suggestion did not predict
    assert r.lookup("u", diverged, 5, 8) is None
    assert r.lookup("elsewhere", edit(lines, 5, "    retu\n"), 5, 8) is None


def test_typing_over_the_editors_closer_types_through_the_suggestion():
    # VS Code closed `f("` with `")`; the suggestion runs through them (its item replaces them). Typing
    # `c` inserts; typing `"` moves past the editor's `"` (the line is unchanged).
    r = SuggestionReuse()
    lines = ['x = f("ab")\n']
    r.remember("u", lines, 0, 9, 'c", 1)')
    assert r.lookup("u", ['x = f("abc")\n'], 0, 10) == ('", 1)', "typed_through")
    assert r.lookup("u", ['x = f("abc")\n'], 0, 11) == (", 1)", "typed_through")
    # both keys before the next request: the typed text holds the closer that left the right
    r.remember("u", lines, 0, 9, 'c", 1)')
    assert r.lookup("u", ['x = f("abc")\n'], 0, 11) == (", 1)", "typed_through")
    # a word of it accepted, `c",`: the item replaced the `"`
    r.remember("u", lines, 0, 9, 'c", 1)')
    assert r.lookup("u", ['x = f("abc",)\n'], 0, 12) == (" 1)", "typed_through")


def test_typing_an_opener_the_editor_closes_types_through_the_suggestion():
    # `(` typed makes `()`, then `"` makes `("")`: the right grew by the closers of what was typed
    r = SuggestionReuse()
    r.remember("u", ["x = \n"], 0, 4, 'f("ab", 1)')
    assert r.lookup("u", ["x = f()\n"], 0, 6) == ('"ab", 1)', "typed_through")
    assert r.lookup("u", ['x = f("")\n'], 0, 7) == ('ab", 1)', "typed_through")
    r.remember("u", ["x = \n"], 0, 4, 'f("ab", 1)')
    assert r.lookup("u", ['x = f("")\n'], 0, 7) == ('ab", 1)', "typed_through")  # both keys at once
    r.remember("u", ["x = \n"], 0, 4, "f(a)")
    assert r.lookup("u", ["x = f]\n"], 0, 5) is None  # a `]` no typed opener explains


def test_moving_past_text_that_is_no_closer_is_not_typing():
    r = SuggestionReuse()
    lines = ["x = f(ab, cd)\n"]
    r.remember("u", lines, 0, 8, ", cd)")
    assert r.lookup("u", lines, 0, 10) is None  # the cursor moved over `, ` (an arrow key)
    r.remember("u", ['x = f("ab")\n'], 0, 9, 'c", 1)')
    assert r.lookup("u", ['x = f("ab")\n'], 0, 10) is None  # over the `"` without typing the `c`


def test_backspace_and_retype_reuses_the_earlier_answer():
    r = SuggestionReuse()
    lines = split_lines(DOC)
    r.remember("u", lines, 5, 7, "urn entries")
    typo = edit(lines, 5, "    retx\n")
    r.remember("u", typo, 5, 8, "")  # the model had nothing for the typo
    back = edit(typo, 5, "    ret\n")
    assert r.lookup("u", back, 5, 7) == ("urn entries", "recent")


def test_small_edits_nearby_are_tolerated_large_ones_are_not():
    r = SuggestionReuse()
    lines = split_lines(DOC)
    r.remember("u", lines, 5, 7, "urn entries")
    r.shown.clear()  # only the fuzzy path
    nearby = edit(lines, 4, "    entries = os.listdir(paths)\n")
    assert r.lookup("u", nearby, 5, 7) == ("urn entries", "recent")
    rewritten = edit(lines, 4, "    result = sorted(x for x in something_else())\n")
    assert r.lookup("u", rewritten, 5, 7) is None


def test_insert_at_inserts_the_suggestion_and_moves_the_cursor():
    from completer.lines import insert_at

    lines = split_lines("def f(x):\n    return \n\n")  # as documents hold them: the last piece unterminated
    virtual, line, character = insert_at(lines, 1, 11, "x + 1")
    assert virtual == ["def f(x):\n", "    return x + 1\n", "\n", ""] and (line, character) == (1, 16)
    virtual, line, character = insert_at(lines, 1, 11, "(\n        x)")
    assert "".join(virtual) == "def f(x):\n    return (\n        x)\n\n" and (line, character) == (2, 10)
    assert insert_at(["ab"], 0, 1, "X")[0] == ["aXb"]


def test_a_prefetched_suggestion_is_found_at_its_place_but_not_shown():
    reuse = SuggestionReuse()
    lines = ("a = 1\n", "b = a + 1\n", "")
    reuse.remember_recent("u", lines, 1, 9, "  # two")
    assert "u" not in reuse.shown  # typed-through does not start from it
    assert reuse.lookup("u", lines, 1, 9) == ("  # two", "recent")


def test_after_enter_indents_like_an_editor():
    from lsp.prefetch import after_enter

    lines = ["def f(x):\n", "    if x:\n", "    y = 1\n", ""]
    assert after_enter(lines, 0)[0][1] == "    \n" and after_enter(lines, 0)[1:] == (1, 4)
    assert after_enter(lines, 1)[0][2] == "        \n"  # one level deeper after a block opener
    assert after_enter(lines, 2)[0][3] == "    \n" and after_enter(lines, 2)[1:] == (3, 4)
    assert after_enter(["\tif x {\n"], 0)[0][1] == "\t\t\n"


def test_the_prefetch_reads_the_document_the_accepted_item_leaves():
    from completer.completion.pipeline import CompletionRequest
    from lsp.prefetch import accepted

    shown_for = CompletionRequest(["def f(e):\n", '    log("ab")\n', ""], 1, 11)
    # the item's range replaced the `")` the editor had closed the call with
    assert accepted(shown_for, 'c", e)') == (["def f(e):\n", '    log("abc", e)\n', ""], 1, 17)
    assert accepted(shown_for, "c") == (["def f(e):\n", '    log("abc")\n', ""], 1, 12)  # a plain insertion
    assert accepted(shown_for, 'c", e)', closers=False)[0][1] == '    log("abc", e)")\n'  # --no-closers


def test_the_pacer_debounces_only_while_typing_outruns_the_model():
    from lsp.pacing import MAX_DEBOUNCE_S, Pacer

    pacer = Pacer()
    assert pacer.debounce_s("u") == 0.0  # nothing known yet
    for i in range(10):
        pacer.request("u", i * 0.2)  # 200 ms between keys
    pacer.answered("u", 0.03)  # 30 ms answers
    assert pacer.debounce_s("u") == 0.0
    for i in range(20):
        pacer.request("u", 3.0 + i * 0.02)  # a burst: 20 ms between keys (after a pause that is ignored)
    # Longer than the gap, so the next key of an even burst supersedes the waiting request.
    assert 0.02 < pacer.debounce_s("u") <= MAX_DEBOUNCE_S
    assert pacer.debounce_s("other") == 0.0
    pacer.forget("u")
    assert pacer.debounce_s("u") == 0.0


def test_typing_into_a_withheld_suggestion_is_decided_again_without_the_model():
    r = SuggestionReuse()
    lines = split_lines(DOC)
    asked = []

    def reconsider(held, typed):  # stands in for Completer.reconsider: shows what has 9 characters left
        asked.append((held, typed))
        if not held.startswith(typed):
            return None
        rest = held[len(typed):]
        return (rest, None) if len(rest) <= 9 else ("", rest)

    r.remember("u", lines, 5, 7, "", held="urn entries")  # withheld here
    typed = edit(lines, 5, "    retu\n")
    assert r.lookup("u", typed, 5, 8, reconsider) == ("", "reconsidered")  # still withheld, no model
    typed2 = edit(typed, 5, "    retur\n")
    assert r.lookup("u", typed2, 5, 9, reconsider) == ("n entries", "reconsidered")  # shown now
    assert asked == [("urn entries", "u"), ("rn entries", "r")]
    typed3 = edit(typed2, 5, "    return\n")
    assert r.lookup("u", typed3, 5, 10, reconsider) == (" entries", "typed_through")
    assert r.hits["reconsidered"] == 2
    r.remember("u", lines, 5, 7, "", held="urn entries")
    assert r.lookup("u", edit(lines, 5, "    retx\n"), 5, 8, reconsider) is None  # not predicted: ask the model
    assert r.lookup("u", typed, 5, 8) is None  # reconsidering switched off


def test_same_except_line_against_the_slices_it_replaced():
    from completer.completion.reuse import _same_except_line

    def reference(old, new, line):
        return len(old) == len(new) and old[:line] == new[:line] and old[line + 1:] == new[line + 1:]

    base = [f"line {i}\n" for i in range(6)]
    cases = [(base, list(base), 2), (base, [*base[:2], "typed\n", *base[3:]], 2),
             (base, [*base[:2], "typed\n", *base[3:]], 3), (base, [*base[:4], "x\n", *base[5:]], 0),
             (base, base[:5], 2), (base, [s[:-1] + "\n" for s in base], 1),  # equal text, other objects
             (base, [*base[:5], "last"], 5), (base, [*base[:5], "last"], 9), (base, list(base), 9), ([], [], 0)]
    for old, new, line in cases:
        assert _same_except_line(old, new, line) == reference(old, new, line), (new, line)
    assert base == [f"line {i}\n" for i in range(6)]  # neither input is changed


def test_only_the_shown_answer_keeps_its_document():
    r = SuggestionReuse()
    lines = split_lines(DOC)
    for character in range(4, 8):
        r.remember("u", lines, 5, character, "urn entries"[character - 4:])
    later = edit(lines, 5, "    retu\n")
    r.remember("u", later, 5, 8, "rn entries")
    assert r.shown["u"].lines is later  # typed-through compares the whole document with it
    assert len(r.recent) == 5 and all(answer.lines == () for answer in r.recent.values())


def test_split_against_the_copy_without_the_line_break():
    from completer.completion.reuse import _split

    for text in ("    ret\n", "    ret\r\n", "    ret\r", "    ret", "", "\n", "\r\n", "x = '\r'\n"):
        body = text.rstrip("\r\n")
        for character in range(len(text) + 3):
            assert _split([text], 0, character) == (body[:character], body[character:]), (text, character)


def test_cursor_kind_against_whole_text_reads():
    import re

    from completer.completion.rerank import cursor_kind

    def reference(left):
        return "line_start" if not left.strip() else "mid_word" if re.search(r"\w$", left) else "mid_line"

    for left in ("", "    ", "\t \u3000", "    ret", "    ret(", "x\n", "x(\n", "é", "a ", " \n", "return x_1"):
        assert cursor_kind(left) == reference(left), repr(left)


def test_long_lines_split_once_per_version_and_column_and_stay_out_of_the_recent():
    from completer.completion.reuse import RECENT_MAX_LINE, _split

    head = "var a=1;" * (RECENT_MAX_LINE // 8) + "/* ✓ */"
    lines = [head + "f(\n", ""]
    left, right = _split(lines, 0, len(head) + 2)
    assert (left, right) == (head + "f(", "") and _split(lines, 0, len(head) + 2)[0] is left
    same_text = [("x" + head)[1:] + "g(\n", ""]  # another version, same length: split anew
    assert _split(same_text, 0, len(head) + 2) == (head + "g(", "")
    assert _split(lines, 0, len(head)) == (head, "f(")
    r = SuggestionReuse()
    r.remember("u", lines, 0, len(head) + 2, "x, y)")
    assert not r.recent  # 64 copies of a megabyte line held 180 MB
    typed = [head + "f(x\n", ""]
    assert r.lookup("u", typed, 0, len(head) + 3) == (", y)", "typed_through")
