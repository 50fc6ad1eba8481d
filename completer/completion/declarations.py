"""A source file's declarations with their bodies elided: what another file that imports it can call.

Functions and methods keep their signature line(s) and lose their body (" ..." in Python, "{ ... }"
in brace languages, "... end" in Lua); classes, impls, traits and interfaces keep their header and
list their members the same way; short type definitions, fields, constants and macros are kept
whole (at most WHOLE_LINES lines, comment lines dropped; Python's one-line assignments only);
namespaces, inline modules, include guards and `extern "C"` are looked through, their members listed
as if at the top. Nine grammars, one table each (GRAMMARS): the walk is the same for all.

Each declaration comes back as a `Declaration` with its name, so that the caller can keep those an
importing file names and drop the rest (imports.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from completer.syntax import UTF8, parser_for

WHOLE_LINES = 8  # a type, field or constant longer than this is cut, with an elision mark
MAX_MEMBERS = 40  # of one class, impl or namespace
MAX_DEPTH = 3  # classes in classes listed this deep; conditionals and namespaces looked into this deep


@dataclass(frozen=True)
class Declaration:
    name: str  # "" where the declaration has none (an impl block, an anonymous enum)
    text: str  # one or more lines, each ending in "\n"
    exported: bool  # Go: capitalised; JS/TS: exported; Python: no leading "_"; Lua: not `local`; else True


@dataclass(frozen=True)
class Grammar:
    functions: frozenset[str]  # body elided
    containers: frozenset[str]  # header, then members, then `closing`
    whole: frozenset[str]  # kept whole, up to WHOLE_LINES lines
    wrappers: frozenset[str]  # hold one declaration (export, decorators, template): rendered through
    elided: str  # what stands for a function body
    closing: str  # what ends a container ("" in Python)
    indent: str = "    "


_BRACES = {"elided": " { ... }", "closing": "}"}
GRAMMARS: dict[str, Grammar] = {
    "python": Grammar(
        functions=frozenset({"function_definition"}), containers=frozenset({"class_definition"}),
        whole=frozenset(), wrappers=frozenset({"decorated_definition"}), elided=" ...", closing=""),
    "javascript": Grammar(
        functions=frozenset({"function_declaration", "generator_function_declaration", "method_definition"}),
        containers=frozenset({"class_declaration"}),
        whole=frozenset({"field_definition"}),
        wrappers=frozenset({"export_statement"}), **_BRACES),
    "typescript": Grammar(
        functions=frozenset({"function_declaration", "generator_function_declaration", "method_definition",
                             "function_signature", "method_signature", "abstract_method_signature"}),
        containers=frozenset({"class_declaration", "abstract_class_declaration"}),
        whole=frozenset({"interface_declaration", "type_alias_declaration", "enum_declaration",
                         "public_field_definition"}),
        wrappers=frozenset({"export_statement", "ambient_declaration"}), **_BRACES),
    "go": Grammar(
        functions=frozenset({"function_declaration", "method_declaration"}), containers=frozenset(),
        whole=frozenset({"type_declaration", "const_declaration", "var_declaration"}),
        wrappers=frozenset(), **_BRACES),
    "rust": Grammar(
        functions=frozenset({"function_item", "function_signature_item"}),
        containers=frozenset({"impl_item", "trait_item", "mod_item"}),  # `mod x;`: a mod with a body is looked through
        whole=frozenset({"struct_item", "enum_item", "union_item", "type_item", "const_item", "static_item",
                         "associated_type"}),
        wrappers=frozenset(), **_BRACES),
    "c": Grammar(
        functions=frozenset({"function_definition"}), containers=frozenset(),
        whole=frozenset({"declaration", "type_definition", "struct_specifier", "union_specifier", "enum_specifier",
                         "preproc_def", "preproc_function_def"}),
        wrappers=frozenset(), **_BRACES),
    "cpp": Grammar(
        functions=frozenset({"function_definition"}),
        containers=frozenset({"class_specifier"}),
        whole=frozenset({"declaration", "field_declaration", "type_definition", "alias_declaration",
                         "struct_specifier", "union_specifier", "enum_specifier", "preproc_def",
                         "preproc_function_def"}),
        wrappers=frozenset({"template_declaration"}), **_BRACES),
    "java": Grammar(
        functions=frozenset({"method_declaration", "constructor_declaration"}),
        containers=frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                              "record_declaration"}),
        whole=frozenset({"field_declaration", "constant_declaration"}),
        wrappers=frozenset(), **_BRACES),
    "lua": Grammar(
        functions=frozenset({"function_declaration"}), containers=frozenset(), whole=frozenset(),
        wrappers=frozenset(), elided=" ... end", closing=""),
}
# Bodies that list members; anything else under a container's "body" field is kept whole.
_MEMBER_LISTS = frozenset({"block", "class_body", "declaration_list", "field_declaration_list", "interface_body",
                           "statement_block"})
# A function's value in a variable or an assignment (JavaScript's `exports.f = function (a) {...}`,
# `const f = (a) => {...}`, Lua's `M.f = function (a) ... end`): its body is elided too.
_FUNCTION_VALUES = frozenset({"function_expression", "function", "arrow_function", "function_definition",
                              "generator_function"})
_ASSIGNMENTS = frozenset({"lexical_declaration", "variable_declaration", "expression_statement",
                          "assignment_statement"})
# A name as declarations carry it; imports.py splits the importing file with the same pattern, so
# that `name in used` compares like with like.
IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def declarations(language: str, text: str) -> list[Declaration]:
    """The file's top-level declarations in order (members inside their container's text)."""
    grammar = GRAMMARS.get(language)
    if grammar is None:
        return []
    source = text.encode(*UTF8)
    root = parser_for(language).parse(source).root_node
    out = []
    for node in _flat(root.named_children):
        rendered = _render(grammar, language, source, node, "")
        if rendered is not None:
            name, body, exported = rendered
            out.append(Declaration(name, body, exported))
    return out


# Nodes that only hold declarations: include guards and other conditionals, `extern "C" { }`.
# Namespaces and inline modules too: their members are listed as if at the top, so that a
# header that is one namespace is not one declaration too large for any chunk.
_TRANSPARENT = frozenset({"preproc_ifdef", "preproc_if", "preproc_else", "preproc_elif", "preproc_elifdef",
                          "linkage_specification", "namespace_definition", "mod_item", "internal_module", "module"})


def _flat(nodes, depth: int = 0):
    """`nodes`, with the declarations inside transparent nodes in their place (MAX_DEPTH deep)."""
    for node in nodes:
        if node.type not in _TRANSPARENT:
            yield node
            continue
        if depth >= MAX_DEPTH:
            continue
        body = node.child_by_field_name("body")
        if node.type.startswith("preproc"):
            yield from _flat((c for c in node.named_children if c.type not in ("identifier", "preproc_arg")), depth + 1)
        elif body is not None:
            yield from _flat(body.named_children, depth + 1)
        elif node.type == "mod_item":
            yield node  # `mod x;`: kept as it is


def _text(source: bytes, start: int, end: int) -> str:
    return source[start:end].decode(*UTF8).rstrip()


_COMMENT_LINES = ("//", "/*", "* ", "*/")


def _cut(text: str, indent: str, column: int) -> str:
    """`text` under `indent` (its lines kept relative to `column`, where it started), comment lines
    dropped, at most WHOLE_LINES lines; a macro's continued body elided."""
    lines = [line for i, line in enumerate(text.splitlines())
             if i == 0 or line.strip() and not line.strip().startswith(_COMMENT_LINES) and line.strip() != "*"]
    if lines and lines[0].startswith("#define") and lines[0].endswith("\\"):
        lines = [lines[0].rstrip("\\").rstrip() + " ..."]
    if len(lines) > WHOLE_LINES:
        lines = [*lines[:WHOLE_LINES - 1], lines[WHOLE_LINES - 1].split("{")[0].rstrip() + " ..."]
    return "".join(indent + (line.strip() if i == 0 else _dedent(line, column)) + "\n"
                   for i, line in enumerate(lines))


