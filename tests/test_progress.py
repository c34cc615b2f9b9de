"""Progress display: a tqdm bar on a terminal, one log line per stage when stderr is not one."""

from __future__ import annotations

import logging

from interp import progress as progress_module
from interp.progress import StageLines, progress


def test_not_a_terminal_logs_one_line_per_stage(monkeypatch, caplog) -> None:
    monkeypatch.delenv("INTERP_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module, "_is_terminal", lambda: False)
    with caplog.at_level(logging.INFO, logger="interp.progress"):
        for _ in progress(range(3), desc="outer"):
            for _ in progress(range(2), desc="inner"):
                pass
        early = progress(range(10), desc="early")
        for i in early:
            if i == 3:
                break
        early.close()  # a stage left early still ends with its line, once
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" in ")[0] for line in lines] == ["inner: 2/2"] * 3 + ["outer: 3/3", "early: 3/10"]
    assert all(line.endswith("s") for line in lines)


def test_terminal_gets_a_bar_and_the_switch_turns_it_off(monkeypatch) -> None:
    monkeypatch.delenv("INTERP_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module, "_is_terminal", lambda: True)
    bar = progress(range(2), desc="bar")
    assert type(bar).__name__ == "tqdm" and list(bar) == [0, 1]
    bar.close()
    monkeypatch.setattr(progress_module, "_is_terminal", lambda: False)
    assert isinstance(progress(range(2)), StageLines)
    monkeypatch.setenv("INTERP_NO_PROGRESS", "1")
    items = [1, 2]
    assert progress(items) is items
