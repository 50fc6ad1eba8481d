"""Scoring and reranking in one completion, on the tiny fixture model (random weights: the choices are
made by the reranker's weights given here, not by the model's skill)."""

import math

import pytest
import torch

from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
from completer.completion.rerank import FEATURES, ModelNotes, Reranker
from completer.engines.contract import ScoreRequest
from completer.engines.torch.engine import TorchEngine
from completer.lines import split_lines

DOC = "def f(self):\n    self.assertEqual(a, 1)\n    self.assertEqual(b, 2)\n    self.ass"


@pytest.fixture(scope="module")
def engine(fixture_model_dir):
    return TorchEngine(fixture_model_dir, device="cpu", dtype="float32", decode_dtype="none", max_seq=512)


def request(doc=DOC, path="t.py", language_id=""):
    lines = split_lines(doc)
    return CompletionRequest(lines, len(lines) - 1, len(lines[-1]), path=path, language_id=language_id)


def reranker(feature: str, weight: float, threshold: float = 0.0) -> Reranker:
    weights = tuple(weight if name == feature else 0.0 for name in FEATURES)
    return Reranker(weights, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), {"default": threshold})


def test_scores_equal_a_full_forward_and_leave_the_prompt_cached(engine):
    prompt = tuple(engine.tokenizer.encode("x = 1\ny = 2\nz = "))
    continuations = (tuple(engine.tokenizer.encode("3\n")), tuple(engine.tokenizer.encode("x + y + 1")) + (0,), ())
    scores = engine.score(ScoreRequest(prompt, continuations))
    for tokens, got in zip(continuations, scores):
        seq = list(prompt) + list(tokens)
        with torch.inference_mode():
            logits = engine.model(torch.tensor([seq]))[0, len(prompt) - 1:len(seq) - 1].float()
        want = torch.log_softmax(logits, -1)[torch.arange(len(tokens)), torch.tensor(tokens, dtype=torch.long)]
        assert got == pytest.approx(want.tolist(), abs=1e-4)
    assert engine.slot.cached_ids == list(prompt)


def test_a_copy_wins_when_the_reranker_trusts_long_matches(engine):
    completer = Completer(engine, CompletionSettings(multiline=False), notes=ModelNotes(
        reranker=reranker("log_match", 5.0)))
    result = completer.complete(request())
    assert result.source == "document" and result.text in ("ertEqual(b, 2)", "ertEqual(a, 1)")
    assert result.confidence > 0.99 and result.timings.rerank_ms > 0
    sources = [s.candidate.source for s in result.ranked]
    assert sources.count("model") == 1 and sources.count("document") == 2
    assert set(result.alternatives) <= {"ertEqual(b, 2)", "ertEqual(a, 1)"} | {s.candidate.text for s in result.ranked}


def test_at_a_line_start_the_line_above_the_same_line_below_is_offered(engine):
    doc = ("for name in names:\n    value = lookup(name)\n    results.append(value)\n"
           "for key in keys:\n    \n    results.append(value)\n")
    lines = split_lines(doc)
    req = CompletionRequest(lines, 4, 4, path="t.py")
    completer = Completer(engine, CompletionSettings(multiline=False), notes=ModelNotes(
        reranker=reranker("anchored_below", 5.0)))
    result = completer.complete(req)
    below = [s for s in result.ranked if s.candidate.source == "below"]
    assert [s.candidate.text for s in below] == ["value = lookup(name)"]
    assert result.text == "value = lookup(name)" and result.source == "below"
    assert dict(zip(FEATURES, below[0].features))["anchored_below"] == 1.0


def test_below_the_threshold_nothing_is_shown(engine):
    notes = ModelNotes(reranker=reranker("bias", -3.0, threshold=0.5))  # every candidate at p ~ 0.05
    result = Completer(engine, CompletionSettings(multiline=False), notes=notes).complete(request())
    assert result.text == "" and result.withheld == "confidence" and result.confidence < 0.5
    shown = Completer(engine, CompletionSettings(multiline=False, min_confidence=0.0), notes=notes).complete(request())
    assert shown.withheld == "" and shown.confidence == pytest.approx(result.confidence)


