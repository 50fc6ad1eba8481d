"""Answering a keystroke without the model: suggestions that are still valid.

- typed-through: the user typed characters the shown suggestion predicted; the rest of it is the
  answer (same line, nothing else in the document changed).
- reconsidered: the confidence gate withheld the suggestion here, and the user typed characters
  that one of its candidates predicted: the candidates are decided on again without the model
  (pipeline.Completer.reconsider), which shows one or goes on withholding. A withheld suggestion would
  otherwise send every key to the model, as no ghost text is there to type through.
- recent: the cursor line's left part equals one we already answered for, at (nearly) the same
  place, and the lines around the cursor are at least `min_similarity` alike (rapidfuzz ratio; the
  rest of the document is not compared, nor kept):
  retyping after a backspace, or an edit a few lines away that does not change the suggestion.

Pure string logic on line snapshots (documents.py hands out immutable line lists), unit-tested.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from completer.lines import LONG_LINE, forget_kept_heads, same_but_for_row, terminator_length
from completer.pairs import BRACKETS, QUOTES

from .closers import CLOSER_CHARS, is_subsequence

if TYPE_CHECKING:
    from .pipeline import Held

# (what was withheld, what the user typed since) -> (text to show, "" for none; what is still
# withheld), or None when nothing withheld predicted the typed text (the model must answer).
Reconsider = Callable[["Held", str], "tuple[str, Held | None] | None"]

CONTEXT_LINES = 3
# A cursor line longer than this (a minified file's) is not kept among the recent answers: each keeps
# its two halves, and 64 answers in a megabyte line with an emoji held 180 MB.
RECENT_MAX_LINE = 1 << 16


@dataclass
class Answer:
    uri: str
    line: int
    left: str  # cursor line left of the cursor
    right: str  # cursor line right of the cursor
    text: str  # the suggestion
    context: str  # lines around the cursor line, for the fuzzy match
    held: Held | None = None  # what the confidence gate withheld here (then text is "")
    # The document snapshot the suggestion was computed for: kept for the shown answer only (one per
    # document, for typed-through); 64 recent answers each holding a list of a 500k-line file's
    # lines took 270 MB.
    lines: Sequence[str] = ()


def _context(lines: Sequence[str], line: int) -> str:
    return "".join(lines[max(0, line - CONTEXT_LINES):line]) + "\x00" + "".join(lines[line + 1:line + 1 + CONTEXT_LINES])


# The last splits of long lines: (line, column, left, right). A key splits the same line at the same
# column three or four times (lookup, typed_since, remember) and the previous key's line once more;
# for a minified file's megabyte line each split is two copies of it (1 ms with a non-ASCII character,
# which the slices scan for their width). Lines are str, so `is` on a kept one is safe.
_SPLITS_KEPT = 4
_splits: list[tuple[str, int, str, str]] = []  # most recent first; replaced whole, for threads


def _split(lines: Sequence[str], line: int, character: int) -> tuple[str, str]:
    """The cursor line's text left and right of the (non-negative) column, without its line break.
    Sliced from the line as it is: a copy of it without the break cost one more copy of a
    megabyte line at each call."""
    global _splits
    text = lines[line]
    end = len(text) - terminator_length(text)
    character = min(character, end)
    if end < LONG_LINE:
        return text[:character], text[character:end]
    kept = _splits
    for kept_text, kept_character, left, right in kept:
        if kept_text is text and kept_character == character:
            return left, right
    left, right = text[:character], text[character:end]
    _splits = [(text, character, left, right), *kept[:_SPLITS_KEPT - 1]]
    return left, right


def forget_long_lines() -> None:
    """Let go of the kept splits and heads of long lines: a closed document's megabyte line (and its
    halves) would otherwise stay alive in them until other long lines push it out."""
    global _splits
    _splits = []
    forget_kept_heads()


class SuggestionReuse:
    def __init__(self, capacity: int = 64, min_similarity: float = 97.0):
        self.capacity, self.min_similarity = capacity, min_similarity
        self.shown: dict[str, Answer] = {}  # uri -> the last suggestion shown there
        self.recent: OrderedDict[tuple[str, str], Answer] = OrderedDict()  # (uri, left) -> answer
        self.hits = {"typed_through": 0, "reconsidered": 0, "recent": 0}

    def remember(self, uri: str, lines: Sequence[str], line: int, character: int, text: str,
                 held: Held | None = None) -> None:
        """A suggestion shown at this cursor (typed-through starts from it) and kept among the recent;
        or, with `held`, none shown because the confidence gate withheld it (reconsidered as the user
        types)."""
        self.shown[uri] = replace(self.remember_recent(uri, lines, line, character, text, held), lines=lines)

    def remember_recent(self, uri: str, lines: Sequence[str], line: int, character: int, text: str,
                        held: Held | None = None) -> Answer:
        """Keep a suggestion for this exact place without showing it (a prefetched one)."""
        left, right = _split(lines, line, character)
        answer = Answer(uri, line, left, right, text, _context(lines, line), held)
        if len(left) + len(right) > RECENT_MAX_LINE:
            return answer
        key = (uri, left)
        self.recent[key] = answer
        self.recent.move_to_end(key)
        while len(self.recent) > self.capacity:
            self.recent.popitem(last=False)
        return answer

    def forget(self, uri: str) -> None:
        self.shown.pop(uri, None)
        for key in [k for k in self.recent if k[0] == uri]:
            del self.recent[key]

    def lookup(self, uri: str, lines: Sequence[str], line: int, character: int,
               reconsider: Reconsider | None = None) -> tuple[str, str] | None:
        """(suggestion, kind) still valid at this cursor, or None. A reconsidered answer's
        suggestion may be "": still withheld, and no need to ask the model."""
        left, right = _split(lines, line, character)
        shown = self.shown.get(uri)
        if shown is not None:
            typed = typed_since(shown.lines, shown.line, len(shown.left), lines, line, character)
            if typed and shown.text.startswith(typed) and len(typed) < len(shown.text):
                rest = shown.text[len(typed):]
                self.remember(uri, lines, line, character, rest)
                self.hits["typed_through"] += 1
                return rest, "typed_through"
            decided = reconsider(shown.held, typed) if typed and shown.held is not None and reconsider else None
            if decided is not None:
                text, held = decided
                self.remember(uri, lines, line, character, text, held)
                self.hits["reconsidered"] += 1
                return text, "reconsidered"
        answer = self.recent.get((uri, left))
        # The lines around, not the whole document: with the cursor line equal, an unchanged document
        # has the same lines around it, and comparing the whole took milliseconds a key.
        if answer is not None and answer.right == right and abs(answer.line - line) <= 2 and answer.text \
                and fuzz.ratio(answer.context, _context(lines, line)) >= self.min_similarity:
            self.remember(uri, lines, line, character, answer.text)
            self.hits["recent"] += 1
            return answer.text, "recent"
        return None


def typed_into(texts: Sequence[str], typed: str) -> tuple[str, ...]:
    """What is left of each suggestion after the user typed `typed` into it, in order (the shown one
    first, then its alternatives), keeping those that predicted `typed` and still have text left."""
    n = len(typed)
    return tuple(t[n:] for t in texts if t.startswith(typed) and len(t) > n)


def typed_since(old_lines: Sequence[str], old_line: int, old_character: int, lines: Sequence[str], line: int,
                character: int) -> str | None:
    """What was typed at the old cursor to get from the old document to this one, if that is all that
    changed (same line, same text right of the cursor, every other line the same); else None.

    An editor that closes brackets and quotes changes the right too, and that still counts as typing:
    the closers it added right of the cursor (`(` typed makes `()`) close openers among the typed
    text; the closers gone from the right (VS Code moves past its own `)` or `"` when the user types
    one; accepting part of a suggestion that runs through it replaces it) are among the typed text, in
    order."""
    if line != old_line or line >= len(old_lines):
        return None
    old_left, old_right = _split(old_lines, old_line, old_character)
    left, right = _split(lines, line, character)
    if not left.startswith(old_left) or not _same_except_line(old_lines, lines, line):
        return None
    typed = left[len(old_left):]
    if right.endswith(old_right):
        added = right[:len(right) - len(old_right)]
        if not added or (not added.strip(CLOSER_CHARS) and is_subsequence(_openers(added), typed)):
            return typed
        return None
    over = old_right[:len(old_right) - len(right)]
    if over and old_right.endswith(right) and not over.strip(CLOSER_CHARS) and is_subsequence(over, typed):
        return typed
    return None


_OPENER_OF = {**{closer: opener for opener, closer in BRACKETS.items()}, **{quote: quote for quote in QUOTES}}


def _openers(closers: str) -> str:
    """The openers that `closers` (innermost first) close, in the order they were typed."""
    return "".join(_OPENER_OF[c] for c in reversed(closers))


def _same_except_line(old: Sequence[str], new: Sequence[str], line: int) -> bool:
    """The documents differ at most on `line`. Whole lists are compared, with old's line put in a copy
    of new: unchanged lines are the same objects, so that is a pass of pointer checks in C; comparing
    the slices around the line cost 4.5x as much, for their copies (6 ms a key at 166k lines). Where
    the versions' history already says so (lines.same_but_for_row: typing within the line), nothing
    is compared."""
    if len(old) != len(new):
        return False
    if same_but_for_row(old, new, line):
        return True
    patched = list(new)
    if 0 <= line < len(patched):
        patched[line] = old[line]
    return patched == (old if isinstance(old, list) else list(old))
