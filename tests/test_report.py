"""`interp report`: self-contained page, CSV tables, failing sections, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from interp.errors import InterpError
from interp_app.cli import build_parser, main
from interp_app.render import Page, attention_heads_view, circuitsvis_bundle, from_rendered
from interp_app.report import SECTIONS, ReportConfig, SectionOutput, build_report, register_section

QUIET = {"show_progress": False, "log": lambda line: None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("tiny-report")
    result = build_report(ReportConfig(model="tiny-llama", out=str(out), n_prompts=2, task_sets="ab,country",
                                       sections="setup,superposition,head_attribution",
                                       options=["superposition.num_beams=2", "superposition.max_new_tokens=3"]), **QUIET)
    return out, result


def _remote_refs(html: str) -> list[str]:
    """src/href attributes or imports that point at a network address."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", html, flags=re.I)
    refs += re.findall(r"""import[^;\n]*from\s*["'](https?://[^"']+)""", html)
    return refs


def test_report_is_self_contained_and_writes_its_tables(tiny):
    out, result = tiny
    html = (out / "index.html").read_text()
    assert result.index == out / "index.html"
    assert _remote_refs(html) == []
    assert "unpkg.com" not in html
    # The circuitsvis bundle is inlined exactly once however many views the page has.
    assert html.count("var CircuitsVis=") == 1
    assert html.count("CircuitsVis.render(") >= 1
    assert html.count('<img class="report-figure"') >= 2  # one stacked-bar figure per task set
    for name in ("setup", "superposition", "head_attribution"):
        assert f'<section id="{name}"' in html
    metrics = pd.read_csv(out / "superposition-metrics.csv")
    assert list(metrics["task_set"]) == ["ab", "country"]
    assert metrics["kl_raw"].notna().all() and (metrics["other"] <= 1).all()
    scores = pd.read_csv(out / "superposition-ab-scores.csv")
    assert scores["prompt_id"].nunique() == 2 and set(scores["task"]) == {"copy_op1", "copy_op2", "add"}
    setup = pd.read_csv(out / "setup-setup.csv")
    assert "fingerprint" in set(setup["setting"]) and "seed" in set(setup["setting"])
    meta = json.loads((out / "report.json").read_text())
    assert meta["sections"] == ["setup", "superposition", "head_attribution"]
    # Every table the page links to exists beside it.
    for link in re.findall(r'href="([^"#]+\.csv)"', html):
        assert (out / link).exists(), link


def test_failing_section_shows_box_and_others_render(tmp_path):
    @register_section("zz_broken", "Broken", "always raises")
    def broken(ctx, opts):
        raise RuntimeError("boom\nsecond line")

    @register_section("zz_missing", "Missing", "needs a module that is not there")
    def missing(ctx, opts):
        from interp_app.report import require_module

        require_module("analyses.does_not_exist")
        return SectionOutput("")

    lines: list[str] = []
    try:
        result = build_report(ReportConfig(model="tiny-llama", out=str(tmp_path), sections="setup,zz_broken,zz_missing"),
                              show_progress=False, log=lines.append)
    finally:
        SECTIONS.pop("zz_broken")
        SECTIONS.pop("zz_missing")
    html = result.index.read_text()
    assert result.failed == {"zz_broken": "RuntimeError: boom",
                             "zz_missing": "module analyses.does_not_exist is not installed in this checkout"}
    assert html.count("This section failed:") == 2
    assert "fingerprint" in html  # setup still rendered
    assert lines == ["section zz_broken failed: RuntimeError: boom",
                     "section zz_missing failed: module analyses.does_not_exist is not installed in this checkout"]


