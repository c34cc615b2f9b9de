"""Options every analysis shares (model, task set, prompts, output) and the steps they imply.

Analysis configs subclass :class:`ExperimentConfig`, so every ``interp run ...`` command takes
the same ``--model --task-set --n-prompts --seed --mixture --out`` flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from interp.models import DEFAULT_MODEL, LoadedModel, load_model
from interp.prompts import Prompt, build_prompts, parse_mixture
from interp.runs import RunDir
from interp.tasks import TaskSet, get_task_set


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ExperimentConfig:
    model: str = field(default=DEFAULT_MODEL, metadata=_help("model spec: smollm2-135m, tiny-llama, tiny-qwen2, a local HF dir or a hub id"))
    task_set: str = field(default="country", metadata=_help("task set: ab, add-translate, country, word, retrieval, bias-add"))
    n_prompts: int = field(default=100, metadata=_help("number of prompts"))
    seed: int = field(default=0, metadata=_help("random seed (same seed, same prompts)"))
    examples_per_task: int | None = field(default=None, metadata=_help("in-context examples per task (default: the task set's, 20)"))
    mixture: str = field(default="", metadata=_help("custom mix, e.g. capital=0.5,upper=0.5 (shares) or capital=10,upper=30 (counts); default uniform"))
    separator: str | None = field(default=None, metadata=_help("override the task set's separator"))
    device: str = field(default="cpu", metadata=_help("cpu, cuda, cuda:N or auto"))
    dtype: str = field(default="float32", metadata=_help("float32, bfloat16 or float16"))
    batch_size: int = field(default=1, metadata=_help("prompts per forward pass (1 is fastest on CPU)"))
    out: str = field(default="", metadata=_help("run directory (default: runs/<analysis>-<model>-<task set>)"))
    overwrite: bool = field(default=False, metadata=_help("replace a run directory that holds a different run"))

    def mixture_dict(self, task_set: TaskSet) -> dict[str, float] | None:
        return parse_mixture(self.mixture) if self.mixture else None

    def out_dir(self, analysis: str) -> Path:
        if self.out:
            return Path(self.out)
        model = Path(self.model).name if "/" in self.model else self.model
        return Path("runs") / f"{analysis}-{model}-{self.task_set}"


def make_prompts(config: ExperimentConfig, task_set: TaskSet | None = None) -> list[Prompt]:
    ts = task_set or get_task_set(config.task_set)
    return build_prompts(
        ts,
        mixture=config.mixture_dict(ts),
        n_prompts=config.n_prompts,
        examples_per_task=config.examples_per_task,
        seed=config.seed,
        separator=config.separator,
        with_replacement=ts.name == "bias-add",
        allow_query_in_examples=ts.name == "bias-add",
    )


def make_model(config: ExperimentConfig) -> LoadedModel:
    return load_model(config.model, device=config.device, dtype=config.dtype)


def open_run(config: ExperimentConfig, analysis: str, model: LoadedModel) -> RunDir:
    """The run directory of ``analysis``, recording its config and the model's description."""
    return RunDir(config.out_dir(analysis), {"analysis": analysis, "config": asdict(config),
                                             "model": model.describe()}, overwrite=config.overwrite)
