import math

import pandas as pd
import pytest

from interp.metrics import kl_per_prompt, summarize_tasks, superposition_metrics


def _scores() -> pd.DataFrame:
    rows = []
    for pid, (pa, pb) in enumerate([(0.6, 0.2), (0.1, 0.5)]):
        rows += [
            {"prompt_id": pid, "task": "a", "answer": "x", "share": 0.5, "prob": pa, "logprob": math.log(pa),
             "n_tokens": 1, "boundary_mismatch": False},
            {"prompt_id": pid, "task": "b", "answer": "y", "share": 0.5, "prob": pb, "logprob": math.log(pb),
             "n_tokens": 1, "boundary_mismatch": pid == 1},
        ]
    return pd.DataFrame(rows)


def test_summary_means_and_sorted_means() -> None:
    s = summarize_tasks(_scores()).set_index("task")
    assert s.loc["a", "mean"] == pytest.approx(0.35)
    assert s.loc["b", "mean"] == pytest.approx(0.35)
    assert s.loc["a", "var"] == pytest.approx(0.0625)
    # sorted: per prompt the larger is 0.6 and 0.5 -> 0.55; the smaller 0.2 and 0.1 -> 0.15
    assert s.loc["a", "sorted_mean"] == pytest.approx(0.55)
    assert s.loc["b", "sorted_mean"] == pytest.approx(0.15)
    assert s.loc["b", "boundary_mismatch"] == 1


def test_kl_raw_and_renormalised() -> None:
    kl_raw = kl_per_prompt(_scores(), renormalise=False)
    assert kl_raw[0] == pytest.approx(0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.2))
    kl_norm = kl_per_prompt(_scores(), renormalise=True)
    assert kl_norm[0] == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    m = superposition_metrics(_scores())
    assert m["other"] == pytest.approx(0.3)
    assert m["kl_raw"] > m["kl_renormalised"] > 0
    assert m["boundary_mismatches"] == 1


def test_kl_is_zero_when_calibrated() -> None:
    df = _scores()
    df["prob"] = 0.5
    assert superposition_metrics(df)["kl_raw"] == pytest.approx(0.0, abs=1e-12)
