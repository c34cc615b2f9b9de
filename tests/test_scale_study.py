"""The scale study: every model on the same prompts of every task set, with intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analyses.scale import model_loaders
from analyses.scale_study import ScaleStudyOptions, ScaleStudyResult, scale_study
from interp.errors import InterpError

OPTIONS = dict(task_sets=["ab", "country"], n_prompts=3, examples_per_task=3, k_prompts=2, k_examples=6,
               num_beams=3, max_new_tokens=4, n_boot=200)


@pytest.fixture(scope="module")
def study() -> tuple[ScaleStudyResult, list[list[str]]]:
    seen: list[list[str]] = []
    result = scale_study(model_loaders(["tiny-llama", "tiny-qwen2"]), ScaleStudyOptions(**OPTIONS),
                         show_progress=False, on_model=lambda r: seen.append(sorted(r.models)))
    return result, seen


def test_study_tables_on_two_tiny_models(study: tuple[ScaleStudyResult, list[list[str]]]) -> None:
    result, seen = study
    assert seen == [["tiny-llama"], ["tiny-llama", "tiny-qwen2"]]  # partial results after each model
    per_task, per_set, sweep = result.per_task, result.per_set, result.k_sweep
    # Same tasks for both models, every task of both sets, intervals around their means.
    assert len(per_task) == 2 * (3 + 3)
    assert per_task.groupby("model")["task"].apply(list).map(tuple).nunique() == 1
    for col in ("", "single_"):
        mean = per_task[f"{col}mean"]
        assert ((per_task[f"{col}ci_low"] <= mean + 1e-12) & (mean <= per_task[f"{col}ci_high"] + 1e-12)).all()
    assert per_task["single_p_gt_half"].between(0, 1).all()
    assert set(per_set["task_set"]) == {"ab", "country"} and (per_set["n_prompts"] == 3).all()
    for metric in ("other", "kl_raw", "kl_renormalised", "r"):
        assert (per_set[f"{metric}_ci_low"] <= per_set[metric] + 1e-12).all()
    assert sorted(sweep["K"].unique()) == [2, 3]
    assert sweep["r_over_K"].between(0, 1).all()
    assert {"load_s", "wall_s", "cpu_s", "n_params"} <= set(result.models["tiny-llama"])


def test_unknown_task_set_refused_before_any_model_loads() -> None:
    with pytest.raises(InterpError, match="unknown task set"):
        scale_study({"m": lambda: pytest.fail("loaded")}, ScaleStudyOptions(task_sets=["nope"]))


def test_report_section_shows_a_finished_study(study: tuple[ScaleStudyResult, list[list[str]]], tmp_path: Path) -> None:
    from interp_app.cli import main

    result, _ = study
    run = tmp_path / "study"
    run.mkdir()
    result.per_set.to_csv(run / "per_set.csv", index=False)
    result.per_task.to_csv(run / "per_task.csv", index=False)
    out = tmp_path / "report"
    assert main(["report", "--model", "tiny-llama", "--out", str(out), "--sections", "setup,scale_real",
                 "--set", f"scale_real.run={run}"]) == 0
    html = (out / "index.html").read_text()
    assert "Scale (real models)" in html and "This section failed" not in html
    assert len(pd.read_csv(out / "scale_real-per_task.csv")) == len(result.per_task)
    # Without models or a run directory the section explains how to opt in (not a failure).
    assert main(["report", "--model", "tiny-llama", "--out", str(tmp_path / "r2"), "--sections", "scale_real"]) == 0
    assert "interp models fetch" in (tmp_path / "r2" / "index.html").read_text()
