"""Cross-file context: chunks of other workspace files worth putting before the current file.

Two sources, ranked together by how much they share with the code around the cursor:

- a ring of recently opened, edited and saved files, cut into chunks of `chunk_lines` lines;
- the declarations of the workspace files the current file imports, bodies elided (imports.py), so
  the model sees what it is about to call.

Chunks already visible in the local window are dropped, the rest fill a token budget. Privacy: a
file is used only if it lies inside one of the workspace's folders, is not ignored by git's rules
(.gitignore files, info/exclude and the user's global excludes: gitignore.py), does not look like a
secret (.env, keys, credentials) and is not too large.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from completer.gitignore import IgnoreRules

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
SECRET_PATTERNS = (".env", ".env.*", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*",
                   "id_ecdsa*", "id_dsa*", "*secret*", "*credential*", "*.keystore", ".netrc", ".pypirc", ".npmrc",
                   ".pgpass", ".htpasswd", "*.tfvars", "*.tfvars.json", "*kubeconfig*", "*.token")
SECRET_PATHS = (".kube/config", ".docker/config.json", ".aws/config")  # secrets by their directory
MAX_FILE_BYTES = 1_000_000


def looks_secret(path: str | Path) -> bool:
    """Whether the file's name (or its place, as ~/.kube/config) says it holds secrets."""
    p = Path(path)
    name = p.name.lower()
    where = "/".join(p.parts[-2:]).lower()
    return any(fnmatch.fnmatch(name, pat) for pat in SECRET_PATTERNS) or where in SECRET_PATHS


@dataclass(frozen=True)
class Chunk:
    path: str  # workspace-relative, what the prompt shows
    text: str
    kind: str  # "recent" or "definitions"


class Workspace:
    """Which files may feed the prompt: those in one of the workspace's folders (a client may open
    several) that git does not ignore and that do not look like secrets."""

    def __init__(self, folders: str | Path | Sequence[str | Path] | None, user_config: bool = True):
        """user_config: see IgnoreRules (False for benches)."""
        if folders is None or isinstance(folders, (str, Path)):
            folders = [folders] if folders else []
        roots = list(dict.fromkeys(Path(f).resolve() for f in folders))
        self.folders = [(root, IgnoreRules(root, user_config)) for root in roots]
        self._prefixes = _folder_prefixes(roots)

    @property
    def root(self) -> Path | None:
        """The first folder: the one a single-folder client opened."""
        return self.folders[0][0] if self.folders else None

    def _holding(self, path: str | Path) -> tuple[Path | None, list[tuple[Path, IgnoreRules]]]:
        """The resolved path and the folders holding it, the innermost first (None, [] if it cannot
        be resolved)."""
        try:
            p = Path(path).resolve()
        except OSError:
            return None, []
        holding = [(root, rules) for root, rules in self.folders if p.is_relative_to(root)]
        return p, sorted(holding, key=lambda folder: -len(folder[0].parts))

    def folder_of(self, path: str | Path) -> Path | None:
        """The innermost folder holding the file, or None."""
        holding = self._holding(path)[1]
        return holding[0][0] if holding else None

    def relative(self, path: str | Path) -> str | None:
        """The path the prompt shows if the file may be used, else None: relative to its folder,
        after the folder's name where there are several."""
        p, holding = self._holding(path)
        if not holding or looks_secret(p):
            return None  # outside the workspace, or a secret
        if any(rules.ignored(p.relative_to(root)) for root, rules in holding):
            return None  # a folder inside another is held to the rules of both
        root = holding[0][0]
        rel = p.relative_to(root).as_posix()
        return f"{self._prefixes[root]}/{rel}" if root in self._prefixes else rel


def _folder_prefixes(roots: list[Path]) -> dict[Path, str]:
    """Each folder's name in the prompt's paths, only where there are several (a single folder's
    paths stay as they always were); a name two folders share gets a number."""
    if len(roots) < 2:
        return {}
    prefixes, taken = {}, set()
    for root in roots:
        name, n = root.name or "root", 1
        while name in taken:
            n += 1
            name = f"{root.name or 'root'}-{n}"
        taken.add(name)
        prefixes[root] = name
    return prefixes


def _identifiers(text: str) -> set[str]:
    return set(_IDENT.findall(text))


