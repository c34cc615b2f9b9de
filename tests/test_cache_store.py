"""The store: key stability, entry layout (safetensors + JSON only), reuse, locations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from interp.activations import activation_key, get_activations
from interp.cache import open_entry
from interp.cache import store as cache_store
from interp.cache.store import (
    CACHE_FORMAT,
    ENV_CACHE_DIR,
    entry_key,
    key_inputs,
    list_entries,
    resolve_cache_dir,
    sha256_file,
    verify_entry,
)
from interp.errors import InterpError
from interp_app.options import ExperimentConfig, make_prompts

BASE = {
    "fingerprint": "ab" * 32,
    "model_dtype": "float32",
    "token_ids": [[1, 2, 3], [4, 5, 6, 7]],
    "positions": [[2], [3]],
    "hooks": ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
    "role": "query",
    "dtype": "float32",
}


def _prompts(n: int = 3, seed: int = 0):
    return make_prompts(ExperimentConfig(model="tiny-llama", task_set="ab", n_prompts=n, seed=seed,
                                         examples_per_task=2))


def test_key_is_stable_across_processes() -> None:
    key = entry_key(key_inputs(**BASE))
    code = (
        "import json,sys; from interp.cache.store import entry_key, key_inputs; "
        "print(entry_key(key_inputs(**json.loads(sys.argv[1]))))"
    )
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, json.dumps(BASE)], capture_output=True, text=True,
                             env=env, timeout=120, check=True)
        assert out.stdout.strip() == key
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize("change", [
    {"fingerprint": "cd" * 32},
    {"model_dtype": "bfloat16"},
    {"token_ids": [[1, 2, 3], [4, 5, 6, 8]]},
    {"token_ids": [[4, 5, 6, 7], [1, 2, 3]], "positions": [[3], [2]]},
    {"positions": [[1], [3]]},
    {"hooks": ["blocks.0.hook_resid_post"]},
    {"hooks": ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"]},
    {"role": "last"},
    {"dtype": "bfloat16"},
    {"format_version": CACHE_FORMAT + 1},
])
def test_any_changed_input_changes_the_key(change) -> None:
    assert entry_key(key_inputs(**{**BASE, **change})) != entry_key(key_inputs(**BASE))


def test_model_level_key(tiny_llama, tiny_model) -> None:
    prompts = _prompts()
    key = activation_key(tiny_llama, prompts, ["resid_post"])
    assert activation_key(tiny_llama, prompts, ["resid_post"]) == key
    # Same selection spelled differently: same content, same key.
    assert activation_key(tiny_llama, prompts, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]) == key
    others = {
        activation_key(tiny_llama, _prompts(seed=1), ["resid_post"]),
        activation_key(tiny_llama, prompts[:2], ["resid_post"]),
        activation_key(tiny_llama, prompts, ["resid_post"], layers=[0]),
        activation_key(tiny_llama, prompts, ["resid_pre"]),
        activation_key(tiny_llama, prompts, ["resid_post"], positions="separators"),
        activation_key(tiny_llama, prompts, ["resid_post"], dtype=torch.float16),
    }
    if tiny_model.name != "tiny-llama":
        others.add(activation_key(tiny_model, prompts, ["resid_post"]))
    assert key not in others and len(others) == (7 if tiny_model.name != "tiny-llama" else 6)


def test_entry_layout_is_safetensors_and_json(tiny_llama, tmp_path) -> None:
    prompts = _prompts(n=3)
    acts = get_activations(tiny_llama, prompts, ["resid_post", "z"], positions="separators", cache_dir=tmp_path,
                           batch_size=2, show_progress=False)
    entry = tmp_path / acts.key
    assert acts.path == entry and entry.is_dir()
    names = sorted(p.name for p in entry.iterdir())
    assert names == ["batch-00000.safetensors", "batch-00001.safetensors", "meta.json", "prompts.jsonl"]
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["key"] == acts.key == entry_key(meta["key_inputs"])
    assert meta["model"]["fingerprint"] == tiny_llama.fingerprint
    assert meta["prompt_ids"] == [p.prompt_id for p in prompts]
    assert meta["tasks"] == [sorted(p.answers) for p in prompts]
    assert meta["role"] == "separators" and meta["n_prompts"] == 3
    assert {"torch", "safetensors", "python"} <= set(meta["created_by"])
    assert meta["shapes"]["blocks.1.attn.hook_z"] == list(acts["blocks.1.attn.hook_z"].shape)
    for name, info in meta["files"].items():
        assert sha256_file(entry / name) == info["sha256"]
        assert (entry / name).stat().st_size == info["bytes"]
    # Shards are plain safetensors (memory-mappable), one per batch of prompts.
    with safe_open(str(entry / "batch-00001.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(acts.keys())
        torch.testing.assert_close(f.get_tensor("blocks.0.hook_resid_post"), acts["blocks.0.hook_resid_post"][2:])
        assert json.loads(f.metadata()["interp_cache"]) == {"key": acts.key, "prompts": [2, 3]}
    records = [json.loads(line) for line in (entry / "prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"]["text"] for r in records] == [p.text for p in prompts]
    assert verify_entry(entry) == []


def test_no_pickle_in_the_cache_code() -> None:
    root = Path(cache_store.__file__).parents[1]
    for path in [root / "activations.py", *sorted((root / "cache").glob("*.py"))]:
        text = path.read_text()
        for banned in ("import pickle", "torch.save(", "torch.load(", "np.load(", "pickle.load"):
            assert banned not in text, f"{banned} in {path}"


def test_reuse_ignores_batch_size_and_open_entry(tiny_llama, tmp_path) -> None:
    prompts = _prompts(n=3)
    first = get_activations(tiny_llama, prompts, ["resid_post"], cache_dir=tmp_path, batch_size=2,
                            show_progress=False)
    again = get_activations(tiny_llama, prompts, ["resid_post"], cache_dir=tmp_path, batch_size=1,
                            show_progress=False)
    assert (first.status, again.status) == ("computed", "reused") and first.key == again.key
    opened = open_entry(first.key[:8], cache_dir=tmp_path)
    assert opened.status == "reused" and opened.prompt_ids == first.prompt_ids
    for name in first.keys():
        assert torch.equal(opened[name], first[name])
    assert torch.equal(opened.positions, first.positions)
    with pytest.raises(InterpError, match="no published entry"):
        open_entry("0000", cache_dir=tmp_path)
    [info] = list_entries(tmp_path)
    assert info.state == "ok" and info.summary["prompts"] == 3 and info.summary["model"] == "tiny-llama"


def test_cache_dir_resolution(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    repo = Path(cache_store.__file__).resolve().parents[2]
    assert resolve_cache_dir() == repo / "cached_activations"
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    # Outside a checkout: $INTERP_HOME/activations.
    monkeypatch.delenv(ENV_CACHE_DIR)
    monkeypatch.setattr(cache_store, "_checkout_root", lambda: None)
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == tmp_path / "home" / "activations"
