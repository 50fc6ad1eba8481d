"""E3 data: out-of-distribution Python from pinned, permissively licensed PyPI source distributions
that the embedded models never saw (they are trained on the standard library only).

    python -m engine_builds.prepare_ood [--out data/ood]

Fetches each sdist from PyPI's simple index (development time only; nothing at run time), checks
it against the sha256 pinned here, and writes OUT/corpus.jsonl.gz (all files in split "test") and
OUT/manifest.json (package, version, license, url, sha256, files).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import tarfile
import urllib.request
from pathlib import Path

# name, version, license, sha256 of the sdist
PINNED = [
    ("attrs", "23.2.0", "MIT", "935dc3b529c262f6cf76e50877d35a4bd3c1de194fd41f47a2b7ae8f19971f30"),
    ("click", "8.1.7", "BSD-3-Clause", "ca9853ad459e787e2192211578cc907e7594e294c7ccc834310722b41b9ca6de"),
    ("requests", "2.31.0", "Apache-2.0", "942c5a758f98d790eaed1a29cb6eefc7ffb0d1cf7af05c3d2791656dbd6ad1e1"),
    ("packaging", "24.0", "Apache-2.0 OR BSD-2-Clause", "eb82c5e3e56209074766e6885bb04b8c38a0c015d0a30036ebe7ece34c9989e9"),
]
INDEX = "https://pypi.org/simple/{name}/"


def sdist_url(name: str, version: str) -> str:
    page = urllib.request.urlopen(INDEX.format(name=name), timeout=60).read().decode()
    for href in re.findall(r'href="([^"]+)"', page):
        if href.split("#")[0].endswith(f"/{name}-{version}.tar.gz"):
            return href.split("#")[0]
    raise SystemExit(f"{name}=={version}: no sdist on the index")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/ood"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, manifest = [], []
    for name, version, license_, sha in PINNED:
        url = sdist_url(name, version)
        data = urllib.request.urlopen(url, timeout=120).read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            raise SystemExit(f"{name}=={version}: sha256 {digest} does not match the pinned {sha}")
        files = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not member.isfile() or not member.name.endswith(".py"):
                    continue
                try:
                    text = tar.extractfile(member).read().decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if not text.strip():
                    continue
                path = member.name.split("/", 1)[1]
                rows.append({"path": f"{name}/{path}", "package": f"{name}/{Path(path).parent}", "split": "test",
                             "text": text.replace("\r\n", "\n")})
                files.append(path)
        manifest.append({"package": name, "version": version, "license": license_, "url": url, "sha256": sha,
                         "files": files})
        print(f"{name} {version} ({license_}): {len(files)} files")
    with gzip.open(args.out / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (args.out / "manifest.json").write_text(json.dumps({"packages": manifest}, indent=1) + "\n")


if __name__ == "__main__":
    main()
