"""Which suggestion to show, and whether to show one at all.

The candidates are the model's own text and copies from the document (candidates.py). The target
scores each one (its log-probability, token by token, ending with the end of the suggestion); a small
logistic model turns those scores and a few plain facts (how long the copied-from match was, whether
the cursor is at a line start or inside a word, how much the copy agrees with the model) into the
probability that a candidate is exactly what the user will type. Some facts compare a candidate with
the others (how far its log-probability is below the best one's) or with the text around the cursor
(whether the identifiers it names occur there, how often its whole line occurs there): the model
invents names, and code repeats lines. Whether to show the best candidate at all is a second
question with a second answer: the gate, a logistic model over the same facts of the best candidate,
gives the probability that the user takes some of it (completer/acceptance.py: all of it, its first
line or its leading words); below the threshold for the cursor's kind of position nothing is shown,
as a wrong suggestion costs the user attention (the confidence gate). A model with a reranker and no gate
thresholds the reranker's own probability. When the user then types what a withheld candidate
predicted, the candidates are ranked again on what is left of them (typed_into), without the model.

Both logistic models are fitted per target model (engine_builds/fit_reranker.py, on held-out files
that are not evaluated on) and ship in the model directory's `completer.json`; a model without them
gets its own text, ungated, as before.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from completer.engines.model_dirs import MODEL_NOTES_FILE as METADATA_FILE

from .candidates import Anchor, Candidate, lines_above_the_line_below

FEATURES = ("bias", "logprob_sum", "logprob_mean", "logprob_min", "logprob_first", "logprob_end", "tokens",
            "from_model", "log_match", "agrees_with_model", "line_start", "mid_word", "model_at_line_start",
            "chars", "blank", "logprob_sum_gap", "logprob_mean_gap", "candidates", "known_identifiers",
            "unknown_identifiers", "line_repeats", "typed", "anchored_below")
CURSOR_KINDS = ("line_start", "mid_word", "mid_line")
_WORD_END = re.compile(r"\w$")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_NOT_A_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})
# Words of the languages themselves (those the server parses): never an invented name.
KEYWORDS = frozenset("""
and as assert async await break case catch class const continue def default defer del do elif else
elseif end enum except export extends false final finally fn for from func function go goto if impl
implements import in instanceof interface is let local loop match mod module mut new nil none not null
or package pass private protected pub public raise repeat return self static struct super switch then
this throw throws true try type typeof union unsafe until use var void while with yield
None True False int float str bool char long short unsigned double byte string
""".split())  # noqa: SIM905 - a word list reads better as text
# How much text around the cursor the facts read, in characters: enough for the code near the
# cursor, bounded so a huge file costs no more than a small one (0.12 ms on our 2-core CPU).
AROUND_ABOVE, AROUND_BELOW = 8000, 2000


def cursor_kind(left: str) -> str:
    """line_start: only indentation left of the cursor; mid_word: right after a word character
    (inside or at the end of an identifier being typed); mid_line: anywhere else."""
    if not left or left.isspace():  # stops at the first other character: no copy of a long line
        return "line_start"
    return "mid_word" if _WORD_END.search(left[-2:]) else "mid_line"  # "\w$": the end, or before a last "\n"


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    logprobs: tuple[float, ...]  # the target's, per token: the healed text, the candidate, then its end
    probability: float = 0.0  # that it is exactly right, from the reranker
    features: tuple[float, ...] = ()  # what the reranker saw (FEATURES order); fitting reads them
    # Where each scored token ends, in bytes of the healed text plus the candidate (the end token
    # has none, so len(token_ends) == len(logprobs) - 1); () when unknown.
    token_ends: tuple[int, ...] = ()
    healed: int = 0  # bytes of the healed text in front of the candidate
    typed: int = 0  # characters the user typed into it since the model scored it (typed_into)


def typed_into(scored: Scored, typed: str) -> Scored | None:
    """The candidate once the user typed `typed`, its first characters: the rest of its text, with the
    log-probabilities of the tokens that `typed` covers whole dropped (the model's probabilities of
    the later tokens were conditioned on that same text; a token the typed text ends inside is kept).
    The reranker reads how much was typed (feature `typed`): such scores alone overrate the rest. None
    when the candidate does not start with `typed`, nothing of it is left, or its token boundaries
    are unknown."""
    text = scored.candidate.text
    if not typed or not text.startswith(typed) or len(typed) >= len(text) or \
            len(scored.token_ends) != len(scored.logprobs) - 1:
        return None
    covered = scored.healed + len(typed.encode("utf-8"))
    drop = bisect.bisect_right(scored.token_ends, covered)
    candidate = dataclasses.replace(scored.candidate, text=text[len(typed):], match=scored.candidate.match + len(typed))
    return Scored(candidate, scored.logprobs[drop:], token_ends=tuple(end - covered for end in scored.token_ends[drop:]),
                  typed=scored.typed + len(typed))


@dataclass(frozen=True)
class Surroundings:
    """The text around the cursor, as the reranker reads it: computed once per completion."""
    left: str  # the cursor line left of the cursor
    identifiers: frozenset[str]  # every word (names, keywords, numbers) near the cursor and in the context chunks
    line_counts: Mapping[str, int]  # stripped line near the cursor (the cursor line excluded) -> occurrences
    # stripped lines that stand above other occurrences of the line below the cursor as the cursor
    # line stands above it (candidates.lines_above_the_line_below)
    anchored: frozenset[str] = frozenset()


def surroundings(lines: Sequence[str], line: int, character: int,
                 context: Sequence[tuple[str, str]] = (), anchor: Anchor | None = None) -> Surroundings:
    """The lines within AROUND_ABOVE characters above the cursor line and AROUND_BELOW below it (a
    longer line counts by its first AROUND_ABOVE characters). anchor: lines_above_the_line_below(lines,
    line) where the caller already has it."""
    near = _lines_within(lines, range(line - 1, -1, -1), AROUND_ABOVE)
    near += _lines_within(lines, range(line + 1, len(lines)), AROUND_BELOW)
    counts = Counter(stripped for stripped in map(str.strip, near) if stripped)
    cursor_line = lines[line][max(0, character - AROUND_ABOVE):character + AROUND_BELOW]
    text = "".join(near) + cursor_line + "".join(chunk for _, chunk in context)
    # Words split at every ASCII character that is not a letter, digit or underscore: five times
    # faster than a regular expression on the same text (numbers come along; they do no harm).
    _, above = anchor if anchor is not None else lines_above_the_line_below(lines, line)
    anchored = frozenset(filter(None, map(str.strip, above)))
    return Surroundings(lines[line][:character], frozenset(text.translate(_NOT_A_WORD).split()), counts, anchored)


def _lines_within(lines: Sequence[str], order: range, budget: int) -> list[str]:
    """The lines in `order` (each cut to AROUND_ABOVE characters) until `budget` characters are read."""
    near: list[str] = []
    size = 0
    for i in order:
        if size >= budget:
            break
        near.append(lines[i][:AROUND_ABOVE])
        size += len(near[-1])
    return near


def features(scored: Scored, model_text: str, kind: str, peers: Sequence[Scored], around: Surroundings) -> list[float]:
    """The reranker's inputs for one candidate among `peers` (every candidate of the completion,
    itself included), in FEATURES order."""
    lp, text = scored.logprobs, scored.candidate.text
    from_model = scored.candidate.source == "model"
    agree = len(os.path.commonprefix((text, model_text))) / max(1, len(text))
    names = [name for name in _IDENTIFIER.findall(text) if name not in KEYWORDS]
    unknown = sum(name not in around.identifiers for name in names)
    known = 1.0 - unknown / len(names) if names else 1.0
    whole_line = (around.left + text).strip()
    repeats = around.line_counts.get(whole_line, 0)
    best_sum = max(sum(p.logprobs) for p in peers)
    best_mean = max(sum(p.logprobs) / len(p.logprobs) for p in peers)
    return [1.0, sum(lp), sum(lp) / len(lp), min(lp), lp[0], lp[-1], float(len(lp)), float(from_model),
            math.log1p(scored.candidate.match), agree, float(kind == "line_start"), float(kind == "mid_word"),
            float(from_model and kind == "line_start"), len(text) / 40.0, float(not text.strip()),
            sum(lp) - best_sum, sum(lp) / len(lp) - best_mean, float(len(peers)), known, float(unknown),
            math.log1p(repeats), math.log1p(scored.typed), float(whole_line in around.anchored)]


@dataclass(frozen=True)
class Reranker:
    """A logistic model over standardised features: p = sigmoid(((x - mean) / scale) . weights)."""
    weights: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    # The least probability shown, by key: "LANGUAGE:KIND", "LANGUAGE", "KIND" or "default", the
    # first present wins (a language whose suggestions are taken less often can ask for more).
    thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def neutral(cls) -> "Reranker":
        """Every candidate at probability 0.5 and nothing withheld: for collecting scores to fit one."""
        n = len(FEATURES)
        return cls((0.0,) * n, (0.0,) * n, (1.0,) * n, {"default": 0.0})

    def probability(self, x: Sequence[float]) -> float:
        z = sum(w * (v - m) / s for w, v, m, s in zip(self.weights, x, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def rank(self, scored: Sequence[Scored], model_text: str, kind: str, around: Surroundings) -> list[Scored]:
        """The candidates with their probabilities, best first (the model's own text wins ties)."""
        out = []
        for s in scored:
            x = features(s, model_text, kind, scored, around)
            out.append(dataclasses.replace(s, probability=self.probability(x), features=tuple(x)))
        return sorted(out, key=lambda s: (-s.probability, s.candidate.source != "model"))

    def threshold(self, kind: str, language: str | None = None) -> float:
        keys = (f"{language}:{kind}", language) if language else ()
        for key in (*keys, kind, "default"):
            if key in self.thresholds:
                return self.thresholds[key]
        return 0.0

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "weights": list(self.weights), "mean": list(self.mean),
                "scale": list(self.scale), "thresholds": dict(self.thresholds)}

    @classmethod
    def from_json(cls, data: dict) -> "Reranker":
        names = list(data.get("features", ()))
        unknown = [name for name in names if name not in FEATURES]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"reranker features {names} are not among this version's {list(FEATURES)}")
        weights, mean, scale = (tuple(float(v) for v in data[key]) for key in ("weights", "mean", "scale"))
        if not len(weights) == len(mean) == len(scale) == len(names):
            raise ValueError("reranker: weights, mean and scale need one number per feature")
        # A reranker fitted before a feature existed gives it no weight: it ranks as it did.
        given = {name: (w, m, s) for name, w, m, s in zip(names, weights, mean, scale)}
        weights, mean, scale = zip(*(given.get(name, (0.0, 0.0, 1.0)) for name in FEATURES))
        return cls(weights, mean, scale, {str(k): float(v) for k, v in (data.get("thresholds") or {}).items()})


@dataclass(frozen=True)
class ModelNotes:
    """What completer.json says of a model: the languages it was trained on (None: unknown, every
    language is served), its reranker (None: the model's own text, ungated) and its gate (None: the
    reranker's probability and thresholds decide what is shown)."""
    languages: frozenset[str] | None = None
    reranker: Reranker | None = None
    gate: Reranker | None = None


def read_model_notes(model_dir: str | Path | None) -> ModelNotes:
    path = Path(model_dir) / METADATA_FILE if model_dir else None
    if path is None or not path.is_file():
        return ModelNotes()
    data = json.loads(path.read_text(encoding="utf-8"))
    languages = data.get("languages")
    reranker, gate = data.get("reranker"), data.get("gate")
    return ModelNotes(frozenset(languages) if languages is not None else None,
                      Reranker.from_json(reranker) if reranker else None,
                      Reranker.from_json(gate) if gate and reranker else None)
