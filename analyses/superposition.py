"""Does one forward pass put probability on every in-context task's answer? (paper, Figure 2)

For superposed prompts of one task set: the exact probability of each task's answer, its
mean with a 95 % bootstrap interval over prompts, the sorted means by rank, the mass on anything
else, the KL between the in-context mix and the answer probabilities, and the top-K count ``r``
(each with an interval). Beside every task's P, baselines on the same queries
(:mod:`interp.baselines`): share-0 (that task's examples removed), zero-shot, single-task, and the
lift (superposed − share-0, paired by prompt). ``drivers`` regresses each task's P on its share in
the context and on recency.

Python::

    from analyses.superposition import SuperpositionOptions, analyse
    result = analyse(model, prompts, SuperpositionOptions(num_beams=5))

CLI (:mod:`interp_app.commands.superposition`):
``interp run superposition --model smollm2-135m --task-set country --n-prompts 100``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from interp.api_scoring import ApiSettings, score_prompts_api
from interp.baselines import SHARE0, SINGLE, SUPERPOSED, ZERO_SHOT, baseline_prompts, condition_name, recency_features
from interp.metrics import kl_per_prompt, superposition_metrics
from interp.models import LoadedModel
from interp.prompts import Prompt
from interp.scoring import PromptState, score_prompts
from interp.stats import SEED, bootstrap_diff, bootstrap_mean, format_ci, ols_with_ci, with_ci_text
from interp.topk import BeamConfig, enumerate_outputs, topk_counts
from interp.validate import Validated

PAPER_TASK_SETS = ("add-translate", "country", "ab", "word")


@dataclass
class SuperpositionOptions(Validated):
    """superposition options"""

    topk: bool = field(default=True, metadata={"help": "compute the top-K count r by beam search"})
    num_beams: int = field(default=10, metadata={"help": "beams for the top-K search", "min": 1})
    max_new_tokens: int = field(default=8, metadata={"help": "longest output (tokens) the top-K search enumerates", "min": 1})
    end_of_answer: str = field(default="", metadata={"help": "text scored after every answer (e.g. a newline)"})
    batch_size: int = field(default=1, metadata={"help": "prompts per forward pass (1 is fastest on CPU)", "min": 1})
    baselines: bool = field(default=True, metadata={"help": "also score share-0, zero-shot and single-task baselines on the same queries"})
    include_mismatches: bool = field(default=False, metadata={"help": "keep prompts with a tokenization-boundary mismatch in the summaries (default: excluded and counted)"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples of prompts for the intervals", "min": 1})
    ci_level: float = field(default=0.95, metadata={"help": "level of every interval", "gt": 0, "lt": 1})
    recency_last_n: int = field(default=5, metadata={"help": "how many final examples the recency predictor counts", "min": 1})


@dataclass
class SuperpositionResult:
    """``scores``: superposed rows (prompt × task); ``summary``: per task, P with its interval beside
    the baselines and the lift; ``sorted_means``: by rank (1st, 2nd … largest answer probability per
    prompt), never by task; ``conditions``: tidy P per task × condition; ``metric_intervals``:
    other, KL and r with intervals; ``baseline_scores``: every baseline row (column ``condition``);
    ``drivers``: per task, P(answer) regressed on its context share and recency."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    metrics: dict[str, Any]
    topk: pd.DataFrame | None
    sorted_means: pd.DataFrame = field(default_factory=pd.DataFrame)
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    metric_intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    drivers: pd.DataFrame = field(default_factory=pd.DataFrame)


