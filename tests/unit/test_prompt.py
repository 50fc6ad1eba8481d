"""Contract 1 layout and its cache stability, on the fixture tokenizer."""

import functools

import pytest

from completer.completion.fim import UnknownFimTemplateError, detect_template
from completer.completion.prompt import PromptSettings, build_prompt
from completer.lines import split_lines
from completer.tokenizer import Tokenizer

SOURCE = "".join(f"def function_{i}(x):\n    y = x * {i}\n    return y + {i}\n\n" for i in range(60))


@pytest.fixture(scope="module")
def tok(fixture_model_dir):
    return Tokenizer(fixture_model_dir)


@pytest.fixture(scope="module")
def tpl(tok):
    return detect_template(tok)


def test_layout_order_and_sentinels(tok, tpl):
    lines = split_lines("import os\n\ndef f():\n    return os.getcwd()\n")
    p = build_prompt(tok, tpl, lines, 3, 11, path="pkg/mod.py")
    ids = list(p.ids)
    assert ids[0] == tpl.file_sep_id
    i_pre, i_suf, i_mid = ids.index(tpl.prefix_id), ids.index(tpl.suffix_id), ids.index(tpl.middle_id)
    assert 0 < i_pre < i_suf < i_mid and p.stable_len == i_mid + 1
    assert tok.decode(ids[1:i_pre]) == "pkg/mod.py\n"
    assert tok.decode(ids[i_pre + 1:i_suf]) == "import os\n\ndef f():\n"
    assert tok.decode(ids[i_suf + 1:i_mid]) == "os.getcwd()\n"
    # the cursor line's left part goes after the middle marker, its last token backed up for healing
    assert tok.decode(ids[i_mid + 1:]).encode() + p.heal_prefix == b"    return "
    assert p.left == "    return " and p.right == "os.getcwd()"


def test_fifty_keystrokes_change_only_tokens_after_the_middle_marker(tok, tpl):
    lines = split_lines(SOURCE)
    line_no = 100
    typed = "    value = compute(alpha, beta) + gamma * delta - epsilon / 2 ** 3"
    assert len(typed) >= 50
    base = lines[line_no]
    prompts = []
    for n in range(len(typed) - 50, len(typed) + 1):
        doc = lines[:line_no] + [typed[:n] + base] + lines[line_no + 1:]
        prompts.append(build_prompt(tok, tpl, doc, line_no, n, path="a.py"))
    stable = prompts[0].ids[:prompts[0].stable_len]
    for p in prompts:
        assert p.ids[:p.stable_len] == stable


def test_window_above_stays_put_while_moving_down_within_a_step(tok, tpl):
    lines = split_lines(SOURCE)
    settings = PromptSettings(budget_tokens=400, window_step=16)
    starts = set()
    for line_no in range(200, 208):
        p = build_prompt(tok, tpl, lines, line_no, 0, path="a.py", settings=settings)
        i_pre = p.ids.index(tpl.prefix_id)
        above = tok.decode(p.ids[i_pre + 1:p.ids.index(tpl.suffix_id)])
        starts.add(above.split("\n", 1)[0])
    assert len(starts) <= 2  # at most one step boundary crossed in 8 lines


def test_budget_is_respected_and_huge_lines_are_cut(tok, tpl):
    settings = PromptSettings(budget_tokens=300)
    p = build_prompt(tok, tpl, split_lines(SOURCE), 150, 4, path="a.py", settings=settings)
    assert len(p.ids) <= 300
    huge = ["x = '" + "a" * 200_000 + "'\n", "y = 1\n"]
    p = build_prompt(tok, tpl, huge, 0, 100_000, path="a.py", settings=settings)
    assert len(p.ids) <= 300


def test_split_lines_follows_lsp_not_python():
    assert split_lines("a\r\nb\rc\nd") == ["a\r\n", "b\r", "c\n", "d"]
    assert split_lines("s = 'a\x0cb'\u2028\nend\n") == ["s = 'a\x0cb'\u2028\n", "end\n", ""]
    assert split_lines("") == [""]


def test_as_lf_turns_every_lsp_line_break_into_lf():
    from completer.lines import as_lf

    assert as_lf("a\r\nb\rc\nd\r") == "a\nb\nc\nd\n"
    text = "no carriage returns\n"
    assert as_lf(text) is text  # the LF case costs one scan


def test_unknown_fim_family_is_a_clear_error(tok):
    with pytest.raises(UnknownFimTemplateError, match="unknown FIM template"):
        detect_template(tok, "nonsense")
    with pytest.raises(UnknownFimTemplateError, match="does not match .* no <fim_prefix>"):
        detect_template(tok, "starcoder")


def test_indentation_is_not_healed_but_words_and_single_spaces_are(tok, tpl):
    for left, healed in [("        ", b""), ("    ret", b"t"), ("x = ", b" "), ("\t", b"")]:
        lines = split_lines(f"def f():\n{left}\n")
        p = build_prompt(tok, tpl, lines, 1, len(left), path="a.py")
        assert p.heal_prefix == healed, left  # the fixture vocabulary splits "ret" as "re" + "t"
        assert tok.decode(p.ids[p.stable_len:]).encode() + p.heal_prefix == left.encode()


