"""bench/quality.py's draft acceptance on the shipped pair: a draft that is the target itself agrees
with the target everywhere, and the shipped draft less often, but often."""

import dataclasses
import sysconfig
from pathlib import Path

from completer.completion.pipeline import Completer, CompletionSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from engine_builds.line_cases import line_cases
from tests.conftest import bench_module


def quality_module():
    return bench_module("quality")


def test_draft_acceptance_of_the_target_itself_and_of_the_shipped_draft():
    quality = quality_module()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [{"path": name, "text": (stdlib / name).read_text()} for name in ("textwrap.py", "bisect.py")]
    cases = line_cases(files, 12, seed=3)
    target_engine = load_engine(EngineOptions(model="embedded", device="cpu"))
    draft_engine = load_engine(EngineOptions(model="embedded-draft", device="cpu"))
    target = Completer(target_engine, CompletionSettings(multiline=False, deadline_ms=10_000, min_confidence=0.0,
                                                         rerank=False))
    target.notes = dataclasses.replace(target.notes, languages=None)
    rates = quality.draft_acceptance(target, {"self": target_engine, "draft": draft_engine}, cases, limit=6)
    assert rates["self"] == 1.0
    assert 0.2 < rates["draft"] < 0.95
