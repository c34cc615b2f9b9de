"""Logit lens: the last layer is the model's own output; controls keep the query; summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import small_prompts

from analyses.logit_lens import (
    entry_layers,
    first_answer_tokens,
    lens_logits,
    lens_sites,
    logit_lens,
    logit_lens_rows,
    single_task_controls,
    summarize_lens,
)
from interp.activations import token_positions
from interp.tasks import get_task_set
from interp_app.commands.logit_lens import LogitLensConfig, run_logit_lens
from interp_app.figures.logit_lens import plot_logit_lens

pytestmark = pytest.mark.usefixtures("private_cache")


def _prompts(task_set: str = "country", n: int = 3, per_task: int = 3):  # noqa: ANN202
    return small_prompts(task_set, n, per_task, seed=1)


def test_last_layer_equals_model_output(tiny_model) -> None:  # noqa: ANN001
    prompts = _prompts()
    rows = logit_lens_rows(tiny_model, prompts, show_progress=False)
    final = rows[rows["site"] == "final"]
    assert final["layer"].unique().tolist() == [tiny_model.n_layers]
    for p in prompts:
        ids = tiny_model.encode_prompt(p.text)
        q = token_positions(tiny_model, p, "query", ids)[0]
        with torch.no_grad():
            logits = tiny_model.hf_model(torch.tensor([ids])).logits[0, q].float()
        logp = torch.log_softmax(logits, -1)
        for task, tok in first_answer_tokens(tiny_model, p).items():
            row = final[(final["prompt_id"] == p.prompt_id) & (final["task"] == task)].iloc[0]
            assert row["token"] == tok
            assert abs(row["logprob"] - float(logp[tok])) < 1e-4
            assert row["rank"] == 1 + int((logits > logits[tok]).sum())


def test_lens_is_final_rmsnorm_then_unembed(tiny_model) -> None:  # noqa: ANN001
    # The lens applied to any residual equals x / sqrt(mean(x^2) + eps) * w @ W_U, done by hand.
    x = torch.randn(5, tiny_model.d_model) * 3
    norm = tiny_model.hf_model.base_model.norm
    manual = (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight) \
        @ tiny_model.hf_model.lm_head.weight.T
    assert torch.allclose(lens_logits(tiny_model, x), manual, atol=1e-5)
    sites = lens_sites(tiny_model)
    assert [s[0] for s in sites] == list(range(tiny_model.n_layers + 1))
    assert sites[-1][2] == f"blocks.{tiny_model.n_layers - 1}.hook_resid_post"


def test_single_task_controls_keep_query_and_inputs() -> None:
    ts = get_task_set("country")
    prompts = _prompts()
    controls = single_task_controls(prompts, ts)
    assert set(controls) == set(prompts[0].answers)
    for task, ctrl in controls.items():
        for p, c in zip(prompts, ctrl):
            assert c.query == p.query and c.answers == p.answers
            assert [e.input for e in c.examples] == [e.input for e in p.examples]
            assert all(e.task == task for e in c.examples)
            assert c.shares[task] == 1.0 and sum(c.shares.values()) == 1.0
            assert c.text.endswith(p.query + p.separator)
            # Every example line shows the control task's answer.
            for e, line in zip(c.examples, c.text.split("\n")):
                assert line == f"{e.input}{c.separator}{e.answer}"
    # Different tasks give different texts (the answers in the examples change).
    assert controls["capital"][0].text != controls["upper"][0].text


def test_logit_lens_table_is_mean_over_prompts(tiny_llama) -> None:  # noqa: ANN001
    prompts = _prompts(n=3)
    table, rows = logit_lens(tiny_llama, prompts, controls=True, show_progress=False, return_rows=True)
    tasks = list(prompts[0].answers)
    conditions = {"superposed", *(f"single:{t}" for t in tasks)}
    assert set(table["condition"]) == conditions
    assert len(table) == len(conditions) * len(tasks) * (tiny_llama.n_layers + 1)
    assert {"layer", "task", "condition", "prob", "logprob", "rank"} <= set(table.columns)
    sel = rows[(rows["condition"] == "superposed") & (rows["task"] == tasks[0]) & (rows["layer"] == 1)]
    got = table[(table["condition"] == "superposed") & (table["task"] == tasks[0]) & (table["layer"] == 1)].iloc[0]
    assert np.isclose(got["prob"], sel["prob"].mean()) and np.isclose(got["rank"], sel["rank"].mean())
    assert got["n_prompts"] == 3
    assert (table["prob"] > 0).all() and (table["prob"] <= 1).all() and (table["rank"] >= 1).all()
    # A single-task control differs from the superposed prompt (its context changed).
    sup = rows[rows["condition"] == "superposed"]["logprob"].to_numpy()
    ctl = rows[rows["condition"] == f"single:{tasks[0]}"]["logprob"].to_numpy()
    assert not np.allclose(sup, ctl)


def test_entry_layers_and_plot() -> None:
    table = pd.DataFrame({
        "layer": [0, 1, 2, 0, 1, 2], "site": ["a", "b", "final"] * 2, "task": ["x"] * 3 + ["y"] * 3,
        "condition": ["superposed"] * 6, "prob": [0.0, 0.1, 0.5, 0.0, 0.0, 0.01],
        "logprob": np.log([1e-9, 0.1, 0.5, 1e-9, 1e-9, 0.01]), "rank": [90, 8, 1, 99, 50, 20],
        "median_rank": [90, 8, 1, 99, 50, 20],
    })
    entry = entry_layers(table, k=10)
    assert entry.set_index("task")["first_layer_top10"].to_dict()["x"] == 1
    assert np.isnan(entry.set_index("task")["first_layer_top10"]["y"])
    fig = plot_logit_lens(table, "t")
    assert len(fig.axes) >= 2


def test_shared_first_token_flag() -> None:
    rows = pd.DataFrame({"prompt_id": [0, 0, 1, 1], "condition": "superposed", "layer": 0, "site": "s",
                         "task": ["a", "b", "a", "b"], "prob": 0.1, "logprob": -2.3, "rank": [1, 2, 3, 40],
                         "shared_first_token": [True, True, False, False]})
    s = summarize_lens(rows, top_k=10).set_index("task")
    assert s.loc["a", "shared_first_token"] == 0.5 and s.loc["b", "in_top10"] == 0.5


def test_run_writes_tables_and_figures(tmp_path) -> None:  # noqa: ANN001
    cfg = LogitLensConfig(model="tiny-qwen2", task_set="word", n_prompts=2, examples_per_task=2,
                          out=str(tmp_path / "run"))
    result = run_logit_lens(cfg, show_progress=False)
    for name in ("logit_lens.csv", "logit_lens_per_prompt.csv", "entry_layers.csv", "logit_lens.png",
                 "logit_lens.svg", "config.json", "prompts.jsonl"):
        assert (result.out / name).exists(), name
    table = pd.read_csv(result.out / "logit_lens.csv")
    assert set(table["task"]) == set(get_task_set("word").default_task_names)


@pytest.mark.integration
def test_smollm2_final_layer_matches_scorer(smollm2) -> None:  # noqa: ANN001
    from interp.scoring import score_prompts

    prompts = _prompts("word", n=2, per_task=2)  # single-token answers: first token = full answer
    rows = logit_lens_rows(smollm2, prompts, show_progress=False, use_cache=False)
    final = rows[rows["site"] == "final"].set_index(["prompt_id", "task"])["logprob"]
    scores = score_prompts(smollm2, prompts, show_progress=False)
    scores = scores[scores["n_tokens"] == 1].set_index(["prompt_id", "task"])["logprob"]
    assert len(scores) >= 4
    assert np.allclose(final.loc[scores.index].to_numpy(), scores.to_numpy(), atol=1e-3)


def test_full_answer_lens_at_the_last_layer_is_the_teacher_forced_answer_probability(tiny_model) -> None:  # noqa: ANN001
    from interp.scoring import score_prompts

    prompts = _prompts(task_set="ab", n=2)  # multi-token answers (sums, operands)
    rows = logit_lens_rows(tiny_model, prompts, show_progress=False, use_cache=False)
    scores = score_prompts(tiny_model, prompts, show_progress=False).set_index(["prompt_id", "task"])
    final = rows[rows["layer"] == tiny_model.n_layers]
    assert (scores["n_tokens"] > 1).any()
    for _, r in final.iterrows():
        assert r["answer_logprob"] == pytest.approx(scores.loc[(r["prompt_id"], r["task"]), "logprob"], abs=1e-4)
    # Below the last layer the full answer is a product of per-token lens probabilities: never above the first token's.
    assert (rows["answer_prob"] <= rows["prob"] + 1e-7).all()
    table = summarize_lens(rows, n_boot=200)
    assert {"answer_prob", "answer_prob_ci_low", "answer_prob_ci_high", "prob_ci_low", "rank_ci_high"} <= set(table.columns)
    assert (table["answer_prob_ci_low"] <= table["answer_prob"] + 1e-12).all()


def test_shared_first_token_entry_is_marked_inconclusive() -> None:
    table = pd.DataFrame({"layer": [0, 1], "site": ["a", "final"], "task": ["x", "x"], "condition": "superposed",
                          "prob": [0.2, 0.4], "rank": [3, 1], "median_rank": [3, 1], "shared_first_token": [0.5, 0.5],
                          "answer_prob": [0.01, 0.02]})
    entry = entry_layers(table, k=10).iloc[0]
    assert not entry["first_token_conclusive"] and entry["final_answer_prob"] == 0.02
