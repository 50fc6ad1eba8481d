"""The synthetic typist: turns source files into typing sessions (Contract 4).

It picks spans with tree-sitter (function bodies, blocks, statements, single lines), removes one,
and plans how a person would type it back: lognormal inter-key intervals, slower at token
boundaries and after `(`, `:` and newlines, thinking pauses at line starts, typos fixed with
backspace, now and then a pasted line or a look elsewhere in the file (cursor jump and back).
The plan is fixed by the seed and does not depend on the server; whether a suggestion is accepted
is decided at replay time (see replay.py), against the text the typist intends to type.

Indentation arrives with the newline, as an editor's auto-indent gives it.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from completer.lines import split_lines
from completer.syntax import EXTENSIONS, get_language, parser_for

from .session import Session, event

LANGUAGE_IDS = {"python": "python", "javascript": "javascript", "typescript": "typescript", "tsx": "typescriptreact",
                "go": "go", "rust": "rust", "java": "java", "c": "c", "cpp": "cpp", "lua": "lua"}


@dataclass(frozen=True)
class TypingModel:
    """Timing parameters (evals.md A3: ~52 WPM typists, pauses from Shrestha et al. 2022)."""
    key_median_ms: float = 200.0  # between two characters inside a word
    key_sigma: float = 0.35  # lognormal shape of one interval
    boundary_factor: float = 2.2  # token boundaries are slower
    after_open_factor: float = 2.8  # after `(`, `:`, `{`, `[` and newlines
    think_p: float = 0.2  # chance of a thinking pause at a line start
    think_median_ms: float = 2500.0
    think_sigma: float = 0.6
    think_max_ms: float = 15000.0
    typo_p: float = 0.025  # per character: a wrong key, a beat, backspace
    paste_p: float = 0.02  # per line: the whole line arrives at once
    jump_p: float = 0.02  # per line: the cursor leaves (reads elsewhere) and comes back
    min_span_chars: int = 20
    max_span_chars: int = 400
    max_span_lines: int = 12


@dataclass(frozen=True)
class Span:
    kind: str  # body | block | statement | line
    start_row: int  # first line retyped (0-based)
    end_row: int  # one past the last line retyped


# Node types per category; the body of a definition is its `body` field.
_DEFINITIONS = {"function_definition", "function_declaration", "method_definition", "method_declaration",
                "function_item", "generator_function_declaration", "arrow_function", "function_expression"}
_COMPOUND = {"if_statement", "for_statement", "while_statement", "for_in_statement", "try_statement",
             "with_statement", "switch_statement", "expression_switch_statement", "for_range_clause"}
_SIMPLE_SUFFIXES = ("_statement", "_declaration", "assignment", "_declarator")


def language_of(path: str | Path) -> str | None:
    name = EXTENSIONS.get(Path(path).suffix.lower())
    return name if name is not None and get_language(name) is not None else None


def find_spans(text: str, language: str, model: TypingModel = TypingModel()) -> list[Span]:
    """Every candidate span of whole lines, by kind, in document order."""
    lines = split_lines(text)
    tree = parser_for(language).parse(text.encode("utf-8"))
    spans: set[Span] = set()

    def add(kind: str, start: int, end: int) -> None:
        if 0 <= start < end <= len(lines) and end - start <= model.max_span_lines:
            body = "".join(lines[start:end]).strip()
            if model.min_span_chars <= len(body) <= model.max_span_chars:
                spans.add(Span(kind, start, end))

    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.has_error:
            continue
        kind = node.type
        if kind in _DEFINITIONS:
            body = node.child_by_field_name("body")
            if body is not None:
                start, end = _inner_rows(body, lines)
                add("body", start, end)
        elif kind in _COMPOUND:
            add("block", node.start_point[0], node.end_point[0] + 1)
        elif kind.endswith(_SIMPLE_SUFFIXES) and node.start_point[0] != node.end_point[0]:
            add("statement", node.start_point[0], node.end_point[0] + 1)
    for row, line in enumerate(lines):
        if len(line.strip()) >= model.min_span_chars and not line.lstrip().startswith(("#", "//", "/*", "*")):
            add("line", row, row + 1)
    return sorted(spans, key=lambda s: (s.start_row, s.end_row, s.kind))


def _inner_rows(body, lines: list[str]) -> tuple[int, int]:
    """The rows inside a body: for `{ ... }` bodies, those between the brace lines."""
    start, end = body.start_point[0], body.end_point[0] + 1
    text = body.text.decode("utf-8", "replace") if body.text else ""
    if text.startswith("{"):
        start += 1
        if text.rstrip().endswith("}"):
            end -= 1
    return start, end


def choose_spans(spans: list[Span], count: int, rng: random.Random) -> list[Span]:
    """Up to `count` spans that do not overlap, the kinds taken in turn."""
    by_kind: dict[str, list[Span]] = {}
    for s in spans:
        by_kind.setdefault(s.kind, []).append(s)
    for group in by_kind.values():
        rng.shuffle(group)
    chosen: list[Span] = []
    kinds = sorted(by_kind)
    while len(chosen) < count and any(by_kind.values()):
        for kind in kinds:
            group = by_kind[kind]
            while group:
                s = group.pop()
                if all(s.end_row <= c.start_row or s.start_row >= c.end_row for c in chosen):
                    chosen.append(s)
                    break
            if len(chosen) >= count:
                break
    return chosen


def plan_typing(target: str, rng: random.Random, model: TypingModel = TypingModel()) -> list[list]:
    """Steps [op, at, text, delay_ms] that type `target` (`at`: offset in target where the step acts).

    type: insert `text` (one character, or a newline with the next line's indentation);
    typo: insert a wrong character (fixed by the backspace step that follows);
    paste: insert `text` (the rest of a line) at once; jump: the cursor leaves and comes back.
    """
    steps: list[list] = []
    i, prev = 0, "\n"
    line_start = True
    while i < len(target):
        if line_start:
            if rng.random() < model.jump_p:
                steps.append(["jump", i, "", _think(rng, model) / 2])
            if rng.random() < model.paste_p:
                end = target.find("\n", i)
                end = len(target) if end < 0 else end
                if end - i >= 8:
                    steps.append(["paste", i, target[i:end], _think(rng, model) / 3])
                    i, prev, line_start = end, target[end - 1], False
                    continue
        ch = target[i]
        delay = _interval(prev, ch, rng, model)
        if line_start and rng.random() < model.think_p:
            delay += _think(rng, model)
        text = ch
        if ch == "\n":  # auto-indent: the next line's indentation comes with Enter
            j = i + 1
            while j < len(target) and target[j] in " \t":
                j += 1
            text = target[i:j]
        elif ch.isalnum() and rng.random() < model.typo_p:
            steps.append(["typo", i, _neighbour(ch, rng), round(delay, 1)])
            steps.append(["backspace", i, "", round(_interval(ch, ch, rng, model) * 1.5, 1)])
            delay = _interval(ch, ch, rng, model)
        steps.append(["type", i, text, round(delay, 1)])
        i += len(text)
        prev = "\n" if "\n" in text else text[-1]
        line_start = "\n" in text
    return steps


def _interval(prev: str, ch: str, rng: random.Random, model: TypingModel) -> float:
    factor = 1.0
    if prev in "(:{[\n":
        factor = model.after_open_factor
    elif (prev.isalnum() or prev == "_") != (ch.isalnum() or ch == "_"):
        factor = model.boundary_factor
    return model.key_median_ms * factor * math.exp(rng.gauss(0.0, model.key_sigma))


def _think(rng: random.Random, model: TypingModel) -> float:
    return min(model.think_max_ms, model.think_median_ms * math.exp(rng.gauss(0.0, model.think_sigma)))


_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890")


def _neighbour(ch: str, rng: random.Random) -> str:
    low = ch.lower()
    for row in _ROWS:
        k = row.find(low)
        if k >= 0:
            options = [row[j] for j in (k - 1, k + 1) if 0 <= j < len(row)]
            out = rng.choice(options)
            return out.upper() if ch.isupper() else out
    return "x"


def synthesize(path: str | Path, span: Span, seed: int, model: TypingModel = TypingModel(),
               uri: str | None = None, source_name: str | None = None) -> Session:
    """A session that opens `path` without `span` and plans to type the span back."""
    path = Path(path)
    language = language_of(path)
    if language is None:
        raise ValueError(f"{path}: no tree-sitter grammar for this file type")
    text = path.read_text(encoding="utf-8")
    lines = split_lines(text)
    first = lines[span.start_row]
    indent = first[:len(first) - len(first.lstrip(" \t"))]
    removed = "".join(lines[span.start_row:span.end_row])
    target = removed[len(indent):]
    tail = ""
    if target.endswith("\n"):  # the line break after the span stays in the document
        target, tail = target[:-1], "\n"
    start_text = "".join(lines[:span.start_row]) + indent + tail + "".join(lines[span.end_row:])
    uri = uri or f"file:///workspace/{path.name}"
    rng = random.Random(f"{seed}:{source_name or path.name}:{span.start_row}:{span.end_row}")
    meta = {"source": source_name or str(path), "span": asdict(span), "seed": seed, "typing_model": asdict(model),
            "language": language}
    events = [
        event("open", 0, uri=uri, language_id=LANGUAGE_IDS[language], version=1, text=start_text),
        event("plan", 0, uri=uri, line=span.start_row, character=len(indent), text=target,
              steps=plan_typing(target, rng, model)),
    ]
    return Session("synthetic", "utf-16", meta, events)


def synthesize_tree(paths: list[Path], count_per_file: int, seed: int, model: TypingModel = TypingModel(),
                    root: Path | None = None) -> list[Session]:
    sessions = []
    for path in paths:
        language = language_of(path)
        if language is None:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        name = str(path.relative_to(root)) if root else path.name
        rng = random.Random(f"{seed}:{name}")
        for span in choose_spans(find_spans(text, language, model), count_per_file, rng):
            session = synthesize(path, span, seed, model, source_name=name)
            session.meta["name"] = f"{Path(name).stem}-{span.kind}-{span.start_row + 1}"
            sessions.append(session)
    return sessions
