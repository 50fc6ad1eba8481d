from completer.engines.shaper import find_text_stop, utf8_complete_len
from completer.engines.torch.decoding import NgramIndex, PrefixConstraint, index_by_first_byte


def test_ngram_draft_prefers_longest_and_latest_match():
    idx = NgramIndex([1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 2, 3])
    # tail (5, 2, 3) never occurred before; (2, 3) last occurred before 7
    assert idx.draft(3) == [7, 8, 5]
    idx.append(7)
    assert idx.draft(2) == [8, 5]  # (2, 3, 7) matched
    assert NgramIndex([4, 5, 6]).draft(4) == []


def test_ngram_index_built_at_once_equals_built_by_appending():
    import random

    rng = random.Random(3)
    toks = [rng.randrange(6) for _ in range(300)]
    at_once = NgramIndex(toks)
    appended = NgramIndex(toks[:2])
    for t in toks[2:]:
        appended.append(t)
    assert at_once._after == appended._after
    for extra in range(6):
        a, b = NgramIndex(toks + [extra]), NgramIndex(toks)
        b.append(extra)
        assert a.draft(5) == b.draft(5)


def test_single_token_matches_do_not_draft():
    assert NgramIndex([7, 1, 2, 9, 3, 1]).draft(3) == []  # only "1" matches
    assert NgramIndex([7, 1, 2, 9, 3, 1], orders=(2, 1)).draft(3) == [2, 9, 3]


def test_ngram_draft_is_limited_to_k():
    idx = NgramIndex([1, 2, 3, 4, 5, 6, 1, 2])
    assert idx.draft(2) == [3, 4]
    assert idx.draft(10) == [3, 4, 5, 6, 1, 2]


def test_prefix_constraint_walks_through_partial_tokens():
    vocab = [b"", b"re", b"ret", b"return", b"urn", b"u", b"rn", b"x"]
    index = index_by_first_byte(vocab, frozenset())
    c = PrefixConstraint(b"retu", index, vocab)
    assert sorted(c.allowed()) == [1, 2, 3]  # "re", "ret" are prefixes; "return" extends past
    c.advance(2)  # "ret"
    assert c.remaining == b"u"
    assert sorted(c.allowed()) == [4, 5]  # "urn" and "u"
    c.advance(4)
    assert c.done


def test_utf8_complete_len_holds_back_partial_sequences():
    s = "é✓𝔘".encode()
    assert utf8_complete_len(s) == len(s)
    assert utf8_complete_len(s[:-1]) == len("é✓".encode())
    assert utf8_complete_len(s[:3]) == 2
    assert utf8_complete_len(b"abc") == 3
    assert utf8_complete_len(b"") == 0


def test_find_text_stop():
    assert find_text_stop("abc\ndef", 1, ()) == (3, "max_lines")
    assert find_text_stop("a\nb\nc", 2, ()) == (3, "max_lines")
    assert find_text_stop("a\nb", 2, ()) is None
    assert find_text_stop("x = 1  # done", 0, ("#",)) == (7, "stop_string")
    assert find_text_stop("x#\ny", 1, ("#",)) == (1, "stop_string")


def test_draft_policy_weighs_cost_against_acceptance():
    from completer.engines.torch.decoding import DraftPolicy

    free = DraftPolicy([1.0, 1.0, 1.0, 1.0, 1.0])  # a GPU: wider steps cost nothing extra
    assert free.length(4) == 4 and free.length(2) == 2 and free.length(0) == 0
    dear = DraftPolicy([1.0, 1.6, 2.2, 2.8, 3.4])  # a CPU bound by bandwidth
    for _ in range(30):
        dear.observe(0, 2)  # drafts keep failing
    assert dear.rate() < 0.1 and dear.length(4) == 0
    for _ in range(30):
        dear.observe(4, 4)  # now they are always right (e.g. copying a block)
    assert dear.rate() > 0.9 and dear.length(4) >= 3


