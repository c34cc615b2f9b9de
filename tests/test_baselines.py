"""Baselines on exactly the same queries; the superposition analysis's intervals, baselines and sorted means."""

import pandas as pd
import pytest

from analyses.superposition import SuperpositionOptions, analyse, format_result, seed_spread, summarise_result
from interp.baselines import baseline_prompts, recency_features
from interp.prompts import build_prompts
from interp.tasks import get_task_set


def _prompts(n: int = 4, examples: int = 3):
    return build_prompts(get_task_set("ab"), n_prompts=n, examples_per_task=examples, seed=5)


def test_baselines_keep_the_query_answers_and_the_other_examples() -> None:
    prompts = _prompts()
    conditions = baseline_prompts(prompts)
    assert set(conditions) == {"zero-shot", *(f"{k}:{t}" for k in ("share-0", "single-task")
                                               for t in ("copy_op1", "copy_op2", "add"))}
    for name, group in conditions.items():
        assert [q.prompt_id for q in group] == [p.prompt_id for p in prompts]
        for p, q in zip(prompts, group):
            # Exactly the same query, answers and separator; the text ends with the same query line.
            assert (q.query, q.answers, q.separator) == (p.query, p.answers, p.separator)
            assert q.text.endswith(p.query + p.separator)
            if name == "zero-shot":
                assert q.examples == [] and q.text == p.query + p.separator
            elif name.startswith("share-0:"):
                task = name.split(":")[1]
                assert q.examples == [e for e in p.examples if e.task != task]
                assert q.shares[task] == 0 and q.counts[task] == 0
                assert sum(q.shares.values()) == pytest.approx(1.0)
            else:
                task = name.split(":")[1]
                assert q.examples == [e for e in p.examples if e.task == task]
                assert q.shares[task] == 1.0


def test_recency_features() -> None:
    p = _prompts(n=1, examples=4)[0]
    last = p.examples[-1].task
    f = recency_features(p, last, last_n=2)
    assert f["last_is_task"] == 1.0 and f["share"] == pytest.approx(1 / 3)
    assert f["share_last2"] in (0.5, 1.0)


def test_analysis_reports_intervals_baselines_and_sorted_means(tiny_llama) -> None:
    prompts = _prompts(n=5)
    result = analyse(tiny_llama, prompts, SuperpositionOptions(num_beams=2, max_new_tokens=2, n_boot=200),
                     show_progress=False)
    s = result.summary.set_index("task")
    for col in ("mean", "ci_low", "ci_high", "n_prompts", "share0", "zero_shot", "single_task", "lift",
                "lift_low", "lift_high"):
        assert col in s.columns
    assert (s["ci_low"] <= s["mean"]).all() and (s["mean"] <= s["ci_high"]).all()
    assert "sorted_mean" not in s.columns  # sorted means are by rank, in their own table
    assert list(result.sorted_means["rank"]) == [1, 2, 3]
    assert result.sorted_means["mean"].is_monotonic_decreasing
    # Baseline rows pair with the superposed rows on the same prompt ids, and lift is their paired difference.
    base = result.baseline_scores
    share0 = base[(base["condition"] == "share-0:add") & (base["task"] == "add")].set_index("prompt_id")
    sup = result.scores[result.scores["task"] == "add"].set_index("prompt_id")
    assert list(share0.index) == list(sup.index)
    assert (share0["answer"] == sup["answer"]).all()
    lift = (sup["prob"] - share0.loc[sup.index, "prob"]).mean()
    assert s.loc["add", "lift"] == pytest.approx(lift)
    assert s.loc["add", "share0"] == pytest.approx(share0["prob"].mean())
    # Every baseline condition scores every task on the same prompt ids.
    assert all(set(g["prompt_id"]) == set(sup.index) for _, g in base.groupby(["condition", "task"]))
    assert set(result.metric_intervals["metric"]) == {"other", "kl_raw", "kl_renormalised", "r"}
    assert set(result.drivers["term"]) == {"intercept", "share", "last_is_task", "share_last5"}
    text = format_result(result)
    assert "[" in text and "share-0" in text and "lift" in text and "#1:" in text


def test_mismatched_prompts_are_excluded_and_counted(tiny_llama) -> None:
    prompts = _prompts(n=3)
    result = analyse(tiny_llama, prompts, SuperpositionOptions(topk=False, baselines=False, n_boot=50),
                     show_progress=False)
    scores = result.scores.copy()
    scores.loc[scores["prompt_id"] == 1, "boundary_mismatch"] = True
    excluded = summarise_result(scores, prompts, SuperpositionOptions(n_boot=50))
    assert excluded.metrics["excluded_prompts"] == 1
    assert (excluded.summary["n_prompts"] == 2).all()
    kept = scores[scores["prompt_id"] != 1]
    assert excluded.summary.set_index("task").loc["add", "mean"] == pytest.approx(
        kept.loc[kept["task"] == "add", "prob"].mean())
    included = summarise_result(scores, prompts, SuperpositionOptions(n_boot=50, include_mismatches=True))
    assert (included.summary["n_prompts"] == 3).all() and included.metrics["excluded_prompts"] == 0


def test_seed_spread() -> None:
    a = pd.DataFrame({"task": ["x", "y"], "mean": [0.2, 0.4]})
    b = pd.DataFrame({"task": ["x", "y"], "mean": [0.4, 0.4]})
    spread = seed_spread({0: a, 1: b}).set_index("task")
    assert spread.loc["x", "mean_over_seeds"] == pytest.approx(0.3)
    assert spread.loc["y", "std_between_seeds"] == pytest.approx(0.0)
    assert spread.loc["x", "seed_1"] == 0.4
