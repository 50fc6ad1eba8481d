"""Brackets and quotes on a line of code, read without a parser: which characters are code and which
lie inside a string. A leaf module: the server's closers (completion/closers.py) and the replay's
editor that closes pairs (replay/auto_pairs.py, a black-box client importing nothing of completion/)
read lines alike."""

from __future__ import annotations

from collections.abc import Iterator

BRACKETS = {"(": ")", "[": "]", "{": "}"}
QUOTES = "\"'`"


def scan(text: str, quote: str | None = None) -> Iterator[tuple[str, str | None, str]]:
    """(character, the quote of the string it is in or None, "open" / "close" where it is the quote that
    opens or closes that string, else "") for each character of `text`; `quote`: the string `text`
    starts inside. A backslash escapes the next character in a string."""
    escaped = False
    for ch in text:
        if quote is None:
            if ch in QUOTES:
                quote = ch
                yield ch, quote, "open"
            else:
                yield ch, None, ""
        elif escaped:
            escaped = False
            yield ch, quote, ""
        elif ch == "\\":
            escaped = True
            yield ch, quote, ""
        elif ch == quote:
            quote = None
            yield ch, ch, "close"
        else:
            yield ch, quote, ""


def open_string(text: str, quote: str | None = None) -> str | None:
    """The quote of the string still open at the end of `text`, or None."""
    for _, quote, event in scan(text, quote):
        if event == "close":
            quote = None
    return quote
