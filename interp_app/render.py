"""Self-contained HTML: figures, tables and circuitsvis views that render offline.

A report page must open from disk with no network at all, so everything is inlined:

* matplotlib figures become ``<img src="data:image/svg+xml;base64,...">`` (or PNG). An image
  per figure keeps each SVG's internal ids isolated and lets a browser test check that every
  figure loaded (``img.complete && naturalWidth > 0``).
* circuitsvis views: ``RenderedHTML.local_src`` repeats the 1.3 MB JavaScript bundle for every
  view and ``str(view)`` imports it from a CDN. A page instead inlines the bundle **once** (a
  classic ``<script>``, which defines the global ``CircuitsVis``) and each view is a
  ``<div class="cv-container">`` followed by a tiny ``CircuitsVis.render(id, Component, props)``.

Python::

    from interp_app.render import Page, figure_img, attention_heads_view
    page = Page("My report")
    page.add("Attention", attention_heads_view(pattern, tokens, ["L3H1", "L5H0"]))
    page.write("out/index.html")

In a notebook use :func:`show_circuitsvis` (displays ``local_src``; no network probe).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pandas as pd

from interp.io import atomic_write_text

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1em 2em 4em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
nav ul { columns: 2; font-size: .92em; } p.explain { max-width: 62em; }
table.data { border-collapse: collapse; font-size: .82em; margin: .5em 0 1em; }
table.data th, table.data td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
table.data th { background: #f4f4f6; } table.data td:first-child { text-align: left; }
.figure { display: inline-block; vertical-align: top; margin: .4em 1em .8em 0; }
.figure img { max-width: 100%; } .figure .caption { font-size: .82em; color: #555; max-width: 40em; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.side-by-side > div { flex: 1 1 420px; min-width: 320px; }
.failed { border: 2px solid #c62828; background: #fdecea; padding: .6em 1em; border-radius: 6px; }
.note { border-left: 4px solid #f0ad4e; background: #fff8e6; padding: .4em .8em; font-size: .92em; }
.meta { font-size: .85em; color: #555; } a.csv { font-size: .82em; }
.cv-container { margin: 12px 0; min-height: 40px; }
code { background: #f4f4f6; padding: 0 3px; border-radius: 3px; }
"""


def esc(text: Any) -> str:
    """HTML-escape any value."""
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------- figures

def figure_bytes(fig: Any, fmt: str = "svg", dpi: int = 110) -> bytes:
    """Serialise a matplotlib figure (``svg`` or ``png``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def figure_img(fig: Any, caption: str = "", fmt: str = "svg", alt: str = "") -> str:
    """An ``<img>`` with the figure inlined as a data URI, plus an optional caption."""
    data = base64.b64encode(figure_bytes(fig, fmt)).decode("ascii")
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    cap = f'<div class="caption">{esc(caption)}</div>' if caption else ""
    return (f'<div class="figure"><img class="report-figure" alt="{esc(alt or caption or "figure")}" '
            f'src="data:{mime};base64,{data}">{cap}</div>')


def table_html(frame: pd.DataFrame, max_rows: int = 40, float_format: str = "{:.4g}", csv_name: str = "") -> str:
    """A compact HTML table (first ``max_rows`` rows), with a link to the full CSV beside it."""
    shown = frame.head(max_rows)

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else float_format.format(v)
        return str(v)

    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    more = f'<div class="meta">showing {max_rows} of {len(frame)} rows</div>' if len(frame) > max_rows else ""
    link = f' <a class="csv" href="{esc(csv_name)}">{esc(csv_name)}</a>' if csv_name else ""
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}{link}'


def failure_box(reason: str) -> str:
    """The box a section shows instead of its content when its analysis failed."""
    return f'<div class="failed"><strong>This section failed:</strong> {esc(reason)}</div>'


def note(text: str) -> str:
    return f'<div class="note">{esc(text)}</div>'


# ---------------------------------------------------------------- circuitsvis

@lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """The circuitsvis browser bundle (defines the global ``CircuitsVis``), safe to inline."""
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    js = path.read_text(encoding="utf-8")
    # An inline script ends at the first "</script" whatever its JS context; "<\/" means the same in JS.
    js = js.replace("</script", "<\\/script")
    # A source-map comment would make an open devtools fetch iife.js.map: drop it.
    return re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)


def _json_for_script(obj: Any) -> str:
    return json.dumps(obj).replace("</", "<\\/")


def _round(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def circuitsvis_view(component: str, digits: int | None = 3, **props: Any) -> str:
    """One circuitsvis component, rendered by the page's single inlined bundle.

    ``props`` use the React names (``attention``, ``tokens``, ``attentionHeadNames``...);
    tensors and arrays are converted to lists as circuitsvis does. Floats are rounded to
    ``digits`` (attention weights need no more), which keeps a page several times smaller.
    """
    from circuitsvis.utils.convert_props import convert_prop_type

    div_id = "cv-" + uuid4().hex[:12]
    clean = {k: convert_prop_type(v) for k, v in props.items() if v is not None}
    if digits is not None:
        clean = {k: _round(v, digits) for k, v in clean.items()}
    return (f'<div class="cv-container" id="{div_id}" data-component="{esc(component)}"></div>\n'
            f'<script>CircuitsVis.render("{div_id}", CircuitsVis.{component}, {_json_for_script(clean)});</script>')


_CDN_RE = re.compile(r"import \{ render, (\w+) \} from [^\n]*\n\s*render\(\s*\"[^\"]+\",\s*\w+,\s*(.*)\)\s*</script>\s*$",
                     re.S)


def from_rendered(obj: Any, digits: int | None = 3) -> str:
    """Convert any circuitsvis ``RenderedHTML`` (e.g. ``circuitsvis.attention.attention_heads(...)``)
    into a page view that uses the page's bundle instead of repeating it."""
    match = _CDN_RE.search(obj.cdn_src)
    if match is None:
        raise ValueError("unrecognised circuitsvis output: upgrade interp_app.render for this circuitsvis version")
    component, props = match.group(1), json.loads(match.group(2))
    return circuitsvis_view(component, digits=digits, **props)


