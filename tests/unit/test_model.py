"""Our Llama/Qwen2 implementation against transformers on small random configs."""

import json

import pytest
import torch

from completer.engines import openai_compat as openai_engine
from completer.engines.model_config import ModelConfig, UnsupportedModelError, read_hf_config
from completer.engines.torch.model import Transformer, init_weights, load_model, save_model

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "llama-gqa-untied": ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                    rope_theta=10000.0, rms_norm_eps=1e-5),
    "llama-mha-tied": ModelConfig(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                                  num_attention_heads=3, num_key_value_heads=3, max_position_embeddings=128,
                                  rope_theta=500000.0, tie_word_embeddings=True),
    "starcoder2-layernorm-gelu-bias": ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=256,
                                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                  max_position_embeddings=128, rope_theta=100000.0,
                                                  tie_word_embeddings=True, attention_bias=True, proj_bias=True,
                                                  norm="layer", gated_mlp=False, hidden_act="gelu_pytorch_tanh",
                                                  architecture="Starcoder2ForCausalLM", sliding_window=4096),
    "qwen2-bias-gqa-tied": ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128,
                                       rope_theta=1000000.0, tie_word_embeddings=True, attention_bias=True,
                                       architecture="Qwen2ForCausalLM"),
}


def _random_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    model = Transformer(cfg)
    init_weights(model, seed, std=0.1)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # make biases and norm weights matter
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "norm" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(name, tmp_path):
    cfg = CONFIGS[name]
    save_model(_random_model(cfg), tmp_path)
    ours = load_model(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.float32).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = ours(idx)
        b = theirs(idx).logits
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_incremental_forward_equals_full(name):
    cfg = CONFIGS[name]
    model = _random_model(cfg)
    idx = torch.randint(0, cfg.vocab_size, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)
        model.setup_cache(64)
        parts = [model(idx[:, :17], start_pos=0), model(idx[:, 17:18], start_pos=17), model(idx[:, 18:], start_pos=18)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_kv_caches_are_the_layers_caches_in_order():
    cfg = CONFIGS["llama-gqa-untied"]
    model = _random_model(cfg)
    model.setup_cache(16)
    caches = model.kv_caches()
    assert [c is layer.self_attn.kv_cache for c, layer in zip(caches, model.model.layers)] == [True] * 2
    assert caches[0].k.shape == (1, cfg.num_key_value_heads, 16, cfg.head_dim)


def test_rollback_overwrites_stale_cache_entries():
    """Verifying a rejected draft leaves stale K/V behind; recomputing from an earlier start must ignore it."""
    cfg = CONFIGS["llama-gqa-untied"]
    model = _random_model(cfg)
    model.setup_cache(64)
    idx = torch.randint(0, cfg.vocab_size, (1, 20), generator=torch.Generator().manual_seed(3))
    other = torch.randint(0, cfg.vocab_size, (1, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        model(idx[:, :15], start_pos=0)
        model(other, start_pos=15)  # a "draft" that gets rejected
        after = model(idx[:, 15:], start_pos=15)
        full = model(idx)
    torch.testing.assert_close(after, full[:, 15:], atol=1e-5, rtol=1e-5)


def test_num_logits_returns_last_positions_only():
    cfg = CONFIGS["llama-mha-tied"]
    model = _random_model(cfg)
    idx = torch.randint(0, cfg.vocab_size, (1, 12))
    with torch.no_grad():
        full = model(idx)
        model.setup_cache(32)
        last = model(idx, start_pos=0, num_logits=1)
    assert last.shape == (1, 1, cfg.vocab_size)
    torch.testing.assert_close(last[0, 0], full[0, -1], atol=1e-5, rtol=1e-5)


def test_config_roundtrip_and_refusals(tmp_path):
    for cfg in CONFIGS.values():
        assert ModelConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
    raw = CONFIGS["llama-gqa-untied"].to_hf_dict()
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel"):
        ModelConfig.from_hf_dict({**raw, "architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(UnsupportedModelError, match="rope_scaling"):
        ModelConfig.from_hf_dict({**raw, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UnsupportedModelError, match="not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UnsupportedModelError, match="safetensors"):
        load_model(tmp_path)


def test_every_backend_reads_config_json_one_way(tmp_path):
    """config.read_hf_config: the torch, trtllm, lmdeploy and openai backends all read through it."""
    with pytest.raises(UnsupportedModelError, match="not found"):
        read_hf_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(UnsupportedModelError, match="JSON object"):
        read_hf_config(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(UnsupportedModelError, match="not valid JSON"):
        read_hf_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 1234}))
    assert read_hf_config(tmp_path) == {"max_position_embeddings": 1234}
    assert openai_engine._config_max_seq(tmp_path) == 1234


def test_cache_overflow_is_a_clear_error():
    model = _random_model(CONFIGS["llama-mha-tied"])
    model.setup_cache(8)
    with pytest.raises(ValueError, match="exceeds the cache"):
        model(torch.zeros(1, 9, dtype=torch.long), start_pos=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prepared_for_inference_matches_training_layout(name):
    """Fused projections give the same logits; bf16 decode copies stay close and are only used for
    calls of a few tokens."""
    cfg = CONFIGS[name]
    ref = _random_model(cfg)
    idx = torch.randint(0, cfg.vocab_size, (1, 20), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = ref(idx)
    fused = _random_model(cfg)
    fused.prepare_for_inference()
    fused.setup_cache(32)
    with torch.no_grad():
        got = torch.cat([fused(idx[:, :18], start_pos=0), fused(idx[:, 18:19], start_pos=18),
                         fused(idx[:, 19:], start_pos=19)], 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    mixed = _random_model(cfg)
    mixed.prepare_for_inference(torch.bfloat16, small_max_t=4)
    mixed.setup_cache(32)
    with torch.no_grad():
        prefill = mixed(idx[:, :18], start_pos=0)  # 18 tokens: the fp32 weights
        step = mixed(idx[:, 18:19], start_pos=18)  # 1 token: the bf16 copies
    torch.testing.assert_close(prefill, expected[:, :18], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step, expected[:, 18:19], atol=0.05, rtol=0.05)
    assert not torch.equal(step, expected[:, 18:19])  # the bf16 path really ran


def test_rerotated_keys_equal_keys_computed_at_the_new_position():
    from completer.engines.torch.model import rerotate_keys, rope_tables, rotate_half

    cfg = CONFIGS["qwen2-bias-gqa-tied"]
    cos, sin = rope_tables(cfg, 128)
    raw = torch.randn(2, 5, cfg.head_dim)  # [heads, positions, head_dim] before RoPE
    at = lambda p: raw * cos[p:p + 5] + rotate_half(raw) * sin[p:p + 5]  # noqa: E731
    torch.testing.assert_close(rerotate_keys(at(10), cfg, 37), at(47), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rerotate_keys(at(47), cfg, -37), at(10), atol=1e-5, rtol=1e-5)
