"""The three floors, read from the source: imports point down only, and no module imports itself in a circle.

* library ``interp`` may import only ``interp``;
* analyses ``analyses`` may import ``interp`` and ``analyses``;
* app ``interp_app`` may import anything.

Every ``import`` statement counts, also those inside functions (a lazy import is still an edge),
and ``importlib.import_module`` / ``__import__`` are not allowed in these packages at all (they
would hide an edge from this test). Analyses also stay free of the app's tools: no matplotlib,
no argparse.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"interp": 0, "analyses": 1, "interp_app": 2}
FLOOR_NAMES = {0: "library (interp)", 1: "analyses", 2: "app (interp_app)"}
# Third-party modules a floor must not use (they belong to the floor above).
FORBIDDEN_THIRD_PARTY = {"analyses": ("matplotlib", "argparse", "circuitsvis"),
                         "interp": ("matplotlib", "argparse", "circuitsvis")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for top in FLOORS:
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module ``name`` starts with (``interp.cache.store.x`` -> ``interp.cache.store``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            return candidate
    return None


def imports_in(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module or ``module.attribute``) for every import statement of ``source``."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import mod`` imports the module ``pkg.mod`` when it is one.
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return out


def imports_of(name: str) -> list[tuple[int, str]]:
    path = modules()[name]
    return imports_in(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")


def internal_edges(name: str, imports: list[tuple[int, str]] | None = None) -> list[tuple[int, str]]:
    """(line, module of ours) for every import of ``name`` that lands in one of the three packages."""
    known = modules()
    edges = []
    for line, target in imports if imports is not None else imports_of(name):
        resolved = _resolve(target, known)
        if resolved is not None and resolved != name:
            edges.append((line, resolved))
    return edges


def upward_imports(name: str, imports: list[tuple[int, str]] | None = None) -> list[str]:
    floor = FLOORS[name.split(".")[0]]
    return [f"{name}:{line}: {FLOOR_NAMES[floor]} imports {target} ({FLOOR_NAMES[FLOORS[target.split('.')[0]]]})"
            for line, target in internal_edges(name, imports) if FLOORS[target.split(".")[0]] > floor]


def test_every_floor_has_modules():
    tops = {name.split(".")[0] for name in modules()}
    assert tops == set(FLOORS)
    assert len(modules()) > 20


def test_imports_point_down_only():
    upward = [line for name in modules() for line in upward_imports(name)]
    assert upward == [], "imports pointing up a floor:\n" + "\n".join(upward)


def test_no_dynamic_imports():
    """``importlib.import_module`` / ``__import__`` would hide an edge from the tests above."""
    found = []
    for path in modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if called in ("import_module", "__import__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # The report's require_module() imports a *user's* module for a user-registered section; ours use plain imports.
    allowed = {"interp_app/report.py"}
    assert [f for f in found if f.split(":")[0] not in allowed] == []


def test_lower_floors_use_no_app_tools():
    found = []
    for name, path in modules().items():
        top = name.split(".")[0]
        for line, target in imports_of(name):
            if target.split(".")[0] in FORBIDDEN_THIRD_PARTY.get(top, ()):
                found.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    assert found == [], "figures, views and argument parsing belong to interp_app:\n" + "\n".join(found)


def find_cycle() -> list[str] | None:
    graph = {name: sorted({t for _, t in internal_edges(name)}) for name in modules()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(("name", "source"), [
    ("interp.probe", "import interp_app.cli\n"),
    ("interp.probe", "from interp_app import report\n"),
    ("interp.probe", "def f():\n    from analyses.superposition import analyse\n"),
    ("analyses.probe", "from interp_app.options import make_prompts\n"),
    ("interp.cache.probe", "from ...analyses import scale\n"),
])
def test_the_check_sees_an_upward_import(name, source):
    """The check can fail: a lower floor importing a higher one (even lazily, even relatively) is caught."""
    assert upward_imports(name, imports_in(source, name))


def test_the_check_sees_a_cycle(monkeypatch):
    graph = {"interp.a": [(1, "interp.b")], "interp.b": [(3, "interp.a")]}
    monkeypatch.setattr(__import__(__name__), "internal_edges", lambda name, imports=None: graph.get(name, []))
    monkeypatch.setattr(__import__(__name__), "modules", lambda: dict.fromkeys(graph, ROOT))
    assert find_cycle() == ["interp.a", "interp.b", "interp.a"]
