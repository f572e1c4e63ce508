"""The report as a PDF with the same content as the page: A4 pages drawn with matplotlib, a cover
(with the comparison tables), then per run a page of text and three pages of figures."""

from __future__ import annotations

import io
import textwrap

import matplotlib
import matplotlib.image
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure as Page

from .content import Report, Table
from .figures import Figure

A4 = (8.27, 11.69)  # inches


def pdf_page_count(report: Report) -> int:
    """Pages `render_pdf` writes: a cover, four per run, and one of side-by-side figures if several runs."""
    return 1 + 4 * len(report.runs) + (1 if len(report.runs) > 1 else 0)


def render_pdf(report: Report) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(buffer) as pdf:  # TrueType: text stays searchable
        cover = ["Figures in nats per image; images show Bernoulli means.",
                 "Runs: " + "; ".join(s.name for s in report.runs)]
        _text_page(pdf, report.title, cover + report.comparison_tables)
        for section in report.runs:
            _text_page(pdf, section.name, [section.equations] + section.notes + section.tables)
            _image_page(pdf, f"{section.name}: training",
                        [[section.figure("curves")]] + _pairs(section.samples_by_epoch[-4:]))
            _image_page(pdf, f"{section.name}: samples and reconstructions",
                        [[section.figure("samples")], [section.figure("reconstructions")]])
            latent = [f for f in section.figures if f.name in ("latent", "manifold", "style_transfer")]
            manifolds = [f for f in section.figures if f.name.startswith("manifold_class_")]
            _image_page(pdf, f"{section.name}: latent space", [[f] for f in latent] + _pairs(manifolds, 5))
        if len(report.runs) > 1:
            samples = [s.figure("samples") for s in report.runs]
            _image_page(pdf, "Comparison", [report.comparison_figures] + _pairs(samples, 3))
    return buffer.getvalue()


def _text_page(pdf: PdfPages, title: str, blocks: list[str | list[str] | Table]) -> None:
    """A page of text: a title, then equations (list[str]), notes (str) and tables, top to bottom."""
    figure = Page(figsize=A4)  # a plain Figure: no pyplot, no backend, nothing to close
    y = 0.95
    figure.text(0.07, y, title, fontsize=15, weight="bold", va="top")
    y -= 0.05
    for block in blocks:
        if isinstance(block, str):
            figure.text(0.07, y, block, fontsize=9.5, va="top", wrap=True)
            y -= 0.03
        elif isinstance(block, list):
            for line in block:
                figure.text(0.09, y, line, fontsize=10, va="top", family="DejaVu Serif")
                y -= 0.024
            y -= 0.015
        else:
            figure.text(0.07, y, block.caption, fontsize=10, weight="bold", va="top")
            y -= 0.022
            height = 0.022 * (len(block.rows) + 1)
            axes = figure.add_axes((0.07, y - height, 0.86, height))
            axes.axis("off")
            table = axes.table(cellText=block.rows, colLabels=block.header, loc="upper left", cellLoc="left")
            table.auto_set_font_size(False)
            table.set_fontsize(8.5)
            table.scale(1, 1.15)
            y -= height + 0.04
    pdf.savefig(figure)


def _image_page(pdf: PdfPages, title: str, rows: list[list[Figure]]) -> None:
    """A page of figures, row by row; each row shares the width, and rows shrink to fit the page."""
    figure = Page(figsize=A4)
    figure.text(0.07, 0.96, title, fontsize=13, weight="bold", va="top")
    width, caption_height = 0.86, 0.035
    page_ratio = A4[0] / A4[1]

    def row_height(row):  # in page fractions, at full width
        cell = width / len(row)
        return max(cell * f.size[1] / f.size[0] * page_ratio for f in row) + caption_height

    heights = [row_height(row) for row in rows]
    scale = min(1.0, 0.88 / sum(heights))
    top = 0.92
    for row, height in zip(rows, heights):
        cell = width / len(row)
        for index, item in enumerate(row):
            image = matplotlib.image.imread(io.BytesIO(item.png), format="png")
            image_height = (height - caption_height) * scale
            left = 0.07 + index * cell
            axes = figure.add_axes((left, top - image_height, cell - 0.01, image_height))
            axes.imshow(image, interpolation="lanczos")
            axes.axis("off")
            caption = textwrap.fill(item.caption, width=max(30, int(120 * cell)))
            figure.text(left, top - image_height - 0.004, caption, fontsize=7, va="top")
        top -= height * scale + 0.01
    pdf.savefig(figure)


def _pairs(figures: list[Figure], per_row: int = 2) -> list[list[Figure]]:
    return [figures[i : i + per_row] for i in range(0, len(figures), per_row)]
