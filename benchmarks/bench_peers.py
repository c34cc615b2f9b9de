"""Benchmark against the tools a researcher would use instead: TransformerLens 4 and nnsight.

The same four mechanism analyses on the same prompts, written three ways:

* ``toolkit``   — this toolkit's own functions (:mod:`analyses.logit_lens`, :mod:`analyses.head_attribution`,
  :mod:`analyses.task_vectors`, :mod:`interp.patching`), as the app calls them;
* ``tl``        — an idiomatic TransformerLens 4 ``TransformerBridge`` script written as its docs teach
  (``boot_transformers`` + ``enable_compatibility_mode``, ``run_with_cache`` with the ``names_filter``
  and ``pos_slice`` a careful user passes, ``accumulated_resid(apply_ln=True)``, ``stack_head_results``,
  ``decompose_resid``, ``logit_attrs``, ``run_with_hooks``);
* ``tl-unfiltered`` — the same script the way most users write it: ``run_with_cache(tokens)``, everything cached;
* ``nnsight``   — an idiomatic nnsight 0.8 ``LanguageModel`` script (``model.trace`` with ``.save()`` and in-place
  edits of ``.input`` / ``.output``), on the plain HF model nnsight loads (sdpa attention).

The workloads (``P`` prompts, ``K`` tasks, ``L`` layers, ``H`` heads):

* ``a`` logit lens: log P(each task's answer's first token) read through the final norm and unembedding from the
  residual before every block and after the last, at the query position → ``[P, L+1, K]``;
* ``b`` direct logit attribution of every head, every MLP and the embedding to each task's centred answer logit
  at the query position → ``[P, K, 1 + L·H + L]``;
* ``c`` mean ablation: each task's top ``--top-n`` heads (by mean DLA, from ``b``) replaced at every position by
  their mean ``z`` over all prompts and positions, every task's full (multi-token) answer rescored, plus the
  unablated scores → ``[K+1, P, K]``;
* ``d`` task-vector patching over all layers: each task's vector (mean ``resid_post`` at the query of
  single-task versions of the first ``--tv-prompts`` prompts) replaces the query's residual after block ``l``,
  for every ``l``, in those superposed prompts, and that task's full answer is rescored → ``[N, K, L+1]``.

Numbers must agree: every implementation's arrays are compared with the toolkit's; the largest absolute
difference is printed beside the tolerance (``TOLERANCE``, float32 on CPU; eager vs sdpa attention and
different summation orders differ in the last bits). Each (implementation, workload) runs in its **own
subprocess** (clean peak RSS: the peak is reset after the model is loaded, via ``/proc/self/clear_refs``),
the order of implementations rotates from one workload to the next (interleaved), and every job reports
wall time, CPU time (user + system) and the peak RSS of the workload, plus the process totals.

Usage::

    make bench-peers                       # builds .venv-bench (project requirements + requirements-bench.txt)
    # the README's run (the defaults): 20 prompts of ~600 tokens, (c) on 4 of them, (d) on 1
    .venv-bench/bin/python benchmarks/bench_peers.py --out runs/bench_peers.json
    .venv-bench/bin/python benchmarks/bench_peers.py --summary runs/bench_peers.json     # the README table
    # the README's scaling tables
    .venv-bench/bin/python benchmarks/bench_peers.py --scaling --n-prompts 4 --length 200 --lengths 200,800,1600 \
        --counts "" --workloads a,b --limit tl-unfiltered=a --out runs/peers_lengths.json
    .venv-bench/bin/python benchmarks/bench_peers.py --scaling --n-prompts 10 --length 200 --lengths "" \
        --counts 10,40,160 --workloads a --out runs/peers_counts.json

``--threads`` (default 1) fixes torch's threads in every job, so a shared 2-core machine measures the same
work for every implementation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("INTERP_NO_PROGRESS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

IMPLS = ("toolkit", "tl", "tl-unfiltered", "nnsight")
WORKLOADS = ("a", "b", "c", "d")
WORKLOAD_NAMES = {"a": "logit lens", "b": "DLA heads+MLPs", "c": "mean ablation", "d": "task-vector patching"}
# Largest |difference| from the toolkit's numbers accepted (log-probs in nats; attributions in logit units).
TOLERANCE = {"a": 2e-3, "b": 2e-3, "c": 2e-3, "d": 2e-3}


# ============================================================================ measurement


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so the workload's own peak can be read (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ============================================================================ the shared job spec


def _prompts_of_length(task_set: str, tasks: Sequence[str], n_prompts: int, target_tokens: int, seed: int,
                       count: Callable[[str], int]) -> list[Any]:
    """``n_prompts`` superposed prompts whose token count is close to ``target_tokens``."""
    from interp.prompts import build_prompts

    mixture = {t: 1.0 / len(tasks) for t in tasks} if tasks else None
    n_examples = max(len(tasks) or 1, target_tokens // 9)
    for _ in range(3):
        probe = build_prompts(task_set, mixture=mixture, n_prompts=min(n_prompts, 4), n_examples=n_examples, seed=seed)
        per_example = sum(count(p.text) for p in probe) / len(probe) / n_examples
        n_examples = max(len(tasks) or 1, round(target_tokens / per_example))
    return build_prompts(task_set, mixture=mixture, n_prompts=n_prompts, n_examples=n_examples, seed=seed)


def build_spec(model: Any, task_set: str, tasks: Sequence[str], n_prompts: int, length: int, tv_prompts: int,
               top_n: int, seed: int, ablation_prompts: int = 0) -> dict[str, Any]:
    """Prompts plus every token id the peer scripts need (tokenized once, by the toolkit's rules)."""
    from analyses.logit_lens import first_answer_tokens, single_task_controls
    from interp.activations import token_positions
    from interp.scoring import natural_split, tokenize_answers

    prompts = _prompts_of_length(task_set, tasks, n_prompts, length, seed, lambda t: len(model.encode_prompt(t)))
    task_names = list(prompts[0].answers)
    records = []
    for p in prompts:
        ids = model.encode_prompt(p.text)
        split = natural_split(model, p.text, p.answers)
        records.append({
            "prompt": json.loads(p.to_json()), "ids": ids,
            "query_pos": token_positions(model, p, "query", ids)[0],
            "first_tokens": [first_answer_tokens(model, p)[t] for t in task_names],
            "score_ids": split.ids, "answers": [next(a.ids for a in split.answers if a.task == t) for t in task_names],
            "tv_answers": [next(a.ids for a in tokenize_answers(model, p.text, ids, p.answers) if a.task == t)
                           for t in task_names],
        })
    n_tv = min(tv_prompts, len(prompts))
    controls = single_task_controls(prompts[:n_tv], task_set)
    control_ids = [[model.encode_prompt(c.text) for c in controls[t]] for t in task_names]
    return {"model": model.name, "model_dir": str(model.path), "task_set": task_set, "tasks": task_names,
            "n_layers": model.n_layers, "n_heads": model.n_heads, "d_head": int(model.bridge.cfg.d_head),
            "records": records, "tv_prompts": n_tv, "control_ids": control_ids, "top_n": top_n,
            "ablation_prompts": min(ablation_prompts, len(records)) if ablation_prompts > 0 else len(records),
            "mean_tokens": sum(len(r["ids"]) for r in records) / len(records), "heads": None}


def _logprob_of(logits: Any, start: int, answer: Sequence[int]) -> float:
    """Sum of log P(answer[t]) read at positions ``start + t`` of one row of logits ``[pos, vocab]``."""
    import torch

    logp = torch.log_softmax(logits[start: start + len(answer)].float(), dim=-1)
    return float(logp[torch.arange(len(answer)), torch.tensor(answer)].sum())


# ============================================================================ implementation: this toolkit


def run_toolkit(spec: dict[str, Any], workload: str, loaded: Callable[[Any], None]) -> Any:
    import torch

    from analyses.head_attribution import ablate_heads, head_attribution, head_means
    from analyses.logit_lens import logit_lens_rows, single_task_controls
    from analyses.task_vectors import score_patched, separator_states
    from interp.models import load_model
    from interp.patching import Patch
    from interp.prompts import Prompt
    from interp.scoring import score_prompts

    model = load_model(spec["model"])
    prompts = [Prompt.from_dict(r["prompt"]) for r in spec["records"]]
    tasks, L = spec["tasks"], spec["n_layers"]
    loaded(model.hf_model)
    if workload == "a":
        rows = logit_lens_rows(model, prompts, show_progress=False, use_cache=False, full_answer=False)
        table = rows.pivot_table(index=["prompt_id", "layer"], columns="task", values="logprob")[tasks]
        return table.to_numpy().reshape(len(prompts), L + 1, len(tasks)).tolist()
    if workload == "b":
        result = head_attribution(model, prompts, show_progress=False, use_cache=False)
        frame = result.attributions
        frame = frame[frame["kind"].isin(["embed", "head", "mlp"])]
        out = []
        for p in prompts:
            per_task = []
            for t in tasks:
                sel = frame[(frame["prompt_id"] == p.prompt_id) & (frame["task"] == t)]
                per_task.append(_component_vector(sel, L, spec["n_heads"]))
            out.append(per_task)
        return out
    if workload == "c":
        heads = {t: [tuple(h) for h in spec["heads"][t]] for t in tasks}
        prompts = prompts[: spec["ablation_prompts"]]
        means = head_means(model, prompts, sorted({layer for hs in heads.values() for layer, _ in hs}),
                           show_progress=False)
        frames = [score_prompts(model, prompts, show_progress=False)]
        frames += [ablate_heads(model, prompts, heads[t], "mean", means, show_progress=False) for t in tasks]
        return [f.pivot_table(index="prompt_id", columns="task", values="logprob")[tasks].to_numpy().tolist()
                for f in frames]
    if workload == "d":
        n = spec["tv_prompts"]
        controls = single_task_controls(prompts[:n], spec["task_set"])
        vectors = {t: separator_states(model, controls[t], show_progress=False, use_cache=False).mean(0) for t in tasks}
        rows: list[tuple[dict[str, Any], Patch | None]] = []
        for t in tasks:
            rows.append(({"answer_task": t, "layer": -1}, None))
            rows += [({"answer_task": t, "layer": layer}, Patch(layer, vectors[t][layer], "replace")) for layer in range(L)]
        scores = score_patched(model, prompts[:n], rows, show_progress=False)
        out = torch.zeros(n, len(tasks), L + 1)
        index = {p.prompt_id: i for i, p in enumerate(prompts[:n])}
        for r in scores.itertuples():
            out[index[r.query_id], tasks.index(r.answer_task), r.layer + 1] = r.logprob
        return out.tolist()
    raise ValueError(workload)


def _component_vector(sel: Any, n_layers: int, n_heads: int) -> list[float]:
    """embed, then L·H heads (layer-major), then L MLPs, from the toolkit's attribution rows of one prompt/task."""
    embed = sel[sel["kind"] == "embed"]["logit_attr"].tolist()
    heads = sel[sel["kind"] == "head"].sort_values(["layer", "head"])["logit_attr"].tolist()
    mlps = sel[sel["kind"] == "mlp"].sort_values("layer")["logit_attr"].tolist()
    assert len(heads) == n_layers * n_heads and len(mlps) == n_layers
    return embed + heads + mlps


# ============================================================================ implementation: TransformerLens 4 bridge


def run_tl(spec: dict[str, Any], workload: str, loaded: Callable[[Any], None], careful: bool) -> Any:
    """What a TransformerLens 4 user writes (``careful``: names_filter + pos_slice; else cache everything)."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    torch.set_grad_enabled(False)
    model = TransformerBridge.boot_transformers(spec["model_dir"], device="cpu", dtype=torch.float32)
    model.enable_compatibility_mode()  # the docs: DLA and logit lens match HookedTransformer only in this mode
    loaded(model)
    L, H = spec["n_layers"], spec["n_heads"]
    records, tasks = spec["records"], spec["tasks"]

    def cache_of(ids: list[int], names: Any, pos: int | None) -> Any:
        tokens = torch.tensor([ids])
        if careful:
            _, cache = model.run_with_cache(tokens, names_filter=names, pos_slice=pos, return_type=None)
            return cache, None
        _, cache = model.run_with_cache(tokens)
        return cache, pos

    if workload == "a":
        names = [f"blocks.{layer}.hook_resid_pre" for layer in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
        out = []
        for r in records:
            cache, pos = cache_of(r["ids"], names, r["query_pos"])
            resid = cache.accumulated_resid(apply_ln=True, pos_slice=pos)  # [L+1, batch, (pos,) d]
            logits = model.unembed(resid).reshape(L + 1, -1)  # W_U (+ b_U); one position
            logp = torch.log_softmax(logits.float(), dim=-1)
            out.append(logp[:, r["first_tokens"]].tolist())
            del cache
        return out
    if workload == "b":
        names = (["blocks.0.hook_resid_pre", f"blocks.{L - 1}.hook_resid_post", "ln_final.hook_scale"]
                 + [f"blocks.{layer}.attn.hook_z" for layer in range(L)]
                 + [f"blocks.{layer}.hook_mlp_out" for layer in range(L)])
        out = []
        for r in records:
            cache, pos = cache_of(r["ids"], names, r["query_pos"])
            # Each component's output at the query; logit_attrs applies the final norm's cached scale itself.
            heads = cache.stack_head_results(layer=-1, pos_slice=pos)  # [L*H, 1, (1,) d]
            mlps = cache.decompose_resid(layer=-1, mode="mlp", incl_embeds=False, pos_slice=pos)
            embed = cache["blocks.0.hook_resid_pre"][None]
            if pos is not None:
                embed = embed[:, :, pos]
            d = embed.shape[-1]
            stack = torch.cat([x.reshape(x.shape[0], 1, d) for x in (embed, heads, mlps)])  # [1 + L*H + L, 1, d]
            per_task = []
            for tok in r["first_tokens"]:
                attrs = cache.logit_attrs(stack, tokens=torch.tensor([tok]), pos_slice=pos)  # [C, 1]
                per_task.append(attrs[:, 0].tolist())
            out.append(per_task)
            del cache
        return out
    if workload == "c":
        heads = {t: [tuple(h) for h in spec["heads"][t]] for t in tasks}
        layers = sorted({layer for hs in heads.values() for layer, _ in hs})
        records = records[: spec["ablation_prompts"]]
        sums = {layer: torch.zeros(H, spec["d_head"], dtype=torch.float64) for layer in layers}
        count = 0
        for r in records:
            cache, _ = cache_of(r["ids"], [f"blocks.{layer}.attn.hook_z" for layer in layers], None)
            for layer in layers:
                sums[layer] += cache[f"blocks.{layer}.attn.hook_z"][0].double().sum(0)
            count += len(r["ids"])
            del cache
        means = {layer: (s / count).float() for layer, s in sums.items()}

        def ablate(head_list: list[tuple[int, int]]) -> list[tuple[str, Callable]]:
            hooks = []
            for layer in sorted({lay for lay, _ in head_list}):
                picked = [h for lay, h in head_list if lay == layer]

                def hook(z: Any, hook: Any, layer: int = layer, picked: list[int] = picked) -> Any:
                    z[:, :, picked] = means[layer][picked]
                    return z

                hooks.append((f"blocks.{layer}.attn.hook_z", hook))
            return hooks

        out = []
        for head_list in [[]] + [heads[t] for t in tasks]:
            hooks = ablate(head_list)
            rows = []
            for r in records:
                scores = []
                for answer in r["answers"]:
                    tokens = torch.tensor([r["score_ids"] + answer[:-1]])
                    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[0]
                    scores.append(_logprob_of(logits, len(r["score_ids"]) - 1, answer))
                rows.append(scores)
            out.append(rows)
        return out
    if workload == "d":
        n = spec["tv_prompts"]
        names = [f"blocks.{layer}.hook_resid_post" for layer in range(L)]
        vectors = []
        for per_task in spec["control_ids"]:
            states = []
            for ids in per_task:
                cache, pos = cache_of(ids, names, len(ids) - 1)
                states.append(cache.stack_activation("resid_post")[:, 0] if pos is None
                              else cache.stack_activation("resid_post")[:, 0, pos])
                del cache
            vectors.append(torch.stack(states).mean(0))  # [L, d]
        out = []
        for r in records[:n]:
            q = len(r["ids"]) - 1
            per_task = []
            for k, answer in enumerate(r["tv_answers"]):
                tokens = torch.tensor([r["ids"] + answer[:-1]])
                row = [_logprob_of(model(tokens)[0], q, answer)]
                for layer in range(L):
                    def patch(resid: Any, hook: Any, v: Any = vectors[k][layer], q: int = q) -> Any:
                        resid[:, q] = v
                        return resid

                    logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", patch)])[0]
                    row.append(_logprob_of(logits, q, answer))
                per_task.append(row)
            out.append(per_task)
        return out
    raise ValueError(workload)


# ============================================================================ implementation: nnsight


def run_nnsight(spec: dict[str, Any], workload: str, loaded: Callable[[Any], None]) -> Any:
    """What an nnsight user writes: ``model.trace`` on the HF model, ``.save()`` and in-place edits."""
    import nnsight
    import torch
    from nnsight import LanguageModel

    torch.set_grad_enabled(False)
    model = LanguageModel(spec["model_dir"], dispatch=True, dtype=torch.float32)
    model.eval()
    loaded(model._module)
    L, H, d_head = spec["n_layers"], spec["n_heads"], spec["d_head"]
    records, tasks = spec["records"], spec["tasks"]
    layers = model.model.layers
    norm, lm_head = model.model.norm, model.lm_head

    if workload == "a":
        out = []
        for r in records:
            q = r["query_pos"]
            with model.trace(torch.tensor([r["ids"]])):
                # the residual before each block, then after the last
                states = nnsight.save([layer.input[0, q] for layer in layers] + [layers[-1].output[0, q]])
            hidden = torch.stack(states)
            logp = torch.log_softmax(lm_head._module(norm._module(hidden)).float(), dim=-1)
            out.append(logp[:, r["first_tokens"]].tolist())
        return out
    if workload == "b":
        W_U = lm_head._module.weight.detach().double()  # [vocab, d]
        w_norm = norm._module.weight.detach().double()
        eps = norm._module.variance_epsilon
        out = []
        for r in records:
            q = r["query_pos"]
            with model.trace(torch.tensor([r["ids"]])):
                embed = layers[0].input[0, q].save()
                zs, mlps = nnsight.save([]), nnsight.save([])
                for layer in layers:
                    zs.append(layer.self_attn.o_proj.input[0, q])
                    mlps.append(layer.mlp.output[0, q])
                final = layers[-1].output[0, q].save()
            scale = (final.double().pow(2).mean() + eps).sqrt()
            parts = [embed.double()[None]]
            for i, layer in enumerate(layers):
                W_O = layer.self_attn.o_proj._module.weight.detach().double()  # [d, H*d_head]
                z = zs[i].double().view(H, d_head)
                parts.append(torch.einsum("he,dhe->hd", z, W_O.view(-1, H, d_head)))
            parts.append(torch.stack([m.double() for m in mlps]))
            comps = torch.cat([parts[0], torch.cat(parts[1:-1]), parts[-1]]) / scale * w_norm  # [C, d]
            per_task = []
            for tok in r["first_tokens"]:
                direction = W_U[tok] - W_U.mean(0)
                per_task.append((comps @ direction).tolist())
            out.append(per_task)
        return out
    if workload == "c":
        heads = {t: [tuple(h) for h in spec["heads"][t]] for t in tasks}
        used = sorted({layer for hs in heads.values() for layer, _ in hs})
        records = records[: spec["ablation_prompts"]]
        sums = {layer: torch.zeros(H * d_head, dtype=torch.float64) for layer in used}
        count = 0
        for r in records:
            with model.trace(torch.tensor([r["ids"]])):
                saved = nnsight.save({layer: layers[layer].self_attn.o_proj.input.sum(dim=(0, 1)) for layer in used})
            for layer in used:
                sums[layer] += saved[layer].double()
            count += len(r["ids"])
        means = {layer: (s / count).float().view(H, d_head) for layer, s in sums.items()}
        out = []
        for head_list in [[]] + [heads[t] for t in tasks]:
            by_layer: dict[int, list[int]] = {}
            for layer, h in head_list:
                by_layer.setdefault(layer, []).append(h)
            rows = []
            for r in records:
                scores = []
                for answer in r["answers"]:
                    tokens = torch.tensor([r["score_ids"] + answer[:-1]])
                    with model.trace(tokens):
                        for layer in sorted(by_layer):
                            z = layers[layer].self_attn.o_proj.input
                            for h in by_layer[layer]:
                                z[:, :, h * d_head:(h + 1) * d_head] = means[layer][h]
                        logits = model.lm_head.output[0].save()
                    scores.append(_logprob_of(logits, len(r["score_ids"]) - 1, answer))
                rows.append(scores)
            out.append(rows)
        return out
    if workload == "d":
        n = spec["tv_prompts"]
        vectors = []
        for per_task in spec["control_ids"]:
            states = []
            for ids in per_task:
                with model.trace(torch.tensor([ids])):
                    saved = nnsight.save([layer.output[0, -1] for layer in layers])
                states.append(torch.stack(saved))
            vectors.append(torch.stack(states).mean(0))  # [L, d]
        out = []
        for r in records[:n]:
            q = len(r["ids"]) - 1
            per_task = []
            for k, answer in enumerate(r["tv_answers"]):
                tokens = torch.tensor([r["ids"] + answer[:-1]])
                row = []
                for layer in [-1, *range(L)]:
                    with model.trace(tokens):
                        if layer >= 0:
                            layers[layer].output[0, q] = vectors[k][layer]
                        logits = model.lm_head.output[0].save()
                    row.append(_logprob_of(logits, q, answer))
                per_task.append(row)
            out.append(per_task)
        return out
    raise ValueError(workload)


# ============================================================================ one job (subprocess)


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    spec = json.loads(Path(args.spec).read_text())
    marks: dict[str, Any] = {}

    def loaded(module: Any) -> None:
        # Touch every weight once: a freshly loaded model may still be partly unread (memory-mapped
        # safetensors), which would otherwise be counted in the first workload's peak.
        with torch.no_grad():
            touched = sum(float(t.float().sum()) for t in [*module.parameters(), *module.buffers()]
                          if t.is_floating_point())
        marks["touched"] = touched
        marks["load_s"] = time.perf_counter() - marks["start"]
        marks["rss_loaded_mb"] = _status_kb("VmRSS") / 1024
        marks["peak_reset"] = _reset_peak_rss()
        marks["t0"], marks["cpu0"] = time.perf_counter(), _cpu_s()

    marks["start"] = time.perf_counter()
    impl = args.worker
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        inner = loaded

        def loaded(module: Any) -> None:  # noqa: F811 - the same mark, then start profiling the workload
            inner(module)
            profiler.enable()

    if impl == "toolkit":
        numbers = run_toolkit(spec, args.workload, loaded)
    elif impl in ("tl", "tl-unfiltered"):
        numbers = run_tl(spec, args.workload, loaded, careful=impl == "tl")
    elif impl == "nnsight":
        numbers = run_nnsight(spec, args.workload, loaded)
    else:
        raise SystemExit(f"unknown implementation {impl}")
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    result = {"impl": impl, "workload": args.workload, "wall_s": time.perf_counter() - marks["t0"],
              "cpu_s": _cpu_s() - marks["cpu0"], "peak_rss_mb": _status_kb("VmHWM") / 1024,
              "rss_loaded_mb": marks["rss_loaded_mb"], "load_s": marks["load_s"], "peak_reset": marks["peak_reset"],
              "numbers": numbers}
    Path(args.out).write_text(json.dumps(result))


def run_job(impl: str, workload: str, spec_path: Path, threads: int, tmp: Path, profile: bool = False
            ) -> dict[str, Any]:
    out = tmp / f"{impl}-{workload}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--workload", workload,
           "--spec", str(spec_path), "--out", str(out), "--threads", str(threads), *(["--profile"] if profile else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        return {"impl": impl, "workload": workload, "error": f"exit {proc.returncode}: {tail}"}
    if profile:
        print(proc.stdout, file=sys.stderr)
    result = json.loads(out.read_text())
    # The whole process (interpreter start, imports, model load and the workload), as /usr/bin/time counts it.
    result["process_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


# ============================================================================ comparison and tables


def _max_abs_diff(a: Any, b: Any) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        return float("inf")
    return float(np.nanmax(np.abs(x - y))) if x.size else 0.0


def top_heads_from(numbers: Any, spec: dict[str, Any]) -> dict[str, list[list[int]]]:
    """Each task's top ``top_n`` heads by mean DLA over prompts (from workload ``b``'s numbers)."""
    import numpy as np

    L, H = spec["n_layers"], spec["n_heads"]
    attr = np.asarray(numbers)[:, :, 1: 1 + L * H].mean(0)  # [K, L*H]
    return {t: [[int(i // H), int(i % H)] for i in np.argsort(-attr[k], kind="stable")[: spec["top_n"]]]
            for k, t in enumerate(spec["tasks"])}


def run_config(args: argparse.Namespace, model: Any, n_prompts: int, length: int, tmp: Path,
               impls: Sequence[str], workloads: Sequence[str], journal: Path | None = None) -> dict[str, Any]:
    limits = dict(part.split("=", 1) for part in args.limit.split(",") if "=" in part)
    spec = build_spec(model, args.task_set, [t for t in args.tasks.split(",") if t], n_prompts, length,
                      args.tv_prompts, args.top_n, args.seed, args.ablation_prompts)
    spec_path = tmp / f"spec-{n_prompts}-{length}.json"
    jobs: list[dict[str, Any]] = []
    reference: dict[str, Any] = {}
    for w_index, workload in enumerate(workloads):
        if workload == "c" and spec["heads"] is None:
            spec["heads"] = top_heads_from(reference["b"], spec) if "b" in reference else _heads_in_process(model, spec)
        spec_path.write_text(json.dumps(spec))
        order = list(impls[w_index % len(impls):]) + list(impls[: w_index % len(impls)])  # interleaved
        for impl in order:
            if workload not in limits.get(impl, workload):
                continue
            print(f"  [{n_prompts} prompts × {spec['mean_tokens']:.0f} tokens] {workload} {impl} ...", end="",
                  flush=True, file=sys.stderr)
            result = run_job(impl, workload, spec_path, args.threads, tmp, args.profile)
            if "error" in result:
                print(f" FAILED\n{result['error']}", file=sys.stderr)
            else:
                print(f" {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, peak {result['peak_rss_mb']:.0f} MB "
                      f"(loaded {result['rss_loaded_mb']:.0f} MB)", file=sys.stderr)
            if journal is not None:  # every job as it ends, so a stopped run keeps what it measured
                with journal.open("a") as f:
                    f.write(json.dumps({"n_prompts": n_prompts, "target_tokens": length,
                                        "mean_tokens": spec["mean_tokens"],
                                        **{k: v for k, v in result.items() if k != "numbers"}}) + "\n")
            if impl == "toolkit" and "numbers" in result:
                reference[workload] = result["numbers"]
            jobs.append(result)
    for job in jobs:
        if "numbers" in job:
            ref = reference.get(job["workload"])
            job["max_abs_diff"] = _max_abs_diff(job["numbers"], ref) if ref is not None else float("nan")
            job["agrees"] = bool(job["max_abs_diff"] <= TOLERANCE[job["workload"]])
            del job["numbers"]
    return {"n_prompts": n_prompts, "target_tokens": length, "mean_tokens": spec["mean_tokens"],
            "tv_prompts": spec["tv_prompts"], "ablation_prompts": spec["ablation_prompts"], "tasks": spec["tasks"],
            "heads": spec["heads"], "jobs": jobs}


def _heads_in_process(model: Any, spec: dict[str, Any]) -> dict[str, list[list[int]]]:
    from analyses.head_attribution import head_attribution, top_heads
    from interp.prompts import Prompt

    prompts = [Prompt.from_dict(r["prompt"]) for r in spec["records"]]
    result = head_attribution(model, prompts, show_progress=False, use_cache=False)
    return {t: [list(h) for h in top_heads(result, t, spec["top_n"])] for t in spec["tasks"]}


def _working(job: dict[str, Any]) -> float:
    """Memory the workload adds on top of the loaded model (peak RSS minus RSS after the load)."""
    return float(job.get("working_mb", job["peak_rss_mb"] - job["rss_loaded_mb"]))


def format_config(config: dict[str, Any], impls: Sequence[str], workloads: Sequence[str]) -> str:
    jobs = {(j["impl"], j["workload"]): j for j in config["jobs"]}
    head = (f"{config['n_prompts']} prompts × {config['mean_tokens']:.0f} tokens (ablation: "
            f"{config.get('ablation_prompts', config['n_prompts'])} prompts, task vectors: "
            f"{config['tv_prompts']} prompts), tasks {','.join(config['tasks'])}")
    lines = [head, "| workload | implementation | wall s | CPU s | peak RSS MB | model loaded MB | working MB | "
                   "max abs diff | agrees | wall ÷ toolkit | peak ÷ toolkit | working ÷ toolkit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    totals: dict[str, dict[str, float]] = {}
    for workload in [*workloads, "all"]:
        for impl in impls:
            if workload == "all":
                parts = [jobs.get((impl, w)) for w in workloads]
                if any(p is None or "error" in p for p in parts):
                    continue
                job = {"wall_s": sum(p["wall_s"] for p in parts), "cpu_s": sum(p["cpu_s"] for p in parts),
                       "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
                       "rss_loaded_mb": max(p["rss_loaded_mb"] for p in parts),
                       "working_mb": max(_working(p) for p in parts),
                       "max_abs_diff": max(p.get("max_abs_diff", 0.0) for p in parts),
                       "agrees": all(p.get("agrees", False) for p in parts)}
                totals[impl] = job
            else:
                job = jobs.get((impl, workload))
                if job is None:
                    continue
            if "error" in job:
                lines.append(f"| {workload} | {impl} | failed | | | | | | | | | |")
                continue
            base = totals.get("toolkit") if workload == "all" else jobs.get(("toolkit", workload))
            wall_ratio = job["wall_s"] / base["wall_s"] if base and "error" not in base else float("nan")
            peak_ratio = job["peak_rss_mb"] / base["peak_rss_mb"] if base and "error" not in base else float("nan")
            work_ratio = _working(job) / max(_working(base), 1.0) if base and "error" not in base else float("nan")
            name = "(a)–(d)" if workload == "all" else f"({workload}) {WORKLOAD_NAMES[workload]}"
            lines.append(f"| {name} | {impl} | {job['wall_s']:.2f} | {job['cpu_s']:.2f} | {job['peak_rss_mb']:.0f} | "
                         f"{job['rss_loaded_mb']:.0f} | {_working(job):.0f} | {job.get('max_abs_diff', float('nan')):.1e} | "
                         f"{'yes' if job.get('agrees') else 'NO'} | {wall_ratio:.2f}× | {peak_ratio:.2f}× | "
                         f"{work_ratio:.2f}× |")
    return "\n".join(lines)


def summary_table(config: dict[str, Any], impls: Sequence[str] = IMPLS, workloads: Sequence[str] = WORKLOADS) -> str:
    """Compact Markdown for the README: per workload, each implementation's CPU s (× the toolkit's), wall s and peak RSS."""
    jobs = {(j["impl"], j["workload"]): j for j in config["jobs"] if "error" not in j}
    impls = [i for i in impls if any((i, w) in jobs for w in workloads)]
    lines = ["| workload | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls)]
    for workload in [*workloads, "all"]:
        cells = []
        for impl in impls:
            parts = [jobs.get((impl, w)) for w in (workloads if workload == "all" else [workload])]
            base = [jobs.get(("toolkit", w)) for w in (workloads if workload == "all" else [workload])]
            if any(p is None for p in parts) or any(b is None for b in base):
                cells.append("–")
                continue
            cpu, wall = sum(p["cpu_s"] for p in parts), sum(p["wall_s"] for p in parts)
            peak = max(p["peak_rss_mb"] for p in parts)
            ratio = "" if impl == "toolkit" else f" (**{cpu / sum(b['cpu_s'] for b in base):.1f}×**)"
            diff = max(p.get("max_abs_diff", 0.0) for p in parts)
            agree = "" if impl == "toolkit" else f", Δ≤{diff:.0e}"
            cells.append(f"{cpu:.0f} s CPU{ratio}, {wall:.0f} s wall, {peak:.0f} MB{agree}")
        name = "(a)–(d)" if workload == "all" else f"({workload}) {WORKLOAD_NAMES[workload]}"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_table(configs: Sequence[dict[str, Any]], workload: str, impls: Sequence[str] = IMPLS) -> str:
    """One row per configuration (prompts × tokens): each implementation's CPU s (÷ the toolkit's) and peak RSS."""
    rows = []
    for config in configs:
        jobs = {j["impl"]: j for j in config["jobs"] if j["workload"] == workload and "error" not in j}
        if "toolkit" not in jobs:
            continue
        base = jobs["toolkit"]["cpu_s"]
        def cell(impl: str, jobs: dict[str, Any] = jobs, base: float = base) -> str:
            if impl not in jobs:
                return "–"
            ratio = "" if impl == "toolkit" else f" ({jobs[impl]['cpu_s'] / base:.1f}×)"
            return f"{jobs[impl]['cpu_s']:.1f} s{ratio}, {jobs[impl]['peak_rss_mb']:.0f} MB"

        cells = [cell(i) for i in impls]
        rows.append(f"| {config['n_prompts']} × {config['mean_tokens']:.0f} | " + " | ".join(cells) + " |")
    head = f"| ({workload}) prompts × tokens | " + " | ".join(impls) + " |"
    return "\n".join([head, "|---|" + "---|" * len(impls), *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task-set", default="ab")
    ap.add_argument("--tasks", default="", help="tasks in every prompt, comma-separated (default: the set's)")
    ap.add_argument("--n-prompts", type=int, default=20)
    ap.add_argument("--length", type=int, default=600, help="target prompt length in tokens")
    ap.add_argument("--tv-prompts", type=int, default=1, help="prompts for the task vectors and patched in (d)")
    ap.add_argument("--top-n", type=int, default=5, help="heads ablated per task in (c)")
    ap.add_argument("--ablation-prompts", type=int, default=4,
                    help="(c) on the first N prompts only (means over those too; 0: all)")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--limit", default="tl-unfiltered=a+b", help="run some implementations on fewer workloads, e.g. "
                                                "'tl-unfiltered=a+b' (it differs from tl only in its cached passes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every job")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scaling", action="store_true", help="the length and count grids instead of one configuration")
    ap.add_argument("--lengths", default="200,800,1600", help="--scaling: prompt lengths (tokens) at --n-prompts")
    ap.add_argument("--counts", default="10,40,160", help="--scaling: prompt counts at --length")
    ap.add_argument("--out", default="runs/bench_peers.json")
    ap.add_argument("--profile", action="store_true", help="profile every job (cProfile, top 30 by cumulative "
                                                            "time, printed after the job)")
    ap.add_argument("--summary", default="", help="print the README table of a results JSON and exit")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="", help=argparse.SUPPRESS)
    ap.add_argument("--spec", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.summary and args.scaling:
        configs = [c for path in args.summary.split(",") for c in json.loads(Path(path).read_text())["configs"]]
        for workload in dict.fromkeys(j["workload"] for c in configs for j in c["jobs"]):
            print(scaling_table(configs, workload) + "\n")
        return
    if args.summary:
        for config in json.loads(Path(args.summary).read_text())["configs"]:
            print(format_config(config, IMPLS, WORKLOADS).splitlines()[0])
            print(summary_table(config) + "\n")
        return

    from interp.models import load_model

    impls = [i for i in args.impls.split(",") if i]
    workloads = [w for w in args.workloads.split(",") if w]
    bad = [i for i in impls if i not in IMPLS] + [w for w in workloads if w not in WORKLOADS]
    if bad:
        raise SystemExit(f"error: unknown implementation or workload {bad}: use {IMPLS} and {WORKLOADS}")
    if "toolkit" not in impls:
        impls.insert(0, "toolkit")  # the reference every number is compared with
    model = load_model(args.model)
    grid = [(args.n_prompts, args.length)]
    if args.scaling:
        grid = [(args.n_prompts, int(x)) for x in args.lengths.split(",") if x]
        grid += [(int(n), args.length) for n in args.counts.split(",") if n and (int(n), args.length) not in grid]
    configs = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    journal = out.with_suffix(".jobs.jsonl")
    journal.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for n_prompts, length in grid:
            configs.append(run_config(args, model, n_prompts, length, Path(tmp), impls, workloads, journal))
            print(format_config(configs[-1], impls, workloads) + "\n", flush=True)
    import torch
    import transformer_lens

    try:
        from importlib.metadata import version
        nnsight_version = version("nnsight")
    except Exception:  # noqa: BLE001 - nnsight is optional for a toolkit-only run
        nnsight_version = "absent"
    meta = {"model": args.model, "task_set": args.task_set, "threads": args.threads, "torch": torch.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", "?"), "nnsight": nnsight_version,
            "tolerance": TOLERANCE, "cpu_count": os.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "configs": configs}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
