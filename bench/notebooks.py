"""Completion in Jupyter notebooks: a cell alone against the notebook's code cells joined (what the
server does, lsp/notebooks.py), on real notebooks the models never saw.

    python bench/notebooks.py --model completer/models/embedded --cases 300

The notebooks are the example notebooks of pinned PyPI sdists, fetched once into data/notebooks/
(development time only; checked against their sha256): arch and linearmodels (NCSA license; neither
project is in the training corpus) and, as a second suite, statsmodels (BSD-3; its library's Python
sources are in the training corpus, its notebooks are not). Cuts are drawn as bench/quality.py's
(engine_builds/line_cases.py: a third at the indentation, mid-line and inside an identifier) in
code cells that have a code cell above them. Each cut is completed three ways, the same cut each
time, the file name the server would show (`NAME.py`):

    cell alone          the cell's text only (a client without notebook sync, or a server that
                        takes each cell for a file)
    joined (shipped)    the notebook's code cells in order, a blank line after each
    joined + markdown   the same with the markdown cells in between, as `# ` comments (not shipped:
                        measured to decide)

It prints exact match and edit similarity per cursor kind, as quality.py does (the gate off), and
ms per case; the same fields every run. `--per-key` prints instead what notebook sync adds to a
typed key in the server's handlers (the largest notebook of each suite, against its text as a file).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # engine_builds is not installed
sys.path.insert(0, str(ROOT / "bench"))

from completer.completion.pipeline import Completer, CompletionSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.lines import split_lines
from engine_builds.corpus_fetch import download
from engine_builds.line_cases import KINDS, Case, line_cases
from lsp.notebooks import Cell as NotebookCell
from lsp.notebooks import Notebook

DATA = ROOT / "data" / "notebooks"
# (suite, project, version, sdist URL, sha256): pinned as the corpus builder pins its sources.
SOURCES = [
    ("unseen", "arch", "7.2.0",
     ("https://files.pythonhosted.org/packages/a5/25/6d334de3338153d65a0f4939349a89c597f5e9c31dbbc4e3206e18f5295d/"
      "arch-7.2.0.tar.gz"),
     "2c6128174e0e3ab4c2cad527e78eb3fbce4a4f8ba53580bdf0d02566eb2e953d"),
    ("unseen", "linearmodels", "6.1",
     ("https://files.pythonhosted.org/packages/5d/29/5832251711d28242f17f76acce05071639f6ee08fa3178fb0cde5afaeb40/"
      "linearmodels-6.1.tar.gz"),
     "74ead48a054bc1b3ebec8e8d7187f17504058891b70c2e090372b4759eeb3e89"),
    ("statsmodels", "statsmodels", "0.14.4",
     ("https://files.pythonhosted.org/packages/1f/3b/963a015dd8ea17e10c7b0e2f14d7c4daec903baf60a017e756b57953a4bf/"
      "statsmodels-0.14.4.tar.gz"),
     "5d69e0f39060dc72c067f9bb6e8033b6dccdb0bae101d76a7ef0bcc94e898b67"),
]
ARMS = ("cell alone", "joined (shipped)", "joined + markdown")


@dataclass(frozen=True)
class Cell:
    kind: str  # "code" or "markdown"
    text: str


def fetch() -> dict[str, list[tuple[str, list[Cell]]]]:
    """suite -> [(notebook name, its cells)], from the pinned sdists (downloaded once)."""
    suites: dict[str, list[tuple[str, list[Cell]]]] = {}
    for suite, project, version, url, sha256 in SOURCES:
        archive = download(url, DATA / f"{project}-{version}.tar.gz", sha256, f"{project} {version}")
        with tarfile.open(archive) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not member.name.endswith(".ipynb") or "/.ipynb_checkpoints/" in member.name:
                    continue
                cells = notebook_cells(json.load(tar.extractfile(member)))
                if cells:
                    suites.setdefault(suite, []).append((member.name, cells))
    return suites


def notebook_cells(notebook: dict) -> list[Cell]:
    """The code and markdown cells of a Python notebook (nbformat 4); [] for another language."""
    language = (notebook.get("metadata", {}).get("kernelspec", {}).get("language")
                or notebook.get("metadata", {}).get("language_info", {}).get("name") or "python")
    if language.lower() != "python":
        return []
    cells = []
    for cell in notebook.get("cells", []):
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") in ("code", "markdown") and text.strip():
            cells.append(Cell(cell["cell_type"], text))
    return cells


def as_comment(text: str) -> str:
    return "".join("# " + line if line.strip() else "#\n" for line in split_lines(text) if line) or "#"


def joined(cells: list[Cell], at: int, cut: str, markdown: bool) -> tuple[list[str], int]:
    """The document the server makes of the notebook (lsp/notebooks.py's Notebook), with cell `at`
    replaced by `cut`, and the line cell `at` starts on; markdown cells in it as comments if asked."""
    notebook = Notebook("file:///bench.ipynb", language_id="python")
    for i, cell in enumerate(cells):
        if cell.kind == "markdown" and not markdown:
            continue
        text = cut if i == at else (cell.text if cell.kind == "code" else as_comment(cell.text))
        notebook.cells.append(NotebookCell(f"cell:{i}", "python", split_lines(text)))
    first, _ = notebook.place(f"cell:{at}")
    return split_lines(notebook.joined_text()), first


def cases_for(notebooks: list[tuple[str, list[Cell]]], n: int, seed: int) -> dict[str, list[Case]]:
    """n cuts per arm, the same cuts in each: in code cells with a code cell above them."""
    files, where = [], {}
    for name, cells in notebooks:
        stem = Path(name).stem.replace(" ", "_")
        code_seen = 0
        for i, cell in enumerate(cells):
            if cell.kind != "code":
                continue
            if code_seen:
                path = f"{stem}-cell{i}.py"
                files.append({"path": path, "text": cell.text})
                where[path] = (stem, cells, i)
            code_seen += 1
    alone = line_cases(files, n, seed)
    arms = {ARMS[0]: [], ARMS[1]: [], ARMS[2]: []}
    for case in alone:
        stem, cells, i = where[case.path]
        cut = "".join(case.lines)
        arms[ARMS[0]].append(replace(case, path=f"{stem}.py"))
        for arm, markdown in ((ARMS[1], False), (ARMS[2], True)):
            lines, first = joined(cells, i, cut, markdown)
            arms[arm].append(replace(case, path=f"{stem}.py", lines=lines, line=first + case.line))
    return arms


def per_key(notebooks: list[tuple[str, list[Cell]]], keys: int = 400) -> dict[str, float]:
    """Median microseconds the server's handler takes for one typed character, in process: into the
    last code cell of the largest notebook (notebookDocument/didChange, the joined document kept),
    and into the same text opened as a file (textDocument/didChange). No model, no request: the
    cost sync adds to a key."""
    import statistics
    import time

    from lsprotocol import types

    from lsp.server import create_server

    _, cells = max(notebooks, key=lambda nb: sum(len(c.text) for c in nb[1] if c.kind == "code"))
    code = [c.text for c in cells if c.kind == "code"]
    typed = "result = model.fit(cov_type='HC1', disp=False)\n" * (keys // 48 + 1)
    out = {"cells": len(code), "chars": sum(map(len, code))}
    for arm in ("notebook", "file"):
        server = create_server()
        cell_uris = [f"vscode-notebook-cell:/bench.ipynb#{i}" for i in range(len(code))]
        if arm == "notebook":
            list(server.protocol.lsp_notebook_document__did_open(types.DidOpenNotebookDocumentParams(
                notebook_document=types.NotebookDocument(uri="file:///bench.ipynb", notebook_type="jupyter-notebook",
                                                         version=1, cells=[types.NotebookCell(kind=2, document=u)
                                                                           for u in cell_uris]),
                cell_text_documents=[types.TextDocumentItem(uri=u, language_id="python", version=1, text=t)
                                     for u, t in zip(cell_uris, code)])))
        else:
            list(server.protocol.lsp_text_document__did_open(types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri="file:///bench.py", language_id="python", version=1,
                                                     text="".join(t + "\n\n" for t in code)))))
        lines = split_lines(code[-1] + "\n" if arm == "notebook" else "".join(t + "\n\n" for t in code))
        line, col = len(lines) - (1 if arm == "notebook" else 2), 0
        spent = []
        for version, ch in enumerate(typed[:keys], start=2):
            change = types.TextDocumentContentChangePartial(range=types.Range(
                start=types.Position(line=line, character=col), end=types.Position(line=line, character=col)), text=ch)
            t0 = time.perf_counter()
            if arm == "notebook":
                list(server.protocol.lsp_notebook_document__did_change(types.DidChangeNotebookDocumentParams(
                    notebook_document=types.VersionedNotebookDocumentIdentifier(uri="file:///bench.ipynb",
                                                                                version=version),
                    change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(text_content=[
                        types.NotebookDocumentCellContentChanges(document=types.VersionedTextDocumentIdentifier(
                            uri=cell_uris[-1], version=version), changes=[change])])))))
            else:
                list(server.protocol.lsp_text_document__did_change(types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri="file:///bench.py", version=version),
                    content_changes=[change])))
            spent.append((time.perf_counter() - t0) * 1e6)
            line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
        out[arm] = statistics.median(spent)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "completer" / "models" / "embedded"))
    ap.add_argument("--cases", type=int, default=300, help="cuts per suite (a third per cursor kind)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-key", action="store_true", help="only the sync cost of a typed key, notebook against file")
    args = ap.parse_args()
    from quality import run_model, summarize  # bench/quality.py

    suites = fetch()
    if args.per_key:
        for suite, notebooks in suites.items():
            r = per_key(notebooks)
            print(f"{suite}: largest notebook, {r['cells']} code cells, {r['chars']:,} characters: a key's sync "
                  f"{r['notebook']:.1f} us into its last cell, {r['file']:.1f} us into the same text as a file (medians)")
        return
    engine = load_engine(EngineOptions(model=args.model, device=args.device))
    completer = Completer(engine, CompletionSettings(multiline=False, deadline_ms=10_000, min_confidence=0.0))
    print(f"machine: {platform.machine()}; model {Path(args.model).name}; "
          + "; ".join(f"{s}: {len(nbs)} notebooks" for s, nbs in suites.items()))
    for suite, notebooks in suites.items():
        arms = cases_for(notebooks, args.cases, args.seed)
        print(f"\n{suite} ({len(arms[ARMS[0]])} cuts)\n{'arm':<22}"
              + "".join(f"{k + ' EM':>11}{'ES':>6}" for k in (*KINDS, "all")) + f"{'ms/case':>9}")
        for arm, cases in arms.items():
            res = run_model(completer, cases)
            s = summarize(res["rows"])
            print(f"{arm:<22}" + "".join(f"{s[k]['em']:>11.1f}{s[k]['es']:>6.1f}" for k in (*KINDS, "all"))
                  + f"{res['ms_per_case']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
