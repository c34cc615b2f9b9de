"""The bad-input corpus: every command and the public API, given input an adversarial user would try.

Each case must end in exactly one ``error: …`` line on stderr, exit status 2, no traceback, and no
partial (temporary) files left behind — or, for the Python API, one :class:`InterpError` whose
message is one line. The table is data: add a row for every new kind of bad input you think of.
``scripts/bad_input_census.py`` runs the same table and counts clear / traceback / silent / hang.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from interp.errors import InterpError

TMP = "{tmp}"


@dataclass
class Case:
    """One kind of bad input: CLI ``argv`` (``{tmp}`` is the case's scratch dir) or an ``api`` call."""

    id: str
    command: str
    argv: list[str] = field(default_factory=list)
    api: Callable[[Path], Any] | None = None
    setup: Callable[[Path], None] | None = None


# ------------------------------------------------------------------------------ fixtures made on disk


def _tiny_dir() -> Path:
    from interp.models import resolve_model_dir

    return resolve_model_dir("tiny-llama")


def _model_copy(tmp: Path, name: str) -> Path:
    dest = tmp / name
    shutil.copytree(_tiny_dir(), dest)
    (dest / "interp_prepared.json").unlink(missing_ok=True)
    return dest


def bad_config(tmp: Path) -> None:
    (_model_copy(tmp, "badconfig") / "config.json").write_text("{not json")


def empty_config(tmp: Path) -> None:
    (_model_copy(tmp, "emptyconfig") / "config.json").write_text("{}")


def truncated_weights(tmp: Path) -> None:
    w = _model_copy(tmp, "truncated") / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def random_weights(tmp: Path) -> None:
    (_model_copy(tmp, "random") / "model.safetensors").write_bytes(os.urandom(4096))


def wrong_hidden_size(tmp: Path) -> None:
    cfg = _model_copy(tmp, "hidden") / "config.json"
    values = json.loads(cfg.read_text())
    values["hidden_size"] = 32
    cfg.write_text(json.dumps(values))


def no_tokenizer(tmp: Path) -> None:
    d = _model_copy(tmp, "notok")
    for f in d.iterdir():
        if "token" in f.name:
            f.unlink()


def pickle_only(tmp: Path) -> None:
    d = _model_copy(tmp, "pickle")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("keep me\n")


def bad_toml(tmp: Path) -> None:
    (tmp / "bad.toml").write_text("this is = = not toml [")


def bad_json(tmp: Path) -> None:
    (tmp / "bad.json").write_text("{")


def raising_py(tmp: Path) -> None:
    (tmp / "raising.py").write_text("raise RuntimeError('my task file is broken')\n")


def syntax_error_py(tmp: Path) -> None:
    (tmp / "syntax.py").write_text("def (:\n")


def unsupported_architecture(tmp: Path) -> None:
    cfg = _model_copy(tmp, "bert") / "config.json"
    values = json.loads(cfg.read_text())
    values.update({"model_type": "bert", "architectures": ["BertModel"]})
    cfg.write_text(json.dumps(values))


def damaged_prompts_file(tmp: Path) -> None:
    (tmp / "prompts.jsonl").write_text('{"prompt_id": 0, "text": "x"\n')


def _sweep(tmp: Path, name: str, text: str) -> None:
    (tmp / name).write_text(text)


SWEEP_OK = 'models = ["tiny-llama"]\ntask_sets = ["ab"]\nseeds = [0]\n[prompts]\nn_prompts = 1\n' \
           'examples_per_task = 2\n[analyses.superposition]\nnum_beams = 2\nmax_new_tokens = 2\n'


def sweep_bad_toml(tmp: Path) -> None:
    _sweep(tmp, "bad.toml", "models = [")


def sweep_unknown_key(tmp: Path) -> None:
    _sweep(tmp, "s.toml", SWEEP_OK + "colour = 3\n")


def sweep_zero_prompts(tmp: Path) -> None:
    _sweep(tmp, "s.toml", SWEEP_OK.replace("n_prompts = 1", "n_prompts = 0"))


def sweep_zero_beams(tmp: Path) -> None:
    _sweep(tmp, "s.toml", SWEEP_OK.replace("num_beams = 2", "num_beams = 0"))


def sweep_unknown_analysis(tmp: Path) -> None:
    _sweep(tmp, "s.toml", SWEEP_OK + "[analyses.nosuch]\nx = 1\n")


def sweep_ok_and_a_file(tmp: Path) -> None:
    _sweep(tmp, "s.toml", SWEEP_OK)
    a_file(tmp)


def empty_train_config(tmp: Path) -> None:
    (tmp / "train" / "model").mkdir(parents=True)  # something trained is there: it must not be overwritten
    (tmp / "train" / "train_config.json").write_text("")


def truncated_checkpoint(tmp: Path) -> None:
    ckpt = tmp / "train" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text('{"step": 1, "hist')
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 10)


