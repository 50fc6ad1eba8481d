"""Contract 1: the cache-stable FIM prompt.

    [<|repo_name|>name\\n] (<|file_sep|>path\\nchunk\\n)*
    <|file_sep|>path\\n<|fim_prefix|>LINES_ABOVE<|fim_suffix|>REST_OF_LINE_AND_BELOW<|fim_middle|>LEFT_OF_CURSOR

Everything before <|fim_middle|> depends only on the lines above and below the cursor line (and on
what is right of the cursor), so typing within a line changes only the tokens after the middle
marker. The line windows start at multiples of `window_step` lines, so moving down a line keeps the
cached prefix too. Each segment is tokenised on its own and sentinels go in as ids; the training
pipeline calls `layout_ids` so the model sees exactly the serving tokenisation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from completer.lines import as_lf
from completer.syntax import Snapshot, anchor_point, enclosing_header_rows, is_statement_boundary
from completer.tokenizer import Tokenizer

from .fim import FimTemplate

# The smallest prompt budget a user may set: below it a prompt holds little more than the cursor
# line (which keeps an eighth of the budget either side of the cursor).
MIN_PROMPT_TOKENS = 128


@dataclass(frozen=True)
class PromptSettings:
    budget_tokens: int = 1536  # whole prompt, context chunks included
    above_share: float = 0.75  # of the budget, for lines above the cursor line
    window_step: int = 16  # windows move in steps of this many lines (cache stability)
    heal: bool = True  # back up the cursor's last token and constrain generation to re-type it
    syntax: bool = True  # windows cut at statement boundaries, enclosing signatures kept (needs a tree)


@dataclass(frozen=True)
class Prompt:
    ids: tuple[int, ...]
    heal_prefix: bytes  # text removed from the end of the prompt that generation must re-produce
    stable_len: int  # tokens up to and including <|fim_middle|>: stable while typing within a line
    left: str  # cursor line, left of the cursor
    right: str  # cursor line, right of the cursor
    next_lines: list[str]  # a few lines after the cursor line, for post-processing
    prev_lines: tuple[str, ...] = ()  # as many lines before it (the nearest last)


def layout_ids(tok: Tokenizer, tpl: FimTemplate, *, path: str, above: str, suffix: str, left: str,
               context: tuple[tuple[str, str], ...] = (), repo_name: str = "") -> tuple[list[int], int]:
    """Token ids of the Contract 1 layout, and the index where the cursor line's left part starts
    (just past <|fim_middle|>, or past the prefix in a suffix-first layout)."""
    ids: list[int] = [] if tpl.bos_id is None else [tpl.bos_id]
    if repo_name and tpl.repo_name_id is not None:
        ids += [tpl.repo_name_id, *tok.encode(repo_name + "\n")]
    if tpl.file_sep_id is not None:
        for chunk_path, chunk in context:
            ids += [tpl.file_sep_id, *tok.encode_cached(f"{chunk_path}\n{chunk}\n")]
        ids += [tpl.file_sep_id, *tok.encode(path + "\n")]
    if tpl.suffix_first:
        ids += [tpl.suffix_id, *tok.encode_cached(suffix), tpl.prefix_id, *tok.encode_cached(above)]
    else:
        ids += [tpl.prefix_id, *tok.encode_cached(above), tpl.suffix_id, *tok.encode_cached(suffix), tpl.middle_id]
    stable = len(ids)
    ids += tok.encode(left)
    return ids, stable


_NEXT_LINES = 16  # lines after (and before) the cursor line kept for post-processing
_CHARS_PER_TOKEN = 4  # generous estimate to pick a window before the one exact tokenisation


def _lf_len(line: str) -> int:
    """The length of `line` in the prompt (as_lf: a CRLF is one character there)."""
    return len(line) - line.endswith("\r\n")


def _line_size(lines: Sequence[str], cursor_line: int) -> Callable[[str], int]:
    """How the windows measure a line: len where the cursor's lines end in LF (the common case keeps
    the builtin: a Python function per line made every prompt 0.1 ms slower), _lf_len in a CRLF file."""
    near = lines[max(0, cursor_line - 1):cursor_line + 1]
    return _lf_len if any(line.endswith("\r\n") for line in near) else len


def window_above(lines: Sequence[str], cursor_line: int, tok: Tokenizer, budget: int, step: int,
                 boundary: Callable[[int], bool] | None = None, headers: Sequence[int] = ()) -> str:
    """Lines above the cursor line. The window starts at a multiple of `step`, so it stays put while
    the cursor moves within `step` lines; it shrinks `step` lines at a time to fit the budget.

    With syntax: the start moves down to the next statement boundary (no half statements), and the
    signature lines of the definitions around the cursor that fell outside the window come first.
    The statement boundaries of the step above the start are tried first, earliest first, so the
    window uses the budget the line rounding would leave (still stable within a step).
    """

    def text_from(start: int) -> str:
        first = start
        if boundary is not None:
            while first < cursor_line and not boundary(first):
                first += 1
            if first == cursor_line:  # one statement (a big literal, a broken tree) fills the window:
                first = start  # cut it by lines rather than show nothing above
        return as_lf("".join(lines[r] for r in headers if r < first) + "".join(lines[first:cursor_line]))

    chars, start, size = 0, cursor_line, _line_size(lines, cursor_line)
    while start > 0 and chars + size(lines[start - 1]) <= budget * _CHARS_PER_TOKEN:
        start -= 1
        chars += size(lines[start])
    start = -(-start // step) * step if start > 0 else 0  # round up to a step boundary
    while start < cursor_line:
        text = text_from(start)
        if len(tok.encode_cached(text)) <= budget:
            if boundary is not None:  # the earliest boundary of the step above that still fits
                for row in range(max(0, start - step), start):
                    if boundary(row):
                        earlier = text_from(row)
                        if len(tok.encode_cached(earlier)) <= budget:
                            return earlier
            return text
        start += step
    return as_lf("".join(lines[r] for r in headers)) if headers else ""


def window_below(lines: Sequence[str], cursor_line: int, tok: Tokenizer, budget: int, step: int,
                 boundary: Callable[[int], bool] | None = None) -> str:
    """Lines below the cursor line, whole lines only, shrunk `step` lines at a time to fit; with
    syntax, it ends at a statement boundary (whole sibling statements, not half of one)."""
    first = cursor_line + 1
    chars, end, size = 0, first, _line_size(lines, cursor_line)
    while end < len(lines) and chars + size(lines[end]) <= budget * _CHARS_PER_TOKEN:
        chars += size(lines[end])
        end += 1
    while end > first:
        last = end
        if boundary is not None and end < len(lines):
            while last > first and not boundary(last):
                last -= 1
            if last == first:  # no boundary in reach: cut by lines rather than show nothing below
                last = end
        text = as_lf("".join(lines[first:last]))
        if len(tok.encode_cached(text)) <= budget:
            return text
        end = max(first, end - step)
    return ""


def healable(token: bytes) -> bool:
    """Whether the cursor's last token may be re-generated as part of a longer one. Not indentation
    or other blank runs: they are whole pre-tokens (nothing typed after them merges into them), and
    backing them up would hide the cursor's column from the model, which then guesses the depth."""
    return not (token.strip(b" \t") == b"" and (len(token) >= 2 or token == b"\t"))


