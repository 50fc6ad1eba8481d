"""The workspace files a source file imports, and their declarations as context chunks.

Which files count, per language (tree-sitter finds the imports; only files on disk are read):

- Python: `import a.b`, `from a.b import c` (`c` may be a module) and relative imports (`from .m
  import x`, `from .. import y`); absolute names are looked up from the file's workspace folder, its
  `src/`, and each directory between the file and that folder.
- JavaScript, TypeScript: relative specifiers (`./x`, `../y`) of `import`, `export ... from` and
  `require()`, with the usual extensions and index files (a `.js` specifier may name a `.ts` file).
- Go: the other files of the file's package (its directory) and the packages of the same module that
  it imports (under go.mod's module path); exported names only from the latter.
- Rust: `mod x;` and `use crate::`, `super::` and `self::` paths, from the crate's `src/`.
- C, C++: quoted `#include`s (from the file's directory, then the folder, its `include/` and `src/`),
  and a source file's own header.
- Java: the other classes of the file's package, and the project's classes it imports (the source
  root found from its package declaration).
- Lua: `require("a.b")` from the folder, its `lua/` and `src/`, and the file's directory.

A file is read only if the workspace allows it (context.Workspace.relative: inside a folder, not
ignored by git's rules, not a secret) and is at most MAX_IMPORTED_BYTES; its declarations are kept
until it changes on disk (an LRU keyed by its path, size and mtime), so that a refresh after each
pause does not parse the same files again. Each imported file gives
one chunk: its declarations, bodies elided (declarations.py), those the import names and those the
current file uses first, cut at `max_chars`; a package sibling (Go, Java) of which the current file
names nothing gives none. Bounded work: at most
MAX_FILES files read, of at most MAX_PACKAGE_FILES per package directory, from the first
MAX_IMPORTS imports (4,000 unresolved imports took 0.3 s to look up, on a worker thread).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path

from tree_sitter import Tree

from completer.completion.context import Chunk, Workspace
from completer.completion.declarations import IDENTIFIER, Declaration, declarations
from completer.syntax import UTF8, language_for, parser_for

MAX_FILES = 12  # files read per refresh
MAX_PACKAGE_FILES = 24  # files of one Go or Java package directory looked at
MAX_IMPORTS = 200  # import statements looked at per file (each costs a few stat calls)
# An imported file larger than this is generated or vendored: not parsed (a 1 MB file takes ~1 s).
MAX_IMPORTED_BYTES = 256_000
# Without the document's own whole tree, only its head is parsed for imports: they stand at the top.
HEAD_BYTES = 64_000
CHUNK_CHARS = 768  # default size of one file's chunk
MIN_HEAD_CHARS = 160  # the least room worth the first lines of a declaration too long to take whole


@dataclass(frozen=True)
class Imported:
    path: Path
    names: frozenset[str] | None  # what the import names from the file (None: anything it declares)
    public_only: bool = False  # another Go package, another Python module: its exported names only
    sibling: bool = False  # not imported but in scope (Go's and Java's package): only if the file names it


def import_definitions(workspace: Workspace, current_path: str, source: bytes, language: str,
                       max_chars: int = CHUNK_CHARS, tree: Tree | None = None) -> list[Chunk]:
    """Chunks of declarations from the workspace files that the file at `current_path` (its text:
    `source`) imports, in the order it imports them. `tree`: the document's whole tree where the
    caller has one (the language server's snapshot), else its first HEAD_BYTES are parsed."""
    resolve = RESOLVERS.get(language)
    if resolve is None or not workspace.folders:
        return []
    current = Path(current_path)
    folder = workspace.folder_of(current) or workspace.root
    if folder is None:
        return []
    if tree is None:
        head = source if len(source) <= HEAD_BYTES else source[:source.rfind(b"\n", 0, HEAD_BYTES) + 1]
        tree = parser_for(language).parse(head)
    used = set(IDENTIFIER.findall(source.decode(*UTF8)))
    chunks, seen = [], {_resolved(current)}
    for target in resolve(tree.root_node, source, current, folder):
        if len(seen) > MAX_FILES:
            break
        real = _resolved(target.path)
        if real in seen:
            continue
        seen.add(real)
        rel = workspace.relative(target.path)
        if rel is None:
            continue
        # A header is read in its includer's language: C++ classes in a .h are no C.
        kind = language if language in ("c", "cpp") else language_for("", str(target.path)) or language
        found = _declarations_of(real, kind)
        if found is None:
            continue
        body = _chunk_text(found, target, used, max_chars)
        if body:
            chunks.append(Chunk(rel, body, "definitions"))
    return chunks


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def _read(path: Path, limit: int = MAX_IMPORTED_BYTES) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _declarations_of(path: Path, language: str) -> tuple[Declaration, ...] | None:
    """The file's declarations, None if it cannot be read or is too large."""
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_size > MAX_IMPORTED_BYTES:
        return None
    return _cached_declarations(path, language, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=128)
def _cached_declarations(path: Path, language: str, size: int, mtime_ns: int) -> tuple[Declaration, ...] | None:
    text = _read(path)
    return None if text is None else tuple(declarations(language, text))


def _chunk_text(declared: tuple[Declaration, ...], target: Imported, used: set[str], max_chars: int) -> str:
    """Declarations within max_chars, in the file's order: first those the import names, then those
    the importing file uses, then (for a file it imports, not a package sibling) the rest, as the
    user may be about to call what they have not used yet."""
    found = [d for d in declared if d.exported or not target.public_only]
    named = [d for d in found if target.names and d.name in target.names]
    taken = {id(d) for d in named}
    in_use = [d for d in found if d.name in used and id(d) not in taken]
    if target.sibling and not in_use:
        return ""
    taken |= {id(d) for d in in_use}
    rest = [] if target.sibling else [d for d in found if id(d) not in taken]
    picked: dict[int, str] = {}
    size = 0
    for d in [*named, *in_use, *rest]:
        text = d.text if size + len(d.text) <= max_chars else _head_lines(d.text, max_chars - size)
        if text:
            picked[id(d)] = text
            size += len(text)
    return "".join(picked[id(d)] for d in found if id(d) in picked)


def _head_lines(text: str, room: int) -> str:
    """The first lines of a declaration too long for the room left, with a line saying so; "" if
    fewer than MIN_HEAD_CHARS would be left."""
    if room < MIN_HEAD_CHARS:
        return ""
    lines, size = [], 4
    for line in text.splitlines(keepends=True):
        if size + len(line) > room:
            break
        lines.append(line)
        size += len(line)
    indent = len(lines[-1]) - len(lines[-1].lstrip()) if lines else 0
    return "".join(lines) + " " * indent + "...\n" if len(lines) > 1 else ""


def _string(node, source: bytes) -> str:
    """A string literal's content, without its quotes."""
    return source[node.start_byte:node.end_byte].decode(*UTF8).strip("\"'`<>")


def _first_file(candidates) -> Path | None:
    for path in candidates:
        try:
            if path.is_file():
                return path
        except OSError:
            continue
    return None


def _roots(current: Path, folder: Path, extra: tuple[str, ...] = ("src",)) -> list[Path]:
    """Where absolute module names are looked up: the folder, its `extra` directories, then each
    directory from the file's up to the folder."""
    roots = [folder, *(folder / e for e in extra)]
    d = current.parent
    while d != folder and folder in d.parents:
        roots.append(d)
        d = d.parent
    return list(dict.fromkeys(roots))


# -- Python -------------------------------------------------------------------------------------

def _python(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    out: list[Imported] = []
    roots = _roots(current, folder)

    def module(parts: list[str], base_dirs: list[Path], names: frozenset[str] | None) -> None:
        """The module `parts` from the first base that has it, and the modules among `names` (`from
        pkg import mod`; a package without __init__.py too)."""
        for base in base_dirs:
            stem = base.joinpath(*parts)
            found = _first_file([stem.with_suffix(".py"), stem / "__init__.py"] if parts else [stem / "__init__.py"])
            submodules = [p for n in sorted(names or ())
                          if (p := _first_file([stem / f"{n}.py", stem / n / "__init__.py"]))]
            if found is None and not submodules:
                continue
            if found is not None:
                out.append(Imported(found, names, public_only=True))
            out.extend(Imported(p, None, public_only=True) for p in submodules)
            return

    for node in islice(_python_imports(root), MAX_IMPORTS):
        if node.type == "import_statement":
            for name in node.named_children:
                dotted = name.child_by_field_name("name") if name.type == "aliased_import" else name
                if dotted is not None and dotted.type == "dotted_name":
                    module(_text(dotted, source).split("."), roots, None)
        else:  # import_from_statement
            target = node.child_by_field_name("module_name")
            names = frozenset(_text(n.child_by_field_name("name") if n.type == "aliased_import" else n, source)
                              for n in node.children_by_field_name("name"))
            if target is None:
                continue
            if target.type == "relative_import":
                prefix = next((c for c in target.children if c.type == "import_prefix"), None)
                dots = len(_text(prefix, source)) if prefix is not None else 1
                base = current.parent
                for _ in range(dots - 1):
                    base = base.parent
                dotted = next((c for c in target.children if c.type == "dotted_name"), None)
                module(_text(dotted, source).split(".") if dotted is not None else [], [base], names)
            elif target.type == "dotted_name":
                module(_text(target, source).split("."), roots, names)
    return out


def _python_imports(root):
    """Import statements at the top level and one block down (`if TYPE_CHECKING:`, `try:`)."""
    for node in root.named_children:
        if node.type in ("import_statement", "import_from_statement"):
            yield node
        elif node.type in ("if_statement", "try_statement"):
            for block in node.named_children:
                body = block if block.type == "block" else block.child_by_field_name("body") or \
                    block.child_by_field_name("consequence")
                for child in body.named_children if body is not None and body.type == "block" else ():
                    if child.type in ("import_statement", "import_from_statement"):
                        yield child


def _text(node, source: bytes) -> str:
    return source[node.start_byte:node.end_byte].decode(*UTF8)


# -- JavaScript, TypeScript ---------------------------------------------------------------------

_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs")


def _javascript(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    out = []
    for specifier, names in islice(_js_specifiers(root, source), MAX_IMPORTS):
        if not specifier.startswith(("./", "../")) and specifier not in (".", ".."):
            continue  # a package, not a workspace file
        base = (current.parent / specifier)
        stem = base.with_suffix("") if base.suffix in (".js", ".jsx", ".mjs", ".cjs") else base
        candidates = [base] if base.suffix in _JS_EXTENSIONS else []
        candidates += [stem.parent / (stem.name + e) for e in _JS_EXTENSIONS]
        candidates += [base / ("index" + e) for e in _JS_EXTENSIONS]
        found = _first_file(candidates)
        if found is not None:
            out.append(Imported(found, names))
    return out


def _js_specifiers(root, source: bytes):
    """(specifier, imported names or None) of each import, re-export and top-level require()."""
    for node in root.named_children:
        if node.type in ("import_statement", "export_statement"):
            where = node.child_by_field_name("source")
            if where is None:
                continue
            names = set()
            for n in _walk(node, ("import_specifier", "export_specifier")):
                name = n.child_by_field_name("name")
                if name is not None:
                    names.add(_text(name, source))
            yield _string(where, source), frozenset(names) or None
        elif node.type in ("lexical_declaration", "variable_declaration", "expression_statement"):
            for call in _walk(node, ("call_expression",), depth=4):
                function, arguments = call.child_by_field_name("function"), call.child_by_field_name("arguments")
                if function is not None and _text(function, source) == "require" and arguments is not None:
                    strings = [a for a in arguments.named_children if a.type == "string"]
                    if strings:
                        yield _string(strings[0], source), None


def _walk(node, types: tuple[str, ...], depth: int = 6):
    """Descendants of `node` of the given types, at most `depth` levels down."""
    frontier = [node]
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for child in n.named_children:
                if child.type in types:
                    yield child
                else:
                    nxt.append(child)
        frontier = nxt


# -- Go -----------------------------------------------------------------------------------------

def _go(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    testing = current.name.endswith("_test.go")
    out = [Imported(p, None, sibling=True) for p in _package_files(current.parent, ".go", current)
           if testing or not p.name.endswith("_test.go")]
    mod = _go_module(current.parent, folder)
    if mod is not None:
        mod_dir, mod_path = mod
        for spec in islice(_walk(root, ("import_spec",), depth=3), MAX_IMPORTS):
            path = spec.child_by_field_name("path")
            if path is None:
                continue
            imported = _string(path, source)
            if imported == mod_path or imported.startswith(mod_path + "/"):
                directory = mod_dir / imported[len(mod_path):].lstrip("/")
                out += [Imported(p, None, public_only=True, sibling=True)
                        for p in _package_files(directory, ".go", None)
                        if not p.name.endswith("_test.go")]
    return out


def _go_module(directory: Path, folder: Path) -> tuple[Path, str] | None:
    """(go.mod's directory, its module path), looking up from `directory` to the workspace folder."""
    d = directory
    while True:
        text = _read(d / "go.mod")
        if text is not None:
            match = re.search(r"^module\s+(\S+)", text, re.MULTILINE)
            return (d, match.group(1).strip('"')) if match else None
        if d == folder or folder not in d.parents:
            return None
        d = d.parent


def _package_files(directory: Path, suffix: str, current: Path | None) -> list[Path]:
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix == suffix and p != current)
    except OSError:
        return []
    return files[:MAX_PACKAGE_FILES]


# -- Rust ---------------------------------------------------------------------------------------

def _rust(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    out = []
    own = current.parent if current.name in ("mod.rs", "lib.rs", "main.rs") else current.parent / current.stem
    for node in islice((n for n in root.named_children if n.type in ("mod_item", "use_declaration")), MAX_IMPORTS):
        if node.type == "mod_item" and node.child_by_field_name("body") is None:
            name = node.child_by_field_name("name")
            if name is not None:
                n = _text(name, source)
                found = _first_file([own / f"{n}.rs", own / n / "mod.rs"])
                if found is not None:
                    out.append(Imported(found, None))
        elif node.type == "use_declaration":
            argument = node.child_by_field_name("argument")
            if argument is None:
                continue
            path = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", _text(argument, source)))  # `a::B as C`
            head, _, rest = path.partition("::")
            if head == "crate":
                base = _crate_src(current, folder)
            elif head == "super":
                base = own.parent
            elif head == "self":
                base = own
            else:
                continue  # another crate
            if base is None:
                continue
            found = _rust_module(base, rest)
            if found is not None:
                out.append(Imported(found[0], found[1]))
    return out


def _crate_src(current: Path, folder: Path) -> Path | None:
    d = current.parent
    while True:
        if (d / "Cargo.toml").is_file():
            return d / "src"
        if d.name == "src" and ((d / "lib.rs").is_file() or (d / "main.rs").is_file()):
            return d
        if d == folder or folder not in d.parents:
            return None
        d = d.parent


def _rust_module(base: Path, path: str) -> tuple[Path, frozenset[str] | None] | None:
    """The file of the longest module prefix of `path` (`a::b::{C, D}`), and the names after it."""
    parts = [p for p in path.split("{")[0].split("::") if p]
    leaves = frozenset(IDENTIFIER.findall(path.split("{", 1)[1])) if "{" in path else None
    for k in range(len(parts), 0, -1):
        stem = base.joinpath(*parts[:k])
        found = _first_file([stem.with_suffix(".rs"), stem / "mod.rs"])
        if found is not None:
            after = parts[k:]
            names = frozenset(after[:1]) if after else leaves
            return found, names
    return None


# -- C, C++ -------------------------------------------------------------------------------------

_HEADERS = (".h", ".hpp", ".hh", ".hxx")


def _c(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    out = []
    if current.suffix not in _HEADERS:
        own = _first_file([current.with_suffix(h) for h in _HEADERS])
        if own is not None:
            out.append(Imported(own, None))
    includes = (include for node in root.named_children
                for include in ([node] if node.type == "preproc_include" else _walk(node, ("preproc_include",), 3)))
    for include in islice(includes, MAX_IMPORTS):
        path = include.child_by_field_name("path")
        if path is None or path.type != "string_literal":
            continue  # <system> headers
        name = _string(path, source)
        found = _first_file([current.parent / name, *(r / name for r in _roots(current, folder, ("include", "src")))])
        if found is not None:
            out.append(Imported(found, None))
    return out


# -- Java ---------------------------------------------------------------------------------------

def _java(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    package = next((n for n in root.named_children if n.type == "package_declaration"), None)
    parts = _text(package.named_children[0], source).split(".") if package is not None and package.named_children \
        else []
    source_root = current.parent
    for _ in parts:
        source_root = source_root.parent
    out = []
    for node in islice((n for n in root.named_children if n.type == "import_declaration"), MAX_IMPORTS):
        if any(c.type == "static" for c in node.children):
            continue
        name = next((c for c in node.named_children if c.type in ("scoped_identifier", "identifier")), None)
        if name is None:
            continue
        dotted = _text(name, source).split(".")
        if any(c.type == "asterisk" for c in node.children):
            package_dir = source_root.joinpath(*dotted)
            out += [Imported(p, None, sibling=True) for p in _package_files(package_dir, ".java", None)]
            continue
        found = _first_file([source_root.joinpath(*dotted).with_suffix(".java")])
        if found is not None:
            out.append(Imported(found, None))
    return out + [Imported(p, None, sibling=True) for p in _package_files(current.parent, ".java", current)]


# -- Lua ----------------------------------------------------------------------------------------

def _lua(root, source: bytes, current: Path, folder: Path) -> list[Imported]:
    out = []
    roots = [*_roots(current, folder, ("lua", "src")), current.parent]
    for call in islice(_walk(root, ("function_call",), depth=5), MAX_IMPORTS * 10):  # every call, not only require
        name = call.child_by_field_name("name")
        arguments = call.child_by_field_name("arguments")
        if name is None or arguments is None or _text(name, source) != "require":
            continue
        strings = [a for a in ([arguments] if arguments.type == "string" else arguments.named_children)
                   if a.type == "string"]
        if not strings:
            continue
        parts = _string(strings[0], source).split(".")
        found = _first_file([r.joinpath(*parts).with_suffix(".lua") for r in roots] +
                            [r.joinpath(*parts, "init.lua") for r in roots])
        if found is not None:
            out.append(Imported(found, None, public_only=True))  # a module's `local`s stay inside it
    return out


RESOLVERS = {"python": _python, "javascript": _javascript, "typescript": _javascript, "go": _go, "rust": _rust,
             "c": _c, "cpp": _c, "java": _java, "lua": _lua}
