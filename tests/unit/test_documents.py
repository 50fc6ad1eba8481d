"""Incremental sync: our DocumentStore against a plain-string reference, for every encoding."""

import random

import pytest

from completer.lines import split_lines, to_client_units, to_codepoints
from lsp.documents import Document

ALPHABET = ["a", "b", " ", "\n", "\r\n", "\r", "é", "✓", "𝔘", "\x0c", "\u2028", "\t", "()"]


def reference_apply(text: str, start, end, new: str, encoding: str) -> str:
    """Apply an LSP edit to a string the slow, obvious way."""
    lines = split_lines(text)

    def offset(pos):
        line, char = pos
        if line >= len(lines):
            return len(text)
        body = lines[line].rstrip("\r\n")
        units = 0
        col = len(body)
        for i, ch in enumerate(body):  # a column inside a character means that character's start
            units += {"utf-8": len(ch.encode()), "utf-16": len(ch.encode("utf-16-le")) // 2, "utf-32": 1}[encoding]
            if units > char:
                col = i
                break
        return sum(len(ln) for ln in lines[:line]) + col

    a, b = sorted((offset(start), offset(end)))
    return text[:a] + new + text[b:]


def random_position(rng, text, encoding):
    lines = split_lines(text)
    line = rng.randrange(len(lines) + 1)
    if line == len(lines):
        return line, rng.randrange(3)
    body = lines[line].rstrip("\r\n")
    col = rng.randrange(len(body) + 1)
    units = to_client_units(body, col, encoding)
    return line, units + (rng.randrange(3) if rng.random() < 0.1 else 0)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_random_edit_sequences_match_reference(encoding):
    rng = random.Random(encoding)
    for _ in range(30):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(40)))
        doc = Document.from_text("file:///x", "python", 0, text)
        for _ in range(40):
            start = random_position(rng, text, encoding)
            end = random_position(rng, text, encoding) if rng.random() < 0.5 else start
            new = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(5)))
            text = reference_apply(text, start, end, new, encoding)
            doc.apply_change(start, end, new, encoding)
            assert doc.text == text
            assert doc.lines == split_lines(text)
            assert doc.chars == len(text)  # kept by each edit, not counted again


def test_form_feed_and_line_separator_do_not_split_lines():
    doc = Document.from_text("file:///x", "python", 0, "s = 'a\x0cb'\nprint(s)\n")
    doc.apply_change((1, 0), (1, 0), "X", "utf-16")
    assert doc.text == "s = 'a\x0cb'\nXprint(s)\n"


def test_cr_and_lf_joined_by_an_edit_become_one_line_break():
    doc = Document.from_text("file:///x", "python", 0, "a\rb\nc")
    doc.apply_change((1, 0), (1, 1), "", "utf-16")  # delete "b": "a\r" + "\nc" -> "a\r\nc"
    assert doc.text == "a\r\nc"
    assert doc.lines == ["a\r\n", "c"]


def test_columns_inside_a_surrogate_pair_round_down():
    assert to_codepoints("𝔘x", 1, "utf-16") == 0
    assert to_codepoints("𝔘x", 2, "utf-16") == 1
    assert to_codepoints("éx", 1, "utf-8") == 0
    assert to_codepoints("éx", 99, "utf-8") == 2


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_column_conversions_match_counting_character_by_character(encoding):
    from completer.lines import units

    rng = random.Random(7)
    pieces = ["a", " ", "é", "✓", "𝔘", "\ud83d", "\ude00", "\udfff", "\u07ff", "\u0800", "\uffff"]  # lone surrogates too
    for _ in range(300):
        line = "".join(rng.choice(pieces) for _ in range(rng.randrange(30)))
        counted = [0]
        for ch in line:
            counted.append(counted[-1] + units(ch, encoding))
        for index in range(len(line) + 1):
            assert to_client_units(line, index, encoding) == counted[index]
        for column in range(-2, counted[-1] + 3):
            expected = max((i for i, c in enumerate(counted) if c <= max(column, 0)), default=0)
            assert to_codepoints(line, column, encoding) == expected, (line, column)
    for _ in range(20):  # long lines of wide characters: hundreds of extra units before a column
        line = "".join(rng.choice(pieces) for _ in range(2_000))
        counted = [0]
        for ch in line:
            counted.append(counted[-1] + units(ch, encoding))
        for column in rng.sample(range(counted[-1] + 3), 50):
            expected = max(i for i, c in enumerate(counted) if c <= column)
            assert to_codepoints(line, column, encoding) == expected, column