def _whole(source: bytes, node, indent: str) -> str:
    return _cut(_text(source, node.start_byte, node.end_byte), indent, node.start_point[1])


def _render(grammar: Grammar, language: str, source: bytes, node, indent: str):
    """(name, text, exported) of one declaration, or None if `node` declares nothing worth listing."""
    kind = node.type
    if kind in grammar.wrappers:
        inner = (node.child_by_field_name("declaration") or node.child_by_field_name("definition")
                 or node.child_by_field_name("value"))
        if inner is None:
            named = [c for c in node.named_children if c.type not in ("decorator", "template_parameter_list")]
            inner = named[-1] if named and kind in ("template_declaration", "ambient_declaration") else None
        if inner is None or inner.type not in (grammar.functions | grammar.containers | grammar.whole | _ASSIGNMENTS):
            return None
        rendered = _render(grammar, language, source, inner, indent)
        if rendered is None:
            return None
        name, body, exported = rendered
        exported = exported or kind == "export_statement"
        raw = source[node.start_byte:inner.start_byte].decode(*UTF8)
        prefix = raw.strip()
        if prefix and "\n" in raw:  # decorators: one per line, the definition under them
            head = "".join(indent + line.strip() + "\n" for line in prefix.splitlines() if line.strip())
            return name, head + body, exported
        return name, (indent + prefix + " " + body.lstrip()) if prefix else body, exported
    if kind in grammar.functions:
        name = _name(node, source)
        exported = _exported(language, name, node, source)
        body = node.child_by_field_name("body")
        if body is None or body.end_byte == body.start_byte:  # a prototype, an abstract or interface method
            return name, _whole(source, node, indent), exported
        return name, _signature(grammar, language, source, node, node, indent), exported
    if kind in grammar.containers:
        body = node.child_by_field_name("body")
        name = _name(node, source)
        if body is None and kind in ("class_specifier", "struct_specifier"):
            return None  # a forward declaration
        if body is None or body.type not in _MEMBER_LISTS:
            return name, _whole(source, node, indent), _exported(language, name, node, source)
        head = _head(_text(source, node.start_byte, body.start_byte), indent, node.start_point[1])
        if len(indent) >= MAX_DEPTH * len(grammar.indent):  # a class this deep: its header only
            return name, head + grammar.elided + "\n", _exported(language, name, node, source)
        opener = " {" if grammar.closing and not head.rstrip().endswith("{") else ""
        lines = [head + opener + "\n"]
        members = 0
        for member in _flat(body.named_children):
            rendered = _render(grammar, language, source, member, indent + grammar.indent)
            if rendered is None:
                continue
            members += 1
            if members > MAX_MEMBERS:
                lines.append(indent + grammar.indent + "...\n")
                break
            lines.append(rendered[1])
        if grammar.closing and members == 0:
            lines[0] = lines[0].rstrip("\n") + " " + grammar.closing + "\n"
        elif grammar.closing:
            lines.append(indent + grammar.closing + "\n")
        elif members == 0:
            lines[0] = lines[0].rstrip("\n") + grammar.elided + "\n"
        return name, "".join(lines), _exported(language, name, node, source)
    if kind in grammar.whole:
        if kind == "preproc_def" and node.child_by_field_name("value") is None:
            return None  # an include guard's or a flag's #define
        if kind in ("struct_specifier", "union_specifier", "enum_specifier") and \
                node.child_by_field_name("body") is None:
            return None  # `struct x;` or the type of a declaration
        name = _name(node, source)
        return name, _whole(source, node, indent), _exported(language, name, node, source)
    if language == "python" and kind == "expression_statement":
        # A constant or a (dataclass) field: `total: float`, `TIMEOUT = 30`; one line only.
        assignment = node.named_children[0] if node.named_children else None
        text = _text(source, node.start_byte, node.end_byte)
        if assignment is None or assignment.type != "assignment" or "\n" in text:
            return None
        name = _name(assignment, source)
        return name, indent + text.strip() + "\n", _exported(language, name, node, source)
    if kind in _ASSIGNMENTS:
        function = _function_value(node)
        if function is None or function.child_by_field_name("body") is None:
            return None
        name = _name(node, source)
        exported = _exported(language, name, node, source)
        return name, _signature(grammar, language, source, node, function, indent), exported
    return None


