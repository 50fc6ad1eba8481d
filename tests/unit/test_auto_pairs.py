"""completer.replay.auto_pairs: the replay's editor that closes brackets and quotes as they are typed."""

from completer.replay.auto_pairs import closed_on_its_line, closer_for, passes_through


def typed(target: str) -> tuple[str, str]:
    """Type `target` key by key into that editor: (the line as it ends, what is left right of the
    cursor). Over its own closer a key moves on, as VS Code's does."""
    left, pending = "", ""
    for at, ch in enumerate(target):
        if pending[:1] == ch:
            left, pending = left + ch, pending[1:]
            continue
        closer = closer_for(left, pending, target, at)
        left, pending = left + ch, closer + pending
    return left + pending, pending


def test_typing_a_line_ends_with_the_line_and_nothing_left_over():
    for line in ('log_event("handler_30", event.kind)', "x = f(a[1], {'k': (2, 3)})", "if s == '(':",
                 'print("don\'t (stop)")', "it's (fine)"):
        assert typed(line) == (line, "")


def test_what_waits_right_of_the_cursor():
    target = 'f("abc", 1)'
    left, pending = "", ""
    for at, ch in enumerate(target[:5]):  # f("ab
        closer = "" if pending[:1] == ch else closer_for(left, pending, target, at)
        left, pending = left + ch, (pending[1:] if pending[:1] == ch else closer + pending)
    assert (left, pending) == ('f("ab', '")')


def test_an_opener_closed_on_a_later_line_is_not_closed():
    assert not closed_on_its_line("call(\n    a,\n)", 4)
    assert closer_for("call", "", "call(\n    a,\n)", 4) == ""
    assert closed_on_its_line("g(h(1), ')')", 1)  # the `)` in quotes is no closer


def test_no_pair_before_a_word_or_after_one_for_quotes():
    assert closer_for("x = ", "abc", "x = (abc", 4) == ""  # the cursor is before a word
    assert closer_for("don", "", "don't do 'this'", 3) == ""  # an apostrophe
    assert closer_for("s = ", "", "s = 'a'", 4) == "'"


def test_accepted_text_replaces_the_closers_it_closes():
    assert passes_through('c", 1)', '")') == 2
    assert passes_through('c", 1', '")') == 1
    assert passes_through("c", '")') == 0
    assert passes_through("a), b)", "))") == 2
    assert passes_through("g(x), y", ")") == 0  # its own brackets close themselves
    assert passes_through('a\\"b"', '"') == 1  # the escaped quote stays in the string