BIG_CLASS = ("import os\n\n\nclass Inventory(dict):\n    \"\"\"Items by name.\"\"\"\n\n"
             + "".join(f"    def method_{i}(self, key):\n        value = self.get(key)\n        return value + {i}\n\n"
                       for i in range(60))
             + "    def save(self, path):\n        data = sorted(\n            self.items(),\n            key=str,\n"
             "        )\n        with open(path, 'w') as f:\n            f.write(str(data))\n"
             "        return len(data)\n")


def test_syntax_windows_keep_enclosing_signatures(tok, tpl):
    from completer.syntax import DocumentSyntax

    lines = split_lines(BIG_CLASS)
    row = next(i for i, ln in enumerate(lines) if "f.write" in ln)
    snap = DocumentSyntax("python", BIG_CLASS).snapshot
    settings = PromptSettings(budget_tokens=400)
    plain = build_prompt(tok, tpl, lines, row, 12, path="inv.py", settings=settings)
    aware = build_prompt(tok, tpl, lines, row, 12, path="inv.py", settings=settings, syntax=snap)

    def above(p):
        return tok.decode(p.ids[p.ids.index(tpl.prefix_id) + 1:p.ids.index(tpl.suffix_id)])

    assert "class Inventory" not in above(plain)
    window = above(aware)
    assert window.startswith("class Inventory(dict):\n")  # the class signature, kept
    first_line = window.split("\n")[1:][0] if window.split("\n")[1] else window.split("\n")[2]
    assert first_line.startswith("    def method_")  # then whole sibling methods, none cut in half
    assert "    def save(self, path):\n" in window
    assert not above(plain).startswith("    def ")  # the line window starts wherever the budget says
    assert len(aware.ids) <= 400


def test_syntax_windows_do_not_start_inside_a_statement(tok, tpl):
    from completer.syntax import DocumentSyntax, is_statement_boundary

    lines = split_lines(BIG_CLASS)
    snap = DocumentSyntax("python", BIG_CLASS).snapshot
    call = next(i for i, ln in enumerate(lines) if "self.items()," in ln)
    assert not is_statement_boundary(snap, lines, call)  # inside sorted( ... )
    assert is_statement_boundary(snap, lines, call - 1)  # "data = sorted(" starts a statement
    assert is_statement_boundary(snap, lines, call + 3)  # "with open(...)" after the closing paren


def test_prefix_stays_stable_while_typing_with_syntax(tok, tpl):
    from completer.syntax import DocumentSyntax

    lines = split_lines(BIG_CLASS)
    row = next(i for i, ln in enumerate(lines) if "return len(data)" in ln)
    doc = DocumentSyntax("python", BIG_CLASS)
    typed = "        total = compute(alpha, beta) + gamma * delta - epsilon / 2 ** 3"
    stable = None
    for n in range(8, len(typed) + 1):
        cur = lines[:row] + [typed[:n] + "\n"] + lines[row + 1:]
        snap = doc.update("".join(cur))
        p = build_prompt(tok, tpl, cur, row, n, path="inv.py", settings=PromptSettings(budget_tokens=600), syntax=snap)
        stable = stable or p.ids[:p.stable_len]
        assert p.ids[:p.stable_len] == stable


def test_syntax_windows_inside_a_statement_longer_than_the_budget_fall_back_to_lines(tok, tpl):
    # A cursor inside a literal bigger than the window (an encoding table, generated data): no
    # statement boundary is in reach above or below, so the windows are cut by lines instead of
    # coming out empty (which cost the model all its context).
    from completer.syntax import DocumentSyntax

    table = "TABLE = {\n" + "".join(f"    0x{i:04x}: 0x{i * 7:04x},  # entry {i}\n" for i in range(400)) + "}\n"
    lines = split_lines(table)
    row = 200
    snap = DocumentSyntax("python", table).snapshot
    settings = PromptSettings(budget_tokens=2000)
    plain = build_prompt(tok, tpl, lines, row, 4, path="table.py", settings=settings)
    aware = build_prompt(tok, tpl, lines, row, 4, path="table.py", settings=settings, syntax=snap)

    def windows(p):
        ids = list(p.ids)
        return (tok.decode(ids[ids.index(tpl.prefix_id) + 1:ids.index(tpl.suffix_id)]),
                tok.decode(ids[ids.index(tpl.suffix_id) + 1:ids.index(tpl.middle_id)]))

    above, below = windows(aware)
    assert above == windows(plain)[0] and above.count("\n") > 5 and lines[row - 1] in above
    assert below == windows(plain)[1] and below.count("\n") > 1 and lines[row + 1] in below


