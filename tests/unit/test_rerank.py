"""Candidates copied from the document, the reranker's features and probabilities, and the model
notes (completer.json): strings and numbers only, no engine."""

import json
import math

import pytest

from completer.completion.candidates import Candidate, below_anchored, copy_candidates, lines_above_the_line_below
from completer.completion.rerank import (
    CURSOR_KINDS,
    FEATURES,
    ModelNotes,
    Reranker,
    Scored,
    cursor_kind,
    features,
    read_model_notes,
    surroundings,
    typed_into,
)
from completer.lines import split_lines


def at_end(text: str):
    lines = split_lines(text)
    return lines, len(lines) - 1, len(lines[-1])


def test_the_line_after_a_similar_line_is_copied_nearest_first():
    lines, line, col = at_end("class T:\n    def f(self):\n        self.assertEqual(a, 1)\n"
                              "        self.assertEqual(b, 2)\n        self.ass")
    found = copy_candidates(lines, line, col)
    assert [c.text for c in found] == ["ertEqual(b, 2)", "ertEqual(a, 1)"]
    assert all(c.source == "document" and c.match >= 8 for c in found)


def test_a_cursor_at_the_indentation_matches_on_the_line_above():
    lines, line, col = at_end("x = load(a)\nreturn x\n\ny = load(a)\n")
    found = copy_candidates(lines, line, col)
    assert found and found[0].text == "return x"  # after ")\n" came "return x"


def test_text_below_the_cursor_and_context_chunks_are_sources_too():
    lines = split_lines("def f():\n    total = compute(\n\nx = compute(alpha, beta)\n")
    found = copy_candidates(lines, 1, len("    total = compute("))
    assert found[0].text == "alpha, beta)"
    lines, line, col = at_end("r = session.requ")
    found = copy_candidates(lines, line, col, context=(("other.py", "resp = session.request('GET', url)\n"),))
    assert found[0] == Candidate("est('GET', url)", "context", 12)


def test_other_open_files_are_searched_whole_and_within_bounds(monkeypatch):
    from completer.completion import candidates

    lines, line, col = at_end("r = session.requ")
    prompt_chunk = ("other.py", "resp = session.request('GET', url)\n")
    beyond = ("api.py", "x = 1\n" * 50 + "    r = session.request('POST', url, json=body)\n")  # not in the prompt
    found = copy_candidates(lines, line, col, context=(prompt_chunk,), open_files=(beyond,))
    assert found[0] == Candidate("est('POST', url, json=body)", "workspace", 16)  # the longer match wins
    assert Candidate("est('GET', url)", "context", 12) not in found  # shorter matches lose to longer ones
    found = copy_candidates(*at_end("y = session.requ"), open_files=(beyond,))
    assert found[0].text == "est('POST', url, json=body)" and found[0].source == "workspace"
    monkeypatch.setattr(candidates, "OPEN_FILES_CHARS", 100)  # the lookup reads only so much of them
    assert copy_candidates(lines, line, col, open_files=(beyond,)) == []


def test_a_huge_document_is_searched_near_the_cursor(monkeypatch):
    from completer.completion import candidates

    filler = ["x = 1\n"] * 30_000
    near = ["    r = session.request('PUT', url)\n"]
    far = ["    r = session.request('POST', url, json=body)\n"]
    for above, below in ((far + filler + near, []), ([], near + filler + far)):
        lines = above + ["    r = session.requ\n"] + below
        line = len(above)
        monkeypatch.setattr(candidates, "DOCUMENT_CHARS", 1_000_000)  # all of it: both copies
        assert {c.text for c in copy_candidates(lines, line, 20)} == {"est('PUT', url)", "est('POST', url, json=body)"}
        monkeypatch.setattr(candidates, "DOCUMENT_CHARS", 50_000)  # 8,333 filler lines each side: the near one
        assert [c.text for c in copy_candidates(lines, line, 20)] == ["est('PUT', url)"]


def test_a_line_longer_than_a_completion_is_not_copied():
    from completer.completion.candidates import MAX_COPY_CHARS

    for length in (MAX_COPY_CHARS, MAX_COPY_CHARS + 1):
        copy = "a" * length
        lines, line, col = at_end(f"value = compute({copy}\nvalue = compute(")
        found = copy_candidates(lines, line, col)
        assert [c.text for c in found] == ([copy] if length == MAX_COPY_CHARS else [])


