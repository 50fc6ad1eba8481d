"""Reading files out of the downloaded archives without unpacking them to disk: tarballs (gz, xz,
bz2), zip files and wheels, and Debian .deb packages (an `ar` archive holding data.tar.*).

Every reader yields (path inside the archive, bytes) for regular files only, sorted by path so the
corpus does not depend on the order an archive was written in. Members over `max_bytes` are yielded
with None instead of their bytes (the caller records them as too large without reading them), and
members the `want` predicate rejects are skipped unread. Tarballs are read in one streaming pass
(sorting first would make every member a seek back into a compressed stream) and sorted afterwards.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

Member = tuple[str, "bytes | None"]


def _all(_name: str) -> bool:
    return True


def iter_tar(fileobj, max_bytes: int, want=_all) -> Iterator[Member]:
    out = []
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:  # stream mode: one pass, no seeks
        for m in tar:
            if not m.isfile() or not want(m.name):
                continue
            if m.size > max_bytes:
                out.append((m.name, None))
                continue
            f = tar.extractfile(m)
            out.append((m.name, f.read() if f else b""))
    out.sort(key=lambda x: x[0])
    yield from out


def iter_zip(path: Path, max_bytes: int, want=_all) -> Iterator[Member]:
    with zipfile.ZipFile(path) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not want(info.filename):
                continue
            if info.file_size > max_bytes:
                yield info.filename, None
                continue
            yield info.filename, z.read(info)


def ar_members(data: bytes) -> dict[str, bytes]:
    """The members of a Unix `ar` archive (a .deb is one): 8-byte magic, then 60-byte headers."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos, out = 8, {}
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        pos += 60
        out[name] = data[pos:pos + size]
        pos += size + (size & 1)  # members are 2-byte aligned
    return out


def iter_deb(path: Path, max_bytes: int, want=_all) -> Iterator[Member]:
    members = ar_members(path.read_bytes())
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise ValueError(f"{path}: no data.tar in the .deb")
    for name, blob in iter_tar(io.BytesIO(members[data_name]), max_bytes, lambda n: want(n.removeprefix("./"))):
        yield name.removeprefix("./"), blob


def iter_archive(path: Path, max_bytes: int, want=_all) -> Iterator[Member]:
    name = path.name
    if name.endswith(".deb"):
        yield from iter_deb(path, max_bytes, want)
    elif name.endswith((".zip", ".whl")):
        yield from iter_zip(path, max_bytes, want)
    elif ".tar" in name or name.endswith((".tgz", ".tbz2", ".txz")):
        with open(path, "rb") as f:
            yield from iter_tar(f, max_bytes, want)
    else:
        raise ValueError(f"{path}: unknown archive type")
