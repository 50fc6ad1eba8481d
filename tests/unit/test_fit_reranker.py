"""Fitting the reranker (engine_builds/fit_reranker.py): the regression on numbers, and the collection
of features through the real completer on the tiny fixture model."""

import gzip
import json
import math
import random

import pytest

from completer.completion.pipeline import Completer, CompletionSettings
from completer.completion.rerank import FEATURES, ModelNotes, Reranker
from completer.engines.torch.engine import TorchEngine
from engine_builds.fit_reranker import (
    Decision,
    cases_and_pool,
    collect,
    fit,
    gate_examples,
    read_records,
    reranker_examples,
    threshold_key,
    without,
    write_records,
)
from engine_builds.line_cases import Case, line_cases


def test_fit_finds_the_feature_that_predicts_exactness():
    rng = random.Random(3)
    n, telling = len(FEATURES), FEATURES.index("known_identifiers")
    xs = [[1.0] + [rng.gauss(0, 1) for _ in range(n - 1)] for _ in range(600)]
    ys = [float(x[telling] + rng.gauss(0, 0.3) > 0.8) for x in xs]
    reranker = fit(xs, ys)
    weights = [abs(w) for w in reranker.weights[1:]]
    assert max(range(len(weights)), key=weights.__getitem__) + 1 == telling
    high, low = list(xs[0]), list(xs[0])
    high[telling], low[telling] = 2.0, -2.0
    assert reranker.probability(high) > 0.9 and reranker.probability(low) < 0.1


def test_collect_reads_the_features_the_reranker_saw(fixture_model_dir):
    engine = TorchEngine(fixture_model_dir, device="cpu", dtype="float32", decode_dtype="none", max_seq=512)
    completer = Completer(engine, CompletionSettings(multiline=False, max_tokens=8),
                          notes=ModelNotes(reranker=Reranker.neutral()))
    text = "".join(f"def f{i}(self):\n    self.assertEqual(a{i}, {i})\n    return a{i} + {i}\n\n" for i in range(12))
    cases = line_cases([{"path": "pkg/t.py", "text": text}], 6, seed=1)
    decisions = collect(completer, cases)
    assert len(decisions) == len(cases)  # one decision per cursor
    xs, ys = reranker_examples(decisions)
    assert xs and len(xs) == len(ys) and all(len(x) == len(FEATURES) for x in xs)
    assert set(ys) <= {0.0, 1.0}
    named = [dict(zip(FEATURES, x)) for x in xs]
    assert sum(x["from_model"] for x in named) == len(cases)  # the model's own text, once per case
    assert all(x["bias"] == 1.0 and x["candidates"] >= 1 and x["logprob_sum_gap"] <= 0 for x in named)
    assert any(x["logprob_sum_gap"] == pytest.approx(0.0) for x in named)
    # With typed characters, the same candidates again after the user typed into them: more examples,
    # those with `typed` set, and none typed past the cases' first characters.
    typed_decisions = collect(completer, cases, typed_chars=2)
    xs_typed, ys_typed = reranker_examples(typed_decisions)
    typed = [dict(zip(FEATURES, x))["typed"] for x in xs_typed]
    assert len(xs_typed) > len(xs) and len(ys_typed) == len(xs_typed)
    allowed = {0.0, math.log1p(1), math.log1p(2)}  # typed 0, 1 or 2 characters
    assert all(any(t == pytest.approx(a) for a in allowed) for t in typed)
    assert any(t == pytest.approx(math.log1p(1)) for t in typed)
    assert sum(t == 0.0 for t in typed) == len(xs)