def test_draft_policy_break_even_is_where_drafting_starts_to_pay():
    from completer.engines.torch.decoding import DraftPolicy

    for cost in ([1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.6, 2.2, 2.8, 3.4], [1.0, 2.0, 2.6, 3.6, 4.5]):
        need = DraftPolicy(cost).break_even()
        assert 0 < need < 1
        assert DraftPolicy(cost, prior_rate=need).length(4) > 0
        assert DraftPolicy(cost, prior_rate=need - 0.01).length(4) == 0
    wide_is_cheap = DraftPolicy([1.0, 2.0, 2.2, 2.4, 2.6])  # one drafted token never pays; four might
    assert wide_is_cheap.break_even(available=1) is None and wide_is_cheap.break_even() < 0.9
    assert DraftPolicy([1.0, 9.0, 9.0]).break_even() is None  # 3 tokens for the price of 9: never


def test_plan_edit_reuse_finds_shifted_chunks():
    from completer.engines.torch.decoding import plan_edit_reuse

    old = list(range(100, 140))
    new = old[:10] + [1, 2, 3] + old[10:]  # three tokens inserted after a 10-token common prefix
    assert plan_edit_reuse(old, new, 10, 8) == [(10, 13, 29)]  # the last token is left to compute
    new2 = old[:10] + old[14:30] + [7] + old[30:]  # 4 deleted, one replaced later
    assert plan_edit_reuse(old, new2, 10, 8) == [(14, 10, 16), (30, 27, 9)]  # tail capped to leave the last token
    assert plan_edit_reuse(old, old[:12] + [5], 10, 8) == []


def test_block_end_rule_stops_before_a_dedented_line():
    assert find_text_stop("a = 1\n        b = 2\n    c = 3", 0, (), min_indent=8) == (19, "block_end")
    assert find_text_stop("a = 1\n        b = 2\n    ", 0, (), min_indent=8) is None  # indentation not known yet
    assert find_text_stop("a = 1\n\n        b = 2", 0, (), min_indent=8) is None  # blank lines do not end blocks


def test_sampler_and_verification():
    import torch

    from completer.engines.torch.decoding import Sampler, verify_draft

    rows = torch.tensor([[0.0, 5.0, 1.0], [4.0, 0.0, 1.0], [0.0, 0.0, 9.0]])
    greedy = Sampler()
    assert verify_draft(rows, [1, 0], greedy) == [1, 0, 2]  # all accepted plus the bonus token
    assert verify_draft(rows, [1, 2], greedy) == [1, 0]  # second draft token rejected: target's own
    assert verify_draft(rows, [], greedy) == [1]
    # Sampling: per-position draws follow softmax(logits / T) ...
    counts = [0, 0, 0]
    for seed in range(3000):
        counts[Sampler(temperature=1.0, seed=seed).pick(rows[1], position=5)] += 1
    p = torch.softmax(rows[1], -1)
    for i in range(3):
        assert abs(counts[i] / 3000 - float(p[i])) < 0.03
    # ... and whatever a draft proposes, verification emits what plain sampling would have.
    for seed in range(50):
        s = Sampler(temperature=1.0, seed=seed)
        plain = [s.pick(rows[i], 10 + i) for i in range(3)]
        for draft in ([1, 0], [2, 2], [0, 1], plain[:2]):
            got = verify_draft(rows, draft, s, position=10)
            assert got == plain[:len(got)]
    top = Sampler(temperature=1.0, top_p=0.5, seed=1)
    assert {top.pick(rows[0], i) for i in range(50)} == {1}  # top-p keeps only the dominant token


