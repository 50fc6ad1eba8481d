"""The shipped embedded models: loadable by transformers and by our engine, with the same logits
(this pins the file format and the engine's correctness on the real weights)."""

import json

import pytest
import torch

from completer.completion.fim import detect_template
from completer.engines.model_dirs import SHIPPED_DIR, default_model_name, resolve_model, shipped_models
from completer.engines.torch.model import load_model
from completer.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")
SHIPPED = [name for name in ("embedded", "embedded-draft") if name in shipped_models()]


def test_embedded_model_is_the_default():
    assert default_model_name() == "embedded"


def test_a_model_directory_resolves_to_an_absolute_path(monkeypatch):
    """Background builders and cache entries run elsewhere: `--model ./mine` must still mean ./mine."""
    monkeypatch.chdir(SHIPPED_DIR)
    assert resolve_model("./embedded-draft") == (SHIPPED_DIR / "embedded-draft").resolve()


@pytest.mark.parametrize("name", SHIPPED)
def test_logits_agree_with_transformers(name):
    path = SHIPPED_DIR / name
    tok = Tokenizer(path)
    text = "import os\n\n\ndef list_python_files(root):\n    for name in os.listdir(root):\n        if name.endswith("
    ids = torch.tensor([tok.encode(text)])
    ours = load_model(path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert int(a[0, -1].argmax()) == int(b[0, -1].argmax())


@pytest.mark.parametrize("name", SHIPPED)
def test_hugging_face_layout(name):
    path = SHIPPED_DIR / name
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    for f in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (path / f).exists()
    tok = Tokenizer(path)
    assert detect_template(tok).name == "qwen"
    for special in ("<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                    "<|file_sep|>", "<|repo_name|>"):
        assert tok.id_of(special) is not None
    hf_tok = transformers.AutoTokenizer.from_pretrained(path)
    sample = "    def total(self):\n        return self.price * self.quantity\n"
    assert hf_tok(sample, add_special_tokens=False)["input_ids"] == tok.encode(sample)


def test_target_and_draft_share_the_tokenizer():
    if len(SHIPPED) < 2:
        pytest.skip("draft not shipped")
    a = (SHIPPED_DIR / "embedded" / "tokenizer.json").read_bytes()
    b = (SHIPPED_DIR / "embedded-draft" / "tokenizer.json").read_bytes()
    assert a == b
