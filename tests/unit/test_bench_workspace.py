"""The quality bench's workspaces (line_cases.workspace_contexts, bench/quality.py --workspace and
--imports): each case gets the context the language server would choose from other open files of
its project and from the files its document imports, never the case file itself nor another
project's files; and
pair_draft records a measured pairing that the engine reads back."""

import json

from completer.engines.torch.drafter import DraftChoice, choose_draft
from engine_builds.line_cases import Case, workspace_contexts
from tests.unit.test_bench_draft_acceptance import quality_module

HELPER = "def parse_header(line):\n    name, _, value = line.partition(':')\n    return name.strip(), value\n"
OTHER = "PAGES = [render_page(TITLE)]\n"


def pool_of(*files: tuple[str, str]) -> list[dict]:
    """A suite's files from (path, text) pairs, each in the project its path starts with."""
    return [{"project": path.split("/", 1)[0], "path": path, "text": text} for path, text in files]


def case(path: str, text: str) -> Case:
    lines = text.splitlines(keepends=True)
    return Case("indent", path, lines[:-1] + ["    "], len(lines) - 1, 4, lines[-1].strip())


def test_workspace_context_comes_from_the_cases_project_only():
    current = "def read(stream):\n    for line in stream:\n        name, value = parse_header(line)\n"
    pool = pool_of(("a/pkg/current.py", current), ("a/pkg/headers.py", HELPER), ("a/docs/pages.py", OTHER),
                   ("b/pkg/headers2.py", HELPER.replace("parse_header", "parse_header2")))
    c = case("a/pkg/current.py", current)
    [chosen], [files] = workspace_contexts([c], pool, open_files=4, budget_tokens=1536)
    assert sorted(path for path, _ in files) == ["a/docs/pages.py", "a/pkg/headers.py"]  # all of a's others, whole
    assert dict(files)["a/pkg/headers.py"] == HELPER
    paths = [path for path, _ in chosen]
    assert paths and all(p.startswith("a/") for p in paths)
    assert "a/pkg/current.py" not in paths  # the case file is the document, never its own context
    assert any("parse_header(line)" in text for _, text in chosen)  # shares names with the cursor's lines
    assert not any("render_page" in text for _, text in chosen)  # shares no name: not chosen
    # One file open, and the directory comes first: the neighbour in pkg/.
    [one], [one_file] = workspace_contexts([c], pool, open_files=1, budget_tokens=1536)
    assert [path for path, _ in one] == [path for path, _ in one_file] == ["a/pkg/headers.py"]
    assert workspace_contexts([c], pool, open_files=0, budget_tokens=1536) == ([()], [()])


def test_imports_come_from_the_files_the_document_imports_written_to_disk():
    current = "from .headers import parse_header\n\ndef read(stream):\n    for line in stream:\n        x = 1\n"
    pool = pool_of(("a/pkg/current.py", current), ("a/pkg/headers.py", HELPER), ("a/docs/pages.py", OTHER))
    c = case("a/pkg/current.py", current)
    [chosen], [files] = workspace_contexts([c], pool, open_files=0, budget_tokens=1536, imports=True)
    assert chosen == (("a/pkg/headers.py", "def parse_header(line): ...\n"),) and files == ()
    [chosen], [files] = workspace_contexts([c], pool, open_files=1, budget_tokens=1536, imports=True)
    assert chosen[0] == ("a/pkg/headers.py", "def parse_header(line): ...\n")  # first, then the open file's chunk
    assert [path for path, _ in files] == ["a/pkg/headers.py"]


def test_pair_draft_writes_what_the_engine_reads(tmp_path):
    q = quality_module()
    (tmp_path / "target").mkdir()
    (tmp_path / "draft").mkdir()
    (tmp_path / "target" / "completer.json").write_text(json.dumps({"languages": ["python"]}))
    q.pair_draft(tmp_path / "target", str(tmp_path / "draft"), 0.5312, "a test")
    notes = json.loads((tmp_path / "target" / "completer.json").read_text())
    assert notes["languages"] == ["python"]  # the rest of the notes stay
    assert notes["draft"] == {"model": "../draft", "acceptance": 0.531, "measured": "a test"}
    assert choose_draft(tmp_path / "target", None) == DraftChoice(str((tmp_path / "draft").resolve()), False, 0.531)
