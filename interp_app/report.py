"""One command to a self-contained interpretability report: ``interp report``.

The report is a list of independent *sections*. Each section is a small function that calls
the same analysis function as the matching ``interp run …`` command and returns HTML plus the
tables it shows (written beside the page as CSV and Parquet). A section whose options are wrong,
or whose analysis raises, shows a "this section failed: <reason>" box; the other sections still
render.

The page (``<out>/index.html``) opens offline: figures are inline images, the circuitsvis
bundle is inlined once (see :mod:`interp_app.render`), and nothing is fetched from the network.

Python::

    from interp_app.report import ReportConfig, build_report
    result = build_report(ReportConfig(model="tiny-llama", out="reports/tiny", n_prompts=2))
    print(result.index)

CLI (:mod:`interp_app.commands.report`): ``interp report --model smollm2-135m --out reports/default``
(``--sections setup,superposition``; ``--set superposition.num_beams=5`` passes a section option).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
import sys
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from analyses import from_scratch as fs
from analyses import head_attribution as ha
from analyses import logit_lens as ll
from analyses import scale as sc
from analyses import scale_study as ss
from analyses import superposition as sp
from analyses import task_vectors as tv
from interp.errors import InterpError
from interp.models import load_model
from interp.progress import progress
from interp.tasks import get_task_set
from interp.validate import check_options
from interp.versions import versions
from interp_app.figures.from_scratch import plot_curves
from interp_app.figures.heads import plot_head_attribution, plot_overlap_and_ablation
from interp_app.figures.logit_lens import plot_logit_lens
from interp_app.figures.scale import plot_scale
from interp_app.figures.scale_study import plot_scale_study
from interp_app.figures.superposition import plot_stacked, plot_summary
from interp_app.figures.task_vectors import plot_interpolation, plot_layer_sweep, plot_residuals, plot_weights
from interp_app.options import (
    CacheOptions,
    ExperimentConfig,
    ModelOptions,
    OutputOptions,
    load_tasks_files,
    make_prompts,
    parse_value,
    type_name,
)
from interp_app.render import Page, attention_heads_view, esc, failure_box, figure_img, note, table_html
from interp_app.runs import RunDir

# country first: the per-layer sections default to the first task set, and its prompts are the shortest.
DEFAULT_TASK_SETS = "country,ab,add-translate,word"


@dataclass
class ReportPromptOptions:
    title: ClassVar[str] = "prompts"
    task_sets: str = field(default=DEFAULT_TASK_SETS, metadata={"help": "comma-separated task sets"})
    tasks_file: list[str] = field(default_factory=list, metadata={
        "help": "a .py file registering task sets, or a declarative .json/.toml task-set file (repeatable)",
        "repeat": True, "metavar": "PATH"})
    n_prompts: int = field(default=8, metadata={"help": "prompts per task set (small keeps the report fast)", "min": 1})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same prompts)"})


@dataclass
class ReportOptions:
    title: ClassVar[str] = "report"
    sections: str = field(default="", metadata={"help": "comma-separated subset of sections (default: all)"})
    checkpoints: str = field(default="checkpoints", metadata={
        "help": "directory holding from-scratch/ (and from-scratch/scale/) checkpoints for those sections"})
    traceback: bool = field(default=False, metadata={"help": "print the traceback of a failing section to stderr"})
    options: list[str] = field(default_factory=list, metadata={"cli": False})


@dataclass
class ReportConfig(ModelOptions, ReportPromptOptions, CacheOptions, OutputOptions, ReportOptions):
    """``interp report``: model, task sets, cache, output and which sections."""

    out: str = field(default="reports/default", metadata={"help": "output directory (index.html + CSV tables)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an output directory that holds a different report"})

    def task_set_list(self) -> list[str]:
        return [t.strip() for t in self.task_sets.split(",") if t.strip()]

    def _validate(self) -> None:
        # A model that comes with its own task set (constructed-superposition) is reported on that set by default.
        from interp.constructed import model_task_set

        own = model_task_set(self.model) if self.task_sets == DEFAULT_TASK_SETS else None
        if own:
            self.task_sets = own


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
            try:
                self._model = load_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
            except InterpError as exc:
                self._model_error = str(exc)
                raise
        return self._model

    def seed_everything(self) -> None:
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
        try:  # the command line's own value parsing (interp_app.options.parse_value)
            kwargs[name] = parse_value(hints[name], raw)
        except ValueError:
            raise InterpError(f"option {section}.{key}={raw!r}: expected {type_name(hints[name])}") from None
    return cls(**kwargs)


# Smallest allowed value of the sections' integer options (all others: at least 1).
_SECTION_MINIMA = {"examples_per_task": 0, "show_prompts": 0, "window": 0, "n_lambdas": 2, "n_icl_lambdas": 2}


def check_section_options(section: str, opts: Any) -> None:
    """Types and ranges of one section's options (``--set``), checked before anything runs."""
    if opts is None:
        return
    check_options(opts)
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and value < _SECTION_MINIMA.get(f.name, 1):
            raise InterpError(f"option {section}.{f.name} must be at least {_SECTION_MINIMA.get(f.name, 1)}, got {value}")


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
    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(config.out)
    _check_out(out)
    names = select_sections(config)
    load_tasks_files(config.tasks_file)
    options = split_options(config.options)
    for section in options:
        if section not in SECTIONS:
            raise InterpError(f"--set names unknown section {section}: known sections are {', '.join(SECTIONS)}")
    # Every input is checked before anything is loaded or written: section options, task sets.
    for section, pairs in options.items():
        check_section_options(section, _parse_options(SECTIONS[section].options, section, pairs))
    if not config.task_set_list():
        raise InterpError("--task-sets names no task set: e.g. --task-sets country,ab")
    for name in config.task_set_list():
        get_task_set(name)
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
                if config.traceback:
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
        (out / stale).with_suffix(".parquet").unlink(missing_ok=True)  # written beside every CSV
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


