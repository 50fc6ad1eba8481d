"""Training samples in exactly the serving layout (Contract 1), built on the fly from the corpus.

A FIM sample cuts a file at a cursor and asks for the text the user would type next:

    [<|file_sep|>other.py\\nchunk\\n]* <|file_sep|>path\\n<|fim_prefix|>LINES_ABOVE
    <|fim_suffix|>TEXT_AFTER_THE_SPAN<|fim_middle|>CURSOR_LINE_LEFT + SPAN<|endoftext|>

Cursors sit at the indentation (line start), mid-line and inside identifiers; spans end at the end
of the line, before the rest of the line, or after a few more lines (blocks). The left part and the
span are tokenised together, so a cursor inside a token is a boundary the serving side heals (backs
up one token and constrains generation to re-type it). Some samples are suffix-first (SPM) and some
plain left-to-right. Each token carries a loss class: TARGET for what follows <|fim_middle|> (and the
body of plain samples), CONTEXT for the prefix/suffix text (a weaker language-model signal that a
data-limited small model needs), NONE for sentinels, headers and padding.

Rows are packed to seq_len + 1 tokens and padded with <|fim_pad|> (no loss).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from completer.completion.fim import FimTemplate
from completer.lines import split_lines
from completer.tokenizer import Tokenizer

if TYPE_CHECKING:
    from completer.syntax import Snapshot

# completer.completion.prompt and completer.syntax (tree-sitter) are imported where they are used:
# the token-space builder (token_samples.py) shares this module's constants and runs where
# tree-sitter is not installed (the GPU image).

NONE, CONTEXT, TARGET = 0, 1, 2
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_CHARS_PER_TOKEN = 3.4  # stdlib average under our tokenizer: windows are sized in characters first


@dataclass(frozen=True)
class SampleMix:
    plain: float = 0.15  # left-to-right chunks of a file
    spm: float = 0.10  # of FIM samples: suffix first
    context: float = 0.30  # of FIM samples: chunks of sibling files before the file (repo level)
    multiline: float = 0.25  # span covers 2..8 lines
    midline_end: float = 0.20  # span ends before the rest of the line
    cursor_indent: float = 0.35  # cursor at the indentation; else mid-line or mid-identifier
    cursor_ident: float = 0.30
    syntax: float = 0.0  # of FIM samples: windows cut as serving cuts them with a tree (prompt.py)


def pick_cursor(rng: random.Random, body: str, mix: SampleMix) -> int:
    """A cursor column in a line: at the indentation, inside an identifier, or anywhere, by the mix."""
    indent = len(body) - len(body.lstrip(" \t"))
    r = rng.random()
    if r < mix.cursor_indent or indent >= len(body):
        return indent
    if r < mix.cursor_indent + mix.cursor_ident:
        idents = [m for m in _IDENT.finditer(body) if m.start() >= indent]
        if idents:
            m = rng.choice(idents)
            return rng.randint(m.start() + 1, m.end() - 1)
    return rng.randint(indent, len(body))


class SampleBuilder:
    def __init__(self, tok: Tokenizer, tpl: FimTemplate, files: list[dict], mix: SampleMix = SampleMix()):
        self.tok, self.tpl, self.mix = tok, tpl, mix
        self.files = files
        self.lines = [split_lines(f["text"]) for f in files]
        weights = [len(f["text"]) for f in files]
        total = sum(weights)
        self.cum = []
        acc = 0
        for w in weights:
            acc += w / total
            self.cum.append(acc)
        self.by_package: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            self.by_package.setdefault(f["package"], []).append(i)
        self.eot = tok.id_of("<|endoftext|>")
        self.pad = tok.id_of("<|fim_pad|>")
        self._trees: dict[int, Snapshot] = {}  # a few recent files' trees (files repeat in a row)

    def _tree(self, i: int) -> Snapshot:
        from completer.syntax import DocumentSyntax

        snap = self._trees.get(i)
        if snap is None:
            if len(self._trees) >= 16:
                self._trees.pop(next(iter(self._trees)))
            snap = self._trees[i] = DocumentSyntax("python", self.files[i]["text"]).snapshot
        return snap

    def _syntax_windows(self, i: int, line: int, col: int, last: int, above_tokens: int,
                        below_tokens: int) -> tuple[str, str] | None:
        """The windows above the cursor line and below the span's last line, cut at statement
        boundaries with the enclosing signatures first, exactly as build_prompt cuts them."""
        from completer.completion.prompt import PromptSettings, syntax_cuts, window_above, window_below

        snap, lines = self._tree(i), self.lines[i]
        if snap.tree is None:
            return None
        step = PromptSettings().window_step
        boundary, headers = syntax_cuts(snap, lines, line, col)
        above = window_above(lines, line, self.tok, above_tokens, step, boundary, headers)
        below = window_below(lines, last, self.tok, below_tokens, step, boundary)
        return above, below

    def _pick_file(self, rng: random.Random) -> int:
        import bisect

        return min(bisect.bisect_left(self.cum, rng.random()), len(self.files) - 1)

    def _path(self, rng: random.Random, i: int) -> str:
        path = self.files[i]["path"]
        return path.rsplit("/", 1)[-1] if rng.random() < 0.5 else path

    # -- one sample ------------------------------------------------------------------------------

    def plain(self, rng: random.Random, i: int, budget: int) -> tuple[list[int], list[int]]:
        lines = self.lines[i]
        start = rng.randrange(len(lines)) if rng.random() < 0.7 else 0
        text = "".join(lines[start:start + int(budget * _CHARS_PER_TOKEN / 30) + 1])
        header = [self.tpl.file_sep_id, *self.tok.encode(self._path(rng, i) + "\n")]
        body = self.tok.encode(text[: int(budget * _CHARS_PER_TOKEN)])
        ended = start + len(split_lines(text)) >= len(lines)
        ids = header + body[: budget - len(header) - 1]
        if ended and len(ids) == len(header) + len(body):
            ids.append(self.eot)
        return ids, [NONE] * len(header) + [TARGET] * (len(ids) - len(header))

    def fim(self, rng: random.Random, i: int, budget: int) -> tuple[list[int], list[int]] | None:
        from completer.completion.prompt import layout_ids

        lines = self.lines[i]
        line = rng.randrange(len(lines))
        body = lines[line].rstrip("\n")
        if not body.strip() and rng.random() < 0.8:  # blank cursor lines are rarely interesting
            return None
        col = pick_cursor(rng, body, self.mix)
        left = body[:col]
        # Offsets into the file: the span to generate is text[cursor:end].
        text = self.files[i]["text"]
        line_start = sum(len(ln) for ln in lines[:line]) if line < 64 else len("".join(lines[:line]))
        cursor, end = line_start + col, line_start + len(body)
        r = rng.random()
        last = line  # the span's last line
        if r < self.mix.multiline:
            last = min(len(lines) - 1, line + rng.randint(1, 7))
            end = line_start + sum(len(ln) for ln in lines[line:last]) + len(lines[last].rstrip("\n"))
        elif r < self.mix.multiline + self.mix.midline_end and col < len(body):
            end = line_start + rng.randint(col + 1, len(body))
        span, after = text[cursor:end], text[end:]

        # Windows: random sizes (short files, short contexts happen), trimmed to the budget.
        middle_ids = self.tok.encode(left + span) + [self.eot]
        room = budget - len(middle_ids) - 16
        if room < 32:
            return None
        above_chars = int(room * rng.uniform(0.4, 0.85) * _CHARS_PER_TOKEN)
        below_chars = int(room * _CHARS_PER_TOKEN) - above_chars
        above = "".join(lines[:line])[-above_chars:] if above_chars > 0 else ""
        if "\n" in above and len("".join(lines[:line])) > above_chars:
            above = above[above.index("\n") + 1:]  # whole lines only, as serving does
        suffix = after[:below_chars]
        if "\n" in suffix[1:] and len(after) > below_chars:
            suffix = suffix[: suffix.rindex("\n") + 1]
        if self.mix.syntax and rng.random() < self.mix.syntax:
            above_tokens = int(above_chars / _CHARS_PER_TOKEN)
            windows = self._syntax_windows(i, line, col, last, above_tokens, room - above_tokens)
            if windows is not None:
                rest_of_line = after.split("\n", 1)[0] + ("\n" if "\n" in after else "")
                above, suffix = windows[0], rest_of_line + windows[1]
        context: tuple[tuple[str, str], ...] = ()
        siblings = self.by_package.get(self.files[i]["package"], [])
        if len(siblings) > 1 and rng.random() < self.mix.context:
            j = rng.choice([s for s in siblings if s != i])
            other = self.lines[j]
            start = rng.randrange(len(other))
            chunk = "".join(other[start:start + rng.randint(8, 40)])[: int(room * 0.25 * _CHARS_PER_TOKEN)]
            context = ((self.files[j]["path"], chunk),)
        path = self._path(rng, i)
        if rng.random() < self.mix.spm:
            head = [self.tpl.suffix_id, *self.tok.encode(suffix), self.tpl.prefix_id, *self.tok.encode(above),
                    self.tpl.middle_id]
        else:
            head, _ = layout_ids(self.tok, self.tpl, path=path, above=above, suffix=suffix, left="", context=context)
        while len(head) + len(middle_ids) > budget and context:
            context = ()
            head, _ = layout_ids(self.tok, self.tpl, path=path, above=above, suffix=suffix, left="")
        if len(head) + len(middle_ids) > budget:
            return None
        special = self.tok.special_ids
        head_mask = [NONE if t in special else CONTEXT for t in head]
        return head + middle_ids, head_mask + [TARGET] * len(middle_ids)

    def sample(self, rng: random.Random, budget: int) -> tuple[list[int], list[int]]:
        while True:
            i = self._pick_file(rng)
            if rng.random() < self.mix.plain:
                return self.plain(rng, i, budget)
            got = self.fim(rng, i, budget)
            if got is not None:
                return got

    def row(self, rng: random.Random, length: int) -> tuple[list[int], list[int]]:
        """Samples packed into `length` tokens, padded with <|fim_pad|> (loss masked)."""
        ids: list[int] = []
        mask: list[int] = []
        while length - len(ids) >= 128:
            remaining = length - len(ids)
            budget = remaining if rng.random() < 0.5 else rng.randint(128, remaining)
            s_ids, s_mask = self.sample(rng, budget)
            ids += s_ids
            mask += s_mask
        ids += [self.pad] * (length - len(ids))
        mask += [NONE] * (length - len(mask))
        return ids, mask
