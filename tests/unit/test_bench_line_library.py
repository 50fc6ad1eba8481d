"""bench/line_library.py: the key is the non-blank lines above, and the followers of a key are
counted across the training text's files, each file on its own."""

import json

from tests.conftest import bench_module


def test_the_key_skips_blank_lines_and_reads_top_down():
    m = bench_module("line_library")
    lines = ["import os\n", "\n", "def f():\n", "    x = 1\n", "   \n", "    \n"]
    assert m.key_above(lines, 5, 1) == ("x = 1",)
    assert m.key_above(lines, 5, 2) == ("def f():", "x = 1")
    assert m.key_above(lines, 0, 2) == ()


def test_followers_are_counted_per_key_width_and_never_across_files(tmp_path):
    m = bench_module("line_library")
    train = tmp_path / "train-python.jsonl"
    texts = ["import os\nimport sys\n\nimport re\n", "import os\nimport sys\n", "import sys\nimport os\n"]
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    keys = {("import os",), ("import os", "import sys"), ("import re",)}
    after, anywhere = m.followers(train, keys, {"import re", "import json"})
    assert after[("import os",)] == {"import sys": 2}  # the third file's "import os" ends it
    assert after[("import os", "import sys")] == {"import re": 1}  # the blank line between does not count
    assert ("import re",) not in after  # the last line of a file is followed by nothing
    assert anywhere == {"import re": 1}
