"""The notebooks in notebooks/: committed without outputs, and they run headless with small settings.

Each notebook has one code cell tagged ``parameters``; like papermill, the test injects a cell
right after it that overrides those values (tiny models, few prompts), then executes the
notebook with nbclient. A notebook whose analysis module is not installed is skipped with the
module's name in the reason.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# Small settings per notebook (executed in CI) and the analysis modules each one calls.
CASES = {
    "01_superposition_tour.ipynb": (
        {"MODEL": "tiny-llama", "TASK_SETS": ["ab"], "N_PROMPTS": 2, "NUM_BEAMS": 2},
        ["analyses.superposition"]),
    "02_logit_lens_and_heads.ipynb": (
        {"MODEL": "tiny-llama", "TASK_SET": "country", "N_PROMPTS": 2, "TOP_N": 2, "WINDOW": 24},
        ["analyses.logit_lens", "analyses.head_attribution"]),
    "03_task_vectors.ipynb": (
        {"MODEL": "tiny-llama", "TASK_SET": "ab", "N_PROMPTS": 2, "EXAMPLES_PER_TASK": 3, "N_QUERIES": 2,
         "N_LAMBDAS": 3, "N_ICL_LAMBDAS": 2},
        ["analyses.task_vectors"]),
    "04_from_scratch.ipynb": (
        {"MODEL": "tiny-llama", "TASK_SET": "retrieval", "N_PROMPTS": 2, "SHARES": [0.0, 0.5, 1.0]},
        ["analyses.from_scratch"]),
    "05_scale_ladder.ipynb": (
        {"MODELS": ["tiny-llama", "tiny-qwen2"], "TASK_SETS": ["ab"], "N_PROMPTS": 2, "K_PROMPTS": 1},
        ["analyses.scale_study"]),
}


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_four_notebooks_exist():
    names = {p.name for p in _notebooks()}
    assert set(CASES) <= names, f"missing notebooks: {set(CASES) - names}"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert dirty == [], f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; clear it before committing"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"


def test_notebooks_call_the_library():
    """No copied logic: each notebook imports the analysis modules it demonstrates."""
    for name, (_, modules) in CASES.items():
        source = "\n".join(c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "code")
        for module in modules:
            short = module.split(".")[-1]
            assert f"from {module} import" in source or f"from analyses import {short}" in source, (name, module)
        assert "def " not in source, f"{name} defines functions: move that logic into the library"


def inject_parameters(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell overriding the ``parameters`` cell's values right after it (papermill style)."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    return nb


def execute(name: str, values: dict, timeout: int = 600) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = inject_parameters(nbformat.read(NOTEBOOKS / name, as_version=4), values)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env={**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    return nb


def _outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if mime in data:
                found.append(data[mime])
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_headless(name, tmp_path):
    values, modules = CASES[name]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}, which is not installed in this checkout")
    nb = execute(name, values)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    assert _outputs(nb, "image/png"), f"{name} drew no figure"
    nbformat.write(nb, tmp_path / name)  # executed copy, for inspection when a test fails
    if name.startswith("02"):
        html = "\n".join(_outputs(nb, "text/html"))
        # The circuitsvis view is displayed from local_src: bundle inlined, nothing from a CDN.
        assert "var CircuitsVis=" in html and "CircuitsVis.render" in html
        assert "unpkg.com" not in html
