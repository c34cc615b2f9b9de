"""Scoring speed on SmolLM2: toolkit (prompt KV-cache reuse) vs naive vs a plain HF forward.

4-task add-translate prompts of ~800 tokens, measured side by side, interleaved per prompt so
that machine noise hits every method alike. Prints:

* toolkit vs naive (one full forward of prompt+answer per answer, the paper's method):
  speed-up (target ≥ 3.5×) and max |Δp| (target ≤ 1e-5, fp32);
* toolkit vs one plain HF forward of the prompt with sdpa attention (target ≤ 1.25×), both
  for the standard call (full logits) and the cheapest one (last-position logits only).

Run: ``.venv/bin/python benchmarks/bench_scoring.py [--n-prompts 6]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from interp.models import load_model
from interp.prompts import build_prompts
from interp.scoring import score_prompts, score_prompts_naive
from interp.tasks import get_task_set


def timed(fn) -> tuple[float, float]:  # noqa: ANN001
    """(wall seconds, CPU seconds of this process): CPU time is robust to other load on the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=6)
    parser.add_argument("--examples-per-task", type=int, default=17)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    model = load_model("smollm2-135m")
    plain = AutoModelForCausalLM.from_pretrained(str(model.path), dtype=torch.float32, attn_implementation="sdpa").eval()
    prompts = build_prompts(get_task_set("add-translate"), n_prompts=args.n_prompts,
                            examples_per_task=args.examples_per_task, seed=0)
    lengths = [len(model.encode_prompt(p.text)) for p in prompts]
    print(f"SmolLM2-135M fp32 on {torch.get_num_threads()} threads; {len(prompts)} prompts, 4 answers each, "
          f"{min(lengths)}-{max(lengths)} tokens")

    score_prompts(model, prompts[:1], show_progress=False)  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"toolkit": [], "naive": [], "hf_forward": [],
                                                   "hf_forward_last_logits": []}
    max_dp = 0.0
    for p in prompts:
        ids = torch.tensor([model.encode_prompt(p.text)])
        fast_box: list = []
        times["toolkit"].append(timed(lambda p=p, box=fast_box: box.append(score_prompts(model, [p], show_progress=False))))
        naive_box: list = []
        times["naive"].append(timed(lambda p=p, box=naive_box: box.append(score_prompts_naive(model, [p]))))
        times["hf_forward"].append(timed(lambda ids=ids: plain(ids)))
        times["hf_forward_last_logits"].append(timed(lambda ids=ids: plain(ids, logits_to_keep=1)))
        max_dp = max(max_dp, float((fast_box[0]["prob"] - naive_box[0]["prob"]).abs().max()))

    for unit, idx in (("wall", 0), ("cpu", 1)):
        total = {k: sum(t[idx] for t in v) for k, v in times.items()}
        print(f"[{unit} time]")
        for k, v in times.items():
            print(f"  {k:<24} total {total[k]:7.2f} s   median {statistics.median(t[idx] for t in v):.3f} s/prompt")
        print(f"  toolkit vs naive:                  {total['naive'] / total['toolkit']:.2f}x faster  (target >= 3.5x)")
        print(f"  toolkit / plain HF forward (sdpa): {total['toolkit'] / total['hf_forward']:.2f}x  (target <= 1.25x)")
        print(f"  toolkit / plain HF forward, last-position logits only: "
              f"{total['toolkit'] / total['hf_forward_last_logits']:.2f}x")
    print(f"max |delta p| toolkit vs naive: {max_dp:.2e}  (target <= 1e-5)")

if __name__ == "__main__":
    main()
