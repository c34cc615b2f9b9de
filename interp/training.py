"""Train small Llama models from scratch on one-task-per-prompt ICL data (paper §4).

Every training prompt holds ``n_examples`` in-context examples of *one* hidden task ``h``
(``retrieval``: 8 distinct letters, answer = the letter at position h; ``bias-add``: a digit x,
answer = (x + h) mod 10). Each example is ``input + separator + answer + "\\n"``; the loss is
next-token cross-entropy on the answer characters (answer and its newline) of every example,
inputs masked. What is trained on comes from the task registry: a task set is trainable when it
declares a :class:`interp.tasks.TrainingSpec` (its vectorised sampler, input length and alphabet),
and each task's ``h`` is its ``Task.params[spec.param]``.
The paper then shows that such models, never trained on mixed prompts, answer mixed prompts in
superposition (see ``analyses/from_scratch.py``).

The result is an ordinary Hugging Face directory (``LlamaForCausalLM`` safetensors + the
character ``tokenizer.json``) that :func:`interp.models.load_model` and every analysis accept.

Python::

    from interp.training import TrainConfig, train
    result = train(TrainConfig(preset="cpu-bias-add", out="runs/train-bias-add"))
    # result.model_dir is a HF model directory

Training is seeded (model init and the on-the-fly data stream) and resumable: every
``checkpoint_every`` steps the model, the AdamW state, the step and every RNG state are written
(safetensors for tensors, JSON for the rest; no pickle) to ``<out>/checkpoint``; rerunning the
same command continues from there and gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.char_tokenizer import build_char_tokenizer
from interp.errors import InterpError
from interp.io import atomic_write_text, remove_stale_temporaries
from interp.progress import progress
from interp.tasks import TaskSet, TrainingSpec, get_task_set, known_task_sets
from interp.validate import Validated, check_choice, check_device, check_float, check_int

_log = logging.getLogger(__name__)

IGNORE = -100


def _help(text: str) -> dict[str, str]:
    return {"help": text}


# Presets: the measured CPU recipes (README, "Training from scratch") and the authors' GPU configs.
PRESETS: dict[str, dict[str, Any]] = {
    # Reproduces checkpoints/from-scratch/bias-add-L3-d64-h4 (same seed, same LR schedule): loss leaves
    # chance (ln 10 / 2) at step ~800 and superposes; 165 CPU-seconds on one thread (0.12 s/step).
    # What made it work, measured: init_std 0.1 instead of HF's 0.02 (the 0.02 run was still at chance
    # after 1,425 steps), 3 layers, tied embeddings, RoPE base 100 (2 layers stalled at a partial solution).
    "cpu-bias-add": dict(task_set="bias-add", n_layers=3, d_model=64, n_heads=4, n_examples=20, batch_size=32,
                         max_steps=1350, lr=3e-3, warmup_steps=100, schedule="wsd", decay_frac=100 / 1350,
                         init_std=0.1, tie_embeddings=True, rope_theta=100.0),
    # Retrieval: every recipe measured on all 8 tasks from the start stays on a "copy one of the
    # candidate letters" plateau (loss ~1.06, flat in-context curve; 13,120 steps / 30 min with this
    # preset's settings minus the curriculum; docs/from-scratch.md lists the others). Two tasks first
    # escapes it: ret2/ret6 alone learn at step ~1,300 (batch 64, lr 2e-3, RoPE base 10), and the
    # same weights then learn all 8 tasks within ~300 steps of the switch. Stopped at 4,500 steps
    # with a constant lr: training on (loss flat at ~0.12) and a WSD cooldown (10,000 steps) moved
    # mass on mixed prompts away from both answers (other at d = .5: .04 -> .17, random pairs).
    "cpu-retrieval": dict(task_set="retrieval", n_layers=4, d_model=64, n_heads=4, n_examples=10, batch_size=64,
                          max_steps=4500, lr=2e-3, warmup_steps=200, schedule="constant",
                          init_std=0.1, tie_embeddings=True, rope_theta=10.0, curriculum="ret2,ret6@2000",
                          threads=2),
    # The authors' from-scratch setup (JackCai1206/icl-pretraining): 6 layers, d 384, 6 heads,
    # 100 examples per prompt, AdamW 5e-4, WSD (warmup 10%, decay 500 of 5000 steps). GPU only.
    "paper-retrieval": dict(task_set="retrieval", n_layers=6, d_model=384, n_heads=6, n_examples=100,
                            batch_size=400, max_steps=5000, lr=5e-4, warmup_steps=500, schedule="wsd",
                            decay_frac=0.1, eps=1e-12),
    "paper-bias-add": dict(task_set="bias-add", n_layers=6, d_model=384, n_heads=6, n_examples=100,
                           batch_size=800, max_steps=5000, lr=5e-4, warmup_steps=500, schedule="wsd",
                           decay_frac=0.1),
}


# Ranges of the numeric fields, checked when a config is made: (min, max, exclusive?) per bound.
MAX_POSITIONS = 2048  # LlamaConfig.max_position_embeddings of the trained models
_SEED_MAX = 2**63 - 1  # torch.manual_seed's range
_INT_MIN = {"n_layers": 1, "d_model": 1, "n_heads": 1, "d_mlp": 0, "n_examples": 1, "batch_size": 1, "max_steps": 1,
            "warmup_steps": 0, "seed": 0, "threads": 0, "checkpoint_every": 1, "log_every": 1, "stop_at_step": 0}
_FLOAT_RULES: dict[str, dict[str, float]] = {
    "lr": {"gt": 0}, "rope_theta": {"gt": 0}, "init_std": {"gt": 0}, "eps": {"gt": 0},
    "decay_frac": {"min": 0, "max": 1}, "min_lr_frac": {"min": 0, "max": 1}, "weight_decay": {"min": 0},
    "beta1": {"min": 0, "lt": 1}, "beta2": {"min": 0, "lt": 1}, "grad_clip": {"min": 0},
    "task_skew": {"min": 0, "lt": 1}, "max_minutes": {"min": 0},
}


@dataclass
class TrainConfig(Validated):
    """Everything that determines a from-scratch training run (saved as ``training_config.json``).

    Every field is checked when the config is made (types, ranges: ``lr > 0``, ``0 <= beta < 1``,
    ``checkpoint_every >= 1``, ...), so a bad value is one error line before anything is built.
    """

    preset: str = field(default="", metadata=_help(
        "start from a preset (cpu-retrieval, cpu-bias-add, paper-retrieval, paper-bias-add); "
        "flags given explicitly override it"))
    from_preset: str = field(default="", metadata={"cli": False, "help": "the preset this config was built from"})
    task_set: str = field(default="bias-add", metadata=_help(
        "a trainable task set (one that declares a training sampler): retrieval or bias-add"))
    tasks: str = field(default="", metadata=_help("train on these tasks only, e.g. ret0,ret1 (default: all of the set)"))
    curriculum: str = field(default="", metadata=_help(
        "start on fewer tasks: 'ret2,ret6@2000' trains on ret2 and ret6 until step 2000, then on --tasks; stages "
        "separated by ';' (e.g. 'ret2,ret6@2000;ret0,ret2,ret4,ret6@4000'); empty = no curriculum"))
    task_skew: float = field(default=0.0, metadata=_help(
        "skewed training: this fraction of prompts (e.g. 0.9) uses the first half of the tasks, the rest the second "
        "half (0 = uniform)"))
    n_layers: int = field(default=4, metadata=_help("transformer layers"))
    d_model: int = field(default=128, metadata=_help("model width"))
    n_heads: int = field(default=4, metadata=_help("attention heads (d_head = d_model / n_heads)"))
    d_mlp: int = field(default=0, metadata=_help("MLP width (0 = 4 * d_model)"))
    tie_embeddings: bool = field(default=False, metadata=_help(
        "share the input embedding and the unembedding (LlamaConfig.tie_word_embeddings)"))
    rope_theta: float = field(default=10000.0, metadata=_help(
        "RoPE base (LlamaConfig.rope_theta); a small base gives more high-frequency pairs for local positions"))
    init_std: float = field(default=0.02, metadata=_help(
        "std of the normal weight init (LlamaConfig.initializer_range; HF default 0.02)"))
    n_examples: int = field(default=30, metadata=_help("in-context examples per training prompt"))
    batch_size: int = field(default=32, metadata=_help("prompts per optimizer step"))
    max_steps: int = field(default=3000, metadata=_help("optimizer steps"))
    lr: float = field(default=2e-3, metadata=_help("peak learning rate (AdamW)"))
    warmup_steps: int = field(default=200, metadata=_help("linear warmup steps"))
    schedule: str = field(default="wsd", metadata=_help("wsd (warmup-stable-decay), cosine or constant"))
    decay_frac: float = field(default=0.2, metadata=_help("wsd: fraction of steps in the final linear decay"))
    min_lr_frac: float = field(default=0.0, metadata=_help("learning rate at the end, as a fraction of lr"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay"))
    beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    beta2: float = field(default=0.98, metadata=_help("AdamW beta2"))
    eps: float = field(default=1e-8, metadata=_help("AdamW epsilon"))
    grad_clip: float = field(default=1.0, metadata=_help("gradient-norm clip (0 = off)"))
    seed: int = field(default=0, metadata=_help("seed for the init and the data stream"))
    device: str = field(default="cpu", metadata=_help("cpu, cuda or cuda:N"))
    threads: int = field(default=0, metadata=_help("torch CPU threads (0 = torch's default)"))
    out: str = field(default="", metadata=_help("run directory (default: runs/train-<task set>-<size>)"))
    checkpoint_every: int = field(default=250, metadata=_help("save a resumable checkpoint every N steps"))
    log_every: int = field(default=25, metadata=_help("record the loss every N steps"))
    max_minutes: float = field(default=0.0, metadata=_help(
        "stop (with a checkpoint) after this many minutes; rerun to continue (0 = no limit)"))
    resume: bool = field(default=True, metadata=_help("continue from <out>/checkpoint when it exists"))
    stop_at_step: int = field(default=0, metadata=_help(
        "stop (with a checkpoint) after this step, e.g. to split a run; rerun without it to continue (0 = off)"))

    def _validate(self) -> None:
        for name, lo in _INT_MIN.items():
            check_int(getattr(self, name), name, min=lo)
        check_int(self.seed, "seed", max=_SEED_MAX)
        for name, rule in _FLOAT_RULES.items():
            check_float(getattr(self, name), name, **rule)
        check_choice(self.schedule, "schedule", ("wsd", "cosine", "constant"))
        if self.preset:
            check_choice(self.preset, "preset", PRESETS)
        check_device(self.device)

    def resolved(self, explicit: set[str] | None = None) -> TrainConfig:
        """Apply the preset: its values replace the defaults, explicit values win over both."""
        if not self.preset:
            return self
        if self.preset not in PRESETS:
            raise InterpError(f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        explicit = explicit if explicit is not None else {
            f.name for f in fields(self) if getattr(self, f.name) != f.default
        }
        values = {k: v for k, v in PRESETS[self.preset].items() if k not in explicit}
        # Applied once: a resolved config must not be resolved again, or a flag typed with the
        # default's value (e.g. --d-model 128) would lose to the preset the second time.
        return replace(self, **values, preset="", from_preset=self.preset)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a saved JSON dict; keys this version does not know are ignored, missing ones default."""
        if not isinstance(values, dict):
            raise InterpError(f"a training config must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        """The config saved at ``path``; a missing, empty or damaged file is one InterpError line."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise InterpError(f"cannot read {path} ({exc.strerror or type(exc).__name__})") from None
        except (ValueError, TypeError) as exc:
            raise InterpError(f"{path} is damaged ({type(exc).__name__}): remove the run directory or pass "
                              "another --out") from None

    @property
    def mlp_width(self) -> int:
        return self.d_mlp or 4 * self.d_model

    def size_tag(self) -> str:
        return f"L{self.n_layers}-d{self.d_model}-h{self.n_heads}"

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"train-{self.task_set}-{self.size_tag()}-s{self.seed}"

    def validate(self) -> None:
        training_spec(self.task_set)  # raises for an unknown or untrainable task set
        if self.d_model % self.n_heads:
            raise InterpError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}: change one")
        if (self.d_model // self.n_heads) % 2:
            raise InterpError("d_model / n_heads must be even (RoPE rotates pairs of dimensions)")
        if self.schedule not in ("wsd", "cosine", "constant"):
            raise InterpError(f"unknown schedule {self.schedule!r}: use wsd, cosine or constant")
        if not 0 <= self.task_skew < 1:
            raise InterpError("task_skew must be in [0, 1), e.g. 0.9 for 90/10 training")
        for name in ("n_layers", "d_model", "n_heads", "n_examples", "batch_size", "max_steps"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be at least 1")
        task_names(self)  # raises for unknown task names
        curriculum_stages(self)  # raises for a malformed curriculum
        self.check_size()

    def check_size(self) -> None:
        """Refuse a model or batch that cannot fit, from an estimate, before anything is allocated.

        Sequence: ``n_examples`` x (input, separator, answer, newline) tokens, at most the model's
        2048 positions. Memory: weights, gradients and the two AdamW moments (4 x params x 4 bytes)
        plus the activations kept for the backward pass (per token and layer ~ 16 d + 3 d_mlp +
        heads x sequence, and the logits over the vocabulary).
        """
        from interp.validate import refuse_if_too_big

        spec = training_spec(self.task_set)
        seq = self.n_examples * (spec.input_length + len(get_task_set(self.task_set).separator) + 2)
        if seq > MAX_POSITIONS:
            raise InterpError(f"{self.n_examples} examples make {seq}-token sequences, more than the model's "
                              f"{MAX_POSITIONS} positions: lower --n-examples")
        vocab = 256
        params = self.n_layers * (4 * self.d_model ** 2 + 3 * self.d_model * self.mlp_width) + 2 * vocab * self.d_model
        per_token = self.n_layers * (6 * self.d_model + 2 * self.mlp_width) + vocab  # a lower bound, in floats
        estimate = 16.0 * params + 4.0 * self.batch_size * seq * per_token
        if self.device.startswith("cuda") and torch.cuda.is_available():
            index = int(self.device.partition(":")[2] or 0)
            limit = float(torch.cuda.get_device_properties(index).total_memory)
        else:
            from interp.validate import memory_bytes

            limit = float(memory_bytes())
        refuse_if_too_big(estimate, f"training this model ({params:,} parameters, batch {self.batch_size} x {seq} "
                          "tokens)", "lower --d-model, --n-layers, --batch-size or --n-examples", limit=limit)


# ------------------------------------------------------------------------------------- data


def trainable_task_sets() -> list[str]:
    """Registered task sets that declare a training sampler (``TaskSet.training``)."""
    names = []
    for name in known_task_sets():
        try:
            if get_task_set(name).training is not None:
                names.append(name)
        except InterpError:
            continue  # an installed package's set that fails to load is not trainable either
    return names


def training_spec(task_set: str) -> TrainingSpec:
    """The training sampler task set ``task_set`` declares (one-line error if it has none)."""
    spec = get_task_set(task_set).training
    if spec is None:
        raise InterpError(f"cannot train on task set {task_set!r}: it declares no training sampler "
                          f"(TaskSet.training); use one of {', '.join(trainable_task_sets())}")
    return spec


def all_task_names(task_set: str) -> list[str]:
    return get_task_set(task_set).task_names


def parse_task_list(text: str, task_set: str) -> list[str]:
    """Comma-separated task names of ``task_set`` (one-line error naming the known ones)."""
    names = all_task_names(task_set)
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in names]
    if unknown:
        raise InterpError(f"unknown tasks {unknown} for {task_set!r}: use some of {', '.join(names)}")
    return chosen


def task_names(config: TrainConfig) -> list[str]:
    return parse_task_list(config.tasks, config.task_set) if config.tasks else all_task_names(config.task_set)


def task_params(task_set: TaskSet, names: list[str]) -> list[int]:
    """The hidden parameter h of each named task (``Task.params`` under the set's training key)."""
    if task_set.training is None:
        raise InterpError(f"task set {task_set.name!r} declares no training sampler (TaskSet.training)")
    key = task_set.training.param
    return [int(task_set.task(n).params[key]) for n in names]


def curriculum_stages(config: TrainConfig) -> list[tuple[int, list[str]]]:
    """``[(until_step, task names), ...]`` of ``config.curriculum``, in order (empty without one)."""
    stages: list[tuple[int, list[str]]] = []
    for part in (p.strip() for p in config.curriculum.split(";") if p.strip()):
        names, at, until = part.rpartition("@")
        try:
            chosen = parse_task_list(names, config.task_set)
        except InterpError as exc:
            raise InterpError(f"curriculum stage {part!r}: {exc}") from None
        if not at or not until.strip().isdigit() or not chosen:
            raise InterpError(f"curriculum stage {part!r}: write TASKS@STEP, e.g. ret2,ret6@2000")
        step = int(until)
        if stages and step <= stages[-1][0]:
            raise InterpError(f"curriculum stage {part!r}: steps must increase (previous stage ends at {stages[-1][0]})")
        stages.append((step, chosen))
    return stages


def task_weights(config: TrainConfig) -> list[float]:
    """Sampling probability of each training task per prompt (uniform, or skewed first/second half)."""
    n = len(task_names(config))
    if not config.task_skew or n < 2:
        return [1.0 / n] * n
    first = n // 2
    return [config.task_skew / first] * first + [(1 - config.task_skew) / (n - first)] * (n - first)


class Batcher:
    """Seeded on-the-fly batches of one-task-per-prompt training sequences (token ids + labels).

    With a curriculum, ``next(step)`` samples the task of each prompt from the stage ``step`` is in
    (uniformly); after the last stage, and when no step is given, from the full task list.
    """

    def __init__(self, config: TrainConfig, seed: int) -> None:
        vocab = build_char_tokenizer().get_vocab()
        self.config = config
        self.task_set = get_task_set(config.task_set)
        self.spec = training_spec(config.task_set)
        unknown = sorted(set(self.spec.alphabet + self.task_set.separator) - set(vocab))
        if unknown:
            raise InterpError(f"task set {config.task_set!r} uses characters {unknown} the character vocabulary "
                              "lacks: use printable ASCII")
        self.alphabet = torch.tensor([vocab[c] for c in self.spec.alphabet])
        self.sep = torch.tensor([vocab[c] for c in self.task_set.separator])
        self.newline = vocab["\n"]
        self.params = torch.tensor(task_params(self.task_set, task_names(config)))
        self.weights = torch.tensor(task_weights(config), dtype=torch.float64)
        self.stages = [(until, torch.tensor(task_params(self.task_set, names)))
                       for until, names in curriculum_stages(config)]
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def example_length(self) -> int:
        """Tokens per example: input, separator, answer, newline."""
        return self.spec.input_length + len(self.sep) + 2

    def next(self, step: int | None = None
             ) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"], Int[Tensor, " batch"]]:
        """One batch: ``(input_ids, labels, h per prompt)``; labels are -100 off the answers."""
        b, n, g = self.config.batch_size, self.config.n_examples, self.generator
        params, weights = self.params, self.weights
        stage = next((p for until, p in self.stages if step is not None and step < until), None)
        if stage is not None:
            params, weights = stage, torch.ones(len(stage), dtype=torch.float64)
        h = params[torch.multinomial(weights, b, replacement=True, generator=g)][:, None]  # [b, 1]
        input_idx, answer_idx = self.spec.sample(h, n, g)  # indices into the set's alphabet
        inputs, answers = self.alphabet[input_idx], self.alphabet[answer_idx]
        sep = self.sep.expand(b, n, len(self.sep))
        nl = torch.full((b, n, 1), self.newline)
        ids = torch.cat([inputs, sep, answers, nl], dim=-1)  # [b, n, example_length]
        labels = torch.full_like(ids, IGNORE)
        labels[..., -2:] = ids[..., -2:]  # the answer character and its newline
        return ids.reshape(b, -1), labels.reshape(b, -1), h[:, 0]


# ------------------------------------------------------------------------------------ model


def build_model(config: TrainConfig) -> Any:
    """A fresh, seeded ``LlamaForCausalLM`` sized by ``config`` (character vocabulary)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_char_tokenizer()
    hf_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.d_model,
        intermediate_size=config.mlp_width,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=config.rope_theta,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=config.tie_embeddings,
        rms_norm_eps=1e-5,
        initializer_range=config.init_std,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(hf_config)
    return model


def count_params(config: TrainConfig) -> int:
    """Parameter count of the model ``config`` describes (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then wsd/cosine/constant."""
    peak, floor = config.lr, config.lr * config.min_lr_frac
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return peak
    if config.schedule == "cosine":
        t = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    decay_steps = max(1, int(round(config.decay_frac * config.max_steps)))
    decay_start = config.max_steps - decay_steps
    if step < decay_start:
        return peak
    return peak + (floor - peak) * (step - decay_start + 1) / decay_steps


# ------------------------------------------------------------------------------ checkpoints


def _optimizer_to_safetensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and JSON-able metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_safetensors(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor],
                                meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _fresh_sibling(directory: Path) -> Path:
    """An empty ``<directory>.tmp`` beside ``directory`` to build its replacement in."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _swap_in(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` by the finished ``tmp``; between the two renames the previous version
    stays complete as ``<directory>.old`` (what :func:`checkpoint_dir` falls back to)."""
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(directory: Path, model: Any, optimizer: torch.optim.Optimizer, batcher: Batcher,
                    state: dict[str, Any]) -> None:
    """Write a resumable checkpoint atomically (a temp dir renamed over the old one)."""
    tmp = _fresh_sibling(directory)
    # clone(): tied embeddings share storage, which safetensors refuses to save twice.
    save_file({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _optimizer_to_safetensors(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng: dict[str, Tensor] = {"data": batcher.generator.get_state(), "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"torch_cuda_{i}"] = s
    save_file(rng, str(tmp / "rng.safetensors"))
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = dict(state, optimizer=opt_meta,
                numpy_rng=[np_state[0], np_state[1].tolist(), *np_state[2:]],
                python_rng=[py_state[0], list(py_state[1]), py_state[2]])
    atomic_write_text(tmp / "state.json", json.dumps(meta))
    _swap_in(tmp, directory)


def checkpoint_dir(out: Path) -> Path | None:
    """The run's complete checkpoint: ``checkpoint/``, or ``checkpoint.old/`` when a kill hit between the
    two renames of :func:`save_checkpoint`; None when there is none."""
    for name in ("checkpoint", "checkpoint.old"):
        if (out / name / "state.json").is_file():
            return out / name
    return None


def load_checkpoint(directory: Path, model: Any, optimizer: torch.optim.Optimizer, batcher: Batcher,
                    device: str) -> dict[str, Any]:
    """Restore model, optimizer, data stream and RNG states; return the saved training state.

    A damaged checkpoint is one InterpError line (remove it, or pass ``--no-resume``)."""
    try:
        return _load_checkpoint(directory, model, optimizer, batcher, device)
    except InterpError:
        raise
    except Exception as exc:  # noqa: BLE001 - json, safetensors and torch report damage in many types
        raise InterpError(f"checkpoint {directory} is damaged ({type(exc).__name__}): remove it to restart, or "
                          "pass --no-resume") from None


def _load_checkpoint(directory: Path, model: Any, optimizer: torch.optim.Optimizer, batcher: Batcher,
                     device: str) -> dict[str, Any]:
    meta = json.loads((directory / "state.json").read_text())
    model.load_state_dict(load_file(str(directory / "model.safetensors"), device=device))
    _optimizer_from_safetensors(optimizer, load_file(str(directory / "optimizer.safetensors"), device=device),
                                meta.pop("optimizer"))
    rng = load_file(str(directory / "rng.safetensors"))
    batcher.generator.set_state(rng["data"])
    torch.set_rng_state(rng["torch_cpu"])
    cuda_states = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    np_state = meta.pop("numpy_rng")
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    py_state = meta.pop("python_rng")
    random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))
    return meta


def _comparable(config: TrainConfig) -> dict[str, Any]:
    # Fields that may change between an interrupted run and its continuation.
    # max_steps / decay_frac may change too: a WSD run can branch its cooldown from any stable-phase
    # checkpoint (resume with a new --max-steps and --decay-frac covering the extra steps).
    skip = {"device", "threads", "checkpoint_every", "log_every", "max_minutes", "resume", "out", "stop_at_step",
            "max_steps", "decay_frac"}
    return {k: v for k, v in asdict(config).items() if k not in skip}


# ---------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    config: TrainConfig
    model_dir: Path
    out: Path
    steps: int
    final_loss: float
    wall_seconds: float
    n_params: int
    history: list[dict[str, float]]
    finished: bool


def save_hf_model(model: Any, directory: Path, info: dict[str, Any]) -> Path:
    """Save an ordinary HF model dir: safetensors weights, config, char ``tokenizer.json``, training info."""
    # Built beside the target and swapped in, so a kill never leaves half a model directory.
    directory = Path(directory)
    tmp = _fresh_sibling(directory)
    model.save_pretrained(str(tmp), safe_serialization=True)
    build_char_tokenizer().save_pretrained(str(tmp))
    atomic_write_text(tmp / "training_config.json", json.dumps(info, indent=2) + "\n")
    _swap_in(tmp, directory)
    return directory


def _write_status(out: Path, state: str) -> None:
    atomic_write_text(out / "status.json", json.dumps({"state": state}) + "\n")


def _write_log(out: Path, history: list[dict[str, float]]) -> None:
    """``log.csv``: one row per logged step, rewritten whole (atomically), so a resumed run never repeats a row."""
    atomic_write_text(out / "log.csv", "".join(f"{h['step']},{h['loss']:.5f},{h['lr']:.3e},{h['elapsed_s']}\n"
                                               for h in history))


def train(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train (or resume) a from-scratch model and export it to ``<out>/model``.

    Returns a :class:`TrainResult`; ``finished`` is False when ``max_minutes`` stopped the run
    early (rerun the same config to continue from the checkpoint).
    """
    config = config.resolved()
    config.validate()
    out = config.out_dir()
    if out.exists() and not out.is_dir():
        raise InterpError(f"output path {out} is a file: pass a directory to --out")
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InterpError("--device cuda requested but no CUDA GPU is visible: use --device cpu")

    config_path = out / "train_config.json"
    ckpt_dir = out / "checkpoint"
    has_state = checkpoint_dir(out) is not None or (out / "model").exists()
    if config_path.exists():
        # Fields missing from an older run's file take their defaults.
        try:
            previous = _comparable(TrainConfig.from_file(config_path))
        except InterpError:
            if has_state:
                raise
            previous = _comparable(config)  # a damaged config with nothing trained beside it: start afresh
        if previous != _comparable(config) and has_state:
            raise InterpError(f"{out} holds a run with a different training config: pass another --out")
    elif checkpoint_dir(out) is not None:
        raise InterpError(f"{out} holds a checkpoint but no train_config.json: pass another --out, or remove "
                          f"{ckpt_dir} to start afresh")
    remove_stale_temporaries(out)  # left by a killed earlier run; this one rewrites them
    atomic_write_text(config_path, json.dumps(asdict(config), indent=2, sort_keys=True))
    # "running" until the end: left behind, it says the run was killed or failed (rerun to continue).
    _write_status(out, "running")

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    model = build_model(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
    )
    batcher = Batcher(config, seed=config.seed + 1)

    state: dict[str, Any] = {"step": 0, "history": [], "elapsed": 0.0}
    found = checkpoint_dir(out)
    if config.resume and found is not None:
        state = load_checkpoint(found, model, optimizer, batcher, device)
        _log.info(f"resumed from {found} at step {state['step']}")

    model.train()
    start_time = time.time() - state["elapsed"]
    session_start = time.time()
    # Process CPU time as well as wall time: on a shared machine wall time depends on the load.
    cpu_start, cpu_before = time.process_time(), float(state.get("cpu_seconds", 0.0))
    step = state["step"]
    history: list[dict[str, float]] = state["history"]
    running: list[float] = []
    finished = True
    bar = progress(range(step, config.max_steps), desc=f"train {config.task_set}", initial=step,
                   total=config.max_steps, disable=not show_progress)
    for step in bar:
        lr = lr_at(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ids, labels, _ = batcher.next(step)
        ids, labels = ids.to(device), labels.to(device)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        running.append(float(loss.detach()))
        done = step + 1
        if done % config.log_every == 0 or done == config.max_steps:
            mean = float(np.mean(running))
            history.append({"step": done, "loss": mean, "lr": lr, "elapsed_s": round(time.time() - start_time, 2),
                            "cpu_s": round(cpu_before + time.process_time() - cpu_start, 2)})
            running = []
            _write_log(out, history)  # plain-text log, readable while training runs
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
        out_of_time = bool(config.max_minutes and (time.time() - session_start) > 60 * config.max_minutes)
        out_of_time = out_of_time or done == config.stop_at_step
        if done % config.checkpoint_every == 0 or done == config.max_steps or out_of_time:
            save_checkpoint(ckpt_dir, model, optimizer, batcher,
                            {"step": done, "history": history, "elapsed": time.time() - start_time,
                             "cpu_seconds": cpu_before + time.process_time() - cpu_start})
        if out_of_time and done < config.max_steps:
            finished = False
            step = done
            break
    else:
        step = config.max_steps
    if hasattr(bar, "close"):
        bar.close()

    wall = time.time() - start_time
    final_loss = history[-1]["loss"] if history else float("nan")
    model.eval()
    info = {
        "config": asdict(config),
        "seed": config.seed,
        "steps": step,
        "finished": finished,
        "final_loss": final_loss,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu_before + time.process_time() - cpu_start, 1),
        "n_params": n_params,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "tasks": task_names(config),
        "task_weights": task_weights(config),
        "curriculum": [{"until_step": until, "tasks": names} for until, names in curriculum_stages(config)],
        "loss": "cross-entropy on each example's answer character and its newline (inputs masked)",
        "history": history,
    }
    model_dir = save_hf_model(model, out / "model", info)
    _write_status(out, "complete" if finished else "stopped")
    atomic_write_text(out / "history.json", json.dumps(history))
    return TrainResult(config, model_dir, out, step, final_loss, wall, n_params, history, finished)


@torch.no_grad()
def in_context_curve(model: Any, config: TrainConfig, n_prompts: int = 64, seed: int = 12345) -> list[dict[str, float]]:
    """Answer loss and accuracy by example index on fresh one-task training prompts.

    The direct test of in-context learning: a model that infers the task from the context gets
    better with every example (the first example's answer cannot be inferred, the later ones can);
    a model stuck on a context-free guess has a flat curve. Rows: ``example`` (1-based), ``nll``
    (answer character only, nats), ``accuracy`` (greedy answer correct).
    """
    batcher = Batcher(replace(config, batch_size=n_prompts), seed=seed)
    ids, _, _ = batcher.next()
    device = next(model.parameters()).device
    logp = model(input_ids=ids.to(device)).logits.float().log_softmax(-1).cpu()
    length, n = batcher.example_length, config.n_examples
    predict_at = torch.arange(n) * length + (length - 3)  # the separator, whose next token is the answer
    targets = ids[:, predict_at + 1]
    nll = -logp[:, predict_at].gather(-1, targets[..., None])[..., 0]
    correct = (logp[:, predict_at].argmax(-1) == targets).float()
    return [{"example": i + 1, "nll": round(float(nll[:, i].mean()), 4), "accuracy": round(float(correct[:, i].mean()), 4)}
            for i in range(n)]


def export_checkpoint(run_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Turn ``<run_dir>/checkpoint`` (e.g. of a run still training) into a HF model dir to evaluate."""
    run_dir = Path(run_dir)
    state_path = run_dir / "checkpoint" / "state.json"
    if not state_path.exists():
        raise InterpError(f"{run_dir} has no checkpoint yet: wait for the first --checkpoint-every steps")
    config = TrainConfig.from_file(run_dir / "train_config.json")
    try:
        state = json.loads(state_path.read_text())
    except ValueError:
        raise InterpError(f"{state_path} is damaged: wait for the next checkpoint") from None
    model = build_model(config)
    model.load_state_dict(load_file(str(run_dir / "checkpoint" / "model.safetensors")))
    model.eval()
    history = state.get("history", [])
    info = {"config": asdict(config), "seed": config.seed, "steps": state["step"], "finished": False,
            "final_loss": history[-1]["loss"] if history else float("nan"), "wall_seconds": round(state["elapsed"], 1),
            "cpu_seconds": round(state.get("cpu_seconds", 0.0), 1), "n_params": sum(p.numel() for p in model.parameters()),
            "history": history}
    return save_hf_model(model, Path(dest) if dest else run_dir / f"model-step{state['step']}", info)
