"""Suggestions that run through the closers an editor put right of the cursor.

Editors close brackets and quotes as their openers are typed (VS Code by default, Neovim with an
autopairs plugin), so inside `f("ab` the line reads `f("ab")`. The right rest of that line is
`c", 1)`: it passes through the `")` already there. Inserted at the cursor it would double them
(`f("abc", 1)")`); it has to replace them instead. `closers_taken` says how many characters right of
the cursor a suggestion takes over, which the language server turns into the item's range: the
replaced closers are a subsequence of the suggestion, so VS Code shows it as ghost text in several
parts around them ("subwordSmart", its default), and accepting it leaves the line as intended.

A suggestion that stops before the closers (`c`) or whose tail repeats them exactly (post-processing
cuts that: postprocess.drop_suffix_overlap) is inserted as it is: it takes nothing.
"""

from __future__ import annotations

from completer.pairs import BRACKETS, QUOTES, scan

CLOSER_CHARS = ")]}" + QUOTES
# How much of the line on each side of the cursor the damage is read over. A line of code is far
# shorter; a minified file's one line of megabytes would otherwise be scanned in Python several
# times per answer (1.4 s for 1.8 MB on our 2-core CPU), blocking the server.
WINDOW_CHARS = 1000


def _damage(line: str) -> int:
    """How broken a line's brackets and quotes are: closers that close nothing open (or the wrong
    bracket), plus one for a string left open. Brackets left open do not count: a statement may go
    on over the next lines."""
    stack: list[str] = []
    bad, still_open = 0, None
    for ch, quote, event in scan(line):
        still_open = None if event == "close" else quote
        if quote is not None:
            continue
        if ch in BRACKETS:
            stack.append(BRACKETS[ch])
        elif ch in ")]}":
            if stack and stack[-1] == ch:
                stack.pop()
            else:
                bad += 1
    return bad + (still_open is not None)


def is_subsequence(needle: str, text: str) -> bool:
    """Whether the characters of `needle` occur in `text` in order."""
    it = iter(text)
    return all(ch in it for ch in needle)


def closers_taken(text: str, left: str, right: str) -> int:
    """How many characters at the start of `right` (the cursor line right of the cursor) the one-line
    suggestion `text` replaces: the fewest of the leading closers whose replacement leaves the line's
    brackets and quotes the least broken, if that is less broken than inserting `text` alone; they
    must occur in `text` in order. 0 for a plain insertion. Only WINDOW_CHARS either side of the
    cursor are read, so a line longer than that is judged by its part near the cursor."""
    if not text or "\n" in text:
        return 0
    run = min(len(right) - len(right.lstrip(CLOSER_CHARS)), len(text))  # a subsequence is no longer
    if not run:
        return 0
    left, right = left[-WINDOW_CHARS:], right[:WINDOW_CHARS + run]
    best, best_damage = 0, _damage(left + text + right)
    if not best_damage:
        return 0
    for k in range(1, run + 1):
        if not is_subsequence(right[:k], text):
            break
        damage = _damage(left + text + right[k:])
        if damage < best_damage:
            best, best_damage = k, damage
    return best


def woven(text: str, left: str, right: str) -> str:
    """The cursor line once the suggestion is accepted, its closers replaced."""
    return left + text + right[closers_taken(text, left, right):]
