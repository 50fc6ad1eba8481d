"""Draft-model speculation: a small model with the target's tokenizer proposes k tokens, the target
verifies them in one pass (decoding.verify_draft), so the output is the target's own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from completer.engines.model_dirs import MODEL_NOTES_FILE
from completer.tokenizer import Tokenizer

from .compile import scratch_start
from .costs import measure_step
from .decoding import DraftPolicy, Sampler
from .model import load_model
from .slot import Forward, common_prefix_len

DEFAULT_ACCEPTANCE = 0.6  # the policy's prior for a draft nobody measured beside this target
OFF = ("none", "off")


@dataclass(frozen=True)
class DraftChoice:
    """Which draft model an engine loads: `model` (None: none), whether the user named it
    (`given`: used whatever it costs, its policy deciding per step) or it is the target's own
    (auto: used only where its measured cost pays at `acceptance`), and that acceptance."""
    model: str | None
    given: bool = False
    acceptance: float = DEFAULT_ACCEPTANCE


def choose_draft(target_dir: str | Path, asked: str | Path | None) -> DraftChoice:
    """The draft for `asked`: "none"/"off", a model (directory or shipped name), or None/"auto": the
    draft the target's completer.json pairs with it, {"draft": {"model": NAME, "acceptance": RATE}},
    RATE measured for the pair by bench/quality.py --draft (none paired: no draft)."""
    paired = _paired_draft(target_dir)
    if asked is not None and str(asked) in OFF:
        return DraftChoice(None)
    if asked is None or str(asked) == "auto":
        if paired is None:
            return DraftChoice(None)
        return DraftChoice(paired[0], False, paired[1])
    same = paired is not None and _resolved(paired[0]) == _resolved(str(asked))
    return DraftChoice(str(asked), True, paired[1] if same else DEFAULT_ACCEPTANCE)


def _paired_draft(target_dir: str | Path) -> tuple[str, float] | None:
    path = Path(target_dir) / MODEL_NOTES_FILE
    try:
        draft = json.loads(path.read_text(encoding="utf-8")).get("draft")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(draft, dict) or not isinstance(draft.get("model"), str):
        return None
    rate = draft.get("acceptance", DEFAULT_ACCEPTANCE)
    beside = Path(target_dir) / draft["model"]  # a directory next to the target's, else a shipped name
    return (str(beside.resolve()) if beside.is_dir() else draft["model"],
            float(rate) if isinstance(rate, (int, float)) and 0 < rate < 1 else DEFAULT_ACCEPTANCE)


def _resolved(name: str) -> Path | None:
    from completer.engines.model_dirs import resolve_model

    try:
        return Path(resolve_model(name)).resolve()
    except (OSError, ValueError):
        return None


def draft_policy(target_costs: list[float], step: float, acceptance: float) -> DraftPolicy:
    """Drafting k tokens costs their verification plus k draft steps (`step`: one, in target steps)."""
    return DraftPolicy([target_costs[k] + k * step for k in range(len(target_costs))], prior_rate=acceptance)


def draft_digest(model: str | Path) -> str | None:
    """The draft model by content (its weights and config), what its kept step cost is filed under;
    None when it cannot be found or read (then it is loaded, and that says why)."""
    from completer.engines.model_dirs import resolve_model

    from .aot import entry_key, key_fields

    try:
        return entry_key(key_fields(Path(resolve_model(str(model))), "draft", 0, 0))
    except (OSError, ValueError):
        return None


class ModelDrafter:
    """A small draft model proposing k tokens for the target to verify in one pass.

    It keeps its own working slot: before proposing it feeds whatever of the context it has not
    seen (longest common prefix with what it has, so rejected proposals roll back by themselves).
    Its policy weighs k draft steps plus the wider verification against plain decoding.

    What it shares with the target: the tokenizer (token_bytes, checked), device, weight dtypes
    (small_dtype: the decode-phase copy, None for none), max_seq and max_draft; target_step and
    target_costs (costs.verification_costs) are the target's forward and its measured costs.
    `acceptance` is how often the draft's token is the target's, as measured for this pair
    (bench/quality.py --draft): the policy starts from it.
    """

    def __init__(self, model_dir: str | Path, target_step: Forward, target_costs: list[float], *,
                 token_bytes: list[bytes], device: str, dtype: torch.dtype, small_dtype: torch.dtype | None,
                 max_seq: int, max_draft: int, acceptance: float = DEFAULT_ACCEPTANCE,
                 known_step: float | None = None):
        from completer.engines.model_dirs import resolve_model

        model_dir = resolve_model(str(model_dir))
        self.device, self.max_seq, self.max_draft = device, max_seq, max_draft
        self.model = load_model(model_dir, device=device, dtype=dtype)
        tok = Tokenizer(model_dir)
        if tok.token_bytes != token_bytes:
            raise ValueError(f"draft model {model_dir} does not share the target's tokenizer")
        self.model_dir = model_dir
        self.acceptance = acceptance  # the policy's prior per-token acceptance rate
        self.model.prepare_for_inference(small_dtype, small_max_t=1 + max_draft)
        self.model.setup_cache(max_seq)
        self.cached_ids: list[int] = []
        # One draft step in target steps: known_step where it was measured before (costs.KnownCosts).
        self.step = known_step if known_step is not None else self.time_step(target_step)
        self.policy = draft_policy(target_costs, self.step, self.acceptance)

    def time_step(self, target_step: Forward) -> float:
        """What one draft step costs in plain target steps (again when the target's step changes:
        after a background compile). Both models' steps are timed at the scratch positions
        (compile.scratch_start): the caller forgets them in the target's slot first."""
        scratch = scratch_start(self.max_seq, self.max_draft)
        del self.cached_ids[scratch:]  # overwritten there
        return measure_step(self._forward, scratch, 1, self.device) / measure_step(target_step, scratch, 1, self.device)

    def measured_policy(self, target_step: Forward, target_costs: list[float]) -> DraftPolicy:
        """A fresh policy against the target's step as it is now (time_step)."""
        self.step = self.time_step(target_step)
        return draft_policy(target_costs, self.step, self.acceptance)

    def _forward(self, ids: list[int], start: int, num_logits: int) -> torch.Tensor:
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        return self.model(idx, start_pos=start, num_logits=num_logits)[0]

    def propose(self, context: list[int], k: int, sampler: Sampler) -> list[int]:
        """k tokens after `context`, chosen like the target would (same sampler, same noise)."""
        reuse = min(common_prefix_len(self.cached_ids, context), len(context) - 1)
        del self.cached_ids[reuse:]
        logits = self._forward(context[reuse:], reuse, 1)[-1]
        self.cached_ids.extend(context[reuse:])
        tokens = []
        for i in range(k):
            t = sampler.pick(logits, len(context) + i)
            tokens.append(t)
            if i + 1 < k:
                logits = self._forward([t], len(self.cached_ids), 1)[-1]
                self.cached_ids.append(t)
        return tokens
