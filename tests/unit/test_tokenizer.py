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
