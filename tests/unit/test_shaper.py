"""OutputShaper: our side of the stop rules for backends that generate on their own."""

import threading
import time

from completer.engines.contract import GenerationRequest, GenerationStats, StopRules
from completer.engines.shaper import OutputShaper

# A toy vocabulary: id -> bytes. 9 is a stop id; 5 and 6 are the two halves of "é".
VOCAB = [b"a", b"b", b" ", b"\n", b"ret", b"\xc3", b"\xa9", b"urn", b"(", b"<eos>"]


def shaper(**kw) -> OutputShaper:
    stop = kw.pop("stop", StopRules(frozenset({9}), max_lines=0))
    return OutputShaper(GenerationRequest((1,), stop=stop, **kw), GenerationStats(), VOCAB)


def feed_ids(s: OutputShaper, *ids):
    return "".join(d.text for d in (s.add_tokens([t]) for t in ids) if d is not None)


def feed_text(s: OutputShaper, *pieces):
    deltas = [s.add_text(p) for p in pieces] + [s.flush()]
    return "".join(d.text for d in deltas if d is not None)


def test_stop_id_ends_the_answer_and_is_not_shown():
    s = shaper()
    assert feed_ids(s, 0, 1, 9, 0) == "ab"
    assert s.finish == "stop_token" and s.stats.decode_tokens == 2


def test_utf8_is_held_back_until_complete():
    s = shaper()
    assert s.add_tokens([5]).text == ""  # the id is reported, the half character is not
    assert s.add_tokens([6]).text == "é"


def test_stop_string_split_across_pieces_is_found():
    s = shaper(stop=StopRules(stop_strings=("urn(",), max_lines=0))
    assert s.add_text("ret").text == "ret"
    assert s.add_text("ur") is None  # may begin the stop string: held back
    assert s.add_text("n(x") is None and s.finish == "stop_string"
    s = shaper(stop=StopRules(stop_strings=("urn(",), max_lines=0))
    assert feed_text(s, "ret", "ur", "ned") == "returned" and s.finish == ""  # flushed at the end


def test_line_limit_and_block_end():
    s = shaper(stop=StopRules(max_lines=1))
    assert feed_ids(s, 0, 3, 1) == "a" and s.finish == "max_lines"
    s = shaper(stop=StopRules(max_lines=0, min_indent=4))
    assert feed_text(s, "x = 1\n", "    y\n", "z") == "x = 1\n    y" and s.finish == "block_end"


def test_token_budget():
    s = shaper(max_new_tokens=2)
    assert feed_ids(s, 0, 1) == "ab" and s.finish == "max_tokens"


def test_heal_prefix_retyped_is_hidden_and_a_wrong_one_drops_the_answer():
    s = shaper(heal_prefix=b"re")
    assert feed_ids(s, 4, 7) == "turn"
    s = shaper(heal_prefix=b"re")
    assert feed_ids(s, 0, 1) == "" and s.finish == "heal_mismatch"
    s = shaper(heal_prefix=b"return")  # longer than the first token: wait for more before judging
    assert s.add_tokens([4]).text == "" and not s.finish
    assert feed_ids(s, 7, 8) == "(" and not s.finish


def test_cancel_and_deadline():
    cancel = threading.Event()
    s = shaper()
    assert s.check(cancel) == ""
    cancel.set()
    assert s.check(cancel) == "cancelled"
    s = shaper(deadline_s=time.monotonic() - 1)
    assert s.check(None) == "deadline"
