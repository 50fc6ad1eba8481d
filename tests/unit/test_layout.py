"""The imports inside completer/ run one way (design.md): lsp/ and cli/ -> completion/ -> engines/ ->
the leaves; serving/ -> engines/; replay/ is a black-box client of the server and never imports
engines/. No import circle anywhere, and nothing imports back up the layers. Read from the source
with ast, so a lazy import inside a function counts as much as one at the top."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("completer", "lsp")
# Layers from the bottom: a module may import its own room, and rooms of a lower layer.
LEAVES = {"completer.lines", "completer.syntax", "completer.tokenizer", "completer.records"}
LAYER = {"leaves": 0, "engines": 1, "serving": 2, "completion": 2, "replay": 2, "lsp": 3, "cli": 4}
FORBIDDEN = {  # room -> rooms it must never import, whatever the layers say
    "replay": {"engines", "completion", "serving", "lsp", "cli"},
    "engines": {"completion", "lsp", "cli", "serving", "replay"},
    "serving": {"completion", "lsp", "cli", "replay"},
    "completion": {"serving", "replay", "lsp", "cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str | None:
    if module in LEAVES:
        return "leaves"
    parts = module.split(".")
    if parts[0] == "lsp":
        return "lsp"
    if parts[0] == "completer" and len(parts) > 1 and parts[1] in LAYER:
        return parts[1]
    return None  # completer itself, __main__, models


def imports_of(path: Path, module: str) -> set[str]:
    """The project modules `path` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in PACKAGES}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {m: {t for t in imports_of(p, m) if t in files and t != m} for m, p in files.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        here = room(module)
        if here is None:
            continue
        for target in targets:
            there = room(target)
            if there is None or there == here:
                continue
            if there in FORBIDDEN.get(here, ()) or LAYER[there] > LAYER[here]:
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of two or more modules."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_imports_follow_the_layers(graph):
    wrong = layer_violations(graph)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_circles(graph):
    assert not circles(graph)


def test_the_checks_see_wrong_imports_and_circles():
    assert layer_violations({"completer.engines.x": {"completer.completion.prompt"}}) == \
        ["completer.engines.x -> completer.completion.prompt"]
    assert layer_violations({"completer.replay.driver": {"completer.engines.contract"}})
    assert layer_violations({"completer.lines": {"completer.completion.prompt"}})  # a leaf climbing up
    assert not layer_violations({"lsp.server": {"completer.engines.loading", "completer.lines"}})
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
