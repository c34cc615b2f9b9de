"""The app's option groups: one meaning per flag, only the flags a command reads, user task sets from a file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from interp_app.cli import build_parser, main
from interp_app.commands.train import config_from_args
from interp_app.options import parse_value
from interp_app.runs import RunDir

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "olive", "peach", "pear",
         "plum", "kiwi", "lime", "date", "fig", "guava", "papaya", "quince", "berry", "apricot"]


def _flags(*path: str) -> set[str]:
    parser = build_parser()
    sub = parser
    for name in path:
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return {opt for a in sub._actions for opt in a.option_strings}


def test_each_command_exposes_only_the_options_it_reads() -> None:
    tv = _flags("run", "task-vectors")
    assert "--mixture" not in tv and "--batch-size" not in tv and "--examples-per-task" not in tv
    assert {"--n-examples", "--cache-dir", "--no-cache", "--tasks-file", "--separator"} <= tv
    sp = _flags("run", "superposition")
    assert {"--mixture", "--examples-per-task", "--batch-size", "--tasks-file"} <= sp
    assert "--cache-dir" not in sp  # scoring never touches the activation cache
    for command in (("run", "logit-lens"), ("run", "heads")):
        flags = _flags(*command)
        assert {"--cache-dir", "--no-cache", "--tasks-file"} <= flags and "--batch-size" not in flags, command
    for command in (("cache", "build"), ("cache", "ls"), ("cache", "verify"), ("cache", "rm"), ("report",)):
        assert "--cache-dir" in _flags(*command), command
    assert "--out" not in _flags("cache", "build") and "--overwrite" not in _flags("cache", "build")
    assert "--tasks-file" in _flags("report") and "--tasks-file" in _flags("cache", "build")
    assert "--tasks-file" in _flags("train")
    for command in (("run", "scale"), ("run", "mixture-curve")):
        flags = _flags(*command)
        assert "--n-examples" in flags and "--examples-per-task" not in flags, command


def test_report_set_values_parse_as_flags_do() -> None:
    assert parse_value(bool, "no") is False and parse_value(bool, "true") is True
    assert parse_value(int | None, "3") == 3 and parse_value(list[float], "0,0.5, 1") == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        parse_value(int, "many")


def test_train_learns_the_typed_flags_from_argparse(monkeypatch) -> None:
    import sys

    monkeypatch.setattr(sys, "argv", ["interp"])  # not read: the namespace says what was typed
    args = build_parser().parse_args(["train", "--preset", "cpu-bias-add", "--d-model", "128", "--seed", "3"])
    config = config_from_args(args)
    assert config.d_model == 128  # typed, equal to TrainConfig's default, still beats the preset's 64
    assert config.n_layers == 3 and config.seed == 3 and config.from_preset == "cpu-bias-add"
    plain = config_from_args(build_parser().parse_args(["train", "--preset", "cpu-bias-add"]))
    assert plain.d_model == 64


def test_run_files_have_normal_permissions_and_parquet_beside_csv(tmp_path) -> None:
    run = RunDir(tmp_path / "run", {"analysis": "t"})
    frame = pd.DataFrame({"task": ["a", "b"], "prob": [0.25, 0.5], "mixed": ["x", 1.5]})
    csv = run.write_csv("table.csv", frame)
    parquet = csv.with_suffix(".parquet")
    back = pd.read_parquet(parquet)
    assert back["prob"].tolist() == [0.25, 0.5] and back["task"].tolist() == ["a", "b"]
    assert pd.read_csv(csv)["prob"].tolist() == [0.25, 0.5]
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (csv, parquet, run.file("config.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.fixture
def words_file(tmp_path):  # noqa: ANN201
    path = tmp_path / "words.json"
    path.write_text(json.dumps({"name": "test-words", "separator": "->", "inputs": WORDS,
                                "tasks": [{"name": "upper", "transform": "upper"},
                                          {"name": "reverse", "transform": "reverse"}]}))
    return path


def test_run_superposition_with_a_tasks_file(words_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["run", "superposition", "--model", "tiny-llama", "--tasks-file", str(words_file),
                 "--task-set", "test-words", "--n-prompts", "2", "--examples-per-task", "2", "--no-topk",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["task"]) == ["reverse", "upper"]
    assert (out / "summary.parquet").is_file()


def test_report_with_a_tasks_file(words_file, tmp_path) -> None:
    out = tmp_path / "report"
    code = main(["report", "--model", "tiny-llama", "--tasks-file", str(words_file), "--task-sets", "test-words",
                 "--n-prompts", "2", "--sections", "setup,superposition", "--set", "superposition.topk=false",
                 "--out", str(out)])
    assert code == 0
    scores = pd.read_csv(out / "superposition-test-words-scores.csv")
    assert set(scores["task"]) == {"upper", "reverse"}


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "tasks"


@pytest.mark.skipif(not (EXAMPLES / "animals.toml").is_file(), reason="examples/tasks/animals.toml is not in this checkout")
def test_example_tasks_file_runs_through_run_superposition(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["run", "superposition", "--model", "tiny-llama", "--tasks-file", str(EXAMPLES / "animals.toml"),
                 "--task-set", "animals", "--n-prompts", "2", "--no-topk", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(pd.read_csv(out / "summary.csv")["task"]) == ["plural", "sound", "upper"]


@pytest.mark.skipif(not (EXAMPLES / "colors.json").is_file(), reason="examples/tasks/colors.json is not in this checkout")
def test_example_tasks_file_runs_through_report(tmp_path) -> None:
    out = tmp_path / "report"
    code = main(["report", "--model", "tiny-llama", "--tasks-file", str(EXAMPLES / "colors.json"),
                 "--task-sets", "colors", "--n-prompts", "2", "--sections", "superposition,logit_lens",
                 "--set", "superposition.topk=false", "--set", "logit_lens.n_prompts=1", "--out", str(out)])
    assert code == 0
    assert set(pd.read_csv(out / "superposition-colors-scores.csv")["task"]) == {"french", "reverse", "initial"}
    assert (out / "logit_lens-colors.csv").is_file()
