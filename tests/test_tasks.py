import pytest

from interp.errors import InterpError
from interp.tasks import Task, get_task_set, known_task_sets


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