def test_the_gate_decides_whether_the_best_candidate_is_shown(engine):
    """With a gate, its probability is the confidence and its thresholds apply, not the reranker's."""
    ranker = reranker("bias", -3.0, threshold=0.9)  # every candidate at p ~ 0.05: it only orders them
    shown = Completer(engine, CompletionSettings(multiline=False),
                      notes=ModelNotes(reranker=ranker, gate=reranker("bias", 3.0, threshold=0.5))).complete(request())
    assert shown.text == shown.ranked[0].candidate.text != "" and shown.withheld == ""
    assert shown.confidence == pytest.approx(1 / (1 + math.exp(-3.0)))
    shut = Completer(engine, CompletionSettings(multiline=False),
                     notes=ModelNotes(reranker=ranker, gate=reranker("bias", -3.0, threshold=0.5)))
    withheld = shut.complete(request())
    assert withheld.text == "" and withheld.withheld == "confidence" and withheld.held is not None
    assert withheld.confidence == pytest.approx(1 / (1 + math.exp(3.0))) and shut.threshold("mid_word") == 0.5
    copy = next(s.candidate.text for s in withheld.held.ranked if s.candidate.source == "document")
    assert shut.reconsider(withheld.held, copy[0])[0] == ""  # typed into: the gate still says no


def test_a_languages_own_threshold_applies_to_its_files_and_to_reconsidering(engine):
    gate = reranker("bias", 0.0)  # every candidate at p = 0.5
    gate = Reranker(gate.weights, gate.mean, gate.scale, {"default": 0.4, "go": 0.6})
    completer = Completer(engine, CompletionSettings(multiline=False),
                          notes=ModelNotes(reranker=reranker("log_match", 5.0), gate=gate))
    assert completer.complete(request()).withheld == ""
    go = completer.complete(request(path="t.go", language_id="go"))
    assert go.text == "" and go.withheld == "confidence" and go.held.language == "go"
    copy = next(s.candidate.text for s in go.held.ranked if s.candidate.source == "document")
    assert completer.reconsider(go.held, copy[0])[0] == ""  # still Go's threshold after typing
    assert completer.threshold("mid_line", "go") == 0.6 and completer.threshold("mid_line", "python") == 0.4


def test_without_a_reranker_the_model_text_is_shown_ungated(engine):
    # No deadline: on a busy machine one run could stop earlier than the other and differ in text.
    plain = Completer(engine, CompletionSettings(multiline=False, deadline_ms=60_000),
                      notes=ModelNotes()).complete(request())
    off = Completer(engine, CompletionSettings(multiline=False, rerank=False, deadline_ms=60_000),
                    notes=ModelNotes(reranker=reranker("log_match", 5.0))).complete(request())
    assert plain.source == off.source == "model" and plain.confidence is None and not plain.ranked
    assert plain.text == off.text


def test_a_language_the_model_was_not_trained_on_gets_nothing(engine):
    completer = Completer(engine, CompletionSettings(multiline=False), notes=ModelNotes(languages=frozenset({"python"})))
    go = completer.complete(request("package main\n\nfunc main() {\n\tfmt.Pri", path="main.go", language_id="go"))
    assert go.text == "" and go.withheld == "language" and go.stats.decode_tokens == 0
    assert completer.complete(request()).withheld == ""
    assert completer.serves(None)  # a document of no known language is served
    typescript = Completer(engine, notes=ModelNotes(languages=frozenset({"typescript"})))
    assert typescript.serves("tsx") and not typescript.serves("javascript")  # TSX is TypeScript's dialect


