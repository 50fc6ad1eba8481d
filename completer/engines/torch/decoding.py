"""Decoding helpers that own no engine state: n-gram drafting, the draft-length policy, choosing a
step's draft, sampling and draft verification, token-healing constraints and edit-reuse planning.
Unit-tested on lists and bytes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch


class NgramIndex:
    """Prompt-lookup drafting: where did the last n tokens occur before, and what followed?

    One dict per order n (longest first), mapping each n-gram to the position just after its latest
    occurrence; later occurrences win (recent code is the best guess). The dicts are built with
    dict(zip(...)), which runs in C: this happens on every request, over the whole prompt. A match
    shorter than the smallest order proposes nothing: one matching token is weak evidence, and a
    rejected draft costs a wider verification step.
    """

    def __init__(self, tokens, orders: tuple[int, ...] = (3, 2)):
        self.tokens = list(tokens)
        self.orders = orders
        toks = self.tokens
        # Only n-grams that end before the last token: the tail must not match itself.
        self._after = {n: dict(zip(zip(*(toks[i:len(toks) - 1] for i in range(n))), range(n, len(toks))))
                       if len(toks) > n else {} for n in orders}

    def append(self, token: int) -> None:
        toks = self.tokens
        end = len(toks)
        for n in self.orders:
            if end >= n:
                self._after[n][tuple(toks[end - n:end])] = end
        toks.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to k tokens that followed the longest earlier match of the current tail."""
        return self.lookup(k)[0]

    def lookup(self, k: int) -> tuple[list[int], int]:
        """draft(k) and how strong its evidence is (0: no match): the length of the match, counted
        backwards past the order that found it and bucketed by MATCH_BUCKETS. Right after a
        6-token match the copy is probably going on; a 3-token match in new code is often a
        coincidence of common phrases (`(self, `), so the engine keeps an acceptance rate per bucket."""
        toks = self.tokens
        end = len(toks)
        for n in self.orders:
            if end >= n:
                start = self._after[n].get(tuple(toks[end - n:]))
                if start is not None:
                    length = n
                    while length < MATCH_BUCKETS[-1] and start - length > 0 and \
                            toks[start - length - 1] == toks[end - length - 1]:
                        length += 1
                    return toks[start:start + k], max(b for b in MATCH_BUCKETS if b <= length)
        return [], 0


MATCH_BUCKETS = (1, 2, 3, 4, 6, 10)  # lookup's match-length classes: 4-5 tokens count as 4, 10+ as 10


class DraftPolicy:
    """How many drafted tokens to verify, from what a wider step costs and how often drafts are right.

    cost[k] is the measured time of a forward over 1 + k tokens relative to one token (on a GPU about
    1, on a CPU bound by memory bandwidth and per-op overhead up to 2-3). The per-token acceptance
    rate is an exponentially weighted estimate: each verification contributes its accepted tokens as
    successes and its first rejection as a failure (a geometric model). Steps without drafting still
    learn: the draft's first token is compared with the token actually generated ("shadow" drafts),
    so a policy that stopped drafting notices when drafts become good again.

    `key` keeps separate rates for drafts of different quality (how long the n-gram match is: a
    draft continuing a 10-token match is right far more often than one after a 3-token match).
    """

    def __init__(self, cost: list[float], prior_rate: float = 0.6, decay: float = 0.9):
        self.cost = cost
        self.decay = decay
        self.prior_rate = prior_rate
        self._counts: dict[object, list[float]] = {}  # key -> [hits, misses], exponentially weighted

    def _entry(self, key) -> list[float]:
        return self._counts.setdefault(key, [2 * self.prior_rate, 2 * (1 - self.prior_rate)])

    def rate(self, key=None) -> float:
        hits, misses = self._entry(key)
        return hits / (hits + misses)

    def length(self, available: int, key=None) -> int:
        """Draft length (0 = plain decoding) maximising expected tokens per unit of time."""
        return _best_length(self.cost, min(self.rate(key), 0.999), available)

    def break_even(self, available: int | None = None) -> float | None:
        """The lowest per-token acceptance rate (to 0.005) at which drafting some length up to
        `available` pays, by length()'s rule; None when none does even with every draft right."""
        available = len(self.cost) - 1 if available is None else available
        if _best_length(self.cost, 0.999, available) == 0:
            return None
        low, high = 0.0, 0.999  # pays at `high`, not at `low` (length 0 at rate 0 whatever the costs)
        while high - low > 0.005:
            mid = (low + high) / 2
            low, high = (low, mid) if _best_length(self.cost, mid, available) else (mid, high)
        return high

    def observe(self, accepted: int, drafted: int, key=None) -> None:
        counts = self._entry(key)
        counts[0] = self.decay * counts[0] + accepted
        counts[1] = self.decay * counts[1] + (1 if accepted < drafted else 0)


