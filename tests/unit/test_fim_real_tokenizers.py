"""Golden layouts on the real tokenizers of three code-model families (tests/vocabs.py rebuilds them
from llama.cpp's vocabulary files and proves them against llama.cpp's reference vectors first).

Pinned: the exact token ids of one prompt per family, with a context chunk from another file, the
cursor inside `    return a |+ b`. The ids are those of the families' own tokenizers, so a wrong
sentinel id, a sentinel that went in as text, a missing BOS or a changed segment order fails here.
"""

import os

import pytest

from completer.completion.fim import detect_template
from completer.completion.prompt import build_prompt
from completer.lines import split_lines
from completer.tokenizer import Tokenizer
from tests import vocabs

DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"
CONTEXT = (("util.py", "X = 1"),)

# family -> (template, pinned ids, what they decode to)
GOLDEN = {
    "qwen2": ("qwen", [
        151664, 1314, 7197, 198, 55, 284, 220, 16, 198,  # <|file_sep|>util.py\nX = 1\n
        151664, 26586, 7197, 198,  # <|file_sep|>calc.py\n
        151659, 750, 912, 2877, 11, 293, 982,  # <|fim_prefix|>def add(a, b):\n
        151661, 10, 293, 271, 1350, 25906, 7, 16, 11, 220, 17, 1171,  # <|fim_suffix|>+ b\n\nprint(add(1, 2))\n
        151660, 262, 470, 264],  # <|fim_middle|>    return a  (the space after it is healed)
        "<|file_sep|>util.py\nX = 1\n<|file_sep|>calc.py\n<|fim_prefix|>def add(a, b):\n<|fim_suffix|>+ b\n\n"
        "print(add(1, 2))\n<|fim_middle|>    return a"),
    "starcoder": ("starcoder", [
        6, 1058, 51, 997, 222, 93, 299, 244, 54, 222,  # <file_sep>util.py\nX = 1\n
        6, 10289, 51, 997, 222,  # <file_sep>calc.py\n
        1, 610, 1035, 45, 102, 49, 342, 731, 222,  # <fim_prefix>def add(a, b):\n
        3, 48, 342, 222, 222, 1243, 45, 688, 45, 54, 49, 244, 55, 509, 222,  # <fim_suffix>+ b\n\nprint(add(1, 2))\n
        2, 283, 461, 331],  # <fim_middle>    return a
        "<file_sep>util.py\nX = 1\n<file_sep>calc.py\n<fim_prefix>def add(a, b):\n<fim_suffix>+ b\n\n"
        "print(add(1, 2))\n<fim_middle>    return a"),
    "deepseek-coder": ("deepseek", [
        32013,  # <｜begin▁of▁sentence｜>: DeepSeek-Coder's tokenizer adds it
        32016, 1551, 957, 7, 64, 11, 270, 1772, 185,  # <｜fim▁begin｜>def add(a, b):\n (no file separators)
        32015, 10, 270, 185, 185, 4128, 7, 1761, 7, 16, 11, 207, 17, 1435, 185,  # <｜fim▁hole｜>+ b\n\n...
        32017, 315, 967, 245],  # <｜fim▁end｜>    return a
        "<｜begin▁of▁sentence｜><｜fim▁begin｜>def add(a, b):\n<｜fim▁hole｜>+ b\n\nprint(add(1, 2))\n"
        "<｜fim▁end｜>    return a"),
}


@pytest.fixture(scope="module", params=vocabs.FAMILIES)
def family_tokenizer(request, tmp_path_factory):
    if not vocabs.available():
        if os.environ.get("COMPLETER_REQUIRE_VOCABS"):
            pytest.fail(f"no vocabularies in {vocabs.CACHE}: `python -m tests.vocabs` fetches them")
        pytest.skip("real tokenizers not fetched: run `python -m tests.vocabs` (make test does)")
    family = request.param
    return family, Tokenizer(vocabs.tokenizer_json(family, tmp_path_factory.mktemp(family)))


def test_rebuilt_tokenizer_gives_the_reference_ids(family_tokenizer):
    family, tok = family_tokenizer
    vectors = vocabs.test_vectors(family)
    assert len(vectors) > 40
    wrong = [(text, ids, tok.encode(text)) for text, ids in vectors if tok.encode(text) != ids]
    assert not wrong


def test_golden_layout_on_the_real_tokenizer(family_tokenizer):
    family, tok = family_tokenizer
    name, ids, text = GOLDEN[family]
    tpl = detect_template(tok)
    assert tpl.name == name
    p = build_prompt(tok, tpl, split_lines(DOC), 1, 13, path="calc.py", context=CONTEXT)
    assert list(p.ids) == ids
    assert tok.decode(p.ids) == text
    assert p.heal_prefix == b" "  # the space before the cursor is backed up and re-typed
    # Typing at the cursor changes nothing before the left part.
    typed = build_prompt(tok, tpl, split_lines(DOC.replace("a + b", "a c+ b")), 1, 14, path="calc.py",
                         context=CONTEXT)
    assert typed.ids[:typed.stable_len] == p.ids[:p.stable_len]
    assert tok.decode_bytes(typed.ids[typed.stable_len:]) + typed.heal_prefix == b"    return a c"


# Which families split text into pre-tokens that never cross a line break (DeepSeek-Coder isolates
# every "\r" and "\n"); Qwen2's and StarCoder's GPT-2-style regexes join a line break to the
# indentation after it, so their windows are encoded whole.
LINES_APART = {"qwen2": False, "starcoder": False, "deepseek-coder": True}


def test_windows_are_encoded_a_line_at_a_time_only_where_the_family_allows_it(family_tokenizer):
    family, tok = family_tokenizer
    assert tok.encodes_lines_apart is LINES_APART[family]
    for text in (DOC, DOC * 20, "class A:\n\n\n    def f(self):\n        pass  \n\t\n", "\n\n\nx\n"):
        assert tok.encode_cached(text) == tuple(tok.encode(text))
