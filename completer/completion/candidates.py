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

Tried and dropped (2026-12-04): at a line start, also the lines that follow lines like the one above
(rapidfuzz ratio >= 70). They hold the right line in a few more cases, but the reranker seldom picks
them right (E2: shown 43 times, 1 exact; E2/E3 exact match 22.8/16.0 -> 22.7/16.3), and they cost
scoring time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from completer.lines import line_body

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


@dataclass(frozen=True)
class Candidate:
    text: str  # to insert at the cursor: the rest of the cursor line
    # "model"; "document" (this file); "context" (the chunks of other files in the prompt); "workspace"
    # (the rest of the other files open in the workspace, which the prompt does not show)
    source: str
    match: int = 0  # characters of the text before the cursor that matched where it was copied from


def copy_candidates(lines: Sequence[str], line: int, character: int, right: str = "",
                    context: Sequence[tuple[str, str]] = (), limit: int = MAX_CANDIDATES,
                    open_files: Sequence[tuple[str, str]] = ()) -> list[Candidate]:
    """Up to `limit` distinct non-empty continuations of the cursor line copied from elsewhere in the
    document (above or below), from the context chunks or from the other open files (`open_files`,
    (path, text), most recent first), best evidence first. `right` is the text right of the cursor:
    a copy must not just repeat it."""
    body = line_body(lines[line])
    left = body[:character]
    before = "".join(lines[:line]) + left
    # The document without the cursor line's own continuation: what is right of the cursor on this
    # line must not propose itself.
    after = "".join(lines[line + 1:])
    # (source, text, the longest suffix it may hold): the open files are searched for the longer
    # suffixes only if they hold them, since most lengths match in none of them.
    everything = len(before)
    sources = [("document", before, everything), ("document", after, everything),
               *(("context", chunk, everything) for _, chunk in context),
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


def _bounded(open_files: Sequence[tuple[str, str]]) -> list[str]:
    """The open files' texts the lookup reads, within FILE_CHARS each and OPEN_FILES_CHARS in all."""
    out, left = [], OPEN_FILES_CHARS
    for _, text in open_files:
        if left <= 0:
            break
        out.append(text[:min(FILE_CHARS, left)])
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
    """What follows the last `most` occurrences of `tail` in `text`, the last first. With
    exclude_end an occurrence that ends the text (the cursor itself) does not count."""
    hi, n = len(text), 0
    while n < most:
        at = text.rfind(tail, 0, hi)
        if at < 0:
            return
        hi = at + len(tail) - 1  # the next one ends before this one does (occurrences may overlap)
        if exclude_end and at + len(tail) == len(text):
            continue
        n += 1
        yield text[at + len(tail):]


def _rest_of_line(text: str) -> str:
    copy = text.split("\n", 1)[0].rstrip("\r")
    return copy if len(copy) <= MAX_COPY_CHARS else ""