def _best_length(cost: list[float], rate: float, available: int) -> int:
    """The draft length with the most expected tokens per unit of time at per-token acceptance
    `rate` (< 1); a length must beat plain decoding, and every shorter one, by 5%."""
    best_k, best = 0, 1.0
    for k in range(1, min(available, len(cost) - 1) + 1):
        expected = (1 - rate ** (k + 1)) / (1 - rate)  # tokens produced by one verification
        value = expected / cost[k]
        if value > best * 1.05:
            best_k, best = k, value
    return best_k


@dataclass(slots=True)
class Proposal:
    """What the next forward verifies after the last chosen token: `tokens` (none: a plain step).
    `policy` chose how many and learns from the outcome under `key` (an n-gram draft's match
    bucket). `shadow` (token, key) is an n-gram draft token not worth verifying, checked against the
    real next token anyway: free learning, so a policy that stopped drafting can start again."""
    tokens: list[int]
    policy: DraftPolicy | None = None
    key: object = None
    shadow: tuple[int, object] | None = None


def propose(ngrams: NgramIndex | None, ngram_policy: DraftPolicy, drafter, context: list[int],
            constraint: PrefixConstraint | None, sampler: Sampler, room: int) -> Proposal:
    """The draft for the next step, at most `room` tokens: n-gram lookup first (free), else the draft
    model (drafter.ModelDrafter, or None; it continues `context`, the prompt and emitted tokens).
    Nothing while a token-healing constraint is still choosing. N-gram drafts are keyed by the
    length of their match."""
    shadow = None
    if room <= 0 or (constraint is not None and not constraint.done):
        return Proposal([])
    if ngrams is not None:
        candidates, match = ngrams.lookup(room)
        if candidates:
            k = ngram_policy.length(len(candidates), match)
            if k:
                return Proposal(candidates[:k], ngram_policy, match)
            shadow = (candidates[0], match)
    if drafter is not None:
        k = drafter.policy.length(room)
        if k:
            return Proposal(drafter.propose(context, k, sampler), drafter.policy, None, shadow)
    return Proposal([], shadow=shadow)


