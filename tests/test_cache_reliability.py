"""Reliability of the store: SIGKILL resume, concurrent builders, corruption, disk/permission errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from interp.activations import activation_key, collect_activations, get_activations
from interp.cache import open_entry
from interp.cache import store as cache_store
from interp.cache.store import CacheCorruptError, sha256_file, verify_entry
from interp.errors import InterpError
from interp_app.cli import main
from interp_app.options import ExperimentConfig, make_prompts

HOOKS = ["resid_post", "attn.hook_z"]
ROLE = "separators"


def _prompts(n: int):
    return make_prompts(ExperimentConfig(model="tiny-llama", task_set="ab", n_prompts=n, seed=0, examples_per_task=2))


# `interp cache build` in another process, with a hook after every stored shard: SIGKILL itself after
# DIE_AFTER shards (0: never), or sleep DELAY seconds (what the environment variables used to do).
_BUILDER = """
import os, signal, sys, time
from interp_app.commands.cache import CacheBuildConfig, build
cache, n, die_after, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def on_shard(written):
    time.sleep(delay)
    if die_after and written >= die_after:
        os.kill(os.getpid(), signal.SIGKILL)

config = CacheBuildConfig(model="tiny-llama", task_set="ab", n_prompts=n, seed=0, examples_per_task=2,
                          hooks=%r, positions=%r, batch_size=1, cache_dir=cache)
