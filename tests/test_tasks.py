"""Tasks and task sets: the paper's sets, immutability, task-set properties, files and entry points."""

import dataclasses
import json
import sys
import textwrap
from pathlib import Path

import pytest

import interp.tasks as tasks_module
from interp.errors import InterpError
from interp.prompts import build_prompts
from interp.tasks import (
    Task,
    TaskSet,
    get_task_set,
    known_task_sets,
    load_tasks_file,
    register_task_set,
    task_set_from_dict,
)


def test_registry_lists_paper_task_sets() -> None:
    assert {"ab", "add-translate", "country", "word", "retrieval", "bias-add"} <= set(known_task_sets())
    with pytest.raises(InterpError, match="unknown task set 'nope'.*country"):
        get_task_set("nope")


def test_ab_answers() -> None:
    ab = get_task_set("ab")
    assert ab.format_input((73, 12)) == "73@12"
    assert ab.answers((73, 12), ab.task_names) == {"copy_op1": "73", "copy_op2": "12", "add": "85"}
    assert ab.separator == "="


def test_add_translate_uses_num2words() -> None:
    ts = get_task_set("add-translate")
    answers = ts.answers((57, 35), ts.task_names)
    assert answers == {"digits": "92", "en": "ninety-two", "fr": "quatre-vingt-douze", "es": "noventa y dos"}


def test_country_data_is_complete() -> None:
    ts = get_task_set("country")
    countries = ts.inputs()
    assert 150 <= len(countries) <= 200
    kenya = next(c for c in countries if c["name"] == "Kenya")
    assert ts.answers(kenya, ts.task_names) == {"capital": "Nairobi", "continent": "Africa", "upper": "KENYA",
                                                "currency": "KES"}
    assert {c["continent"] for c in countries} == {"Africa", "Asia", "Europe", "North America", "South America",
                                                    "Oceania"}
    assert ts.default_task_names == ["capital", "continent", "upper"]


def test_words_have_distinct_first_and_last_letters() -> None:
    words = get_task_set("word").inputs()
    assert len(words) > 1000
    assert all(w[0] != w[-1] and w.isalpha() for w in words)


def test_from_scratch_task_sets() -> None:
    ret = get_task_set("retrieval")
    s = ret.inputs()[0]
    assert len(set(s)) == 8 and ret.task("ret2").answer(s) == s[2]
    assert get_task_set("bias-add").task("plus7").answer("5") == "2"


def test_adding_a_task_is_one_line() -> None:
    ts = get_task_set("country").with_task(Task("lower", lambda c: c["name"].lower()))
    assert ts.task("lower").answer({"name": "Peru"}) == "peru"
    with pytest.raises(InterpError, match="already exists"):
        ts.with_task(Task("lower", lambda c: c["name"]))
    assert "lower" not in get_task_set("country").task_names  # the registered set is unchanged


# ------------------------------------------------------------------ immutability and task-set properties

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "tasks"


@pytest.fixture
def clean_registry():  # noqa: ANN201
    """Undo every registration a test makes (the registry is process-wide)."""
    saved = (dict(tasks_module._REGISTRY), dict(tasks_module._INSTANCES), set(tasks_module._ENTRY_POINTS_DONE))
    yield
    for target, value in zip((tasks_module._REGISTRY, tasks_module._INSTANCES, tasks_module._ENTRY_POINTS_DONE), saved):
        target.clear()
        target.update(value)


