"""FIM templates: which sentinel ids a model family uses, detected from its tokenizer.

The foundation knows the two families whose repo-level layout matches Contract 1 directly: our
embedded model (same names as Qwen2.5-Coder) and StarCoder2. Other families (DeepSeek-Coder,
CodeLlama, Codestral) belong to the syntax-aware prompts issue and are refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tokenizer import Tokenizer


class UnknownFimTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix_id: int
    suffix_id: int
    middle_id: int
    file_sep_id: int | None
    repo_name_id: int | None
    stop_ids: frozenset[int]  # end of text, sentinels, file separator, padding


# family -> special token names: prefix, suffix, middle, file_sep, repo_name, end-of-text, pad
_FAMILIES = {
    "qwen": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|fim_pad|>"),
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>", "<|endoftext|>", "<fim_pad>"),
}


def detect_template(tokenizer: Tokenizer, override: str | None = None) -> FimTemplate:
    names = [override] if override else list(_FAMILIES)
    for family in names:
        if family not in _FAMILIES:
            raise UnknownFimTemplateError(f"unknown FIM template {family!r} (known: {', '.join(_FAMILIES)})")
        pre, suf, mid, sep, repo, eot, pad = _FAMILIES[family]
        ids = [tokenizer.id_of(n) for n in (pre, suf, mid)]
        if None in ids:
            continue
        optional = {n: tokenizer.id_of(n) for n in (sep, repo, eot, pad)}
        stops = frozenset(i for i in [*ids, *optional.values()] if i is not None)
        return FimTemplate(family, ids[0], ids[1], ids[2], optional[sep], optional[repo], stops)
    raise UnknownFimTemplateError(
        f"{tokenizer.path}: no FIM sentinels of a known family ({', '.join(_FAMILIES)}); "
        "pass an explicit template or use a FIM-trained code model"
    )
