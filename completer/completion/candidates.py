"""Suggestions that do not come from the model: text copied from the document and the other open files.

Code repeats itself: the line after `self.assertEqual(a, 1)` is often `self.assertEqual(b, 2)`, an
argument list typed once is typed again. Where the text just before the cursor occurred earlier (or
below, or in another file of the workspace), what followed it there is a candidate for what follows
it here. The target model then scores each candidate against its own suggestion (rerank.py), so a
copy is shown only when the model finds it likely. The other files are searched whole, not only the
chunks of them the prompt shows: a copy needs no room in the prompt.

The lookup is a longest-suffix match on characters: the last `length` characters before the cursor
(across the line break, so a cursor at the indentation matches on the end of the line above), for a
few lengths from long to short; the longest length with a match wins, the nearest match first.

At a line start the line above says little (a blank, `):`, `}`), so a second lookup anchors on the
line below instead (below_anchored): where the next non-blank line below the cursor occurs elsewhere
in the document, the line that stands above it there, as the cursor line stands above it here, is a
candidate (`self.assertEqual(...)` before each `self.assertTrue(...)`, `if err != nil {` before each
`return err`). On the held-out line starts of the ten suites it adds the exact line to the candidates
in 17 of 778 cuts (88 -> 105; MODEL.md, "Copies anchored on the line below").

Tried and dropped (2026-12-04): at a line start, also the lines that follow lines like the one above
(rapidfuzz ratio >= 70). They hold the right line in a few more cases, but the reranker seldom picks
them right (E2: shown 43 times, 1 exact; E2/E3 exact match 22.8/16.0 -> 22.7/16.3), and they cost
scoring time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from completer.lines import as_lf, line_body

# Suffix lengths tried, longest first; a suffix needs MIN_VISIBLE non-blank characters. Short
# matches are weak evidence (`(self, ` is everywhere), but the model's score filters them.
MATCH_LENGTHS = (96, 64, 48, 32, 24, 16, 12, 8, 6)
MIN_VISIBLE = 2
MAX_CANDIDATES = 3
MAX_COPY_CHARS = 160  # a copied line longer than this is not a completion, it is a paste
# How much of the other open files the lookup reads: each file's first FILE_CHARS, the most recent
# files first, OPEN_FILES_CHARS in all (the lookup then takes 0.4-0.6 ms at the median over 370-600 KB of
# files on our 2-core CPU, against 0.08 ms for the document alone).
FILE_CHARS, OPEN_FILES_CHARS = 200_000, 600_000
# How much of the document itself the lookup reads on each side of the cursor: all of any ordinary
# file; a 5 MB one (generated code, an amalgamation) cost 15-25 ms a key searched whole.
DOCUMENT_CHARS = 500_000
# The line below anchors a copy only when it says something: `}`, `end` or `return` stand below far
# too many lines to pick one (held-out line starts: the same exact lines found with half the
# candidates to score at 8 characters as at 1).
ANCHOR_MIN_VISIBLE = 8
BELOW_CANDIDATES = 2
# Each side of the cursor: a huge file costs no more than a long one. The scan costs 0.1-0.6 ms on a
# 20,000-line file, 3.4 ms at worst (every line the same) on our 2-core CPU.
ANCHOR_SCAN_LINES = 4000
MAX_ANCHORED = 64  # the nearest occurrences of the line below that are read


@dataclass(frozen=True)
class Candidate:
    text: str  # to insert at the cursor: the rest of the cursor line
    # "model"; "document" (this file); "below" (this file, anchored on the line below the cursor:
    # below_anchored); "context" (the chunks of other files in the prompt); "workspace" (the rest of
    # the other files open in the workspace, which the prompt does not show)
    source: str
    # characters of the text before the cursor that matched where it was copied from; for "below",
    # those of the line below
    match: int = 0


def copy_candidates(lines: Sequence[str], line: int, character: int, right: str = "",
                    context: Sequence[tuple[str, str]] = (), limit: int = MAX_CANDIDATES,
                    open_files: Sequence[tuple[str, str]] = ()) -> list[Candidate]:
    """Up to `limit` distinct non-empty continuations of the cursor line copied from elsewhere in the
    document (above or below), from the context chunks or from the other open files (`open_files`,
    (path, text), most recent first), best evidence first. `right` is the text right of the cursor:
    a copy must not just repeat it."""
    body = line_body(lines[line])
    left = body[:character]
    # LF everywhere: a CRLF file's copies match an LF file's
    before = as_lf(_joined(lines, line - 1, -1) + left)[-DOCUMENT_CHARS:]
    # The document without the cursor line's own continuation: what is right of the cursor on this
    # line must not propose itself.
    after = as_lf(_joined(lines, line + 1, 1))[:DOCUMENT_CHARS]
    # (source, text, the longest suffix it may hold): the open files are searched for the longer
    # suffixes only if they hold them, since most lengths match in none of them.
    everything = len(before)
    sources = [("document", before, everything), ("document", after, everything),
               *(("context", as_lf(chunk), everything) for _, chunk in context),
               *(("workspace", text, _longest_suffix(text, before)) for text in _bounded(open_files))]
    found: list[Candidate] = []
    seen = {"", right.strip()}
    for length in MATCH_LENGTHS:
        if length > len(before):
            continue
        tail = before[-length:]
        if len(tail.strip()) < MIN_VISIBLE:
            continue  # blanks alone say nothing
        for source, text, longest in sources:
            if longest < length:
                continue
            for text_after in _continuations(text, tail, exclude_end=text is before):
                copy = _rest_of_line(text_after)
                if copy.strip() in seen:
                    continue
                seen.add(copy.strip())
                found.append(Candidate(copy, source, length))
                if len(found) >= limit:
                    return found
        if found:
            return found  # a longer match beats every shorter one
    return found


# (the line below the cursor, the lines above its other occurrences): lines_above_the_line_below
Anchor = tuple[str, list[str]]


def lines_above_the_line_below(lines: Sequence[str], line: int) -> Anchor:
    """The next non-blank line below `line` (its body, "" when it is too short to anchor on:
    ANCHOR_MIN_VISIBLE), and the bodies of the lines that stand above its other occurrences as
    `line` stands above it here, with only blank lines between as here: nearest first, at most one
    per occurrence, of the MAX_ANCHORED nearest within ANCHOR_SCAN_LINES of the cursor."""
    below_at = line + 1
    while below_at < len(lines) and not lines[below_at].strip():
        below_at += 1
    if below_at >= len(lines):
        return "", []
    below = line_body(lines[below_at])
    if len(below.strip()) < ANCHOR_MIN_VISIBLE:
        return "", []
    gap = below_at - line
    lo, hi = max(gap, line - ANCHOR_SCAN_LINES), min(len(lines), line + ANCHOR_SCAN_LINES)
    found = [k for k in _occurrences(lines, lines[below_at], lo, hi) if k != below_at and k - gap != line]
    found = sorted(found, key=lambda k: abs(k - line))[:MAX_ANCHORED]
    return below, [line_body(lines[k - gap]) for k in found
                   if all(not lines[b].strip() for b in range(k - gap + 1, k))]


def _occurrences(lines: Sequence[str], line: str, lo: int, hi: int) -> list[int]:
    """Where `line` (with its line break: the document's last line matches only itself) occurs in
    lines[lo:hi]; list.index scans in C, ~30x faster than comparing line by line in Python."""
    found, at = [], lo
    while True:
        try:
            at = lines.index(line, at, hi)
        except ValueError:
            return found
        found.append(at)
        at += 1


def below_anchored(lines: Sequence[str], line: int, character: int, right: str = "",
                   limit: int = BELOW_CANDIDATES, anchor: Anchor | None = None) -> list[Candidate]:
    """Up to `limit` distinct continuations of the cursor line copied from the lines that stand above
    other occurrences of the line below it (lines_above_the_line_below, or `anchor` where the caller
    already has it), nearest first; each must start with what is left of the cursor on its line and
    not just repeat what is right of it."""
    left = line_body(lines[line])[:character]
    below, above = anchor if anchor is not None else lines_above_the_line_below(lines, line)
    found: list[Candidate] = []
    seen = {"", right.strip()}
    for body in above:
        if not body.startswith(left) or len(body) - len(left) > MAX_COPY_CHARS:
            continue
        copy = body[len(left):]
        if copy.strip() in seen:
            continue
        seen.add(copy.strip())
        found.append(Candidate(copy, "below", len(below.strip())))
        if len(found) >= limit:
            break
    return found


def _joined(lines: Sequence[str], start: int, step: int) -> str:
    """The lines from `start` on (step 1) or up to it (step -1), at least DOCUMENT_CHARS of them where
    the document has that many: a huge document is not joined whole at every key. Joined 4096 lines
    at a time, in C."""
    parts, total = [], 0
    if step > 0:
        at = start
        while at < len(lines) and total < DOCUMENT_CHARS:
            parts.append("".join(lines[at:at + 4096]))
            total, at = total + len(parts[-1]), at + 4096
        return "".join(parts)
    end = start + 1
    while end > 0 and total < DOCUMENT_CHARS:
        parts.append("".join(lines[max(0, end - 4096):end]))
        total, end = total + len(parts[-1]), end - 4096
    return "".join(reversed(parts))


def _bounded(open_files: Sequence[tuple[str, str]]) -> list[str]:
    """The open files' texts the lookup reads, within FILE_CHARS each and OPEN_FILES_CHARS in all."""
    out, left = [], OPEN_FILES_CHARS
    for _, text in open_files:
        if left <= 0:
            break
        out.append(as_lf(text[:min(FILE_CHARS, left)]))
        left -= len(out[-1])
    return out


def _longest_suffix(text: str, before: str) -> int:
    """The longest of MATCH_LENGTHS whose suffix of `before` occurs in `text` (0: none). Shortest
    first: a suffix that does not occur has no longer suffix that does, and `in` stops at the first
    occurrence, so a file costs about one scan however many lengths there are."""
    best = 0
    for length in reversed(MATCH_LENGTHS):
        if length > len(before) or before[-length:] not in text:
            break
        best = length
    return best


def _continuations(text: str, tail: str, exclude_end: bool, most: int = 4):
    """What follows the last `most` occurrences of `tail` in `text` (MAX_COPY_CHARS + 1 characters of
    it), the last first. With exclude_end an occurrence that ends the text (the cursor itself) does not count."""
    hi, n = len(text), 0
    while n < most:
        at = text.rfind(tail, 0, hi)
        if at < 0:
            return
        hi = at + len(tail) - 1  # the next one ends before this one does (occurrences may overlap)
        if exclude_end and at + len(tail) == len(text):
            continue
        n += 1
        start = at + len(tail)
        yield text[start:start + MAX_COPY_CHARS + 1]  # enough for _rest_of_line, not the rest of a 5 MB text


def _rest_of_line(text: str) -> str:
    copy = text.split("\n", 1)[0]
    return copy if len(copy) <= MAX_COPY_CHARS else ""

