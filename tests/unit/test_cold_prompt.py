"""The cold path (CompletionSettings.cold_prompt_tokens): a keystroke whose full prompt is not cached
is answered from a short prompt, and Completer.warm prefills the full one for the next keystroke.
On the tiny fixture model: what is prefilled and when, and that the warmed answer is the full
prompt's own."""

import threading

import pytest

from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
from completer.engines.torch.engine import TorchEngine
from completer.lines import split_lines

DOC = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(40)) + "def g(x):\n    return x"
COLD = 64


@pytest.fixture()
def engine(fixture_model_dir):
    return TorchEngine(fixture_model_dir, device="cpu", dtype="float32", decode_dtype="none", max_seq=1024)


def request(doc=DOC, **kw):
    lines = split_lines(doc)
    return CompletionRequest(lines, len(lines) - 1, len(lines[-1]), path="t.py", session_key="file:///t.py", **kw)


def settings(cold=COLD) -> CompletionSettings:
    return CompletionSettings(multiline=False, max_tokens=8, deadline_ms=60_000, cold_prompt_tokens=cold)


def test_an_uncached_prompt_is_answered_short_then_warmed_to_the_full_answer(engine):
    completer = Completer(engine, settings())
    first = completer.complete(request())
    assert first.cold and first.stats.prompt_tokens <= COLD and first.stats.prefill_tokens <= COLD

    assert completer.warm(request())
    warmed = completer.complete(request())
    assert not warmed.cold and warmed.stats.prompt_tokens > 4 * COLD
    assert warmed.stats.prefill_tokens <= 2  # the warm-up left the full prompt cached

    plain = Completer(engine, settings(cold=None))  # the full prompt, always
    engine.close()  # from scratch
    full = plain.complete(request())
    assert not full.cold and full.stats.prefill_tokens == full.stats.prompt_tokens
    assert (warmed.text, warmed.stats.prompt_tokens) == (full.text, full.stats.prompt_tokens)


def test_typing_on_a_warm_line_stays_on_the_full_prompt(engine):
    completer = Completer(engine, settings())
    completer.warm(request())
    typed = request(DOC + " +")
    result = completer.complete(typed)
    assert not result.cold and result.stats.prefill_tokens <= COLD


def test_a_cancelled_warm_up_says_so_and_the_next_key_is_still_cold(engine):
    completer = Completer(engine, settings())
    cancel = threading.Event()
    cancel.set()
    assert not completer.warm(request(), cancel)
    assert completer.complete(request()).cold


def test_context_chunks_that_are_not_cached_are_left_out_of_a_cold_prompt(engine):
    chunk = "".join(f"CONSTANT_{i} = {i}\n" for i in range(60))
    completer = Completer(engine, settings())
    result = completer.complete(request(context=(("other.py", chunk),)))
    assert result.cold and result.stats.prompt_tokens <= COLD


def test_no_cold_path_without_the_setting_or_a_backend_that_can_tell(engine):
    assert not Completer(engine, settings(cold=None)).complete(request()).cold

    class NoPrefill:  # a backend that can neither stop before a long prefill nor warm up (openai, trtllm, lmdeploy)
        can_prefill = False

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

    completer = Completer(NoPrefill(engine), settings())
    result = completer.complete(request())
    assert not result.cold and result.stats.prompt_tokens > 4 * COLD
    engine.close()
    assert completer.warm(request())  # a one-token completion of the same prompt instead of a prefill
    again = Completer(engine, settings()).complete(request())
    assert not again.cold and again.stats.prefill_tokens <= 2


def test_one_line_suggestions_stop_at_line_max_tokens_and_blocks_do_not(engine):
    capped = CompletionSettings(max_tokens=24, line_max_tokens=3, deadline_ms=60_000, rerank=False, block_stop=False)
    completer = Completer(engine, capped)
    one_line = completer.complete(request(DOC + " + ("))
    assert not one_line.multiline and one_line.stats.decode_tokens <= 3
    block = completer.complete(request(DOC + "\n\ndef h(y):\n    "))  # the random fixture writes on to max_tokens
    assert block.multiline and block.stats.decode_tokens == 24
