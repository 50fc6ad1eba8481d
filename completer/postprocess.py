"""Suggestion clean-up after generation. Each rule is a small named function on strings.

Language-agnostic rules run on every suggestion; `truncate_at_block_end` asks tree-sitter where the
block around the cursor ends once the suggestion is typed (syntax.py), when the document has a tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .syntax import enclosing_block_end

if TYPE_CHECKING:
    from .syntax import Snapshot

_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class Context:
    left: str  # cursor line, left of the cursor
    right: str  # cursor line, right of the cursor
    next_lines: list[str]  # document lines after the cursor line
    multiline: bool
    syntax: "Snapshot | None" = None  # the document's tree, when its language is known
    cursor_byte: int = 0  # UTF-8 offset of the cursor in syntax.source


def truncate_at_block_end(text: str, ctx: Context) -> str:
    """A multi-line suggestion that closes the block around the cursor and goes on ends there."""
    if not ctx.multiline or ctx.syntax is None or ctx.syntax.tree is None or "\n" not in text:
        return text
    cut = enclosing_block_end(ctx.syntax, ctx.cursor_byte, text.encode("utf-8"))
    return text if cut is None else text.encode("utf-8")[:cut].decode("utf-8", errors="ignore")


_CLOSERS = ("}", ")", "]", "};", "});", "end", "fi", "done", "esac")


def drop_duplicate_closer(text: str, ctx: Context) -> str:
    """The suggestion's last line closes what the next line of the document already closes."""
    lines = text.split("\n")
    if len(lines) < 2 or lines[-1].strip() not in _CLOSERS:
        return text
    following = ctx.right.strip() or next((ln.strip() for ln in ctx.next_lines if ln.strip()), "")
    if following.startswith(lines[-1].strip()):
        return "\n".join(lines[:-1])
    return text


def trim_trailing_whitespace(text: str, ctx: Context) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()


def _imbalance(s: str) -> int:
    return sum(s.count(c) for c in _CLOSE) - sum(s.count(c) for c in _OPEN)


def drop_suffix_overlap(text: str, ctx: Context) -> str:
    """The model re-typed what is already right of the cursor: `print(x` + `)` before an existing `)`.

    Strip a tail that repeats the start of the rest of the line when it repeats all of it, or when it
    leaves the line with more closing brackets than it had before the suggestion.
    """
    right = ctx.right.strip()
    if not right or "\n" in text:
        return text
    base = _imbalance(ctx.left + ctx.right)
    for k in range(len(right), 0, -1):
        if not text.endswith(right[:k]):
            continue
        cut = text[:-k]
        if (k == len(right) and k > 1) or (
            _imbalance(ctx.left + text + ctx.right) > max(base, 0)
            and _imbalance(ctx.left + cut + ctx.right) < _imbalance(ctx.left + text + ctx.right)
        ):
            return cut
    return text


def stop_at_existing_code(text: str, ctx: Context) -> str:
    """A multi-line suggestion that reaches the code below the cursor ends before repeating it."""
    following = next((ln.strip() for ln in ctx.next_lines if ln.strip()), None)
    if following is None or "\n" not in text:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == following:
            return "\n".join(lines[:i])
    return text


def drop_repetition(text: str, ctx: Context) -> str:
    """Cut at the third consecutive copy of the same non-empty line (a looping small model)."""
    lines = text.split("\n")
    for i in range(2, len(lines)):
        if lines[i].strip() and lines[i] == lines[i - 1] == lines[i - 2]:
            return "\n".join(lines[: i - 1])
    return text


def match_indentation(text: str, ctx: Context) -> str:
    """Later lines of a suggestion indent like the file: tabs in a tab-indented file, spaces (in the
    file's step) in a space-indented one."""
    if "\n" not in text:
        return text
    sample = [ln for ln in [ctx.left, *ctx.next_lines] if ln[:1] in (" ", "\t")]
    if not sample:
        return text
    tabs = sum(ln.startswith("\t") for ln in sample) > len(sample) / 2
    widths = sorted({len(ln) - len(ln.lstrip(" ")) for ln in sample if ln.startswith(" ")} - {0})
    step = widths[0] if widths else 4
    out = [text.split("\n")[0]]
    for line in text.split("\n")[1:]:
        body = line.lstrip(" \t")
        lead = line[: len(line) - len(body)]
        if tabs and " " * step in lead:
            lead = lead.replace(" " * step, "\t")
        elif not tabs and "\t" in lead:
            lead = lead.replace("\t", " " * step)
        out.append(lead + body)
    return "\n".join(out)


def drop_empty(text: str, ctx: Context) -> str:
    return text if text.strip() else ""


FILTERS = (trim_trailing_whitespace, truncate_at_block_end, drop_suffix_overlap, stop_at_existing_code,
           drop_repetition, match_indentation, trim_trailing_whitespace, drop_duplicate_closer, drop_empty)


def postprocess(text: str, ctx: Context) -> str:
    for f in FILTERS:
        text = f(text, ctx)
    return text
