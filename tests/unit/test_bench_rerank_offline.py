"""bench/rerank_offline.py: a shipped reranker is read by feature name, and the variants are judged
on the candidate each one chooses and on what its gate shows."""

import json

from completer.completion.rerank import FEATURES, Reranker
from engine_builds.fit_reranker import Decision
from tests.conftest import bench_module


def offline_module():
    return bench_module("rerank_offline")


def candidate(**named: float) -> list[float]:
    return [1.0 if name == "bias" else named.get(name, 0.0) for name in FEATURES]


def test_notes_of_an_older_feature_list_give_the_new_features_no_weight(tmp_path):
    m = offline_module()
    older = [name for name in FEATURES if name != "typed"]
    model = {"features": older, "weights": [2.0 if n == "log_match" else 0.0 for n in older],
             "mean": [0.0] * len(older), "scale": [1.0] * len(older)}
    path = tmp_path / "completer.json"
    path.write_text(json.dumps({"reranker": model, "gate": model}))
    reranker, gate = m.from_notes(path)
    assert len(reranker.weights) == len(FEATURES) and reranker.weights[FEATURES.index("typed")] == 0.0
    assert reranker.probability(candidate(log_match=1.0, typed=5.0)) == \
        reranker.probability(candidate(log_match=1.0))
    assert gate.weights[FEATURES.index("log_match")] == 2.0


def test_judged_counts_the_chosen_candidate_and_the_gate():
    m = offline_module()
    n = len(FEATURES)
    prefers_matches = Reranker(tuple(1.0 if f == "log_match" else 0.0 for f in FEATURES), (0.0,) * n, (1.0,) * n)
    shows_all = Reranker((0.0,) * n, (0.0,) * n, (1.0,) * n)  # probability 0.5 >= 0.45: everything shown
    decisions = [
        Decision([candidate(from_model=1.0), candidate(log_match=3.0)], [False, True], [True, True],
                 ["model", "workspace"], "indent", 0, "e3", 4),
        Decision([candidate(from_model=1.0), candidate(log_match=0.5)], [True, False], [True, False],
                 ["model", "document"], "midline", 0, "e3", 4),
        Decision([candidate(from_model=1.0)], [False], [False], ["model"], "indent", 0, "e3", 0),
    ]
    out = m.judged(decisions, prefers_matches, shows_all)
    four = out[("e3", 4)]
    assert four["cuts"] == 2 and four["exact"] == 1 and four["indent_exact"] == 1  # the longer match, twice
    assert four["workspace_chosen"] == four["workspace_exact"] == 1 and four["document_chosen"] == 1
    assert four["shown"] == 2 and four["shown_taken"] == 1
    assert out[("e3", 0)]["cuts"] == 1 and out[("e3", 0)]["exact"] == 0


def test_source_inputs_are_added_after_the_features_and_can_be_held_at_zero():
    m = offline_module()
    d = Decision([candidate(from_model=1.0), candidate(log_match=2.0), candidate(log_match=1.0)], [False, True, False],
                 [False, True, False], ["model", "workspace", "context"], "midline", 0, "e3", 4)
    [extended] = m.with_sources([d])
    assert [x[len(FEATURES):] for x in extended.features] == [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    assert [x[:len(FEATURES)] for x in extended.features] == d.features
    [plain] = m.without_sources([extended])
    assert [x[len(FEATURES):] for x in plain.features] == [[0.0, 0.0]] * 3
    # A fit on them: the workspace copy is the only exact one, so its input gets weight.
    many = m.with_sources([d] * 20 + [Decision(d.features, [True, False, False], [True, False, False], d.sources,
                                               "midline", 0, "e3", 4)] * 5)
    reranker, _ = m.fitted(many)
    assert reranker.weights[len(FEATURES) + 1] > 0