def test_syntax_windows_use_the_budget_the_line_rounding_leaves(tok, tpl):
    # The line window starts at a multiple of 16 lines; a syntax window may start at a statement
    # boundary of the 16 lines above that, when it still fits: no whole sibling lost to rounding.
    from completer.completion.prompt import window_above
    from completer.syntax import DocumentSyntax, anchor_point, is_statement_boundary

    lines = split_lines(SOURCE)
    snap = DocumentSyntax("python", SOURCE).snapshot
    row = len(lines) - 3  # inside the last function
    boundary = functools.partial(is_statement_boundary, snap, lines, anchor=anchor_point(snap, lines, row))
    for budget in (200, 300, 400):
        by_lines = window_above(lines, row, tok, budget, 16)
        by_syntax = window_above(lines, row, tok, budget, 16, boundary)
        start_lines, start_syntax = row - by_lines.count("\n"), row - by_syntax.count("\n")
        assert start_lines % 16 == 0 and boundary(start_syntax)
        assert lines[start_syntax].startswith("def ") or not lines[start_syntax].strip()  # between functions
        assert start_lines - 16 <= start_syntax < start_lines  # earlier than the rounding allowed
        assert len(tok.encode(by_syntax)) <= budget
        earlier = max(r for r in range(start_syntax) if boundary(r))
        assert len(tok.encode("".join(lines[earlier:row]))) > budget  # and as early as fits


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_a_crlf_or_cr_document_gets_the_prompt_of_its_lf_twin(tok, tpl, newline):
    # The model was trained on LF text: a Windows file must not read as a stream of stray "\r" tokens,
    # and its windows must cover the same lines (the budget counts a CRLF as one character).
    from completer.syntax import DocumentSyntax

    twin = BIG_CLASS.replace("\n", newline)
    lf_lines, other_lines = split_lines(BIG_CLASS), split_lines(twin)
    assert len(lf_lines) == len(other_lines)
    chunk = ("lib/util.py", "def helper():\n    return 1\n")
    chunk_twin = ("lib/util.py", chunk[1].replace("\n", newline))
    for row in (3, len(lf_lines) // 2, len(lf_lines) - 2):
        for budget in (200, 1536):
            settings = PromptSettings(budget_tokens=budget)
            # a lone-CR document has no usable tree (tree-sitter's rows end at "\n" only): line windows
            for language in (None, "python") if newline == "\r\n" else (None,):
                snaps = [DocumentSyntax(language, text).snapshot if language else None for text in (BIG_CLASS, twin)]
                lf = build_prompt(tok, tpl, lf_lines, row, 4, path="inv.py", settings=settings, syntax=snaps[0],
                                  context=(chunk,))
                other = build_prompt(tok, tpl, other_lines, row, 4, path="inv.py", settings=settings,
                                     syntax=snaps[1], context=(chunk_twin,))
                assert other.ids == lf.ids and other.heal_prefix == lf.heal_prefix
                assert "\r" not in tok.decode(other.ids)


def test_a_lone_cr_document_gets_line_windows_not_its_misread_tree(tok, tpl):
    from completer.syntax import DocumentSyntax

    twin = BIG_CLASS.replace("\n", "\r")
    lf_lines, cr_lines = split_lines(BIG_CLASS), split_lines(twin)
    row = len(lf_lines) // 2
    settings = PromptSettings(budget_tokens=400)
    plain = build_prompt(tok, tpl, lf_lines, row, 4, path="inv.py", settings=settings)
    with_tree = build_prompt(tok, tpl, cr_lines, row, 4, path="inv.py", settings=settings,
                             syntax=DocumentSyntax("python", twin).snapshot)
    assert with_tree.ids == plain.ids


def test_windows_encoded_by_lines_choose_the_same_prompt_as_whole_windows(fixture_model_dir):
    """The line-at-a-time encoding only changes how fast the windows are measured: on real files,
    moving down line by line and jumping to new places, every prompt is the one that encoding each
    window whole chooses."""
    import sysconfig
    from pathlib import Path

    from completer.syntax import DocumentSyntax

    by_lines, whole = Tokenizer(fixture_model_dir), Tokenizer(fixture_model_dir)
    assert by_lines.encodes_lines_apart
    whole.encodes_lines_apart = False
    tpl = detect_template(by_lines)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("typing.py", "argparse.py", "tarfile.py"):
        text = (stdlib / name).read_text(encoding="utf-8")
        lines = split_lines(text)
        snapshot = DocumentSyntax("python", text).snapshot
        rows = [*range(400, 440), *range(60, len(lines) - 1, len(lines) // 12)]
        for syntax in (snapshot, None):
            for row in rows:
                column = len(lines[row]) - len(lines[row].lstrip())
                prompts = [build_prompt(tok, tpl, lines, row, column, path=name, syntax=syntax,
                                        context=(("other.py", "import os\n\n\nX = 1\n"),))
                           for tok in (by_lines, whole)]
                assert prompts[0] == prompts[1], (name, row)
