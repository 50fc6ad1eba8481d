"""engine.import_backend: how the in-process GPU backends (trtllm, lmdeploy) report a package that is
missing, incomplete, of another release, or whose own dependencies fail. Fake packages on sys.path."""

import sys

import pytest

from completer.engines.contract import BackendUnavailableError
from completer.engines.gpu_runtime import import_backend

NAMES = dict(missing="not installed: see the README", written_for="FakeGPU 1.0 (the Engine API)", needs="a GPU")


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Writes fakegpu/{__init__,api}.py with the given sources; forgets them afterwards."""
    def make(init: str = "", api: str | None = "class Engine:\n    pass\n"):
        (tmp_path / "fakegpu").mkdir()
        (tmp_path / "fakegpu" / "__init__.py").write_text(init)
        if api is not None:
            (tmp_path / "fakegpu" / "api.py").write_text(api)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for name in [n for n in sys.modules if n == "fakegpu" or n.startswith("fakegpu.")]:
        del sys.modules[name]


def test_a_complete_package_gives_the_attribute(fake_package):
    fake_package()
    root, engine = import_backend("fakegpu", "fakegpu.api", "Engine", **NAMES)
    assert root.__name__ == "fakegpu" and engine.__name__ == "Engine"


@pytest.mark.parametrize("init, api, message", [
    (None, None, "not installed: see the README"),
    ("", None, r"fakegpu has no fakegpu\.api: this backend is written for FakeGPU 1\.0"),
    ("", "", r"fakegpu\.api has no Engine: this backend is written for FakeGPU 1\.0"),
    ("import fakegpu_cuda_runtime\n", None, r"a dependency is missing; it needs a GPU"),
    ("raise OSError('libcuda.so.1: cannot open shared object file')\n", None, r"libcuda\.so\.1.*NVIDIA GPU"),
])
def test_each_failure_says_what_to_do(fake_package, init, api, message):
    if init is not None:
        fake_package(init, api)
    with pytest.raises(BackendUnavailableError, match=message):
        import_backend("fakegpu", "fakegpu.api", "Engine", **NAMES)
