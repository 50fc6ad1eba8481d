"""Golden layouts per model family.

The tokenizers here are synthetic (documented stand-ins, built in the test): one token per
character, with each family's sentinels at the ids its published tokenizer uses (Qwen2.5-Coder,
StarCoder2, DeepSeek-Coder, CodeLlama; Codestral's are not pinned by a tokenizer we can read
offline, so it gets ids of our choosing). They pin the order of segments, which sentinels appear,
that sentinels go in as ids, and that the prefix before the cursor line's left part is the same
for every keystroke on the line.
"""

import json

import pytest
from tokenizers import AddedToken, Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from completer.completion.fim import detect_template
from completer.completion.prompt import PromptSettings, build_prompt
from completer.lines import split_lines
from completer.tokenizer import Tokenizer

FAMILY_SPECIALS = {
    "qwen": {"<|endoftext|>": 151643, "<|fim_prefix|>": 151659, "<|fim_middle|>": 151660, "<|fim_suffix|>": 151661,
             "<|fim_pad|>": 151662, "<|repo_name|>": 151663, "<|file_sep|>": 151664},
    "starcoder": {"<|endoftext|>": 0, "<fim_prefix>": 1, "<fim_middle>": 2, "<fim_suffix>": 3, "<fim_pad>": 4,
                  "<repo_name>": 5, "<file_sep>": 6},
    "deepseek": {"<｜end▁of▁sentence｜>": 32014, "<｜fim▁hole｜>": 32015, "<｜fim▁begin｜>": 32016,
                 "<｜fim▁end｜>": 32017},
    "codellama": {"</s>": 2, "▁<PRE>": 32007, "▁<SUF>": 32008, "▁<MID>": 32009, "▁<EOT>": 32010},
    "codestral": {"</s>": 2, "[PREFIX]": 11, "[MIDDLE]": 12, "[SUFFIX]": 13},  # synthetic ids
}

EXPECTED = {
    "qwen": "<|file_sep|>a.py\n<|fim_prefix|>def f(x):\n<|fim_suffix|>x\n\nprint(f(1))\n<|fim_middle|>    return ",
    "starcoder": "<file_sep>a.py\n<fim_prefix>def f(x):\n<fim_suffix>x\n\nprint(f(1))\n<fim_middle>    return ",
    "deepseek": "<｜fim▁begin｜>def f(x):\n<｜fim▁hole｜>x\n\nprint(f(1))\n<｜fim▁end｜>    return ",
    "codellama": "▁<PRE>def f(x):\n▁<SUF>x\n\nprint(f(1))\n▁<MID>    return ",
    "codestral": "[SUFFIX]x\n\nprint(f(1))\n[PREFIX]def f(x):\n    return ",
}


def synthetic(tmp_path, specials: dict[str, int]) -> Tokenizer:
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    top = max(specials.values())
    free = [i for i in range(top + len(chars) + 2) if i not in specials.values()]
    vocab = {ch: free[i] for i, ch in enumerate(chars)}
    vocab.update(specials)
    for i in free[len(chars):]:
        if i <= top:
            vocab[f"<filler_{i}>"] = i
    vocab["<unk>"] = top + len(chars) + 1
    tok = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert all(json.loads(path.read_text())["model"]["vocab"][s] == i for s, i in specials.items())
    return Tokenizer(path)


@pytest.mark.parametrize("family", list(FAMILY_SPECIALS))
def test_golden_layout(tmp_path, family):
    tok = synthetic(tmp_path, FAMILY_SPECIALS[family])
    tpl = detect_template(tok)
    assert tpl.name == family
    lines = split_lines("def f(x):\n    return x\n\nprint(f(1))\n")
    p = build_prompt(tok, tpl, lines, 1, 11, path="a.py", settings=PromptSettings(heal=False))
    assert tok.decode(p.ids) == EXPECTED[family]
    specials = FAMILY_SPECIALS[family]
    used = [t for t in p.ids if t in tok.special_ids]
    assert all(t in specials.values() for t in used)
    assert tok.decode(p.ids[p.stable_len:]) == "    return "  # the left part comes last
    # typing on the line leaves everything before the left part untouched
    typed = build_prompt(tok, tpl, split_lines("def f(x):\n    return ax\n\nprint(f(1))\n"), 1, 12, path="a.py",
                         settings=PromptSettings(heal=False))
    assert typed.ids[:typed.stable_len] == p.ids[:p.stable_len]
    assert all(s in tpl.stop_ids for s in (tpl.prefix_id, tpl.suffix_id))


def test_override_must_match_the_tokenizer(tmp_path):
    from completer.completion.fim import UnknownFimTemplateError

    tok = synthetic(tmp_path, FAMILY_SPECIALS["deepseek"])
    assert detect_template(tok, "deepseek").name == "deepseek"
    with pytest.raises(UnknownFimTemplateError):
        detect_template(tok, "qwen")