def test_a_minified_line_of_megabytes_converts_both_ways():
    # the codec counts (C speed); one conversion per character took a second on such a line
    line = "var a=function(b){return b+1};" * 60_000 + "/* ✓ 𝔘 */" + "x" * 500_000
    end = to_client_units(line, len(line), "utf-16")
    assert end == len(line) + 1  # 𝔘 takes two UTF-16 units
    assert to_codepoints(line, end - 3, "utf-16") == len(line) - 3
    assert to_codepoints(line, 1_800_006, "utf-16") == 1_800_005  # inside 𝔘's surrogate pair: its start
    assert to_client_units(line, len(line), "utf-8") == len(line) + 2 + 3  # ✓ 3 bytes, 𝔘 4


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_long_line_typed_into_converts_as_the_codec_counts(encoding):
    # Columns of a long line are counted on from a kept head of it (lines._heads): typing after the
    # head, editing before it (even keeping its length: "é" for "✓") and other lines must all count
    # as the codec does over the whole head.
    from completer import lines as lines_module

    def counted(line, index):
        return len(line[:index].encode(encoding.replace("utf-16", "utf-16-le"), "surrogatepass")) // (
            2 if encoding == "utf-16" else 1)

    rng = random.Random(11)
    wide = ["é", "✓", "𝔘", "\ud83d"]
    line = "".join(rng.choice(wide) if rng.random() < 0.01 else "x" for _ in range(40_000))
    cursor = 30_000
    for step in range(200):
        roll = rng.random()
        if roll < 0.7:  # typing at the cursor
            line, cursor = line[:cursor] + rng.choice(["a", "é", "𝔘"]) + line[cursor:], cursor + 1
        elif roll < 0.85:  # a character far before the cursor changes, its width with it
            at = rng.randrange(cursor)
            line = line[:at] + rng.choice(["✓", "é", "y", "𝔘"]) + line[at + 1:]
        else:
            cursor = rng.randrange(len(line))
        for index in (cursor, cursor + 1, rng.randrange(len(line)), len(line)):
            assert to_client_units(line, index, encoding) == counted(line, index), (step, index)
        other = "y" * 20_000 + "é"
        assert to_client_units(other, 20_001, encoding) == counted(other, 20_001)
    assert lines_module._heads  # the kept heads were in play


def test_the_tree_follows_the_lines_when_read_not_at_each_edit():
    doc = Document.from_text("file:///t.py", "python", 1, "def f(x):\n    return x\n")
    typed = "def g(y):\n    return y * 2\n"
    line, column = 2, 0
    for ch in typed:  # typed at the end, one key at a time, nobody reading the tree
        doc.apply_change((line, column), (line, column), ch, "utf-16")
        line, column = (line + 1, 0) if ch == "\n" else (line, column + 1)
    assert doc.text.endswith(typed)
    snapshot = doc.snapshot  # one incremental re-parse for all the keys
    assert snapshot.source == doc.text.encode()
    names = [n.child_by_field_name("name").text for n in snapshot.tree.root_node.children]
    assert names == [b"f", b"g"]
    assert doc.snapshot is snapshot  # nothing changed since: no re-parse


