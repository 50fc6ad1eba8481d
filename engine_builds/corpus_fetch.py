"""Downloads for the corpus builder (development time only; nothing at product run time uses the
network): resolving a pinned (name, version) to archive URLs and sha256s, and resumable, verified
downloads into a cache directory.

Registries used, each through its ordinary public interface:
  pypi    the simple index's JSON form (PEP 691), which lists every file with its sha256;
  npm     the registry document of one version (dist.tarball, dist.integrity, license);
  deb     `apt-cache show NAME=VERSION` (Filename, SHA256) after `apt-get update`, file from the mirror pool;
  debsrc  the source package's .dsc in the mirror pool (its Checksums-Sha256 lists the tarballs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEBIAN_MIRROR = "http://deb.debian.org/debian/"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security/"
USER_AGENT = "completer-corpus-builder/1 (development-time data preparation)"


class Progress:
    """A plain stderr progress bar: no dependency, one carriage-returned line, at most ~10 redraws/s."""

    def __init__(self, label: str, total: float | None = None, unit: str = ""):
        self.label, self.total, self.unit = label, total, unit
        self.done = 0.0
        self._last = 0.0
        self._t0 = time.time()
        self.enabled = sys.stderr.isatty() or os.environ.get("CORPUS_PROGRESS") == "1"

    def update(self, n: float = 1, note: str = "") -> None:
        self.done += n
        now = time.time()
        if now - self._last < 0.1 and (self.total is None or self.done < self.total):
            return
        self._last = now
        self._draw(note)

    def _draw(self, note: str = "") -> None:
        if not self.enabled:
            return
        rate = self.done / max(time.time() - self._t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {_human(self.done)}/{_human(self.total)}{self.unit}"
        else:
            text = f"\r{self.label} {_human(self.done)}{self.unit}"
        text += f" {_human(rate)}{self.unit}/s {note}"[:60]
        sys.stderr.write(text[:140].ljust(100))
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        self._draw(note)
        if self.enabled:
            sys.stderr.write("\n")
        else:
            took = time.time() - self._t0
            print(f"{self.label}: {_human(self.done)}{self.unit} in {took:.1f}s {note}", file=sys.stderr)


def _human(x: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(x) < 1000:
            return f"{x:.0f}{unit}" if unit == "" else f"{x:.1f}{unit}"
        x /= 1000
    return f"{x:.1f}T"


def _open(url: str, headers: dict | None = None, timeout: float = 120):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str | None, label: str = "") -> Path:
    """Fetch url to dest unless dest is already there with the right sha256. A partial download is kept
    as dest.part and resumed with an HTTP Range request (restarted if the server ignores the range).
    Raises ValueError on a checksum mismatch (the bad file is removed so a rerun refetches it)."""
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(4):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with _open(url, headers) as resp:
                if have and resp.status != 206:  # the server sent the whole file: start over
                    have = 0
                length = resp.headers.get("Content-Length")
                total = (int(length) + have) if length else None
                bar = Progress(label or dest.name, total, "B")
                bar.done = have
                with open(part, "ab" if have else "wb") as f:
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
                bar.close()
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # range past the end: the .part is complete (or garbage); verify
                break
            if e.code in (404, 410):
                raise
            time.sleep(2 * (attempt + 1))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            print(f"  retry {url}: {e}", file=sys.stderr)
            time.sleep(2 * (attempt + 1))
    else:
        raise OSError(f"could not download {url}")
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise ValueError(f"{url}: sha256 {digest} does not match the pinned {sha256}")
    os.replace(part, dest)
    return dest


# ---- resolving pins -------------------------------------------------------------------------------

def _norm_pypi(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve_pypi(name: str, version: str, prefer: str = "sdist") -> list[dict]:
    """The sdist (or a pure-Python wheel) of one exact version, with PyPI's sha256."""
    with _open(f"https://pypi.org/simple/{_norm_pypi(name)}/",
               {"Accept": "application/vnd.pypi.simple.v1+json"}) as resp:
        files = json.load(resp)["files"]
    norm = _norm_pypi(name)

    def version_of(fn: str) -> str | None:
        if fn.endswith((".tar.gz", ".zip", ".tar.bz2")):
            stem = re.sub(r"\.(tar\.gz|zip|tar\.bz2)$", "", fn)
            dist, _, ver = stem.rpartition("-")
            return ver if _norm_pypi(dist) == norm else None
        if fn.endswith(".whl"):
            parts = fn[:-4].split("-")
            return parts[1] if _norm_pypi(parts[0]) == norm else None
        return None

    candidates = [f for f in files if version_of(f["filename"]) == version and not f.get("yanked")]
    sdists = [f for f in candidates if not f["filename"].endswith(".whl")]
    wheels = sorted((f for f in candidates if f["filename"].endswith(".whl")),
                    key=lambda f: ("none-any" not in f["filename"], f["filename"]))
    order = (sdists + wheels) if prefer == "sdist" else (wheels + sdists)
    if not order:
        raise LookupError(f"pypi {name}=={version}: no file on the index")
    f = order[0]
    return [{"url": f["url"].split("#")[0], "file": f["filename"], "sha256": f["hashes"]["sha256"]}]