def test_copies_match_across_line_break_styles():
    # A CRLF document copies what its LF twin copies, with the same match lengths (a CRLF is one
    # character), and from LF files open beside it; no copy carries a "\r".
    text = "x = load(a)\nreturn x\n\ndef f():\n    total = compute(alpha, beta)\n\ny = load(a)\n    total = comp"
    lf = copy_candidates(*at_end(text))
    crlf = copy_candidates(*at_end(text.replace("\n", "\r\n")))
    assert lf and crlf == lf and lf[0].text == "ute(alpha, beta)"
    lines, line, col = at_end("first = 1\r\nr = session.requ")
    beside = ("api.py", "first = 1\nr = session.request('POST', url)\n")
    assert copy_candidates(lines, line, col, open_files=(beside,))[0] == \
        Candidate("est('POST', url)", "workspace", 24)  # 24 characters: the match runs past the line break
    lines, line, col = at_end("a = [1, 2]\r\nb = [1, 2]\r\n")
    assert all("\r" not in c.text for c in copy_candidates(lines, line, col))


def test_no_copy_repeats_what_is_right_of_the_cursor_or_stands_on_blanks():
    lines = split_lines("call(alpha, beta)\ncall(alpha, beta)\n")
    assert copy_candidates(lines, 1, 5, right="alpha, beta)") == []
    lines, line, col = at_end("a\n\n\n    ")
    assert copy_candidates(lines, line, col) == []


GO_ERRORS = """func read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	data, err := io.ReadAll(f)

	return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}
"""


def test_a_line_start_copies_the_line_that_stands_above_the_line_below_elsewhere():
    lines = split_lines(GO_ERRORS)
    cursor = 6  # the blank line after `data, err := ...`, above the second `return nil, ...` line
    lines[cursor] = "\t"
    below, above = lines_above_the_line_below(lines, cursor)
    assert below == '\treturn nil, fmt.Errorf("read %s: %w", path, err)' and above == []  # no other occurrence
    lines[7] = '\t\treturn nil, fmt.Errorf("open %s: %w", path, err)\n'  # as above the cursor
    found = below_anchored(lines, cursor, 1)
    assert found == [Candidate("if err != nil {", "below", len(lines[7].strip()))]
    # What is left of the cursor must start the copy, and a copy must not repeat what is right of it.
    assert below_anchored(lines, cursor, 1, right="if err != nil {") == []
    lines[cursor] = "\tif e"
    assert [c.text for c in below_anchored(lines, cursor, len("\tif e"))] == ["rr != nil {"]
    lines[cursor] = "\tfor "
    assert below_anchored(lines, cursor, len("\tfor ")) == []
    # The reranker reads the same evidence for every candidate, the model's own text included.
    around = surroundings(lines, cursor, 1)
    model = Scored(Candidate("if err != nil {", "model"), (-0.5, -0.5))
    other = Scored(Candidate("defer f.Close()", "model"), (-0.5, -0.5))
    assert features(model, model.candidate.text, "line_start", [model], around)[-1] == 1.0
    assert features(other, other.candidate.text, "line_start", [other], around)[-1] == 0.0
    assert FEATURES[-1] == "anchored_below"


def test_a_short_line_below_anchors_nothing():
    lines = split_lines("a = 1\nend\nb = 2\nend\n\nend\n")
    assert lines_above_the_line_below(lines, 4) == ("", [])  # `end` stands below too many lines to say which
    # Occurrences separated from their line above by text (not blanks only, as at the cursor) do not count.
    lines = split_lines("a = 1\n\nresult = total(x)\nb = 2\nc = 3\nresult = total(x)\n")
    assert lines_above_the_line_below(lines, 0) == ("result = total(x)", [])
    lines[4] = "\n"
    assert lines_above_the_line_below(lines, 0) == ("result = total(x)", ["b = 2"])


