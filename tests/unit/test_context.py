"""Cross-file context: privacy rules, ranking, de-duplication, budget, import definitions."""

from completer.completion.context import ContextRing, Workspace
from completer.completion.imports import import_definitions


def python_import_definitions(workspace, path, source):
    return import_definitions(workspace, path, source, "python")


def make_workspace(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "build").mkdir()
    (root / ".gitignore").write_text("build/\n*.log\n/local_only.py\n!keep.log\n")
    (root / "pkg" / ".gitignore").write_text("generated_*.py\n")
    (root / "pkg" / "models.py").write_text(
        "import dataclasses\n\n\n@dataclasses.dataclass\nclass Order:\n    total: float\n\n"
        "    def discounted(self, rate: float) -> float:\n        return self.total * (1 - rate)\n\n\n"
        "def load_orders(path):\n    with open(path) as f:\n        return [Order(float(x)) for x in f]\n")
    (root / "pkg" / "__init__.py").write_text("")
    return root


def test_privacy_rules(tmp_path):
    root = make_workspace(tmp_path)
    ws = Workspace(root)
    assert ws.relative(root / "pkg" / "models.py") == "pkg/models.py"
    assert ws.relative(tmp_path / "elsewhere.py") is None  # outside the workspace
    assert ws.relative(root / "build" / "out.py") is None  # ignored directory
    assert ws.relative(root / "app.log") is None and ws.relative(root / "keep.log") == "keep.log"
    assert ws.relative(root / "local_only.py") is None and ws.relative(root / "pkg" / "local_only.py")
    assert ws.relative(root / "pkg" / "generated_api.py") is None  # nested .gitignore
    for secret in (".env", ".env.production", "id_rsa", "server.pem", "aws_credentials.json", "api.key"):
        assert ws.relative(root / secret) is None, secret
    assert ws.relative(root / ".git" / "config") is None
    assert Workspace(None).relative(root / "pkg" / "models.py") is None


def test_ring_ranks_by_shared_identifiers_and_respects_the_budget(tmp_path):
    root = make_workspace(tmp_path)
    ring = ContextRing(Workspace(root), max_files=2, chunk_lines=3)
    ring.note(str(root / "a.py"), "def parse_invoice(raw):\n    return raw.split()\n")
    ring.note(str(root / "b.py"), "def render_page(template):\n    return template.format()\n")
    ring.note(str(root / ".env"), "SECRET=1\n")  # never used
    chosen = ring.select(str(root / "main.py"), "invoice = parse_invoice(raw)", "", budget_chars=1000)
    assert chosen[0][0] == "a.py" and all(path != ".env" for path, _ in chosen)
    assert ring.select(str(root / "main.py"), "invoice = parse_invoice(raw)", "", budget_chars=10) == ()
    # already visible in the local window: not repeated
    window = "def parse_invoice(raw):\n    return raw.split()\n"
    assert all(p != "a.py" for p, _ in ring.select(str(root / "main.py"), "parse_invoice", window, 1000))
    ring.note(str(root / "c.py"), "x = 1\n")  # max_files=2: the oldest file leaves the ring
    assert "a.py" not in ring.files
    assert ring.select(str(root / "a.py"), "anything", "", 1000) == ring.select(str(root / "a.py"), "anything", "", 1000)


def test_ring_offers_the_other_files_whole_for_copies_most_recent_first(tmp_path):
    root = make_workspace(tmp_path)
    ring = ContextRing(Workspace(root), max_files=3, chunk_lines=2)
    for name in ("a.py", "b.py", "c.py"):
        ring.note(str(root / name), f"def {name[0]}():\n    return 1\n\n\n\n    x = {name[0]}()\n")
    ring.note(str(root / ".env"), "SECRET=1\n")  # never a source
    files = ring.open_files(str(root / "b.py"))
    assert [path for path, _ in files] == ["c.py", "a.py"]  # not the current file; newest first
    assert files[0][1] == "def c():\n    return 1\n\n    x = c()\n"  # whole, less its blank chunks
    ring.note(str(root / "d.py"), "pass\n")  # the ring keeps 3: a.py leaves
    assert [path for path, _ in ring.open_files(str(root / "b.py"))] == ["d.py", "c.py"]


def test_python_import_definitions(tmp_path):
    root = make_workspace(tmp_path)
    main = root / "main.py"
    src = b"import os\nfrom pkg.models import Order, load_orders\n\norders = load_orders('x')\n"
    main.write_bytes(src)
    chunks = python_import_definitions(Workspace(root), str(main), src)
    assert [c.path for c in chunks] == ["pkg/models.py"]
    assert chunks[0].text == ("@dataclasses.dataclass\nclass Order:\n    total: float\n"
                              "    def discounted(self, rate: float) -> float: ...\ndef load_orders(path): ...\n")


# -- issue 24: findings 10 and 15 -------------------------------------------------------------------

def test_more_secret_files_are_never_context(tmp_path):
    from completer.completion.context import looks_secret

    root = make_workspace(tmp_path)
    ws = Workspace(root)
    for secret in (".envrc", "id_ecdsa", "id_ecdsa.pub", "id_dsa", ".npmrc", ".pgpass", "prod.tfvars",
                   "prod.auto.tfvars.json", ".htpasswd", "kubeconfig", "dev.kubeconfig", ".kube/config"):
        (root / secret).parent.mkdir(parents=True, exist_ok=True)
        assert ws.relative(root / secret) is None, secret
        assert looks_secret(root / secret), secret
    assert ws.relative(root / "pkg" / "config.py") == "pkg/config.py" and not looks_secret("src/config")