def test_the_gate_learns_from_the_candidate_the_reranker_puts_first():
    # Two candidates per decision: the reranker prefers the longer match (log_match); only the one it
    # prefers is an example for the gate, labelled by whether the user would take some of it.
    n, match, source = len(FEATURES), FEATURES.index("log_match"), FEATURES.index("from_model")

    def candidate(log_match: float, from_model: float) -> list[float]:
        x = [1.0] + [0.0] * (n - 1)
        x[match], x[source] = log_match, from_model
        return x

    decisions = [Decision([candidate(1.0, 1.0), candidate(3.0, 0.0)], [False, True], [True, True]),
                 Decision([candidate(2.0, 1.0), candidate(0.5, 0.0)], [False, False], [True, False]),
                 Decision([candidate(1.0, 1.0), candidate(1.0, 0.0)], [False, False], [False, True])]  # a tie
    weights = tuple(1.0 if i == match else 0.0 for i in range(n))
    reranker = Reranker(weights, (0.0,) * n, (1.0,) * n)
    xs, ys = gate_examples(decisions, reranker)
    assert [x[match] for x in xs] == [3.0, 2.0, 1.0] and ys == [1.0, 1.0, 0.0]
    assert xs[2][source] == 1.0  # the model's own text wins a tie, as Reranker.rank has it


def test_threshold_keys_name_a_cursor_kind_a_language_or_both():
    languages = ["c", "python"]
    assert [threshold_key(k, languages) for k in ("mid_line", "c", "c:line_start")] == ["mid_line", "c", "c:line_start"]
    for bad in ("go", "go:mid_line", "c:middle", "c:", ":mid_line"):
        with pytest.raises(SystemExit):
            threshold_key(bad, languages)


def test_collect_records_sources_and_the_workspace(fixture_model_dir, tmp_path):
    engine = TorchEngine(fixture_model_dir, device="cpu", dtype="float32", decode_dtype="none", max_seq=512)
    completer = Completer(engine, CompletionSettings(multiline=False, max_tokens=8),
                          notes=ModelNotes(reranker=Reranker.neutral()))
    text = "def load(stream):\n    rows = read_rows(stream, strict=True)\n"
    lines = text.splitlines(keepends=True)
    case = Case("midline", "pkg/a.py", lines[:-1] + ["    rows = read_rows("], 1, len("    rows = read_rows("),
                "stream, strict=True)")
    helper = ("pkg/b.py", "def other(stream):\n    rows = read_rows(stream, strict=True)\n")
    [alone] = collect(completer, [case], suite="val-x")
    [open_beside] = collect(completer, [case], open_files=[(helper,)], suite="val-x", workspace=1)
    assert "workspace" not in alone.sources and alone.open_files == 0
    copied = open_beside.sources.index("workspace")  # the line is only in the other open file
    assert open_beside.exact[copied] and open_beside.open_files == 1 and open_beside.kind == "midline"
    assert dict(zip(FEATURES, open_beside.features[copied]))["from_model"] == 0.0
    # Recorded and read back as they were; a fit can then give chosen features no weight.
    path = tmp_path / "records.jsonl.gz"
    write_records(path, [alone, open_beside])
    assert read_records(path) == [alone, open_beside]
    [cleared] = without([open_beside], ["log_match"])
    assert all(dict(zip(FEATURES, x))["log_match"] == 0.0 for x in cleared.features)
    assert cleared.exact == open_beside.exact
    with pytest.raises(SystemExit):
        without([open_beside], ["no_such_feature"])


def test_a_stdlib_cut_never_gets_the_test_files_in_its_workspace(tmp_path):
    corpus = tmp_path / "corpus.jsonl.gz"
    body = "".join(f"value_{i} = compute({i})\n" for i in range(40))
    with gzip.open(corpus, "wt") as f:
        for name, split in (("a.py", "train"), ("b.py", "val"), ("c.py", "test")):
            f.write(json.dumps({"path": name, "split": split, "text": body}) + "\n")
    cases, pool = cases_and_pool(corpus, 6, seed=1, split="val")
    assert {c.path for c in cases} == {"b.py"} and sorted(f["path"] for f in pool) == ["a.py", "b.py"]
    # A corpus builder's file: paths made unique by project, the cuts drawn as before.
    text = tmp_path / "val-go.jsonl"
    text.write_text("".join(json.dumps({"path": "x.go", "project": p, "text": "package x\nvar value = 1\n" * 5}) + "\n"
                            for p in ("one", "two")))
    cases, pool = cases_and_pool(text, 3, seed=1, split="val")
    assert sorted(f["path"] for f in pool) == ["one/x.go", "two/x.go"] and {c.path for c in cases} <= {"one/x.go", "two/x.go"}
