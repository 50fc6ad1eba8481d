"""What the tests of the in-process GPU backends (trtllm, lmdeploy) share: the model and prompts,
the fake package as a module fixture, the torch reference engine, running a request, and reading the
fake's call log."""

from __future__ import annotations

import pytest

from completer.engines.contract import GenerationRequest, StopRules
from completer.engines.model_dirs import resolve_model
from completer.engines.torch.engine import TorchEngine

from . import use_fakes

MODEL = resolve_model("embedded")
MAX_SEQ = 512
PROMPTS = [
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return",
    # Greedy continuations of these run 200 tokens without the model's end of text (tests stream them
    # and let deadlines cut them); a new model's weights may need new prompts here.
    "import os\nimport sys\n\nfor name in os.listdir(path):\n    print(name)\nfor name in os.listdir(",
    "x = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2",
]


def fake_package(name: str):
    """A module fixture's body: the fake of package `name` importable under its real name."""
    with pytest.MonkeyPatch.context() as mp:
        use_fakes(mp)
        package = __import__(name)
        assert package.__version__.endswith("+fake")
        yield package


def reference_engine() -> TorchEngine:
    """The torch engine with the fakes' settings (fp32, no bf16 decode copy): the greedy reference."""
    return TorchEngine(MODEL, device="cpu", dtype="float32", decode_dtype="none", max_seq=MAX_SEQ, edit_reuse=False)


def builder(engine_class, model=MODEL):
    """A fixture's body that builds extra engines and closes them all after the test."""
    built = []

    def build(model=model, **kw):
        eng = engine_class(model, **kw)
        built.append(eng)
        return eng

    yield build
    for eng in built:
        eng.close()


def run(engine, prompt, cancel=None, **kw):
    """(token ids, text, stats) of one request; no line limit unless `stop` says otherwise."""
    kw.setdefault("stop", StopRules(max_lines=0))
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), **kw), cancel)
    deltas = list(stream)
    return [t for d in deltas for t in d.token_ids], "".join(d.text for d in deltas), stream.stats


def greedy(reference, prompt, n):
    ids, _, _ = run(reference, prompt, max_new_tokens=n, speculative=False)
    return ids


def only(fake, name):
    found = fake.calls(name)
    assert len(found) == 1, (name, found)
    return found[0]


def steps_after(fake, key: str, value, event: str) -> int:
    """Decode steps the fake ran for the request whose `key` is `value` after `event` (abort, cancel)."""
    names = [name for name, d in fake.CALLS if d.get(key) == value]
    assert event in names, f"{event} was not called"
    return names[names.index(event):].count("step")
