"""Head attribution: DLA closes, per-head outputs rebuild attn_out, ablation hooks are exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import small_prompts

from analyses.head_attribution import (
    ablate_heads,
    head_ablation,
    head_attention,
    head_attribution,
    head_means,
    head_name,
    head_overlap,
    head_ranking,
    output_weights,
    parse_head,
    query_attention,
    random_heads,
    top_heads,
)
from interp.activations import collect_activations, token_positions
from interp.errors import InterpError
from interp.scoring import score_prompts
from interp_app.commands.heads import HeadAttributionConfig, run_heads
from interp_app.figures.heads import attention_view

pytestmark = pytest.mark.usefixtures("private_cache")


def _prompts(task_set: str = "country", n: int = 3, per_task: int = 3):  # noqa: ANN202
    return small_prompts(task_set, n, per_task, seed=2)


def test_decomposition_closes(tiny_model) -> None:  # noqa: ANN001
    prompts = _prompts()
    result = head_attribution(tiny_model, prompts, show_progress=False)
    closure = result.closure
    assert len(closure) == len(prompts) * len(result.tasks)
    assert closure["error"].max() <= 1e-4
    assert closure["diff_error"].max() <= 1e-4
    # The attributed quantity is non-trivial (not everything zero).
    assert closure["logit"].abs().max() > 1e-2
    kinds = result.attributions.groupby("kind").size()
    n_rows = len(prompts) * len(result.tasks)
    assert kinds["head"] == n_rows * tiny_model.n_layers * tiny_model.n_heads
    assert kinds["mlp"] == n_rows * tiny_model.n_layers and kinds["embed"] == n_rows


def test_head_outputs_rebuild_attn_out(tiny_model) -> None:  # noqa: ANN001
    # With GQA, hook_z is per query head; sum_h z[h] @ W_O[h] (+ b_O) must equal hook_attn_out.
    prompts = _prompts(n=2)
    acts = collect_activations(tiny_model, prompts, ["attn.hook_z", "attn_out"], positions="query",
                               show_progress=False)
    W_O, b_O = output_weights(tiny_model)
    assert W_O.shape == (tiny_model.n_layers, tiny_model.n_heads, tiny_model.bridge.cfg.d_head, tiny_model.d_model)
    assert acts["blocks.0.attn.hook_z"].shape[2] == tiny_model.n_heads
    for layer in range(tiny_model.n_layers):
        z = acts[f"blocks.{layer}.attn.hook_z"][:, 0]
        rebuilt = torch.einsum("phe,hed->pd", z, W_O[layer]) + (0 if b_O is None else b_O[layer])
        assert torch.allclose(rebuilt, acts[f"blocks.{layer}.hook_attn_out"][:, 0], atol=1e-5)


def test_dla_of_one_head_by_hand(tiny_llama) -> None:  # noqa: ANN001
    # Independent path: HF weights (o_proj, final norm, lm_head) and the bridge's final residual.
    prompt = _prompts(n=1)[0]
    result = head_attribution(tiny_llama, [prompt], show_progress=False, use_cache=False)
    L = tiny_llama.n_layers
    acts = collect_activations(tiny_llama, [prompt], ["blocks.1.attn.hook_z", f"blocks.{L - 1}.hook_resid_post"],
                               positions="query", show_progress=False)
    z = acts["blocks.1.attn.hook_z"][0, 0, 2]  # head 2
    d_head = tiny_llama.bridge.cfg.d_head
    o = tiny_llama.hf_model.model.layers[1].self_attn.o_proj.weight.detach()[:, 2 * d_head: 3 * d_head]
    out = o @ z
    resid = acts[f"blocks.{L - 1}.hook_resid_post"][0, 0]
    norm = tiny_llama.hf_model.model.norm
    scale = torch.sqrt(resid.pow(2).mean() + norm.variance_epsilon)
    W_U = tiny_llama.hf_model.lm_head.weight.detach()  # [vocab, d]
    norm_w = norm.weight.detach()
    row = result.attributions[(result.attributions["component"] == "L1H2")].iloc[0]
    logits_dir = (out / scale * norm_w) @ W_U.T
    expected = float(logits_dir[row["token"]] - logits_dir.mean())
    assert abs(row["logit_attr"] - expected) < 1e-5


def test_ablation_hook_matches_hook_z_patch(tiny_model) -> None:  # noqa: ANN001
    prompt = _prompts(n=1)[0]
    ids = torch.tensor([tiny_model.encode_prompt(prompt.text)])
    value = torch.randn(tiny_model.bridge.cfg.d_head)

    def patch(z: torch.Tensor, hook: object) -> torch.Tensor:
        z = z.clone()
        z[:, :, 1] = value
        z[:, :, 3] = 0
        return z

    with torch.no_grad():
        clean = tiny_model.hf_model(ids).logits
        bridged = tiny_model.bridge.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", patch)])
        with head_ablation(tiny_model, {(1, 1): value, (1, 3): None}):
            ablated = tiny_model.hf_model(ids).logits
        with head_ablation(tiny_model, {}):
            nothing = tiny_model.hf_model(ids).logits
        after = tiny_model.hf_model(ids).logits
    assert torch.allclose(ablated, bridged, atol=1e-4)
    assert (ablated - clean).abs().max() > 1e-3  # ablating a head changes outputs
    assert torch.equal(nothing, clean)  # ablating nothing changes nothing
    assert torch.equal(after, clean)  # hooks are removed afterwards
    with pytest.raises(InterpError):
        with head_ablation(tiny_model, {(tiny_model.n_layers, 0): None}):
            pass


def test_ablate_heads_scores(tiny_llama) -> None:  # noqa: ANN001
    prompts = _prompts(n=2)
    base = score_prompts(tiny_llama, prompts, show_progress=False)
    none = ablate_heads(tiny_llama, prompts, [], "zero", show_progress=False)
    pd.testing.assert_frame_equal(base, none)
    for mode in ("mean", "zero"):
        scores = ablate_heads(tiny_llama, prompts, [(0, 0), (1, 2)], mode, show_progress=False)
        assert np.abs(scores["logprob"].to_numpy() - base["logprob"].to_numpy()).max() > 1e-3
    with pytest.raises(InterpError):
        ablate_heads(tiny_llama, prompts, [(0, 0)], "resample", show_progress=False)


def test_head_means_are_position_averages(tiny_model) -> None:  # noqa: ANN001
    prompts = _prompts(n=2)
    means = head_means(tiny_model, prompts, layers=[1], show_progress=False)
    acts = collect_activations(tiny_model, prompts, ["blocks.1.attn.hook_z"], positions="all", show_progress=False)
    z, valid = acts["blocks.1.attn.hook_z"], acts.positions >= 0
    expected = z[valid].mean(0)  # over prompts and their (unpadded) positions
    assert torch.allclose(means[1], expected, atol=1e-5)
    assert torch.equal(means[0], torch.zeros_like(means[0]))


def _synthetic_heads() -> pd.DataFrame:
    rows = []
    for task, best in {"a": [(0, 0), (0, 1), (1, 0)], "b": [(0, 0), (1, 1), (1, 2)], "c": [(2, 0), (2, 1), (2, 2)]}.items():
        for layer in range(3):
            for h in range(3):
                score = 10 - best.index((layer, h)) if (layer, h) in best else -layer - h * 0.1
                rows.append({"task": task, "head_name": head_name(layer, h), "layer": layer, "head": h,
                             "logit_attr": score, "diff_attr": -score})
    table = pd.DataFrame(rows)
    for metric, col in {"logit": "logit_attr", "diff": "diff_attr"}.items():
        table[f"rank_{metric}"] = table.groupby("task")[col].rank(ascending=False, method="first").astype(int)
    return table


def test_top_heads_and_overlap() -> None:
    table = _synthetic_heads()
    assert top_heads(table, "a", 3) == [(0, 0), (0, 1), (1, 0)]
    jaccard, membership = head_overlap(table, 3)
    assert jaccard.loc["a", "b"] == pytest.approx(1 / 5)  # {L0H0} shared of 5
    assert jaccard.loc["a", "c"] == 0 and jaccard.loc["c", "c"] == 1
    shared = membership.set_index("head_name").loc["L0H0"]
    assert shared["n_tasks"] == 2 and shared["rank:a"] == 1 and np.isnan(shared["rank:c"])
    ranking = head_ranking(table, 2)
    assert ranking[ranking["task"] == "b"]["head_name"].tolist() == ["L0H0", "L1H1"]
    assert parse_head("L12H3") == (12, 3)
    with pytest.raises(InterpError):
        parse_head("12.3")
    with pytest.raises(InterpError):
        top_heads(table, "zzz")


def test_random_heads_avoid_excluded(tiny_llama) -> None:  # noqa: ANN001
    exclude = {(0, 0), (0, 1), (1, 0)}
    picked = random_heads(tiny_llama, 3, exclude, seed=1)
    assert len(picked) == 3 and not set(picked) & exclude
    assert picked == random_heads(tiny_llama, 3, exclude, seed=1)


def test_head_attention_for_circuitsvis(tiny_model) -> None:  # noqa: ANN001
    prompt = _prompts(n=1)[0]
    pattern, tokens, names = head_attention(tiny_model, prompt, [(1, 2), (0, 1)])
    n = len(tiny_model.encode_prompt(prompt.text))
    assert pattern.shape == (2, n, n) and names == ["L1H2", "L0H1"]
    # Char tokenizers, no BOS: the real prompt's tokens (tiny-qwen2's drops whitespace).
    assert "".join(tokens) in (prompt.text, "".join(prompt.text.split()))
    assert torch.allclose(pattern.sum(-1), torch.ones(2, n), atol=1e-4)
    assert torch.equal(pattern.triu(1), torch.zeros_like(pattern))  # causal
    q = token_positions(tiny_model, prompt, "query")[0]
    assert q == n - 1
    cropped, crop_tokens, _ = head_attention(tiny_model, prompt, [(1, 2)], window=10)
    assert cropped.shape == (1, 10, 10) and crop_tokens == tokens[-10:]
    html = attention_view(tiny_model, prompt, [(1, 2)], window=10).local_src
    assert "L1H2" in html and "<script" in html


def test_query_attention_summary(tiny_llama) -> None:  # noqa: ANN001
    prompt = _prompts(n=1)[0]
    pattern, tokens, _ = head_attention(tiny_llama, prompt, [(1, 2)])
    qa = query_attention(tiny_llama, prompt, [(1, 2)], top=4)
    expected = pattern[0, -1].topk(4)
    assert qa["src_pos"].tolist() == expected.indices.tolist()
    assert np.allclose(qa["weight"], expected.values.numpy())
    line_start = len(tokens) - len(prompt.query + prompt.separator)  # char tokens: one per character
    for row in qa.itertuples():
        assert row.src_role == ("query line" if row.src_pos >= line_start else "examples")
        assert row.src_token == tokens[row.src_pos]


def test_run_heads_writes_outputs(tmp_path) -> None:  # noqa: ANN001
    cfg = HeadAttributionConfig(model="tiny-qwen2", task_set="country", n_prompts=2, examples_per_task=2,
                                top_n=2, out=str(tmp_path / "run"))
    result = run_heads(cfg, show_progress=False)
    for name in ("attributions.csv", "closure.csv", "heads.csv", "head_ranking.csv", "jaccard.csv",
                 "head_membership.csv", "ablation.csv", "head_attribution.png", "head_attribution.svg",
                 "overlap_ablation.png", "attention_top_heads.html", "query_attention.csv"):
        assert (result.out / name).exists(), name
    ablation = pd.read_csv(result.out / "ablation.csv")
    assert set(ablation["ablated"]) == {"capital", "continent", "upper", "random"}
    assert set(ablation["mode"]) == {"mean", "zero"}
    assert len(ablation) == 4 * 2 * 3
    own = ablation[ablation["ablated"] != "random"]
    assert own["specificity"].notna().all() and ablation[ablation["ablated"] == "random"]["specificity"].isna().all()
    row = own[(own["mode"] == "mean") & (own["ablated"] == "capital")]
    expected = row[row["task"] != "capital"]["delta_logprob"].mean() - row[row["task"] == "capital"]["delta_logprob"].iloc[0]
    assert np.isclose(row["specificity"].iloc[0], expected)
    with pytest.raises(InterpError):
        run_heads(HeadAttributionConfig(model="tiny-qwen2", rank_by="size", out=str(tmp_path / "x")))


@pytest.mark.integration
def test_smollm2_decomposition_closes(smollm2) -> None:  # noqa: ANN001
    prompts = _prompts("country", n=1, per_task=2)
    result = head_attribution(smollm2, prompts, show_progress=False, use_cache=False)
    assert result.n_heads == 9 and result.n_layers == 30
    assert result.closure["error"].max() <= 1e-3  # logits of SmolLM2 are O(10); float32 sums of 301 terms
    heads = result.attributions[result.attributions["kind"] == "head"]
    assert heads["layer"].nunique() == 30 and heads["head"].nunique() == 9


def test_head_intervals_stability_and_shared_first_token_exclusion(tiny_llama) -> None:  # noqa: ANN001
    from analyses.head_attribution import head_attribution, head_ranking
    from analyses.logit_lens import first_answer_tokens

    prompts = _prompts(task_set="ab", n=6)
    shared = [p.prompt_id for p in prompts if len(set(first_answer_tokens(tiny_llama, p).values())) < 3]
    result = head_attribution(tiny_llama, prompts, show_progress=False, use_cache=False)
    heads = result.heads
    kept = len(prompts) - len(shared) if len(shared) < len(prompts) else len(prompts)
    assert result.excluded_shared == (len(shared) if len(shared) < len(prompts) else 0)
    assert (heads["n_prompts"] == kept).all()
    assert (heads["logit_attr_ci_low"] <= heads["logit_attr"] + 1e-9).all()
    assert (heads["logit_attr"] <= heads["logit_attr_ci_high"] + 1e-9).all()
    # Stability: per task the top-5 frequencies sum to 5 (each resample has exactly 5 heads in its top set).
    for _, g in heads.groupby("task"):
        assert g["top_n_stability_logit"].sum() == pytest.approx(5.0)
    ranking = head_ranking(result, n=3)
    assert {"ci_low", "ci_high", "top_n_stability"} <= set(ranking.columns)
