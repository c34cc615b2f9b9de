"""No file steers the tool: a cache entry's own files cannot lead reads, writes or model loads elsewhere.

Entries accept only the file names the format defines (``batch-NNNNN.safetensors``,
``prompts.jsonl``, ``meta.json``); absolute paths, ``..`` and symlinks are refused (``lstat``);
``cache verify --repair`` reloads only a registered model spec or the local directory the entry
recorded — a hub id written into a cache file is never resolved.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from interp.cache.store import CacheCorruptError, _meta_checksum, load_entry, verify_entry
from interp_app.cli import main


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:  # noqa: ANN001
    from interp.activations import get_activations
    from interp.prompts import build_prompts
    from interp.tasks import get_task_set
    from tests.conftest import load_cached

    cache = tmp_path_factory.mktemp("cache")
    prompts = build_prompts(get_task_set("ab"), n_prompts=2, examples_per_task=2)
    acts = get_activations(load_cached("tiny-llama"), prompts, ["resid_post"], cache_dir=cache, batch_size=1,
                           show_progress=False)
    return Path(acts.path)


@pytest.fixture
def entry(built: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    copy = cache / built.name
    shutil.copytree(built, copy)
    return copy


def rewrite_meta(entry: Path, change) -> None:  # noqa: ANN001
    meta = json.loads((entry / "meta.json").read_text())
    change(meta)
    meta["checksum"] = _meta_checksum(meta)  # an attacker can recompute the checksum: names are checked anyway
    (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/hostname", "sub/batch-00000.safetensors",
                                  "batch-00000.safetensors/../../x", "notes.txt", ""])
def test_file_names_outside_the_format_are_refused(entry: Path, tmp_path: Path, capsys, name: str) -> None:
    outside = tmp_path / "outside.safetensors"
    shutil.copy(entry / "batch-00000.safetensors", outside)

    def plant(meta: dict) -> None:
        meta["files"][name] = dict(meta["files"]["batch-00000.safetensors"])

    rewrite_meta(entry, plant)
    problems = verify_entry(entry)
    assert problems and "outside the format" in problems[0]
    with pytest.raises(CacheCorruptError):
        load_entry(entry)
    with pytest.raises(CacheCorruptError):
        load_entry(entry, verify=False)
    assert main(["cache", "verify", "--cache-dir", str(entry.parent)]) == 1
    assert "BAD" in capsys.readouterr().out


def test_a_symlinked_shard_is_refused_even_with_matching_bytes(entry: Path, tmp_path: Path) -> None:
    shard = entry / "batch-00001.safetensors"
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(shard, outside)
    os.symlink(outside, shard)  # same bytes, same checksum: only lstat tells
    problems = verify_entry(entry)
    assert any("symlink" in p for p in problems)
    with pytest.raises(CacheCorruptError):
        load_entry(entry, verify=False)


def test_a_symlinked_entry_directory_is_refused(entry: Path, tmp_path: Path) -> None:
    away = tmp_path / "away"
    shutil.move(entry, away)
    os.symlink(away, entry)
    assert any("symlink" in p for p in verify_entry(entry))
    # Removing it removes the link, never what it points to.
    assert main(["cache", "rm", entry.name[:12], "--cache-dir", str(entry.parent)]) == 0
    assert not os.path.lexists(entry) and (away / "meta.json").exists()


def test_a_partial_build_never_touches_files_outside_its_directory(entry: Path, tmp_path: Path) -> None:
    from interp.cache.store import _load_progress

    partial = entry.parent / f"{entry.name}.partial"
    partial.mkdir()
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"keep")
    progress = {"key": entry.name, "batch_size": 1, "n_prompts": 2,
                "shards": {"../../victim.safetensors": {"bytes": 4, "sha256": "x"}, "/etc/passwd": {}}}
    (partial / "progress.json").write_text(json.dumps(progress))
    assert _load_progress(partial, entry.name, 1, 2)["shards"] == {}
    assert victim.read_bytes() == b"keep"


def test_repair_never_resolves_a_hub_id_from_a_cache_file(entry: Path, capsys, monkeypatch) -> None:
    import huggingface_hub

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a cache file made the tool contact the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)

    def point_at_hub(meta: dict) -> None:
        meta["model"]["name"] = "someone/evil-model"
        meta["model"].pop("local_dir", None)

    rewrite_meta(entry, point_at_hub)
    (entry / "batch-00000.safetensors").write_bytes(b"damaged")
    assert main(["cache", "verify", "--repair", "--cache-dir", str(entry.parent)]) == 1
    out = capsys.readouterr().out
    assert "cannot repair" in out and "never fetched" in out


def test_repair_from_the_recorded_local_directory(entry: Path, tmp_path: Path, capsys) -> None:
    from interp.models import resolve_model_dir

    local = tmp_path / "my-model"
    shutil.copytree(resolve_model_dir("tiny-llama"), local)

    def point_at_local(meta: dict) -> None:
        meta["model"]["name"] = "someone/evil-model"  # the name is never used: the recorded directory is
        meta["model"]["local_dir"] = str(local)

    rewrite_meta(entry, point_at_local)
    (entry / "batch-00000.safetensors").write_bytes(b"damaged")
    main(["cache", "verify", "--repair", "--cache-dir", str(entry.parent)])
    out = capsys.readouterr().out
    assert "repaired" in out
