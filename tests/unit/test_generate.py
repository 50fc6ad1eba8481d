from completer.generate import NgramIndex, PrefixConstraint, find_text_stop, index_by_first_byte, utf8_complete_len


def test_ngram_draft_prefers_longest_and_latest_match():
    idx = NgramIndex([1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 2, 3])
    # tail (5, 2, 3) never occurred before; (2, 3) last occurred before 7
    assert idx.draft(3) == [7, 8, 5]
    idx.append(7)
    assert idx.draft(2) == [8, 5]  # (2, 3, 7) matched
    assert NgramIndex([4, 5, 6]).draft(4) == []


def test_ngram_draft_is_limited_to_k():
    idx = NgramIndex([1, 2, 3, 4, 5, 6, 1, 2])
    assert idx.draft(2) == [3, 4]
    assert idx.draft(10) == [3, 4, 5, 6, 1, 2]


def test_prefix_constraint_walks_through_partial_tokens():
    vocab = [b"", b"re", b"ret", b"return", b"urn", b"u", b"rn", b"x"]
    index = index_by_first_byte(vocab, frozenset())
    c = PrefixConstraint(b"retu", index, vocab)
    assert sorted(c.allowed()) == [1, 2, 3]  # "re", "ret" are prefixes; "return" extends past
    c.advance(2)  # "ret"
    assert c.remaining == b"u"
    assert sorted(c.allowed()) == [4, 5]  # "urn" and "u"
    c.advance(4)
    assert c.done


def test_utf8_complete_len_holds_back_partial_sequences():
    s = "é✓𝔘".encode()
    assert utf8_complete_len(s) == len(s)
    assert utf8_complete_len(s[:-1]) == len("é✓".encode())
    assert utf8_complete_len(s[:3]) == 2
    assert utf8_complete_len(b"abc") == 3
    assert utf8_complete_len(b"") == 0


def test_find_text_stop():
    assert find_text_stop("abc\ndef", 1, ()) == (3, "max_lines")
    assert find_text_stop("a\nb\nc", 2, ()) == (3, "max_lines")
    assert find_text_stop("a\nb", 2, ()) is None
    assert find_text_stop("x = 1  # done", 0, ("#",)) == (7, "stop_string")
    assert find_text_stop("x#\ny", 1, ("#",)) == (1, "stop_string")
