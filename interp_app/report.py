"""One command to a self-contained interpretability report: ``interp report``.

The report is a list of independent *sections*. Each section is a small function that calls
one analysis's public Python API and returns HTML plus the tables it shows (written beside the
page as CSV). A section whose analysis module is missing, whose options are wrong, or whose
analysis raises shows a "this section failed: <reason>" box; the other sections still render.

The page (``<out>/index.html``) opens offline: figures are inline images, the circuitsvis
bundle is inlined once (see :mod:`interp.render`), and nothing is fetched from the network.

Python::

    from interp.report import ReportConfig, build_report
    result = build_report(ReportConfig(model="tiny-llama", out="reports/tiny", n_prompts=2))
    print(result.index)

CLI: ``interp report --model smollm2-135m --out reports/default``
(``--sections setup,superposition``; ``--set superposition.num_beams=5`` passes a section option).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import traceback
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from interp.cli import Command
from interp.config import add_dataclass_args
from interp.errors import InterpError
from interp.models import DEFAULT_MODEL
from interp.progress import progress
from interp.render import Page, esc, failure_box, note, table_html

# country first: the per-layer sections default to the first task set, and its prompts are the shortest.
DEFAULT_TASK_SETS = "country,ab,add-translate,word"


@dataclass
class ReportConfig:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec: smollm2-135m, tiny-llama, tiny-qwen2, a local HF dir or a hub id"})
    out: str = field(default="reports/default", metadata={"help": "output directory (index.html + CSV tables)"})
    n_prompts: int = field(default=8, metadata={"help": "prompts per task set (small keeps the report fast)"})
    task_sets: str = field(default=DEFAULT_TASK_SETS, metadata={"help": "comma-separated task sets"})
    sections: str = field(default="", metadata={"help": "comma-separated subset of sections (default: all)"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same prompts)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an output directory that holds a different report"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})
    options: list[str] = field(default_factory=list, metadata={"cli": False})

    def task_set_list(self) -> list[str]:
        return [t.strip() for t in self.task_sets.split(",") if t.strip()]


# ------------------------------------------------------------------------------ sections

@dataclass
class SectionOutput:
    """What a section returns: its HTML body and the tables (name -> frame) it shows."""

    html: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    error: str | None = None  # set when the analysis failed but the section still shows something useful


@dataclass
class Section:
    name: str
    title: str
    explanation: str
    run: Callable[[ReportContext, Any], SectionOutput]
    options: type | None = None  # dataclass of the section's options (``--set name.key=value``)


SECTIONS: dict[str, Section] = {}


def table_file(section: str, table: str) -> str:
    """The CSV a section's table is written to (the page links it under this name)."""
    return f"{section}-{table}.csv"


def register_section(name: str, title: str, explanation: str, options: type | None = None
                     ) -> Callable[[Callable[..., SectionOutput]], Callable[..., SectionOutput]]:
    """Add a section; sections render in registration order."""

    def wrap(fn: Callable[..., SectionOutput]) -> Callable[..., SectionOutput]:
        SECTIONS[name] = Section(name, title, explanation, fn, options)
        return fn

    return wrap


