"""``interp cache build|ls|verify|rm``."""

from __future__ import annotations

import json

import pytest

from interp.activations import activation_key
from interp_app.cli import main
from interp_app.options import ExperimentConfig, make_prompts

BUILD = ["cache", "build", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "3", "--examples-per-task", "2",
         "--hooks", "resid_post,attn.hook_z", "--layers", "1", "--positions", "separators", "--batch-size", "2"]


def _key(model) -> str:  # noqa: ANN001
    prompts = make_prompts(ExperimentConfig(model="tiny-llama", task_set="ab", n_prompts=3, examples_per_task=2))
    return activation_key(model, prompts, ["resid_post", "attn.hook_z"], layers=[1], positions="separators")


def test_cache_group_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["cache", "--help"])
    out = capsys.readouterr().out
    for sub in ("build", "ls", "verify", "rm"):
        assert sub in out


def test_build_ls_verify_repair_rm(tiny_llama, tmp_path, capsys, monkeypatch) -> None:
    cache = tmp_path / "cache"
    key = _key(tiny_llama)
    assert main([*BUILD, "--cache-dir", str(cache)]) == 0
    out, err = capsys.readouterr()
    assert f"computed {key}" in out and "KB per prompt" in out
    assert f"activations {key[:12]}: computed (3 prompts, 2 hooks" in err
    assert main([*BUILD, "--cache-dir", str(cache)]) == 0
    out, err = capsys.readouterr()
    assert f"reused {key}" in out and f"activations {key[:12]}: reused" in err
    meta = json.loads((cache / key / "meta.json").read_text())
    assert meta["recipe"]["task_set"] == "ab" and meta["recipe"]["hooks"] == ["resid_post", "attn.hook_z"]

    # ls: through the environment variable this time.
    monkeypatch.setenv("INTERP_CACHE_DIR", str(cache))
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert key[:12] in out and "tiny-llama" in out and "separators" in out and "1 entries" in out
    assert main(["cache", "ls", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["key"] == key and row["prompts"] == 3 and row["hooks"] == 2 and row["state"] == "ok"
    assert row["bytes"] == sum(f.stat().st_size for f in (cache / key).iterdir())

    assert main(["cache", "verify"]) == 0
    assert f"ok      {key[:12]}" in capsys.readouterr().out
    shard = cache / key / "batch-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-5])  # truncated
    assert main(["cache", "verify", key[:8]]) == 1
    out = capsys.readouterr().out
    assert f"BAD     {key[:12]}: batch-00001.safetensors is" in out and "truncated" in out
    assert main([*BUILD]) == 2  # a damaged entry is never used silently
    assert "is corrupted" in capsys.readouterr().err
    assert main(["cache", "verify", "--repair"]) == 0
    assert f"repaired {key[:12]}" in capsys.readouterr().out
    assert main(["cache", "verify"]) == 0
    capsys.readouterr()

    # rm: needs a selector; --older-than and --dry-run; --partial; by key prefix.
    assert main(["cache", "rm"]) == 2
    assert main(["cache", "rm", "--older-than", "1h"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    partial = cache / ("f" * 64 + ".partial")
    partial.mkdir()
    (partial / "progress.json").write_text(json.dumps({"n_prompts": 4, "batch_size": 1, "shards": {}}))
    assert main(["cache", "ls"]) == 0
    assert "partial" in capsys.readouterr().out
    assert main(["cache", "rm", "--partial", "--dry-run"]) == 0
    assert "would remove ffffffffffff (partial)" in capsys.readouterr().out and partial.exists()
    assert main(["cache", "rm", "--partial"]) == 0
    assert not partial.exists() and (cache / key).exists()
    capsys.readouterr()
    assert main(["cache", "rm", "zz"]) == 2
    assert main(["cache", "rm", "0123"]) == 2
    assert main(["cache", "rm", key[:10]]) == 0
    assert f"removed {key[:12]}" in capsys.readouterr().out
    assert not (cache / key).exists()
    assert main(["cache", "ls"]) == 0
    assert "no entries" in capsys.readouterr().out


def test_rm_older_than(tiny_llama, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    assert main([*BUILD, "--cache-dir", str(cache)]) == 0
    key = _key(tiny_llama)
    meta_path = cache / key / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert main(["cache", "rm", "--older-than", "1d", "--cache-dir", str(cache)]) == 0
    assert (cache / key).exists()
    # Entries are aged by their recorded creation time.
    meta["created"] = "2020-01-01T00:00:00+00:00"
    from interp.cache.store import _meta_checksum

    meta["checksum"] = _meta_checksum(meta)
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["cache", "rm", "--older-than", "1d", "--cache-dir", str(cache)]) == 0
    assert f"removed {key[:12]}" in capsys.readouterr().out and not (cache / key).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
