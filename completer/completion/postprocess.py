"""Suggestion clean-up after generation. Each rule is a small named function on strings.

Language-agnostic rules run on every suggestion; `truncate_at_block_end` asks tree-sitter where the
block around the cursor ends once the suggestion is typed (syntax.py), when the document has a tree.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from completer.syntax import enclosing_block_end

if TYPE_CHECKING:
    from completer.syntax import Snapshot

_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class Context:
    left: str  # cursor line, left of the cursor
    right: str  # cursor line, right of the cursor
    next_lines: list[str]  # document lines after the cursor line
    multiline: bool
    syntax: "Snapshot | None" = None  # the document's tree, when its language is known
    cursor_byte: int = 0  # UTF-8 offset of the cursor in syntax.source
    prev_lines: tuple[str, ...] = ()  # document lines before the cursor line (the nearest last)
    truncated: bool = False  # generation ran out of tokens (it did not stop by itself)


def truncate_at_block_end(text: str, ctx: Context) -> str:
    """A multi-line suggestion that closes the block around the cursor and goes on ends there."""
    if not ctx.multiline or ctx.syntax is None or ctx.syntax.tree is None or "\n" not in text:
        return text
    cut = enclosing_block_end(ctx.syntax, ctx.cursor_byte, text.encode("utf-8"))
    return text if cut is None else text.encode("utf-8")[:cut].decode("utf-8", errors="ignore")


_CLOSERS = ("}", ")", "]", "};", "});", "end", "fi", "done", "esac")


def _is_closer(line: str) -> bool:
    """A line that only closes something (`}`, `end`, `});`): it says which block by its indentation."""
    s = line.strip()
    return s in _CLOSERS or (s != "" and not any(ch.isalnum() for ch in s))


def _lead(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def _width(line: str) -> int:
    return len(_lead(line).expandtabs(4))


def drop_duplicate_closer(text: str, ctx: Context) -> str:
    """The suggestion's last line closes what the document already closes: right of the cursor, or
    on the next line at the same indentation (a closer further left closes an outer block)."""
    lines = text.split("\n")
    if len(lines) < 2 or lines[-1].strip() not in _CLOSERS:
        return text
    if ctx.right.strip():
        same = ctx.right.strip().startswith(lines[-1].strip())
    else:
        following = next((ln for ln in ctx.next_lines if ln.strip()), "")
        same = following.strip().startswith(lines[-1].strip()) and _width(following) == _width(lines[-1])
    return "\n".join(lines[:-1]) if same else text


def trim_trailing_whitespace(text: str, ctx: Context) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()


def _imbalance(s: str) -> int:
    return sum(s.count(c) for c in _CLOSE) - sum(s.count(c) for c in _OPEN)


_QUOTES = "\"'`"


def _odd_quotes(s: str, quote: str) -> bool:
    """Whether `s` leaves a `quote` string open (escaped quotes do not count)."""
    return (s.count(quote) - s.count("\\" + quote)) % 2 == 1


def drop_suffix_overlap(text: str, ctx: Context) -> str:
    """The model re-typed what is already right of the cursor: `print(x` + `)` before an existing `)`,
    `"hello wor` + `ld"` before the `"` the editor closed the string with.

    Strip a tail that repeats the start of the rest of the line when it repeats all of it, when it
    leaves the line with more closing brackets than it had before the suggestion, or when it leaves
    a string open that the line closed without it.
    """
    right = ctx.right.strip()
    if not right or "\n" in text:
        return text
    base = _imbalance(ctx.left + ctx.right)
    for k in range(len(right), 0, -1):
        if not text.endswith(right[:k]):
            continue
        cut = text[:-k]
        whole, kept = ctx.left + text + ctx.right, ctx.left + cut + ctx.right
        if (k == len(right) and k > 1) or (
            _imbalance(whole) > max(base, 0) and _imbalance(kept) < _imbalance(whole)
        ) or any(_odd_quotes(whole, q) and not _odd_quotes(kept, q) for q in set(right[:k]) & set(_QUOTES)):
            return cut
    return text


def stop_at_existing_code(text: str, ctx: Context) -> str:
    """A multi-line suggestion that reaches the code below the cursor ends before repeating it."""
    following = next((ln for ln in ctx.next_lines if ln.strip()), None)
    if following is None or "\n" not in text:
        return text
    # A bare closer matches only at its own indentation: `}` one level in closes the suggestion's
    # own loop, not the function the document closes below.
    closer = _is_closer(following)
    lines = text.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == following.strip() and (not closer or _width(line) == _width(following)):
            return "\n".join(lines[:i])
    return text


def drop_repetition(text: str, ctx: Context) -> str:
    """Cut at the third consecutive copy of the same non-empty line (a looping small model)."""
    lines = text.split("\n")
    for i in range(2, len(lines)):
        if lines[i].strip() and lines[i] == lines[i - 1] == lines[i - 2]:
            return "\n".join(lines[: i - 1])
    return text


# A unit of 1-24 characters, then at least three more copies of it right after.
_RUNAWAY = re.compile(r"(.{1,24}?)\1{3,}", re.DOTALL)


def cut_runaway_repetition(text: str, ctx: Context) -> str:
    """A suggestion that ran out of tokens while looping (`5, 5, 5, 5, 5,`, `bar\nbar\nbar\n`) keeps
    what came before the loop and one copy of it. Only a truncated suggestion: the same pattern in one
    that ended by itself is a table or a ruler the model chose to finish."""
    if not ctx.truncated:
        return text
    for m in _RUNAWAY.finditer(text):
        unit = m.group(1)
        if unit.strip() and len(m.group(0)) >= 8:
            return text[:m.start() + len(unit)].rstrip()
    return text


def _indent_step(leads: list[str]) -> int | None:
    """The usual indentation step of space-indented lines: the commonest increase from one line to
    the next (aligned continuation lines are rarer than nesting), else the smallest width."""
    widths = [len(ld) for ld in leads if ld and set(ld) == {" "}]
    rises = Counter(b - a for a, b in zip(widths, widths[1:]) if b > a)
    if rises:
        return max(sorted(rises), key=rises.__getitem__)
    return min(widths) if widths else None


def match_indentation(text: str, ctx: Context) -> str:
    """Later lines of a suggestion indent like the file: tabs in a tab-indented file (one per step of
    the suggestion's own spacing), spaces in the file's step in a space-indented one."""
    if "\n" not in text:
        return text
    sample = [ln for ln in [*ctx.prev_lines, ctx.left, *ctx.next_lines] if ln.strip() or ln is ctx.left]
    leads = [_lead(ln) for ln in sample if ln[:1] in (" ", "\t")]
    if not leads:
        return text
    tabs = sum(ld.startswith("\t") for ld in leads) > len(leads) / 2
    out = [text.split("\n")[0]]
    later = text.split("\n")[1:]
    if tabs:
        step = _indent_step([_lead(ln) for ln in later if ln.strip()]) or 4
    else:
        step = _indent_step(leads) or 4
    for line in later:
        lead = _lead(line)
        body = line[len(lead):]
        if tabs and " " in lead:
            spaces = len(lead.replace("\t", " " * step))
            lead = "\t" * (spaces // step) + " " * (spaces % step)
        elif not tabs and "\t" in lead:
            lead = lead.replace("\t", " " * step)
        out.append(lead + body)
    return "\n".join(out)


def drop_empty(text: str, ctx: Context) -> str:
    return text if text.strip() else ""


FILTERS = (trim_trailing_whitespace, cut_runaway_repetition, truncate_at_block_end, drop_suffix_overlap,
           stop_at_existing_code, drop_repetition, match_indentation, trim_trailing_whitespace,
           drop_duplicate_closer, drop_empty)


def postprocess(text: str, ctx: Context) -> str:
    for f in FILTERS:
        text = f(text, ctx)
    return text