def test_cursor_kinds():
    assert cursor_kind("    ") == "line_start" and cursor_kind("") == "line_start"
    assert cursor_kind("    retu") == "mid_word" and cursor_kind("x = f(") == "mid_line"


def test_features_and_probability():
    model = Scored(Candidate("x + 1", "model"), (-0.5, -1.0, -0.25))
    copy = Scored(Candidate("x + 2", "document", match=24), (-0.5, -3.0, -0.25))
    lines = split_lines("x = 0\ny = x + 2\ny = x + 2\ny = ")
    around = surroundings(lines, 3, 4)
    f = features(copy, "x + 1", "mid_line", [copy, model], around)
    assert len(f) == len(FEATURES)
    named = dict(zip(FEATURES, f))
    assert named["logprob_sum"] == pytest.approx(-3.75) and named["logprob_min"] == -3.0
    assert named["log_match"] == pytest.approx(math.log1p(24)) and named["from_model"] == 0.0
    assert named["agrees_with_model"] == pytest.approx(4 / 5)
    assert named["logprob_sum_gap"] == pytest.approx(-2.0) and named["candidates"] == 2.0
    assert named["line_repeats"] == pytest.approx(math.log1p(2))  # "y = x + 2" twice above
    assert named["anchored_below"] == 0.0
    # A reranker that only looks at the log-probability sum prefers the likelier candidate.
    weights = tuple(1.0 if name == "logprob_sum" else 0.0 for name in FEATURES)
    r = Reranker(weights, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), {"mid_line": 0.2})
    ranked = r.rank([copy, model], "x + 1", "mid_line", around)
    assert [s.candidate.source for s in ranked] == ["model", "document"]
    assert ranked[0].probability == pytest.approx(1 / (1 + math.exp(1.75)))
    assert ranked[1].features == tuple(f)  # what fitting reads is what the reranker saw
    assert r.threshold("mid_line") == 0.2 and r.threshold("line_start") == 0.0
    neutral = Reranker.neutral().rank([copy, model], "x + 1", "mid_line", around)
    assert [s.probability for s in neutral] == [0.5, 0.5] and neutral[0].candidate.source == "model"  # ties: model


def test_identifiers_the_text_around_never_names_are_counted():
    lines = split_lines("import os\n\ndef load(path):\n    return os.path.\n\nCACHE = {}\n")
    around = surroundings(lines, 3, len("    return os.path."), context=(("util.py", "def join_all(): pass\n"),))
    invented = Scored(Candidate("readfile(path)", "model"), (-1.0,))
    real = Scored(Candidate("load(path) or CACHE", "model"), (-1.0,))
    from_context = Scored(Candidate("join_all()", "context"), (-1.0,))
    named = [dict(zip(FEATURES, features(s, "", "mid_line", [s], around))) for s in (invented, real, from_context)]
    assert named[0]["unknown_identifiers"] == 1.0 and named[0]["known_identifiers"] == pytest.approx(0.5)
    assert named[1]["unknown_identifiers"] == 0.0 and named[1]["known_identifiers"] == 1.0  # CACHE is below
    assert named[2]["unknown_identifiers"] == 0.0


def test_surroundings_read_a_bounded_window_around_the_cursor():
    far = ["far_away_name = 1\n"] * 2000  # 36,000 characters above the window
    lines = far + ["near = 2\n"] * 10 + ["x = ne\n"] + ["below = 3\n"]
    around = surroundings(lines, len(lines) - 2, 6)
    assert {"near", "below", "ne"} <= around.identifiers and around.left == "x = ne"
    assert around.line_counts["near = 2"] == 10 and around.line_counts.get("far_away_name = 1", 0) < 2000
    minified = surroundings(["var " + "a,b;" * 1_000_000 + "\n", "x = a\n"], 1, 5)  # one 4 MB line above
    assert "a" in minified.identifiers and sum(map(len, minified.line_counts)) <= 8000


