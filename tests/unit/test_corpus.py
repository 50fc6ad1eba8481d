"""The corpus builder (engine_builds/corpus*.py), offline and fast: license classification, file
filters, dedup and hold-outs by project, per-project caps, archive reading, token shards, and the
pack/unpack round trip on a tiny in-memory corpus."""

import io
import json
import random
import tarfile

import numpy as np
import pytest

from engine_builds import corpus
from engine_builds import corpus_filters as flt
from engine_builds import corpus_license as lic
from engine_builds.corpus_archive import ar_members, iter_archive
from engine_builds.corpus_pack import pack, unpack
from engine_builds.corpus_shards import Shard, write_shard
from engine_builds.prepare_data import split_of

MIT = """MIT License\n\nCopyright (c) 2020 Someone\n\nPermission is hereby granted, free of charge, to any person
obtaining a copy of this software ... The above copyright notice and this permission notice shall be included
in all copies or substantial portions of the Software."""
BSD3 = """Redistribution and use in source and binary forms, with or without modification, are permitted provided
that ... 3. Neither the name of the copyright holder nor the names of its contributors may be used to endorse"""
BSD2 = """Redistribution and use in source and binary forms, with or without modification, are permitted provided
that the following conditions are met: 1. ... 2. ..."""
GPL = "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007 ... the GNU General Public License is a free license"
APACHE = "Apache License\n Version 2.0, January 2004\n http://www.apache.org/licenses/"


# ---- licenses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr,want", [
    ("MIT", "MIT"), ("Expat", "MIT"), ("BSD-3-clause", "BSD-3-Clause"), ("Apache 2.0", "Apache-2.0"),
    ("MIT OR Apache-2.0", "MIT"), ("MIT/Apache-2.0", "MIT"), ("GPL-2.0-or-later OR Apache-2.0", "Apache-2.0"),
    ("Apache-2.0 OR GPL-2.0-only", "Apache-2.0"), ("PSF-2.0", "PSF-2.0"), ("ISC License (ISCL)", "ISC"),
    ("Unlicense OR MIT", "Unlicense"), ("The Apache Software License, Version 2.0", "Apache-2.0"),
    ("Apache Software License - Version 2.0", "Apache-2.0"), ("0BSD", "0BSD"), ("MIT AND Apache-2.0", "MIT AND Apache-2.0"),
    ("GPL-3.0", None), ("LGPL-2.1+", None), ("MPL-2.0", None), ("public-domain", None), ("Zlib", None),
    ("MIT AND GPL-2.0", None), ("Apache-2.0 WITH LLVM-exception", None), ("", None), ("UNKNOWN", None),
])
def test_accepted_expressions(expr, want):
    assert lic.accepted(expr) == want


def test_classify_license_texts():
    assert lic.classify_text(MIT) == ({"MIT"}, set())
    assert lic.classify_text(BSD3)[0] == {"BSD-3-Clause"}  # not also BSD-2-Clause
    assert lic.classify_text(BSD2)[0] == {"BSD-2-Clause"}
    assert lic.classify_text(APACHE)[0] == {"Apache-2.0"}
    found, refused = lic.classify_text(GPL)
    assert not found and refused == {"GPL"}
    assert lic.is_license_file("LICENSE") and lic.is_license_file("COPYING.txt") and lic.is_license_file("LICENSE-MIT")
    assert not lic.is_license_file("README.md") and not lic.is_license_file("src/main.py")


def test_header_verdict_drops_gpl_files_inside_permissive_projects():
    assert lic.header_verdict("// SPDX-License-Identifier: GPL-2.0\nint x;\n").startswith("license-header")
    assert lic.header_verdict("// SPDX-License-Identifier: MIT OR GPL-2.0\nint x;\n") is None
    assert lic.header_verdict("/* This program is under the GNU General Public License v2 */\n").startswith(
        "license-header")
    assert lic.header_verdict("# plain code\nx = 1\n") is None
    dual = ("// made available under the terms of the Eclipse Public License v1.0 and Apache License v2.0\n"
            "// You may elect to redistribute this code under either of these licenses.\n")
    assert lic.header_verdict(dual) is None
    assert lic.header_verdict("/* This file is under the Mozilla Public License 2.0 */\n").startswith("license-header")