def test_a_changed_gitignore_is_read_again(tmp_path):
    import os

    root = make_workspace(tmp_path)
    ws = Workspace(root)
    assert ws.relative(root / "notes.md") == "notes.md"
    gitignore = root / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "notes.md\n")
    st = gitignore.stat()
    os.utime(gitignore, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a later edit, whatever the clock
    assert ws.relative(root / "notes.md") is None
    gitignore.unlink()
    assert ws.relative(root / "notes.md") == "notes.md" and ws.relative(root / "app.log") == "app.log"


def test_imported_modules_over_the_size_limit_are_not_read(tmp_path, monkeypatch):
    from completer.completion import context

    root = make_workspace(tmp_path)
    (root / "huge.py").write_text("def generated(): ...\n" + "x = 1\n" * 200_000)  # ~1.2 MB, generated
    main = root / "main.py"
    src = b"import huge\nfrom pkg.models import Order\n"
    main.write_bytes(src)
    read = []
    original = type(root).read_text
    monkeypatch.setattr(type(root), "read_text", lambda self, *a, **k: read.append(self.name) or original(self, *a, **k))
    chunks = python_import_definitions(Workspace(root), str(main), src)
    assert [c.path for c in chunks] == ["pkg/models.py"] and "huge.py" not in read
    assert (root / "huge.py").stat().st_size > context.MAX_FILE_BYTES


def test_several_folders_each_under_its_name_and_rules(tmp_path):
    api, web = tmp_path / "api", tmp_path / "web"
    (api / "private").mkdir(parents=True)
    (web / "private").mkdir(parents=True)
    (web / ".gitignore").write_text("private/\n")
    nested = web / "libs" / "api"  # a folder inside another, named like the first one
    nested.mkdir(parents=True)
    ws = Workspace([api, web, nested])
    assert ws.relative(api / "main.py") == "api/main.py"
    assert ws.relative(api / "private" / "a.py") == "api/private/a.py"  # api's rules do not hide it
    assert ws.relative(web / "private" / "a.py") is None  # web's do
    assert ws.relative(nested / "x.py") == "api-2/x.py"  # the innermost folder, its name made unique
    assert ws.folder_of(nested / "x.py") == nested.resolve() and ws.folder_of(tmp_path / "x.py") is None
    (web / ".gitignore").write_text("libs/\n")
    assert ws.relative(nested / "x.py") is None  # the outer folder's rules hold inside the inner one
    assert Workspace([api]).relative(api / "main.py") == "main.py"  # one folder: paths as always
    assert Workspace([]).relative(api / "main.py") is None


def test_the_ring_follows_the_folders(tmp_path):
    api, web = tmp_path / "api", tmp_path / "web"
    api.mkdir()
    web.mkdir()
    ring = ContextRing(Workspace([api]), max_files=2)
    ring.note(str(api / "a.py"), "def a():\n    return 1\n")
    ring.note(str(web / "b.py"), "def b():\n    return 2\n")  # not in the workspace yet
    assert list(ring.files) == ["a.py"]
    assert ring.set_workspace(Workspace([api, web])) == set()
    ring.note(str(web / "b.py"), "def b():\n    return 2\n")
    assert list(ring.files) == ["api/a.py", "web/b.py"]
    assert [c.path for c in ring.files["api/a.py"]] == ["api/a.py"]  # the chunks show the new path
    ring.note(str(web / "c.py"), "def c():\n    return 3\n")  # max_files=2: api/a.py leaves
    assert list(ring.sources) == ["web/b.py", "web/c.py"]
    assert ring.set_workspace(Workspace([api])) == {"web/b.py", "web/c.py"}
    assert list(ring.files) == [] and ring.sources == {}


def test_imports_are_found_in_the_folder_of_the_file(tmp_path):
    api, web = tmp_path / "api", tmp_path / "web"
    for folder, name in ((api, "api_models"), (web, "web_models")):
        folder.mkdir()
        (folder / "models.py").write_text(f"def {name}(x):\n    return x\n")
    ws = Workspace([api, web])
    source = b"import models\n"
    assert "def web_models(x)" in python_import_definitions(ws, str(web / "main.py"), source)[0].text
    assert "def api_models(x)" in python_import_definitions(ws, str(api / "main.py"), source)[0].text


def test_the_ring_lets_go_of_files_that_became_ignored(tmp_path):
    import os

    root = make_workspace(tmp_path)
    ring = ContextRing(Workspace(root))
    ring.note(str(root / "notes.md"), "remember to rotate the keys\n")
    ring.note(str(root / "a.py"), "def a():\n    return 1\n")
    assert list(ring.files) == ["notes.md", "a.py"]
    gitignore = root / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "notes.md\n")
    st = gitignore.stat()
    os.utime(gitignore, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ring.prune()
    assert list(ring.files) == ["a.py"] and list(ring.sources) == ["a.py"]
    ring.note(str(root / "a.py"), "x" * 2_000_000)  # grew past the size limit: let go of too
    assert ring.files == {} and ring.select(str(root / "main.py"), "rotate keys a", "", 1000) == ()


def test_forgetting_a_file_or_a_directory(tmp_path):
    root = make_workspace(tmp_path)
    ring = ContextRing(Workspace(root))
    for rel in ("pkg/a.py", "pkg/b.py", "pkgs.py", "c.py"):
        ring.note(str(root / rel), f"# {rel}\n")
    assert ring.forget(str(root / "c.py")) == {"c.py"}
    assert ring.forget(str(root / "pkg")) == {"pkg/a.py", "pkg/b.py"}  # not pkgs.py: a directory's files only
    assert list(ring.files) == ["pkgs.py"] and ring.forget(str(root / "c.py")) == set()
