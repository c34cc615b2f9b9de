"""Sweeps (`interp sweep run/status`): spec checks, the merged table, resume after a kill, failed
cells retried, and the Ray executor giving the serial executor's table bit for bit.

Tiny random models, 1–2 prompts per cell. The Ray tests share one real local instance
(``ray.init(num_cpus=2, …)``, session-scoped); they are skipped, visibly, only when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from interp.errors import InterpError
from interp_app.cli import main
from interp_app.sweep import cells as cells_module
from interp_app.sweep.engine import SweepDir, run_sweep, sweep_status
from interp_app.sweep.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

# Every analysis once per model: 2 models × (superposition, logit lens, mixture curve, scale) = 8 cells.
GRID = """
models = ["tiny-llama", "tiny-qwen2"]
task_sets = ["ab"]
seeds = [0]
[prompts]
n_prompts = 2
examples_per_task = 3
[analyses.superposition]
num_beams = 2
max_new_tokens = 3
n_boot = 50
baselines = false
[analyses.logit_lens]
controls = false
full_answer = false
n_boot = 50
[analyses.mixture_curve]
d = [0.5]
n_examples = 4
end_of_answer = ""
n_boot = 50
[analyses.scale]
max_tasks = 2
n_examples = 4
end_of_answer = ""
num_beams = 2
max_new_tokens = 3
"""


def write_spec(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """The grid run serially once, straight through: (spec path, sweep dir, merged table)."""
    base = tmp_path_factory.mktemp("sweep-ref")
    spec_path = write_spec(base, GRID)
    outcome = run_sweep(load_spec(spec_path), base / "out")
    assert outcome.counts["complete"] == 8 and not outcome.failed
    return spec_path, base / "out", pd.read_parquet(base / "out" / "results.parquet")


# ------------------------------------------------------------------------------ the spec


def test_example_spec_parses() -> None:
    spec = load_spec(ROOT / "examples" / "sweeps" / "small.toml")
    assert {c.analysis for c in spec.cells} == {"superposition", "logit_lens", "mixture_curve", "scale"}
    assert len({c.cell_id for c in spec.cells}) == len(spec.cells)


def test_spec_json_equals_toml(tmp_path: Path) -> None:
    data = {"models": ["tiny-llama"], "task_sets": ["ab"], "seeds": [0, 1], "prompts": {"n_prompts": 2},
            "analyses": {"superposition": {"n_boot": 50}}}
    toml = 'models = ["tiny-llama"]\ntask_sets = ["ab"]\nseeds = [0, 1]\n[prompts]\nn_prompts = 2\n' \
           '[analyses.superposition]\nn_boot = 50\n'
    a = load_spec(write_spec(tmp_path, json.dumps(data), "g.json"))
    b = load_spec(write_spec(tmp_path, toml, "g.toml"))
    assert [c.cell_id for c in a.cells] == [c.cell_id for c in b.cells]
    assert len(a.cells) == 2


BASE = {"models": ["tiny-llama"], "task_sets": ["ab"], "analyses": {"superposition": {}}}


@pytest.mark.parametrize(("change", "expected"), [
    ({"colour": 1}, "unknown key: use one of models"),
    ({"models": ["no-such-model"]}, "models: unknown model 'no-such-model'"),
    ({"models": []}, "models: is empty"),
    ({"models": "tiny-llama"}, "models: must be a list"),
    ({"task_sets": ["nope"]}, "task_sets: "),
    ({"seeds": [0, "1"]}, "seeds: every item must be a int"),
    ({"seeds": [0, 0]}, "seeds: names an item twice"),
    ({"analyses": {}}, "analyses: must hold at least one"),
    ({"analyses": {"superposition": {"num_beams": 0}}}, "analyses.superposition.num_beams: --num-beams must be at least 1"),
    ({"analyses": {"superposition": {"num_beamz": 3}}}, "analyses.superposition.num_beamz: unknown key"),
    ({"analyses": {"superposition": {"model": "tiny-qwen2"}}}, "analyses.superposition.model: is set by the grid"),
    ({"analyses": {"nonsense": {}}}, "analyses.nonsense: unknown key"),
    ({"prompts": {"n_prompts": 0}}, "prompts.n_prompts: --n-prompts must be at least 1"),
    ({"prompts": {"batch": 2}}, "prompts.batch: unknown key"),
    ({"mixtures": ["copy_op1=0.5,capital=0.5"]}, "mixtures: 'copy_op1=0.5,capital=0.5' for task set 'ab'"),
    ({"mixtures": ["copy_op1=0.7,copy_op2=0.7"]}, "mixtures: "),
    ({"mixtures": {"country": ["uniform"]}}, "mixtures.country: unknown key"),
    ({"threads": 0}, "threads: must be a whole number"),
    ({"tasks_files": ["missing.toml"]}, "tasks_files: 'missing.toml' does not exist"),
])
def test_bad_spec_is_one_line_naming_the_key(change: dict, expected: str, tmp_path: Path) -> None:
    with pytest.raises(InterpError) as info:
        parse_spec({**BASE, **change}, source="bad.toml", base=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("sweep spec bad.toml: ")
    assert expected in message


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(InterpError, match="analyses: missing"):
        parse_spec({"models": ["tiny-llama"], "task_sets": ["ab"]}, source="x.toml", base=tmp_path)


def test_bad_file_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_spec(tmp_path, "models = [tiny-llama\n", "bad.toml")
    assert main(["sweep", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep spec bad.toml: not valid TOML") and "\n" not in err
    assert main(["sweep", "run", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert main(["sweep", "status", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tasks_file_task_set(tmp_path: Path) -> None:
    """A task set from a user file (path relative to the sweep file), with a mixture of its tasks."""
    shutil.copy(ROOT / "examples" / "tasks" / "animals.toml", tmp_path)
    spec = parse_spec({**BASE, "task_sets": ["animals"], "tasks_files": ["animals.toml"],
                       "mixtures": {"animals": ["uniform", "sound=0.5,upper=0.5"]}}, source="t.toml", base=tmp_path)
    assert spec.tasks_files == [str((tmp_path / "animals.toml").resolve())]
    assert [c.mixture for c in spec.cells] == ["uniform", "sound=0.5,upper=0.5"]
    assert all(c.kwargs["tasks_file"] == spec.tasks_files for c in spec.cells)
    with pytest.raises(InterpError, match="mixtures.animals: 'sound=0.5,bark=0.5' for task set 'animals'"):
        parse_spec({**BASE, "task_sets": ["animals"], "tasks_files": ["animals.toml"],
                    "mixtures": {"animals": ["sound=0.5,bark=0.5"]}}, source="t.toml", base=tmp_path)


# ------------------------------------------------------------------------------ serial sweeps


def test_serial_sweep_merges_every_cell(reference: tuple[Path, Path, pd.DataFrame]) -> None:
    spec_path, out, table = reference
    spec = load_spec(spec_path)
    # One row per cell × task (mixture curve: per d × task; scale: per K), grid coordinates as columns.
    assert list(table.columns[:7]) == ["cell_id", "analysis", "model", "task_set", "mixture", "seed", "task"]
    assert table["cell_id"].drop_duplicates().tolist() == [c.cell_id for c in spec.cells]
    sp = table[table["analysis"] == "superposition"]
    assert len(sp) == 2 * 3 and set(sp["task"]) == {"copy_op1", "copy_op2", "add"}
    assert sp["mean"].between(0, 1).all() and sp["kl_raw"].notna().all()
    assert len(table[table["analysis"] == "logit_lens"]) == 2 * 3
    mc = table[table["analysis"] == "mixture_curve"]
    assert len(mc) == 2 * 2 and mc["d"].eq(0.5).all()
    assert len(table[table["analysis"] == "scale"]) == 2  # K = 2 per model
    assert set(table["model"]) == {"tiny-llama", "tiny-qwen2"}
    assert pd.read_csv(out / "results.csv").shape == table.shape
    for cell in spec.cells:  # every cell wrote the usual run directory, marked complete
        run = out / "cells" / cell.cell_id
        assert json.loads((run / "status.json").read_text())["state"] == "complete"
        assert (run / "config.json").is_file()
    assert (out / "cells" / spec.cells[0].cell_id / "summary.parquet").is_file()
    for name in ("scale-ab", "mixture_curve-ab"):  # cross-model figures from the merged table
        assert (out / "figures" / f"{name}.png").stat().st_size > 0


def test_sweep_report_page_matches_the_merged_table(reference: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, out, table = reference
    sweep = tmp_path / "sweep"
    shutil.copytree(out, sweep)
    assert main(["report", "--sweep", str(sweep)]) == 0
    page = (sweep / "report" / "index.html").read_text()
    for title in ("Grid", "Superposition across models", "Tasks in parallel (K)", "Mixture curves per model",
                  "Logit lens across models"):
        assert f"<h2>{title}</h2>" in page
    assert page.count('class="figure"') >= 3 and "https://" not in page  # offline: everything inlined
    # One seed: the page's P is the cell's own mean and interval, per model x task.
    shown = pd.read_parquet(sweep / "report" / "superposition.parquet")
    sp = table[table["analysis"] == "superposition"]
    merged = shown.merge(sp, on=["model", "task_set", "mixture", "task"], suffixes=("", "_cell"))
    assert len(merged) == len(sp) == 6
    for col in ("mean", "ci_low", "ci_high"):
        assert (merged[col] == merged[f"{col}_cell"]).all()
    cells = pd.read_parquet(sweep / "report" / "superposition_cells.parquet")
    assert sorted(cells["kl_raw"]) == sorted(sp.drop_duplicates("cell_id")["kl_raw"])
    # An unfinished cell is shown as missing, not hidden: drop one cell's state and rebuild.
    first = json.loads((sweep / "cells.json").read_text())[0]["cell_id"]
    (sweep / "state" / f"{first}.json").unlink()
    assert main(["report", "--sweep", str(sweep), "--out", str(tmp_path / "page")]) == 0
    assert "1 cell(s) not finished" in capsys.readouterr().err
    assert "1 to do" in (tmp_path / "page" / "index.html").read_text()


def test_sweep_report_of_a_directory_without_results_is_one_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--sweep", str(tmp_path / "nowhere")]) == 2
    assert "pass the --out of `interp sweep run`" in capsys.readouterr().err


def test_rerun_skips_finished_cells(reference: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    spec_path, out, table = reference
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setattr(cells_module, "RUNNERS", {})  # any cell that ran would fail
    outcome = run_sweep(load_spec(spec_path), copy)
    assert outcome.ran == 0 and outcome.skipped == 8
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "results.parquet"), table, check_exact=True)


def test_a_smaller_grid_in_the_same_directory_reuses_its_cells(reference: tuple[Path, Path, pd.DataFrame],
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells are found by the hash of their options: dropping analyses from the file reruns nothing,
    and the merged table holds only the cells of the file as it is now."""
    spec_path, out, table = reference
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    smaller = spec_path.read_text().split("[analyses.logit_lens]")[0]
    monkeypatch.setattr(cells_module, "RUNNERS", {})  # any cell that ran would fail
    outcome = run_sweep(load_spec(write_spec(tmp_path, smaller)), copy)
    assert outcome.ran == 0 and outcome.skipped == 2
    merged = pd.read_parquet(copy / "results.parquet")
    expected = table[table["analysis"] == "superposition"].dropna(axis=1, how="all").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, expected, check_dtype=False, check_exact=True)
    assert len(sweep_status(copy)[0]) == 2


