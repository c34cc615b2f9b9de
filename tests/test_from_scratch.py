"""Mixture-curve evaluation (tiny random models) and the shipped from-scratch checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_cached

from analyses.from_scratch import (
    acceptance_checks,
    analyse,
    build_mixture_prompts,
)
from interp.errors import InterpError
from interp_app.commands.mixture_curve import MixtureCurveConfig, run_mixture_curve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "from-scratch"


def test_exact_mixture_prompts_hold_round_d_n_examples_of_task_a() -> None:
    prompts, design = build_mixture_prompts("retrieval", "ret2", "ret6", [0.0, 0.3, 1.0], n_prompts=3, n_examples=10)
    assert len(prompts) == 9 and list(design["count_a"]) == [0] * 3 + [3] * 3 + [10] * 3
    for p, row in zip(prompts, design.itertuples()):
        n_a = sum(e.task == "ret2" for e in p.examples)
        assert n_a == row.count_a and len(p.examples) == 10
        assert p.answers["ret2"] == p.query[2] and p.answers["ret6"] == p.query[6]
        assert p.answers["ret2"] != p.answers["ret6"]
        assert p.text.endswith(p.query + ">")


def test_binomial_and_random_pairs() -> None:
    prompts, design = build_mixture_prompts("bias-add", "random", "random", [0.5], n_prompts=40, n_examples=20,
                                            sampling="binomial", seed=1)
    assert (design["task_a"] != design["task_b"]).all()
    assert design["task_a"].nunique() > 3  # pairs are drawn per prompt
    assert design["count_a"].nunique() > 2  # binomial counts vary
    assert 7 <= design["count_a"].mean() <= 13
    with pytest.raises(InterpError):
        build_mixture_prompts("retrieval", "ret2", "ret2", [0.5], 1, 10)


def test_acceptance_checks_pass_and_fail() -> None:
    d = [round(0.1 * i, 1) for i in range(11)]
    good = pd.DataFrame({"d": d, "p_a": d, "p_b": [1 - x for x in d], "other": [0.0] * 11})
    assert acceptance_checks(good)["passed"]
    flat = good.assign(p_a=[0.2] * 11, p_b=[0.2] * 11, other=[0.6] * 11)
    checks = acceptance_checks(flat)
    assert not checks["passed"] and not checks["mid_other_le_0.1"]
    bumpy = good.assign(p_a=[0, .1, .3, .2, .4, .5, .6, .7, .8, .9, 1.0])
    assert not acceptance_checks(bumpy)["p_a_monotone"]
    assert acceptance_checks(bumpy)["p_a_largest_drop"] == pytest.approx(0.1)
    # A sampled curve: a dip within sampling error passes, one well outside it does not.
    noisy = bumpy.assign(p_a_std=[0.5] * 11, n_prompts=[50] * 11)  # SE of a step ≈ .14
    assert acceptance_checks(noisy)["p_a_monotone"]
    assert not acceptance_checks(noisy.assign(n_prompts=[5000] * 11))["p_a_monotone"]


def test_curve_on_tiny_random_model_is_a_probability_split(tiny_model) -> None:
    prompts, design = build_mixture_prompts("bias-add", "plus1", "plus4", [0.0, 0.5, 1.0], n_prompts=2, n_examples=6)
    result = analyse({"tiny": tiny_model}, prompts, design, show_progress=False)
    curve = result.curve
    assert list(curve["d"]) == [0.0, 0.5, 1.0]
    total = curve["p_a"] + curve["p_b"] + curve["other"]
    assert total.round(9).eq(1.0).all()
    assert ((curve[["p_a", "p_b"]] >= 0) & (curve[["p_a", "p_b"]] <= 1)).all().all()
    assert (curve["p_top"] >= curve["p_second"]).all()
    assert (curve["p_top"] + curve["p_second"] - curve["p_a"] - curve["p_b"]).abs().max() < 1e-9
    # A random model does not superpose: the check must fail.
    assert not result.acceptance["tiny"]["passed"]


def test_run_mixture_curve_writes_tables_and_figure(tmp_path) -> None:
    load_cached("tiny-llama")
    config = MixtureCurveConfig(model="tiny-llama", task_set="retrieval", shares=[0.0, 1.0], n_prompts=2,
                                n_examples=4, compare=["tiny-qwen2"], out=str(tmp_path / "mc"))
    result = run_mixture_curve(config, show_progress=False)
    assert set(result.curve["model"]) == {"tiny-llama", "tiny-qwen2"}
    for name in ("curve.csv", "per_prompt.csv", "acceptance.json", "mixture_curve.png"):
        assert (result.out / name).is_file(), name
    with pytest.raises(InterpError):
        run_mixture_curve(MixtureCurveConfig(model="tiny-llama", out=str(tmp_path / "x")))  # no task set known


# ------------------------------------------------------------------------- shipped checkpoints

SHIPPED_DIRS = sorted(p.parent for p in SHIPPED.rglob("model.safetensors")) if SHIPPED.exists() else []
# The two main models sit directly under checkpoints/from-scratch/ (scale/ and ablations/ hold the rest).
MAIN_DIRS = [p for p in SHIPPED_DIRS if p.parent == SHIPPED]


def test_shipped_checkpoints_exist() -> None:
    names = {p.name.split("-L")[0] for p in MAIN_DIRS}
    assert {"retrieval", "bias-add"} <= names, f"missing shipped checkpoints under {SHIPPED}"


@pytest.mark.parametrize("model_dir", SHIPPED_DIRS, ids=lambda p: p.name)
def test_shipped_checkpoint_is_small_and_documented(model_dir: Path) -> None:
    assert (model_dir / "model.safetensors").stat().st_size <= 10 * 2**20
    info = json.loads((model_dir / "training_config.json").read_text())
    assert {"config", "seed", "final_loss", "wall_seconds", "steps"} <= info.keys()
    summary = json.loads((model_dir / "eval_summary.json").read_text())
    assert len(summary["curve"]) == 11


@pytest.mark.parametrize("name", ["retrieval", "bias-add"])
def test_shipped_model_still_superposes(name: str) -> None:
    dirs = [p for p in MAIN_DIRS if p.name.startswith(name + "-L")]
    assert dirs, f"no shipped {name} checkpoint"
    from interp.models import load_model

    model = load_model(str(dirs[0]))
    info = json.loads((dirs[0] / "training_config.json").read_text())["config"]
    pair = ("ret2", "ret6") if name == "retrieval" else ("plus2", "plus7")
    d = [round(0.1 * i, 1) for i in range(11)]
    # Each prompt picks (nearly) one task, so the mean over prompts needs enough prompts per d to
    # be a curve at all: 100 (a few seconds on these 0.3M-parameter models).
    n_prompts = 100 if name == "retrieval" else 4
    prompts, design = build_mixture_prompts(name, *pair, d, n_prompts=n_prompts, n_examples=info["n_examples"], seed=7)
    result = analyse({"m": model}, prompts, design, show_progress=False)
    checks = result.acceptance["m"]
    curve = result.curve.set_index("d")
    if name == "retrieval":
        # The acceptance, on the shipped retrieval model.
        assert checks["passed"], (checks, result.curve)
        assert checks["p_a_largest_drop"] < 0.1, result.curve
    else:
        # bias-add: the acceptance is on retrieval; here we require the endpoints and a rising P(A).
        assert checks["d0_p_b_ge_0.95"] or curve.loc[0.0, "p_b"] >= 0.9, result.curve
        assert curve.loc[1.0, "p_a"] >= 0.9, result.curve
        assert curve.loc[0.5, "p_a"] > 0.1 and curve.loc[0.5, "p_b"] > 0.1, result.curve
        assert curve.loc[0.8, "p_a"] > curve.loc[0.2, "p_a"]


def test_in_context_curve_falls_for_a_model_that_learned_and_is_flat_for_chance() -> None:
    from analyses.from_scratch import trained_in_context_curve

    learned = trained_in_context_curve(SHIPPED / "bias-add-L3-d64-h4", n_prompts=32)
    assert [row["example"] for row in learned] == list(range(1, 21))
    # Example 1 cannot reveal h (≈ ln 10); one example pins it down for bias-add.
    assert learned[0]["nll"] > 1.8 and max(row["nll"] for row in learned[1:]) < 0.3
    assert min(row["accuracy"] for row in learned[1:]) > 0.9
    # Retrieval: example 1 leaves the 8 letters of the line (≈ ln 8); from example 2 on, h is known.
    retrieval = trained_in_context_curve(SHIPPED / "retrieval-L4-d64-h4", n_prompts=32)
    assert retrieval[0]["nll"] > 1.5 and max(row["nll"] for row in retrieval[1:]) < 0.2, retrieval
    chance = trained_in_context_curve(SHIPPED / "ablations" / "bias-add-L3-d64-h1", n_prompts=32)
    assert all(abs(row["nll"] - chance[0]["nll"]) < 0.3 for row in chance)


def test_in_context_curve_needs_a_trained_model(tmp_path) -> None:
    from analyses.from_scratch import trained_in_context_curve

    with pytest.raises(InterpError, match="training_config.json"):
        trained_in_context_curve(tmp_path)


def test_mixture_curve_for_a_pretrained_model_and_a_user_task_set(tmp_path) -> None:  # noqa: ANN001
    """Any model (here a tiny pretrained-style model, no training config) and a task set from --tasks-file,
    with --pair and --d; intervals per point and the per-prompt split statistics."""
    from interp_app.cli import main

    code = main(["run", "mixture-curve", "--model", "tiny-qwen2", "--tasks-file", "examples/tasks/animals.toml",
                 "--task-set", "animals", "--pair", "sound,upper", "--d", "0,0.5,1", "--n-examples", "4",
                 "--n-prompts", "3", "--n-boot", "100", "--out", str(tmp_path / "run")])
    assert code == 0
    curve = pd.read_csv(tmp_path / "run" / "curve.csv")
    assert list(curve["d"]) == [0.0, 0.5, 1.0]
    for col in ("p_a", "p_b", "other", "p_second", "entropy"):
        assert (curve[f"{col}_ci_low"] <= curve[col] + 1e-12).all() and (curve[col] <= curve[f"{col}_ci_high"] + 1e-12).all()
    assert ((curve["entropy"] >= 0) & (curve["entropy"] <= 1)).all()
    per_prompt = pd.read_csv(tmp_path / "run" / "per_prompt.csv")
    assert set(per_prompt["task_a"]) == {"sound"} and set(per_prompt["task_b"]) == {"upper"}
    assert (tmp_path / "run" / "mixture_curve.png").is_file()


def test_split_entropy() -> None:
    from analyses.from_scratch import split_entropy

    h = split_entropy(pd.Series([0.5, 1.0, 0.0, 0.2]), pd.Series([0.5, 0.0, 0.0, 0.2]))
    assert h[0] == pytest.approx(1.0) and h[1] == 0.0 and np.isnan(h[2]) and h[3] == pytest.approx(1.0)