def _signature(grammar: Grammar, language: str, source: bytes, node, function, indent: str) -> str:
    """`node`'s text up to the body of `function` (the node itself, or the function it assigns),
    then the elision mark. Lua's bodies have no brace to stop before: its header ends with the
    parameters."""
    body = function.child_by_field_name("body")
    params = function.child_by_field_name("parameters") if language == "lua" else None
    head = _text(source, node.start_byte, params.end_byte if params is not None else body.start_byte)
    return _head(head, indent, node.start_point[1]) + grammar.elided + "\n"


def _head(text: str, indent: str, column: int = 0) -> str:
    """A header's lines under `indent`: the first line's own indentation dropped, the others' kept
    relative to `column`, where the declaration started."""
    lines = text.splitlines() or [""]
    return "\n".join(indent + line.strip() if i == 0 else indent + _dedent(line, column)
                     for i, line in enumerate(lines))


def _dedent(line: str, column: int) -> str:
    return line[column:] if not line[:column].strip() else line.lstrip()


def _function_value(node):
    """The function a declaration or assignment statement assigns, if it assigns one (two levels down)."""
    frontier = list(node.named_children)
    for _ in range(3):
        nxt = []
        for child in frontier:
            if child.type in _FUNCTION_VALUES:
                return child
            if child.type in ("call_expression", "function_call", "object", "table_constructor"):
                continue  # a function passed to a call or held in a table is not a declaration
            nxt += child.named_children
        frontier = nxt
    return None


