"""What forward passes cost on this machine, measured at load and again when a background compile
swaps the step: the draft policies (decoding.DraftPolicy) weigh drafts against these numbers. Those
of a compiled step are kept beside its packages and read at the next start (KnownCosts).

Functions of a forward(ids, start, num_logits) callable; they write K/V from `start` on, so the
caller first forgets those positions in its slot.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

COST_POSITION = 768  # where draft verification costs are measured: about a completion prompt's length


def measure_step(forward, start: int, n_tokens: int, device: str, repeats: int = 5, then: int = 0) -> float:
    """Median seconds of a forward over n_tokens at cache position `start`, followed by one over
    `then` tokens when then > 0."""
    samples = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            forward([0] * n_tokens, start, n_tokens)
            if then:
                forward([0] * then, start, then)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - t0)
    return sorted(samples[1:])[repeats // 2]


def verification_costs(forward, start: int, max_draft: int, device: str, rounds: int = 15) -> list[float]:
    """What a (1 + k)-token verification costs relative to a 1-token step, k = 0..max_draft, at cache
    position `start` (a typical prompt length: attention's share of a step, and so the ratios, depend
    on it; compiled on CPU they are not even monotonic in k). Measured as the extra time of a 1-token
    step that follows the verification: compiled on CPU each kind of call is its own graph, and
    switching graphs costs the next step some cache misses too (less since they share weights).

    The policy lives on these numbers, and this machine is shared: each round times every width
    back to back and gives one ratio per width, and the median over rounds is kept, so a noisy
    spell spoils rounds, not a width (measured one width at a time, a spike once made every
    verification look free)."""
    ratios: list[list[float]] = [[] for _ in range(max_draft + 1)]
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # round 0 warms up
            times = []
            for k in range(max_draft + 1):
                t0 = time.perf_counter()
                forward([0] * (1 + k), start, 1 + k)
                forward([0], start, 1)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            if round_:
                step = times[0] / 2
                for k in range(1, max_draft + 1):
                    ratios[k].append(times[k] / step - 1)
    return [1.0] + [max(statistics.median(r), 1.0) for r in ratios[1:]]


# -- costs kept beside the compiled packages ---------------------------------------------------------
#
# Measuring takes ~0.3 s of every start (and ~0.2 s more to load and time the draft model, which on
# our CPUs never pays). The compiled packages are built for one model, machine and thread count, so
# what their steps cost there is measured once, when they are first loaded, and kept in their cache
# entry (a rebuilt entry starts empty); a start right after the editor launches, its noisiest moment,
# is no better a time to measure than that one.

COSTS_FILE = "costs-k{max_draft}.json"  # in the packages' cache entry, one per max_draft


@dataclass(frozen=True)
class KnownCosts:
    verification: tuple[float, ...]  # verification_costs of the compiled step, k = 0..max_draft
    draft_steps: dict[str, float] = field(default_factory=dict)  # draft model digest -> its step in target steps

    def with_draft(self, digest: str, step: float) -> KnownCosts:
        return KnownCosts(self.verification, {**self.draft_steps, digest: step})


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def read_known_costs(directory: Path, max_draft: int) -> KnownCosts | None:
    """What write_known_costs kept for this max_draft; None when nothing sound is there (measure)."""
    try:
        data = json.loads((directory / COSTS_FILE.format(max_draft=max_draft)).read_text())
        verification, drafts = data["verification"], data.get("drafts", {})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(verification, list) or len(verification) != max_draft + 1 or verification[:1] != [1.0] or \
            not all(map(_positive, verification)) or not isinstance(drafts, dict) or \
            not all(isinstance(k, str) and _positive(v) for k, v in drafts.items()):
        return None
    return KnownCosts(tuple(float(c) for c in verification), {k: float(v) for k, v in drafts.items()})


def write_known_costs(directory: Path, max_draft: int, known: KnownCosts) -> None:
    """Keep `known` for the next start (replacing the file whole, so a reader never sees half of it).
    A cache that cannot be written costs the next start a measurement, nothing else."""
    path = directory / COSTS_FILE.format(max_draft=max_draft)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"verification": list(known.verification), "drafts": known.draft_steps}))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not keep the measured step costs in %s: %s", directory, exc)
