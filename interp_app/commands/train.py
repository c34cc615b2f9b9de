"""``interp train``: train a small Llama model from scratch, evaluate it, optionally ship it."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from analyses.from_scratch import evaluate_trained
from interp.errors import InterpError
from interp.io import atomic_write, atomic_write_text
from interp.models import load_model
from interp.training import TrainConfig, train
from interp_app.command import Command
from interp_app.options import add_dataclass_args, from_args, load_tasks_files, typed_fields

SHIP_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "training_config.json", "eval_summary.json")


def ship_model(model_dir: Path, dest: Path) -> Path:
    """Copy a trained model dir's files (weights, config, tokenizer, training info, evaluation) to ``dest``."""
    if dest.exists() and not dest.is_dir():
        raise InterpError(f"--ship {dest} is a file: pass a directory")
    dest.mkdir(parents=True, exist_ok=True)
    for name in SHIP_FILES:
        if (model_dir / name).exists():
            atomic_write(dest / name, lambda tmp, src=model_dir / name: shutil.copyfile(src, tmp))
    return dest


def write_eval_summary(model_dir: Path, n_prompts: int = 50, seed: int = 0, show_progress: bool = True) -> dict:
    """Evaluate a freshly trained model and write ``eval_summary.json`` beside it."""
    summary = evaluate_trained(load_model(str(model_dir)), model_dir, n_prompts, seed, show_progress)
    atomic_write_text(Path(model_dir) / "eval_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    # Defaults are suppressed so the namespace holds exactly the flags typed: they beat the preset.
    add_dataclass_args(parser, TrainConfig, suppress_defaults=True)
    parser.add_argument("--tasks-file", action="append", default=[], metavar="PATH",
                        help="a .py file registering task sets, or a declarative .json/.toml task-set file (repeatable)")
    parser.add_argument("--eval-prompts", type=int, default=50,
                        help="prompts per d for the mixture-curve evaluation after training (0 = skip)")
    parser.add_argument("--ship", default="",
                        help="also copy the trained model (with training_config.json and eval_summary.json) to this dir, "
                             "e.g. checkpoints/from-scratch/retrieval-L3-d64-h4")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training config: the preset's values, overridden by every flag typed (even one equal to a default)."""
    load_tasks_files(args.tasks_file)
    if args.eval_prompts < 0:
        raise InterpError(f"--eval-prompts must be at least 0 (0 skips the evaluation), got {args.eval_prompts}")
    ship = Path(args.ship) if args.ship else None
    if ship is not None and ship.exists() and not ship.is_dir():
        raise InterpError(f"--ship {ship} is a file: pass a directory")
    return from_args(TrainConfig, args).resolved(typed_fields(TrainConfig, args))


def _cli_train(args: argparse.Namespace) -> int:
    result = train(config_from_args(args))
    print(f"trained {result.steps} steps in {result.wall_seconds / 60:.1f} min, final loss {result.final_loss:.4f}, "
          f"{result.n_params:,} parameters -> {result.model_dir}")
    if not result.finished:
        print("stopped by --max-minutes: rerun the same command to continue from the checkpoint")
        return 0
    if args.eval_prompts:
        summary = write_eval_summary(result.model_dir, n_prompts=args.eval_prompts)
        curve = pd.DataFrame(summary["curve"])
        print(curve.to_string(index=False, float_format="%.3f"))
        print(f"acceptance: {summary['acceptance']}")
        icl = summary["in_context_curve"]
        print("answer loss by example index (falls if the model infers the task from context): "
              + " ".join(f"{row['nll']:.2f}" for row in icl))
    if args.ship:
        ship_model(result.model_dir, Path(args.ship))
        print(f"shipped -> {args.ship}")
    return 0


COMMANDS = [
    Command(("train",), "train a small Llama model from scratch on one-task-per-prompt ICL data (paper §4)",
            _add_train_args, _cli_train),
]
