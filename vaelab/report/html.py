"""The report as one self-contained HTML page, images embedded as data URIs so it reads offline."""

from __future__ import annotations

import base64
import html

from .content import Report, Table
from .figures import Figure

COLUMN_FIGURES = ("samples", "reconstructions", "latent", "curves")  # shown side by side in a comparison
FIGURE_HEADINGS = {"samples": "Fresh samples", "reconstructions": "Reconstructions of test images",
                   "latent": "Latent space", "manifold": "Decoded manifold", "style_transfer": "Style transfer"}


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1rem;
line-height:1.45;color:#1a1a1a}
h1{font-size:1.7rem}h2{font-size:1.35rem;border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.1rem;margin-top:1.6rem}
.eq{font-family:"Cambria Math","STIX Two Math","DejaVu Serif",serif;background:#f6f8fa;border-radius:6px;
padding:.6rem .9rem;overflow-x:auto}.eq div{white-space:nowrap;margin:.15rem 0}
.table-wrap{overflow-x:auto}table{border-collapse:collapse;margin:.6rem 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:right}th:first-child,td:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3rem 0}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;display:block}figcaption{font-size:.9rem;color:#444}
.row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}.row figure{flex:1 1 220px;min-width:0}
.cols{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(260px,1fr))}
.note{color:#555}nav a{margin-right:1rem}
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return (f'<div class="table-wrap"><table><caption>{html.escape(table.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _figure_html(figure: Figure) -> str:
    width, height = figure.size
    data = base64.b64encode(figure.png).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{html.escape(figure.caption)}"><figcaption>{html.escape(figure.caption)}</figcaption></figure>')


def render_html(report: Report) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>",
             "<p class='note'>All figures in nats per image (higher is better for bounds and log-likelihoods). "
             "Images show Bernoulli means, not thresholded samples.</p>"]
    parts.append("<nav>" + "".join(f"<a href='#run{i}'>{html.escape(s.name)}</a>" for i, s in enumerate(report.runs))
                 + ("<a href='#comparison'>Comparison</a>" if report.comparison_tables else "") + "</nav>")
    if report.comparison_tables:
        parts.append("<h2 id='comparison'>Comparison</h2>")
        parts += [_table_html(t) for t in report.comparison_tables]
        parts += [_figure_html(f) for f in report.comparison_figures]
        for kind in COLUMN_FIGURES:
            row = [(s.name, s.figure(kind)) for s in report.runs if s.figure(kind)]
            if row:
                parts.append(f"<h3>{html.escape(kind.replace('_', ' ').capitalize())}, run by run</h3><div class='cols'>")
                parts += [f"<div><strong>{html.escape(name)}</strong>{_figure_html(fig)}</div>" for name, fig in row]
                parts.append("</div>")
    for index, section in enumerate(report.runs):
        parts.append(f"<h2 id='run{index}'>{html.escape(section.name)}</h2>")
        parts.append("<h3>Model</h3><div class='eq'>" + "".join(f"<div>{html.escape(e)}</div>"
                                                               for e in section.equations) + "</div>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in section.notes]
        parts += [_table_html(t) for t in section.tables]
        by_epoch = section.samples_by_epoch
        others = section.model_figures
        parts.append("<h3>Figures</h3>")
        parts.append(_figure_html(others[0]))  # the curves
        if by_epoch:
            parts.append("<h3>Samples as training goes on</h3><div class='row'>")
            parts += [_figure_html(f) for f in by_epoch]
            parts.append("</div>")
        for figure in others[1:]:
            heading = FIGURE_HEADINGS.get(figure.name.split("_class_")[0])
            if heading and not figure.name.startswith("manifold_class_") or figure.name == "manifold_class_0":
                parts.append(f"<h3>{heading}</h3>")
            parts.append(_figure_html(figure))
    parts.append("</body></html>")
    return "\n".join(parts)