# ============================================================================== the sections
# Each section: options dataclass (or None) + a function (ctx, opts) -> SectionOutput that only
# calls an analysis's public API and formats its results.

def _fig_html(fig: Any, caption: str = "", fmt: str = "svg") -> str:
    return figure_img(fig, caption, fmt=fmt)


# ------------------------------------------------------------------------------ setup

@register_section("setup", "Setup",
                  "What produced this page: the model (its weight fingerprint identifies the exact weights), the "
                  "library versions, the seed and the prompt settings. Rerunning the same command with the same "
                  "fingerprint and seed rebuilds the same prompts and the same numbers.")
def section_setup(ctx: ReportContext, opts: None) -> SectionOutput:
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
    baselines: bool = True  # share-0, zero-shot and single-task baselines on the same queries


def _prompts(ctx: ReportContext, task_set: str, n_prompts: int, examples_per_task: int | None = None) -> list:
    """The prompts ``interp run …`` builds for the same model, task set, prompt count and seed."""
    return make_prompts(ExperimentConfig(model=ctx.config.model, task_set=task_set, n_prompts=n_prompts,
                                         seed=ctx.config.seed, examples_per_task=examples_per_task))


@register_section("superposition", "Superposition per task set",
                  "Each prompt mixes in-context examples of several tasks (e.g. country → capital, continent, "
                  "upper case) and ends with one query. One forward pass gives a probability to every task's answer; "
                  "a bar stacks those probabilities (grey: mass on anything else). Task superposition means several "
                  "answers get substantial probability at once. KL compares the in-context mix with the answer "
                  "probabilities (raw: unnormalised as in the authors' code; renormalised: over the scored answers). "
                  "r is how many task answers are among the model's K most likely outputs (K = number of tasks). "
                  "Every number is a mean over prompts with a 95 % bootstrap interval [low, high]. Beside each task's "
                  "P, baselines on the same queries: share-0 (that task's examples removed, the others kept: what the "
                  "model gives the answer anyway), zero-shot (no examples), single-task (only that task's examples); "
                  "lift = superposed − share-0 is what showing the task adds. Sorted means are by rank (the largest "
                  "answer probability per prompt, the second largest, …), not by task.",
                  SuperpositionSectionOptions)
