"""Shared fixtures: tiny random-weight models (Llama- and Qwen2-shaped, GQA) and SmolLM2.

Models are loaded once per session and must be treated as read-only by tests.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile

import numpy as np
import pytest
import torch

os.environ.setdefault("INTERP_NO_PROGRESS", "1")
# Tests never write into the repo's cached_activations/: one throw-away cache per session.
if "INTERP_CACHE_DIR" not in os.environ:
    os.environ["INTERP_CACHE_DIR"] = tempfile.mkdtemp(prefix="interp-test-cache-")
    atexit.register(shutil.rmtree, os.environ["INTERP_CACHE_DIR"], ignore_errors=True)

TINY_SPECS = ("tiny-llama", "tiny-qwen2")
_MODELS: dict[str, object] = {}


def load_cached(spec: str):  # noqa: ANN201 - returns LoadedModel
    from interp.models import load_model

    if spec not in _MODELS:
        _MODELS[spec] = load_model(spec)
    return _MODELS[spec]


@pytest.fixture(autouse=True, scope="session")
def _library_log_lines_on_stderr() -> None:
    """Route the library's log lines (``interp.*``, e.g. "activations …: reused") to stderr as the app does."""
    from interp_app.logs import log_to_stderr

    log_to_stderr()


@pytest.fixture(autouse=True)
def _reproducible() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(params=TINY_SPECS)
def tiny_model(request: pytest.FixtureRequest):  # noqa: ANN201
    return load_cached(request.param)


@pytest.fixture
def tiny_llama():  # noqa: ANN201
    return load_cached("tiny-llama")


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> str:  # noqa: ANN001
    """A fresh activation cache for one test (tests that count cache hits must not see others' entries)."""
    path = str(tmp_path / "acts")
    monkeypatch.setenv("INTERP_CACHE_DIR", path)
    return path


def small_prompts(task_set: str = "country", n: int = 3, per_task: int = 3, seed: int = 1):  # noqa: ANN201
    """A few short mixed-task prompts (tiny-model tests)."""
    from interp.prompts import build_prompts
    from interp.tasks import get_task_set

    return build_prompts(get_task_set(task_set), n_prompts=n, examples_per_task=per_task, seed=seed)


@pytest.fixture(scope="session")
def smollm2():  # noqa: ANN201
    return load_cached("smollm2-135m")


# Test tiers: end-to-end files are `e2e`; a test that names no tier is `unit`.
E2E_FILES = ("test_browser.py", "test_notebooks.py")
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in E2E_FILES and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)
        elif "smollm2" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(pytest.mark.unit)
