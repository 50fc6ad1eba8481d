"""Declarations of imported workspace files, per language: which files an import reaches, what of
them goes into the prompt, and what never does."""

from pathlib import Path

import pytest

from completer.completion.context import Workspace
from completer.completion.declarations import declarations
from completer.completion.imports import import_definitions


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def chunks_for(root: Path, rel: str, language: str, max_chars: int = 2000) -> dict[str, str]:
    source = (root / rel).read_bytes()
    return {c.path: c.text for c in import_definitions(Workspace(root), str(root / rel), source, language, max_chars)}


def test_python_relative_and_absolute_imports_from_a_src_layout(tmp_path):
    write(tmp_path, {
        "src/shop/__init__.py": "",
        "src/shop/models.py": "class Order:\n    total: float\n\n    def discounted(self, rate):\n        return 1\n\n"
                              "def _private():\n    pass\n",
        "src/shop/util/__init__.py": "",
        "src/shop/util/money.py": "CENTS = 100\n\ndef round_cents(x):\n    return round(x, 2)\n",
        "src/shop/cli.py": "from .models import Order\nfrom .util import money\nimport shop.util.money as m\n\n"
                           "o = Order()\nprint(money.round_cents(1))\n",
        "tests/test_cli.py": "from shop.models import Order\n",
    })
    got = chunks_for(tmp_path, "src/shop/cli.py", "python")
    assert list(got) == ["src/shop/models.py", "src/shop/util/money.py"]  # the same module once, in import order
    assert got["src/shop/models.py"] == "class Order:\n    total: float\n    def discounted(self, rate): ...\n"
    assert got["src/shop/util/money.py"] == "CENTS = 100\ndef round_cents(x): ...\n"
    # from a tests/ folder outside src/: the absolute name is found under src/
    assert list(chunks_for(tmp_path, "tests/test_cli.py", "python")) == ["src/shop/models.py"]


def test_python_modules_imported_from_a_package_without_init(tmp_path):
    write(tmp_path, {"app/views.py": "def render(page):\n    return page\n",
                     "app/main.py": "from . import views\nviews.render(1)\n"})
    assert chunks_for(tmp_path, "app/main.py", "python") == {"app/views.py": "def render(page): ...\n"}


def test_javascript_and_typescript_relative_specifiers(tmp_path):
    write(tmp_path, {
        "lib/router/index.js": "exports.route = function route(path) {\n  return new Route(path);\n};\n"
                               "function helper() {}\n",
        "lib/app.js": "var router = require('./router');\nvar lodash = require('lodash');\nrouter.route('/');\n",
        "src/store.ts": "export interface Item { id: number }\nexport class Store {\n  private items: Item[] = []\n"
                        "  add(item: Item): void { this.items.push(item) }\n}\n"
                        "export const size = (s: Store) => { return 0 }\n",
        "src/main.ts": "import { Store } from './store.js'\nconst s = new Store()\n",
    })
    got = chunks_for(tmp_path, "lib/app.js", "javascript")
    assert got == {"lib/router/index.js": "exports.route = function route(path) { ... }\nfunction helper() { ... }\n"}
    got = chunks_for(tmp_path, "src/main.ts", "typescript")
    assert got["src/store.ts"] == ("export interface Item { id: number }\nexport class Store {\n"
                                   "    private items: Item[] = []\n    add(item: Item): void { ... }\n}\n"
                                   "export const size = (s: Store) => { ... }\n")


def test_go_package_siblings_and_module_packages(tmp_path):
    write(tmp_path, {
        "go.mod": "module example.com/app\n\ngo 1.21\n",
        "server/routes.go": "package server\n\nimport \"example.com/app/store\"\n\n"
                            "func Routes(s *store.DB) { s.Get(\"k\"); helper() }\n",
        "server/helper.go": "package server\n\nfunc helper() int {\n\treturn 1\n}\n\nfunc unused() {}\n",
        "server/other.go": "package server\n\nfunc nothingShared() {}\n",
        "store/db.go": "package store\n\n// DB is a store.\ntype DB struct {\n\t// the data\n"
                       "\tdata map[string]string\n}\n\n"
                       "func (d *DB) Get(k string) string {\n\treturn d.data[k]\n}\n\nfunc internal() {}\n",
    })
    got = chunks_for(tmp_path, "server/routes.go", "go")
    assert got == {
        "server/helper.go": "func helper() int { ... }\n",  # only what this file uses of its package
        "store/db.go": "type DB struct {\n\tdata map[string]string\n}\nfunc (d *DB) Get(k string) string { ... }\n",
    }