def analyse(model: LoadedModel, prompts: list[Prompt], options: SuperpositionOptions,
            show_progress: bool = True) -> SuperpositionResult:
    """Score prompts and compute every superposition metric with intervals and baselines (no files written)."""
    beam = BeamConfig(num_beams=options.num_beams, max_new_tokens=options.max_new_tokens)
    enumerated: dict[int, dict[str, float]] = {}

    def search(prompt: Prompt, state: PromptState) -> None:
        # The top-K search reuses the scoring pass's KV cache instead of re-running the prompt.
        enumerated[prompt.prompt_id] = enumerate_outputs(model, prompt.text, beam, state=state)

    end = options.end_of_answer or None
    scores = score_prompts(model, prompts, batch_size=options.batch_size, end_of_answer=end,
                           show_progress=show_progress, on_prompt=search if options.topk else None)
    metrics: dict[str, Any] = superposition_metrics(scores)
    topk = None
    if options.topk:
        topk = topk_counts(model, prompts, scores, beam, show_progress=show_progress, enumerated=enumerated)
        metrics["r"] = float(topk["r"].mean())
        metrics["K"] = int(topk["K"].max())
        metrics["beam"] = asdict(beam)
    baseline_scores = pd.DataFrame()
    if options.baselines:
        frames = []
        for condition, group in baseline_prompts(prompts).items():
            scored = score_prompts(model, group, batch_size=options.batch_size, end_of_answer=end,
                                   show_progress=False)
            scored.insert(0, "condition", condition)
            frames.append(scored)
        baseline_scores = pd.concat(frames, ignore_index=True)
    return summarise_result(scores, prompts, options, metrics=metrics, topk=topk, baseline_scores=baseline_scores)


def analyse_api(prompts: list[Prompt], options: SuperpositionOptions, settings: ApiSettings,
                store_path: Any = None, show_progress: bool = True) -> SuperpositionResult:
    """The same analysis with answers scored through an OpenAI-compatible completions endpoint.

    ``settings.api_method``: ``beam`` (the authors' GPT-3.5 method: a lower bound, an answer never
    reached scores 0) or ``exact`` (teacher-forced with echo). Scored units are kept in
    ``store_path`` (JSONL) so a rerun resumes. The top-K count ``r`` needs the model's whole
    distribution and is not computed here; ``metrics['scoring']`` names the method.
    """
    scores = score_prompts_api(prompts, settings, store_path, show_progress=show_progress)
    baseline_scores = pd.DataFrame()
    if options.baselines:
        frames = []
        for condition, group in baseline_prompts(prompts).items():
            scored = score_prompts_api(group, settings, store_path, show_progress=False)
            scored.insert(0, "condition", condition)
            frames.append(scored)
        baseline_scores = pd.concat(frames, ignore_index=True)
    metrics: dict[str, Any] = superposition_metrics(scores)
    metrics["scoring"] = f"api-{settings.api_method}"
    metrics["api"] = settings.result_params()
    metrics["unreached_rows"] = int((~scores["reached"].astype(bool)).sum())
    per_unit = ["prompt_id"] if settings.api_method == "beam" else ["prompt_id", "answer"]
    metrics["requests"] = int(scores.drop_duplicates(per_unit)["requests"].sum())
    return summarise_result(scores, prompts, options, metrics=metrics, topk=None, baseline_scores=baseline_scores)


def excluded_prompts(scores: pd.DataFrame, baseline_scores: pd.DataFrame | None = None) -> set[int]:
    """Prompt ids with a tokenization-boundary mismatch in any scored row (any condition)."""
    bad = set(scores.loc[scores["boundary_mismatch"].astype(bool), "prompt_id"])
    if baseline_scores is not None and len(baseline_scores):
        bad |= set(baseline_scores.loc[baseline_scores["boundary_mismatch"].astype(bool), "prompt_id"])
    return {int(b) for b in bad}


def _interval(values: Any, options: SuperpositionOptions) -> tuple[float, float, float]:
    return bootstrap_mean(values, options.ci_level, options.n_boot, SEED)


