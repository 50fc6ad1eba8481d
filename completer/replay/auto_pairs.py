"""An editor that closes brackets and quotes as they are typed (VS Code's default), for the replay's
synthetic typist (`completer replay --auto-close`).

Typing an opener inserts its closer right of the cursor when what follows the cursor allows it;
typing that closer later moves past it (VS Code replaces it with itself); text accepted from a
suggestion replaces the closers it passes through, if the suggestion's item covers them. The typist
knows its plan, so an opener whose closer is not on the same line of the plan (a call spread over
lines) is not closed: in an editor the user would delete that closer or reflow it, which the
typist does not model.

The replay is a black-box client of the server: this reads only strings, nothing of completion/.
"""

from __future__ import annotations

from completer.pairs import BRACKETS, open_string, scan

PAIRS = {**BRACKETS, '"': '"', "'": "'"}  # what the editor closes (VS Code's Python and C-like defaults)
CLOSE_BEFORE = set(";:.,=}])> \t")  # VS Code's default autoCloseBefore: a pair closes only before these


def closed_on_its_line(target: str, at: int) -> bool:
    """Whether the bracket target[at] is closed later on the same line of `target` (brackets inside
    strings do not count)."""
    opener, depth = target[at], 0
    for ch, quote, _ in scan(target[at + 1:]):
        if ch == "\n":
            return False
        if quote is not None:
            continue
        if ch == opener:
            depth += 1
        elif ch == BRACKETS[opener]:
            if depth == 0:
                return True
            depth -= 1
    return False


def _quoted_on_its_line(target: str, at: int) -> bool:
    """Whether the quote target[at] opens a string that ends on the same line of `target`."""
    for ch, _, event in scan(target[at + 1:], quote=target[at]):
        if ch == "\n":
            return False
        if event == "close":
            return True
    return False


def closer_for(left: str, right: str, target: str, at: int) -> str:
    """The closer the editor inserts when the typist types target[at] between `left` and `right` (the
    cursor line around the cursor), or ""."""
    ch = target[at]
    if ch not in PAIRS or (right and right[0] not in CLOSE_BEFORE):
        return ""
    if ch in BRACKETS:
        return PAIRS[ch] if closed_on_its_line(target, at) else ""
    before = left[-1:]
    if open_string(left) or before.isalnum() or before == "_":  # a quote inside a string, or `don't`
        return ""
    return ch if _quoted_on_its_line(target, at) else ""


def passes_through(text: str, pending: str) -> int:
    """How many of the closers right of the cursor that the editor inserted (`pending`, innermost
    first) the text typed or accepted at the cursor closes itself: those it replaces."""
    n, stack = 0, []
    inside = pending[0] if pending[:1] in ("'", '"') else None  # the cursor is inside a string the editor closed
    own = False  # whether the string being read was opened within `text`
    for ch, quote, event in scan(text, quote=inside):
        if event == "open":
            own = True
        elif event == "close":
            if not own and n < len(pending) and pending[n] == ch:
                n += 1
            own = False
        elif quote is None:
            if ch in BRACKETS:
                stack.append(BRACKETS[ch])
            elif ch in ")]}":
                if stack and stack[-1] == ch:
                    stack.pop()
                elif not stack and n < len(pending) and pending[n] == ch:
                    n += 1
    return n