def test_rust_mod_and_use_paths(tmp_path):
    write(tmp_path, {
        "Cargo.toml": "[package]\nname = \"x\"\n",
        "src/lib.rs": "mod walk;\nuse crate::util::{Size, grow};\nuse self::walk::Walker as W;\n\n"
                      "pub fn run() { grow(Size(1)); }\n",
        "src/walk.rs": "pub struct Walker { depth: usize }\nimpl Walker {\n"
                       "    pub fn new() -> Self { Walker { depth: 0 } }\n}\n",
        "src/util/mod.rs": "pub struct Size(pub u32);\npub fn grow(s: Size) -> Size { s }\nfn hidden() {}\n",
    })
    got = chunks_for(tmp_path, "src/lib.rs", "rust")
    assert got["src/walk.rs"] == ("pub struct Walker { depth: usize }\nimpl Walker {\n"
                                  "    pub fn new() -> Self { ... }\n}\n")
    assert got["src/util/mod.rs"].startswith("pub struct Size(pub u32);\npub fn grow(s: Size) -> Size { ... }\n")


def test_c_and_cpp_quoted_includes_and_the_own_header(tmp_path):
    write(tmp_path, {
        "include/buf.h": "#ifndef BUF_H\n#define BUF_H\n#define BUF_MAX 64\n"
                         "#define BUF_GROW(b) \\\n  do { } while (0)\n"
                         "typedef struct buf { char *data; int len; } buf_t;\n"
                         "int buf_append(buf_t *b, const char *s);\n"
                         "#endif\n",
        "src/buf.c": "#include <stdio.h>\n#include \"buf.h\"\nint buf_append(buf_t *b, const char *s) { return 0; }\n",
        "db/table.h": "#pragma once\nnamespace db {\nclass Table;\nclass Reader {\n public:\n"
                      "  explicit Reader(int fd);\n"
                      "  int Read(char* out) const { return 0; }\n private:\n  int fd_;\n};\n}  // namespace db\n",
        "db/table.cc": "#include \"db/table.h\"\nnamespace db { Reader::Reader(int fd) : fd_(fd) {} }\n",
    })
    got = chunks_for(tmp_path, "src/buf.c", "c")
    assert got == {"include/buf.h": "#define BUF_MAX 64\n#define BUF_GROW(b) ...\n"
                                    "typedef struct buf { char *data; int len; } buf_t;\n"
                                    "int buf_append(buf_t *b, const char *s);\n"}  # no include guard
    got = chunks_for(tmp_path, "db/table.cc", "cpp")  # its own header, by name and by include: once
    assert got == {"db/table.h": "class Reader {\n    explicit Reader(int fd);\n    int Read(char* out) const { ... }\n"
                                 "    int fd_;\n}\n"}


def test_java_imports_and_package_classes(tmp_path):
    base = "src/main/java/org/ex"
    write(tmp_path, {
        f"{base}/io/Reader.java": "package org.ex.io;\n\nimport org.ex.util.Buffers;\n\npublic class Reader {\n"
                                  "  public int read() { return Buffers.size(); }\n}\n",
        f"{base}/util/Buffers.java": "package org.ex.util;\n\npublic final class Buffers {\n"
                                     "  public static final int SIZE = 8;\n"
                                     "  public static int size() {\n    return SIZE;\n  }\n}\n",
        f"{base}/io/Writer.java": "package org.ex.io;\n\npublic class Writer { void write() {} }\n",
    })
    got = chunks_for(tmp_path, f"{base}/io/Reader.java", "java")
    assert got == {f"{base}/util/Buffers.java": "public final class Buffers {\n    public static final int SIZE = 8;\n"
                                                "    public static int size() { ... }\n}\n"}  # Writer: not named


