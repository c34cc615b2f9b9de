"""Benchmark of the activation cache: reuse vs recompute, streaming memory, size on disk.

One run prints every ratio side by side (absolute times depend on the shared CPU; the ratios
are the point):

* reuse vs recompute — the same analysis input (SmolLM2, 20 superposed prompts, resid_post at
  the query position, all layers) computed by a hooked run vs. served by a verified cache
  entry (key derivation + re-hashing every file + loading); target >= 50x;
* streaming — peak RSS of a build of 20 vs 80 prompts, each in a fresh subprocess (its own
  ``ru_maxrss``), next to the RSS of loading the model alone; target: within 15 %;
* size on disk per prompt.

Usage::

    INTERP_HOME=/tmp/ih python benchmarks/bench_cache.py [--model smollm2-135m] [--task-set country]
        [--n-prompts 20] [--n-large 80] [--repeats 5] [--out runs/bench_cache.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("INTERP_NO_PROGRESS", "1")


def _setup(model_spec: str, task_set: str, n: int):  # noqa: ANN202
    from interp_app.options import ExperimentConfig, make_model, make_prompts

    config = ExperimentConfig(model=model_spec, task_set=task_set, n_prompts=max(n, 1), seed=0)
    return make_model(config), make_prompts(config)[:n]


def child(args: argparse.Namespace) -> None:
    """One build (or only the model load, for n=0) in this process; prints its peak RSS as JSON."""
    from interp.activations import get_activations

    start = time.perf_counter()
    model, prompts = _setup(args.model, args.task_set, args.child)
    loaded = time.perf_counter()
    n_bytes = 0
    if args.child:
        acts = get_activations(model, prompts, ["resid_post"], positions="query", cache_dir=args.cache_dir,
                               batch_size=8, show_progress=False, log=False)
        assert acts.status == "computed"
        n_bytes = sum(f.stat().st_size for f in Path(acts.path).iterdir())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"n": args.child, "peak_rss_mb": peak_kb / 1024, "load_s": loaded - start,
                      "build_s": time.perf_counter() - loaded, "bytes": n_bytes}))


def _run_child(script: Path, args: argparse.Namespace, n: int, cache_dir: str) -> dict:
    cmd = [sys.executable, str(script), "--child", str(n), "--model", args.model, "--task-set", args.task_set,
           "--cache-dir", cache_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed ({n} prompts): {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task-set", default="country")
    parser.add_argument("--n-prompts", type=int, default=20)
    parser.add_argument("--n-large", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions of the reuse path (median)")
    parser.add_argument("--out", default="", help="also write the numbers to this JSON file")
    parser.add_argument("--skip-rss", action="store_true", help="only time reuse vs recompute (no subprocess builds)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return 0

    from interp.activations import collect_activations, get_activations

    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        # 1. Streaming memory: fresh processes, so each peak is its own.
        if args.skip_rss:
            base = small = large = {"peak_rss_mb": float("nan"), "build_s": float("nan"), "bytes": float("nan")}
        else:
            base = _run_child(script, args, 0, f"{tmp}/rss")
            small = _run_child(script, args, args.n_prompts, f"{tmp}/rss")
            large = _run_child(script, args, args.n_large, f"{tmp}/rss")

        # 2. Reuse vs recompute for the same analysis input, in this process.
        model, prompts = _setup(args.model, args.task_set, args.n_prompts)
        n_tokens = [len(model.encode_prompt(p.text)) for p in prompts]
        # CPU seconds (all threads) beside wall seconds: robust to other jobs on a shared machine.
        t0, c0 = time.perf_counter(), time.process_time()
        memory = collect_activations(model, prompts, ["resid_post"], positions="query", show_progress=False)
        recompute_s, recompute_cpu = time.perf_counter() - t0, time.process_time() - c0
        cache = f"{tmp}/reuse"
        t0 = time.perf_counter()
        built = get_activations(model, prompts, ["resid_post"], positions="query", cache_dir=cache,
                                show_progress=False, log=False)
        build_s = time.perf_counter() - t0
        reuse_times, reuse_cpus = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            reused = get_activations(model, prompts, ["resid_post"], positions="query", cache_dir=cache,
                                     show_progress=False, log=False)
            reuse_times.append(time.perf_counter() - t0)
            reuse_cpus.append(time.process_time() - c0)
            assert reused.status == "reused" and built.status == "computed"
        for name in memory.keys():
            assert (reused[name] == memory[name]).all(), name
        reuse_s, reuse_cpu = statistics.median(reuse_times), statistics.median(reuse_cpus)
        entry_bytes = sum(f.stat().st_size for f in Path(built.path).iterdir())

    rss_ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    results = {
        "model": args.model,
        "task_set": args.task_set,
        "n_prompts": args.n_prompts,
        "tokens_per_prompt": {"min": min(n_tokens), "mean": statistics.mean(n_tokens), "max": max(n_tokens)},
        "hooks": len(built.keys()),
        "recompute_s": recompute_s,
        "build_s": build_s,
        "reuse_s_median": reuse_s,
        "reuse_s_all": reuse_times,
        "reuse_speedup": recompute_s / reuse_s,
        "recompute_cpu_s": recompute_cpu,
        "reuse_cpu_s_median": reuse_cpu,
        "reuse_speedup_cpu": recompute_cpu / reuse_cpu,
        "peak_rss_mb": {"model_only": base["peak_rss_mb"], str(args.n_prompts): small["peak_rss_mb"],
                        str(args.n_large): large["peak_rss_mb"]},
        "build_s_subprocess": {str(args.n_prompts): small["build_s"], str(args.n_large): large["build_s"]},
        "rss_ratio_large_vs_small": rss_ratio,
        "entry_bytes": entry_bytes,
        "bytes_per_prompt": entry_bytes / args.n_prompts,
        "bytes_per_prompt_large": large["bytes"] / args.n_large,
    }
    shape = list(built[built.keys()[0]].shape)
    print(f"model {args.model}, task set {args.task_set}, {args.n_prompts} prompts "
          f"({min(n_tokens)}-{max(n_tokens)} tokens), resid_post at the query position, {len(built.keys())} layers "
          f"(each {shape})")
    rows = [
        ("recompute (hooked run)", f"{recompute_s:.3f} s", f"CPU {recompute_cpu:.2f} s"),
        ("build + store (first call)", f"{build_s:.3f} s", f"{build_s / recompute_s:.2f}x recompute"),
        (f"reuse (verified load, median of {args.repeats})", f"{reuse_s * 1000:.1f} ms",
         f"{recompute_s / reuse_s:.0f}x faster than recompute (target >= 50x); CPU {reuse_cpu * 1000:.1f} ms, "
         f"{recompute_cpu / reuse_cpu:.0f}x"),
        ("peak RSS, model only", f"{base['peak_rss_mb']:.0f} MB", ""),
        (f"peak RSS, build {args.n_prompts} prompts", f"{small['peak_rss_mb']:.0f} MB", ""),
        (f"peak RSS, build {args.n_large} prompts", f"{large['peak_rss_mb']:.0f} MB",
         f"{(rss_ratio - 1) * 100:+.1f}% vs {args.n_prompts} prompts (target within 15%)"),
        ("size on disk", f"{entry_bytes / 1e3:.1f} KB", f"{entry_bytes / args.n_prompts / 1e3:.2f} KB per prompt "
         f"({large['bytes'] / args.n_large / 1e3:.2f} KB per prompt at {args.n_large})"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>10}  {note}")
    ok = results["reuse_speedup"] >= 50 and (args.skip_rss or abs(rss_ratio - 1) <= 0.15)
    print("targets met" if ok else "TARGETS NOT MET")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
