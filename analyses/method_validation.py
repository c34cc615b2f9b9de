"""Do the toolkit's methods find a mechanism when one is known to be there?

On the hand-set model ``constructed-superposition`` (:mod:`interp.constructed`) the mechanism is
known: P(answer_k) equals task k's in-context share p_k; head ``L2H{k-1}`` computes task k's
answer; the mixing head ``L1H0`` forms the shares after block 1; block 2 writes the answers onto
the logits. Each method of the toolkit is run unchanged on that model and its finding is compared
with the truth, one row per (method, known truth) with the measured error, the tolerance and
pass/fail:

* superposition (:mod:`analyses.superposition`): P vs the shares over uniform, skewed, two-task
  and single-task mixes;
* head attribution (DLA, :mod:`analyses.head_attribution`): is task k's head ranked first for
  task k (precision@1 of the ranking), and does DLA close;
* ablation (mean and zero, the same module): ablating the head DLA ranks first for task k removes
  answer k, and "leaves the others": their logits do not move, so each other answer's P becomes
  exactly P_j / (1 − P_k) (the softmax renormalises; comparing raw P_j before and after would
  call that renormalisation a side effect);
* logit lens (:mod:`analyses.logit_lens`): the layer where answers enter vs lens layer 3 (the
  residual after block 2, where the construction writes them), once with the toolkit's default
  entry rule (median rank ≤ k, ties in the answer's favour) and once with a probability rule
  (P above twice the uniform 1/vocab);
* task vectors (:mod:`analyses.task_vectors`): the layer sweep's choice vs the mix layer, the
  simplex projection's weights vs the shares at the mix layer, and injected convex combinations
  ``(1-λ) v_A + λ v_B`` on zero-shot queries vs P = (1-λ, λ).

Python::

    from analyses.method_validation import MethodValidationOptions, analyse
    result = analyse(load_model("constructed-superposition"), MethodValidationOptions(n_prompts=12))
    result.table          # method × known truth: measured, tolerance, passed

CLI (:mod:`interp_app.commands.method_validation`):
``interp run validate-methods --model constructed-superposition --n-prompts 12``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyses import superposition as superposition_analysis
from analyses.head_attribution import ablation_table, head_attribution, head_name, top_heads
from analyses.logit_lens import entry_layers, logit_lens
from analyses.task_vectors import (
    analysis_layer,
    extract_task_vectors,
    interpolate_vectors,
    layer_sweep,
    projection_fits,
    projection_targets,
    summarize_sweep,
    zero_shot_queries,
)
from interp.constructed import ConstructedOptions, KnownTruth, constructed_task_set, known_truth, options_of
from interp.models import LoadedModel
from interp.prompts import Prompt, build_prompts
from interp.tasks import TaskSet
from interp.validate import Validated


@dataclass
class MethodValidationOptions(Validated):
    """method-validation options"""

    n_prompts: int = field(default=12, metadata={"help": "prompts per mixture (and task vectors per task)", "min": 2})
    seed: int = field(default=0, metadata={"help": "random seed of the prompts"})
    p_tolerance: float = field(default=1e-4, metadata={"help": "largest accepted |P - share| (superposition) and "
                                                                "|P - (1-λ, λ)| (injection)", "gt": 0})
    weight_tolerance: float = field(default=0.01, metadata={"help": "largest accepted |weight - share| of the "
                                                                     "task-vector projection", "gt": 0})
    ablation_tolerance: float = field(default=0.01, metadata={"help": "largest accepted ablated P(answer_k) / P "
                                                                       "and error of the others' P_j/(1-P_k)", "gt": 0})
    lens_top_k: int = field(default=10, metadata={"help": "rank threshold of the logit lens's default entry rule",
                                                  "min": 1})


@dataclass
class MethodValidationResult:
    """``table``: one row per (method, known truth): ``method, known_truth, measure, measured, expected,
    tolerance, passed, note``. The other frames hold each method's own output on the constructed model."""

    table: pd.DataFrame
    superposition: pd.DataFrame
    head_ranking: pd.DataFrame
    ablation: pd.DataFrame
    ablation_others: pd.DataFrame
    lens_entry: pd.DataFrame
    projection: pd.DataFrame
    injection: pd.DataFrame
    truth: KnownTruth
    options: dict[str, Any]


