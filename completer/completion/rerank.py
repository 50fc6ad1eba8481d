"""Which suggestion to show, and whether to show one at all.

The candidates are the model's own text and copies from the document (candidates.py). The target
scores each one (its log-probability, token by token, ending with the end of the suggestion); a small
logistic model turns those scores and a few plain facts (how long the copied-from match was, whether
the cursor is at a line start or inside a word, how much the copy agrees with the model) into the
probability that a candidate is exactly what the user will type. The best candidate is shown if that
probability reaches the threshold for the cursor's kind of position: a wrong suggestion costs the
user attention, so below it nothing is shown (the confidence gate).

The logistic model is fitted per target model (engine_builds/fit_reranker.py, on held-out files that
are not evaluated on) and ships in the model directory's `completer.json`; a model without one gets
its own text, ungated, as before.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .candidates import Candidate

METADATA_FILE = "completer.json"
FEATURES = ("bias", "logprob_sum", "logprob_mean", "logprob_min", "logprob_first", "logprob_end", "tokens",
            "from_model", "log_match", "agrees_with_model", "line_start", "mid_word", "model_at_line_start",
            "chars", "blank")
CURSOR_KINDS = ("line_start", "mid_word", "mid_line")
_WORD_END = re.compile(r"\w$")


def cursor_kind(left: str) -> str:
    """line_start: only indentation left of the cursor; mid_word: right after a word character
    (inside or at the end of an identifier being typed); mid_line: anywhere else."""
    if not left.strip():
        return "line_start"
    return "mid_word" if _WORD_END.search(left) else "mid_line"


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    logprobs: tuple[float, ...]  # the target's, per token: the healed text, the candidate, then its end
    probability: float = 0.0  # that it is exactly right, from the reranker


def features(scored: Scored, model_text: str, kind: str) -> list[float]:
    """The reranker's inputs for one candidate, in FEATURES order."""
    lp, text = scored.logprobs, scored.candidate.text
    from_model = scored.candidate.source == "model"
    agree = len(os.path.commonprefix((text, model_text))) / max(1, len(text))
    return [1.0, sum(lp), sum(lp) / len(lp), min(lp), lp[0], lp[-1], float(len(lp)), float(from_model),
            math.log1p(scored.candidate.match), agree, float(kind == "line_start"), float(kind == "mid_word"),
            float(from_model and kind == "line_start"), len(text) / 40.0, float(not text.strip())]


@dataclass(frozen=True)
class Reranker:
    """A logistic model over standardised features: p = sigmoid(((x - mean) / scale) . weights)."""
    weights: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    thresholds: dict[str, float] = field(default_factory=dict)  # cursor kind -> least probability shown

    @classmethod
    def neutral(cls) -> "Reranker":
        """Every candidate at probability 0.5 and nothing withheld: for collecting scores to fit one."""
        n = len(FEATURES)
        return cls((0.0,) * n, (0.0,) * n, (1.0,) * n, {"default": 0.0})

    def probability(self, x: Sequence[float]) -> float:
        z = sum(w * (v - m) / s for w, v, m, s in zip(self.weights, x, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def rank(self, scored: Sequence[Scored], model_text: str, kind: str) -> list[Scored]:
        """The candidates with their probabilities, best first (the model's own text wins ties)."""
        out = [Scored(s.candidate, s.logprobs, self.probability(features(s, model_text, kind))) for s in scored]
        return sorted(out, key=lambda s: (-s.probability, s.candidate.source != "model"))

    def threshold(self, kind: str) -> float:
        return self.thresholds.get(kind, self.thresholds.get("default", 0.0))

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "weights": list(self.weights), "mean": list(self.mean),
                "scale": list(self.scale), "thresholds": dict(self.thresholds)}

    @classmethod
    def from_json(cls, data: dict) -> "Reranker":
        if list(data.get("features", ())) != list(FEATURES):
            raise ValueError(f"reranker features {data.get('features')} are not this version's {list(FEATURES)}")
        n = len(FEATURES)
        weights, mean, scale = (tuple(float(v) for v in data[key]) for key in ("weights", "mean", "scale"))
        if not len(weights) == len(mean) == len(scale) == n:
            raise ValueError("reranker: weights, mean and scale need one number per feature")
        return cls(weights, mean, scale, {str(k): float(v) for k, v in (data.get("thresholds") or {}).items()})


@dataclass(frozen=True)
class ModelNotes:
    """What completer.json says of a model: the languages it was trained on (None: unknown, every
    language is served) and its reranker (None: the model's own text, ungated)."""
    languages: frozenset[str] | None = None
    reranker: Reranker | None = None


def read_model_notes(model_dir: str | Path | None) -> ModelNotes:
    path = Path(model_dir) / METADATA_FILE if model_dir else None
    if path is None or not path.is_file():
        return ModelNotes()
    data = json.loads(path.read_text(encoding="utf-8"))
    languages = data.get("languages")
    reranker = data.get("reranker")
    return ModelNotes(frozenset(languages) if languages is not None else None,
                      Reranker.from_json(reranker) if reranker else None)