def other_run(tmp: Path) -> None:
    out = tmp / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"analysis": "superposition", "config": {"seed": 99}}))


# ------------------------------------------------------------------------------ the CLI table

SP = ["run", "superposition", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2",
      "--examples-per-task", "3", "--num-beams", "2", "--max-new-tokens", "2", "--out", f"{TMP}/out"]
LL = ["run", "logit-lens", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2",
      "--examples-per-task", "3", "--out", f"{TMP}/out", "--no-controls"]
HD = ["run", "heads", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2", "--examples-per-task", "3",
      "--out", f"{TMP}/out", "--ablation", "none", "--no-random-control"]
TV = ["run", "task-vectors", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2", "--n-examples", "3",
      "--n-queries", "2", "--n-lambdas", "2", "--n-icl-lambdas", "2", "--modes", "replace", "--out", f"{TMP}/out",
      "--no-controls", "--skews", "0.75"]
MC = ["run", "mixture-curve", "--model", "tiny-llama", "--task-set", "bias-add", "--n-prompts", "2", "--n-examples", "4",
      "--shares", "0,0.5,1", "--out", f"{TMP}/out"]
SC = ["run", "scale", "--models", "tiny-llama", "--task-set", "ab", "--n-prompts", "2", "--n-examples", "4",
      "--num-beams", "2", "--max-new-tokens", "2", "--out", f"{TMP}/out"]
TR = ["train", "--task-set", "bias-add", "--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--max-steps", "2",
      "--batch-size", "2", "--n-examples", "4", "--warmup-steps", "1", "--eval-prompts", "0", "--out", f"{TMP}/train"]
CB = ["cache", "build", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2", "--examples-per-task", "3",
      "--cache-dir", f"{TMP}/cache"]
SS = ["run", "scale-study", "--models", "tiny-llama", "--task-sets", "ab", "--n-prompts", "2", "--out", f"{TMP}/out"]
RP = ["report", "--model", "tiny-llama", "--task-sets", "ab", "--n-prompts", "2", "--sections", "superposition",
      "--out", f"{TMP}/rep", "--cache-dir", f"{TMP}/cache"]
SPA = ["run", "superposition", "--api-base", "http://127.0.0.1:9/v1", "--api-model", "m", "--task-set", "ab",
       "--n-prompts", "1", "--examples-per-task", "2", "--no-baselines", "--out", f"{TMP}/out"]
AE = ["run", "api-error", "--model", "tiny-llama", "--api-base", "http://127.0.0.1:9/v1", "--api-model", "m",
      "--task-sets", "ab", "--n-prompts", "1", "--examples-per-task", "2", "--out", f"{TMP}/out"]


def _cli(command: str, base: list[str], rows: list[tuple[str, list[str]] | tuple[str, list[str], Callable]]) -> list[Case]:
    out = []
    for row in rows:
        name, extra = row[0], row[1]
        out.append(Case(f"{command}:{name}", command, [*base, *extra], setup=row[2] if len(row) > 2 else None))
    return out