def _row(method: str, truth: str, measure: str, measured: float, expected: str, tolerance: float | None,
         passed: bool, note: str = "") -> dict[str, Any]:
    return {"method": method, "known_truth": truth, "measure": measure, "measured": float(measured),
            "expected": expected, "tolerance": np.nan if tolerance is None else float(tolerance),
            "passed": bool(passed), "note": note}


def validation_mixtures(tasks: list[str]) -> list[tuple[str, dict[str, float]]]:
    """Uniform, skewed, a two-task mix (the third at share 0) and a single-task prompt."""
    a, b = tasks[0], tasks[1]
    skew = {t: 0.5 if t == a else 0.5 / (len(tasks) - 1) for t in tasks}
    return [
        ("uniform", {t: 1.0 / len(tasks) for t in tasks}),
        ("skewed", skew),
        ("two-task", {t: 0.75 if t == a else 0.25 if t == b else 0.0 for t in tasks}),
        ("single", {t: 1.0 if t == a else 0.0 for t in tasks}),
    ]


def _superposition(model: LoadedModel, ts: TaskSet, cons: ConstructedOptions, options: MethodValidationOptions,
                   show_progress: bool) -> pd.DataFrame:
    frames = []
    sp_options = superposition_analysis.SuperpositionOptions(topk=False, baselines=False, n_boot=200)
    for label, mix in validation_mixtures(ts.task_names):
        prompts = build_prompts(ts, mixture=mix, n_prompts=options.n_prompts, n_examples=cons.n_examples,
                                seed=options.seed)
        scores = superposition_analysis.analyse(model, prompts, sp_options, show_progress=show_progress).scores
        shares = {p.prompt_id: p.shares for p in prompts}
        scores = scores.assign(mixture=label, share=[shares[r.prompt_id][r.task] for r in scores.itertuples()])
        frames.append(scores)
    return pd.concat(frames, ignore_index=True)


