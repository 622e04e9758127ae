"""``study report``: one self-contained HTML file, and the same content as Markdown.

The HTML embeds every figure as a base64 PNG and its style inline, so it opens with no
network and no other file; the Markdown beside it links the PNG files written with it.
Both hold the configuration, the truth per condition, the tables of
``study summarize`` (cells ``estimate (MCSE)``), the figures, and the failed fits.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from study.analysis.tables import FOOTNOTE, render

_HTML = jinja2.Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222;
       padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
table.reasons td, table.reasons th { text-align: left; }
table.text-last td:last-child { white-space: normal; text-align: left; min-width: 18em; }
table.reasons td:nth-child(n+6) { white-space: normal; min-width: 16em; }
table.reasons td:nth-child(n+3):nth-child(-n+5) { text-align: right; }
.wide { overflow-x: auto; }
pre { background: #f8f8f8; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.note { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ header }}</p>
<h2>Configuration</h2>
<details><summary>the study's TOML (every setting written out)</summary>
<pre>{{ config }}</pre>
</details>
<h2>{{ truth_heading }}</h2>
<div class="wide">{{ truth | safe }}</div>
<h2>{{ tables_heading }}</h2>
{% for name, table in tables %}<h3>{{ name }}</h3>
<div class="wide">{{ table | safe }}</div>
{% endfor %}<p class="note">{{ notes }}</p>
<h2>Figures</h2>
{% for fig in figures %}<figure id="{{ fig.stem }}">
<img alt="{{ fig.caption }}" src="data:image/png;base64,{{ fig.data }}">
<figcaption>{{ fig.stem }}: {{ fig.caption }}</figcaption>
</figure>
{% endfor %}<h2>Failed fits, by reason</h2>
<p class="note">Per engine and condition: fits run, how many failed or did not
converge, and why (messages grouped, numbers as #; one real message as the example).</p>
{% if failures %}<div class="wide">{{ failures | safe }}</div>
{% else %}<p>None: every fit converged.</p>{% endif %}
</body>
</html>
""",
    autoescape=True,
)


def _text_last(frame: pd.DataFrame) -> str:
    """``"text-last"`` when the last column holds sentences (let it wrap), else ``""``."""
    if frame.empty or frame.columns.size == 0:
        return ""
    last = frame.iloc[:, -1]
    return "text-last" if last.astype(str).str.contains(" ").any() else ""


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the report: file stem, caption, PNG bytes."""

    stem: str
    caption: str
    png: bytes

    @property
    def data(self) -> str:
        """The PNG as base64 text, for an ``img`` data URL."""
        return base64.b64encode(self.png).decode()


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """A Figure rendered to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


@dataclass(frozen=True)
class Report:
    """The content of a report; :meth:`html` and :meth:`markdown` render it."""

    title: str
    header: str
    config: str
    truth: pd.DataFrame
    tables: list[tuple[str, pd.DataFrame]]
    figures: list[ReportFigure]
    failures: pd.DataFrame
    notes: str = FOOTNOTE
    truth_heading: str = "Truth"
    tables_heading: str = "Performance measures"

    def html(self) -> str:
        """One self-contained HTML document."""

        def table(frame: pd.DataFrame, classes: str = "") -> str:
            return frame.to_html(
                index=False,
                na_rep="NA",
                float_format=lambda v: f"{v:.4f}",
                classes=classes or None,
                border=0,
            )

        return _HTML.render(
            title=self.title,
            header=self.header,
            config=self.config,
            truth=table(self.truth),
            tables=[(name, table(frame, _text_last(frame))) for name, frame in self.tables],
            notes=self.notes,
            truth_heading=self.truth_heading,
            tables_heading=self.tables_heading,
            figures=self.figures,
            failures=table(self.failures, "reasons") if len(self.failures) else "",
        )

    def markdown(self, figure_dir: str) -> str:
        """The same content as Markdown, the figures linked from ``figure_dir``."""

        def table(frame: pd.DataFrame) -> str:
            return render(frame, "markdown", digits=4)

        parts = [f"# {self.title}", self.header, "## Configuration", f"```toml\n{self.config}```"]
        parts += [f"## {self.truth_heading}", table(self.truth), f"## {self.tables_heading}"]
        for name, frame in self.tables:
            parts += [f"### {name}", table(frame)]
        parts += [self.notes, "## Figures"]
        for fig in self.figures:
            link = f"![{fig.caption}]({figure_dir}/{fig.stem}.png)"
            parts.append(f"{link}\n\n*{fig.stem}*: {fig.caption}")
        parts.append("## Failed fits, by reason")
        parts.append(table(self.failures) if len(self.failures) else "None: every fit converged.")
        return "\n\n".join(parts) + "\n"
