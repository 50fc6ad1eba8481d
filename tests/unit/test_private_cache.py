"""Issue 24 finding 7: torch.compile's caches live in a private 0700 directory, set before compiling."""

import os
import stat
import types

import pytest

from completer.engines import private_cache
from completer.engines.private_cache import use_private_compile_caches


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    return tmp_path / "cache" / "completer"


def test_the_caches_go_to_a_private_directory(clean_env):
    dirs = use_private_compile_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(clean_env / "inductor") == dirs["inductor"]["path"]
    assert os.environ["TRITON_CACHE_DIR"] == str(clean_env / "triton")
    for path in (clean_env, clean_env / "inductor", clean_env / "triton"):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700


def test_inductors_own_tmp_default_is_replaced_but_a_users_choice_is_kept(clean_env, monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what Inductor writes back once used
    use_private_compile_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(clean_env / "inductor")
    mine = str(tmp_path / "my-cache")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", mine)
    assert use_private_compile_caches()["inductor"] == {"path": mine, "source": "$TORCHINDUCTOR_CACHE_DIR"}
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == mine


def test_a_symlinked_or_foreign_cache_directory_is_refused(clean_env, monkeypatch, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean_env.parent.mkdir(parents=True)
    clean_env.symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="symlink"):
        use_private_compile_caches()
    clean_env.unlink()
    clean_env.mkdir(mode=0o755)
    real_uid = os.getuid()
    monkeypatch.setattr(private_cache.os, "getuid", lambda: real_uid + 4242)
    with pytest.raises(PermissionError, match="another user"):
        use_private_compile_caches()


def test_compiling_starts_only_once_the_caches_are_private(clean_env, monkeypatch):
    import torch

    from completer.engines.torch import compile as compile_module

    seen = {}

    def stop(*args, **kwargs):
        seen.update({var: os.environ.get(var) for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")})
        raise RuntimeError("compiling now")

    monkeypatch.setattr(torch, "compile", stop)
    with pytest.raises(RuntimeError, match="compiling now"):
        compile_module.Compiler(types.SimpleNamespace(forward_static=None), "cpu", 64, 2).build(static=True)
    assert seen == {"TORCHINDUCTOR_CACHE_DIR": str(clean_env / "inductor"), "TRITON_CACHE_DIR": str(clean_env / "triton")}


def test_the_package_builder_compiles_only_in_private_directories(clean_env, monkeypatch, fixture_model_dir):
    """The CPU's compiled engine (aot.py): Inductor's scratch files and the packages both go under
    the private cache root, and the root of the packages is 0700."""
    from completer.engines.torch import aot

    seen = {}

    def stop(*args, **kwargs):
        seen.update({var: os.environ.get(var) for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")})
        raise RuntimeError("compiling now")

    monkeypatch.setattr(aot, "serving_model", stop)
    entry = aot.Entry.for_model(fixture_model_dir, "float32", 64, 1)
    with pytest.raises(RuntimeError, match="compiling now"):
        aot.build_entry(entry, fixture_model_dir, "float32", 64, 1)
    assert seen == {"TORCHINDUCTOR_CACHE_DIR": str(clean_env / "inductor"), "TRITON_CACHE_DIR": str(clean_env / "triton")}
    assert entry.path.parent == clean_env / "engines" and stat.S_IMODE(os.stat(clean_env / "engines").st_mode) == 0o700


def test_doctor_shows_the_compile_cache(clean_env):
    from completer.cli.doctor import _compile_cache

    report = _compile_cache()
    assert report["inductor"] == {"path": str(clean_env / "inductor"), "source": "private"} and report["state"] == "ok"


def test_doctor_shows_the_compiled_engine_entry(clean_env, fixture_model_dir):
    """`completer doctor`: this engine's entry in the compiled-engine cache (absent until built) and
    what the cache holds; nothing for engines that do not use packages."""
    from completer.cli.doctor import _compiled_engine

    info = {"device": "cpu", "model_dir": str(fixture_model_dir), "dtype": "float32", "max_seq": 64, "threads": 1}
    report = _compiled_engine(info)
    assert report["state"] == "absent" and report["entries"] == 0 and report["root"] == str(clean_env / "engines")
    assert len(report["key"]) == 24
    assert "not used" in _compiled_engine({"device": "cuda"})["state"]
