"""The report as one self-contained HTML page: templates/report.html rendered by Jinja2 with
autoescaping, so a title, run name or caption holding `<` or `&` shows as written. The styles live
in templates/style.css (included into the page); images are embedded as data URIs, so the page
reads offline.
"""

from __future__ import annotations

import base64

from jinja2 import Environment, PackageLoader, StrictUndefined

from .content import Report, RunSection
from .figures import Figure

COLUMN_FIGURES = ("samples", "reconstructions", "latent", "curves")  # shown side by side in a comparison
FIGURE_HEADINGS = {"samples": "Fresh samples", "reconstructions": "Reconstructions of test images",
                   "latent": "Latent space", "manifold": "Decoded manifold", "style_transfer": "Style transfer"}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def heading_above(figure: Figure) -> str | None:
    """The heading a run's figure starts with: one per kind; the per-class manifolds share one."""
    if figure.name.startswith("manifold_class_"):
        return FIGURE_HEADINGS["manifold"] if figure.name == "manifold_class_0" else None
    return FIGURE_HEADINGS.get(figure.name)


def side_by_side(runs: list[RunSection]) -> list[tuple[str, list[tuple[str, Figure]]]]:
    """The comparison's rows of figures: (heading, [(run name, figure), ...]) for each kind some run has."""
    rows = []
    for kind in COLUMN_FIGURES:
        row = [(section.name, section.figure(kind)) for section in runs if section.figure(kind)]
        if row:
            rows.append((kind.replace("_", " ").capitalize(), row))
    return rows


def page_environment() -> Environment:
    """Jinja2 over vaelab/report/templates, escaping every value it inserts."""
    environment = Environment(loader=PackageLoader("vaelab.report", "templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["data_uri"] = data_uri
    return environment


def render_html(report: Report) -> str:
    template = page_environment().get_template("report.html")
    return template.render(report=report, side_by_side=side_by_side(report.runs), heading_above=heading_above)