class Sampler:
    """Picks tokens from logits: greedy (temperature 0), or a sample by the Gumbel-max trick with
    noise fixed per (seed, position), restricted to what a token-healing constraint allows.

    argmax(logits / T + Gumbel noise) is an exact sample from softmax(logits / T) (after top-p), and
    because the noise depends only on the seed and the position, the same seed gives the same text
    whether or not drafts are verified, however many are proposed: speculative verification stays a
    plain comparison with the target's choice (a coupling that replaces accept/reject resampling).
    """

    def __init__(self, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                 constraint: "PrefixConstraint | None" = None):
        self.temperature, self.top_p, self.constraint = temperature, top_p, constraint
        self.seed = seed if seed is not None else int(torch.randint(0, 2**31 - 1, ()))

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def _allowed(self) -> list[int] | None:
        c = self.constraint
        return c.allowed() if c is not None and not c.done else None

    def scores(self, row: torch.Tensor, position: int) -> torch.Tensor:
        """Perturbed log-probabilities whose argmax is the sampled token: [vocab] fp32 on CPU."""
        logp = torch.log_softmax(row.float().cpu() / self.temperature, -1)
        if self.top_p < 1.0:
            sorted_p, order = logp.exp().sort(descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= self.top_p  # always keeps the most likely token
            logp[order[drop]] = float("-inf")
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + position) % (2**63 - 1))
        u = torch.rand(logp.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
        return logp - torch.log(-torch.log(u))

    def pick(self, row: torch.Tensor, position: int = 0) -> int:
        """The token for `position`; -1 when a constraint allows nothing."""
        allowed = self._allowed()
        if allowed is not None and not allowed:
            return -1
        scores = row if self.greedy else self.scores(row, position)
        if allowed is None:
            return int(scores.argmax())
        return allowed[int(scores[allowed].argmax())]


def verify_draft(rows: torch.Tensor, draft: list[int], sampler: Sampler, position: int = 0) -> list[int]:
    """Tokens to emit after a verification pass: the accepted prefix of the draft and one more.

    rows[i] are the target's logits after draft[:i] (rows: [len(draft) + 1, vocab]), for the token at
    `position + i`. Accept while the target's own choice equals the draft, then take the target's
    choice: exactly what decoding without the draft produces, greedy or sampled (see Sampler).
    """
    out: list[int] = []
    for i, d in enumerate(draft):
        t = sampler.pick(rows[i], position + i)
        out.append(t)
        if t != d:
            return out
    out.append(sampler.pick(rows[len(draft)], position + len(draft)))
    return out


def plan_edit_reuse(old: list[int], new: list[int], start: int, min_chunk: int) -> list[tuple[int, int, int]]:
    """Chunks of `old` (tokens with K/V in the slot) that reappear in `new` after an edit.

    Aligns old[start:] with new[start:] (Levenshtein opcodes, rapidfuzz) and returns (old position,
    new position, length) for every unchanged run of at least `min_chunk` tokens. The last token of
    `new` is never covered: it must be computed to produce logits.
    """
    from rapidfuzz.distance import Levenshtein

    if len(new) - start < min_chunk or len(old) - start < min_chunk:
        return []
    chunks = []
    for op in Levenshtein.opcodes(old[start:], new[start:]):
        if op.tag != "equal":
            continue
        src, dst, n = op.src_start + start, op.dest_start + start, op.src_end - op.src_start
        n = min(n, len(new) - 1 - dst)
        if n >= min_chunk:
            chunks.append((src, dst, n))
    return chunks


class PrefixConstraint:
    """Token healing: the generated bytes must begin with `required`.

    A token is allowed while it is consistent with what remains: its bytes start with the remainder
    (it completes the healed text and goes beyond), or it is a non-empty prefix of the remainder.
    """

    def __init__(self, required: bytes, by_first_byte: dict[int, list[int]], token_bytes: list[bytes]):
        self.remaining = required
        self._by_first_byte = by_first_byte
        self._token_bytes = token_bytes

    @property
    def done(self) -> bool:
        return not self.remaining

    def allowed(self) -> list[int]:
        rem = self.remaining
        tb = self._token_bytes
        return [t for t in self._by_first_byte.get(rem[0], ()) if tb[t].startswith(rem) or rem.startswith(tb[t])]

    def advance(self, token: int) -> None:
        b = self._token_bytes[token]
        self.remaining = self.remaining[len(b):] if self.remaining.startswith(b) else b""


def index_by_first_byte(token_bytes: list[bytes], exclude: frozenset[int]) -> dict[int, list[int]]:
    index: dict[int, list[int]] = defaultdict(list)
    for tid, b in enumerate(token_bytes):
        if b and tid not in exclude:
            index[b[0]].append(tid)
    return dict(index)
