"""Contract 2, one suite over every backend: the same requests, the same answers and rules.

`torch` runs for real; `openai` runs for real against `completer serve-openai` (a real HTTP server in
a subprocess, backed by the torch engine); `trtllm` and `lmdeploy` run our backend code against API
fakes of tensorrt-llm 1.2.1 and lmdeploy 0.18.0 (tests/fakes: the packages need an NVIDIA GPU and
cannot be installed here), whose tokens come from the torch engine. So every backend must give the
torch engine's greedy text for the same prompt, whatever it does inside.
"""

import threading
import time

import pytest

from completer.engines.contract import GenerationRequest, StopRules
from completer.engines.loading import create_engine
from completer.engines.torch.engine import TorchEngine
from tests.conftest import ROOT, OpenAIServer

MODEL = ROOT / "completer" / "models" / "embedded"
# Prompts whose greedy text has no near-tie in its first 24 tokens: where two tokens' logits are
# within rounding, a cached prefix or a speculative verification may take the other one.
PROMPTS = ["def add(a, b):\n    return a", "import os\nimport sys\n\n\ndef main():\n",
           "class Point:\n    def __init__(self, x, y):\n        self.x = x\n"]
BACKENDS = ["torch", "openai", "trtllm-api-fake", "lmdeploy-api-fake"]


@pytest.fixture(scope="module")
def reference():
    engine = TorchEngine(MODEL, device="cpu")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def openai_server():
    with OpenAIServer("--served-name", "embedded", "--report-cached-tokens", model=MODEL) as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, reference):
    name = request.param
    if name == "torch":
        yield reference
        return
    if name == "openai":
        server = request.getfixturevalue("openai_server")
        engine = create_engine("openai", MODEL, server_url=server.url, send_stop_ids=True)
    else:
        from tests.fakes import use_fakes

        mp = pytest.MonkeyPatch()
        use_fakes(mp)
        backend = name.split("-")[0]
        engine = create_engine(backend, MODEL, device="cuda")
    yield engine
    engine.close()
    if name.endswith("api-fake"):
        mp.undo()


def ids(engine, text: str) -> tuple[int, ...]:
    return tuple(engine.tokenizer.encode(text))


def run(engine, request: GenerationRequest, cancel=None):
    stream = engine.generate(request, cancel)
    deltas = list(stream)
    return "".join(d.text for d in deltas), stream.stats, deltas


def reference_text(reference, prompt: str, n: int = 24) -> str:
    text, _, _ = run(reference, GenerationRequest(ids(reference, prompt), max_new_tokens=n,
                                                  stop=StopRules(max_lines=0), speculative=False))
    return text


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_matches_the_torch_engine(engine, reference, prompt):
    want = reference_text(reference, prompt)
    text, stats, _ = run(engine, GenerationRequest(ids(engine, prompt), max_new_tokens=24, stop=StopRules(max_lines=0)))
    assert text == want
    assert stats.finish_reason == "max_tokens"
    assert stats.prompt_tokens == len(ids(engine, prompt))
    assert stats.decode_tokens == 24


def test_line_limit_and_stop_strings_cut_the_text(engine, reference):
    prompt = PROMPTS[1]
    want = reference_text(reference, prompt)
    assert "\n" in want
    text, stats, _ = run(engine, GenerationRequest(ids(engine, prompt), max_new_tokens=24, stop=StopRules(max_lines=1)))
    assert text == want.split("\n")[0]
    stop = want[3:5]
    text, stats, _ = run(engine, GenerationRequest(ids(engine, prompt), max_new_tokens=24,
                                                   stop=StopRules(stop_strings=(stop,), max_lines=0)))
    assert text == want[:want.index(stop)]
    assert stats.finish_reason == "stop_string"


def test_stop_token_ids_end_the_answer(engine, reference):
    prompt = PROMPTS[0]
    probe = reference.generate(GenerationRequest(ids(reference, prompt), max_new_tokens=6,
                                                 stop=StopRules(max_lines=0), speculative=False))
    tokens = [t for d in probe for t in d.token_ids]
    stop_id = tokens[3]
    cut = tokens[:tokens.index(stop_id)]
    text, stats, _ = run(engine, GenerationRequest(ids(engine, prompt), max_new_tokens=24,
                                                   stop=StopRules(frozenset({stop_id}), max_lines=0)))
    assert text == reference.tokenizer.decode(cut)
    assert stats.finish_reason == "stop_token"