def _name(node, source: bytes) -> str:
    """The declared name: the "name" field, else through C's declarators, else the first word of
    the left-hand side. The last part of a dotted name (`M.f` -> "f", `a::b` -> "b")."""
    if node.type == "impl_item":  # `impl Trait for Type`: the type is what it adds to
        node_type = node.child_by_field_name("type")
        return _last_word(_text(source, node_type.start_byte, node_type.end_byte)) if node_type is not None else ""
    target = node
    for _ in range(6):
        name = target.child_by_field_name("name")
        if name is not None:
            return _last_word(_text(source, name.start_byte, name.end_byte))
        nxt = target.child_by_field_name("declarator") or target.child_by_field_name("left")
        if nxt is None:
            named = [c for c in target.named_children if c.type in (
                "type_spec", "const_spec", "var_spec", "variable_declarator", "assignment_expression",
                "assignment_statement", "variable_list", "type_identifier", "field_identifier", "identifier",
                "variable_declaration")]
            nxt = named[0] if named else None
        if nxt is None:
            return ""
        if nxt.type in ("identifier", "type_identifier", "field_identifier", "qualified_identifier",
                        "dot_index_expression", "member_expression", "property_identifier", "destructor_name",
                        "operator_name"):
            return _last_word(_text(source, nxt.start_byte, nxt.end_byte))
        target = nxt
    return ""


def _last_word(text: str) -> str:
    words = IDENTIFIER.findall(text)
    return words[-1] if words else ""


def _exported(language: str, name: str, node, source: bytes) -> bool:
    if language == "lua":
        return not source[node.start_byte:node.start_byte + 6].startswith(b"local ")
    if language == "go":
        return name[:1].isupper()
    if language == "python":
        return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))
    if language in ("javascript", "typescript"):
        return node.parent is not None and node.parent.type == "export_statement"
    return True