def test_registered_task_sets_are_immutable() -> None:
    ts = get_task_set("country")
    assert get_task_set("country") is ts
    assert isinstance(ts.tasks, tuple) and isinstance(ts.default_tasks, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ts.separator = "=>"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ts.tasks.append(Task("x", str))  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        get_task_set("retrieval").task("ret3").params["position"] = 4  # type: ignore[index]
    assert not hasattr(ts, "add")


def test_with_task_returns_a_new_set_and_keeps_the_registered_one() -> None:
    base = get_task_set("country")
    before = base.task_names
    extended = base.with_task(Task("lower", lambda c: c["name"].lower()), default=True)
    assert extended is not base and base.task_names == before
    assert extended.task_names == [*before, "lower"]
    assert extended.default_task_names == ["capital", "continent", "upper", "lower"]
    assert base.default_task_names == ["capital", "continent", "upper"]
    # A set without declared defaults mixes all its tasks, the new one included.
    ret = get_task_set("retrieval").with_task(Task("first", lambda s: s[0], params={"position": 0}))
    assert ret.default_task_names[-1] == "first" and ret.training is not None
    # A task without the training parameter makes the extension untrainable (not the registered set).
    assert get_task_set("retrieval").with_task(Task("len", lambda s: str(len(s)))).training is None
    assert get_task_set("retrieval").training is not None
    trimmed = base.without_tasks("currency")
    assert "currency" not in trimmed.task_names and "currency" in base.task_names


def test_registering_an_extended_set_needs_a_new_name(clean_registry: None) -> None:
    extended = get_task_set("country").with_task(Task("lower", lambda c: c["name"].lower()))
    with pytest.raises(InterpError, match="already defined by the built-in task sets.*another name"):
        register_task_set(extended)
    register_task_set(extended.renamed("country-lower"))
    assert get_task_set("country-lower").task("lower").answer({"name": "Peru"}) == "peru"
    assert "lower" not in get_task_set("country").task_names
    assert "country-lower" in known_task_sets()


def test_task_params_replace_name_parsing() -> None:
    ret, bias = get_task_set("retrieval"), get_task_set("bias-add")
    assert [t.params["position"] for t in ret.tasks] == list(range(8))
    assert [t.params["bias"] for t in bias.tasks] == list(range(10))
    assert ret.training.param == "position" and bias.training.param == "bias"
    assert ret.training.input_length == 8 and bias.training.input_length == 1
    # Every task's answer agrees with its declared parameter.
    s = ret.inputs()[5]
    assert all(t.answer(s) == s[t.params["position"]] for t in ret.tasks)
    assert all(t.answer("7") == str((7 + t.params["bias"]) % 10) for t in bias.tasks)


def test_a_trainable_set_must_give_every_task_its_parameter() -> None:
    spec = get_task_set("bias-add").training
    with pytest.raises(InterpError, match=r"lack the training parameter 'bias'"):
        TaskSet("t", (Task("a", str, params={"bias": 1}), Task("b", str)), inputs=["1"], training=spec)


def test_repetition_is_a_property_of_the_task_set_not_of_its_name() -> None:
    bias = get_task_set("bias-add")
    assert bias.inputs_may_repeat and bias.query_may_repeat
    assert not any(get_task_set(n).inputs_may_repeat or get_task_set(n).query_may_repeat
                   for n in ("ab", "add-translate", "country", "word", "retrieval"))
    # 20 examples of 10 digits: only possible because the set allows repeats (build_prompts' default).
    prompts = build_prompts(bias, {"plus1": 0.5, "plus2": 0.5}, n_prompts=20, examples_per_task=10, seed=0)
    assert all(len({e.input for e in p.examples}) < 20 for p in prompts)
    assert any(p.query in {e.input for e in p.examples} for p in prompts)
    with pytest.raises(InterpError, match="distinct inputs"):
        build_prompts(bias, {"plus1": 0.5, "plus2": 0.5}, n_prompts=1, examples_per_task=10, with_replacement=False)
    # The same set renamed keeps its behaviour: nothing checks the name.
    renamed = build_prompts(bias.renamed("digits"), {"plus1": 0.5, "plus2": 0.5}, n_prompts=5, examples_per_task=10)
    assert all(len(p.examples) == 20 for p in renamed)
    # A set that allows repeats but not the query among the examples.
    ts = dataclasses.replace(bias, name="digits-no-query", query_may_repeat=False)
    for p in build_prompts(ts, {"plus1": 0.5, "plus2": 0.5}, n_prompts=20, examples_per_task=10, seed=1):
        assert p.query not in {e.input for e in p.examples}


def test_default_pair_is_declared_by_the_set() -> None:
    assert get_task_set("retrieval").default_pair == ("ret2", "ret6")
    assert get_task_set("bias-add").default_pair is None
    with pytest.raises(InterpError, match="default_pair"):
        TaskSet("t", (Task("a", str), Task("b", str)), inputs=["1"], default_pair=("a", "zzz"))


# ------------------------------------------------------------------ task sets from files


def test_shipped_toml_example(clean_registry: None) -> None:
    assert load_tasks_file(EXAMPLES / "animals.toml") == ["animals"]
    ts = get_task_set("animals")
    dog = next(x for x in ts.inputs() if x["input"] == "dog")
    assert ts.format_input(dog) == "dog"
    assert ts.answers(dog, ts.task_names) == {"sound": "woof", "upper": "DOG", "plural": "dogs", "legs": "4",
                                              "shout": "WOOF"}
    assert ts.default_task_names == ["sound", "upper", "plural"] and ts.separator == "->"
    prompts = build_prompts(ts, n_prompts=3, seed=0)
    assert all(p.text.endswith(p.query + "->") and len(p.examples) == 12 for p in prompts)
    # Loading the same file again is harmless and gives the same names.
    assert load_tasks_file(EXAMPLES / "animals.toml") == ["animals"]


def test_shipped_json_and_python_examples(clean_registry: None) -> None:
    assert load_tasks_file(EXAMPLES / "colors.json") == ["colors"]
    colors = get_task_set("colors")
    assert colors.answers("green", colors.task_names) == {"french": "vert", "reverse": "neerg", "initial": "G",
                                                          "length": "5"}
    assert load_tasks_file(str(EXAMPLES / "my_tasks.py")) == ["country-plus", "times-table"]
    plus = get_task_set("country-plus")
    assert plus.task_names[-2:] == ["lower", "initial"] and "lower" not in get_task_set("country").task_names
    times = get_task_set("times-table")
    assert times.answers((7, 8), times.task_names) == {"product": "56", "sum": "15", "last_digit": "6"}
    assert times.task("last_digit").params == {"modulus": 10}
    # Re-running the same Python file replaces its own definitions instead of clashing.
    assert load_tasks_file(EXAMPLES / "my_tasks.py") == ["country-plus", "times-table"]


def test_transforms_compose_left_to_right() -> None:
    ts = task_set_from_dict({"name": "t", "inputs": ["Hello world", "abc"], "tasks": [
        {"name": "a", "transform": "reverse|upper"}, {"name": "b", "transform": ["first_word", "double"]},
        {"name": "c", "transform": "last_char"}, {"name": "d", "transform": "length"},
        {"name": "e", "transform": "sorted|strip"}]})
    assert ts.answers("Hello world", ts.task_names) == {"a": "DLROW OLLEH", "b": "HelloHello", "c": "d", "d": "11",
                                                        "e": "Hdellloorw"}
    # Defaults: as many examples as the distinct inputs allow, at most 20.
    assert ts.examples_per_task == 1 and ts.default_task_names == ts.task_names


def test_python_file_without_register_calls_registers_its_task_sets(tmp_path: Path, clean_registry: None) -> None:
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent("""
        from interp.tasks import Task, TaskSet, get_task_set
        base = get_task_set("word")  # an existing set at module level is not re-registered
        vowels = TaskSet("vowels", (Task("upper", str.upper), Task("twice", lambda s: s * 2)),
                         inputs=["a", "e", "i", "o", "u"], separator=":", inputs_may_repeat=True)
        _private = TaskSet("hidden", (Task("x", str),), inputs=["q"])
    """))
    assert load_tasks_file(path) == ["vowels"]
    assert get_task_set("vowels").answers("e", ["upper", "twice"]) == {"upper": "E", "twice": "ee"}
    assert "hidden" not in known_task_sets()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BAD_FILES = {
    "missing-inputs.toml": ('name = "x"\n[[tasks]]\nname = "a"\ntransform = "upper"\n', "missing 'inputs'"),
    "unknown-transform.toml": ('name = "x"\ninputs = ["a", "b"]\n[[tasks]]\nname = "a"\ntransform = "upper|shout"\n',
                               "unknown transform 'shout': use one of identity, upper"),
    "missing-answer.json": (json.dumps({"name": "x", "inputs": ["a", "b", "c"], "tasks": [
        {"name": "t", "answers": {"a": "1", "b": "2"}}]}), r"'answers' misses inputs \['c'\]: add an answer"),
    "extra-answer.json": (json.dumps({"name": "x", "inputs": ["a"], "tasks": [
        {"name": "t", "answers": {"a": "1", "z": "2"}}]}), r"names \['z'\], which are not in 'inputs'"),
    "duplicate-task.toml": ('name = "x"\ninputs = ["a", "b"]\n[[tasks]]\nname = "t"\ntransform = "upper"\n'
                            '[[tasks]]\nname = "t"\ntransform = "lower"\n', r"task names \['t'\] appear more than once"),
    "duplicate-set.json": (json.dumps([{"name": "x", "inputs": ["a"], "tasks": [{"name": "t", "transform": "upper"}]},
                                       {"name": "x", "inputs": ["b"], "tasks": [{"name": "t", "transform": "upper"}]}]),
                           r"task sets \['x'\] are defined more than once"),
    "builtin-clash.toml": ('name = "country"\ninputs = ["a", "b"]\n[[tasks]]\nname = "t"\ntransform = "upper"\n',
                           "'country' is already defined by the built-in task sets.*another name"),
    "typo-key.toml": ('name = "x"\ninputs = ["a"]\n[[tasks]]\nname = "t"\ntransfrom = "upper"\n',
                      r"unknown keys \['transfrom'\]"),
    "no-rule.toml": ('name = "x"\ninputs = ["a"]\n[[tasks]]\nname = "t"\n', "give 'answers'.*'transform'"),
    "field-on-strings.toml": ('name = "x"\ninputs = ["a"]\n[[tasks]]\nname = "t"\nfield = "sound"\n',
                              "'field' needs inputs written as tables"),
    "empty-answer.toml": ('name = "x"\ninputs = ["a", " "]\n[[tasks]]\nname = "t"\ntransform = "strip"\n',
                          "the answer for ' ' is ''; answers must be non-empty"),
    "separator-in-input.toml": ('name = "x"\ninputs = ["a->b"]\n[[tasks]]\nname = "t"\ntransform = "upper"\n',
                                "contain the separator"),
    "syntax.toml": ('name = "x\ninputs = []\n', "not valid TOML"),
    "syntax.json": ('{"name": "x",}', "not valid JSON"),
    "bad-default.toml": ('name = "x"\ninputs = ["a"]\ndefault = ["zz"]\n[[tasks]]\nname = "t"\ntransform = "upper"\n',
                         r"default tasks \['zz'\] are not tasks of the set"),
    "raises.py": ("raise ValueError('boom')\n", "running it raised ValueError: boom: fix the file"),
    "nothing.py": ("x = 1\n", "defines no task set: call register_task_set"),
    "clash.py": ("from interp.tasks import get_task_set, Task, register_task_set\n"
                 "register_task_set(get_task_set('word').with_task(Task('z', str)))\n",
                 "'word' is already defined by the built-in task sets"),
    "bad-syntax.py": ("def f(:\n", r"bad-syntax.py:1: syntax error"),
    "tasks.yaml": ("name: x\n", "unknown tasks file type '.yaml': use .py, .json or .toml"),
}