def resolve_npm(name: str, version: str, cache: Path) -> tuple[list[dict], str]:
    """The tarball of one exact version; sha256 computed here after checking npm's own integrity hash.
    Returns (files, the registry's license field)."""
    with _open(f"https://registry.npmjs.org/{name.replace('/', '%2F')}/{version}") as resp:
        doc = json.load(resp)
    url = doc["dist"]["tarball"]
    fname = url.rsplit("/", 1)[1]
    if name.startswith("@"):
        fname = name[1:].replace("/", "__") + "__" + fname
    dest = cache / "npm" / fname
    download(url, dest, None, f"npm {name}")
    data = dest.read_bytes()
    integrity = doc["dist"].get("integrity", "")
    if integrity.startswith("sha512-"):
        if base64.b64encode(hashlib.sha512(data).digest()).decode() != integrity[7:]:
            dest.unlink()
            raise ValueError(f"npm {name}@{version}: integrity mismatch")
    elif doc["dist"].get("shasum") and hashlib.sha1(data).hexdigest() != doc["dist"]["shasum"]:
        dest.unlink()
        raise ValueError(f"npm {name}@{version}: shasum mismatch")
    lic = doc.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    return [{"url": url, "file": fname, "sha256": hashlib.sha256(data).hexdigest()}], str(lic or "")


def resolve_deb(name: str, version: str) -> list[dict]:
    """A binary package of the running Debian release: apt's own answer to where it would download it
    from (`apt-get download --print-uris`; run `apt-get update` first). Nothing is installed."""
    out = subprocess.run(["apt-get", "download", "-q", "--print-uris", f"{name}={version}"],
                         capture_output=True, text=True, check=False).stdout
    m = re.search(r"^'([^']+)' (\S+) \d+ SHA256:([0-9a-f]{64})$", out, flags=re.MULTILINE)
    if not m:
        raise LookupError(f"deb {name}={version}: not in apt's index (apt-get update?)")
    return [{"url": m.group(1), "file": m.group(2), "sha256": m.group(3)}]


def _pool_dir(source: str) -> str:
    prefix = source[:4] if source.startswith("lib") else source[0]
    return f"pool/main/{prefix}/{source}/"


def resolve_debsrc(source: str, version: str, cache: Path) -> list[dict]:
    """Tarballs of a Debian source package, from the checksums in its .dsc (the .dsc itself is fetched
    from the pool; no deb-src index is needed)."""
    ver = version.split(":", 1)[-1]
    dest = cache / "debsrc" / f"{source}_{ver}.dsc"
    for base in (DEBIAN_MIRROR, DEBIAN_SECURITY):  # point-release updates live in the security archive
        url = base + ("pool/updates/main/" if base == DEBIAN_SECURITY else "pool/main/") + \
            _pool_dir(source).removeprefix("pool/main/") + f"{source}_{ver}.dsc"
        try:
            download(url, dest, None, f"dsc {source}")
            break
        except urllib.error.HTTPError as e:
            if e.code != 404 or base == DEBIAN_SECURITY:
                raise
    dsc = dest.read_text(errors="replace")
    block = re.search(r"Checksums-Sha256:\n((?: .+\n)+)", dsc)
    if not block:
        raise LookupError(f"{url}: no Checksums-Sha256")
    files = []
    for line in block.group(1).splitlines():
        sha, _size, fn = line.split()
        files.append({"url": url.rsplit("/", 1)[0] + "/" + fn, "file": fn, "sha256": sha})
    return files