def test_model_notes_round_trip(tmp_path):
    assert read_model_notes(tmp_path) == ModelNotes() and read_model_notes(None) == ModelNotes()
    r = Reranker(tuple(range(len(FEATURES))), (0.0,) * len(FEATURES), (2.0,) * len(FEATURES), {"default": 0.1})
    (tmp_path / "completer.json").write_text(json.dumps({"languages": ["python"], "reranker": r.to_json()}))
    notes = read_model_notes(tmp_path)
    assert notes.languages == frozenset({"python"}) and notes.reranker == r and notes.gate is None
    gate = Reranker((1.0,) * len(FEATURES), (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), {"line_start": 0.4})
    (tmp_path / "completer.json").write_text(json.dumps({"reranker": r.to_json(), "gate": gate.to_json()}))
    assert read_model_notes(tmp_path) == ModelNotes(None, r, gate)
    (tmp_path / "completer.json").write_text(json.dumps({"gate": gate.to_json()}))
    assert read_model_notes(tmp_path) == ModelNotes()  # a gate alone has no candidates to decide on
    bad = r.to_json() | {"features": ["bias"]}
    (tmp_path / "completer.json").write_text(json.dumps({"reranker": bad}))
    with pytest.raises(ValueError, match="one number per feature"):
        read_model_notes(tmp_path)
    (tmp_path / "completer.json").write_text(json.dumps({"reranker": r.to_json() | {"features": [*FEATURES[:-1], "new"]}}))
    with pytest.raises(ValueError, match="not among this version's"):
        read_model_notes(tmp_path)
    # A reranker fitted before the last feature existed loads, and gives that feature no weight.
    older = {key: value[:-1] for key, value in r.to_json().items() if key != "thresholds"}
    (tmp_path / "completer.json").write_text(json.dumps({"reranker": older | {"thresholds": {"default": 0.1}}}))
    loaded = read_model_notes(tmp_path).reranker
    assert loaded.weights == (*r.weights[:-1], 0.0) and loaded.scale == (*r.scale[:-1], 1.0)


def test_typed_into_drops_the_tokens_the_user_typed():
    # The healed "re" and the candidate "turn x" in tokens "retu" "rn" " x", then the end token.
    s = Scored(Candidate("turn x", "model"), (-1.0, -0.5, -0.25, -0.1), token_ends=(4, 6, 8), healed=2)
    after = typed_into(s, "tu")  # the first token is typed whole
    assert after.candidate.text == "rn x" and after.logprobs == (-0.5, -0.25, -0.1) and after.token_ends == (2, 4)
    inside = typed_into(s, "tur")  # ends inside "rn": that token stays
    assert inside.candidate.text == "n x" and inside.logprobs == (-0.5, -0.25, -0.1) and inside.token_ends == (1, 3)
    again = typed_into(inside, "n")
    assert again.candidate.text == " x" and again.logprobs == (-0.25, -0.1) and again.token_ends == (2,)
    assert again.candidate.match == s.candidate.match + 4
    assert typed_into(s, "x") is None and typed_into(s, "turn x") is None and typed_into(s, "") is None
    assert typed_into(Scored(Candidate("ab", "model"), (-1.0, -1.0)), "a") is None  # boundaries unknown


def test_the_shipped_target_serves_every_parsed_language_with_a_gate_threshold_per_cursor_kind_and_language():
    from completer.engines.model_dirs import SHIPPED_DIR
    from completer.syntax import DIALECT_OF, GRAMMARS

    notes = read_model_notes(SHIPPED_DIR / "embedded")
    parsed = frozenset(GRAMMARS) - set(DIALECT_OF)
    assert notes.languages == parsed and notes.reranker is not None and notes.gate is not None
    assert all(0.0 < notes.gate.threshold(kind, language) < 1.0 for kind in CURSOR_KINDS for language in parsed)


def test_a_languages_own_threshold_comes_before_the_cursor_kinds():
    n = len(FEATURES)
    r = Reranker((0.0,) * n, (0.0,) * n, (1.0,) * n,
                 {"default": 0.1, "mid_line": 0.4, "c": 0.6, "c:line_start": 0.7})
    assert r.threshold("mid_line") == r.threshold("mid_line", "python") == 0.4
    assert r.threshold("mid_word", "python") == 0.1  # neither the language nor the kind: the default
    assert r.threshold("mid_line", "c") == 0.6 and r.threshold("line_start", "c") == 0.7
    assert Reranker.from_json(r.to_json()).threshold("line_start", "c") == 0.7
