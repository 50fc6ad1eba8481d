"""bench/notebooks.py on strings: which cells a notebook gives, and that each cut is the same cut in
every arm, placed where the server would place its cell."""

from completer.lines import split_lines
from tests.conftest import bench_module

notebooks = bench_module("notebooks")

NOTEBOOK = {"metadata": {"kernelspec": {"language": "python"}}, "cells": [
    {"cell_type": "markdown", "source": ["# Data\n", "Load it."]},
    {"cell_type": "code", "source": ["import pandas as pd\n", "frame = pd.read_csv('a.csv')"]},
    {"cell_type": "code", "source": ""},
    {"cell_type": "raw", "source": "ignored"},
    {"cell_type": "markdown", "source": "Totals per region:"},
    {"cell_type": "code", "source": "totals = frame.groupby('region').sum()\nprint(totals.head(10))\n"},
]}


def test_the_code_and_markdown_cells_of_a_python_notebook():
    cells = notebooks.notebook_cells(NOTEBOOK)
    assert [c.kind for c in cells] == ["markdown", "code", "markdown", "code"]
    assert cells[1].text == "import pandas as pd\nframe = pd.read_csv('a.csv')"
    assert notebooks.notebook_cells({"metadata": {"kernelspec": {"language": "julia"}}, "cells": []}) == []


def test_each_cut_is_the_same_in_every_arm():
    cells = notebooks.notebook_cells(NOTEBOOK)
    arms = notebooks.cases_for([("ex/analysis.ipynb", cells)], 30, seed=3)
    alone, shipped, with_markdown = (arms[arm] for arm in notebooks.ARMS)
    assert len(alone) == len(shipped) == len(with_markdown) == 30
    for a, b, c in zip(alone, shipped, with_markdown):
        assert a.path == b.path == "analysis.py"
        assert a.target == b.target == c.target
        # only the last code cell has a code cell above it: its lines, where the joined document has them
        assert a.lines[a.line].rstrip("\n") + a.target in ("totals = frame.groupby('region').sum()",
                                                            "print(totals.head(10))")
        assert b.lines[b.line] == a.lines[a.line] and c.lines[c.line] == a.lines[a.line]
        assert "".join(b.lines).startswith("import pandas as pd\nframe = pd.read_csv('a.csv')\n\n")
        assert "# Totals per region:\n" in "".join(c.lines) and "Totals" not in "".join(b.lines)


def test_markdown_as_comments():
    assert notebooks.as_comment("# Data\n\nLoad it.") == "# # Data\n#\n# Load it."
    assert split_lines(notebooks.as_comment("a\nb"))[1] == "# b"