def test_overwrite_with_fewer_sections_removes_their_stale_tables(tmp_path):
    @register_section("zz_table", "Table", "writes one table")
    def table(ctx, opts):
        return SectionOutput("<p>t</p>", tables={"numbers": pd.DataFrame({"x": [1, 2]})})

    try:
        build_report(ReportConfig(model="tiny-llama", out=str(tmp_path), sections="setup,zz_table"), **QUIET)
        assert (tmp_path / "zz_table-numbers.csv").exists() and (tmp_path / "zz_table-numbers.parquet").exists()
        (tmp_path / "my-notes.csv").write_text("kept\n")  # not written by the report: never touched
        build_report(ReportConfig(model="tiny-llama", out=str(tmp_path), sections="setup", overwrite=True), **QUIET)
    finally:
        SECTIONS.pop("zz_table")
    assert not (tmp_path / "zz_table-numbers.csv").exists()
    assert not (tmp_path / "zz_table-numbers.parquet").exists()
    assert (tmp_path / "my-notes.csv").read_text() == "kept\n"
    assert "zz_table-numbers.csv" not in json.loads((tmp_path / "report.json").read_text())["tables"]


def test_missing_model_fails_model_sections_with_one_line(tmp_path, capsys):
    code = main(["report", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "r"),
                 "--sections", "setup,superposition"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    setup_lines = [line for line in err if line.startswith("section setup failed:")]
    assert len(setup_lines) == 1 and "no-such-model" in setup_lines[0]
    html = (tmp_path / "r" / "index.html").read_text()
    assert html.count("This section failed:") == 2


def test_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file.html"
    target.write_text("x")
    assert main(["report", "--model", "tiny-llama", "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: output path {target} is a file: pass a directory to --out"
    assert target.read_text() == "x"


def test_unknown_section_lists_the_known_ones(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "r"), "--sections", "setup,bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown section(s) bogus: known sections are setup, superposition")
    assert "\n" not in err and not (tmp_path / "r").exists()


def test_a_bad_section_option_is_refused_before_anything_runs(tmp_path):
    # Validation at the boundary: a bad --set is one error line, before a model is loaded or a file written.
    with pytest.raises(InterpError, match="unknown option 'beams' for section superposition: known options are topk, num_beams"):
        build_report(ReportConfig(model="tiny-llama", out=str(tmp_path / "a"), sections="setup,superposition",
                                  options=["superposition.beams=3"]), **QUIET)
    with pytest.raises(InterpError, match="expected SECTION.OPTION=VALUE"):
        build_report(ReportConfig(model="tiny-llama", out=str(tmp_path / "x"), options=["num_beams=3"]), **QUIET)
    with pytest.raises(InterpError, match="option superposition.num_beams='many': expected int"):
        build_report(ReportConfig(model="tiny-llama", out=str(tmp_path / "y"), sections="superposition",
                                  options=["superposition.num_beams=many"]), **QUIET)
    with pytest.raises(InterpError, match="superposition.num_beams must be at least 1"):
        build_report(ReportConfig(model="tiny-llama", out=str(tmp_path / "z"), sections="superposition",
                                  options=["superposition.num_beams=0"]), **QUIET)
    assert not any((tmp_path / d).exists() for d in "axyz")


def test_help_lists_every_command_with_one_line(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert re.search(r"^\s+interp report\s+build a self-contained offline HTML report with CSV tables$", text, flags=re.M)
    from interp_app.cli import _collect_commands

    for cmd in _collect_commands():  # every command, group subcommands included, on its own line
        assert re.search(rf"^  interp {' '.join(cmd.path)}\s+{re.escape(cmd.help)}$", text, flags=re.M), cmd.path


def test_circuitsvis_views_share_one_bundle():
    import circuitsvis.attention
    import torch

    tokens = ["<s>", "a", "</script><b>x"]  # a token that would end an inline script if not escaped
    pattern = torch.softmax(torch.randn(2, 3, 3), dim=-1)
    view = attention_heads_view(pattern, tokens, ["L0H0", "L0H1"])
    assert "</script><b>" not in view.split("<script>", 1)[1].rsplit("</script>", 1)[0]
    direct = from_rendered(circuitsvis.attention.attention_heads(attention=pattern, tokens=tokens))
    assert "CircuitsVis.AttentionHeads" in direct
    page = Page("t")
    page.add("one", view)
    page.add("two", direct)
    html = page.render()
    assert html.count(circuitsvis_bundle()[:200]) == 1
    assert "</script" not in circuitsvis_bundle()
    no_cv = Page("t")
    no_cv.add("plain", "<p>hi</p>")
    assert "CircuitsVis" not in no_cv.render()


def test_from_scratch_section_shows_the_authors_log_beside_ours(tmp_path):
    from interp.models import resolve_model_dir

    tiny_dir = resolve_model_dir("tiny-llama")  # a char-tokenizer model stands in for a trained checkpoint
    result = build_report(ReportConfig(model="tiny-llama", out=str(tmp_path), sections="from_scratch",
                                       options=[f"from_scratch.models={tiny_dir}", "from_scratch.task_set=retrieval",
                                                "from_scratch.n_prompts=2", "from_scratch.shares=0,0.5,1"]), **QUIET)
    assert result.failed == {}
    curve = pd.read_csv(tmp_path / "from_scratch-curve.csv")
    assert sorted(curve["d"]) == [0.0, 0.5, 1.0]
    assert ((curve["p_a"] + curve["p_b"] + curve["other"]).round(6) == 1).all()
    paper = pd.read_csv(tmp_path / "from_scratch-paper_logged.csv")
    assert paper.loc[paper["d"] == 0.5, "copy: P(t0)"].item() == pytest.approx(0.489)
    html = result.index.read_text()
    assert "The authors&#x27; logged results" in html or "The authors' logged results" in html


def test_from_scratch_section_shows_the_in_context_curve_of_trained_models(tmp_path):
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "from-scratch" / "bias-add-L3-d64-h4"
    result = build_report(ReportConfig(model="tiny-llama", out=str(tmp_path), sections="from_scratch",
                                       options=[f"from_scratch.models={shipped}", "from_scratch.n_prompts=2",
                                                "from_scratch.shares=0,1"]), **QUIET)
    assert result.failed == {}
    icl = pd.read_csv(tmp_path / "from_scratch-in_context.csv")
    assert icl["example"].tolist() == list(range(1, 21)) and set(icl["model"]) == {"bias-add-L3-d64-h4"}
    assert icl["nll"].iloc[0] > 1.8 and icl["nll"].iloc[1:].max() < 0.3  # learned: flat after one example
    assert "Answer loss by example index" in result.index.read_text()


def test_run_directory_that_does_not_exist(tmp_path):
    lines: list[str] = []
    result = build_report(ReportConfig(model="tiny-llama", out=str(tmp_path), sections="setup,from_scratch,scale",
                                       options=[f"from_scratch.run={tmp_path / 'nope'}", f"scale.run={tmp_path / 'nope2'}"]),
                          show_progress=False, log=lines.append)
    assert result.failed == {"from_scratch": f"run directory {tmp_path / 'nope'} does not exist: pass an existing directory",
                             "scale": f"run directory {tmp_path / 'nope2'} does not exist: pass an existing directory"}
    assert len(lines) == 2 and (tmp_path / "setup-setup.csv").exists()


def test_second_report_reuses_cached_activations(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    config = ReportConfig(model="tiny-llama", out=str(tmp_path / "r"), task_sets="ab", sections="logit_lens",
                          options=["logit_lens.n_prompts=2", "logit_lens.controls=false"])
    first = build_report(config, **QUIET)
    err_first = capfd.readouterr().err
    second = build_report(config, **QUIET)
    err_second = capfd.readouterr().err
    assert first.failed == {} and second.failed == {}
    assert "computed" in err_first and "reused" not in err_first
    assert "reused" in err_second and "computed" not in err_second
    assert (pd.read_csv(tmp_path / "r" / "logit_lens-ab.csv")["prob"] >= 0).all()