def test_the_model_texts_logprobs_come_from_its_generation(engine):
    """What the decode loop reports equals a scoring pass over the same tokens: the model's own
    candidate needs no forward of its own."""
    completer = Completer(engine, CompletionSettings(multiline=False, speculative=True),
                          notes=ModelNotes(reranker=Reranker.neutral()))
    req = request()
    prompt, multiline = completer._prompt(req)
    gen = completer._generate(req, prompt, multiline, None, None)
    assert gen.token_ids and len(gen.stats.token_logprobs) == len(gen.stats.watch_logprobs) >= len(gen.token_ids)
    text = b"".join(engine.tokenizer.token_bytes[t] for t in gen.token_ids[:2])
    known = completer._generated_logprobs(gen, text)
    scored = engine.score(ScoreRequest(prompt.ids, (tuple(gen.token_ids[:2]) + (completer.template.end_id,),)))[0]
    assert known == pytest.approx(scored, abs=1e-4)
    assert completer._generated_logprobs(gen, text + b"\x00") is None  # not spelled by the tokens


def test_a_consumer_that_raises_mid_generation_leaves_the_engine_free(engine):
    # The torch engine holds its lock while its generator is suspended; the exception's traceback keeps
    # the pipeline's frame (and so the stream) alive, so only an explicit close frees the engine.
    completer = Completer(engine, CompletionSettings(multiline=False, min_confidence=0.0))

    def boom(_text: str) -> None:
        raise RuntimeError("the consumer fails")

    with pytest.raises(RuntimeError, match="the consumer fails") as failure:
        completer.complete(request(), on_text=boom)
    assert failure.value.__traceback__ is not None  # still held here, as a logged exception would be
    assert engine._lock.acquire(timeout=1.0), "the engine's lock is still held by the abandoned stream"
    engine._lock.release()
    assert completer.complete(request()).text


def test_a_withheld_suggestion_is_reconsidered_as_the_user_types_it(engine):
    """Shorter copies are likelier here (the reranker reads only the length and the source): withheld
    at first, shown once the user typed all but a character of it, without asking the model again."""
    # z = 2 - len(text), and the model's own text (random weights) never wins.
    weights = tuple({"bias": 2.0, "chars": -40.0, "from_model": -100.0}.get(name, 0.0) for name in FEATURES)
    notes = ModelNotes(reranker=Reranker(weights, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), {"default": 0.5}))
    completer = Completer(engine, CompletionSettings(multiline=False), notes=notes)
    result = completer.complete(request())
    assert result.withheld == "confidence" and result.held is not None
    for s in result.held.ranked:  # each candidate's tokens spell the healed text and the candidate
        assert len(s.token_ends) == len(s.logprobs) - 1 and s.token_ends[-1] == s.healed + len(s.candidate.text.encode())
    best = next(s.candidate.text for s in result.held.ranked if s.candidate.source == "document")
    assert best in ("ertEqual(b, 2)", "ertEqual(a, 1)")
    text, held = completer.reconsider(result.held, best[0])
    assert text == "" and held is not None and held.around.left.endswith(best[0])
    assert all(s.candidate.text == c.candidate.text[1:] for s, c in zip(
        sorted(held.ranked, key=lambda s: s.candidate.text),
        sorted((c for c in result.held.ranked if c.candidate.text.startswith(best[0])), key=lambda s: s.candidate.text)))
    assert completer.reconsider(held, best[1:-1]) == (best[-1], None)
    assert completer.reconsider(result.held, "\x00") is None  # no candidate predicted it: ask the model


def test_the_prompt_budget_is_the_users_else_the_default(engine):
    long_doc = "".join(f"{i % 10}\n" for i in range(2000)) + "x = "
    sizes = [Completer(engine, CompletionSettings(multiline=False, rerank=False, prompt_tokens=budget))
             .complete(request(long_doc)).stats.prompt_tokens for budget in (200, 300, None)]
    # The windows take what the budget leaves beside the cursor line's reserve; the default (1,536) is
    # bound by this engine's 512 tokens.
    assert CompletionSettings(prompt_tokens=200).prompt_budget == 200 and CompletionSettings().prompt_budget == 1536
    assert sizes[0] <= 200 and sizes[1] <= 300 and sizes[0] < sizes[1] < sizes[2]
