"""How far is the paper's GPT-3.5 method (top-k beam over a completions API) from the exact probability?

The paper scores closed models through a completions endpoint that returns only the top-10
log-probabilities per token, with a beam expansion (:func:`interp.api_scoring.beam_answer_probs`):
a lower bound on P(answer), 0 for an answer never reached. Nobody measured the error. Here the
same prompts are scored three ways:

* ``in-process`` — exact teacher-forced P(answer) on the model held in memory (the reference);
* ``api-exact`` — teacher-forced through the server (``echo`` + ``logprobs``): its difference from
  in-process is the *serving* part of the error (a GGUF served by llama.cpp computes with quantised
  weights and activations; the in-process model holds the same weights dequantised to fp32);
* ``api-beam`` — the authors' method, for each beam width × threshold: its difference from
  ``api-exact`` is the part the *method* adds (same server, same numbers per token).

Tables: ``scores`` (tidy, one row per prompt × task × method × setting), ``errors`` (per task set,
comparison and setting: mean and max |Δp|, mean ΔKL and |ΔKL| per prompt, how often the beam never
reaches an answer, requests). KL is the toolkit's raw KL(in-context mix ‖ p) with log p floored at
1e-30; the authors' code gives +inf to a prompt with an unreached answer, counted in
``kl_infinite_prompts``.

CLI: ``interp run api-error --model smollm2-135m --api-base http://127.0.0.1:8080/v1 --api-model smollm2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interp.api_scoring import ApiSettings, score_prompts_api
from interp.errors import InterpError
from interp.metrics import kl_per_prompt
from interp.models import LoadedModel
from interp.prompts import Prompt
from interp.scoring import score_prompts
from interp.validate import Validated

IN_PROCESS = "in-process"
API_EXACT = "api-exact"
API_BEAM = "api-beam"


@dataclass
class ApiErrorOptions(Validated):
    """api-error options"""

    task_sets: list[str] = field(default_factory=lambda: ["ab", "country"],
                                 metadata={"help": "task sets to compare on", "nonempty": True})
    beam_widths: list[int] = field(default_factory=lambda: [3, 10],
                                   metadata={"help": "beam widths to try (the authors': 10)", "min": 1,
                                             "nonempty": True})
    thresholds: list[float] = field(default_factory=lambda: [0.01, 0.001],
                                    metadata={"help": "step = cumulative probability thresholds to try (the authors': "
                                                      "0.001)", "min": 0, "lt": 1, "nonempty": True})
    exact_api: bool = field(default=True, metadata={"help": "also score teacher-forced through the server (echo): "
                                                            "separates the serving error from the method's"})


@dataclass
class ApiErrorResult:
    """``scores``: tidy probabilities (``task_set, prompt_id, task, answer, share, method, beam_width, threshold,
    prob, reached``); ``errors``: per task set × comparison × setting; ``metrics``: run-level numbers."""

    scores: pd.DataFrame
    errors: pd.DataFrame
    metrics: dict[str, Any]


def _tidy(scores: pd.DataFrame, task_set: str, method: str, width: int | None = None,
          threshold: float | None = None) -> pd.DataFrame:
    out = scores[["prompt_id", "task", "answer", "share", "prob"]].copy()
    out.insert(0, "task_set", task_set)
    out["method"] = method
    out["beam_width"] = width if width is not None else np.nan
    out["threshold"] = threshold if threshold is not None else np.nan
    out["reached"] = out["prob"] > 0
    out["requests"] = scores["requests"].to_numpy() if "requests" in scores else 0
    out["boundary_mismatch"] = scores["boundary_mismatch"].to_numpy()
    return out


def analyse(model: LoadedModel, prompts: dict[str, list[Prompt]], settings: ApiSettings, options: ApiErrorOptions,
            store_path: str | Path | None = None, show_progress: bool = True) -> ApiErrorResult:
    """Score ``prompts`` (task set → prompts) in-process and through the endpoint; compare (no files but the store)."""
    if not settings.api_base:
        raise InterpError("api-error compares against a server: pass --api-base URL and --api-model NAME")
    frames: list[pd.DataFrame] = []
    for task_set, group in prompts.items():
        frames.append(_tidy(score_prompts(model, group, show_progress=show_progress), task_set, IN_PROCESS))
        if options.exact_api:
            exact = score_prompts_api(group, replace(settings, api_method="exact"), store_path, show_progress)
            frames.append(_tidy(exact, task_set, API_EXACT))
        for width in options.beam_widths:
            for threshold in options.thresholds:
                beam_settings = replace(settings, api_method="beam", api_beam_width=width,
                                        api_step_threshold=threshold, api_cumulative_threshold=threshold)
                beam = score_prompts_api(group, beam_settings, store_path, show_progress)
                frames.append(_tidy(beam, task_set, API_BEAM, width, threshold))
    scores = pd.concat(frames, ignore_index=True)
    errors = compare(scores)
    metrics: dict[str, Any] = {
        "task_sets": list(prompts), "n_prompts": {k: len(v) for k, v in prompts.items()},
        "api_model": settings.api_model, "beam_widths": options.beam_widths, "thresholds": options.thresholds,
        "requests": int(errors.loc[errors["reference"] == IN_PROCESS, "requests"].sum()),
    }
    return ApiErrorResult(scores, errors, metrics)


def _setting(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["method", "beam_width", "threshold", "requests", "reached", "boundary_mismatch"])


def compare(scores: pd.DataFrame) -> pd.DataFrame:
    """Per task set: each API method/setting against in-process, and each beam setting against api-exact."""
    rows = []
    keys = ["task_set", "prompt_id", "task"]
    for task_set, sub in scores.groupby("task_set", sort=False):
        refs = {m: sub[sub["method"] == m] for m in (IN_PROCESS, API_EXACT) if (sub["method"] == m).any()}
        candidates = sub[sub["method"] != IN_PROCESS]
        for (method, width, threshold), cand in candidates.groupby(["method", "beam_width", "threshold"],
                                                                   dropna=False, sort=False):
            for ref_name, ref in refs.items():
                if ref_name == method:
                    continue
                both = _setting(cand).merge(_setting(ref), on=keys + ["answer", "share"], suffixes=("", "_ref"))
                if both.empty:
                    continue
                delta = (both["prob"] - both["prob_ref"]).abs()
                kl = kl_per_prompt(both[["prompt_id", "task", "share", "prob"]], renormalise=False)
                kl_ref = kl_per_prompt(both[["prompt_id", "task", "share", "prob_ref"]].rename(
                    columns={"prob_ref": "prob"}), renormalise=False)
                dkl = (kl - kl_ref).dropna()
                unreached = cand["prob"].eq(0)
                # Prompts where every answer was reached: ΔKL without the 1e-30 floor of an unreached answer.
                gone = set(both.loc[both["prob"].eq(0) | both["prob_ref"].eq(0), "prompt_id"])
                dkl_reached = dkl[~dkl.index.isin(gone)]
                infinite = cand[unreached & cand["share"].gt(0)]["prompt_id"].nunique()
                per_unit = ["prompt_id"] if method == API_BEAM else ["prompt_id", "answer"]
                rows.append({
                    "task_set": task_set, "method": method, "reference": ref_name,
                    "beam_width": width, "threshold": threshold,
                    "mean_abs_dp": float(delta.mean()), "max_abs_dp": float(delta.max()),
                    "mean_dp": float((both["prob"] - both["prob_ref"]).mean()),
                    "mean_abs_dlogp_reached": _dlogp(both),
                    "mean_dkl": float(dkl.mean()), "mean_abs_dkl": float(dkl.abs().mean()),
                    "mean_abs_dkl_reached": float(dkl_reached.abs().mean()) if len(dkl_reached) else float("nan"),
                    "n_prompts_all_reached": int(len(dkl_reached)),
                    "unreached_frac": float(unreached.mean()), "kl_infinite_prompts": int(infinite),
                    "n_rows": int(len(both)), "n_prompts": int(both["prompt_id"].nunique()),
                    "requests": int(cand.drop_duplicates(per_unit)["requests"].sum()),
                })
    return pd.DataFrame(rows)


def _dlogp(both: pd.DataFrame) -> float:
    """Mean |Δ log p| over rows both methods give a positive probability (relative error, scale-free)."""
    ok = both[(both["prob"] > 0) & (both["prob_ref"] > 0)]
    if ok.empty:
        return float("nan")
    return float((np.log(ok["prob"]) - np.log(ok["prob_ref"])).abs().mean())


def headline(errors: pd.DataFrame) -> pd.DataFrame:
    """The table for a note: per task set, api-exact and the authors' beam (width 10, 0.001) against in-process."""
    ref = errors[errors["reference"] == IN_PROCESS]
    authors = ref[(ref["method"] == API_BEAM) & (ref["beam_width"] == 10) & (np.isclose(ref["threshold"], 0.001))]
    exact = ref[ref["method"] == API_EXACT]
    cols = ["task_set", "method", "beam_width", "threshold", "mean_abs_dp", "max_abs_dp", "mean_abs_dlogp_reached",
            "mean_abs_dkl", "mean_abs_dkl_reached", "unreached_frac", "n_rows"]
    return pd.concat([exact, authors], ignore_index=True)[cols]
