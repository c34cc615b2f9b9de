"""Speed and memory of the real-model ladder: scoring throughput and peak RSS per model.

Each model runs in its own subprocess (so its peak RSS is its own: ``ru_maxrss`` of the child),
which loads the model, builds ``--n-prompts`` superposed prompts of ``--task-set`` and scores them
with the toolkit's KV-reuse scorer. Printed per model: load time, prompt tokens per second of
the scoring path (wall and CPU), and peak RSS; models are run one after another, never together.

    .venv/bin/python benchmarks/bench_ladder.py                                  # every fetched model
    .venv/bin/python benchmarks/bench_ladder.py --models smollm2-135m,qwen2.5-0.5b --n-prompts 4

Targets (issue 15, 2-core machine): the full study ≤ 60 min; peak RSS ≤ 12 GB per model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from interp.models import load_model
from interp.prompts import build_prompts
from interp.scoring import score_prompts
from interp.tasks import get_task_set
spec, task_set, n, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.perf_counter()
model = load_model(spec, dtype=dtype)
load_s = time.perf_counter() - t0
prompts = build_prompts(get_task_set(task_set), n_prompts=n, seed=0)
tokens = sum(len(model.encode_prompt(p.text)) for p in prompts)
w0, c0 = time.perf_counter(), time.process_time()
score_prompts(model, prompts, show_progress=False)
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
print(json.dumps({"model": spec, "n_params_m": round(model.n_params / 1e6), "load_s": round(load_s, 1),
                  "prompt_tokens": tokens, "score_wall_s": round(wall, 1), "score_cpu_s": round(cpu, 1),
                  "tokens_per_s_wall": round(tokens / wall, 1), "tokens_per_cpu_s": round(tokens / cpu, 1),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}))
"""


def main() -> int:
    from interp.ladder import LADDER, is_fetched

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated specs (default: smollm2-135m + fetched ladder)")
    parser.add_argument("--task-set", default="country")
    parser.add_argument("--n-prompts", type=int, default=4)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    models = args.models.split(",") if args.models else ["smollm2-135m", *(m for m in LADDER if is_fetched(m))]
    print(f"torch threads: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows = []
    for spec in models:
        proc = subprocess.run([sys.executable, "-c", CHILD, spec, args.task_set, str(args.n_prompts), args.dtype],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{spec}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    if rows:
        cols = list(rows[0])
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
