"""Scale analysis (r and KL per K per model) on tiny random models."""

from __future__ import annotations

import pytest
from conftest import load_cached

from analyses.scale import build_scale_prompts
from interp.errors import InterpError
from interp_app.commands.scale import ScaleConfig, run_scale


def test_scale_prompts_mix_k_tasks_uniformly() -> None:
    prompts, design = build_scale_prompts("bias-add", [2, 5], n_prompts=3, n_examples=10)
    assert list(design["K"]) == [2] * 3 + [5] * 3
    for p, row in zip(prompts, design.itertuples()):
        tasks = row.tasks.split(",")
        assert sorted(p.answers) == sorted(tasks) and len(set(p.answers.values())) == row.K
        assert sorted(p.counts.values()) == [10 // row.K] * row.K
    with pytest.raises(InterpError):
        build_scale_prompts("bias-add", [11], 1, 20)


def test_run_scale_on_two_tiny_models(tmp_path) -> None:
    load_cached("tiny-llama")
    config = ScaleConfig(models=["tiny-llama", "tiny-qwen2"], task_set="bias-add", max_tasks=3, n_prompts=2,
                         n_examples=6, num_beams=4, max_new_tokens=2, out=str(tmp_path / "scale"))
    result = run_scale(config, show_progress=False)
    s = result.summary
    assert set(s["model"]) == {"tiny-llama", "tiny-qwen2"} and sorted(set(s["K"])) == [2, 3]
    assert ((s["r"] >= 0) & (s["r"] <= s["K"])).all()
    assert (s["kl_raw"] >= s["kl_renormalised"] - 1e-9).all()  # raw p sums to < 1, so its KL is larger
    assert (s["kl_renormalised"] >= -1e-9).all()
    assert (result.out / "summary.csv").is_file() and (result.out / "scale.png").is_file()
    with pytest.raises(InterpError):
        run_scale(ScaleConfig(models=[], out=str(tmp_path / "x")))
