"""Wall time and peak RSS of the default report (`make run`), cold and warm.

* cold: an empty activation cache (a fresh ``INTERP_CACHE_DIR``), the model already prepared;
* warm: the same command again, reusing the cached activations.

Each run is ``/usr/bin/time -v interp report ...`` in a subprocess, so the peak RSS is the whole
process's (``Maximum resident set size``). Per-section times come from the report's own
``report.json``. The machine's load average is printed too: on a shared machine it explains
slow runs.

    .venv/bin/python benchmarks/bench_report.py                      # the make-run settings
    .venv/bin/python benchmarks/bench_report.py --model tiny-llama   # a quick check
    .venv/bin/python benchmarks/bench_report.py --json out.json

Budget (issue 7): ≤ 5 minutes warm on the 2-core machine, peak RSS ≤ 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 300.0
BUDGET_RSS_GB = 4.0


def _time_v(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    time_bin = shutil.which("time") or "/usr/bin/time"
    if not Path(time_bin).exists():
        sys.exit("needs GNU time (/usr/bin/time): apt-get install time")
    proc = subprocess.run([time_bin, "-v", *cmd], env=env, cwd=ROOT, capture_output=True, text=True)
    err = proc.stderr
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", err)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    user = re.search(r"User time \(seconds\): ([\d.]+)", err)
    system = re.search(r"System time \(seconds\): ([\d.]+)", err)
    if wall is None or rss is None:
        sys.exit(f"could not parse /usr/bin/time output:\n{err[-2000:]}")
    h = float(wall.group(1) or 0)
    seconds = h * 3600 + float(wall.group(2)) * 60 + float(wall.group(3))
    return {"exit": proc.returncode, "wall_s": round(seconds, 1), "peak_rss_gb": round(int(rss.group(1)) / 1024**2, 3),
            "cpu_s": round(float(user.group(1)) + float(system.group(1)), 1),
            "index": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "",
            "stderr_tail": "\n".join(line for line in err.splitlines() if "failed" in line)[-800:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-prompts", type=int, default=8)
    parser.add_argument("--extra", default="", help="more `interp report` arguments, e.g. '--sections setup,superposition'")
    parser.add_argument("--runs", default="cold,warm", help="which runs: cold, warm or both")
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    env = {**os.environ, "INTERP_CACHE_DIR": str(work / "cache"), "INTERP_NO_PROGRESS": "1"}
    interp = str(ROOT / ".venv" / "bin" / "interp")
    cmd = [interp, "report", "--model", args.model, "--out", str(work / "report"), "--n-prompts", str(args.n_prompts),
           "--seed", "0", *args.extra.split()]
    results = {}
    for name in [r.strip() for r in args.runs.split(",") if r.strip()]:
        load = os.getloadavg()[0]
        results[name] = {**_time_v(cmd, env), "load_avg_1m_before": round(load, 2)}
        report_json = work / "report" / "report.json"
        if report_json.exists():
            meta = json.loads(report_json.read_text())
            results[name]["sections_s"] = {k: round(v, 1) for k, v in meta["timings_s"].items()}
            results[name]["sections_cpu_s"] = {k: round(v, 1) for k, v in meta.get("cpu_s", {}).items()}
            results[name]["failed_sections"] = meta["failed"]
        r = results[name]
        print(f"{name:>5}: wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  peak RSS {r['peak_rss_gb']:.2f} GB  "
              f"exit {r['exit']}  (load avg before: {r['load_avg_1m_before']})")
        for section, seconds in r.get("sections_s", {}).items():
            print(f"         {section:<18} {seconds:7.1f} s wall  {r['sections_cpu_s'].get(section, float('nan')):7.1f} s cpu")
        if r.get("failed_sections"):
            print(f"         failed: {r['failed_sections']}")
    print(f"report: {work / 'report' / 'index.html'}  (nproc={os.cpu_count()})")
    if "warm" in results:
        w = results["warm"]
        ok = w["exit"] in (0, 1) and w["wall_s"] <= BUDGET_S and w["peak_rss_gb"] <= BUDGET_RSS_GB
        verdict = "met" if ok else "NOT met"
    else:
        verdict = "not evaluated (no warm run)"
    print(f"budget (warm ≤ {BUDGET_S:.0f} s, peak RSS ≤ {BUDGET_RSS_GB} GB): {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": cmd, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