def test_header_verdict_is_not_fooled_by_the_gnu_notices_own_version_choice():
    """An MIT port of LGPL code: the GNU notice's "either version 2 ... or (at your option) any later
    version" is no choice of a permissive license."""
    port = ("-- Copyright (c) 2020 Someone. Licensed under the MIT license.\n"
            "-- This is a port of an older demo, licensed as (LGPL):\n"
            "--  This library is free software; you can redistribute it and/or modify it under the terms\n"
            "--  of the GNU Library General Public License as published by the Free Software Foundation;\n"
            "--  either version 2 of the License, or (at your option) any later version.\n")
    assert lic.header_verdict(port) == "license-header:LGPL"
    lua_comments = ("-- Licensed under the MIT license. You can redistribute it and/or modify it under the\n"
                    "-- terms of the GNU Library General Public\n--  License, either version 2 of the License,\n"
                    "--  or (at your option) any later version.\n")
    assert lic.header_verdict(lua_comments) == "license-header:LGPL"  # the phrase spans two -- lines
    named_only = '"""\nAdapted from another project; there, this file is licensed under the LGPL\n"""\n'
    assert lic.header_verdict(named_only) == "license-header:LGPL"
    dual_gpl = ("/* You may use this file under either the MIT license or the GNU General Public License,\n"
                " * either version 2 of the License, or (at your option) any later version. */\n")
    assert lic.header_verdict(dual_gpl) is None


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: Expat

