"""Which paths git ignores, by the rules of gitignore(5): what keeps ignored files out of the prompt.

Where the rules come from, lowest precedence first: the user's global excludes file
(core.excludesFile, else $XDG_CONFIG_HOME/git/ignore), the repository's info/exclude, then each
.gitignore from the repository's top down to the path's own directory. The last pattern that
matches decides. A path inside an ignored directory stays ignored whatever a later "!" says: git
never looks inside that directory, so it cannot re-include anything in it.

A workspace that lies inside a repository also gets the .gitignore files above it, up to the
repository's top. Outside any repository the same files are read anyway, and a repository nested
in another is held to the rules of both: a rule that git would not apply there keeps a file out of
the prompt, which is the safe side.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAX_RULES_BYTES = 1_000_000  # a larger ignore file is not read (it is not one a person wrote)

_CLASSES = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
            "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~",
            "space": " \\t\\n\\r\\f\\v", "upper": "A-Z", "xdigit": "0-9A-Fa-f"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# A pattern with more unbounded wildcards ("*" runs, "**") than this is matched by a table over
# (pattern, text) positions instead of a regex: a backtracking regex takes seconds on "*a*a*b"
# against a 2,000-character name and hangs on one more "*a", and a repository's .gitignore must
# not hang the server.
REGEX_MAX_WILDCARDS = 2
_UNBOUNDED = ("star", "all", "dirs")


@dataclass(frozen=True)
class Rule:
    """One pattern line, matched against the path relative to the directory holding the file (the
    whole path when anchored, else only its last component), ASCII-lowercased where `casefold`."""

    tokens: tuple[tuple, ...]
    negate: bool
    dir_only: bool
    anchored: bool
    casefold: bool = False
    regex: re.Pattern | None = None  # the tokens as a regex, where they are few enough wildcards

    def matches(self, relative: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        text = relative if self.anchored else relative.rsplit("/", 1)[-1]
        text = text.translate(_ASCII_LOWER) if self.casefold else text
        if self.regex is not None:
            return self.regex.fullmatch(text) is not None
        return _table_match(self.tokens, text)


def parse_rule(line: str, ignore_case: bool = False) -> Rule | None:
    """A Rule for one line of an ignore file, or None for a line that holds no pattern (blank, a
    comment, a lone "/" or "!"). A pattern git would fail (an unclosed bracket) never matches.
    ignore_case: as git with core.ignoreCase (the default on macOS and Windows file systems): the
    path's ASCII letters lowered and compared with the pattern's lowered, except a character after a
    backslash or alone in brackets, which stay as written (so "[A]" matches nothing), and ranges,
    which also take the lowercase of their capitals: git's wildmatch does exactly that."""
    line = line.rstrip("\n").removesuffix("\r")
    line = _trim_trailing_spaces(line)
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")  # a backslash before "!" or "#" escapes it, as _tokens reads it
    if negate:
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/") if dir_only else line
    if not line:
        return None
    anchored = "/" in line
    try:
        tokens = tuple(_tokens(line.removeprefix("/"), ignore_case))
    except re.error:
        return None
    regex = None
    if sum(kind in _UNBOUNDED for kind, _ in tokens) <= REGEX_MAX_WILDCARDS:
        regex = re.compile("".join(_FRAGMENT[kind] if kind in _FRAGMENT else value.pattern if kind == "one"
                                   else re.escape(value) for kind, value in tokens), re.DOTALL)
    return Rule(tokens, negate, dir_only, anchored, ignore_case, regex)


def _trim_trailing_spaces(line: str) -> str:
    """Trailing spaces go, unless a backslash escapes the first of them ("a\\ " keeps one)."""
    kept = line.rstrip(" ")
    if len(kept) == len(line):
        return line
    backslashes = len(kept) - len(kept.rstrip("\\"))
    return kept + " " if backslashes % 2 else kept


