"""What forward passes cost on this machine, measured at load and again when a background compile
swaps the step: the draft policies (decoding.DraftPolicy) weigh drafts against these numbers.

Functions of a forward(ids, start, num_logits) callable; they write K/V from `start` on, so the
caller first forgets those positions in its slot.
"""

from __future__ import annotations

import statistics
import time

import torch

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