def test_a_large_document_gets_its_tree_around_the_cursor_asked_about():
    from completer.syntax import WINDOW_FROM_BYTES

    functions = [f"def f{i}(x):\n    return x + {i}\n\n" for i in range(WINDOW_FROM_BYTES // 30)]
    doc = Document.from_text("file:///big.py", "python", 1, "".join(functions))
    assert doc.snapshot.tree is None  # opened: nothing parsed on the event loop until a cursor is known
    for k in (2, len(functions) // 2, len(functions) - 2):  # the return line of function k
        row = 3 * k + 1
        snapshot = doc.snapshot_at((row, 4))
        node = snapshot.tree.root_node.named_descendant_for_point_range((row, 4), (row, 4))
        assert node.type == "return_statement" and node.text == doc.lines[row].strip().encode(), row
    window = snapshot.window
    doc.apply_change((row, 4), (row, 4), "y = 1\n    ", "utf-16")  # typed there: the same window, moved along
    again = doc.snapshot_at((row + 1, 4))
    assert again.window == (window[0], window[1] + 10) and again.tree.root_node.named_descendant_for_point_range(
        (row, 4), (row, 4)).type == "identifier"
    assert doc.snapshot_at((row + 1, 4)) is again


def test_the_prompt_shows_the_file_name_decoded_not_the_uri():
    from lsp.documents import prompt_path

    assert prompt_path("file:///home/ana/src/pkg/models.py") == "models.py"
    assert prompt_path("file:///home/ana/my%20notes/donn%C3%A9es%20brutes.py") == "données brutes.py"
    assert prompt_path("untitled:Untitled-1") == "untitled:Untitled-1"
    assert prompt_path("file:///home/ana/") == "untitled"


def test_a_document_too_large_for_a_tree_is_not_joined_to_learn_it_at_each_key(monkeypatch):
    """Past MAX_PARSE_BYTES a document gets no tree. Its snapshot is None from its length in code
    points, kept with each edit: a key no longer joins and encodes megabytes to find that out. Below
    the limit again, it gets its tree back."""
    from completer import syntax

    monkeypatch.setattr(syntax, "MAX_PARSE_BYTES", 2_000)
    monkeypatch.setattr("lsp.documents.MAX_PARSE_BYTES", 2_000)
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(80))  # 2,370 characters
    doc = Document.from_text("file:///big.py", "python", 1, body)
    joined = []
    monkeypatch.setattr(Document, "text", property(lambda d: joined.append(1) or "".join(d.lines)))
    doc.apply_change((5, 4), (5, 4), "y = 2; ", "utf-16")
    assert doc.snapshot_at((5, 8)) is None and doc.snapshot is None and not joined
    doc.apply_change((0, 0), (60, 0), "", "utf-16")  # most of it deleted: 590 characters left
    assert doc.chars == len("".join(doc.lines)) < 2_000
    assert doc.snapshot.tree is not None and doc.snapshot.source == "".join(doc.lines).encode()


def test_versions_say_only_one_line_changed_when_that_is_so_and_never_otherwise():
    """lines.same_but_for_row reads how versions were made (reuse.typed_since asks it at each key).
    Over random typing, line breaks and deletions, it is never wrong, and it knows the common case:
    typing within the line of a shown suggestion."""
    from completer.lines import replace_range, same_but_for_row

    rng = random.Random(11)
    doc = Document.from_text("file:///v.py", "python", 1, "".join(f"line {i} = {i}\n" for i in range(30)))
    versions, row = [doc.lines], 3
    for _ in range(400):
        if rng.random() < 0.15:
            row = rng.randrange(len(doc.lines))  # the cursor moves
        column = rng.randrange(len(doc.lines[row].rstrip("\r\n")) + 1)
        edit = rng.random()
        if edit < 0.8:
            doc.apply_change((row, column), (row, column), rng.choice("abc ("), "utf-16")
        elif edit < 0.9:
            doc.apply_change((row, column), (row, column), "\n", "utf-16")
        else:
            doc.apply_change((row, 0), (min(row + 1, len(doc.lines) - 1), 0), "", "utf-16")
        row = min(row, len(doc.lines) - 1)
        versions.append(doc.lines)
    known = 0
    for i, old in enumerate(versions):
        for new in versions[i:i + 25]:
            for r in {rng.randrange(len(new)), getattr(new, "edited_from", None) and new.edited_from[1]} - {None}:
                if same_but_for_row(old, new, r):
                    known += old is not new
                    assert len(old) == len(new) and all(a == b for k, (a, b) in enumerate(zip(old, new)) if k != r)
    assert known > 500
    # Two versions edited from one base at different lines (a fork: replace_range on an old version)
    base = Document.from_text("file:///f.py", "python", 1, "a = 1\nb = 2\nc = 3\n").lines
    first = replace_range(base, (0, 0), (0, 0), "x")
    second = replace_range(base, (2, 0), (2, 0), "y")
    assert not same_but_for_row(first, second, 2) and not same_but_for_row(second, first, 0)


def test_old_versions_are_let_go_once_typing_moves_to_other_lines():
    import gc

    from completer.lines import Lines

    doc = Document.from_text("file:///w.py", "python", 1, "x = 1\n" * 1000)
    for row in range(0, 1000, 10):  # a few keys on each of 100 lines
        for column in range(3):
            doc.apply_change((row, column), (row, column), "a", "utf-16")
    gc.collect()
    versions = [o for o in gc.get_objects() if isinstance(o, Lines) and len(o) == len(doc.lines)]
    assert doc.lines in versions and len(versions) <= 2  # the current version and its base