_FRAGMENT = {"star": "[^/]*", "all": ".*", "dirs": "(?:.*/)?", "never": "(?!)"}


def _tokens(pattern: str, casefold: bool = False):
    """A wildmatch pattern (as git matches paths: "*", "?" and brackets never match "/") as tokens:
    ("lit", char), ("one", regex of one character), ("star", None) for "[^/]*", ("all", None) for
    ".*", ("dirs", None) for "(?:.*/)?" (zero or more directories), ("never", None)."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            at_start = i == 0 or pattern[i - 1] == "/"
            if j - i >= 2 and at_start and (j == n or pattern[j] == "/"):
                if j == n:
                    yield "all", None  # "dir/**": everything inside
                else:
                    yield "dirs", None  # "**/" and "/**/": zero or more directories
                    j += 1
            else:
                yield "star", None
            i = j
        elif c == "?":
            yield "one", _NOT_SLASH
            i += 1
        elif c == "[":
            bracket, i = _bracket(pattern, i, casefold)
            yield ("never", None) if bracket is None else ("one", re.compile(bracket, re.DOTALL))
        elif c == "\\" and i + 1 < n:
            yield "lit", pattern[i + 1]
            i += 2
        else:
            yield "lit", c.translate(_ASCII_LOWER) if casefold else c
            i += 1


_NOT_SLASH = re.compile("[^/]", re.DOTALL)


def _table_match(tokens: tuple[tuple, ...], text: str) -> bool:
    """Whether the tokens match the whole text, by a table over positions: O(tokens x text), however
    many wildcards. Filled from the end: here[p] says whether tokens[p:] match text[t:] for the
    current t; inside[p], for a "dirs" token, whether text[t:] finishes one of its directories (up to
    and including a "/") and then matches tokens[p + 1:]."""
    n = len(tokens)
    after = [False] * (n + 1)  # the row for t + 1
    after_inside = [False] * n
    for t in range(len(text), -1, -1):
        here, inside = [False] * (n + 1), [False] * n
        here[n] = t == len(text)
        c = text[t] if t < len(text) else None
        for p in range(n - 1, -1, -1):
            kind, value = tokens[p]
            if kind == "lit":
                here[p] = c == value and after[p + 1]
            elif kind == "one":
                here[p] = c is not None and value.fullmatch(c) is not None and after[p + 1]
            elif kind == "star":
                here[p] = here[p + 1] or (c is not None and c != "/" and after[p])
            elif kind == "all":
                here[p] = here[p + 1] or (c is not None and after[p])
            elif kind == "dirs":
                inside[p] = c is not None and ((c == "/" and after[p + 1]) or after_inside[p])
                here[p] = here[p + 1] or inside[p]
        after, after_inside = here, inside
    return after[0]


def _bracket(pattern: str, start: int, casefold: bool = False) -> tuple[str | None, int]:
    """The regex (of one character) for the bracket expression at pattern[start] == "[" and the index
    after it; None where it can match nothing: an unclosed bracket, or an unknown class, fails the
    whole pattern in git's wildmatch."""
    i, n = start + 1, len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    items, first = [], True
    while i < n and (pattern[i] != "]" or first):
        first = False
        c = pattern[i]
        if c == "[" and pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            name = pattern[i + 2:close] if close >= 0 else ""
            if name not in _CLASSES:
                return None, n  # git fails a pattern with an unknown class
            items.append(_CLASSES[name] + ("a-z" if casefold and name == "upper" else ""))
            i = close + 2
            continue
        if c == "\\" and i + 1 < n:
            i += 1
            c = pattern[i]
        if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            if high == "\\" and i + 3 < n:
                high = pattern[i + 3]
                i += 1
            items.append(f"{re.escape(c)}-{re.escape(high)}" if c <= high else "")
            capitals = range(max(ord(c), ord("A")), min(ord(high), ord("Z")) + 1)
            if casefold and capitals:
                items.append(f"{chr(capitals[0] + 32)}-{chr(capitals[-1] + 32)}")
            i += 3
            continue
        items.append(re.escape(c))
        i += 1
    if i >= n:
        return None, n
    body = "".join(items)
    if negate:
        return (f"[^/{body}]" if body else "[^/]"), i + 1
    return (f"(?!/)[{body}]" if body else None), i + 1