def summarise_result(scores: pd.DataFrame, prompts: list[Prompt], options: SuperpositionOptions,
                     metrics: dict[str, Any] | None = None, topk: pd.DataFrame | None = None,
                     baseline_scores: pd.DataFrame | None = None) -> SuperpositionResult:
    """Intervals, baselines, sorted means and drivers from scored rows (no model needed).

    Prompts with a boundary mismatch (any condition) are left out of every summary unless
    ``options.include_mismatches``; their number is ``metrics['excluded_prompts']``.
    """
    metrics = dict(metrics if metrics is not None else superposition_metrics(scores))
    baseline_scores = baseline_scores if baseline_scores is not None else pd.DataFrame()
    bad = set() if options.include_mismatches else excluded_prompts(scores, baseline_scores)
    metrics["excluded_prompts"] = len(bad)
    kept = scores[~scores["prompt_id"].isin(bad)]
    base = baseline_scores[~baseline_scores["prompt_id"].isin(bad)] if len(baseline_scores) else baseline_scores
    tasks = list(dict.fromkeys(scores["task"]))
    wide = kept.pivot(index="prompt_id", columns="task", values="prob")[tasks]
    shares = scores.groupby("task", sort=False)["share"].mean()

    conditions = []
    summary_rows = []
    for task in tasks:
        mean, lo, hi = _interval(wide[task].to_numpy(), options)
        row: dict[str, Any] = {"task": task, "share": float(shares[task]), "mean": mean, "ci_low": lo, "ci_high": hi,
                               "n_prompts": int(wide[task].notna().sum()), "var": float(wide[task].var(ddof=0))}
        conditions.append({"task": task, "condition": SUPERPOSED, "mean": mean, "ci_low": lo, "ci_high": hi,
                           "n_prompts": row["n_prompts"]})
        if len(base):
            for label, condition in (("share0", condition_name(SHARE0, task)), ("zero_shot", ZERO_SHOT),
                                     ("single_task", condition_name(SINGLE, task))):
                sub = base[(base["condition"] == condition) & (base["task"] == task)].set_index("prompt_id")["prob"]
                m, low, high = _interval(sub.to_numpy(), options)
                row.update({label: m, f"{label}_low": low, f"{label}_high": high})
                conditions.append({"task": task, "condition": condition.split(":")[0], "mean": m, "ci_low": low,
                                   "ci_high": high, "n_prompts": int(len(sub))})
                if label == "share0":
                    paired = pd.concat([wide[task], sub], axis=1, join="inner").dropna()
                    d, dlo, dhi = bootstrap_diff(paired.iloc[:, 0].to_numpy(), paired.iloc[:, 1].to_numpy(), True,
                                                 options.ci_level, options.n_boot, SEED)
                    row.update({"lift": d, "lift_low": dlo, "lift_high": dhi})
                    conditions.append({"task": task, "condition": "lift", "mean": d, "ci_low": dlo, "ci_high": dhi,
                                       "n_prompts": int(len(paired))})
        row["boundary_mismatch"] = int(scores.loc[scores["task"] == task, "boundary_mismatch"].sum())
        summary_rows.append(row)

    # Sorted means: the i-th largest answer probability per prompt, whatever task it belongs to.
    ordered = -np.sort(-wide.to_numpy(), axis=1)
    sorted_rows = []
    for i in range(ordered.shape[1]):
        m, lo, hi = _interval(ordered[:, i], options)
        sorted_rows.append({"rank": i + 1, "mean": m, "ci_low": lo, "ci_high": hi, "n_prompts": int(len(ordered))})

    intervals = []
    per_prompt = {
        "other": 1.0 - wide.sum(axis=1),
        "kl_raw": kl_per_prompt(kept, renormalise=False) if len(kept) else pd.Series(dtype=float),
        "kl_renormalised": kl_per_prompt(kept, renormalise=True) if len(kept) else pd.Series(dtype=float),
    }
    if topk is not None:
        per_prompt["r"] = topk.loc[~topk["prompt_id"].isin(bad), "r"].astype(float)
    for name, values in per_prompt.items():
        m, lo, hi = _interval(values.to_numpy(), options)
        intervals.append({"metric": name, "mean": m, "ci_low": lo, "ci_high": hi, "n_prompts": int(len(values))})
        metrics[f"{name}_ci"] = [lo, hi]

    return SuperpositionResult(scores, pd.DataFrame(summary_rows), metrics, topk,
                               sorted_means=pd.DataFrame(sorted_rows), conditions=pd.DataFrame(conditions),
                               metric_intervals=pd.DataFrame(intervals), baseline_scores=baseline_scores,
                               drivers=mix_drivers(prompts, kept, base, options))