def section_superposition(ctx: ReportContext, opts: SuperpositionSectionOptions) -> SectionOutput:
    cfg = ctx.config
    model = ctx.model  # a model that cannot load fails the whole section, not each task set
    html_parts = [note("We hold no numeric Figure-2 values from the paper (its PDF was not available: only the task "
                       "sets and settings from the authors' code), so no paper bars are shown beside ours.")]
    tables: dict[str, pd.DataFrame] = {}
    metric_rows = []
    summaries = []
    options = sp.SuperpositionOptions(topk=opts.topk, num_beams=opts.num_beams, max_new_tokens=opts.max_new_tokens,
                                      baselines=opts.baselines)
    for task_set in progress(cfg.task_set_list(), desc="superposition task sets"):
        try:
            prompts = _prompts(ctx, task_set, cfg.n_prompts, opts.examples_per_task or None)
            result = sp.analyse(model, prompts, options, show_progress=True)
        except InterpError as exc:  # e.g. an unknown task set: fail that task set only
            html_parts.append(f"<h3>{esc(task_set)}</h3>" + failure_box(str(exc)))
            metric_rows.append({"task_set": task_set, "error": str(exc)})
            continue
        m = result.metrics
        row: dict = {"task_set": task_set, "n_prompts": m["n_prompts"], "n_tasks": m["n_tasks"]}
        for _, r in result.metric_intervals.iterrows():  # each metric with its 95 % interval over prompts
            row.update({r["metric"]: r["mean"], f"{r['metric']}_ci_low": r["ci_low"],
                        f"{r['metric']}_ci_high": r["ci_high"]})
        row.setdefault("r", float("nan"))
        row.update({"K": m.get("K", m["n_tasks"]), "boundary_mismatches": m["boundary_mismatches"],
                    "excluded_prompts": m.get("excluded_prompts", 0)})
        metric_rows.append(row)
        summaries.append(result.summary.assign(task_set=task_set))
        tables[f"{task_set}-scores"] = result.scores
        fig = plot_stacked(result.scores, result.summary, f"{model.name} · {task_set}", opts.show_prompts)
        html_parts.append(f"<h3>{esc(task_set)}</h3>" + _fig_html(
            fig, f"per-prompt P(answer) stacked by task (first {min(opts.show_prompts, len(prompts))} prompts), "
                 "their mean, and the in-context mix"))
        html_parts.append(_fig_html(plot_summary(result.summary, f"{model.name} · {task_set} · {len(prompts)} prompts"),
                                    "mean P(answer) per task with 95 % intervals, beside its baselines"))
        html_parts.append(table_html(sp.summary_text(result.summary),
                                     csv_name=table_file("superposition", f"{task_set}-scores")))
        html_parts.append("<p>Sorted means by rank</p>" + table_html(sp.ci_text(result.sorted_means)))
        tables[f"{task_set}-sorted_means"] = result.sorted_means
        tables[f"{task_set}-conditions"] = result.conditions
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
    model = ctx.model
    if opts.task_sets == "all":
        task_sets = ctx.config.task_set_list()
    else:
        task_sets = [t.strip() for t in opts.task_sets.split(",") if t.strip()] or ctx.config.task_set_list()[:1]
    parts: list[str] = []
    tables: dict[str, pd.DataFrame] = {}
    entries = []
    options = ll.LogitLensOptions(controls=opts.controls, top_k=opts.top_k)
    for task_set in progress(task_sets, desc="logit lens task sets"):
        prompts = _prompts(ctx, task_set, opts.n_prompts)
        result = ll.analyse(model, prompts, options, task_set=task_set, show_progress=True,
                            use_cache=ctx.config.cache, cache_dir=ctx.config.cache_path())
        entries.append(result.entry.assign(task_set=task_set))
        tables[f"{task_set}"] = result.table
        fig = plot_logit_lens(result.table, f"logit lens · {model.name} · {task_set} · {len(prompts)} prompts")
        parts.append(f"<h3>{esc(task_set)}</h3>" + _fig_html(fig)
                     + table_html(result.entry, csv_name=table_file("logit_lens", "entry_layers")))
    entry_all = pd.concat(entries, ignore_index=True)
    parts.insert(0, note("We hold no paper figure or logged numbers for this analysis, so only ours are shown."))
    return SectionOutput("\n".join(parts), {"entry_layers": entry_all, **tables})


# ------------------------------------------------------------------------------ task vectors

