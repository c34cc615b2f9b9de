"""Benchmark: layer-sweep patching with prefix KV reuse vs a full forward per layer.

For each query and each layer l, score P(answer) with the task vector patched at the separator
after block l:

* ``full``     — one full forward of ``query + answer[:-1]`` per (layer, answer), patched by a
                 hook (what the paper's code does, one layer at a time);
* ``per-call`` — :func:`interp.patching.patched_logprobs` called once per layer (prefix + one
                 tail forward each call: what batching saves, for reference);
* ``batched``  — the prefix once, then *all* layers in one batched tail forward
                 (:func:`interp.patching.patched_logprobs`, what the analysis uses).

Prints the wall time of each, the speed-ups and the largest |Δ log-prob| against ``full``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_task_vectors.py --model smollm2-135m --n-queries 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from analyses.task_vectors import zero_shot_queries
from interp.models import load_model
from interp.patching import Patch, patched_logprobs, patched_logprobs_full
from interp.prompts import build_prompts
from interp.scoring import tokenize_answers
from interp.tasks import get_task_set


def load_vectors(path: Path, task: str) -> torch.Tensor | None:
    """[layer, d_model] vectors of ``task`` from a run's task_vectors.safetensors, if present."""
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tasks = f.metadata()["tasks"].split(",")
        return f.get_tensor("mean")[tasks.index(task)] if task in tasks else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task-set", default="ab")
    ap.add_argument("--task", default="", help="task whose answer is scored (default: the set's first)")
    ap.add_argument("--n-queries", type=int, default=5)
    ap.add_argument("--n-examples", type=int, default=0, help="0: the paper's zero-shot queries; >0: few-shot")
    ap.add_argument("--mode", default="replace", choices=["replace", "add"])
    ap.add_argument("--vectors", default="", help="task_vectors.safetensors of a run (default: random vectors)")
    ap.add_argument("--json", default="", help="write the results here")
    args = ap.parse_args()

    model = load_model(args.model)
    ts = get_task_set(args.task_set)
    task = args.task or ts.default_task_names[0]
    if args.n_examples:
        queries = build_prompts(ts, mixture={task: 1.0}, n_prompts=args.n_queries, n_examples=args.n_examples,
                                seed=11)
    else:
        queries = zero_shot_queries(ts, [task], args.n_queries, seed=11)
    vecs = load_vectors(Path(args.vectors), task) if args.vectors else None
    if vecs is None:
        # Timing does not depend on the values; give them a residual-like scale.
        vecs = torch.randn(model.n_layers, model.d_model, generator=torch.Generator().manual_seed(0)) * 3
    layers = list(range(model.n_layers))
    patches = [Patch(layer, vecs[layer], args.mode) for layer in layers]
    jobs = []
    for q in queries:
        ids = model.encode_prompt(q.text)
        ans = tokenize_answers(model, q.text, ids, {task: q.answers[task]})[0].ids
        jobs.append((ids, ans))

    def timed(fn):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    with torch.no_grad():
        patched_logprobs(model, jobs[0][0], [jobs[0][1]], [patches[0]])  # warm-up
        t_full, full = timed(lambda: [patched_logprobs_full(model, ids, [ans] * len(layers), patches)
                                      for ids, ans in jobs])
        t_prefix, pref = timed(lambda: [sum((patched_logprobs(model, ids, [ans], [p]) for p in patches), [])
                                        for ids, ans in jobs])
        t_batch, batch = timed(lambda: [patched_logprobs(model, ids, [ans] * len(layers), patches)
                                        for ids, ans in jobs])

    def maxdiff(a, b) -> float:  # noqa: ANN001
        return max(abs(x - y) for qa, qb in zip(a, b) for ra, rb in zip(qa, qb) for x, y in zip(ra, rb))

    result = {
        "model": model.name, "task_set": ts.name, "task": task, "mode": args.mode, "n_queries": len(jobs),
        "n_layers": len(layers), "n_examples": args.n_examples,
        "mean_prompt_tokens": sum(len(i) for i, _ in jobs) / len(jobs),
        "mean_answer_tokens": sum(len(a) for _, a in jobs) / len(jobs),
        "threads": torch.get_num_threads(),
        "seconds_full": t_full, "seconds_one_call_per_layer": t_prefix, "seconds_batched": t_batch,
        "speedup_one_call_per_layer": t_full / t_prefix, "speedup_batched": t_full / t_batch,
        "max_abs_logprob_diff_one_call_per_layer": maxdiff(full, pref), "max_abs_logprob_diff_batched": maxdiff(full, batch),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