def _ablation_checks(table: pd.DataFrame, scores: pd.DataFrame, tasks: list[str], tol: float
                     ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Per mode: does ablating task k's top head remove answer k and leave the others' logits?"""
    rows, details = [], []
    base = scores[scores["ablated"] == "none"].set_index(["prompt_id", "task"])["prob"]
    for mode, g in scores[scores["ablated"] != "none"].groupby("mode", sort=False):
        removed, others_err, others_raw = [], [], []
        for own in tasks:
            ablated = g[g["ablated"] == own].set_index(["prompt_id", "task"])["prob"]
            for pid in ablated.index.get_level_values(0).unique():
                p_base = base.xs(pid, level=0)
                p_abl = ablated.xs(pid, level=0)
                removed.append(float(p_abl[own] / max(p_base[own], 1e-30)))
                for j in tasks:
                    if j == own:
                        continue
                    predicted = p_base[j] / max(1.0 - p_base[own], 1e-30)  # the renormalised share
                    others_err.append(abs(float(p_abl[j]) - float(predicted)))
                    others_raw.append(abs(float(p_abl[j]) / max(float(p_base[j]), 1e-30) - 1))
                    details.append({"mode": mode, "ablated_task": own, "prompt_id": pid, "task": j,
                                    "prob_base": float(p_base[j]), "prob_ablated": float(p_abl[j]),
                                    "renormalised_prediction": float(predicted)})
        frame = pd.DataFrame([d for d in details if d["mode"] == mode])
        means = frame.groupby(["ablated_task", "task"])[["prob_ablated", "renormalised_prediction"]].mean()
        mean_err = float((means["prob_ablated"] - means["renormalised_prediction"]).abs().max())
        spec = table[(table["mode"] == mode) & table["specificity"].notna()]["specificity"]
        method = f"{mode} ablation"
        rows.append(_row(method, "ablating task k's head removes answer k", "max_k mean P_ablated(a_k) / P(a_k)",
                         float(np.max(removed)), "≈ 0", tol, float(np.max(removed)) <= tol))
        note = ("the others' raw P change by up to "
                f"{float(np.max(others_raw)):.2f} (relative), all of it the softmax renormalising once answer k is gone"
                if mode == "zero" else
                "the head's mean output is not neutral: it carries the average answer, which the output MLP turns "
                f"into logits for every letter; averaged over prompts the others look untouched (error of the means "
                f"{mean_err:.1e})")
        rows.append(_row(method, "… and leaves the others (their logits unchanged: P_j -> P_j / (1 - P_k))",
                         "max |P_ablated(a_j) - P(a_j)/(1 - P(a_k))|", float(np.max(others_err)), "≈ 0", tol,
                         float(np.max(others_err)) <= tol, note))
        rows.append(_row(method, "ablation hurts the own task most (toolkit's specificity, nats)",
                         "min_k specificity", float(spec.min()), "> 1", None, bool(spec.min() > 1)))
    return rows, pd.DataFrame(details)


def analyse(model: LoadedModel, options: MethodValidationOptions, show_progress: bool = True,
            use_cache: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> MethodValidationResult:
    """Run every method on the constructed model and compare it with the construction (no files written).

    Raises:
        InterpError: ``model`` is not a constructed superposition model.
    """
    cons = options_of(model)
    truth = known_truth(cons)
    ts = constructed_task_set(cons)
    tasks = ts.task_names
    cache = {"use_cache": use_cache, "cache_dir": cache_dir}
    rows: list[dict[str, Any]] = []

    # 1. Superposition: P(answer_k) = p_k.
    sp = _superposition(model, ts, cons, options, show_progress)
    err = float((sp["prob"] - sp["share"]).abs().max())
    other = float((1 - sp.groupby(["mixture", "prompt_id"])["prob"].sum()).abs().max())
    rows.append(_row("superposition", "P(answer_k) = in-context share p_k (uniform, skewed, two-task, single)",
                     "max |P - share|", err, "0", options.p_tolerance, err <= options.p_tolerance))
    rows.append(_row("superposition", "no mass outside the K answers", "max |1 - Σ_k P(answer_k)|", other, "0",
                     options.p_tolerance, other <= options.p_tolerance))

    # 2. Head attribution (DLA) on uniform prompts: task k's head first for task k.
    uniform: list[Prompt] = build_prompts(ts, n_prompts=options.n_prompts, n_examples=cons.n_examples,
                                          seed=options.seed + 1)
    dla = head_attribution(model, uniform, show_progress=show_progress, **cache)
    ranking = pd.DataFrame([{"task": t, "top_head": head_name(*top_heads(dla, t, 1)[0]),
                             "true_head": head_name(*truth.task_heads[t])} for t in tasks])
    precision = float((ranking["top_head"] == ranking["true_head"]).mean())
    rows.append(_row("head attribution (DLA)", "task k's head L2H{k-1} ranked first for task k",
                     "precision@1 of the ranking", precision, "1", None, precision == 1.0))
    closure = float(dla.closure["error"].max())
    rows.append(_row("head attribution (DLA)", "attributions sum to the answer's centred logit", "max closure error",
                     closure, "0", 1e-4, closure <= 1e-4))

    # 3. Ablation of each task's top DLA head, mean and zero.
    ab_table, ab_scores = ablation_table(model, uniform, dla, n=1, modes=("mean", "zero"), random_control=False,
                                         seed=options.seed, show_progress=show_progress)
    ab_rows, ab_details = _ablation_checks(ab_table, ab_scores, tasks, options.ablation_tolerance)
    rows.extend(ab_rows)

    # 4. Logit lens: where do the answers enter?
    lens_table, lens_rows = logit_lens(model, uniform, controls=False, task_set=ts, top_k=options.lens_top_k,
                                       show_progress=show_progress, return_rows=True, full_answer=False, n_boot=200,
                                       **cache)
    expected_layer = truth.answer_block + 1
    entry = entry_layers(lens_table, options.lens_top_k)
    default_entry = float(entry[f"first_layer_top{options.lens_top_k}"].max())
    uniform_p = 1.0 / len(model.tokenizer)
    by_prob = lens_table.assign(above=lens_table["prob"] > 2 * uniform_p)
    prob_entry = float(max(by_prob[by_prob["above"]].groupby("task")["layer"].min().reindex(tasks)))
    flat = int((lens_rows["layer"] < expected_layer).sum())
    flat_rank1 = int(((lens_rows["layer"] < expected_layer) & (lens_rows["rank"] == 1)).sum())
    rows.append(_row(f"logit lens (default rule: median rank <= {options.lens_top_k}, ties count for the answer)",
                     f"answers enter at lens layer {expected_layer} (after block {truth.answer_block})",
                     "latest entry layer over tasks", default_entry, str(expected_layer), None,
                     default_entry == expected_layer,
                     f"before block {truth.answer_block} the lens distribution is flat (every token at -B): "
                     f"{flat_rank1}/{flat} earlier readings rank the answer 1st by the tie rule"))
    rows.append(_row("logit lens (probability rule: P > 2/vocab)",
                     f"answers enter at lens layer {expected_layer} (after block {truth.answer_block})",
                     "latest entry layer over tasks", prob_entry, str(expected_layer), None,
                     prob_entry == expected_layer))
    lens_entry = entry.assign(prob_rule_entry=entry["task"].map(
        by_prob[by_prob["above"]].groupby("task")["layer"].min()), expected=expected_layer)

    # 5. Task vectors: layer sweep, projection, injection.
    vectors = extract_task_vectors(model, ts, tasks, options.n_prompts, cons.n_examples, options.seed + 2,
                                   show_progress=show_progress, **cache)
    queries = zero_shot_queries(ts, tasks, options.n_prompts, options.seed + 3)
    sweep = summarize_sweep(layer_sweep(model, vectors, queries, (("replace", 1.0),), show_progress=show_progress))
    chosen = analysis_layer(sweep)
    rows.append(_row("task vectors: layer sweep (replace)", f"the task is carried at layer {truth.mix_layer}'s output",
                     "chosen layer", chosen, str(truth.mix_layer), None, chosen == truth.mix_layer))
    targets = projection_targets(model, ts, tasks, options.n_prompts, cons.n_examples, options.seed + 4,
                                 controls=False, show_progress=show_progress, **cache)
    fits = projection_fits(vectors, targets, methods=("simplex",), per_prompt=False)
    at = fits[(fits["layer"] == truth.mix_layer) & (fits["candidates"] == "all") & (fits["level"] == "mean")]
    w_err = float((at["weight"] - at["share"]).abs().max())
    rows.append(_row("task vectors: simplex projection", f"mixed states = Σ_k p_k v_k at layer {truth.mix_layer}",
                     "max |weight - share|", w_err, "0", options.weight_tolerance, w_err <= options.weight_tolerance))
    a, b = tasks[0], tasks[1]
    lambdas = np.arange(cons.n_examples + 1) / cons.n_examples  # on the grid the output MLP represents exactly
    inj = interpolate_vectors(model, vectors, queries, a, b, truth.mix_layer, lambdas, show_progress=show_progress)
    target = np.where(inj["answer_task"] == b, inj["lam"], np.where(inj["answer_task"] == a, 1 - inj["lam"], 0.0))
    inj = inj.assign(expected=target)
    i_err = float((inj["prob"] - inj["expected"]).abs().max())
    rows.append(_row("task vectors: convex injection", f"(1-λ) v_A + λ v_B at layer {truth.mix_layer} gives P = "
                     "(1-λ, λ)", "max |P - (1-λ, λ)| over λ, queries", i_err, "0", options.p_tolerance,
                     i_err <= options.p_tolerance))

    table = pd.DataFrame(rows)
    return MethodValidationResult(
        table=table, superposition=sp, head_ranking=ranking, ablation=ab_table, ablation_others=ab_details,
        lens_entry=lens_entry, projection=at.reset_index(drop=True), injection=inj, truth=truth,
        options={"constructed": cons.__dict__, **options.__dict__},
    )


def format_table(table: pd.DataFrame) -> str:
    """The method × known-truth table as plain text (what the CLI prints)."""
    lines = []
    for r in table.itertuples():
        tol = "" if np.isnan(r.tolerance) else f" (tol {r.tolerance:g})"
        lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.method}: {r.known_truth}\n"
                     f"      {r.measure} = {r.measured:.3g}, expected {r.expected}{tol}"
                     + (f"\n      note: {r.note}" if r.note else ""))
    n_pass = int(table["passed"].sum())
    lines.append(f"{n_pass}/{len(table)} checks pass")
    return "\n".join(lines)