@dataclass
class TaskVectorSectionOptions:
    task_set: str = ""  # default: the report's first task set
    n_prompts: int = 3  # prompts per task / mixture / λ
    n_examples: int = 6  # in-context examples per prompt (pure and mixed alike)
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
    model = ctx.model
    task_set = opts.task_set or ctx.config.task_set_list()[0]
    options = tv.TaskVectorOptions(n_examples=opts.n_examples, n_queries=opts.n_queries, modes=opts.modes,
                                   layers=opts.layers, n_lambdas=opts.n_lambdas, n_icl_lambdas=opts.n_icl_lambdas,
                                   controls=opts.controls)
    r = tv.analyse(model, task_set, opts.n_prompts, ctx.config.seed, options, show_progress=True,
                   use_cache=ctx.config.cache, cache_dir=ctx.config.cache_path())
    title = f"{model.name} · {task_set}"
    curves = r.interp_curves
    a, b = r.interp_summary["task_a"], r.interp_summary["task_b"]
    figs = [
        _fig_html(plot_layer_sweep(r.sweep_summary, title), "patching each task's vector at each layer (zero-shot)"),
        _fig_html(plot_residuals(r.fits, best=sorted(set(r.best["best_layer"].astype(int))), title=title),
                  "projection per layer: relative residual of the fit"),
        _fig_html(plot_weights(r.weights, r.vectors.tasks, f"{title} · simplex weights at layer {r.layer}"),
                  "fitted weights vs in-context shares"),
        _fig_html(plot_interpolation(curves[curves["kind"] == "task_vector"], curves[curves["kind"] == "icl"], a, b,
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
    model = ctx.model
    task_set = opts.task_set or ctx.config.task_set_list()[0]
    options = ha.HeadsOptions(top_n=opts.top_n, rank_by=opts.rank_by, ablation=opts.ablation,
                              random_control=opts.random_control, attention_prompt=0, attention_window=opts.window)
    ha.check_options(options, opts.n_prompts)
    prompts = _prompts(ctx, task_set, opts.n_prompts)
    r = ha.analyse(model, prompts, options, ctx.config.seed, show_progress=True, use_cache=ctx.config.cache,
                   cache_dir=ctx.config.cache_path())
    title = f"{model.name} · {task_set} · {len(prompts)} prompts"
    parts = [_fig_html(plot_head_attribution(r.attribution, opts.rank_by, f"direct logit attribution per head · {title}"),
                       "mean direct logit attribution of every head, per task")]
    parts.append(_fig_html(plot_overlap_and_ablation(r.jaccard, r.ablation, f"top-{opts.top_n} heads · {title}"),
                           "overlap of the tasks' top heads, and the effect of ablating them"))
    top = r.ranking[r.ranking["rank"] <= opts.top_n]
    parts.append(f"<h3>Top {opts.top_n} heads per task</h3>" + table_html(top, csv_name=table_file("head_attribution", "ranking")))
    if r.ablation is not None:
        parts.append("<h3>Ablation</h3>" + table_html(r.ablation, csv_name=table_file("head_attribution", "ablation")))
    # Attention of every task's top heads on one real prompt of the analysis.
    prompt = prompts[0]
    answers = ", ".join(f"{t}={a!r}" for t, a in prompt.answers.items())
    parts.append(f"<h3>Attention of the top heads</h3><p class=\"meta\">Prompt {prompt.prompt_id} of {esc(task_set)} "
                 f"(last {opts.window} tokens; answers: {esc(answers)}). Heads: "
                 f"{esc(', '.join(ha.head_name(*h) for h in r.shown))}.</p>" + attention_heads_view(*r.attention))
    tables = {"ranking": r.ranking, "overlap": r.jaccard.reset_index(names="task"), "membership": r.membership,
              "closure": r.attribution.closure}
    if r.ablation is not None:
        tables["ablation"] = r.ablation
    return SectionOutput("\n".join(parts), tables)


# ------------------------------------------------------------------------------ from scratch

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


@dataclass
class FromScratchSectionOptions:
    models: str = ""  # comma-separated model dirs (default: every shipped checkpoint under <checkpoints>/from-scratch)
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
    if opts.run:
        curve = _read_run_table(opts.run, "curve.csv", "interp run mixture-curve")
        config_file = Path(opts.run) / "config.json"
        run_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        curve["task_set"] = run_config.get("task_set", "retrieval")
    else:
        dirs = ([_existing_dir(m.strip(), "model directory") for m in opts.models.split(",") if m.strip()]
                or fs.from_scratch_checkpoints(Path(ctx.config.checkpoints) / "from-scratch"))
        if not dirs:
            raise InterpError(f"no from-scratch checkpoint under {Path(ctx.config.checkpoints) / 'from-scratch'}: "
                              "train one with `interp train` and pass --set from_scratch.models=DIR")
        options = fs.MixtureCurveOptions(shares=[float(x) for x in opts.shares.split(",") if x.strip()])
        frames, in_context = [], []
        for d in progress(dirs, desc="from-scratch models"):
            task_set, n_examples = fs.resolve_task_set(d, opts.task_set)
            model = load_model(str(d), device=ctx.config.device, dtype=ctx.config.dtype)
            # The function `interp run mixture-curve` calls, one model (its own task set) at a time.
            result = fs.mixture_curve({d.name: model}, task_set, opts.n_prompts, n_examples, ctx.config.seed, options,
                                      show_progress=True)
            frames.append(result.curve.assign(task_set=task_set, task_a=result.task_a, task_b=result.task_b))
            if fs.training_info(d):
                in_context.append(pd.DataFrame(fs.trained_in_context_curve(d, model=model)).assign(model=d.name))
        curve = pd.concat(frames, ignore_index=True)
    parts = []
    for task_set, g in curve.groupby("task_set", sort=False):
        curves = {label: c.drop(columns=[x for x in ("model", "task_set", "task_a", "task_b") if x in c])
                  for label, c in g.groupby("model", sort=False)}
        parts.append(_fig_html(plot_curves(curves, f"{task_set}: mixture curves (ours) vs the authors' log", task_set),
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
    models: str = ""  # comma-separated specs (default: the shipped <checkpoints>/from-scratch/scale family)
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
    if opts.run:
        summary = _read_run_table(opts.run, "summary.csv", "interp run scale")
        title = f"scale (from {opts.run})"
    else:
        specs = [m.strip() for m in opts.models.split(",") if m.strip()]
        if not specs:
            root = Path(ctx.config.checkpoints) / "from-scratch" / "scale"
            specs = [str(p.parent) for p in sorted(root.glob("*/config.json"))] if root.is_dir() else []
        if not specs:
            raise InterpError(f"no scale checkpoints under {Path(ctx.config.checkpoints) / 'from-scratch' / 'scale'}: "
                              "pass --set scale.models=A,B,...")
        pool = get_task_set(opts.task_set).task_names
        options = sc.ScaleOptions(max_tasks=min(opts.max_tasks, len(pool)), n_examples=opts.n_examples,
                                  num_beams=opts.num_beams)
        # The function `interp run scale` calls (one model in memory at a time).
        result = sc.scale(sc.model_loaders(specs, device=ctx.config.device, dtype=ctx.config.dtype), opts.task_set,
                          opts.n_prompts, ctx.config.seed, options, show_progress=True)
        summary = result.summary
        title = f"{opts.task_set}: {opts.n_prompts} prompts per K, {opts.n_examples} examples"
    html_out = (_fig_html(plot_scale(summary, title), "r/K and KL against parameters, one line per K")
                + table_html(summary, csv_name=table_file("scale", "summary")))
    return SectionOutput(html_out, {"summary": summary})


# ------------------------------------------------------------------------------ scale (real models)

@dataclass
class ScaleRealSectionOptions:
    models: str = ""  # comma-separated specs, e.g. smollm2-135m,gemma3-270m,qwen2.5-0.5b,qwen2.5-1.5b (opt-in: slow)
    run: str = ""  # show an existing `interp run scale-study` run directory instead of computing
    task_sets: str = "ab,country"
    n_prompts: int = 4  # superposed prompts per task set
    k_prompts: int = 2  # prompts per K in the K sweep (0: none)
    num_beams: int = 5


@register_section("scale_real", "Scale (real models)",
                  "The same question on real pretrained models of the offline ladder (interp models ls): per model and "
                  "task set, each task's P(full answer) with its 95 % interval, other mass, KL and r, on the same "
                  "prompts for every model. The ladder mixes three families (SmolLM2, Gemma 3, Qwen2.5), so only "
                  "Qwen2.5 0.5B → 1.5B compares sizes within one family. Opt-in (slow on a CPU): pass "
                  "--set scale_real.models=... or --set scale_real.run=DIR of `interp run scale-study`.",
                  ScaleRealSectionOptions)
def section_scale_real(ctx: ReportContext, opts: ScaleRealSectionOptions) -> SectionOutput:
    if opts.run:
        per_set = _read_run_table(opts.run, "per_set.csv", "interp run scale-study")
        per_task = _read_run_table(opts.run, "per_task.csv", "interp run scale-study")
        title = f"scale study (from {opts.run})"
    else:
        specs = [m.strip() for m in opts.models.split(",") if m.strip()]
        if not specs:
            return SectionOutput(note("Not run (opt-in): fetch models with <code>interp models fetch NAME</code> and "
                                      "pass <code>--set scale_real.models=smollm2-135m,gemma3-270m,...</code>, or show "
                                      "a finished study with <code>--set scale_real.run=DIR</code>."))
        options = ss.ScaleStudyOptions(task_sets=[t.strip() for t in opts.task_sets.split(",") if t.strip()],
                                       n_prompts=opts.n_prompts, k_prompts=opts.k_prompts, num_beams=opts.num_beams,
                                       seed=ctx.config.seed)
        # The function `interp run scale-study` calls (one model in memory at a time).
        result = ss.scale_study(sc.model_loaders(specs, device=ctx.config.device, dtype=ctx.config.dtype), options)
        per_set, per_task = result.per_set, result.per_task
        title = f"{opts.n_prompts} prompts per task set"
    html_out = (_fig_html(plot_scale_study(per_set, title), "r/K and KL against parameters, one line per task set")
                + table_html(per_set, csv_name=table_file("scale_real", "per_set"))
                + table_html(per_task, csv_name=table_file("scale_real", "per_task")))
    return SectionOutput(html_out, {"per_set": per_set, "per_task": per_task})


# Page order (sections register in code order; this keeps the page's reading order explicit).
_ORDER = ("setup", "superposition", "logit_lens", "head_attribution", "task_vectors", "from_scratch", "scale",
          "scale_real")
_ordered = {k: SECTIONS[k] for k in _ORDER if k in SECTIONS} | SECTIONS
SECTIONS.clear()
SECTIONS.update(_ordered)


# ------------------------------------------------------------------------------ methods on a known mechanism

@dataclass
class ConstructedSectionOptions:
    n_prompts: int = 4  # prompts per mixture (and task vectors per task); the model is tiny, 4 prompts take ~20 s
    model: str = "constructed-superposition"  # a constructed model spec (options k, alphabet, examples)


@register_section("constructed_model", "Methods on a model with a known mechanism",
                  "A 3-layer Llama whose weights are set by hand (interp/constructed.py, docs/constructed-model.md): "
                  "task heads compute each task's answer, a mixing head averages 'this example is consistent with "
                  "task k' into the in-context share p_k, and the output puts exactly p_k on task k's answer. The "
                  "toolkit's own methods (superposition, head attribution, mean and zero ablation, logit lens, task "
                  "vectors) are run on it unchanged — whatever --model the report is for — and each finding is "
                  "compared with the known mechanism: a failing row marks a method unreliable for that use. Same "
                  "analysis as `interp run validate-methods`.",
                  ConstructedSectionOptions)
def section_constructed_model(ctx: ReportContext, opts: ConstructedSectionOptions) -> SectionOutput:
    from analyses import method_validation as mv
    from interp.constructed import construction_diagram, model_task_set, options_of

    if model_task_set(opts.model) is None:
        raise InterpError(f"constructed_model.model={opts.model!r} is not a constructed model: use "
                          "constructed-superposition[:k=K,alphabet=LETTERS,examples=N]")
    # float32 always: the construction is exact to float32 precision, not to bfloat16's.
    model = load_model(opts.model, device=ctx.config.device, dtype="float32")
    result = mv.analyse(model, mv.MethodValidationOptions(n_prompts=opts.n_prompts, seed=ctx.config.seed),
                        show_progress=True)
    table = result.table
    passed = int(table["passed"].sum())
    html_out = (f"<pre>{esc(construction_diagram(options_of(model)))}</pre>"
                + f"<p><b>{passed} of {len(table)} checks pass</b> ({opts.n_prompts} prompts per mixture).</p>"
                + table_html(table, csv_name=table_file("constructed_model", "validation")))
    return SectionOutput(html_out, {"validation": table, "ablation": result.ablation,
                                    "lens_entry": result.lens_entry, "projection": result.projection})

# ------------------------------------------------------------------------------ decoding after the first token

@dataclass
class DecodingSectionOptions:
    task_sets: str = ""  # default: the report's first task set ("all": every report task set)
    n_prompts: int = 3  # prompts per task set (each decodes n_samples continuations)
    n_samples: int = 10  # sampled continuations per prompt (temperature 1, seeded)
    temperature: float = 1.0  # the sampling seed is the report's --seed


@register_section("decoding", "Decoding after the first token",
                  "The superposition sections measure one forward pass. Here the model generates: per prompt the "
                  "greedy continuation and N sampled ones (temperature 1, one seeded generator per prompt) until the "
                  "end of the line. Each continuation is one task's answer (exact), a prefix of one or several, or "
                  "other. The fraction of samples giving each task's answer is compared with the teacher-forced "
                  "first-pass P(answer) and P(answer + newline) (what a sample that stops after the answer measures). "
                  "Per generated token t, the entropy (bits) over the tasks whose answer tokens still begin with the "
                  "generated tokens shows when the mixture collapses to one task; the last panel is the probability "
                  "that survives on a task's answer once its first token is fixed. Intervals: Clopper–Pearson per "
                  "prompt, bootstrap over prompts (95 %).",
                  DecodingSectionOptions)
def section_decoding(ctx: ReportContext, opts: DecodingSectionOptions) -> SectionOutput:
    from analyses import decoding as dec
    from interp_app.figures.decoding import plot_decoding

    model = ctx.model
    if opts.task_sets == "all":
        task_sets = ctx.config.task_set_list()
    else:
        task_sets = [t.strip() for t in opts.task_sets.split(",") if t.strip()] or ctx.config.task_set_list()[:1]
    options = dec.DecodingOptions(n_samples=opts.n_samples, temperature=opts.temperature,
                                  sample_seed=ctx.config.seed)
    parts: list[str] = []
    tables: dict[str, pd.DataFrame] = {}
    for task_set in progress(task_sets, desc="decoding task sets"):
        prompts = _prompts(ctx, task_set, opts.n_prompts)
        result = dec.analyse(model, prompts, options, show_progress=True)
        fig = plot_decoding(result.summary, result.position_summary, result.conditional_summary,
                            f"decoding · {model.name} · {task_set} · {len(prompts)} prompts × {opts.n_samples} samples")
        m = result.metrics
        parts.append(f"<h3>{esc(task_set)}</h3>" + _fig_html(fig) + note(
            f"exact answers among samples: {m['exact_fraction']:.3f}; P(answer + newline) inside the sampled "
            f"fraction's 95 % interval for {m['delimited_inside_ci']:.0%} of (prompt, task) pairs; collapse position "
            f"(first generated token after which at most one task is consistent): median {m['median_collapse_position']}, "
            f"counts {m['collapse_position_counts']}, ended still mixed {m['never_collapsed']}.")
            + table_html(result.summary, csv_name=table_file("decoding", f"{task_set}-summary"))
            + table_html(result.categories, csv_name=table_file("decoding", f"{task_set}-categories"))
            + table_html(result.position_summary, csv_name=table_file("decoding", f"{task_set}-position_summary"))
            + table_html(result.conditional_summary, csv_name=table_file("decoding", f"{task_set}-conditional_summary")))
        tables.update({f"{task_set}-summary": result.summary, f"{task_set}-categories": result.categories,
                       f"{task_set}-position_summary": result.position_summary,
                       f"{task_set}-conditional_summary": result.conditional_summary,
                       f"{task_set}-continuations": result.continuations})
    return SectionOutput("\n".join(parts), tables)
