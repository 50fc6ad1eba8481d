"""Near-copies of held-out files (engine_builds/corpus_nearcopy.py): another version or a fork of a
held-out file in the training text is found by its distinctive lines and dropped by the builder;
boilerplate lines and the held-out project's own training files do not count."""

from engine_builds import corpus
from engine_builds.corpus_nearcopy import COMMON_FILES, Doc, near_copies, seen

HEADER = "".join(f"# Licensed under the Apache License, clause number {i} of the text\n" for i in range(12))


def module(name: str, n: int = 20) -> str:
    """A file of n distinctive lines (each long enough to count) for `name`."""
    return "".join(f"    result_{name}_{i} = compute_{name}(argument_{i}, option={i})\n" for i in range(n))


def another_version(text: str, changed: int) -> str:
    """The same file with its first `changed` lines edited, as a later release would have it."""
    lines = text.splitlines(keepends=True)
    return "".join(line.replace("compute_", "compute_v2_") for line in lines[:changed]) + "".join(lines[changed:])


HELD = Doc("leveldb", "leveldb/db/skiplist.h", HEADER + module("skiplist"))


def test_another_version_of_a_held_out_file_is_a_near_copy():
    training = [Doc("rocksdb", "memtable/skiplist.h", another_version(module("skiplist"), 8)),  # 12 of 20 kept
                Doc("rocksdb", "db/other.h", module("other")),
                Doc("snappy", "edited.h", another_version(module("skiplist"), 12))]  # 8 of 20: under half
    assert near_copies(training, [HELD]) == [0]


def test_a_fork_that_grew_still_near_copies():
    # Most of the held-out file is in it, though most of its own lines are new.
    grown = Doc("rocksdb", "include/slice.h", HEADER + another_version(module("skiplist"), 4) + module("grown", 60))
    assert near_copies([grown], [HELD]) == [0]
    assert near_copies([Doc("rocksdb", "x.h", module("skiplist", 8) + module("grown", 60))], [HELD]) == []


def test_shared_boilerplate_is_not_evidence_of_a_copy():
    # Every file carries the same license header: it occurs in more than COMMON_FILES training files,
    # so it is not distinctive, and files that share only it with the held-out file are kept.
    training = [Doc(f"project{i}", f"f{i}.h", HEADER + module(f"own{i}")) for i in range(COMMON_FILES + 1)]
    assert near_copies(training, [HELD]) == []
    # ... while a copy that carries the header too is still found by its other lines
    copy = Doc("rocksdb", "skiplist.h", HEADER + module("skiplist"))
    assert near_copies([*training, copy], [HELD]) == [len(training)]


def test_a_held_out_files_own_project_does_not_count():
    # E2 is the standard library's test split beside its train split: same project, not a copy.
    held = Doc("cpython-stdlib", "encodings/cp1255.py", module("codec"))
    training = [Doc("cpython-stdlib", "encodings/cp1252.py", another_version(module("codec"), 2)),
                Doc("setuptools", "_distutils/codec.py", module("codec"))]
    assert near_copies(training, [held]) == [1]
    found = seen([held], training)
    assert [(s.path, s.source, s.share) for s in found] == [("encodings/cp1255.py", "setuptools", 1.0)]
    assert seen([held], training[:1]) == []


def test_seen_reports_the_share_and_leaves_short_files_out():
    training = [Doc("rocksdb", "skiplist.h", another_version(module("skiplist"), 2))]
    tiny = Doc("leveldb", "tiny.h", module("skiplist", 3))  # under MIN_LINES distinctive lines: no verdict
    # 12 header lines are in no training file, 18 of the 20 code lines are: 18 of 32 distinctive lines
    assert [(s.path, s.lines, s.share) for s in seen([HELD, tiny], training)] == \
        [("leveldb/db/skiplist.h", 32, round(18 / 32, 3))]
    # with 5 lines changed, 15 of 32 is under COPY_SHARE
    assert seen([HELD], [Doc("rocksdb", "skiplist.h", another_version(module("skiplist"), 5))]) == []


def test_the_builder_drops_near_copies_of_held_out_files():
    held = {"name": "leveldb", "version": "1", "split": "e4"}
    fork = {"name": "rocksdb", "version": "7"}
    entries = [(held, {"path": "db/skiplist.h", "lang": "cpp", "text": module("skiplist"), "license": "BSD-3-Clause"}),
               (fork, {"path": "memtable/skiplist.h", "lang": "cpp", "text": another_version(module("skiplist"), 4),
                       "license": "BSD-3-Clause"}),
               (fork, {"path": "db/own.h", "lang": "cpp", "text": module("own"), "license": "BSD-3-Clause"})]
    kept, dropped = corpus.select_corpus(entries, seed=1, share=1.0)
    assert sorted(r["path"] for r in kept) == ["db/own.h", "db/skiplist.h"]
    assert dropped["rocksdb"]["near-heldout"] == 1


def test_suites_leave_out_the_seen_files_cut_for_cut(tmp_path):
    import gzip
    import json

    from engine_builds.line_cases import eval_suites, leave_out, seen_heldout

    stdlib = tmp_path / "stdlib.jsonl.gz"
    with gzip.open(stdlib, "wt") as f:
        for name in ("queue", "heapq", "bisect"):
            f.write(json.dumps({"path": f"{name}.py", "split": "test", "text": module(name)}) + "\n")
    whole, _ = eval_suites(stdlib, 30, "test")
    kept = leave_out(whole, {"e2": {"queue.py"}, "e3": {"queue.py"}})
    assert any(c.path == "queue.py" for c in whole["e2"])
    assert kept["e2"] == [c for c in whole["e2"] if c.path != "queue.py"]  # the same draw, those cuts out
    # The committed list: per suite of bench/quality.py, paths as its cuts name them (E4: project/path).
    listed = seen_heldout()
    assert set(listed) <= {"e2", "e3"} | {f"e4-{lang}" for lang in ("c", "cpp", "go", "java", "javascript", "lua",
                                                                 "rust", "typescript")}
    assert any(listed.values())
    assert all("/" in path for name, paths in listed.items() if name.startswith("e4-") for path in paths)