Files: contrib/gpl/*
Copyright: 2019 Other
License: GPL-2+

Files: debian/*
License: GPL-2+

License: Expat
 Permission is hereby granted...
"""


def test_dep5_main_and_per_file_licenses():
    d = lic.parse_dep5(DEP5)
    assert d.main == "Expat"
    assert lic.dep5_file_license(d, "src/a.c") == "MIT"
    assert lic.dep5_file_license(d, "contrib/gpl/x/b.c") is None
    assert lic.parse_dep5("This package is copyright ... see /usr/share/common-licenses/GPL") is None


def test_check_license_needs_evidence_for_the_declared_option():
    src = {"name": "p", "license": "MIT OR Apache-2.0"}
    ok = corpus.check_license(src, {"LICENSE-APACHE": APACHE}, [], None)
    assert ok["ok"] and ok["license"] == "Apache-2.0" and "LICENSE-APACHE" in ok["how"]
    assert not corpus.check_license({"name": "p", "license": "MIT"}, {"LICENSE": BSD3}, [], None)["ok"]
    assert not corpus.check_license({"name": "p", "license": "MIT"}, {"LICENSE": MIT},
                                    [("PKG-INFO", "GPL-3.0")], None)["ok"]
    assert corpus.check_license({"name": "p", "license": "MIT"}, {}, [("package.json", "MIT")], None)["ok"]
    gpl_main = lic.parse_dep5(DEP5.replace("License: Expat\n\nFiles: contrib", "License: GPL-3\n\nFiles: contrib", 1))
    assert not corpus.check_license({"name": "p", "license": "MIT"}, {"LICENSE": MIT}, [], gpl_main)["ok"]
    assert not corpus.check_license({"name": "p", "license": "GPL-3.0"}, {"COPYING": GPL}, [], None)["ok"]


# ---- filters ------------------------------------------------------------------------------------------

CODE = "def f(x):\n    return x + 1\n\n\nclass A:\n    def g(self):\n        return f(2) * 3\n" * 3


def test_language_of_paths():
    assert flt.language_of("a/b.py") == "python" and flt.language_of("x.d.ts") == "typescript"
    assert flt.language_of("x.tsx") == "typescript" and flt.language_of("x.h") == "c"
    assert flt.language_of("x.hpp") == "cpp" and flt.language_of("x.lua") == "lua"
    assert flt.language_of("README.md") is None
    assert flt.header_language(["a.cc", "b.cc", "x.h", "c.c"]) == "cpp"
    assert flt.header_language(["a.c", "x.h"]) == "c"


@pytest.mark.parametrize("path,reason", [
    ("pkg/_vendor/six.py", "vendored"), ("third_party/x/y.c", "vendored"), ("node_modules/a/index.js", "vendored"),
    ("vendored-meson/a.c", "vendored"), ("doc/_static/jquery.js", "vendored"),
    ("tests/fixtures/a.py", "fixture"), ("go/src/x/testdata/a.go", "fixture"),
    ("dist/app.min.js", "minified"), ("umd/react.js", "bundle"), ("api/x.pb.go", "generated"),
    ("unix/zsyscall_linux.go", "generated"), ("src/core/module.py", None),
])
def test_path_reasons(path, reason):
    assert flt.path_reason(path) == reason


def test_text_reasons():
    assert flt.text_reason(CODE, "python") is None
    assert flt.text_reason("var a=" + "1," * 2000 + "2;\n", "javascript") == "long-lines"
    assert flt.text_reason("// Code generated by protoc-gen-go. DO NOT EDIT.\n" + CODE, "go") == "generated"
    assert flt.text_reason("# This file was automatically generated\n" + CODE, "python") == "generated"
    assert flt.text_reason("x = 1\n", "python") == "tiny"
    assert flt.text_reason(CODE + "def broken(:\n", "python") == "python-syntax"
    assert flt.text_reason("t = [\n" + "    1234567, 7654321, 99999999, 1111111,\n" * 300 + "]\n", "python") == "data-table"
    assert flt.text_reason("x" * 250_000, "c") == "too-large"
    assert flt.text_reason(";".join(["a=b"] * 30) + "\n" + ";".join(["c=d"] * 30), "javascript") == "minified"
    assert flt.decode(b"\xef\xbb\xbfa\r\nb") == "a\nb" and flt.decode(b"\xff\xfe") is None


def test_hashes_catch_whitespace_only_copies():
    assert flt.near_hash("a = 1\n  b = 2\n") == flt.near_hash("a = 1\r\n\tb = 2")
    assert flt.content_hash("a") != flt.content_hash("a ")


def test_cap_sizes_limits_every_project_share():
    sizes = {f"p{i}": 10 for i in range(20)} | {"big": 1000, "mid": 100}
    lim = flt.cap_sizes(sizes, 0.12)
    total = sum(lim.values())
    assert max(lim.values()) <= 0.12 * total + 1
    assert lim["p0"] == 10  # small projects keep everything
    assert flt.cap_sizes({"a": 5, "b": 7}, 0.12) == {"a": 5, "b": 7}  # too few projects to cap
    few = flt.cap_sizes({"a": 1000, "b": 10, "c": 10}, 0.12)  # share relaxed to 1.5 / 3
    assert few["a"] <= 0.5 * sum(few.values()) + 1


# ---- splits, hold-outs and dedup ----------------------------------------------------------------------

def _entries():
    e3 = {"name": "attrs", "version": "1", "split": "e3"}
    e4 = {"name": "go-heldout", "version": "1", "split": "e4"}
    a = {"name": "proj-a", "version": "1"}
    b = {"name": "proj-b", "version": "2"}
    stdlib = {"name": "cpython-stdlib", "version": "3.11"}
    code = lambda n: CODE + f"\nVALUE_{n} = {n}\n"
    return [
        (stdlib, {"path": "os.py", "lang": "python", "text": code(0), "license": "PSF-2.0", "split": "e2"}),
        (e3, {"path": "attr/_make.py", "lang": "python", "text": code(1), "license": "MIT"}),
        (e4, {"path": "main.go", "lang": "go", "text": "package main\n" + code(2), "license": "MIT"}),
        (a, {"path": "copy_of_attrs.py", "lang": "python", "text": code(1), "license": "MIT"}),
        (a, {"path": "copy_of_os_reindented.py", "lang": "python", "text": code(0).replace("    ", "\t"),
             "license": "MIT"}),
        (a, {"path": "own.py", "lang": "python", "text": code(3), "license": "MIT"}),
        (b, {"path": "dup_of_own.py", "lang": "python", "text": code(3), "license": "MIT"}),
        (b, {"path": "other.py", "lang": "python", "text": code(4), "license": "MIT"}),
    ]


def test_holdouts_by_project_and_dedup():
    kept, dropped = corpus.select_corpus(_entries(), seed=1234, share=1.0)
    by_path = {r["path"]: r for r in kept}
    assert by_path["os.py"]["split"] == "e2"
    assert by_path["attr/_make.py"]["split"] == "e3"
    assert by_path["main.go"]["split"] == "e4"
    # training copies of held-out files go, exact or whitespace-only different
    assert "copy_of_attrs.py" not in by_path and "copy_of_os_reindented.py" not in by_path
    assert dropped["proj-a"]["dup-heldout"] == 2
    # the first training copy wins
    assert "own.py" in by_path and "dup_of_own.py" not in by_path and dropped["proj-b"]["duplicate"] == 1
    assert {by_path["own.py"]["split"], by_path["other.py"]["split"]} <= {"train", "val"}
    assert by_path["own.py"]["project"] == "proj-a" and by_path["own.py"]["sha256"] == flt.content_hash(CODE + "\nVALUE_3 = 3\n")


def test_training_split_is_by_file_hash_and_stable():
    splits = [flt.training_split(1234, "proj", f"m{i}.py") for i in range(4000)]
    assert splits == [flt.training_split(1234, "proj", f"m{i}.py") for i in range(4000)]
    assert 0.005 < splits.count("val") / len(splits) < 0.02
    # the standard library keeps prepare_data.py's split (seed 1234): E2 stays the same files
    rec = {"path": "json/decoder.py", "split": "e2" if split_of("json/decoder.py", 1234) == "test" else "train"}
    assert corpus.assign_split({"name": "cpython-stdlib"}, dict(rec), 1234) == rec["split"]
    assert corpus.assign_split({"name": "x", "split": "e4"}, {"path": "a.go"}, 1234) == "e4"


def test_project_cap_drops_files_of_the_dominant_project():
    big = {"name": "big", "version": "1"}
    entries = [(big, {"path": f"b{i}.py", "lang": "python", "text": CODE + f"B{i} = {i}\n", "license": "MIT"})
               for i in range(60)]
    for j in range(12):
        src = {"name": f"small{j}", "version": "1"}
        entries.append((src, {"path": "s.py", "lang": "python", "text": CODE + f"S{j} = {j}\n", "license": "MIT"}))
    kept, dropped = corpus.select_corpus(entries, seed=1, share=0.12)
    train = [r for r in kept if r["split"] == "train"]
    big_chars = sum(len(r["text"]) for r in train if r["project"] == "big")
    assert big_chars <= 0.12 * sum(len(r["text"]) for r in train) * 1.05
    assert dropped["big"]["project-cap"] > 40


def test_clashing_holdout_and_training_project_is_refused(tmp_path, monkeypatch):
    cfg = {"seed": 1, "sources": [{"name": "x", "kind": "pypi", "version": "1", "license": "MIT"},
                                  {"name": "x", "kind": "pypi", "version": "2", "license": "MIT", "split": "e3"}]}
    args = corpus.argparse.Namespace(sources=None, root=tmp_path, limit=None)
    with pytest.raises(SystemExit):
        corpus.cmd_build(args, cfg)


# ---- archives -----------------------------------------------------------------------------------------

def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        if len(data) % 2:
            out += b"\n"
    return out


def test_archive_readers_sort_filter_and_read_debs(tmp_path):
    tgz = tmp_path / "p-1.tar.gz"
    tgz.write_bytes(_tar_bytes({"p-1/z.py": b"z", "p-1/a.py": b"a", "p-1/big.py": b"x" * 50, "p-1/img.png": b"."}))
    got = list(iter_archive(tgz, 10, lambda n: not n.endswith(".png")))
    assert got == [("p-1/a.py", b"a"), ("p-1/big.py", None), ("p-1/z.py", b"z")]
    deb = tmp_path / "x_1_all.deb"
    data = _tar_bytes({"./usr/share/doc/x/copyright": b"MIT", "./usr/lib/x/m.rs": b"fn main() {}"})
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.gz": b"c", "data.tar.gz": data}))
    assert set(ar_members(deb.read_bytes())) == {"debian-binary", "control.tar.gz", "data.tar.gz"}
    assert dict(iter_archive(deb, 1000))["usr/lib/x/m.rs"] == b"fn main() {}"


# ---- shards and the pack ------------------------------------------------------------------------------

def test_shard_write_read_round_trip(tmp_path):
    docs = [([1, 2, 3], {"path": "a.py", "project": "p", "package": "p"}),
            ([], {"path": "empty.py", "project": "p", "package": "p"}),
            ([65535, 0, 7, 8], {"path": "d/b.py", "project": "q", "package": "q/d"})]
    assert write_shard(tmp_path, "train", "python", docs) == 7
    s = Shard(tmp_path, "train", "python")
    assert len(s) == 3 and s.n_tokens == 7
    assert s.doc(0).tolist() == [1, 2, 3] and s.doc(1).tolist() == [] and s.doc(2).tolist() == [65535, 0, 7, 8]
    assert s.docs[2] == {"path": "d/b.py", "project": "q", "package": "q/d"}
    raw = (tmp_path / "train-python.u16").read_bytes()
    assert raw[:2] == b"\x01\x00"  # little-endian
    assert np.fromfile(tmp_path / "train-python.idx", dtype="<u8").tolist() == [0, 3, 3, 7]
    with pytest.raises(ValueError):
        write_shard(tmp_path, "train", "go", [([70000], {"path": "x", "project": "p", "package": "p"})])


def _tiny_corpus(root):
    from engine_builds.train_tokenizer import save, train_tokenizer
    langs = {"python": CODE, "go": "package main\n\nfunc main() {\n\tprintln(\"hi\")\n}\n" * 4,
             "lua": "local function f(x)\n  return x + 1\nend\n" * 4}
    files = []
    rng = random.Random(5)
    (root / "text").mkdir(parents=True)
    for split in ("train", "val", "e4"):
        for lang, body in langs.items():
            if split == "e4" and lang == "python":
                continue
            with open(root / "text" / f"{split}-{lang}.jsonl", "w") as f:
                n = 200 if split == "train" else 2
                for i in range(n):
                    noise = " ".join(f"v{rng.randrange(10**9)}" for _ in range(40))  # incompressible enough
                    text = body + f"\n-- {split} {i} {noise} " + "é" * (i % 3) + "\n"
                    pkg = f"proj{i % 4}/d{i % 2}"
                    doc = {"path": f"d{i % 2}/f{i}.{lang}", "project": f"proj{i % 4}", "version": "1",
                           "package": pkg, "license": "MIT", "sha256": flt.content_hash(text), "text": text}
                    f.write(json.dumps(doc) + "\n")
                    files.append({"path": f"proj{i % 4}/{doc['path']}", "project": doc["project"], "version": "1",
                                  "language": lang, "split": split, "license": "MIT", "sha256": doc["sha256"],
                                  "chars": len(text), "tokens": None})
    tok = train_tokenizer([langs[k] for k in langs] * 3, 300)
    save(tok, root / "tokenizer", 2048)
    manifest = {"files": files, "totals": corpus.totals_of(files),
                "sources": [{"name": "proj0", "kind": "pypi", "version": "1", "split": "train/val", "license": "MIT",
                             "license_how": "test"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return tok


def test_pack_unpack_round_trip(tmp_path):
    root, out, dest = tmp_path / "corpus", tmp_path / "pack", tmp_path / "gpu"
    tok = _tiny_corpus(root)
    info = pack(root, out, max_mib=1.0, seed=7)
    assert info["bytes"] <= 1024 * 1024
    assert set(info["contents"]) == {"train", "val", "e4"}
    assert info["train_tokens_by_language"]["python"] > 0
    res = unpack(out, dest)
    for split, langs in info["contents"].items():
        for lang, c in langs.items():
            s = Shard(dest / "tokens", split, lang)
            assert s.n_tokens == c["tokens"] == res["tokens"][split][lang]
            lines = (root / "text" / f"{split}-{lang}.jsonl").read_text().splitlines()
            originals = {json.loads(line)["path"]: json.loads(line)["text"] for line in lines}
            for i, d in enumerate(s.docs):
                assert s.doc(i).tolist() == tok.encode(originals[d["path"]]).ids
    # a budget too small for the training text packs fewer, whole packages, and still round-trips
    train_bytes = sum(c["bytes"] for c in info["contents"]["train"].values())
    small = pack(root, tmp_path / "small", max_mib=(info["bytes"] - train_bytes / 2) / 2**20, seed=7)
    assert small["train_tokens_total"] < info["train_tokens_total"]
    unpack(tmp_path / "small", tmp_path / "gpu2")


def test_shards_encode_sentinel_spellings_as_text(tmp_path):
    """Source code that spells a sentinel (a FIM tokenizer's own tests) must not train the model on the
    sentinel's id: the shards encode it as text, like the server and gpu_unpack.py."""
    tok = _tiny_corpus(tmp_path / "corpus")
    specials = {tok.token_to_id(s) for s in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")} - {None}
    assert specials, "the tokenizer has FIM sentinels"
    got = []

    class Writer:
        def add(self, ids, doc):
            got.append(list(ids))

    class Bar:
        def update(self, n):
            pass

    doc = {"project": "p", "path": "t.py", "text": 'PREFIX = "<|fim_prefix|>"\nMIDDLE = "<|fim_middle|>"\n'}
    counts = {}
    corpus._encode_into(tok, [doc], Writer(), counts, Bar())
    assert got and not specials & set(got[0]) and counts["p/t.py"] == len(got[0])
