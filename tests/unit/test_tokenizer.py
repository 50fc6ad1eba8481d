from completer.tokenizer import Tokenizer


def test_special_tokens_are_ids_and_literal_text_is_not(fixture_model_dir):
    tok = Tokenizer(fixture_model_dir)
    mid = tok.id_of("<|fim_middle|>")
    assert mid is not None and tok.is_special(mid)
    ids = tok.encode("x = '<|fim_middle|>'")
    assert mid not in ids  # user text never turns into a sentinel
    assert tok.decode(ids) == "x = '<|fim_middle|>'"


def test_bytes_roundtrip_including_non_ascii(fixture_model_dir):
    tok = Tokenizer(fixture_model_dir)
    for text in ["def f(x):\n    return x  # ok\n", "naïve = 'héllo wörld ✓ 𝔘'", "\t\r\n  \n"]:
        assert tok.decode(tok.encode(text)) == text
        assert tok.decode_bytes(tok.encode(text)) == text.encode("utf-8")


def test_indentation_is_its_own_token_before_words(fixture_model_dir):
    tok = Tokenizer(fixture_model_dir)
    ids = tok.encode("    return x")
    assert tok.token_bytes[ids[0]] == b"    "
    assert tok.decode(ids[1:]) == "return x"


def test_encode_cached_matches_encode(fixture_model_dir):
    tok = Tokenizer(fixture_model_dir)
    text = "import os\n\nprint(os.getcwd())\n"
    assert list(tok.encode_cached(text)) == tok.encode(text)
    assert tok.encode_cached(text) is tok.encode_cached(text)


TRICKY = [
    "a\n", "\n", "\n\n\n", "x\n\n\n\ny", "\n\n  \n\t\n \nz", "    return x  \n", "trailing  ", "only one line",
    "naïve = 'héllo ✓ 𝔘'\n\n# 日本語\n", "s = '<|fim_middle|>'\n<|file_sep|>\n", "\f\n\x0b\n\u2028\n\u00a0x\n",
    "lone \ud800 surrogate\n\nnext\n", "a\r\nb\r\n", "a\rb\n", "\n" * 300 + "end", "x" * 5000 + "\n" + "y" * 10,
]


def _windows_of_real_files(count: int) -> list[str]:
    """Runs of whole lines cut from this Python's standard library, as the prompt windows are cut."""
    import random
    import sysconfig
    from pathlib import Path

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    rng = random.Random(7)
    windows = []
    for path in rng.sample(files, count):
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        start = rng.randrange(len(lines))
        windows.append("\n".join(lines[start:start + rng.randrange(1, 250)]) + rng.choice(["", "\n", "\n\n"]))
    return windows


def test_windows_encoded_a_line_at_a_time_equal_the_whole_encoding(fixture_model_dir):
    """encode_cached builds a multi-line text from its lines' tokens (cached across calls) and its
    runs of line breaks; that must be exactly what encoding the whole text gives, or every prompt
    window (and the training samples cut the same way) would change."""
    from completer.engines.model_dirs import resolve_model

    for model_dir in (fixture_model_dir, resolve_model("embedded"), resolve_model("embedded-draft")):
        tok = Tokenizer(model_dir)
        assert tok.encodes_lines_apart  # else encode_cached never takes the path under test
        for text in TRICKY + _windows_of_real_files(80):
            assert tok.encode_cached(text) == tuple(tok.encode(text)), repr(text[:80])
        # the second time round, from the cache of lines, with the whole-text cache emptied
        tok._encode_cache.clear()
        for text in TRICKY:
            assert tok.encode_cached(text) == tuple(tok.encode(text)), repr(text[:80])


def test_a_line_longer_than_the_cache_takes_is_encoded_but_not_kept(fixture_model_dir):
    tok = Tokenizer(fixture_model_dir)
    long_line, short = "z = [" + "1, " * 2000 + "]", "short = 1"
    text = f"{long_line}\n{short}\n"
    assert tok.encode_cached(text) == tuple(tok.encode(text))
    assert short in tok._body_cache and long_line not in tok._body_cache


def test_the_cache_of_lines_keeps_to_its_characters_oldest_first(fixture_model_dir, monkeypatch):
    import completer.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "_BODY_CACHE_CHARS", 300)
    tok = Tokenizer(fixture_model_dir)
    texts = [f"value_{i} = compute({i}, {i * 7})\nnext_{i}()\n" for i in range(40)]
    for text in texts:
        assert tok.encode_cached(text) == tuple(tok.encode(text))
        assert tok._body_cache_chars == sum(map(len, tok._body_cache)) <= 300
    assert "next_39()" in tok._body_cache and "next_0()" not in tok._body_cache
