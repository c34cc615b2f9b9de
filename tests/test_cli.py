import json
import subprocess
import sys

import pandas as pd
import pytest

from interp_app.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interp_app", *args], capture_output=True, text=True, timeout=600)


def test_help_lists_commands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    assert "run" in out.stdout
    run_help = run_cli("run", "--help")
    assert "superposition" in run_help.stdout


def test_run_superposition_writes_every_output(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["run", "superposition", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "3",
                 "--examples-per-task", "3", "--out", str(out), "--num-beams", "4", "--max-new-tokens", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "copy_op1" in printed and str(out) in printed
    for name in ("config.json", "prompts.jsonl", "scores.csv", "summary.csv", "metrics.json", "topk.csv",
                 "superposition.png", "superposition.svg"):
        assert (out / name).exists(), name
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns)[:7] == ["prompt_id", "task", "answer", "share", "prob", "logprob", "n_tokens"]
    assert len(scores) == 9
    summary = pd.read_csv(out / "summary.csv")
    # Issue 14: intervals and baselines beside every task's mean; sorted means by rank in their own table.
    assert {"task", "mean", "var", "share", "ci_low", "ci_high", "n_prompts", "share0", "zero_shot", "single_task",
            "lift"} <= set(summary.columns)
    assert "sorted_mean" not in summary.columns
    sorted_means = pd.read_csv(out / "sorted_means.csv")
    assert list(sorted_means["rank"]) == [1, 2, 3] and "task" not in sorted_means.columns
    assert "[" in printed and "share-0" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"kl_raw", "kl_renormalised", "r", "other"} <= set(metrics)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["fingerprint"] and config["config"]["seed"] == 0 and "torch" in config["versions"]
    # Same run again into the same directory is fine; a different one is refused.
    assert main(["run", "superposition", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "3",
                 "--examples-per-task", "3", "--out", str(out), "--num-beams", "4", "--max-new-tokens", "3"]) == 0
    before = (out / "scores.csv").read_bytes()
    code = main(["run", "superposition", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "4",
                 "--out", str(out), "--no-topk"])
    assert code == 2
    assert "already holds a different run" in capsys.readouterr().err
    assert (out / "scores.csv").read_bytes() == before  # nothing already written was lost


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task-set", "nope"], "unknown task set 'nope'"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--mixture", "copy_op1=0.7,add=0.7"], "sum to 1.4"),
        (["--mixture", "copy_op1=0.5,copy_op1=0.5"], "twice"),
        (["--examples-per-task", "5000"], "distinct inputs"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args: list[str], message: str) -> None:
    base = ["run", "superposition", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "1",
            "--out", str(tmp_path / "r"), "--no-topk"]
    # later flags win in argparse, so the bad value overrides the base one
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "r" / "scores.csv").exists()


def test_output_path_that_is_a_file(tmp_path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    out = run_cli("run", "superposition", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "1",
                  "--out", str(target), "--no-topk")
    assert out.returncode == 2 and "is a file" in out.stderr
    assert target.read_text() == "keep me"
