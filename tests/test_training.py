"""From-scratch training library: data, tokenizer, schedule, loss going down, save/reload, resume."""

from __future__ import annotations

import json
import string

import pytest
import torch
from safetensors.torch import load_file

from interp.char_tokenizer import build_char_tokenizer
from interp.errors import InterpError
from interp.models import load_model
from interp.training import Batcher, TrainConfig, count_params, lr_at, task_weights, train

TINY = dict(n_layers=1, d_model=32, n_heads=2, n_examples=8, batch_size=8, lr=3e-3, warmup_steps=5,
            log_every=5, checkpoint_every=10, seed=3)


def test_char_tokenizer_round_trips_training_text() -> None:
    tok = build_char_tokenizer()
    text = "QwErTyUi>E\n7>9\n" + string.printable.replace("\t", "").replace("\r", "").replace("\x0b", "").replace("\x0c", "")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one character, one token
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids


@pytest.mark.parametrize("task_set", ["retrieval", "bias-add"])
def test_batches_hold_one_task_per_prompt_with_correct_answers(task_set: str) -> None:
    config = TrainConfig(task_set=task_set, n_examples=6, batch_size=5)
    batcher = Batcher(config, seed=0)
    ids, labels, task = batcher.next()
    tok = build_char_tokenizer()
    for row in range(ids.shape[0]):
        text = tok.decode(ids[row].tolist())
        lines = text.split("\n")[:-1]
        assert len(lines) == 6
        h = int(task[row])  # task index = h for the full task list
        for line in lines:
            x, _, y = line.partition(">")
            if task_set == "retrieval":
                assert len(x) == 8 and len(set(x)) == 8 and y == x[h]
            else:
                assert y == str((int(x) + h) % 10)
        # Loss only on each example's answer and newline.
        kept = [i for i, v in enumerate(labels[row].tolist()) if v != -100]
        assert len(kept) == 2 * 6
        assert tok.decode([ids[row, i].item() for i in kept]).count("\n") == 6
    # Same seed, same stream.
    again, _, _ = Batcher(config, seed=0).next()
    assert torch.equal(ids, again)


def test_curriculum_samples_the_stage_tasks_then_all() -> None:
    config = TrainConfig(task_set="retrieval", n_examples=2, batch_size=400, curriculum="ret2,ret6@10;ret1,ret2,ret5@20")
    batcher = Batcher(config, seed=0)
    assert set(batcher.next(0)[2].tolist()) == {2, 6}
    assert set(batcher.next(9)[2].tolist()) == {2, 6}
    assert set(batcher.next(10)[2].tolist()) == {1, 2, 5}
    assert set(batcher.next(20)[2].tolist()) == set(range(8))
    assert set(batcher.next()[2].tolist()) == set(range(8))  # no step: the full task list (evaluation)


@pytest.mark.parametrize("curriculum, message", [
    ("ret2,ret6", "TASKS@STEP"), ("ret2,ret9@10", "unknown tasks"), ("ret2@10;ret3@5", "steps must increase"),
    ("@10", "TASKS@STEP"),
])
def test_bad_curriculum_is_one_clear_error(curriculum: str, message: str) -> None:
    with pytest.raises(InterpError, match=message):
        TrainConfig(task_set="retrieval", curriculum=curriculum).validate()


def test_skewed_task_weights() -> None:
    w = task_weights(TrainConfig(task_set="retrieval", task_skew=0.9))
    assert w[:4] == pytest.approx([0.225] * 4) and w[4:] == pytest.approx([0.025] * 4)
    assert sum(task_weights(TrainConfig(task_set="bias-add"))) == pytest.approx(1.0)


def test_wsd_schedule_shape() -> None:
    c = TrainConfig(lr=1.0, warmup_steps=10, max_steps=100, schedule="wsd", decay_frac=0.2)
    assert lr_at(c, 0) == pytest.approx(0.1)
    assert lr_at(c, 9) == pytest.approx(1.0)
    assert lr_at(c, 50) == pytest.approx(1.0)
    assert lr_at(c, 99) == pytest.approx(0.0)
    assert lr_at(c, 85) < 1.0


def test_bad_config_is_reported() -> None:
    with pytest.raises(InterpError):
        train(TrainConfig(task_set="country"))
    with pytest.raises(InterpError):
        TrainConfig(d_model=30, n_heads=4).validate()
    with pytest.raises(InterpError):
        TrainConfig(preset="nope").resolved()


def test_preset_fills_defaults_but_explicit_values_win() -> None:
    c = TrainConfig(preset="cpu-retrieval", max_steps=7).resolved()
    assert c.task_set == "retrieval" and c.max_steps == 7


def test_a_typed_flag_equal_to_the_default_survives_a_second_resolution() -> None:
    # `interp train --preset cpu-bias-add --d-model 128`: 128 is TrainConfig's default, the preset says 64.
    c = TrainConfig(preset="cpu-bias-add", d_model=128).resolved({"d_model"})
    assert c.d_model == 128 and c.n_layers == 3 and c.from_preset == "cpu-bias-add"
    assert c.resolved() == c  # train() resolves again; nothing may change