def test_max_tokens_bounds_the_answer(engine, reference):
    want = reference_text(reference, PROMPTS[2])
    text, stats, _ = run(engine, GenerationRequest(ids(engine, PROMPTS[2]), max_new_tokens=3, stop=StopRules(max_lines=0)))
    assert stats.decode_tokens == 3 and stats.finish_reason == "max_tokens"
    assert want.startswith(text) and text


def test_cancel_stops_within_one_step(engine):
    cancel = threading.Event()
    stream = engine.generate(GenerationRequest(ids(engine, PROMPTS[2]), max_new_tokens=200,
                                               stop=StopRules(max_lines=0), speculative=False), cancel)
    after = 0
    for _ in stream:
        if cancel.is_set():
            after += 1
        cancel.set()
    assert stream.stats.finish_reason == "cancelled"
    assert after <= 1
    assert stream.stats.decode_tokens < 20


def test_deadline_stops_decoding(engine):
    request = GenerationRequest(ids(engine, PROMPTS[2]), max_new_tokens=200, stop=StopRules(max_lines=0),
                                deadline_s=time.monotonic() + 0.001, speculative=False)
    text, stats, _ = run(engine, request)
    assert stats.finish_reason == "deadline"
    assert stats.decode_tokens < 200


def test_a_heal_prefix_is_retyped_or_the_answer_dropped(engine):
    # A heal prefix the model would not produce (the prompt backed up a "€"): constrained backends
    # re-type it; the others must not show text that fails to re-type what the user typed.
    request = GenerationRequest(ids(engine, PROMPTS[1]), max_new_tokens=12, stop=StopRules(max_lines=0),
                                heal_prefix="€".encode())
    text, stats, _ = run(engine, request)
    if engine.can_heal:
        assert stats.finish_reason == "max_tokens" and stats.decode_tokens == 12
    else:
        assert text == "" and stats.finish_reason == "heal_mismatch"


def test_repeated_prompt_reuses_the_cache(engine):
    request = GenerationRequest(ids(engine, PROMPTS[2] * 3), max_new_tokens=4, stop=StopRules(max_lines=0),
                                session_key="contract")
    run(engine, request)
    _, stats, _ = run(engine, request)
    if engine.describe().get("reports_cached_tokens", True):
        assert stats.cached_tokens >= len(request.prompt_ids) // 2
    else:  # a backend that cannot tell must not claim reuse
        assert stats.cached_tokens == 0


def test_describe_says_what_runs(engine):
    info = engine.describe()
    assert info["backend"] == engine.name
    assert engine.max_seq > 0 and info["max_seq"] == engine.max_seq
    assert info["can_heal"] == engine.can_heal


@pytest.mark.parametrize("backend", ["trtllm", "lmdeploy"])
def test_language_server_on_the_api_fake_backend_answers_like_torch(backend, tmp_path, monkeypatch):
    """The real `completer serve --stdio` with `--backend trtllm|lmdeploy`, the package being the API
    fake on PYTHONPATH (the server is a subprocess): a keystroke gets the suggestion the torch
    backend gives for the same text."""
    import asyncio

    from completer.replay.editor_client import EditorClient
    from tests.conftest import server_command
    from tests.fakes import FAKES_DIR

    text = "import os\n\n\ndef list_files(root):\n    names = []\n    for name in os.listdir(root):\n        \n"

    async def suggestion(*flags) -> str:
        # The generation is compared: no reranking (backends that cannot score show their text ungated).
        client = EditorClient(server_command("--model", str(MODEL), "--max-tokens", "6", "--no-reuse", "--no-rerank",
                                             *flags),
                              "file:///work/a.py", text)
        await client.start()
        try:
            await client.wait_ready(timeout=60)
            line, col = client.insert(6, 8, "names")
            await client.complete(line, col, timeout=30)  # the fakes load their model on first use
            line, col = client.insert(line, col, ".")
            answer = await client.complete(line, col, timeout=30)
            assert (await client.stats())["engineInfo"]["backend"] == (flags[1] if flags else "torch")
            return answer.text
        finally:
            await client.stop()

    monkeypatch.setenv("PYTHONPATH", f"{FAKES_DIR}:{ROOT}")
    fake = asyncio.run(suggestion("--backend", backend, "--device", "cuda"))
    torch_text = asyncio.run(suggestion())
    assert fake and fake == torch_text
