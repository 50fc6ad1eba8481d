"""The user's private cache directory, for what the engine compiles and loads back (issue 24 finding 7).

Inductor's cache defaults to /tmp/torchinductor_<user> and Triton's to a directory under it; both
hold shared objects and pickles that torch loads back into the process, and /tmp is shared: another
local user can create that directory first (or a symlink by that name) and have their code loaded
into ours. Before anything compiles, `use_private_compile_caches` points TORCHINDUCTOR_CACHE_DIR and
TRITON_CACHE_DIR at $XDG_CACHE_HOME/completer (default ~/.cache/completer), a directory created
0700, refused if it is a symlink or someone else's, and made 0700 if others could enter it. A cache
directory the user set in the environment is theirs to choose and is kept.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

ENV = {"inductor": "TORCHINDUCTOR_CACHE_DIR", "triton": "TRITON_CACHE_DIR"}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "completer"


def private_dir(path: Path) -> Path:
    """`path`, a directory only this user can enter (see the module docstring); PermissionError if not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory (a symlink?): refusing it as the compile cache")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user: refusing it as the compile cache "
                              f"(set XDG_CACHE_HOME or {ENV['inductor']} to a directory of your own)")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def _inductor_default() -> str:
    """Inductor's own default, which it also writes back into the environment once used."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return os.path.abspath(default_cache_dir())
    except Exception:
        return os.path.join(tempfile.gettempdir(), "torchinductor_")


def compile_cache_dirs() -> dict[str, dict]:
    """Where Inductor's and Triton's caches go: {"inductor"|"triton": {"path", "source"}} (what
    `use_private_compile_caches` sets, or the user's own choice); creates nothing."""
    root = cache_root()
    out = {}
    for name, var in ENV.items():
        given, ours = os.environ.get(var), str(root / name)
        if given and given != ours and not (name == "inductor" and os.path.abspath(given) == _inductor_default()):
            out[name] = {"path": given, "source": f"${var}"}
        else:
            out[name] = {"path": ours, "source": "private"}
    return out


def use_private_compile_caches() -> dict[str, dict]:
    """Point the compile caches at private directories (unless the user chose their own); call before
    torch compiles anything. PermissionError if the private directory cannot be made safe."""
    dirs = compile_cache_dirs()
    if any(d["source"] == "private" for d in dirs.values()):
        private_dir(cache_root())
    for name, d in dirs.items():
        if d["source"] == "private":
            os.environ[ENV[name]] = str(private_dir(Path(d["path"])))
    return dirs