@pytest.mark.parametrize("filename", sorted(BAD_FILES))
def test_a_bad_tasks_file_is_one_clear_error(filename: str, tmp_path: Path, clean_registry: None) -> None:
    text, message = BAD_FILES[filename]
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(InterpError, match=message) as info:
        load_tasks_file(path)
    assert str(info.value).startswith(str(path.resolve())), str(info.value)  # names the file
    assert "\n" not in str(info.value)  # one line
    assert "x" not in tasks_module._REGISTRY  # nothing half-registered


def test_a_missing_tasks_file(tmp_path: Path) -> None:
    with pytest.raises(InterpError, match="does not exist: give the path of a .py, .json or .toml file"):
        load_tasks_file(tmp_path / "nope.toml")


def test_two_files_cannot_define_the_same_name_differently(tmp_path: Path, clean_registry: None) -> None:
    rule = '[[tasks]]\nname = "t"\ntransform = "upper"\n'
    a = _write(tmp_path, "a.toml", 'name = "same"\ninputs = ["a", "b"]\n' + rule)
    b = _write(tmp_path, "b.toml", 'name = "same"\ninputs = ["a", "c"]\n' + rule)
    c = _write(tmp_path, "c.json", json.dumps({"name": "same", "inputs": ["a", "b"],
                                                "tasks": [{"name": "t", "transform": "upper"}]}))
    assert load_tasks_file(a) == ["same"]
    with pytest.raises(InterpError, match=f"'same' is already defined by {a}"):
        load_tasks_file(b)
    assert load_tasks_file(c) == ["same"]  # an identical definition is accepted
    assert get_task_set("same").inputs() == ("a", "b")