def test_resume_after_simulated_kill_gives_the_same_table(reference: tuple[Path, Path, pd.DataFrame],
                                                          tmp_path: Path) -> None:
    spec_path, out, table = reference
    spec = load_spec(spec_path)
    copy = tmp_path / "killed"
    shutil.copytree(out, copy)
    sweep = SweepDir(copy)
    # A kill leaves a cell "running", another never started, and no merged table.
    sweep.set_state(spec.cells[1].cell_id, "running")
    sweep.state_file(spec.cells[6].cell_id).unlink()
    shutil.rmtree(copy / "cells" / spec.cells[6].cell_id)
    (copy / "results.parquet").unlink()
    status, driver = sweep_status(copy)
    assert not driver["alive"]
    assert status.set_index("cell_id").loc[[spec.cells[1].cell_id, spec.cells[6].cell_id], "state"].eq("todo").all()
    outcome = run_sweep(spec, copy)
    assert outcome.ran == 2 and outcome.counts["complete"] == 8, (outcome.counts, outcome.failed)
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "results.parquet"), table, check_exact=True)


def test_failed_cell_recorded_then_retried(reference: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path, _, table = reference
    spec = load_spec(spec_path)
    victim = next(c for c in spec.cells if c.analysis == "logit_lens")
    real = dict(cells_module.RUNNERS)

    def broken(cell, root, model):  # noqa: ANN001, ANN202
        rows = real["logit_lens"](cell, root, model)
        if cell.cell_id == victim.cell_id:  # fails after its run directory was opened
            raise InterpError("the lens broke: fix it")
        return rows

    monkeypatch.setitem(cells_module.RUNNERS, "logit_lens", broken)
    out = tmp_path / "f"
    assert main(["sweep", "run", str(spec_path), "--out", str(out)]) == 1
    assert "1 cells failed: rerun the same command" in capsys.readouterr().err
    status, _ = sweep_status(out)
    row = status.set_index("cell_id").loc[victim.cell_id]
    assert row["state"] == "failed" and row["error"] == "the lens broke: fix it"
    assert (status["state"] == "complete").sum() == 7
    assert json.loads((out / "cells" / victim.cell_id / "status.json").read_text())["state"] == "failed"
    partial = pd.read_parquet(out / "results.parquet")
    assert victim.cell_id not in set(partial["cell_id"]) and partial["cell_id"].nunique() == 7
    assert main(["sweep", "status", str(out)]) == 0
    assert "the lens broke" in capsys.readouterr().out

    monkeypatch.setitem(cells_module.RUNNERS, "logit_lens", real["logit_lens"])
    outcome = run_sweep(spec, out)
    assert outcome.ran == 1 and outcome.counts == {"complete": 8, "running": 0, "failed": 0, "todo": 0}
    assert SweepDir(out).state(victim.cell_id)["attempts"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table, check_exact=True)


def test_driver_sigkill_then_resume(reference: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    """A real ``interp sweep run`` killed with SIGKILL after its first cell; the rerun completes the same table."""
    spec_path, _, table = reference
    out = tmp_path / "k"
    env = {**os.environ, "INTERP_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "interp_app", "sweep", "run", str(spec_path), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            states = [json.loads(p.read_text())["state"] for p in (out / "state").glob("*.json")] \
                if (out / "state").is_dir() else []
            if states.count("complete") >= 1:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    status, driver = sweep_status(out)
    assert not driver["alive"]
    done_before = int((status["state"] == "complete").sum())
    outcome = run_sweep(load_spec(spec_path), out)
    assert outcome.skipped == done_before and outcome.counts["complete"] == 8
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table, check_exact=True)


def test_second_driver_on_the_same_dir_is_refused(reference: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    spec_path, _, _ = reference
    out = tmp_path / "locked"
    out.mkdir()
    lock = SweepDir(out).lock()
    lock.acquire()
    try:
        with pytest.raises(InterpError, match="another `interp sweep run` is writing"):
            run_sweep(load_spec(spec_path), out)
    finally:
        lock.release()


# ------------------------------------------------------------------------------ Ray


@pytest.fixture(scope="session")
def ray_instance():  # noqa: ANN201
    """One real local Ray instance for the session (2 CPUs, no dashboard, a small object store)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install ray==2.60.0 to run the Ray sweep tests")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_equals_serial(reference: tuple[Path, Path, pd.DataFrame], ray_instance, tmp_path: Path) -> None:  # noqa: ANN001
    spec_path, _, table = reference
    outcome = run_sweep(load_spec(spec_path), tmp_path / "ray", executor="ray")
    assert outcome.counts["complete"] == 8 and not outcome.failed
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray" / "results.parquet"), table, check_exact=True)
    spec = load_spec(spec_path)
    for cell in spec.cells:  # the actors wrote the run directories
        assert (tmp_path / "ray" / "cells" / cell.cell_id / "config.json").is_file()


def test_ray_actor_loads_once_and_sets_threads(ray_instance) -> None:  # noqa: ANN001
    from interp_app.sweep.ray_executor import ModelWorker

    spec = parse_spec(BASE, source="t.toml")
    actor = ray_instance.remote(ModelWorker).options(num_cpus=1).remote(spec.cells[0], "/tmp", 2, [])
    info = ray_instance.get(actor.info.remote())
    ray_instance.kill(actor)
    assert info["threads"] == 2 and info["loads"] == 1 and info["pid"] != os.getpid()


def test_unreachable_address_is_one_line(reference: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install ray==2.60.0 to run the Ray sweep tests")
    spec_path, _, _ = reference
    code = main(["sweep", "run", str(spec_path), "--out", str(tmp_path / "a"), "--executor", "ray",
                 "--address", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: cannot reach the Ray cluster at '127.0.0.1:1'")
    assert main(["sweep", "run", str(spec_path), "--out", str(tmp_path / "a"), "--address", "auto"]) == 2
    assert "--address joins a Ray cluster: pass it with --executor ray" in capsys.readouterr().err


KILL_GRID = """
models = ["tiny-llama"]
task_sets = ["ab"]
seeds = [0, 1, 2, 3, 4, 5]
[prompts]
n_prompts = 1
examples_per_task = 3
[analyses.superposition]
num_beams = 2
max_new_tokens = 3
n_boot = 20
baselines = false
"""


def test_ray_worker_killed_mid_sweep_is_restarted(ray_instance, tmp_path: Path) -> None:  # noqa: ANN001
    """SIGKILL the model actor after its first cell: Ray restarts it, the cells are retried, the table is the serial one."""
    spec = load_spec(write_spec(tmp_path, KILL_GRID))
    serial = run_sweep(spec, tmp_path / "serial").results
    killed: list[int] = []

    def kill_after_first_cell() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for path in (tmp_path / "ray" / "state").glob("*.json"):
                try:
                    state = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if state.get("state") == "complete" and state.get("worker"):
                    pid = int(state["worker"].rsplit(":", 1)[1])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_after_first_cell)
    thread.start()
    outcome = run_sweep(spec, tmp_path / "ray", executor="ray")
    thread.join()
    assert killed and outcome.counts["complete"] == 6 and not outcome.failed
    workers = set(sweep_status(tmp_path / "ray")[0]["worker"])
    assert len(workers) == 2 and any(w.endswith(f":{killed[0]}") for w in workers)  # the restarted actor ran the rest
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray" / "results.parquet"), serial, check_exact=True)