CLI_CASES: list[Case] = [
    *_cli("run superposition", SP, [
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("n-prompts negative", ["--n-prompts", "-3"]),
        ("n-prompts huge", ["--n-prompts", "1000000000000"]),
        ("n-prompts not a number", ["--n-prompts", "many"]),
        ("mixture nan", ["--mixture", "copy_op1=nan,add=0.5"]),
        ("mixture inf", ["--mixture", "copy_op1=inf,add=1"]),
        ("mixture negative", ["--mixture", "copy_op1=-1,add=2"]),
        ("mixture share and count mixed", ["--mixture", "copy_op1=0.5,add=2"]),
        ("mixture fractional counts", ["--mixture", "copy_op1=1.5,add=2.5"]),
        ("mixture unknown task", ["--mixture", "nosuch=1"]),
        ("mixture all zero", ["--mixture", "copy_op1=0,add=0"]),
        ("mixture no equals", ["--mixture", "copy_op1"]),
        ("examples-per-task negative", ["--examples-per-task", "-1"]),
        ("examples-per-task 0", ["--examples-per-task", "0"]),
        ("examples-per-task too many", ["--examples-per-task", "5000"]),
        ("batch-size 0", ["--batch-size", "0"]),
        ("batch-size negative", ["--batch-size", "-2"]),
        ("unknown device", ["--device", "tpu"]),
        ("empty device", ["--device", ""]),
        ("cuda without a GPU", ["--device", "cuda:7"]),
        ("unknown dtype", ["--dtype", "int8"]),
        ("num-beams 0", ["--num-beams", "0"]),
        ("num-beams negative", ["--num-beams", "-1"]),
        ("max-new-tokens 0", ["--max-new-tokens", "0"]),
        ("max-new-tokens negative", ["--max-new-tokens", "-2"]),
        ("separator newline", ["--separator", "\n"]),
        ("separator digit", ["--separator", "1"]),
        ("separator empty", ["--separator", ""]),
        ("separator outside the vocabulary", ["--separator", "\u2192"]),
        ("end-of-answer outside the vocabulary", ["--end-of-answer", "\u00e9"]),
        ("unknown task set", ["--task-set", "nope"]),
        ("unknown model", ["--model", "nope"]),
        ("model dir with bad config.json", ["--model", f"{TMP}/badconfig"], bad_config),
        ("model dir with empty config.json", ["--model", f"{TMP}/emptyconfig"], empty_config),
        ("model dir with truncated weights", ["--model", f"{TMP}/truncated"], truncated_weights),
        ("model dir with random weights", ["--model", f"{TMP}/random"], random_weights),
        ("model dir with wrong hidden size", ["--model", f"{TMP}/hidden"], wrong_hidden_size),
        ("model dir without tokenizer", ["--model", f"{TMP}/notok"], no_tokenizer),
        ("model dir with pickle weights only", ["--model", f"{TMP}/pickle"], pickle_only),
        ("model spec is a file", ["--model", f"{TMP}/afile"], a_file),
        ("out is a file", ["--out", f"{TMP}/afile"], a_file),
        ("out under a file", ["--out", f"{TMP}/afile/sub"], a_file),
        ("out holds a different run", ["--seed", "3"], other_run),
        ("tasks-file missing", ["--tasks-file", f"{TMP}/missing.toml"]),
        ("tasks-file bad toml", ["--tasks-file", f"{TMP}/bad.toml"], bad_toml),
        ("tasks-file bad json", ["--tasks-file", f"{TMP}/bad.json"], bad_json),
        ("tasks-file wrong suffix", ["--tasks-file", f"{TMP}/afile"], a_file),
        ("tasks-file .py that raises", ["--tasks-file", f"{TMP}/raising.py"], raising_py),
        ("tasks-file .py with a syntax error", ["--tasks-file", f"{TMP}/syntax.py"], syntax_error_py),
        ("model dir of an unsupported architecture", ["--model", f"{TMP}/bert"], unsupported_architecture),
        ("separator only spaces around a digit", ["--separator", " 7 "]),
        ("unknown flag", ["--frobnicate"]),
        ("bool flag with a value", ["--topk=maybe"]),
    ]),
    *_cli("run logit-lens", LL, [
        ("top-k 0", ["--top-k", "0"]),
        ("top-k negative", ["--top-k", "-5"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("examples-per-task 0", ["--examples-per-task", "0"]),
        ("unknown device", ["--device", "gpu0"]),
        ("cache-dir is a file", ["--cache-dir", f"{TMP}/afile"], a_file),
        ("mixture nan", ["--mixture", "copy_op1=nan"]),
    ]),
    *_cli("run heads", HD, [
        ("top-n 0", ["--top-n", "0"]),
        ("rank-by unknown", ["--rank-by", "size"]),
        ("ablation unknown", ["--ablation", "melt"]),
        ("attention-prompt out of range", ["--attention-prompt", "99"]),
        ("attention-prompt negative", ["--attention-prompt", "-1"]),
        ("attention-window negative", ["--attention-window", "-4"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
    ]),
    *_cli("run task-vectors", TV, [
        ("n-lambdas 0", ["--n-lambdas", "0"]),
        ("n-lambdas 1", ["--n-lambdas", "1"]),
        ("n-icl-lambdas 0", ["--n-icl-lambdas", "0"]),
        ("n-queries 0", ["--n-queries", "0"]),
        ("skews above 1", ["--skews", "1.5"]),
        ("skews 0", ["--skews", "0"]),
        ("skews nan", ["--skews", "nan"]),
        ("modes unknown", ["--modes", "swap"]),
        ("layers out of range", ["--layers", "99"]),
        ("layers reversed range", ["--layers", "1-0"]),
        ("n-examples 0", ["--n-examples", "0"]),
        ("max-rows 0", ["--max-rows", "0"]),
        ("interp-layer out of range", ["--interp-layer", "99"]),
        ("pair names one task twice", ["--pair", "add,add"]),
        ("tasks only one", ["--tasks", "add"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
    ]),
    *_cli("run mixture-curve", MC, [
        ("no model", ["--model", ""]),
        ("shares above 1", ["--shares", "0,1.5"]),
        ("shares nan", ["--shares", "nan"]),
        ("n-examples negative", ["--n-examples", "-1"]),
        ("sampling unknown", ["--sampling", "poisson"]),
        ("batch-size 0", ["--batch-size", "0"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("labels count mismatch", ["--labels", "a,b"]),
        ("task-a unknown", ["--task-a", "nosuch"]),
    ]),
    *_cli("run scale", SC, [
        ("min-tasks 0", ["--min-tasks", "0"]),
        ("max below min", ["--min-tasks", "3", "--max-tasks", "2"]),
        ("num-beams 0", ["--num-beams", "0"]),
        ("n-examples 0", ["--n-examples", "0"]),
        ("batch-size 0", ["--batch-size", "0"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
    ]),
    *_cli("train", TR, [
        ("checkpoint-every 0", ["--checkpoint-every", "0"]),
        ("log-every 0", ["--log-every", "0"]),
        ("lr negative", ["--lr", "-1"]),
        ("lr nan", ["--lr", "nan"]),
        ("lr 0", ["--lr", "0"]),
        ("beta1 above 1", ["--beta1", "1.5"]),
        ("beta2 negative", ["--beta2", "-0.1"]),
        ("eps negative", ["--eps", "-1"]),
        ("decay-frac above 1", ["--decay-frac", "1.5"]),
        ("warmup negative", ["--warmup-steps", "-5"]),
        ("min-lr-frac above 1", ["--min-lr-frac", "2"]),
        ("weight-decay negative", ["--weight-decay", "-1"]),
        ("grad-clip negative", ["--grad-clip", "-1"]),
        ("init-std 0", ["--init-std", "0"]),
        ("rope-theta 0", ["--rope-theta", "0"]),
        ("task-skew 1", ["--task-skew", "1"]),
        ("max-minutes negative", ["--max-minutes", "-1"]),
        ("threads negative", ["--threads", "-1"]),
        ("d-mlp negative", ["--d-mlp", "-1"]),
        ("stop-at-step negative", ["--stop-at-step", "-1"]),
        ("eval-prompts negative", ["--eval-prompts", "-1"]),
        ("unknown preset", ["--preset", "gpu-huge"]),
        ("untrainable task set", ["--task-set", "ab"]),
        ("unknown schedule", ["--schedule", "step"]),
        ("unknown task", ["--tasks", "plus42"]),
        ("bad curriculum", ["--curriculum", "plus1@soon"]),
        ("d-model not divisible by n-heads", ["--d-model", "15"]),
        ("seed beyond torch's range", ["--seed", "99999999999999999999999"]),
        ("model too large to fit", ["--d-model", "1000000"]),
        ("batch too large to fit", ["--batch-size", "1000000000"]),
        ("sequence longer than the positions", ["--n-examples", "100000000"]),
        ("unknown device", ["--device", "tpu"]),
        ("out is a file", ["--out", f"{TMP}/afile"], a_file),
        ("empty train_config.json", [], empty_train_config),
        ("truncated checkpoint", [], truncated_checkpoint),
        ("ship is a file", ["--ship", f"{TMP}/afile"], a_file),
    ]),
    *_cli("cache build", CB, [
        ("hooks empty", ["--hooks", ""]),
        ("hooks unknown", ["--hooks", "nosuch_hook"]),
        ("layers out of range", ["--layers", "99"]),
        ("layers negative out of range", ["--layers=-99"]),
        ("positions unknown", ["--positions", "middle"]),
        ("act-dtype unknown", ["--act-dtype", "int8"]),
        ("batch-size 0", ["--batch-size", "0"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("n-prompts huge", ["--n-prompts", "100000000000"]),
        ("cache-dir is a file", ["--cache-dir", f"{TMP}/afile"], a_file),
    ]),
    Case("cache ls:cache-dir is a file", "cache ls", ["cache", "ls", "--cache-dir", f"{TMP}/afile"], setup=a_file),
    Case("cache verify:bad key", "cache verify", ["cache", "verify", "zz", "--cache-dir", f"{TMP}/cache"]),
    Case("cache verify:unknown key", "cache verify", ["cache", "verify", "abcdef", "--cache-dir", f"{TMP}/cache"]),
    Case("cache rm:nothing named", "cache rm", ["cache", "rm", "--cache-dir", f"{TMP}/cache"]),
    Case("cache rm:bad age", "cache rm", ["cache", "rm", "--older-than", "soon", "--cache-dir", f"{TMP}/cache"]),
    Case("cache rm:negative age", "cache rm", ["cache", "rm", "--older-than=-1d", "--cache-dir", f"{TMP}/cache"]),
    Case("cache rm:bad key", "cache rm", ["cache", "rm", "xyz", "--cache-dir", f"{TMP}/cache"]),
    Case("models fetch:unknown model", "models fetch", ["models", "fetch", "nosuch-model"]),
    Case("models fetch:no model named", "models fetch", ["models", "fetch"]),
    Case("models ls:unknown flag", "models ls", ["models", "ls", "--all-of-them"]),
    *_cli("run scale-study", SS, [
        ("unknown flag", ["--frobnicate"]),
        ("n-prompts not a number", ["--n-prompts", "few"]),
        ("unknown device", ["--device", "tpu"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("num-beams 0", ["--num-beams", "0"]),
        ("unknown task set", ["--task-sets", "nosuch"]),
    ]),
    Case("sweep run:spec missing", "sweep run", ["sweep", "run", f"{TMP}/missing.toml", "--out", f"{TMP}/sw"]),
    Case("sweep run:spec not toml", "sweep run", ["sweep", "run", f"{TMP}/bad.toml", "--out", f"{TMP}/sw"],
         setup=sweep_bad_toml),
    Case("sweep run:unknown key", "sweep run", ["sweep", "run", f"{TMP}/s.toml", "--out", f"{TMP}/sw"],
         setup=sweep_unknown_key),
    Case("sweep run:n_prompts 0", "sweep run", ["sweep", "run", f"{TMP}/s.toml", "--out", f"{TMP}/sw"],
         setup=sweep_zero_prompts),
    Case("sweep run:num_beams 0", "sweep run", ["sweep", "run", f"{TMP}/s.toml", "--out", f"{TMP}/sw"],
         setup=sweep_zero_beams),
    Case("sweep run:unknown analysis", "sweep run", ["sweep", "run", f"{TMP}/s.toml", "--out", f"{TMP}/sw"],
         setup=sweep_unknown_analysis),
    Case("sweep run:out is a file", "sweep run", ["sweep", "run", f"{TMP}/s.toml", "--out", f"{TMP}/afile"],
         setup=sweep_ok_and_a_file),
    Case("sweep run:unknown executor", "sweep run", ["sweep", "run", f"{TMP}/s.toml", "--out", f"{TMP}/sw",
                                                     "--executor", "threads"]),
    Case("sweep status:no such directory", "sweep status", ["sweep", "status", f"{TMP}/nowhere"]),
    Case("sweep status:a file", "sweep status", ["sweep", "status", f"{TMP}/afile"], setup=a_file),
    *_cli("report", RP, [
        ("unknown section", ["--sections", "nosuch"]),
        ("unknown section in --set", ["--set", "nosuch.x=1"]),
        ("unknown option in --set", ["--set", "superposition.bad=1"]),
        ("bad value in --set", ["--set", "superposition.num_beams=0"]),
        ("unparsable value in --set", ["--set", "superposition.num_beams=lots"]),
        ("--set without =", ["--set", "superposition.num_beams"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("unknown task set", ["--task-sets", "nosuch"]),
        ("no task sets", ["--task-sets", ","]),
        ("out is a file", ["--out", f"{TMP}/afile"], a_file),
        ("unknown device", ["--device", "tpu"]),
    ]),
    *_cli("run decoding", ["run", "decoding", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2",
                           "--examples-per-task", "3", "--out", f"{TMP}/out"], [
        ("n-samples 0", ["--n-samples", "0"]),
        ("n-samples negative", ["--n-samples", "-5"]),
        ("n-samples huge", ["--n-samples", "100000000000"]),
        ("temperature negative", ["--temperature", "-0.5"]),
        ("temperature nan", ["--temperature", "nan"]),
        ("temperature not a number", ["--temperature", "hot"]),
        ("max-new-tokens negative", ["--max-new-tokens", "-1"]),
        ("margin negative", ["--margin", "-2"]),
        ("delimiter empty", ["--delimiter", ""]),
        ("delimiter outside the vocabulary", ["--delimiter", "\u2192"]),
        ("sample-seed negative", ["--sample-seed", "-3"]),
        ("unknown task set", ["--task-set", "nosuch"]),
        ("n-prompts 0", ["--n-prompts", "0"]),
        ("out is a file", ["--out", f"{TMP}/afile"], a_file),
    ]),
    # API models (interp.api_scoring): nothing listens on port 9 of the loopback.
    *_cli("run superposition", SPA, [
        ("api base unreachable", []),
        ("api base not a URL", ["--api-base", "localhost:8080"]),
        ("api base without model", ["--api-model", ""]),
        ("api method unknown", ["--api-method", "greedy"]),
        ("api key variable missing", ["--api-key-env", "INTERP_TEST_NO_SUCH_KEY"]),
        ("api key given instead of its variable", ["--api-key-env", "sk-abc 123"]),
        ("api beam width 0", ["--api-beam-width", "0"]),
        ("api threshold 1", ["--api-step-threshold", "1"]),
        ("api timeout 0", ["--api-timeout", "0"]),
    ]),
    *_cli("run api-error", AE, [
        ("no api base", ["--api-base", ""]),
        ("api base unreachable", []),
        ("beam widths 0", ["--beam-widths", "0"]),
        ("no task sets", ["--task-sets", ","]),
        ("unknown task set", ["--task-sets", "nosuch"]),
    ]),
]


# ------------------------------------------------------------------------------ the API table


def _model():  # noqa: ANN202
    from tests.conftest import load_cached

    return load_cached("tiny-llama")


def _ab():  # noqa: ANN202
    from interp.tasks import get_task_set

    return get_task_set("ab")


def _prompts(n: int = 1):  # noqa: ANN202
    from interp.prompts import build_prompts

    return build_prompts(_ab(), n_prompts=n, examples_per_task=2)


def _bp(**kw: Any) -> Callable[[Path], Any]:
    def call(_tmp: Path) -> Any:
        from interp.prompts import build_prompts

        return build_prompts(kw.pop("task_set", _ab()), **kw)

    return call


def _score(prompts: Callable[[], Any], **kw: Any) -> Callable[[Path], Any]:
    def call(_tmp: Path) -> Any:
        from interp.scoring import score_prompts

        return score_prompts(_model(), prompts(), show_progress=False, **kw)

    return call


def _with_answers(answers: dict[str, str]) -> Callable[[], Any]:
    def make() -> Any:
        p = _prompts(1)
        p[0].answers = answers
        return p

    return make


def _acts(**kw: Any) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from interp.activations import get_activations

        args = {"hooks": ["resid_post"], "cache_dir": tmp / "cache", "show_progress": False, **kw}
        return get_activations(_model(), args.pop("prompts", None) or _prompts(2), **args)

    return call


def _load(*args: Any, **kw: Any) -> Callable[[Path], Any]:
    def call(_tmp: Path) -> Any:
        from interp.models import load_model

        return load_model(*args, **kw)

    return call


def _load_prompts(tmp: Path) -> Any:
    from interp.prompts import load_prompts

    return load_prompts(tmp / "prompts.jsonl")


def _export(tmp: Path) -> Any:
    from interp.training import export_checkpoint

    return export_checkpoint(tmp)


def _opts(module: str, cls: str, **kw: Any) -> Callable[[Path], Any]:
    def call(_tmp: Path) -> Any:
        import importlib

        return getattr(importlib.import_module(module), cls)(**kw)

    return call


def _train(**kw: Any) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from interp.training import TrainConfig, train

        base = dict(task_set="bias-add", n_layers=1, d_model=16, n_heads=2, max_steps=2, batch_size=2, n_examples=4,
                    warmup_steps=1, out=str(tmp / "train"))
        return train(TrainConfig(**{**base, **kw}), show_progress=False)

    return call


def _patched(**kw: Any) -> Callable[[Path], Any]:
    def call(_tmp: Path) -> Any:
        import torch

        from interp.patching import Patch, patched_logprobs

        m = _model()
        patch = Patch(kw.get("layer", 0), torch.zeros(kw.get("width", m.d_model)), kw.get("mode", "replace"))
        return patched_logprobs(m, [1, 2, 3], [[1]], [patch]) if kw.get("call", True) else patch

    return call


def _score_api(prompts: Any, **kw: Any) -> Any:
    from interp.api_scoring import ApiSettings, score_prompts_api

    settings = ApiSettings(**{"api_base": "http://127.0.0.1:9/v1", "api_model": "m", **kw})
    return score_prompts_api(prompts, settings, show_progress=False)


API = "python api"
API_CASES: list[Case] = [
    Case("build_prompts:n_prompts 0", API, api=_bp(n_prompts=0)),
    Case("build_prompts:n_prompts negative", API, api=_bp(n_prompts=-1)),
    Case("build_prompts:n_prompts a string", API, api=_bp(n_prompts="3")),
    Case("build_prompts:n_prompts a float", API, api=_bp(n_prompts=2.5)),
    Case("build_prompts:n_prompts huge", API, api=_bp(n_prompts=10**12)),
    Case("build_prompts:mixture nan", API, api=_bp(mixture={"add": math.nan})),
    Case("build_prompts:mixture share and count", API, api=_bp(mixture={"add": 0.5, "copy_op1": 2})),
    Case("build_prompts:mixture not a dict", API, api=_bp(mixture="add=1")),
    Case("build_prompts:examples_per_task 0", API, api=_bp(examples_per_task=0)),
    Case("build_prompts:examples_per_task negative", API, api=_bp(examples_per_task=-2)),
    Case("build_prompts:n_examples negative", API, api=_bp(n_examples=-2)),
    Case("build_prompts:separator an int", API, api=_bp(separator=5)),
    Case("build_prompts:separator with a newline", API, api=_bp(separator="=\n")),
    Case("build_prompts:separator digit", API, api=_bp(separator="0")),
    Case("build_prompts:task set not a TaskSet", API, api=_bp(task_set=42)),
    Case("build_prompts:seed a list", API, api=_bp(seed=[1])),
    Case("score_prompts:empty list", API, api=_score(lambda: [])),
    Case("score_prompts:a string", API, api=_score(lambda: "10@10=")),
    Case("score_prompts:batch_size 0", API, api=_score(lambda: _prompts(1), batch_size=0)),
    Case("score_prompts:empty answer", API, api=_score(_with_answers({"add": "", "copy_op1": "10"}))),
    Case("score_prompts:no answers", API, api=_score(_with_answers({}))),
    Case("score_prompts:answer outside the vocabulary", API, api=_score(_with_answers({"add": "\u00fc", "copy_op1": "1"}))),
    Case("score_prompts:end_of_answer an int", API, api=_score(lambda: _prompts(1), end_of_answer=3)),
    Case("get_activations:no hooks", API, api=_acts(hooks=[])),
    Case("get_activations:unknown position role", API, api=_acts(positions="middle")),
    Case("get_activations:batch_size 0", API, api=_acts(batch_size=0)),
    Case("get_activations:layer out of range", API, api=_acts(layers=[99])),
    Case("get_activations:hooks a string", API, api=_acts(hooks="resid_post")),
    Case("load_model:spec an int", API, api=_load(123)),
    Case("load_prompts:damaged file", API, api=lambda tmp: (damaged_prompts_file(tmp), _load_prompts(tmp))),
    Case("export_checkpoint:no checkpoint", API, api=lambda tmp: _export(tmp)),
    Case("load_model:unknown device", API, api=_load("tiny-llama", device="tpu")),
    Case("load_model:unknown dtype", API, api=_load("tiny-llama", dtype="int8")),
    Case("patching:unknown mode", API, api=_patched(mode="swap", call=False)),
    Case("patching:layer out of range", API, api=_patched(layer=99)),
    Case("patching:vector of the wrong size", API, api=_patched(width=3)),
    Case("SuperpositionOptions:num_beams 0", API, api=_opts("analyses.superposition", "SuperpositionOptions", num_beams=0)),
    Case("SuperpositionOptions:batch_size a string", API,
         api=_opts("analyses.superposition", "SuperpositionOptions", batch_size="8")),
    Case("LogitLensOptions:top_k 0", API, api=_opts("analyses.logit_lens", "LogitLensOptions", top_k=0)),
    Case("HeadsOptions:top_n 0", API, api=_opts("analyses.head_attribution", "HeadsOptions", top_n=0)),
    Case("TaskVectorOptions:n_lambdas 0", API, api=_opts("analyses.task_vectors", "TaskVectorOptions", n_lambdas=0)),
    Case("MixtureCurveOptions:batch_size 0", API, api=_opts("analyses.from_scratch", "MixtureCurveOptions", batch_size=0)),
    Case("ScaleOptions:min_tasks 0", API, api=_opts("analyses.scale", "ScaleOptions", min_tasks=0)),
    Case("PromptOptions:n_prompts 0", API, api=_opts("interp_app.options", "PromptOptions", n_prompts=0)),
    Case("TrainConfig:lr negative", API, api=_opts("interp.training", "TrainConfig", lr=-1.0)),
    Case("train():checkpoint_every 0", API, api=_train(checkpoint_every=0)),
    Case("train():beta1 1.5", API, api=_train(beta1=1.5)),
    Case("train():lr nan", API, api=_train(lr=math.nan)),
    Case("DecodingOptions:n_samples 0", API, api=_opts("analyses.decoding", "DecodingOptions", n_samples=0)),
    Case("DecodingOptions:temperature negative", API, api=_opts("analyses.decoding", "DecodingOptions", temperature=-1.0)),
    Case("DecodingOptions:delimiter empty", API, api=_opts("analyses.decoding", "DecodingOptions", delimiter="")),
    Case("decoding analyse():empty prompt list", API, api=lambda tmp: _decode(lambda: [])),
    Case("decoding analyse():options not DecodingOptions", API, api=lambda tmp: _decode(lambda: _prompts(1), options={})),
    Case("score_prompts_api:empty list", API, api=lambda _tmp: _score_api([])),
    Case("score_prompts_api:no api base", API, api=lambda _tmp: _score_api(_prompts(1), api_base="")),
    Case("ApiSettings:concurrency 0", API, api=_opts("interp.api_scoring", "ApiSettings", api_concurrency=0)),
]

# The constructed superposition model (interp/constructed.py) and `interp run validate-methods`.
CONSTRUCTED = "constructed-superposition"
VM = ["run", "validate-methods", "--n-prompts", "2", "--out", f"{TMP}/out"]
CLI_CASES += _cli("run validate-methods", VM, [
    ("model without a known mechanism", ["--model", "tiny-llama"]),
    ("constructed k above the alphabet", ["--model", f"{CONSTRUCTED}:k=8"]),
    ("constructed k 1", ["--model", f"{CONSTRUCTED}:k=1"]),
    ("constructed k not a number", ["--model", f"{CONSTRUCTED}:k=three"]),
    ("constructed unknown option", ["--model", f"{CONSTRUCTED}:heads=4"]),
    ("constructed option twice", ["--model", f"{CONSTRUCTED}:k=3,k=4"]),
    ("constructed alphabet with the separator", ["--model", f"{CONSTRUCTED}:alphabet=abc>e"]),
    ("constructed alphabet repeats a letter", ["--model", f"{CONSTRUCTED}:alphabet=abcca"]),
    ("constructed alphabet too short", ["--model", f"{CONSTRUCTED}:alphabet=ab"]),
    ("constructed examples below k", ["--model", f"{CONSTRUCTED}:examples=2"]),
    ("constructed examples huge", ["--model", f"{CONSTRUCTED}:examples=100000"]),
    ("constructed too wide", ["--model", f"{CONSTRUCTED}:k=12,alphabet=abcdefghijklmnopqrstuvwxyz,examples=40"]),
    ("n-prompts 1", ["--n-prompts", "1"]),
    ("p-tolerance 0", ["--p-tolerance", "0"]),
    ("lens-top-k 0", ["--lens-top-k", "0"]),
])
CLI_CASES += _cli("run superposition", ["run", "superposition", "--n-prompts", "2", "--no-topk", "--out", f"{TMP}/out"], [
    ("constructed model bad option, own task set", ["--model", f"{CONSTRUCTED}:k=0"]),
    ("constructed model bad option, explicit task set", ["--model", f"{CONSTRUCTED}:k=0", "--task-set", "ab"]),
    ("constructed model task not in its set", ["--model", CONSTRUCTED, "--mixture", "shift9=1"]),
])


def _constructed_options(**kw: Any) -> Callable[[Path], Any]:
    def call(_tmp: Path) -> Any:
        from interp.constructed import ConstructedOptions

        return ConstructedOptions(**kw)

    return call


def _validate_other_model(_tmp: Path) -> Any:
    from analyses.method_validation import MethodValidationOptions, analyse

    return analyse(_model(), MethodValidationOptions(), show_progress=False)


API_CASES += [
    Case("ConstructedOptions:n_tasks a string", API, api=_constructed_options(n_tasks="3")),
    Case("ConstructedOptions:n_tasks a bool", API, api=_constructed_options(n_tasks=True)),
    Case("ConstructedOptions:alphabet a list", API, api=_constructed_options(alphabet=["a", "b", "c"])),
    Case("ConstructedOptions:alphabet not ASCII", API, api=_constructed_options(alphabet="abc\u00e9")),
    Case("ConstructedOptions:n_examples a float", API, api=_constructed_options(n_examples=12.0)),
    Case("load_model:constructed spec with a bad option", API, api=_load(f"{CONSTRUCTED}:alphabet=a b c")),
    Case("method_validation.analyse:not the constructed model", API, api=_validate_other_model),
    Case("MethodValidationOptions:n_prompts 1", API,
         api=_opts("analyses.method_validation", "MethodValidationOptions", n_prompts=1)),
    Case("MethodValidationOptions:weight_tolerance negative", API,
         api=_opts("analyses.method_validation", "MethodValidationOptions", weight_tolerance=-0.1)),
]


def _decode(prompts: Callable[[], Any], options: Any = None) -> Any:
    from analyses.decoding import DecodingOptions, analyse

    return analyse(_model(), prompts(), DecodingOptions(n_samples=2) if options is None else options, show_progress=False)

CASES = CLI_CASES + API_CASES

_TEMP_MARKERS = (".tmp-", ".tmp", ".partial", ".old")


def leftovers(tmp: Path, before: set[Path]) -> list[str]:
    """Temporary or partial files under ``tmp`` that the failed command left behind."""
    found = []
    for path in tmp.rglob("*"):
        if path in before:
            continue
        if any(marker in path.name for marker in _TEMP_MARKERS):
            found.append(str(path.relative_to(tmp)))
    return found


def run_case(case: Case, tmp: Path) -> tuple[int | None, str, BaseException | None]:
    """Run one case in ``tmp``: (exit code or None for the API, stderr, exception raised)."""
    import contextlib
    import io

    from interp_app.cli import main

    if case.setup is not None:
        case.setup(tmp)
    if case.api is not None:
        try:
            case.api(tmp)
        except InterpError as exc:
            return None, f"error: {exc}\n", None
        except BaseException as exc:  # noqa: BLE001 - classified by the caller
            return None, "", exc
        return None, "", None
    argv = [a.replace(TMP, str(tmp)) for a in case.argv]
    err = io.StringIO()
    code: int | None
    exc: BaseException | None = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 2
        except BaseException as raised:  # noqa: BLE001
            code, exc = None, raised
    return code, err.getvalue(), exc


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_corpus_is_large_and_covers_every_command() -> None:
    from interp_app.cli import _collect_commands

    assert len(CASES) >= 80
    covered = {c.command for c in CASES}
    for cmd in _collect_commands():
        assert " ".join(cmd.path) in covered, cmd.path
    assert API in covered
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    before = set(tmp_path.rglob("*"))
    code, stderr, exc = run_case(case, tmp_path)
    assert exc is None, f"{type(exc).__name__}: {exc}"
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    if case.api is None:
        assert code == 2, stderr
    assert not leftovers(tmp_path, before)