acts = build(config, show_progress=False, on_shard=on_shard)
print(acts.status, acts.key)
"""


def _build_cmd(cache: Path, n: int, die_after: int = 0, delay: float = 0.0) -> list[str]:
    return [sys.executable, "-c", _BUILDER % (HOOKS, ROLE), str(cache), str(n), str(die_after), str(delay)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERP_CACHE_")}
    return {**env, "INTERP_NO_PROGRESS": "1", **extra}


def _shards(path: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_ino, sha256_file(p)) for p in sorted(path.glob("batch-*.safetensors"))}


def test_sigkill_mid_build_resumes_to_identical_tensors(tiny_llama, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    killed = subprocess.run(_build_cmd(cache, 4, die_after=2), env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    prompts = _prompts(4)
    key = activation_key(tiny_llama, prompts, HOOKS, positions=ROLE)
    partial = cache / f"{key}.partial"
    assert not (cache / key).exists(), "a killed build must not publish"
    before = _shards(partial)
    assert sorted(before) == ["batch-00000.safetensors", "batch-00001.safetensors"]
    assert sorted(json.loads((partial / "progress.json").read_text())["shards"]) == sorted(before)
    with pytest.raises(InterpError, match="no published entry"):
        open_entry(key, cache_dir=cache)  # a partial build is never served

    resumed = get_activations(tiny_llama, prompts, HOOKS, positions=ROLE, cache_dir=cache, batch_size=1,
                              show_progress=False)
    assert resumed.status == "computed" and resumed.key == key
    assert "resumed 2 completed batches" in capsys.readouterr().err
    after = _shards(cache / key)
    assert len(after) == 4 and not partial.exists()
    for name, (inode, digest) in before.items():  # the completed shards were kept, not recomputed
        assert after[name] == (inode, digest)

    # An uninterrupted build ends with byte-identical shards and equal tensors.
    fresh = get_activations(tiny_llama, prompts, HOOKS, positions=ROLE, cache_dir=tmp_path / "fresh",
                            batch_size=1, show_progress=False)
    assert {n: d for n, (_, d) in _shards(fresh.path).items()} == {n: d for n, (_, d) in after.items()}
    memory = collect_activations(tiny_llama, prompts, HOOKS, positions=ROLE, show_progress=False)
    for name in memory.keys():
        assert torch.equal(resumed[name], memory[name]), name
    assert verify_entry(cache / key) == []


def test_resume_drops_damaged_and_unlisted_shards(tiny_llama, tmp_path, monkeypatch) -> None:
    prompts = _prompts(4)
    calls = []

    def interrupt(written: int) -> None:
        calls.append(written)
        if written == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_activations(tiny_llama, prompts, HOOKS, positions=ROLE, cache_dir=tmp_path, batch_size=1,
                        show_progress=False, on_shard=interrupt)
    [partial] = tmp_path.glob("*.partial")
    with open(partial / "batch-00001.safetensors", "r+b") as f:  # bit rot in a listed shard
        f.seek(100)
        f.write(b"\xff\xff")
    (partial / ".batch-00003.safetensors.tmp-999").write_bytes(b"half a shard")  # a write cut short
    (partial / "batch-00003.safetensors").write_bytes(b"not listed in progress.json")
    kept_inode = (partial / "batch-00000.safetensors").stat().st_ino
    acts = get_activations(tiny_llama, prompts, HOOKS, positions=ROLE, cache_dir=tmp_path, batch_size=1,
                           show_progress=False)
    assert (acts.path / "batch-00000.safetensors").stat().st_ino == kept_inode
    assert sorted(p.name for p in acts.path.iterdir()) == [
        "batch-00000.safetensors", "batch-00001.safetensors", "batch-00002.safetensors", "batch-00003.safetensors",
        "meta.json", "prompts.jsonl"]
    memory = collect_activations(tiny_llama, prompts, HOOKS, positions=ROLE, show_progress=False)
    for name in memory.keys():
        assert torch.equal(acts[name], memory[name]), name
    assert verify_entry(acts.path) == []


def test_two_processes_building_the_same_entry(tiny_llama, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    prompts = _prompts(3)
    key = activation_key(tiny_llama, prompts, HOOKS, positions=ROLE)
    other = subprocess.Popen(_build_cmd(cache, 3, delay=2), env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (cache / f"{key}.partial" / "progress.json").exists():  # the other builder holds the lock
            assert other.poll() is None, other.communicate()
            assert time.time() < deadline, "the other builder never started"
            time.sleep(0.1)
        mine = get_activations(tiny_llama, prompts, HOOKS, positions=ROLE, cache_dir=cache, batch_size=1,
                               show_progress=False)
        out, err = other.communicate(timeout=240)
    finally:
        if other.poll() is None:
            other.kill()
    assert other.returncode == 0, err
    assert f"computed {key}" in out  # the same key in another process
    assert mine.status == "reused" and mine.key == key
    assert "waiting for another process" in capsys.readouterr().err
    assert verify_entry(cache / key) == []
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [key]
    memory = collect_activations(tiny_llama, prompts, HOOKS, positions=ROLE, show_progress=False)
    for name in memory.keys():
        assert torch.equal(mine[name], memory[name]), name


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped-bit": lambda e: _flip(e / "batch-00001.safetensors"),
    "truncated": lambda e: (e / "batch-00000.safetensors").write_bytes(
        (e / "batch-00000.safetensors").read_bytes()[:-17]),
    "missing-shard": lambda e: (e / "batch-00001.safetensors").unlink(),
    "meta-edited": lambda e: (e / "meta.json").write_text(
        (e / "meta.json").read_text().replace('"n_prompts": 3', '"n_prompts": 2')),
    "prompts-edited": lambda e: _flip(e / "prompts.jsonl"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):  # noqa: ANN201
    from conftest import load_cached

    model = load_cached("tiny-llama")
    cache = tmp_path_factory.mktemp("pristine")
    acts = get_activations(model, _prompts(3), HOOKS, positions=ROLE, cache_dir=cache, batch_size=2,
                           show_progress=False, log=False)
    return acts


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_corruption_is_detected_never_used(tiny_llama, tmp_path, pristine, damage, monkeypatch) -> None:
    entry = tmp_path / pristine.key
    shutil.copytree(pristine.path, entry)
    DAMAGE[damage](entry)
    assert verify_entry(entry)
    with pytest.raises(CacheCorruptError) as err:
        get_activations(tiny_llama, _prompts(3), HOOKS, positions=ROLE, cache_dir=tmp_path, batch_size=2,
                        show_progress=False)
    message = str(err.value)
    assert pristine.key[:12] in message and "interp cache verify" in message and "--repair" in message
    assert "\n" not in message
    # Repair is the explicit parameter (`--repair` on the command line); no environment variable turns it on.
    repaired = get_activations(tiny_llama, _prompts(3), HOOKS, positions=ROLE, cache_dir=tmp_path,
                               batch_size=2, show_progress=False, repair=True)
    assert repaired.status == "computed" and verify_entry(entry) == []
    for name in pristine.keys():
        assert torch.equal(repaired[name], pristine[name]), name
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [pristine.key]


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("failure", ["disk-full", "permission"])
def test_write_errors_are_one_clear_line(tiny_llama, tmp_path, monkeypatch, failure) -> None:
    cache = tmp_path / "cache"
    (tmp_path / "neighbour.txt").write_text("untouched")
    outside = _tree(tmp_path)
    if failure == "disk-full":
        def fail(*args: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(cache_store.os, "fsync", fail)
        expected = "No space left on device"
    else:
        def fail(src: object, dst: object) -> None:
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))

        monkeypatch.setattr(cache_store.os, "replace", fail)
        expected = "Permission denied"
    with pytest.raises(InterpError) as err:
        get_activations(tiny_llama, _prompts(2), HOOKS, positions=ROLE, cache_dir=cache, batch_size=1,
                        show_progress=False)
    monkeypatch.undo()
    message = str(err.value)
    assert expected in message and str(cache) in message and "--cache-dir" in message and "\n" not in message
    assert not [p for p in cache.rglob("*") if ".tmp-" in p.name], "temporary files left behind"
    assert not (cache / activation_key(tiny_llama, _prompts(2), HOOKS, positions=ROLE)).exists()
    assert {p for p in _tree(tmp_path) if not p.startswith("cache")} == outside
    assert (tmp_path / "neighbour.txt").read_text() == "untouched"
    # Once the disk has room again, the same call succeeds.
    acts = get_activations(tiny_llama, _prompts(2), HOOKS, positions=ROLE, cache_dir=cache, batch_size=1,
                           show_progress=False)
    assert acts.status == "computed" and verify_entry(acts.path) == []


def test_unusable_cache_dir_via_cli(tmp_path, capsys) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    code = main(["cache", "build", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "1",
                 "--examples-per-task", "2", "--cache-dir", str(blocker / "cache")])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "cannot write the activation cache" in err[0]
    assert blocker.read_text() == "a file where the cache directory should be"