def test_lua_require(tmp_path):
    write(tmp_path, {
        "http/util.lua": "local M = {}\nfunction M.encode(s)\n  return s\nend\nM.decode = function(s) return s end\n"
                         "return M\n",
        "main.lua": "local util = require(\"http.util\")\nlocal json = require 'cjson'\nprint(util.encode('x'))\n",
    })
    assert chunks_for(tmp_path, "main.lua", "lua") == {
        "http/util.lua": "function M.encode(s) ... end\nM.decode = function(s) ... end\n"}


def test_what_is_never_read(tmp_path):
    write(tmp_path, {
        ".gitignore": "generated/\n",
        "generated/api.py": "def secret_api(): ...\n",
        ".env.py": "def token(): ...\n",
        "main.py": "import generated.api\nfrom . import env\nimport os\n",
    })
    (tmp_path / "big.py").write_text("def f(): ...\n" + "x = 1\n" * 200_000)
    (tmp_path / "main.py").write_text("import generated.api\nimport big\n")
    assert chunks_for(tmp_path, "main.py", "python") == {}  # ignored, too large
    outside = tmp_path.parent / "outside_lib.py"
    outside.write_text("def far(): ...\n")
    (tmp_path / "rel.js").write_text("const x = require('../outside_lib.js')\n")
    assert chunks_for(tmp_path, "rel.js", "javascript") == {}


def test_a_chunk_keeps_what_the_file_names_first_within_its_size(tmp_path):
    body = "".join(f"def helper_{i}(a, b, c):\n    return a\n\n" for i in range(60))
    write(tmp_path, {"lib.py": body + "def wanted(x):\n    return x\n", "main.py": "from lib import wanted\n"})
    got = chunks_for(tmp_path, "main.py", "python", max_chars=200)["lib.py"]
    assert got.startswith("def helper_0(a, b, c): ...\n") and "def wanted(x): ..." in got and len(got) <= 200


@pytest.mark.parametrize("language", ["python", "javascript", "typescript", "go", "rust", "c", "cpp", "java", "lua"])
def test_declarations_survive_broken_and_binary_text(language):
    for text in ("", "\x00\xff garbage {{{ ((( '''", "def f(:\n  {\n" * 50, "é" * 10_000):
        for d in declarations(language, text):
            assert isinstance(d.text, str) and d.text.endswith("\n")


def test_an_imported_file_changed_on_disk_is_read_again(tmp_path):
    write(tmp_path, {"lib.py": "def old(a):\n    return a\n", "main.py": "import lib\n"})
    assert chunks_for(tmp_path, "main.py", "python") == {"lib.py": "def old(a): ...\n"}
    assert chunks_for(tmp_path, "main.py", "python") == {"lib.py": "def old(a): ...\n"}  # from the cache
    (tmp_path / "lib.py").write_text("def renamed(a, b):\n    return a\n")
    assert chunks_for(tmp_path, "main.py", "python") == {"lib.py": "def renamed(a, b): ...\n"}


def test_the_servers_tree_is_used_and_a_long_document_is_read_from_its_head(tmp_path):
    from completer.syntax import parser_for

    write(tmp_path, {"lib.py": "def helper(a):\n    return a\n"})
    source = ("import lib\n\n" + "x = lib.helper(1)\n" * 10_000).encode()  # 180 KB, past HEAD_BYTES
    ws, path = Workspace(tmp_path), str(tmp_path / "main.py")
    expected = ["def helper(a): ...\n"]
    assert [c.text for c in import_definitions(ws, path, source, "python")] == expected
    tree = parser_for("python").parse(source)
    assert [c.text for c in import_definitions(ws, path, source, "python", tree=tree)] == expected


def test_deeply_nested_declarations_are_listed_a_few_levels_deep():
    java = "class A0 {\n" + "".join(f"class A{i} {{\n" for i in range(1, 3000)) + "}\n" * 3000
    [outer] = declarations("java", java)
    assert outer.text.splitlines()[:4] == ["class A0 {", "    class A1 {", "        class A2 {",
                                           "            class A3 { ... }"]
    c = "#ifdef A\n" * 2000 + "int f(void);\n" + "#endif\n" * 2000
    assert declarations("c", c) == []  # too deep to look into, and no error