# ------------------------------------------------------------------ entry points


def _install_fake_distribution(root: Path, entry_points: str) -> None:
    """A dist-info directory on sys.path: what `pip install` of a package with entry points leaves."""
    dist = root / "zoo_tasks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-tasks\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (root / "zoo_tasks.py").write_text(textwrap.dedent("""
        from interp.tasks import Task, TaskSet, register_task_set
        CALLS = []

        def zoo():
            CALLS.append("zoo")
            return TaskSet("zoo", (Task("upper", str.upper), Task("first", lambda s: s[0])),
                           inputs=["yak", "emu", "gnu"], examples_per_task=1)

        def more():
            CALLS.append("more")
            register_task_set(TaskSet("zoo-a", (Task("a", str.upper),), inputs=["x"]))
            return [TaskSet("zoo-b", (Task("b", str.lower),), inputs=["Y"])]

        def broken():
            raise RuntimeError("no data")
    """))


def test_installed_packages_ship_task_sets_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               clean_registry: None) -> None:
    _install_fake_distribution(tmp_path, """
        [interp.task_sets]
        zoo = zoo_tasks:zoo
        zoo-extra = zoo_tasks:more
        zoo-broken = zoo_tasks:broken
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zoo_tasks", raising=False)
    # Listed before it is loaded; loaded lazily, on the first request for a name the registry lacks.
    assert {"zoo", "zoo-extra", "zoo-broken"} <= set(known_task_sets())
    assert "zoo" not in tasks_module._REGISTRY
    get_task_set("country")
    assert "zoo_tasks" not in sys.modules  # a known name does not load entry points
    zoo = get_task_set("zoo")
    assert zoo.answers("emu", ["upper", "first"]) == {"upper": "EMU", "first": "e"}
    assert sys.modules["zoo_tasks"].CALLS == ["zoo"]  # only the entry point named like the request
    # A callable may register several sets (by name or return value), under any names.
    assert get_task_set("zoo-b").task("b").answer("Y") == "y"
    assert get_task_set("zoo-a").task("a").answer("x") == "X"
    # A broken entry point is one clear error when it is the one asked for.
    with pytest.raises(InterpError, match="entry point 'zoo-broken'.*failed: no data: fix or uninstall"):
        get_task_set("zoo-broken")
    with pytest.raises(InterpError, match="unknown task set 'nothing-here'"):
        get_task_set("nothing-here")


