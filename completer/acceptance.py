"""What a user takes of a suggestion: all of it, its first line, or its leading whole words.

The replay's typist takes suggestions by this rule (VS Code and the Neovim plugin accept a whole
suggestion, a line or a word at a time), and the confidence gate is fitted to predict it
(engine_builds/fit_reranker.py): a suggestion is worth showing when the user will take some of it.
A leaf module, so that both can read it: the replay is a black-box client of the server and imports
nothing of completion/.
"""

from __future__ import annotations

import re

MIN_ACCEPT_CHARS = 2  # a shorter suggestion is not worth a Tab
MIN_WORD_ACCEPT_CHARS = 3
_WORD = re.compile(r"\w")


def decide_accept(shown: str, remaining: str) -> tuple[str, str]:
    """What a user who is about to type `remaining` takes of the ghost text `shown`: (how, text).

    full: all of it matches; line: its first line matches (up to the line break); word: the longest
    run of whole words that matches. ("", "") when nothing is worth a key press."""
    if len(shown) >= MIN_ACCEPT_CHARS and remaining.startswith(shown):
        return "full", shown
    n = 0
    limit = min(len(shown), len(remaining))
    while n < limit and shown[n] == remaining[n]:
        n += 1
    nl = shown.find("\n")
    if 0 < nl <= n and len(shown[:nl].strip()) >= MIN_ACCEPT_CHARS:
        return "line", shown[:nl]
    k = n  # back off to the end of a word (a word cut in half is not what word-accept gives)
    while k > 0 and k < len(shown) and _WORD.match(shown[k - 1]) and _WORD.match(shown[k]):
        k -= 1
    if k >= MIN_WORD_ACCEPT_CHARS and shown[:k].strip():
        return "word", shown[:k]
    return "", ""