def test_ngram_lookup_reports_how_long_the_match_is():
    assert NgramIndex([1, 2, 3, 7, 1, 2, 3]).lookup(2) == ([7, 1], 3)
    assert NgramIndex([5, 2, 3, 9, 1, 2, 3]).lookup(2) == ([9, 1], 2)  # no earlier "1 2 3"; "2 3" matched
    assert NgramIndex([4, 5, 6]).lookup(4) == ([], 0)
    copied = [1, 2, 3, 4, 5, 6, 7]
    # The 3-gram "5 6 7" found the copy; the match goes on backwards to 7 tokens: bucket 6 (6-9).
    assert NgramIndex([9, *copied, 8, *copied]).lookup(2) == ([8, 1], 6)
    assert NgramIndex([9, 4, 5, 6, 7, 8, *copied]).lookup(1) == ([8], 4)  # "4 5 6 7": 4 tokens
    long = list(range(20, 40))
    assert NgramIndex([*long, 0, *long]).lookup(1) == ([0], 10)  # 10 tokens or more: one class


def test_draft_policy_keeps_a_rate_per_key():
    """Drafts from 2-token matches keep failing while 3-token matches are right: only the latter draft."""
    from completer.engines.torch.decoding import DraftPolicy

    policy = DraftPolicy([1.0, 1.3, 1.5, 1.6, 1.7])
    for _ in range(30):
        policy.observe(0, 3, key=2)
        policy.observe(4, 4, key=3)
    assert policy.rate(2) < 0.1 and policy.length(4, key=2) == 0
    assert policy.rate(3) > 0.9 and policy.length(4, key=3) == 4
    assert policy.rate() == policy.prior_rate  # an unseen key starts from the prior


def test_propose_prefers_ngram_drafts_and_shadows_those_not_worth_verifying():
    from completer.engines.torch.decoding import DraftPolicy, Proposal, propose

    tokens = [1, 2, 3, 4, 5, 6, 9, 1, 2, 3]  # "1 2 3" was followed by "4 5 6" before
    cheap, dear = DraftPolicy([1.0] * 5), DraftPolicy([1e9] * 5)
    assert propose(NgramIndex(tokens), cheap, None, tokens, None, None, 3) == Proposal([4, 5, 6], cheap, 3)
    # Verifying costs too much: no draft, but its first token is checked against the real one.
    assert propose(NgramIndex(tokens), dear, None, tokens, None, None, 3) == Proposal([], shadow=(4, 3))
    assert propose(NgramIndex(tokens), cheap, None, tokens, None, None, 0) == Proposal([])  # no room
    healing = PrefixConstraint(b"x", {}, [])  # still choosing the healed text's tokens
    assert propose(NgramIndex(tokens), cheap, None, tokens, healing, None, 3) == Proposal([])

    class Drafter:  # what propose asks of a drafter.ModelDrafter
        policy = DraftPolicy([1.0] * 5)

        def propose(self, context, k, sampler):
            return [7] * k

    drafter = Drafter()
    # The n-gram draft is not worth it: the draft model proposes, the shadow still rides along.
    assert propose(NgramIndex(tokens), dear, drafter, tokens, None, None, 2) == \
        Proposal([7, 7], drafter.policy, None, (4, 3))
    assert propose(NgramIndex([5, 6, 7]), cheap, drafter, [5, 6, 7], None, None, 2) == \
        Proposal([7, 7], drafter.policy)  # no n-gram match at all


def test_verification_costs_time_every_width_then_a_step_at_one_position():
    from completer.engines.torch.costs import measure_step, verification_costs

    calls = []

    def forward(ids, start, num_logits):
        calls.append((len(ids), start, num_logits))

    costs = verification_costs(forward, 40, 3, "cpu", rounds=2)
    assert len(costs) == 4 and costs[0] == 1.0 and all(c >= 1.0 for c in costs)  # never below a step
    per_round = [(1, 40, 1), (1, 40, 1), (2, 40, 2), (1, 40, 1), (3, 40, 3), (1, 40, 1), (4, 40, 4), (1, 40, 1)]
    assert calls == per_round * 3  # a warm-up round, then two measured
    calls.clear()
    assert measure_step(forward, 7, 2, "cpu", repeats=3, then=1) >= 0
    assert calls == [(2, 7, 2), (1, 7, 1)] * 4