def test_entry_points_are_read_through_importlib_metadata(monkeypatch: pytest.MonkeyPatch,
                                                          clean_registry: None) -> None:
    from importlib.metadata import EntryPoint

    seen = []

    def fake_entry_points(group: str):  # noqa: ANN202
        seen.append(group)
        return [EntryPoint(name="ep-set", value="interp.tasks:_bias_add", group=group)]

    monkeypatch.setattr(tasks_module.metadata, "entry_points", fake_entry_points)
    builtin = get_task_set("bias-add")
    # The entry point's factory builds another 'bias-add': a package cannot replace a built-in set.
    with pytest.raises(InterpError, match="entry point 'ep-set'.*'bias-add' is already defined by the built-in"):
        get_task_set("ep-set")
    assert seen and set(seen) == {"interp.task_sets"}
    assert get_task_set("bias-add") is builtin


def test_a_file_is_registered_all_or_nothing(tmp_path: Path, clean_registry: None) -> None:
    rule = [{"name": "t", "transform": "upper"}]
    path = _write(tmp_path, "two.json", json.dumps([{"name": "fresh-set", "inputs": ["a"], "tasks": rule},
                                                    {"name": "word", "inputs": ["b"], "tasks": rule}]))
    with pytest.raises(InterpError, match="'word' is already defined"):
        load_tasks_file(path)
    assert "fresh-set" not in tasks_module._REGISTRY


def test_a_python_file_may_load_a_declarative_file(tmp_path: Path, clean_registry: None) -> None:
    path = _write(tmp_path, "loader.py", f"""
        from interp.tasks import load_tasks_file
        load_tasks_file({str(EXAMPLES / "colors.json")!r})
    """)
    assert load_tasks_file(path) == ["colors"]
