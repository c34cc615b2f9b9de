"""Task vectors on tiny models: extraction, patched sweeps, fits, interpolation, the run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize

from analyses.task_vectors import (
    add_spread_residual,
    curve_distance,
    extract_task_vectors,
    fit_weights,
    interpolate_vectors,
    layer_sweep,
    load_vectors,
    parse_layers,
    parse_modes,
    random_answer_task_set,
    score_patched,
    separator_states,
    summarize_sweep,
    zero_shot_queries,
)
from interp.activations import token_positions
from interp.errors import InterpError
from interp.models import load_model
from interp.patching import Patch
from interp.prompts import build_prompts
from interp.scoring import score_prompts
from interp.tasks import get_task_set
from interp_app.commands.task_vectors import TaskVectorConfig, run_task_vectors


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def ab():
    return get_task_set("ab")


@pytest.fixture(scope="module")
def vectors(model, ab):
    return extract_task_vectors(model, ab, ["copy_op1", "copy_op2", "add"], n_prompts=3, n_examples=4, seed=0,
                                show_progress=False)


# ---------------------------------------------------------------- fits


@pytest.mark.parametrize("k", [2, 3, 5])
def test_simplex_fit_recovers_known_weights(k):
    rng = np.random.default_rng(k)
    basis = rng.normal(size=(k, 64)) + 3.0  # a shared component, as real task vectors have
    w_true = rng.dirichlet(np.ones(k), size=7)
    w_true[0] = 0
    w_true[0, 0] = 1  # a vertex
    w, res = fit_weights(w_true @ basis, basis, "simplex")
    np.testing.assert_allclose(w, w_true, atol=1e-6)
    np.testing.assert_allclose(res, 0, atol=1e-6)
    # LS recovers arbitrary (signed) weights; NNLS non-negative ones.
    w_signed = rng.normal(size=(3, k))
    np.testing.assert_allclose(fit_weights(w_signed @ basis, basis, "ls")[0], w_signed, atol=1e-6)
    np.testing.assert_allclose(fit_weights(np.abs(w_signed) @ basis, basis, "nnls")[0], np.abs(w_signed), atol=1e-6)


def test_simplex_fit_is_the_constrained_optimum():
    # Targets off the simplex: our exact support enumeration must match (or beat) SLSQP.
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, 32))
    targets = rng.normal(size=(5, 32)) * 2
    w, res = fit_weights(targets, basis, "simplex")
    assert np.all(w >= -1e-12) and np.allclose(w.sum(1), 1)
    for y, wi, r in zip(targets, w, res):
        sol = minimize(lambda x, y=y: float(np.sum((y - x @ basis) ** 2)), np.full(4, 0.25), method="SLSQP",
                       bounds=[(0, 1)] * 4, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}])
        assert r ** 2 <= sol.fun + 1e-6
        assert np.isclose(r, np.linalg.norm(y - wi @ basis))
    with pytest.raises(InterpError):
        fit_weights(targets, basis, "lasso")


# ---------------------------------------------------------------- prompts and controls


def test_zero_shot_queries_are_the_papers_format(model, ab):
    qs = zero_shot_queries(ab, ["copy_op1", "copy_op2", "add"], n=6, seed=1)
    for q in qs:
        assert q.text == f"\n{q.query}{q.separator}" and not q.examples
        assert len(set(q.answers.values())) == 3
        ids = model.encode_prompt(q.text)
        assert token_positions(model, q, "query", ids) == [len(ids) - 1]


def test_random_answer_tasks(ab):
    rts = random_answer_task_set(ab, ["copy_op1", "add"], seed=5)
    assert get_task_set("ab").task_names == ["copy_op1", "copy_op2", "add"]  # the shared set is untouched
    x = (37, 58)
    a = rts.task("rand_add").answer(x)
    assert a == rts.task("rand_add").answer(x)  # deterministic
    pool = {ab.task("add").answer(i) for i in ab.inputs()}
    xs = ab.inputs()[::97]
    assert all(rts.task("rand_add").answer(i) in pool for i in xs)  # same kind of answer
    wrong = sum(rts.task("rand_copy_op1").answer(i) != ab.task("copy_op1").answer(i) for i in xs)
    assert wrong >= 0.9 * len(xs)  # no input→output rule


# ---------------------------------------------------------------- extraction and patching


def test_extraction_is_the_mean_separator_state(model, ab, vectors):
    assert vectors.mean.shape == (3, model.n_layers, model.d_model)
    assert vectors.per_prompt.shape == (3, 3, model.n_layers, model.d_model)
    prompts = build_prompts(ab, mixture={"copy_op2": 1.0}, n_prompts=3, n_examples=4, seed=0)
    states = separator_states(model, prompts, show_progress=False)
    torch.testing.assert_close(vectors.mean[1], states.mean(0))


def test_patching_a_prompts_own_vector_reproduces_its_output(model, ab):
    prompts = build_prompts(ab, n_prompts=3, examples_per_task=2, seed=4)
    states = separator_states(model, prompts, show_progress=False)
    clean = score_prompts(model, prompts, show_progress=False)
    for i, p in enumerate(prompts):
        rows = [({"layer": layer}, Patch(layer, states[i, layer])) for layer in range(model.n_layers)]
        got = score_patched(model, [p], rows, show_progress=False)
        for _, r in got.iterrows():
            ref = clean[(clean["prompt_id"] == p.prompt_id) & (clean["task"] == r["answer_task"])]["logprob"]
            assert r["logprob"] == pytest.approx(float(ref.iloc[0]), abs=1e-4)


def test_sweep_baseline_matches_plain_scoring(model, ab, vectors):
    qs = zero_shot_queries(ab, vectors.tasks, n=3, seed=2)
    sweep = layer_sweep(model, vectors, qs, parse_modes("replace,add:2"), show_progress=False)
    n_rows = len(qs) * 3 * (1 + 2 * model.n_layers)
    assert len(sweep) == n_rows
    base = sweep[sweep["mode"] == "none"]
    plain = score_prompts(model, qs, show_progress=False)
    merged = base.merge(plain, left_on=["query_id", "answer_task"], right_on=["prompt_id", "task"])
    assert len(merged) == len(base)
    np.testing.assert_allclose(merged["logprob_x"], merged["logprob_y"], atol=1e-4)
    summary = summarize_sweep(sweep)
    assert set(summary["mode"]) == {"none", "replace", "add"}
    # Replace and add really differ (the modes are not silently the same patch).
    rep = sweep[sweep["mode"] == "replace"]["logprob"].to_numpy()
    add = sweep[sweep["mode"] == "add"]["logprob"].to_numpy()
    assert not np.allclose(rep, add, atol=1e-3)


def test_interpolation_endpoints_equal_single_vector_patching(model, ab, vectors):
    qs = zero_shot_queries(ab, vectors.tasks, n=3, seed=3)
    layer = 1
    interp = interpolate_vectors(model, vectors, qs, "copy_op1", "add", layer, [0.0, 0.5, 1.0], show_progress=False)
    for lam, task in ((0.0, "copy_op1"), (1.0, "add")):
        single = score_patched(model, qs, [({"v": task}, Patch(layer, vectors.vector(task, layer)))],
                               show_progress=False)
        got = interp[interp["lam"] == lam].sort_values(["query_id", "answer_task"])["logprob"].to_numpy()
        ref = single.sort_values(["query_id", "answer_task"])["logprob"].to_numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)
    mid = interp[interp["lam"] == 0.5]["logprob"].to_numpy()
    end = interp[interp["lam"] == 0.0]["logprob"].to_numpy()
    assert not np.allclose(mid, end, atol=1e-4)


def test_curve_distance():
    lam = np.linspace(0, 1, 11)
    tv = pd.DataFrame({"lam": lam, "p_a": 1 - lam, "p_b": lam})
    icl = tv.iloc[::5].reset_index(drop=True)
    d = curve_distance(tv, icl)
    assert d["mae_prob"] == pytest.approx(0) and d["mae_share"] == pytest.approx(0)
    assert d["crossing_tv"] == pytest.approx(0.5) and d["crossing_icl"] == pytest.approx(0.5)
    shifted = tv.assign(p_a=(1 - lam) * 0.5, p_b=lam * 0.5)
    assert curve_distance(shifted, icl)["mae_prob"] > 0.1
    assert curve_distance(shifted, icl)["mae_share"] == pytest.approx(0)


def test_parsers():
    assert parse_modes("replace,add,add:4") == [("replace", 1.0), ("add", 1.0), ("add", 4.0)]
    assert parse_layers("", 3) == [0, 1, 2] and parse_layers("0-1,1", 3) == [0, 1]
    for bad in ("swap", "add:x", ""):
        with pytest.raises(InterpError):
            parse_modes(bad)
    with pytest.raises(InterpError):
        parse_layers("5", 3)


def test_run_writes_tables_and_figures(tmp_path):
    cfg = TaskVectorConfig(model="tiny-qwen2", task_set="ab", n_prompts=3, n_examples=3, n_queries=2,
                           modes="replace,add:2", n_lambdas=4, n_icl_lambdas=3, out=str(tmp_path / "run"))
    r = run_task_vectors(cfg, show_progress=False)
    for name in ("layer_sweep.csv", "best_layers.csv", "projection_fits.csv", "projection_2d.csv",
                 "interpolation.csv", "weights_at_layer.csv", "metrics.json", "task_vectors.safetensors",
                 "layer_sweep.png", "interpolation.png", "projection_lda.png", "residuals.png", "weights.png"):
        assert (r.out / name).exists(), name
    fits = pd.read_csv(r.out / "projection_fits.csv")
    assert set(fits["kind"]) == {"pure", "mix", "random_answers", "other_task"}
    simplex = fits[(fits["method"] == "simplex") & (fits["level"] == "mean")]
    sums = simplex.groupby(["layer", "target", "candidates"])["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-6)
    tasks, layers, mean = load_vectors(r.out / "task_vectors.safetensors")
    assert tasks == ["copy_op1", "copy_op2", "add"] and layers == [0, 1]
    torch.testing.assert_close(mean, r.vectors.mean)
    redo = add_spread_residual(fits.drop(columns="rel_residual_spread"), mean, layers)
    np.testing.assert_allclose(redo["rel_residual_spread"], fits["rel_residual_spread"], rtol=1e-5)
    curves = pd.read_csv(r.out / "interpolation.csv")
    assert sorted(curves["kind"].unique()) == ["icl", "task_vector"]
    assert len(curves[curves["kind"] == "task_vector"]) == 4
    metrics = json.loads((r.out / "metrics.json").read_text())
    assert 0 <= metrics["analysis_layer"] < 2


def test_projection_weights_carry_bootstrap_intervals(model, ab, vectors):
    from analyses.task_vectors import projection_fits, projection_targets, weights_table

    targets = projection_targets(model, ab, ["copy_op1", "copy_op2"], n_prompts=4, n_examples=4, seed=0,
                                 controls=False, show_progress=False, use_cache=False)
    fits = projection_fits(vectors, targets, methods=("simplex",))
    assert (fits["weight_ci_low"] <= fits["weight"] + 1e-9).all() and (fits["weight"] <= fits["weight_ci_high"] + 1e-9).all()
    assert (fits["rel_residual_ci_low"] <= fits["rel_residual_ci_high"]).all()
    table = weights_table(fits, vectors.layers[0])
    assert any(c.startswith("lo_w_") for c in table.columns) and "rel_residual_ci_high" in table.columns
