"""Count how the bad-input corpus (tests/test_bad_input.py) ends, by command: clear / traceback / silent / hang.

    python scripts/bad_input_census.py [--timeout 30] [--only SUBSTRING]

clear: exit 2 (or InterpError from the API) with exactly one ``error:`` line and no traceback;
traceback: an exception other than InterpError reached the user; silent: the command succeeded
(or the API returned) on input it should refuse; hang: still running after ``--timeout`` seconds;
other: anything else (e.g. exit 1, several error lines).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("INTERP_NO_PROGRESS", "1")


class Hang(BaseException):
    pass


def _alarm(signum, frame):  # noqa: ANN001, ANN202
    raise Hang()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=int, default=30)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    from tests.test_bad_input import CASES, error_lines, leftovers, run_case

    signal.signal(signal.SIGALRM, _alarm)
    counts: dict[str, Counter] = defaultdict(Counter)
    root = Path(tempfile.mkdtemp(prefix="bad-input-"))
    home = os.getcwd()
    for i, case in enumerate(c for c in CASES if args.only in c.id):
        tmp = root / f"case{i}"
        tmp.mkdir()
        os.chdir(tmp)
        os.environ["INTERP_CACHE_DIR"] = str(tmp / "cache")
        before = set(tmp.rglob("*"))
        signal.alarm(args.timeout)
        try:
            code, stderr, exc = run_case(case, tmp)
            signal.alarm(0)
        except Hang:
            code, stderr, exc = None, "", Hang()
        signal.alarm(0)
        os.chdir(home)
        if isinstance(exc, Hang):
            kind = "hang"
        elif exc is not None or "Traceback" in stderr:
            kind = "traceback"
        elif len(error_lines(stderr)) == 1 and (case.api is not None or code == 2) and not leftovers(tmp, before):
            kind = "clear"
        elif (case.api is not None and not stderr) or code == 0:
            kind = "silent"
        else:
            kind = "other"
        counts[case.command][kind] += 1
        detail = f"{type(exc).__name__}: {str(exc)[:100]}" if exc is not None else (stderr.strip().splitlines() or [""])[-1][:140]
        print(f"{kind:9} {case.id:60} {code} {detail}", flush=True)
    kinds = ("clear", "traceback", "silent", "hang", "other")
    print(f"\n{'command':22}" + "".join(f"{k:>10}" for k in kinds) + f"{'total':>8}")
    total: Counter = Counter()
    for command, c in counts.items():
        total.update(c)
        print(f"{command:22}" + "".join(f"{c[k]:>10}" for k in kinds) + f"{sum(c.values()):>8}")
    print(f"{'all':22}" + "".join(f"{total[k]:>10}" for k in kinds) + f"{sum(total.values()):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