def syntax_cuts(syntax: Snapshot, lines: Sequence[str], line: int,
                character: int) -> tuple[Callable[[int], bool], list[int]]:
    """Where windows around the cursor may start or end (statement boundaries of the blocks around
    it), and the rows of the enclosing signatures to keep: what window_above/window_below take."""
    boundary = functools.partial(is_statement_boundary, syntax, lines, anchor=anchor_point(syntax, lines, line))
    return boundary, enclosing_header_rows(syntax, lines, line, character)


def build_prompt(tok: Tokenizer, tpl: FimTemplate, lines: Sequence[str], line: int, character: int, *,
                 path: str, settings: PromptSettings = PromptSettings(),
                 context: tuple[tuple[str, str], ...] = (), syntax: Snapshot | None = None) -> Prompt:
    """`lines` as split_lines gives them; `line`/`character` 0-based, `character` in code points and
    already clamped to the line."""
    cur = lines[line]
    body = cur.rstrip("\r\n")
    newline = "\n" if len(body) < len(cur) else ""
    context = tuple((chunk_path, as_lf(chunk)) for chunk_path, chunk in context)
    # The cursor line gets a fixed reserve, so typing never resizes (and never invalidates) the
    # windows above and below; a megabyte-long minified line keeps only what is near the cursor.
    reserve = settings.budget_tokens // 8
    left, right = body[:character][-reserve:], body[character:][:reserve]
    budget = settings.budget_tokens - 2 * reserve - len(tok.encode(path)) - 8
    budget -= sum(len(tok.encode_cached(f"{p}\n{c}\n")) + 1 for p, c in context)
    budget = max(budget, 32)
    boundary, headers = None, []
    # tree-sitter counts rows by "\n" only: in a document broken by lone "\r"s (classic Mac) its rows
    # are not the document's lines, so that document gets line windows.
    lone_cr = cur.endswith("\r") or (line > 0 and lines[line - 1].endswith("\r"))
    if settings.syntax and syntax is not None and syntax.tree is not None and not lone_cr:
        boundary, headers = syntax_cuts(syntax, lines, line, character)
    above = window_above(lines, line, tok, int(budget * settings.above_share), settings.window_step, boundary,
                         headers)
    below = window_below(lines, line, tok, int(budget * (1 - settings.above_share)), settings.window_step, boundary)
    ids, stable = layout_ids(tok, tpl, path=path, above=above, suffix=right + newline + below, left="", context=context)
    heal = b""
    left_ids = tok.encode(left)
    if settings.heal and left_ids and healable(tok.token_bytes[left_ids[-1]]):
        heal = tok.token_bytes[left_ids[-1]]
        left_ids = left_ids[:-1]
    ids += left_ids
    next_lines = [ln.rstrip("\r\n") for ln in lines[line + 1:line + 1 + _NEXT_LINES]]
    prev_lines = tuple(ln.rstrip("\r\n") for ln in lines[max(0, line - _NEXT_LINES):line])
    return Prompt(tuple(ids), heal, stable, left, right, next_lines, prev_lines)
