"""The real-model ladder: fetching refuses anything but the pinned bytes; fetched models match plain HF.

The fetch logic is tested on synthetic wheels (no download). Parity runs on every ladder model
that is fetched on this machine (``interp models fetch NAME``; CI fetches gemma3-270m and
qwen2.5-0.5b) and is skipped with the fetch command otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest
import torch

from interp.errors import InterpError
from interp.ladder import LADDER, LadderModel, is_fetched, join_parts, require_fetched


def _wheel(path: Path, dist: str, files: dict[str, bytes]) -> Path:
    """A minimal wheel whose RECORD hashes ``files`` (as pip and the index would ship it)."""
    record = []
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        z.writestr(f"{dist}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def _fake_model(tmp_path: Path, parts: list[bytes], tamper: int | None = None) -> tuple[LadderModel, list[Path]]:
    wheels = []
    for i, data in enumerate(parts, 1):
        files = {f"fake_part{i}/__init__.py": b"raise SystemExit('never imported')\n",
                 f"fake_part{i}/data/part{i:02d}.bin": data}
        wheel = _wheel(tmp_path / f"fake_part{i}-1.0-py3-none-any.whl", f"fake_part{i}", files)
        if tamper == i:  # rewrite the data but keep the old RECORD: a corrupted or swapped package
            with zipfile.ZipFile(wheel) as z:
                items = {n: z.read(n) for n in z.namelist()}
            items[f"fake_part{i}/data/part{i:02d}.bin"] = data[::-1] + b"x"
            with zipfile.ZipFile(wheel, "w") as z:
                for n, d in items.items():
                    z.writestr(n, d)
        wheels.append(wheel)
    joined = b"".join(parts)
    model = LadderModel(name="fake", description="", gguf_name="fake.gguf", size=len(joined),
                        sha256=hashlib.sha256(joined).hexdigest(), license="test",
                        parts=tuple((f"fake-part{i}==1.0", f"fake_part{i}/data/part{i:02d}.bin")
                                    for i in range(1, len(parts) + 1)))
    return model, wheels


def test_join_verifies_and_joins(tmp_path: Path) -> None:
    parts = [b"GGUF" + bytes(range(256)) * 3, b"second part", b"third"]
    model, wheels = _fake_model(tmp_path, parts)
    target = tmp_path / "out.gguf"
    join_parts(model, wheels, target)
    assert target.read_bytes() == b"".join(parts)


def test_a_part_that_does_not_match_its_record_is_refused_and_nothing_left(tmp_path: Path) -> None:
    model, wheels = _fake_model(tmp_path, [b"aaaa", b"bbbb", b"cccc"], tamper=2)
    target = tmp_path / "out.gguf"
    with pytest.raises(InterpError, match=r"package fake-part2==1.0: .* does not match the hash in its own RECORD"):
        join_parts(model, wheels, target)
    assert not target.exists()


def test_a_join_that_differs_from_the_pin_is_refused_and_deleted(tmp_path: Path) -> None:
    model, wheels = _fake_model(tmp_path, [b"aaaa", b"bbbb"])
    wrong_pin = LadderModel(**{**model.__dict__, "sha256": "0" * 64})
    target = tmp_path / "out.gguf"
    with pytest.raises(InterpError, match="not the pinned .* refused \\(file deleted\\)"):
        join_parts(wrong_pin, wheels, target)
    assert not target.exists()


def test_unfetched_and_unknown_models_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp.models import load_model

    monkeypatch.setenv("INTERP_HOME", str(tmp_path))
    with pytest.raises(InterpError, match=r"run `interp models fetch qwen2.5-0.5b`"):
        load_model("qwen2.5-0.5b")
    with pytest.raises(InterpError, match="use one of gemma3-270m, qwen2.5-0.5b, qwen2.5-1.5b"):
        require_fetched("qwen-72b")


def test_fetch_command_refuses_unknown_names_before_downloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import interp.ladder as ladder
    from interp_app.cli import main

    monkeypatch.setenv("INTERP_HOME", str(tmp_path))
    monkeypatch.setattr(ladder, "_download", lambda *a: pytest.fail("downloaded"))
    assert main(["models", "fetch", "gemma3-270m", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown ladder model 'nope'")


@pytest.mark.integration
@pytest.mark.parametrize("name", list(LADDER))
def test_fetched_model_matches_plain_hf(name: str) -> None:
    if not is_fetched(name):
        pytest.skip(f"{name} is not fetched here: `interp models fetch {name}` (CI fetches gemma3-270m, qwen2.5-0.5b)")
    from transformers import AutoModelForCausalLM

    from interp.models import load_model
    from interp.prompts import build_prompts
    from interp.scoring import score_prompts, score_prompts_naive
    from interp.tasks import get_task_set

    model = load_model(name)
    assert model.prepend_bos == name.startswith("gemma")  # Gemma uses a BOS token; Qwen does not
    ids = torch.tensor([model.encode_prompt("The capital of France is Paris. The capital of Spain is")])
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(str(model.path), dtype=torch.float32,
                                                     attn_implementation="eager")(ids).logits
        assert (model.hf_model(ids).logits - plain).abs().max() < 1e-4
        assert (model.bridge(ids) - plain).abs().max() < 1e-4
    del plain
    prompts = build_prompts(get_task_set("country"), n_prompts=1, examples_per_task=6, seed=0)
    fast = score_prompts(model, prompts, show_progress=False)
    assert (fast["logprob"] - score_prompts_naive(model, prompts)["logprob"]).abs().max() < 1e-4


def test_disk_full_while_dequantising_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import interp.ladder as ladder

    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    model, wheels = _fake_model(tmp_path, [b"aaaa", b"bbbb"])
    monkeypatch.setitem(ladder.LADDER, "fake", model)
    monkeypatch.setattr(ladder, "_download", lambda requirements, dest: wheels)

    def full(gguf: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ladder, "_dequantise", full)
    with pytest.raises(InterpError, match="No space left on device.*nothing was published"):
        ladder.fetch("fake")
    models_dir = tmp_path / "home" / "models"
    assert not ladder.is_fetched("fake") and list(models_dir.iterdir()) == []  # no half-built directory, no temp
