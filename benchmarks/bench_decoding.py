"""Decoding speed on SmolLM2: the toolkit's sampler (prompt KV cache shared by every sample) vs HF ``generate``.

Per prompt, N sampled continuations (temperature 1) of up to the prompt's longest answer + 3 tokens:

* toolkit: :func:`analyses.decoding.decode_continuations` — the prompt runs once; each step packs
  the *distinct* live prefixes into one forward over the prompt's cache;
* HF: ``model.generate(do_sample=True, num_return_sequences=N)`` — the usual way, which expands the
  prompt to N rows (N copies of the prompt's forward and cache).

Both include the prompt's forward. Measured side by side, interleaved per prompt. Also checks that
the toolkit's greedy continuation equals HF greedy ``generate`` token for token (up to the newline).

Run: ``.venv/bin/python benchmarks/bench_decoding.py [--n-prompts 4 --n-samples 30 --task-set ab]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from analyses.decoding import decode_continuations, prompt_generator
from interp.models import load_model
from interp.prompts import build_prompts
from interp.scoring import natural_split, run_prompts_with_cache
from interp.tasks import get_task_set


def timed(fn) -> tuple[float, float]:  # noqa: ANN001
    """(wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=4)
    parser.add_argument("--n-samples", type=int, default=30)
    parser.add_argument("--task-set", default="ab")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_model("smollm2-135m")
    prompts = build_prompts(get_task_set(args.task_set), n_prompts=args.n_prompts, seed=0)
    newline = model.encode_continuation("\n")[0]
    times: dict[str, list[tuple[float, float]]] = {"toolkit": [], "hf_generate": []}
    greedy_equal = 0
    for p in prompts:
        split = natural_split(model, p.text, p.answers)
        max_new = max(len(a.ids) for a in split.answers) + 3
        ids = torch.tensor([split.ids])

        def ours(split=split, max_new=max_new, p=p) -> list:  # noqa: ANN001
            logits, kv, mask = run_prompts_with_cache(model, [split.ids])
            return decode_continuations(model, logits, kv, mask, args.n_samples, 1.0,
                                        prompt_generator(0, p.prompt_id), max_new)

        def theirs(ids=ids, max_new=max_new) -> torch.Tensor:  # noqa: ANN001
            return model.hf_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                           top_k=0, top_p=1.0, num_return_sequences=args.n_samples,
                                           max_new_tokens=max_new, pad_token_id=newline)

        box: list = []
        times["toolkit"].append(timed(lambda box=box, ours=ours: box.append(ours())))
        times["hf_generate"].append(timed(theirs))
        greedy = model.hf_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=max_new, pad_token_id=newline)[0, ids.shape[1]:].tolist()
        greedy = greedy[: greedy.index(newline)] if newline in greedy else greedy
        greedy_equal += int(box[0][0].tokens == greedy[: len(box[0][0].tokens)] and
                            (box[0][0].stop != "delimiter" or len(greedy) == len(box[0][0].tokens)))
    print(f"SmolLM2-135M fp32 on {torch.get_num_threads()} threads; {len(prompts)} {args.task_set} prompts, "
          f"{args.n_samples} samples each")
    for unit, idx in (("wall", 0), ("cpu", 1)):
        total = {k: sum(t[idx] for t in v) for k, v in times.items()}
        print(f"[{unit} time]")
        for k, v in times.items():
            print(f"  {k:<12} total {total[k]:7.2f} s   median {statistics.median(t[idx] for t in v):.3f} s/prompt")
        print(f"  toolkit vs HF generate: {total['hf_generate'] / total['toolkit']:.2f}x faster")
    print(f"greedy continuation equal to HF greedy generate on {greedy_equal}/{len(prompts)} prompts")


if __name__ == "__main__":
    main()