class IgnoreRules:
    """Answers "does git ignore this path?" for paths under `root`; ignore files are read again
    whenever they change (mtime, size)."""

    def __init__(self, root: str | Path, user_config: bool = True):
        """user_config: read git's settings and the user's global excludes file (False: the
        repository's own files only, for benches that must not depend on who runs them)."""
        self.root = Path(root).resolve()
        self.top = _repository_top(self.root)
        self._files: dict[Path, tuple[tuple[int, int] | None, list[Rule]]] = {}
        # Asked once, here: `git config` (a few ms each) that the caller may run off the event loop.
        configured = _git_config(self.top, "--path", "core.excludesFile") if user_config else None
        self.global_excludes = Path(configured or _default_excludes()) if user_config else None
        self.ignore_case = user_config and _git_config(self.top, "--bool", "core.ignoreCase") == "true"

    def ignored(self, relative: Path) -> bool:
        """Whether the path (relative to root, a file unless it is a directory on disk) is ignored:
        itself, or any directory on its way from the root."""
        parts = (self.root / relative).relative_to(self.top).parts
        if ".git" in (p.lower() if self.ignore_case else p for p in parts):
            return True
        full = self.top.joinpath(*parts)
        sources = list(self._sources(parts))  # read once for the path, not once per directory on it
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts) or full.is_dir()
            applying = [(base, rules) for level, base, rules in sources if level < depth]
            if self._decide(parts[:depth], is_dir, applying):
                return True
        return False

    def _decide(self, parts: tuple[str, ...], is_dir: bool, sources: list[tuple[str, list[Rule]]]) -> bool:
        """Whether the last matching rule for parts (relative to top) ignores it; its directories are
        taken as not ignored (the caller checked them first)."""
        ignored = False
        path = "/".join(parts)
        for base, rules in sources:
            relative = path[len(base) + 1:] if base else path
            for rule in rules:
                if rule.matches(relative, is_dir):
                    ignored = not rule.negate
        return ignored

    def _sources(self, parts: tuple[str, ...]):
        """(level, base directory relative to top, rules) for every directory on the path, in
        precedence order, lowest first; a source applies to the paths deeper than its level (the
        number of parts of its directory; 0 for the repository's and the user's files)."""
        if self.global_excludes is not None:
            yield 0, "", self._rules(self.global_excludes)
        yield 0, "", self._rules(self.top / ".git" / "info" / "exclude")
        for level in range(len(parts)):
            directory = self.top.joinpath(*parts[:level])
            base = "/".join(parts[:level])
            if level and (directory / ".git").is_dir():  # a nested repository's own excludes
                yield level, base, self._rules(directory / ".git" / "info" / "exclude")
            yield level, base, self._rules(directory / ".gitignore")

    def _rules(self, path: Path) -> list[Rule]:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        cached = self._files.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        rules = []
        if stamp is not None and stamp[1] <= MAX_RULES_BYTES:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            rules = [r for r in (parse_rule(line, self.ignore_case) for line in text.split("\n")) if r is not None]
        self._files[path] = (stamp, rules)
        return rules


def _repository_top(root: Path) -> Path:
    """The nearest directory at or above root holding .git (a directory, or a worktree's file);
    root itself when there is none."""
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            return directory
    return root


def _git_config(top: Path, kind: str, name: str) -> str | None:
    """A setting as git reads it for the repository at top (`kind`: --path expands ~, --bool says
    true or false), or None where it is unset or git is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(["git", "config", kind, "--get", name], check=False, cwd=top, env=env,
                              capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def _default_excludes() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "git" / "ignore"