def attention_heads_rendered(attention: Any, tokens: Sequence[str], head_names: Sequence[str]) -> Any:
    """The ``circuitsvis.attention.attention_heads`` view of patterns ``[heads, dest, src]``."""
    import circuitsvis.attention

    return circuitsvis.attention.attention_heads(attention=attention, tokens=list(tokens),
                                                 attention_head_names=list(head_names))


def attention_heads_view(attention: Any, tokens: Sequence[str], head_names: Sequence[str]) -> str:
    """Attention patterns ``[heads, dest, src]`` of several heads for a :class:`Page` (shared bundle)."""
    return from_rendered(attention_heads_rendered(attention, tokens, head_names))


def standalone_attention_html(attention: Any, tokens: Sequence[str], head_names: Sequence[str]) -> str:
    """A standalone offline HTML file of the view (the bundle inlined: ``local_src``)."""
    return attention_heads_rendered(attention, tokens, head_names).local_src


def show_circuitsvis(obj: Any) -> Any:
    """Display a circuitsvis view in Jupyter offline (``local_src``, never the CDN snippet).

    Unlike ``obj._repr_html_()`` this does not probe http://google.com first.
    """
    from IPython.display import HTML, display

    display(HTML(obj.local_src))
    return None


# ---------------------------------------------------------------- page

@dataclass
class PageSection:
    anchor: str
    title: str
    body: str
    failed: bool = False


@dataclass
class Page:
    """An HTML page of sections; ``render()`` inlines the circuitsvis bundle once if any view uses it."""

    title: str
    intro: str = ""
    sections: list[PageSection] = field(default_factory=list)

    def add(self, title: str, body: str, anchor: str = "", failed: bool = False) -> None:
        anchor = anchor or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        self.sections.append(PageSection(anchor, title, body, failed))

    def render(self) -> str:
        needs_cv = any("CircuitsVis.render(" in s.body for s in self.sections)
        # The bundle goes in <head> as a classic script: it runs before any section's render call.
        bundle = f"<script>{circuitsvis_bundle()}</script>" if needs_cv else ""
        toc = "".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a>{" (failed)" if s.failed else ""}</li>'
                      for s in self.sections)
        body = "\n".join(f'<section id="{esc(s.anchor)}" class="report-section{" section-failed" if s.failed else ""}">'
                         f"<h2>{esc(s.title)}</h2>\n{s.body}\n</section>" for s in self.sections)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                # No request may leave the page: forbid every non-inline source.
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
                "font-src data:; worker-src blob:\">"
                f"<title>{esc(self.title)}</title><style>{_CSS}</style>{bundle}</head>\n<body>"
                f"<h1>{esc(self.title)}</h1>{self.intro}<nav><ul>{toc}</ul></nav>\n{body}\n</body></html>\n")

    def write(self, path: str | Path) -> Path:
        target = Path(path)
        atomic_write_text(target, self.render())
        return target
