"""Strict fakes of the GPU backends' Python APIs (tensorrt_llm 1.2.1, lmdeploy 0.18.0), built from the
brief /work/shared/refs/engines.md, for testing our backends where the packages cannot be installed.

`use_fakes(monkeypatch)` makes `import tensorrt_llm` / `import lmdeploy` load them; `hide_backends`
makes both imports fail as on a machine without the packages. Both undo themselves with the
monkeypatch (function-scoped, or `pytest.MonkeyPatch.context()` for a module-scoped fixture).
"""

from __future__ import annotations

import sys
from pathlib import Path

FAKES_DIR = Path(__file__).resolve().parent
BACKEND_PACKAGES = ("tensorrt_llm", "lmdeploy")
HELPER_MODULES = ("fake_torch_steps",)  # top-level modules the fakes import


def _ours(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in BACKEND_PACKAGES + HELPER_MODULES)


def _forget(monkeypatch, names) -> None:
    """Drop cached modules so the next import finds them afresh; on undo, whatever got imported under
    these names meanwhile is dropped again (setitem records 'absent' and undo deletes the key)."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name))
        sys.modules.pop(name, None)


def _fake_module_names() -> list[str]:
    names = list(HELPER_MODULES)
    for root in BACKEND_PACKAGES:
        for init in (FAKES_DIR / root).rglob("*.py"):
            parts = init.relative_to(FAKES_DIR).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def use_fakes(monkeypatch) -> None:
    """Put tests/fakes first on sys.path and drop cached tensorrt_llm*/lmdeploy* modules."""
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    _forget(monkeypatch, sorted(set(_fake_module_names()) | {n for n in sys.modules if _ours(n)}))


def hide_backends(monkeypatch) -> None:
    """Make `import tensorrt_llm` and `import lmdeploy` raise ModuleNotFoundError, fakes or not."""
    _forget(monkeypatch, sorted({n for n in sys.modules if _ours(n)}))
    for root in BACKEND_PACKAGES:
        monkeypatch.setitem(sys.modules, root, None)  # None in sys.modules: the import system refuses it
