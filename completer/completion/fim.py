"""FIM templates: which sentinel ids a model family uses, detected from its tokenizer.

Every family gets the Contract 1 layout through its own sentinels (inserted as ids, never as text):

    qwen / embedded  [<|file_sep|>path\\n] <|fim_prefix|>ABOVE <|fim_suffix|>SUFFIX <|fim_middle|>LEFT
    starcoder        [<file_sep>path\\n] <fim_prefix>ABOVE <fim_suffix>SUFFIX <fim_middle>LEFT
    deepseek         [BOS] <｜fim▁begin｜>ABOVE <｜fim▁hole｜>SUFFIX <｜fim▁end｜>LEFT
    codellama        [BOS] ▁<PRE>ABOVE ▁<SUF>SUFFIX ▁<MID>LEFT
    codestral        [BOS] [SUFFIX]SUFFIX [PREFIX]ABOVE LEFT    (suffix first: no middle marker)

BOS: the Llama-style families were trained with their tokenizer's begin-of-sentence token first
(`add_bos_token`), so the prompt starts with it when the vocabulary has it.

In each, everything before LEFT (the cursor line's left part) depends only on the lines around the
cursor line, so typing within a line keeps the cached prefix. Only the first two have file
separators and repository names, and so take context chunks from other files.
"""

from __future__ import annotations

from dataclasses import dataclass

from completer.tokenizer import Tokenizer


class UnknownFimTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix_id: int
    suffix_id: int
    middle_id: int | None  # None: suffix-first layout, the left part follows the prefix directly
    file_sep_id: int | None
    repo_name_id: int | None
    stop_ids: frozenset[int]  # end of text, sentinels, file separator, padding
    suffix_first: bool = False
    bos_id: int | None = None  # first token of every prompt (Llama-style families)
    end_id: int | None = None  # what the model emits after the middle: the end of a suggestion


@dataclass(frozen=True)
class _Family:
    prefix: str
    suffix: str
    middle: str | None
    file_sep: str | None = None
    repo_name: str | None = None
    stops: tuple[str, ...] = ()
    suffix_first: bool = False
    bos: str | None = None


FAMILIES = {
    "qwen": _Family("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|repo_name|>",
                    ("<|endoftext|>", "<|fim_pad|>", "<|im_end|>")),
    "starcoder": _Family("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>",
                         ("<|endoftext|>", "<fim_pad>")),
    "deepseek": _Family("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
                        stops=("<｜end▁of▁sentence｜>", "<|EOT|>"), bos="<｜begin▁of▁sentence｜>"),
    "codellama": _Family("▁<PRE>", "▁<SUF>", "▁<MID>", stops=("▁<EOT>", "</s>"), bos="<s>"),
    "codestral": _Family("[PREFIX]", "[SUFFIX]", None, stops=("</s>", "[MIDDLE]"), suffix_first=True, bos="<s>"),
}


def detect_template(tokenizer: Tokenizer, override: str | None = None) -> FimTemplate:
    """The family whose sentinels the tokenizer has (or `override`, checked against it)."""
    names = [override] if override else list(FAMILIES)
    for family in names:
        if family not in FAMILIES:
            raise UnknownFimTemplateError(f"unknown FIM template {family!r} (known: {', '.join(FAMILIES)})")
        f = FAMILIES[family]
        pre, suf = tokenizer.token_id(f.prefix), tokenizer.token_id(f.suffix)
        mid = tokenizer.token_id(f.middle) if f.middle else None
        if pre is None or suf is None or (f.middle and mid is None):
            if override:
                missing = [n for n, i in ((f.prefix, pre), (f.suffix, suf), (f.middle, mid)) if n and i is None]
                raise UnknownFimTemplateError(f"FIM template {family!r} does not match {tokenizer.path}: "
                                              f"no {', '.join(missing)} in its vocabulary")
            continue
        sep = tokenizer.token_id(f.file_sep) if f.file_sep else None
        repo = tokenizer.token_id(f.repo_name) if f.repo_name else None
        stops = {tokenizer.token_id(s) for s in f.stops} | {pre, suf, mid, sep, repo}
        bos = tokenizer.token_id(f.bos) if f.bos else None
        end = next((i for i in map(tokenizer.token_id, f.stops) if i is not None), None)
        return FimTemplate(family, pre, suf, mid, sep, repo, frozenset(i for i in stops if i is not None),
                           f.suffix_first, bos, end)
    raise UnknownFimTemplateError(
        f"{tokenizer.path}: no FIM sentinels of a known family ({', '.join(FAMILIES)}); "
        "pass an explicit template or use a FIM-trained code model"
    )