def test_few_steps_lower_the_loss_and_model_reloads_with_identical_logits(tmp_path) -> None:
    config = TrainConfig(task_set="bias-add", max_steps=40, out=str(tmp_path / "run"), **TINY)
    result = train(config, show_progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.3, losses
    assert result.n_params == count_params(config)

    info = json.loads((result.model_dir / "training_config.json").read_text())
    assert info["seed"] == 3 and info["steps"] == 40 and info["final_loss"] == pytest.approx(losses[-1])
    assert (result.model_dir / "tokenizer.json").is_file() and (result.model_dir / "model.safetensors").is_file()

    loaded = load_model(str(result.model_dir))
    assert not loaded.prepend_bos
    ids, _, _ = Batcher(config, seed=99).next()
    trained = load_file(str(result.out / "checkpoint" / "model.safetensors"))
    from interp.training import build_model

    reference = build_model(config)
    reference.load_state_dict(trained)
    reference.eval()
    with torch.no_grad():
        assert torch.equal(loaded.hf_model(ids[:2]).logits, reference(ids[:2]).logits)
        # The TransformerLens bridge sees the same weights.
        bridge_logits = loaded.bridge(ids[:1])
        assert torch.allclose(bridge_logits, reference(ids[:1]).logits, atol=1e-4)


def test_resume_after_interruption_gives_the_same_weights(tmp_path) -> None:
    base = dict(task_set="retrieval", max_steps=20, **TINY)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **base), show_progress=False)
    first = train(TrainConfig(out=str(tmp_path / "b"), stop_at_step=10, **base), show_progress=False)
    assert not first.finished and first.steps == 10
    second = train(TrainConfig(out=str(tmp_path / "b"), **base), show_progress=False)
    assert second.finished and second.steps == 20
    a = load_file(str(straight.model_dir / "model.safetensors"))
    b = load_file(str(second.model_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_different_config_cannot_reuse_a_run_dir(tmp_path) -> None:
    train(TrainConfig(task_set="bias-add", max_steps=2, out=str(tmp_path / "r"), **TINY), show_progress=False)
    with pytest.raises(InterpError):
        train(TrainConfig(task_set="retrieval", max_steps=2, out=str(tmp_path / "r"), **TINY), show_progress=False)


def test_a_stopped_wsd_run_can_branch_its_cooldown(tmp_path) -> None:
    base = dict(task_set="bias-add", **TINY)
    first = train(TrainConfig(out=str(tmp_path / "w"), max_steps=100, stop_at_step=10, **base), show_progress=False)
    assert first.steps == 10 and not first.finished
    # Resume with a shorter horizon whose decay covers exactly the 5 extra steps.
    done = train(TrainConfig(out=str(tmp_path / "w"), max_steps=15, decay_frac=5 / 15, **base), show_progress=False)
    assert done.finished and done.steps == 15
    assert done.history[-1]["lr"] == pytest.approx(0.0)


def test_training_takes_its_tasks_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered set with a TrainingSpec trains with no edit of training.py: names, h, separator, sampler."""
    import interp.tasks as tasks_module
    from interp.tasks import Task, TaskSet, TrainingSpec, get_task_set, register_task_set
    from interp.training import all_task_names, curriculum_stages, task_params, trainable_task_sets

    def sample(h: torch.Tensor, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 26, (h.shape[0], n, 2), generator=g)  # two letters; answer: the first shifted by h
        return x, (x[..., :1] + h[:, :, None]) % 26

    shift = TaskSet(
        name="shift-test", separator="=>",
        tasks=tuple(Task(f"s{k}", (lambda s, k=k: chr((ord(s[0]) - 97 + k) % 26 + 97)), params={"shift": k})
                    for k in (1, 3, 5)),
        inputs=[a + b for a in string.ascii_lowercase for b in string.ascii_lowercase],
        training=TrainingSpec(param="shift", input_length=2, alphabet=string.ascii_lowercase, sample=sample),
    )
    monkeypatch.setattr(tasks_module, "_REGISTRY", dict(tasks_module._REGISTRY))
    monkeypatch.setattr(tasks_module, "_INSTANCES", dict(tasks_module._INSTANCES))
    register_task_set(shift)
    assert "shift-test" in trainable_task_sets() and "country" not in trainable_task_sets()
    config = TrainConfig(task_set="shift-test", n_examples=5, batch_size=6, curriculum="s3,s5@4")
    config.validate()
    assert all_task_names("shift-test") == ["s1", "s3", "s5"]
    assert task_params(shift, ["s5", "s1"]) == [5, 1]  # from Task.params, not from the names
    assert curriculum_stages(config) == [(4, ["s3", "s5"])]
    batcher = Batcher(config, seed=0)
    assert batcher.example_length == 2 + 2 + 2  # input, the two-character separator, answer, newline
    ids, labels, h = batcher.next(0)
    assert set(h.tolist()) <= {3, 5}
    tok = build_char_tokenizer()
    by_h = {t.params["shift"]: t for t in shift.tasks}
    for row in range(ids.shape[0]):
        lines = tok.decode(ids[row].tolist()).split("\n")[:-1]
        assert len(lines) == 5
        for line in lines:
            x, sep, y = line.partition("=>")
            assert sep and len(x) == 2 and y == by_h[int(h[row])].answer(x)
    assert int((labels != -100).sum()) == 6 * 5 * 2
    # A registered set without a TrainingSpec is refused in one line naming the trainable ones.
    with pytest.raises(InterpError, match="cannot train on task set 'country': it declares no training sampler.*"
                                          "bias-add.*retrieval"):
        TrainConfig(task_set="country").validate()
    assert get_task_set("bias-add").training is not None