class ContextRing:
    def __init__(self, workspace: Workspace, max_files: int = 8, chunk_lines: int = 24):
        self.workspace = workspace
        self.max_files, self.chunk_lines = max_files, chunk_lines
        self.files: OrderedDict[str, list[Chunk]] = OrderedDict()  # relative path -> chunks, most recent last
        self.sources: dict[str, str] = {}  # relative path -> the file's path, to re-key when folders change

    def note(self, path: str, text: str) -> None:
        """A file was opened, edited or saved: (re)chunk it, most recent last."""
        rel = self.workspace.relative(path)
        if rel is None or len(text) > MAX_FILE_BYTES:
            self._drop(lambda noted_rel, source: source == str(path))  # ignored or too large since
            return
        lines = text.splitlines(keepends=True)
        chunks = ["".join(lines[i:i + self.chunk_lines]) for i in range(0, len(lines), self.chunk_lines)]
        self.files[rel] = [Chunk(rel, c, "recent") for c in chunks if c.strip()]
        self.files.move_to_end(rel)
        self.sources[rel] = str(path)
        while len(self.files) > self.max_files:
            self.sources.pop(self.files.popitem(last=False)[0], None)

    def prune(self) -> set[str]:
        """Drop the files that may no longer feed the prompt: a .gitignore (or the user's excludes)
        changed since they were noted. Called at each idle refresh, before the context is chosen.
        Returns the prompt paths let go of."""
        return self._drop(lambda noted_rel, source: self.workspace.relative(source) != noted_rel)

    def _drop(self, unwanted) -> set[str]:
        dropped = {rel for rel, source in self.sources.items() if unwanted(rel, source)}
        for rel in dropped:
            self.files.pop(rel, None)
            self.sources.pop(rel, None)
        return dropped

    def set_workspace(self, workspace: Workspace) -> set[str]:
        """The client added or removed folders: keep the files still inside, under their new paths.
        Returns the (old) prompt paths of the files let go of."""
        self.workspace = workspace
        files, sources = self.files, self.sources
        self.files, self.sources = OrderedDict(), {}
        dropped = set()
        for old, chunks in files.items():
            rel = workspace.relative(sources[old])
            if rel is None:
                dropped.add(old)
                continue
            self.files[rel] = [Chunk(rel, c.text, c.kind) for c in chunks]
            self.sources[rel] = sources[old]
        return dropped

    def open_files(self, current_path: str) -> tuple[tuple[str, str], ...]:
        """(path, text) of the files in the ring but the current one, the most recent first: what
        the copy lookup searches (candidates.py). Blank chunks are left out, as in select()."""
        current = self.workspace.relative(current_path)
        return tuple((rel, "".join(c.text for c in chunks)) for rel, chunks in reversed(self.files.items())
                     if rel != current)

    def forget(self, path: str) -> set[str]:
        """The file (or every file under the directory) was deleted or renamed: out of the ring, even
        where its path would no longer be allowed. Returns the prompt paths let go of."""
        under = os.path.join(str(path), "")  # the directory's path with its separator
        return self._drop(lambda noted_rel, source: source == str(path) or source.startswith(under))

    def select(self, current_path: str, around_cursor: str, local_window: str, budget_chars: int,
               imports: list[Chunk] = ()) -> tuple[tuple[str, str], ...]:
        """(path, text) chunks for the prompt, best first, within budget_chars, none of the current
        file and none already in the local window. Deterministic for the same inputs."""
        current = self.workspace.relative(current_path)
        wanted = _identifiers(around_cursor)
        scored = []
        for order, chunk in enumerate([*imports, *(c for f, cs in self.files.items() if f != current for c in cs)]):
            if chunk.text.strip() in local_window:
                continue
            ids = _identifiers(chunk.text)
            overlap = len(wanted & ids) / (len(wanted) + 1)
            bonus = 0.5 if chunk.kind == "definitions" else 0.0
            scored.append((-(overlap + bonus), order, chunk))
        scored.sort(key=lambda s: (s[0], s[1]))
        out, used = [], 0
        for score, _, chunk in scored:
            if score >= 0 or used + len(chunk.text) > budget_chars:
                continue
            out.append((chunk.path, chunk.text))
            used += len(chunk.text)
        return tuple(out)