def mix_drivers(prompts: list[Prompt], scores: pd.DataFrame, baseline_scores: pd.DataFrame,
                options: SuperpositionOptions) -> pd.DataFrame:
    """Per task: P(answer) ~ share in context + last example is the task + share among the last n.

    Rows pool the superposed prompts and every baseline (where the share varies: 0 in share-0 and
    zero-shot, 1 in single-task), one row per (query, condition); intervals come from a bootstrap
    over queries. A task whose P follows ``last_is_task``/``share_last{n}`` more than ``share`` is
    following the most recent examples rather than the whole mix.
    """
    n = options.recency_last_n
    by_id = {p.prompt_id: p for p in prompts}
    variants: dict[tuple[str, int], Prompt] = {(SUPERPOSED, p.prompt_id): p for p in prompts}
    if len(baseline_scores):
        for condition, group in baseline_prompts(prompts).items():
            for q in group:
                variants[(condition, q.prompt_id)] = q
    frame = scores.assign(condition=SUPERPOSED)
    if len(baseline_scores):
        frame = pd.concat([frame, baseline_scores], ignore_index=True)
    rows = []
    for condition, pid, task, prob in zip(frame["condition"], frame["prompt_id"], frame["task"], frame["prob"]):
        prompt = variants.get((condition, pid), by_id.get(pid))
        if prompt is None:
            continue
        rows.append({"prompt_id": pid, "task": task, "condition": condition, "prob": prob,
                     **recency_features(prompt, task, n)})
    data = pd.DataFrame(rows)
    if data.empty:
        return pd.DataFrame(columns=["task", "term", "coef", "ci_low", "ci_high", "n_prompts", "n_rows"])
    out = []
    for task, g in data.groupby("task", sort=False):
        fit = ols_with_ci(g, "prob", ["share", "last_is_task", f"share_last{n}"], level=options.ci_level,
                          n_boot=min(options.n_boot, 1000), seed=SEED)
        fit.insert(0, "task", task)
        out.append(fit)
    return pd.concat(out, ignore_index=True)


def seed_spread(summaries: dict[int, pd.DataFrame], value: str = "mean") -> pd.DataFrame:
    """Replicates with different prompt seeds: per task, each seed's ``value``, their mean, std and range."""
    wide = pd.DataFrame({seed: s.set_index("task")[value] for seed, s in summaries.items()})
    out = pd.DataFrame({"task": wide.index, "n_seeds": wide.shape[1], "mean_over_seeds": wide.mean(axis=1).to_numpy(),
                        "std_between_seeds": wide.std(axis=1, ddof=1).to_numpy() if wide.shape[1] > 1 else np.nan,
                        "min": wide.min(axis=1).to_numpy(), "max": wide.max(axis=1).to_numpy()})
    for seed in wide.columns:
        out[f"seed_{seed}"] = wide[seed].to_numpy()
    return out.reset_index(drop=True)


def _ci(row: Any, prefix: str = "", digits: int = 3) -> str:
    if not prefix:
        return format_ci(row["mean"], row["ci_low"], row["ci_high"], digits)
    return format_ci(row[prefix], row[f"{prefix}_low"], row[f"{prefix}_high"], digits)


def ci_text(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A table with ``mean, ci_low, ci_high`` shown as one ``mean [95% CI]`` column."""
    return with_ci_text(table, digits)


def summary_text(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The per-task summary as text columns: share, P [95% CI], each baseline and lift [95% CI], n."""
    out = pd.DataFrame({"task": summary["task"], "share": summary["share"].round(3),
                        "P [95% CI]": [_ci(r, digits=digits) for _, r in summary.iterrows()]})
    for prefix, label in (("share0", "share-0"), ("zero_shot", "zero-shot"), ("single_task", "single-task"),
                          ("lift", "lift")):
        if prefix in summary.columns:
            out[label] = [_ci(r, prefix, digits) for _, r in summary.iterrows()]
    out["n_prompts"] = summary["n_prompts"]
    return out


def format_result(result: SuperpositionResult) -> str:
    """Per task P [95 % CI] beside its baselines and lift, the sorted means by rank, the metrics, as text."""
    s = result.summary
    table = summary_text(s).drop(columns="n_prompts")
    n = int(s["n_prompts"].max()) if len(s) else 0
    lines = [f"P(answer) per task, mean over {n} prompts [95% bootstrap CI]",
             table.to_string(index=False)]
    if len(result.sorted_means):
        ranks = "  ".join(f"#{int(r['rank'])}: {_ci(r)}" for _, r in result.sorted_means.iterrows())
        lines.append(f"sorted means by rank (largest answer probability per prompt first): {ranks}")
    if len(result.metric_intervals):
        lines.append("  ".join(f"{r['metric']}={_ci(r)}" for _, r in result.metric_intervals.iterrows()))
    m = result.metrics
    if "K" in m:
        lines[-1] += f"  (K={m['K']})"
    if m.get("boundary_mismatches") or m.get("excluded_prompts"):
        lines.append(f"boundary_mismatches={m['boundary_mismatches']} rows; excluded_prompts={m.get('excluded_prompts', 0)}")
    return "\n".join(lines)