def require_module(name: str) -> Any:
    """Import an analysis module, or fail the section with one line naming what is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise InterpError(f"module {name} is not installed in this checkout") from None
        raise


@dataclass
class ReportContext:
    """Shared state for one report: the config, the output dir, and a lazily loaded model."""

    config: ReportConfig
    out: Path
    _model: Any = None
    _model_error: str | None = None
    figures_dir: Path | None = None

    @property
    def model(self) -> Any:
        if self._model_error is not None:
            raise InterpError(self._model_error)
        if self._model is None:
            from interp.models import load_model

            try:
                self._model = load_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
            except InterpError as exc:
                self._model_error = str(exc)
                raise
        return self._model

    def seed_everything(self) -> None:
        import random

        import numpy as np
        import torch

        random.seed(self.config.seed)
        np.random.seed(self.config.seed)
        torch.manual_seed(self.config.seed)


def _parse_options(cls: type | None, section: str, pairs: dict[str, str]) -> Any:
    """Build a section's options dataclass from ``key=value`` strings (one-line error on a bad key)."""
    if cls is None:
        if pairs:
            raise InterpError(f"section {section} takes no options (got {', '.join(sorted(pairs))})")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in pairs.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise InterpError(f"unknown option {key!r} for section {section}: known options are {', '.join(fields)}")
        tp = hints[name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp
        try:
            if base is bool:
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(raw)
                kwargs[name] = raw.lower() in ("1", "true", "yes")
            elif base in (int, float, str):
                kwargs[name] = base(raw)
            else:
                kwargs[name] = raw
        except ValueError:
            raise InterpError(f"option {section}.{key}={raw!r}: expected {getattr(base, '__name__', base)}") from None
    return cls(**kwargs)


def split_options(options: list[str]) -> dict[str, dict[str, str]]:
    """``["superposition.num_beams=5"]`` -> ``{"superposition": {"num_beams": "5"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in options:
        key, eq, value = item.partition("=")
        section, dot, opt = key.partition(".")
        if not eq or not dot or not section or not opt:
            raise InterpError(f"--set {item!r}: expected SECTION.OPTION=VALUE, e.g. superposition.num_beams=5")
        out.setdefault(section.replace("-", "_"), {})[opt] = value
    return out


# ------------------------------------------------------------------------------ build

@dataclass
class ReportResult:
    index: Path
    failed: dict[str, str]
    timings: dict[str, float]
    tables: list[Path]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InterpError(f"output path {out} is a file: pass a directory to --out")


def select_sections(config: ReportConfig) -> list[str]:
    """The sections to build, in page order; unknown names are one clear error."""
    if not config.sections.strip():
        return list(SECTIONS)
    wanted = [s.strip().replace("-", "_") for s in config.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise InterpError(f"unknown section(s) {', '.join(unknown)}: known sections are {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def build_report(config: ReportConfig, show_progress: bool = True, log: Callable[[str], None] | None = None) -> ReportResult:
    """Build every selected section and write ``<out>/index.html`` plus one CSV per table.

    Raises :class:`InterpError` only for problems that stop the whole report (output path is a
    file, unknown section names, malformed ``--set``); everything else fails one section.
    """
    from interp.runs import RunDir

    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(config.out)
    _check_out(out)
    names = select_sections(config)
    options = split_options(config.options)
    for section in options:
        if section not in SECTIONS:
            raise InterpError(f"--set names unknown section {section}: known sections are {', '.join(SECTIONS)}")
    previous_tables = _tables_of_previous_report(out)
    run = RunDir(out, {"analysis": "report", "config": dataclasses.asdict(config)}, overwrite=config.overwrite)
    ctx = ReportContext(config, out)
    ctx.seed_everything()
    page = Page(f"Task superposition report · {config.model}",
                intro=f'<p class="meta">generated {esc(datetime.now(timezone.utc).isoformat(timespec="seconds"))} · '
                      f"sections: {esc(', '.join(names))} · tables are CSV files beside this page</p>")
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds per section: comparable across runs on a busy machine
    written: list[Path] = []
    for name in progress(names, desc="report sections", disable=not show_progress):
        section = SECTIONS[name]
        start, cpu_start = time.perf_counter(), time.process_time()
        body = f'<p class="explain">{esc(section.explanation)}</p>'
        try:
            opts = _parse_options(section.options, name, options.get(name, {}))
            result = section.run(ctx, opts)
            links = []
            for table_name, frame in result.tables.items():
                file_name = table_file(name, table_name)
                written.append(run.write_csv(file_name, frame))
                links.append(f'<a class="csv" href="{esc(file_name)}">{esc(file_name)}</a>')
            if result.error:
                failed[name] = result.error
                log(f"section {name} failed: {result.error}")
                body += failure_box(result.error)
            body += result.html
            if links:
                body += f'<p class="meta">tables: {" · ".join(links)}</p>'
            page.add(section.title, body, anchor=name, failed=bool(result.error))
        except Exception as exc:  # a failing section must never take the page down
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not isinstance(exc, InterpError):
                reason = f"{type(exc).__name__}: {reason}"
                if os.environ.get("INTERP_REPORT_DEBUG") == "1":
                    traceback.print_exc()
            failed[name] = reason
            log(f"section {name} failed: {reason}")
            page.add(section.title, body + failure_box(reason), anchor=name, failed=True)
        timings[name] = time.perf_counter() - start
        cpu[name] = time.process_time() - cpu_start
    index = page.write(out / "index.html")
    # Tables an earlier report wrote here that this one did not (a section dropped or renamed)
    # would sit beside the page as if they belonged to it.
    for stale in previous_tables - {p.name for p in written}:
        (out / stale).unlink(missing_ok=True)
    run.write_json("report.json", {"sections": names, "failed": failed, "timings_s": timings, "cpu_s": cpu,
                                   "tables": [p.name for p in written]})
    return ReportResult(index, failed, timings, written)


def _tables_of_previous_report(out: Path) -> set[str]:
    """CSV names the report previously written to ``out`` listed in its report.json (plain names only)."""
    try:
        tables = json.loads((out / "report.json").read_text()).get("tables", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {t for t in tables if isinstance(t, str) and t.endswith(".csv") and Path(t).name == t}


# ------------------------------------------------------------------------------ CLI

def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_args(parser, ReportConfig)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                        help="a section option, e.g. superposition.num_beams=5 (repeatable)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "sections and their options (--set SECTION.OPTION=VALUE):\n" + "\n".join(
        f"  {s.name:<17} " + (", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(s.options))
                              if s.options else "(no options)") for s in SECTIONS.values())


def _cli_run(args: argparse.Namespace) -> int:
    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(ReportConfig) if hasattr(args, f.name)}
    config = ReportConfig(**kwargs)
    result = build_report(config)
    if result.failed:
        print(f"{len(result.failed)} section(s) failed: {', '.join(result.failed)} (see the page)", file=sys.stderr)
    print(result.index.resolve())
    return 1 if result.failed else 0


CLI_COMMANDS = [
    Command(("report",), "build a self-contained offline HTML report with CSV tables", _add_arguments, _cli_run),
]


# ============================================================================== the sections
# Each section: options dataclass (or None) + a function (ctx, opts) -> SectionOutput that only
# calls an analysis's public API and formats its results.

def _plt() -> Any:
    # No matplotlib.use() here: plot_stacked is also called from notebooks (inline backend);
    # headless runs get Agg from the analysis modules' imports or matplotlib's own fallback.
    import matplotlib.pyplot as plt

    return plt


def _fig_html(fig: Any, caption: str = "", fmt: str = "svg") -> str:
    from interp.render import figure_img

    plt = _plt()
    try:
        return figure_img(fig, caption, fmt=fmt)
    finally:
        plt.close(fig)


TASK_COLORS = ("#3b75af", "#ef8636", "#519e3e", "#c53a32", "#8d69b8", "#84584e", "#d57dbe", "#bcbc21", "#17becf", "#7f7f7f")
OTHER_COLOR = "#d9d9d9"


# ------------------------------------------------------------------------------ setup

@register_section("setup", "Setup",
                  "What produced this page: the model (its weight fingerprint identifies the exact weights), the "
                  "library versions, the seed and the prompt settings. Rerunning the same command with the same "
                  "fingerprint and seed rebuilds the same prompts and the same numbers.")
def section_setup(ctx: ReportContext, opts: None) -> SectionOutput:
    from interp.runs import versions

    cfg = ctx.config
    model = ctx.model
    info = model.describe()
    rows = [("model", cfg.model), ("fingerprint", model.fingerprint), ("architecture", info.get("architecture")),
            ("layers × heads × d_model", f"{model.n_layers} × {model.n_heads} × {model.d_model}"),
            ("parameters", f"{model.n_params:,}"), ("context", model.n_ctx), ("device / dtype", f"{info['device']} / {info['dtype']}"),
            ("seed", cfg.seed), ("prompts per task set", cfg.n_prompts), ("task sets", cfg.task_sets),
            ("command", " ".join(["interp", *sys.argv[1:]]) if Path(sys.argv[0]).name == "interp" else "(Python API)")]
    rows += [(f"version: {k}", v) for k, v in versions().items()]
    table = pd.DataFrame(rows, columns=["setting", "value"]).astype({"value": str})
    return SectionOutput(table_html(table, max_rows=100), {"setup": table})


# ------------------------------------------------------------------------------ superposition

@dataclass
class SuperpositionSectionOptions:
    topk: bool = True  # compute r (beam search; the slowest part)
    num_beams: int = 3
    max_new_tokens: int = 5
    examples_per_task: int = 0  # 0: the task set's default
    show_prompts: int = 12  # prompts drawn as stacked bars per task set


def plot_stacked(scores: pd.DataFrame, summary: pd.DataFrame, title: str, max_prompts: int = 12) -> Any:
    """Stacked per-task probability bars (paper Figure 2 style): per prompt, the mean, and the in-context mix."""
    plt = _plt()
    tasks = list(summary["task"])
    wide = scores.pivot(index="prompt_id", columns="task", values="prob")[tasks].head(max_prompts)
    labels = [f"p{i}" for i in wide.index] + ["mean", "in-context"]
    rows = [wide.loc[i].to_numpy() for i in wide.index] + [summary["mean"].to_numpy(), summary["share"].to_numpy()]
    fig, ax = plt.subplots(figsize=(1.6 + 0.38 * len(labels), 3.0))
    for x, values in enumerate(rows):
        bottom = 0.0
        for k, v in enumerate(values):
            ax.bar(x, v, bottom=bottom, color=TASK_COLORS[k % len(TASK_COLORS)], width=0.8,
                   label=tasks[k] if x == 0 else None)
            bottom += float(v)
        ax.bar(x, max(0.0, 1 - bottom), bottom=bottom, color=OTHER_COLOR, width=0.8, label="other" if x == 0 else None)
    ax.axvline(len(labels) - 2.5, color="#333", lw=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(answer)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    fig.tight_layout()
    return fig


@register_section("superposition", "Superposition per task set",
                  "Each prompt mixes in-context examples of several tasks (e.g. country → capital, continent, "
                  "upper case) and ends with one query. One forward pass gives a probability to every task's answer; "
                  "a bar stacks those probabilities (grey: mass on anything else). Task superposition means several "
                  "answers get substantial probability at once. KL compares the in-context mix with the answer "
                  "probabilities (raw: unnormalised as in the authors' code; renormalised: over the scored answers). "
                  "r is how many task answers are among the model's K most likely outputs (K = number of tasks).",
                  SuperpositionSectionOptions)
def section_superposition(ctx: ReportContext, opts: SuperpositionSectionOptions) -> SectionOutput:
    from analyses.superposition import SuperpositionConfig, analyse
    from interp.experiment import make_prompts

    cfg = ctx.config
    model = ctx.model  # a model that cannot load fails the whole section, not each task set
    html_parts = [note("We hold no numeric Figure-2 values from the paper (its PDF was not available: only the task "
                       "sets and settings from the authors' code), so no paper bars are shown beside ours.")]
    tables: dict[str, pd.DataFrame] = {}
    metric_rows = []
    summaries = []
    for task_set in progress(cfg.task_set_list(), desc="superposition task sets"):
        sc = SuperpositionConfig(model=cfg.model, task_set=task_set, n_prompts=cfg.n_prompts, seed=cfg.seed,
                                 examples_per_task=opts.examples_per_task or None, device=cfg.device, dtype=cfg.dtype,
                                 topk=opts.topk, num_beams=opts.num_beams, max_new_tokens=opts.max_new_tokens)
        try:
            prompts = make_prompts(sc)
            result = analyse(model, prompts, sc, show_progress=True)
        except InterpError as exc:  # e.g. an unknown task set: fail that task set only
            html_parts.append(f"<h3>{esc(task_set)}</h3>" + failure_box(str(exc)))
            metric_rows.append({"task_set": task_set, "error": str(exc)})
            continue
        m = result.metrics
        metric_rows.append({"task_set": task_set, "n_prompts": m["n_prompts"], "n_tasks": m["n_tasks"],
                            "kl_raw": m["kl_raw"], "kl_renormalised": m["kl_renormalised"], "other": m["other"],
                            "r": m.get("r", float("nan")), "K": m.get("K", m["n_tasks"]),
                            "boundary_mismatches": m["boundary_mismatches"]})
        summaries.append(result.summary.assign(task_set=task_set))
        tables[f"{task_set}-scores"] = result.scores
        fig = plot_stacked(result.scores, result.summary, f"{model.name} · {task_set}", opts.show_prompts)
        html_parts.append(f"<h3>{esc(task_set)}</h3>" + _fig_html(
            fig, f"per-prompt P(answer) stacked by task (first {min(opts.show_prompts, len(prompts))} prompts), "
                 "their mean, and the in-context mix"))
        html_parts.append(table_html(result.summary[["task", "share", "mean", "var", "sorted_mean"]],
                                     csv_name=table_file("superposition", f"{task_set}-scores")))
    metrics = pd.DataFrame(metric_rows)
    tables = {"metrics": metrics, "summary": pd.concat(summaries) if summaries else pd.DataFrame(), **tables}
    html_parts.insert(1, "<h3>Metrics</h3>" + table_html(metrics, csv_name=table_file("superposition", "metrics")))
    if "error" in metrics and metrics["error"].notna().all():
        raise InterpError(f"every task set failed; first: {metrics['error'].iloc[0]}")
    return SectionOutput("\n".join(html_parts), tables)


# ------------------------------------------------------------------------------ logit lens

@dataclass
class LogitLensSectionOptions:
    n_prompts: int = 3  # prompts per task set (each costs 1 + K hooked forwards with controls)
    controls: bool = True  # single-task control prompts (same queries)
    top_k: int = 10
    task_sets: str = ""  # default: the report's first task set ("all": every report task set)


@register_section("logit_lens", "Logit lens (layer × task)",
                  "The logit lens reads the residual stream at the query position after every layer through the "
                  "model's own final norm and unembedding, as if the model stopped there. Following each task's "
                  "answer (its first token) layer by layer shows where the answers of the different tasks appear, "
                  "and whether they appear together. Dashed lines are single-task controls: the same examples and "
                  "query, all answered by one task. The heatmap is the answer's median rank (layer × task).",
                  LogitLensSectionOptions)
def section_logit_lens(ctx: ReportContext, opts: LogitLensSectionOptions) -> SectionOutput:
    logit_lens_mod = require_module("analyses.logit_lens")
    from interp.experiment import ExperimentConfig, make_prompts

    model = ctx.model
    if opts.task_sets == "all":
        task_sets = ctx.config.task_set_list()
    else:
        task_sets = [t.strip() for t in opts.task_sets.split(",") if t.strip()] or ctx.config.task_set_list()[:1]
    parts: list[str] = []
    tables: dict[str, pd.DataFrame] = {}
    entries = []
    for task_set in progress(task_sets, desc="logit lens task sets"):
        prompts = make_prompts(ExperimentConfig(model=ctx.config.model, task_set=task_set, n_prompts=opts.n_prompts,
                                                seed=ctx.config.seed))
        table = logit_lens_mod.logit_lens(model, prompts, controls=opts.controls, task_set=task_set,
                                          top_k=opts.top_k, show_progress=True)
        entry = logit_lens_mod.entry_layers(table, opts.top_k)
        entries.append(entry.assign(task_set=task_set))
        tables[f"{task_set}"] = table
        fig = logit_lens_mod.plot_logit_lens(table, f"logit lens · {model.name} · {task_set} · {len(prompts)} prompts")
        parts.append(f"<h3>{esc(task_set)}</h3>" + _fig_html(fig)
                     + table_html(entry, csv_name=table_file("logit_lens", "entry_layers")))
    entry_all = pd.concat(entries, ignore_index=True)
    parts.insert(0, note("We hold no paper figure or logged numbers for this analysis, so only ours are shown."))
    return SectionOutput("\n".join(parts), {"entry_layers": entry_all, **tables})


# ------------------------------------------------------------------------------ task vectors

@dataclass
class TaskVectorSectionOptions:
    task_set: str = ""  # default: the report's first task set
    n_prompts: int = 3  # prompts per task / mixture / λ
    examples_per_task: int = 6
    n_queries: int = 4
    modes: str = "replace"
    layers: str = ""  # default: every layer
    n_lambdas: int = 9
    n_icl_lambdas: int = 3
    controls: bool = False


@register_section("task_vectors", "Task vectors: projection and interpolation",
                  "A task vector is the mean residual stream at the query's separator over single-task prompts. "
                  "Patched into a zero-shot query, it makes the model perform that task; the best layer is where it "
                  "works best. Projection: the state of a superposed prompt is fitted, layer by layer, as a convex "
                  "combination of the task vectors (weights vs in-context shares, and the relative residual of the "
                  "fit). Interpolation: patching (1-λ)·v_A + λ·v_B moves the answer probabilities from task A to "
                  "task B, compared with real in-context mixes of the two tasks.",
                  TaskVectorSectionOptions)
def section_task_vectors(ctx: ReportContext, opts: TaskVectorSectionOptions) -> SectionOutput:
    tv = require_module("analyses.task_vectors")
    model = ctx.model
    task_set = opts.task_set or ctx.config.task_set_list()[0]
    config = tv.TaskVectorConfig(model=ctx.config.model, task_set=task_set, n_prompts=opts.n_prompts, seed=ctx.config.seed,
                                 examples_per_task=opts.examples_per_task, n_queries=opts.n_queries, modes=opts.modes,
                                 layers=opts.layers, n_lambdas=opts.n_lambdas, n_icl_lambdas=opts.n_icl_lambdas,
                                 controls=opts.controls)
    r = tv.analyse(model, config, show_progress=True)
    title = f"{model.name} · {task_set}"
    curves = r.interp_curves
    a, b = r.interp_summary["task_a"], r.interp_summary["task_b"]
    figs = [
        _fig_html(tv.plot_layer_sweep(r.sweep_summary, title), "patching each task's vector at each layer (zero-shot)"),
        _fig_html(tv.plot_residuals(r.fits, best=sorted(set(r.best["best_layer"].astype(int))), title=title),
                  "projection per layer: relative residual of the fit"),
        _fig_html(tv.plot_weights(r.weights, r.vectors.tasks, f"{title} · simplex weights at layer {r.layer}"),
                  "fitted weights vs in-context shares"),
        _fig_html(tv.plot_interpolation(curves[curves["kind"] == "task_vector"], curves[curves["kind"] == "icl"], a, b,
                                        f"{title} · layer {r.interp_summary['layer']}"),
                  f"interpolation {a} → {b}: task vectors vs real in-context mixes"),
    ]
    summary = pd.DataFrame([{k: v for k, v in r.interp_summary.items() if not isinstance(v, dict)}])
    html_out = (note("The paper's task-vector numbers (best layers, LDA maps, interpolation probabilities) are not "
                     "available to us, so none are shown; the authors' exploration notebook patched mid-depth layers "
                     "(about 14-16 of 32) of Llama-3-8B / Qwen-7B.")
                + "".join(figs) + "<h3>Best layers</h3>" + table_html(r.best, csv_name=table_file("task_vectors", "best_layers"))
                + f"<h3>Weights at layer {r.layer}</h3>" + table_html(r.weights, csv_name=table_file("task_vectors", "weights"))
                + "<h3>Interpolation summary</h3>" + table_html(summary, csv_name=table_file("task_vectors", "interpolation_summary")))
    return SectionOutput(html_out, {"best_layers": r.best, "weights": r.weights.assign(layer=r.layer),
                                    "projection_fits": r.fits, "layer_sweep": r.sweep_summary,
                                    "interpolation": curves, "interpolation_summary": summary})


# ------------------------------------------------------------------------------ attention views

def demo_prompt(ctx: ReportContext, task_set: str, examples_per_task: int = 2) -> Any:
    """A real superposed prompt, short enough that its attention pattern stays readable (and small)."""
    from interp.experiment import ExperimentConfig, make_prompts

    cfg = ExperimentConfig(model=ctx.config.model, task_set=task_set, n_prompts=1, seed=ctx.config.seed,
                           examples_per_task=examples_per_task)
    return make_prompts(cfg)[0]


def head_attention(model: Any, prompt: Any, heads: list[tuple[int, int]]) -> tuple[Any, list[str]]:
    """Attention patterns ``[head, dest, src]`` of ``heads`` (``(layer, head)`` pairs) on ``prompt``, and its tokens."""
    import torch

    from interp.activations import get_activations

    layers = sorted({layer for layer, _ in heads})
    acts = get_activations(model, [prompt], hooks=["pattern"], layers=layers, positions="all", show_progress=False)
    ids = model.encode_prompt(prompt.text)
    n = len(ids)
    pattern = torch.stack([acts[f"blocks.{layer}.attn.hook_pattern"][0, :n, head, :n] for layer, head in heads])
    tokens = [model.tokenizer.decode([i]) for i in ids]
    return pattern, tokens


def attention_html(model: Any, prompt: Any, heads: list[tuple[int, int]], caption: str) -> str:
    """circuitsvis ``attention_heads`` view of ``heads`` on ``prompt`` (values rounded to keep the page small)."""
    from interp.render import attention_heads_view

    pattern, tokens = head_attention(model, prompt, heads)
    names = [f"L{layer}H{head}" for layer, head in heads]
    return (f'<p class="meta">{esc(caption)} Prompt ({len(tokens)} tokens) answers: '
            f"{esc(', '.join(f'{t}={a!r}' for t, a in prompt.answers.items()))}</p>"
            + attention_heads_view(pattern, tokens, names))


# ------------------------------------------------------------------------------ head attribution

@dataclass
class HeadAttributionSectionOptions:
    task_set: str = ""  # default: the report's first task set
    n_prompts: int = 3
    top_n: int = 3  # heads per task in the top set (overlap, ablation, attention views)
    rank_by: str = "logit"  # logit (centred answer logit) or diff (answer minus the other tasks' answers)
    ablation: str = "mean"  # mean, zero, mean,zero or none
    random_control: bool = True
    window: int = 48  # attention drawn over the prompt's last N tokens (the query is the last)


HEAD_ATTRIBUTION_TEXT = (
    "Which attention heads write each task's answer? Direct logit attribution splits the answer's logit at the "
    "query position into one term per head (and MLP); the heatmaps show each head's mean term per task (red raises "
    "the answer). Overlap (Jaccard) says whether tasks share their top heads; ablating a task's top heads (replacing "
    "their output by its mean) tests whether they matter for that task specifically, with random heads as a control. "
    "The top heads' attention patterns on a real superposed prompt are drawn with circuitsvis (hover or click a head; "
    "rows are destination tokens, columns source tokens; the query separator is the last row).")


@register_section("head_attribution", "Head attribution", HEAD_ATTRIBUTION_TEXT, HeadAttributionSectionOptions)
def section_head_attribution(ctx: ReportContext, opts: HeadAttributionSectionOptions) -> SectionOutput:
    from interp.experiment import ExperimentConfig, make_prompts
    from interp.render import from_rendered

    model = ctx.model
    task_set = opts.task_set or ctx.config.task_set_list()[0]
    try:
        ha = require_module("analyses.head_attribution")
    except InterpError as exc:
        # Without the ranking, still show real attention: the last third of the network, unranked.
        prompt = demo_prompt(ctx, task_set)
        layer = (2 * model.n_layers) // 3
        heads = [(layer, h) for h in range(min(6, model.n_heads))]
        view = attention_html(model, prompt, heads, f"Heads not ranked (analysis unavailable): layer {layer}, "
                                                    f"heads 0-{len(heads) - 1}, on a {task_set} prompt.")
        return SectionOutput(view, error=str(exc))
    modes = ha.parse_modes(opts.ablation)
    prompts = make_prompts(ExperimentConfig(model=ctx.config.model, task_set=task_set, n_prompts=opts.n_prompts,
                                            seed=ctx.config.seed))
    result = ha.head_attribution(model, prompts, show_progress=True)
    ranking = ha.head_ranking(result, max(10, opts.top_n), opts.rank_by)
    jaccard, membership = ha.head_overlap(result, opts.top_n, opts.rank_by)
    title = f"{model.name} · {task_set} · {len(prompts)} prompts"
    parts = [_fig_html(ha.plot_head_attribution(result, opts.rank_by, f"direct logit attribution per head · {title}"),
                       "mean direct logit attribution of every head, per task")]
    ablation = None
    if modes:
        ablation, _scores = ha.ablation_table(model, prompts, result, opts.top_n, opts.rank_by, modes,
                                              opts.random_control, ctx.config.seed, show_progress=True)
    parts.append(_fig_html(ha.plot_overlap_and_ablation(jaccard, ablation, f"top-{opts.top_n} heads · {title}"),
                           "overlap of the tasks' top heads, and the effect of ablating them"))
    top = ranking[ranking["rank"] <= opts.top_n]
    parts.append(f"<h3>Top {opts.top_n} heads per task</h3>" + table_html(top, csv_name=table_file("head_attribution", "ranking")))
    if ablation is not None:
        parts.append("<h3>Ablation</h3>" + table_html(ablation, csv_name=table_file("head_attribution", "ablation")))
    # Attention of every task's top heads on one real prompt of the analysis.
    shown = list(dict.fromkeys(h for t in result.tasks for h in ha.top_heads(result, t, opts.top_n, opts.rank_by)))
    prompt = prompts[0]
    view = ha.attention_view(model, prompt, shown, opts.window or None)
    answers = ", ".join(f"{t}={a!r}" for t, a in prompt.answers.items())
    parts.append(f"<h3>Attention of the top heads</h3><p class=\"meta\">Prompt {prompt.prompt_id} of {esc(task_set)} "
                 f"(last {opts.window} tokens; answers: {esc(answers)}). Heads: "
                 f"{esc(', '.join(ha.head_name(*h) for h in shown))}.</p>" + from_rendered(view))
    tables = {"ranking": ranking, "overlap": jaccard.reset_index(names="task"), "membership": membership,
              "closure": result.closure}
    if ablation is not None:
        tables["ablation"] = ablation
    return SectionOutput("\n".join(parts), tables)


# ------------------------------------------------------------------------------ from scratch

CHECKPOINTS = Path("checkpoints")


def _existing_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise InterpError(f"{what} {p} does not exist: pass an existing directory")
    return p


def _read_run_table(run: str, name: str, command: str) -> pd.DataFrame:
    path = _existing_dir(run, "run directory") / name
    if not path.is_file():
        raise InterpError(f"run directory {run} has no {name}: pass a directory written by `{command}`")
    return pd.read_csv(path)


def from_scratch_checkpoints(root: Path = CHECKPOINTS / "from-scratch") -> list[Path]:
    """Shipped from-scratch models: the directories directly under ``root`` holding a ``training_config.json``
    (the ``scale/`` and ``ablations/`` families are shown elsewhere or on request)."""
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob("*/training_config.json"))


@dataclass
class FromScratchSectionOptions:
    models: str = ""  # comma-separated model dirs (default: every shipped checkpoint under checkpoints/from-scratch)
    run: str = ""  # show an existing `interp run mixture-curve` run directory instead of computing
    task_set: str = ""  # retrieval or bias-add (default: each model's training task set)
    n_prompts: int = 10  # prompts per share d
    shares: str = "0,0.2,0.4,0.5,0.6,0.8,1"


@register_section("from_scratch", "From-scratch mixture curves",
                  "Small Llama-style models trained from scratch on prompts that each hold examples of a single task "
                  "are shown prompts mixing two tasks A and B, a share d of the examples being task A. If task "
                  "superposition emerges without ever being trained for, P(task A answer) rises with d, P(task B) "
                  "falls, and little mass goes elsewhere (grey). The dashed line is the authors' logged curve "
                  "(their run_summaries.json), and their full logged table is shown below ours.",
                  FromScratchSectionOptions)
def section_from_scratch(ctx: ReportContext, opts: FromScratchSectionOptions) -> SectionOutput:
    fs = require_module("analyses.from_scratch")
    from interp.models import load_model

    if opts.run:
        curve = _read_run_table(opts.run, "curve.csv", "interp run mixture-curve")
        import json

        run_config = json.loads((Path(opts.run) / "config.json").read_text()) if (Path(opts.run) / "config.json").is_file() else {}
        curve["task_set"] = run_config.get("task_set", "retrieval")
    else:
        dirs = ([_existing_dir(m.strip(), "model directory") for m in opts.models.split(",") if m.strip()]
                or from_scratch_checkpoints())
        if not dirs:
            raise InterpError("no from-scratch checkpoint under checkpoints/from-scratch: train one with `interp train` "
                              "and pass --set from_scratch.models=DIR")
        shares = [float(x) for x in opts.shares.split(",") if x.strip()]
        frames, in_context = [], []
        for d in progress(dirs, desc="from-scratch models"):
            cfg = fs.MixtureCurveConfig(model=str(d), task_set=opts.task_set, shares=shares, n_prompts=opts.n_prompts,
                                        seed=ctx.config.seed)
            task_set, n_examples = fs.resolve_task_set(cfg)
            a, b = fs.DEFAULT_PAIRS[task_set]
            prompts, design = fs.build_mixture_prompts(task_set, a, b, shares, opts.n_prompts, n_examples,
                                                       cfg.sampling, ctx.config.seed)
            model = load_model(str(d))
            result = fs.analyse({d.name: model}, prompts, design, cfg.end_of_answer, cfg.batch_size,
                                show_progress=True)
            frames.append(result.curve.assign(task_set=task_set, task_a=a, task_b=b))
            if fs.training_info(d):
                in_context.append(pd.DataFrame(fs.trained_in_context_curve(d, model=model)).assign(model=d.name))
        curve = pd.concat(frames, ignore_index=True)
    parts = []
    for task_set, g in curve.groupby("task_set", sort=False):
        curves = {label: c.drop(columns=[x for x in ("model", "task_set", "task_a", "task_b") if x in c])
                  for label, c in g.groupby("model", sort=False)}
        parts.append(_fig_html(fs.plot_curves(curves, f"{task_set}: mixture curves (ours) vs the authors' log", task_set),
                               "stack: P(task A), P(task B), other; dashed: the authors' logged P(task A)"))
    paper = fs.PAPER_COPY_CURVE.rename(columns={"p_a": "copy: P(t0)", "other": "copy: other"}).merge(
        fs.PAPER_BIAS_ADD_CURVE.rename(columns={"p_a": "bias_add_simple: P(t0)"}), on="d")
    ours = curve[[c for c in ("model", "d", "p_a", "p_b", "other", "n_prompts") if c in curve]]
    parts.append('<div class="side-by-side"><div><h3>Ours</h3>' + table_html(ours, 60, csv_name=table_file("from_scratch", "curve"))
                 + "</div><div><h3>The authors' logged results</h3>"
                 + table_html(paper, csv_name=table_file("from_scratch", "paper_logged"))
                 + '<p class="meta">Source: the authors\' <code>run_summaries.json</code> (icl-pretraining); '
                   "mean P(task-0 answer) per share d; d = 0 and 1 put ≥ 0.9999 on the single in-context task.</p>"
                   "</div></div>")
    tables = {"curve": curve, "paper_logged": paper}
    if not opts.run and in_context:
        long = pd.concat(in_context, ignore_index=True)
        wide = long.pivot(index="model", columns="example", values="nll").reset_index()
        wide.columns = ["model"] + [f"ex {c}" for c in wide.columns[1:]]
        parts.append("<h3>Does each model use its context? Answer loss by example index</h3>"
                     + table_html(wide, 60, csv_name=table_file("from_scratch", "in_context"))
                     + '<p class="meta">Mean answer loss (nats) at the 1st, 2nd, … example of fresh one-task training '
                       "prompts. Example 1 cannot reveal the task; a curve that drops after it means the model infers "
                       "the task from context, a flat one (at ln 8 = 2.08 for retrieval, ln 10 = 2.30 for bias-add) "
                       "means it does not.</p>")
        tables["in_context"] = long
    return SectionOutput("\n".join(parts), tables)


# ------------------------------------------------------------------------------ scale

@dataclass
class ScaleSectionOptions:
    models: str = ""  # comma-separated specs (default: the shipped checkpoints/from-scratch/scale family)
    run: str = ""  # show an existing `interp run scale` run directory instead of computing
    task_set: str = "bias-add"
    max_tasks: int = 4
    n_prompts: int = 6  # prompts per K
    n_examples: int = 20
    num_beams: int = 4


@register_section("scale", "Scale",
                  "The paper reports that larger models solve more in-context tasks in parallel and calibrate better. "
                  "For K tasks mixed uniformly in context, r is how many of the K answers are among the model's K most "
                  "likely complete outputs (r/K = 1 is perfect) and KL compares the in-context mix with the answer "
                  "probabilities (lower is better calibrated). Each line is one K; the x axis is the parameter count. "
                  "The paper's numbers (Qwen1.5 family) are not available to us, so none are shown.",
                  ScaleSectionOptions)
def section_scale(ctx: ReportContext, opts: ScaleSectionOptions) -> SectionOutput:
    sc = require_module("analyses.scale")
    from interp.models import load_model

    if opts.run:
        summary = _read_run_table(opts.run, "summary.csv", "interp run scale")
        title = f"scale (from {opts.run})"
    else:
        specs = [m.strip() for m in opts.models.split(",") if m.strip()]
        if not specs:
            root = CHECKPOINTS / "from-scratch" / "scale"
            specs = [str(p.parent) for p in sorted(root.glob("*/config.json"))] if root.is_dir() else []
        if not specs:
            raise InterpError("no scale checkpoints under checkpoints/from-scratch/scale: pass --set scale.models=A,B,...")
        config = sc.ScaleConfig(models=specs, task_set=opts.task_set, max_tasks=opts.max_tasks, n_prompts=opts.n_prompts,
                                n_examples=opts.n_examples, num_beams=opts.num_beams, seed=ctx.config.seed)
        pool = get_task_names(opts.task_set)
        ks = list(range(config.min_tasks, min(opts.max_tasks, len(pool)) + 1))
        prompts, design = sc.build_scale_prompts(opts.task_set, ks, opts.n_prompts, opts.n_examples, None, ctx.config.seed)
        tables = []
        for spec in progress(specs, desc="scale models"):
            model = load_model(spec)
            table = sc.analyse_model(model, prompts, design, config, show_progress=True)
            table.insert(0, "n_params", model.n_params)
            table.insert(0, "model", Path(spec).name)
            tables.append(table)
            del model
        summary = sc.summarize(pd.concat(tables, ignore_index=True))
        title = f"{opts.task_set}: {opts.n_prompts} prompts per K, {opts.n_examples} examples"
    html_out = (_fig_html(sc.plot_scale(summary, title), "r/K and KL against parameters, one line per K")
                + table_html(summary, csv_name=table_file("scale", "summary")))
    return SectionOutput(html_out, {"summary": summary})


def get_task_names(task_set: str) -> list[str]:
    from interp.tasks import get_task_set

    return get_task_set(task_set).task_names


# Page order (sections register in code order; this keeps the page's reading order explicit).
_ORDER = ("setup", "superposition", "logit_lens", "head_attribution", "task_vectors", "from_scratch", "scale")
_ordered = {k: SECTIONS[k] for k in _ORDER if k in SECTIONS} | SECTIONS
SECTIONS.clear()
SECTIONS.update(_ordered)
