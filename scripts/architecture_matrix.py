"""Print the architecture × analysis matrix (docs/architectures.md) with its measured errors.

Builds the tiny random-weight model of each family from ``tests/archs.py`` in a temporary
folder and runs every analysis with the same invariants the tests assert, printing the worst
error of each as a Markdown table::

    .venv/bin/python scripts/architecture_matrix.py [ARCH ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from archs import ARCHITECTURES, build_tiny  # noqa: E402

from analyses.head_attribution import ablate_heads, head_attribution, top_heads  # noqa: E402
from analyses.logit_lens import logit_lens_rows  # noqa: E402
from analyses.task_vectors import extract_task_vectors, interpolate_vectors, zero_shot_queries  # noqa: E402
from interp.activations import collect_activations, get_activations  # noqa: E402
from interp.models import load_model  # noqa: E402
from interp.patching import Patch, patched_logprobs, patched_logprobs_full  # noqa: E402
from interp.prompts import build_prompts  # noqa: E402
from interp.scoring import score_prompts, score_prompts_naive  # noqa: E402
from interp.tasks import get_task_set  # noqa: E402


def measure(arch: str, root: Path) -> dict[str, str]:
    model = load_model(str(build_tiny(arch, root / arch)))
    prompts = build_prompts(get_task_set("country"), n_prompts=2, examples_per_task=4, seed=1)
    row = {"arch": arch, "attention": model.adapter.attn_implementation, "final norm": model.describe()["final_norm"]}
    fast = score_prompts(model, prompts, batch_size=2, show_progress=False)
    row["scoring |Δlogp| KV vs naive"] = f"{(fast['logprob'] - score_prompts_naive(model, prompts)['logprob']).abs().max():.1e}"
    rows = logit_lens_rows(model, prompts[:1], show_progress=False, use_cache=False)
    ids = model.encode_prompt(prompts[0].text)
    with torch.no_grad():
        out = torch.log_softmax(model.hf_model(torch.tensor([ids])).logits[0, -1].float(), -1)
    final = rows[rows["site"] == "final"]
    row["lens final vs output"] = f"{max(abs(r.logprob - float(out[r.token])) for r in final.itertuples()):.1e}"
    dla = head_attribution(model, prompts, show_progress=False, use_cache=False)
    row["DLA closure"] = f"{dla.closure['error'].max():.1e}"
    row["heads rebuild attn"] = f"{dla.closure['attn_rebuild_error'].max():.1e}"
    heads = top_heads(dla, dla.tasks[0], n=3)
    ablated = ablate_heads(model, prompts, heads, mode="mean", show_progress=False)
    row["mean-ablate top-3 heads: max |Δlogp|"] = f"{(ablated['logprob'] - fast['logprob']).abs().max():.2f}"
    conts = [model.encode_continuation(a) for a in prompts[0].answers.values()]
    acts = collect_activations(model, prompts[:1], ["resid_post"], positions="last", show_progress=False)
    clean = patched_logprobs_full(model, ids, conts, [None] * len(conts))
    worst = 0.0
    for layer in range(model.n_layers):
        own = Patch(layer, acts[f"blocks.{layer}.hook_resid_post"][0, 0])
        patched = patched_logprobs(model, ids, conts, [own] * len(conts))
        worst = max(worst, max(abs(a - b) for x, y in zip(patched, clean) for a, b in zip(x, y)))
    row["self-patch"] = f"{worst:.1e}"
    ts = get_task_set("country")
    vectors = extract_task_vectors(model, ts, ["capital", "upper"], n_prompts=2, n_examples=4, show_progress=False)
    curve = interpolate_vectors(model, vectors, zero_shot_queries(ts, ["capital", "upper"], 2, seed=3),
                                "capital", "upper", layer=0, lambdas=[0.0, 0.5, 1.0], show_progress=False)
    row["task vectors"] = "ok" if curve["prob"].between(0, 1).all() else "FAIL"
    with tempfile.TemporaryDirectory() as cache:
        first = get_activations(model, prompts, ["resid_post"], cache_dir=cache, show_progress=False, log=False)
        again = get_activations(model, prompts, ["resid_post"], cache_dir=cache, show_progress=False, log=False)
        row["cache"] = "ok" if again.status == "reused" and all(torch.equal(first[n], again[n]) for n in first.keys()) \
            else "FAIL"
    return row


def main() -> None:
    archs = sys.argv[1:] or list(ARCHITECTURES)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for arch in archs:
            start = time.perf_counter()
            rows.append(measure(arch, Path(tmp)))
            print(f"{arch}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
