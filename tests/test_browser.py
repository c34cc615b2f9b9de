"""The report in a real browser: headless Chromium with networking disabled.

Asserts that no request left the page, that every circuitsvis container rendered and every
figure loaded, and saves a screenshot under the test's output directory
(``$INTERP_BROWSER_OUT`` if set, else pytest's ``tmp_path``).

Skipped, with the reason shown, when Chromium or Playwright is missing (CI installs Debian's
chromium in ``.ci/run``, so CI always runs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("INTERP_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def _chromium() -> str:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set INTERP_CHROMIUM): "
                    "browser test of the report skipped")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Python playwright is not installed: browser test of the report skipped")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


def open_offline(html_path: Path, screenshot: Path) -> dict:
    """Open ``html_path`` offline; return requests that tried to leave, CSP violations, DOM checks."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=ARGS, headless=True)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()

            def route(r):  # every request: local ones continue, anything else is recorded and aborted
                if r.request.url.startswith(LOCAL_SCHEMES):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("request", lambda req: None if req.url.startswith(LOCAL_SCHEMES) else outside.append(req.url))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # A request blocked by the page's CSP never reaches route(): record violations too.
            page.add_init_script("""window.__cspViolations = [];
                document.addEventListener('securitypolicyviolation',
                    e => window.__cspViolations.push(e.blockedURI + ' ' + e.violatedDirective));""")
            page.goto(html_path.resolve().as_uri(), wait_until="load")
            n_cv = page.locator(".cv-container").count()
            if n_cv:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.cv-container')].every(d => d.childElementCount > 0)",
                    timeout=30_000)
            page.wait_for_timeout(500)
            result = page.evaluate("""() => ({
                cv: [...document.querySelectorAll('.cv-container')].map(d => ({
                    id: d.id, children: d.childElementCount, height: d.getBoundingClientRect().height})),
                figures: [...document.querySelectorAll('img')].map(i => ({
                    alt: i.alt, complete: i.complete, width: i.naturalWidth})),
                sections: [...document.querySelectorAll('section.report-section')].map(s => s.id),
                failed: [...document.querySelectorAll('section.section-failed')].map(s => s.id),
                csp: window.__cspViolations,
            })""")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    result["outside"] = outside
    result["errors"] = errors
    return result


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> Path:
    """A small report on tiny-llama with a circuitsvis view (head attribution) and figures."""
    from interp_app.report import ReportConfig, build_report

    out = tmp_path_factory.mktemp("report")
    build_report(ReportConfig(model="tiny-llama", out=str(out), n_prompts=2, task_sets="ab",
                              sections="setup,superposition,head_attribution",
                              options=["superposition.num_beams=2", "superposition.max_new_tokens=3"]),
                 show_progress=False, log=lambda line: None)
    return out


def _out_dir(tmp_path: Path) -> Path:
    env = os.environ.get("INTERP_BROWSER_OUT")
    return Path(env) if env else tmp_path


def test_report_renders_offline_in_chromium(tmp_path, tiny_report):
    _chromium()
    shot = _out_dir(tmp_path) / "report.png"
    r = open_offline(tiny_report / "index.html", shot)
    assert r["outside"] == [], f"requests left the page: {r['outside']}"
    assert r["csp"] == [], f"blocked (CSP) requests: {r['csp']}"
    assert r["errors"] == [], f"JavaScript errors: {r['errors']}"
    assert r["cv"], "the report has no circuitsvis view (head attention should be drawn)"
    for cv in r["cv"]:
        assert cv["children"] > 0 and cv["height"] > 20, f"circuitsvis container {cv['id']} did not render: {cv}"
    assert r["figures"], "the report has no figures"
    for fig in r["figures"]:
        assert fig["complete"] and fig["width"] > 0, f"figure did not load: {fig}"
    assert "setup" in r["sections"] and "superposition" in r["sections"]
    assert shot.exists() and shot.stat().st_size > 10_000


def test_browser_test_detects_a_request_leaving_the_page(tmp_path):
    """The check itself must be able to fail: a page that loads a remote script is caught."""
    _chromium()
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
                    '<script src="https://unpkg.com/circuitsvis@1.43.3/dist/cdn/esm.js"></script></body></html>')
    r = open_offline(page, tmp_path / "leaky.png")
    assert any("example.invalid" in u for u in r["outside"])
    assert any("unpkg.com" in u for u in r["outside"])
