"""The report as a PDF with the same content as the page: A4 pages drawn with matplotlib. The first
page carries the results (the test table, or the comparison table for several runs, and the key
figure: the run's samples, or the runs' curves), then per run a page of text and three pages of
figures, and with several runs a page of their figures side by side."""

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
LEFT, WIDTH = 0.07, 0.86  # the text column, in page fractions
TABLE_CHARACTERS = 112  # characters of 8.5 pt text across the column
TABLE_LINE = 0.0135  # page fraction per line of a table cell


def pdf_page_count(report: Report) -> int:
    """Pages `render_pdf` writes: the results page, four per run, and one of side-by-side figures if several runs."""
    return 1 + 4 * len(report.runs) + (1 if len(report.runs) > 1 else 0)


def render_pdf(report: Report) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(buffer) as pdf:  # TrueType: text stays searchable
        _results_page(pdf, report)
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


def _results_page(pdf: PdfPages, report: Report) -> None:
    """The first page: the title, what the numbers and images are, the results table(s), the key figure."""
    figure = Page(figsize=A4)  # a plain Figure: no pyplot, no backend, nothing to close
    blocks: list[str | list[str] | Table] = [
        f"Numbers in nats per image (higher is better for bounds and log-likelihoods). {report.image_note}",
        "Runs: " + "; ".join(s.name for s in report.runs)]
    tables = report.headline_tables
    if not tables and report.runs:
        blocks.append("Not evaluated on the test set yet: run `vaelab evaluate RUN` and write the report again.")
    y = _blocks(figure, 0.95 - _title(figure, 0.95, report.title, 15), blocks + tables)
    key = report.headline_figure
    if key is not None and y > 0.15:
        _place(figure, key, top=y, bottom=0.05)
    pdf.savefig(figure)


def _title(figure: Page, y: float, title: str, size: float) -> float:
    """Draw a (wrapped) title at y; the height it takes, in page fractions."""
    lines = textwrap.wrap(title, width=int(55 * 15 / size)) or [""]  # about 55 bold characters of 15 pt a line
    figure.text(LEFT, y, "\n".join(lines), fontsize=size, weight="bold", va="top")
    return 0.05 + (len(lines) - 1) * size / 72 / A4[1] * 1.25


def _text_page(pdf: PdfPages, title: str, blocks: list[str | list[str] | Table]) -> None:
    """A page of text: a title, then equations (list[str]), notes (str) and tables, top to bottom."""
    figure = Page(figsize=A4)
    _blocks(figure, 0.95 - _title(figure, 0.95, title, 15), blocks)
    pdf.savefig(figure)


def _blocks(figure: Page, y: float, blocks: list[str | list[str] | Table]) -> float:
    """Draw equations (list[str]), notes (str) and tables from y down; the y below them."""
    for block in blocks:
        if isinstance(block, str):
            lines = textwrap.wrap(block, width=105) or [""]
            figure.text(LEFT, y, "\n".join(lines), fontsize=9.5, va="top")
            y -= 0.0165 * len(lines) + 0.012
        elif isinstance(block, list):
            for line in block:
                figure.text(LEFT + 0.02, y, line, fontsize=10, va="top", family="DejaVu Serif")
                y -= 0.024
            y -= 0.015
        else:
            y = _table(figure, y, block)
    return y


def _table(figure: Page, y: float, table: Table) -> float:
    """A table with its caption from y down, every cell wrapped to its column; the y below it."""
    caption = textwrap.wrap(table.caption, width=92) or [""]
    figure.text(LEFT, y, "\n".join(caption), fontsize=10, weight="bold", va="top")
    y -= 0.0175 * len(caption) + 0.006
    rows = [table.header] + table.rows
    widths = column_widths([max(len(str(row[j])) for row in rows) + 2 for j in range(len(table.header))])
    cells = [["\n".join(textwrap.wrap(str(cell), width=max(4, w - 2)) or [""]) for cell, w in zip(row, widths)]
             for row in rows]
    lines = [max(cell.count("\n") + 1 for cell in row) for row in cells]
    height = TABLE_LINE * (sum(lines) + 0.6 * len(lines))
    axes = figure.add_axes((LEFT, y - height, WIDTH, height))
    axes.axis("off")
    drawn = axes.table(cellText=cells[1:], colLabels=cells[0], cellLoc="left", bbox=(0, 0, 1, 1),
                       colWidths=[w / sum(widths) for w in widths])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8.5)
    for (row, column), cell in drawn.get_celld().items():
        cell.set_height(lines[row] + 0.6)  # relative: the bounding box scales the rows to `height`
        cell.PAD = 0.7 / widths[column]  # about one character of padding, whatever the column's width
    return y - height - 0.03


def column_widths(natural: list[int], total: int = TABLE_CHARACTERS) -> list[int]:
    """Characters per column: each column its natural width where they fit in `total`, else the
    narrow ones theirs and the wide ones an even share of what is left (max-min fair)."""
    widths = [0] * len(natural)
    left, open_columns = total, sorted(range(len(natural)), key=lambda j: natural[j])
    while open_columns:
        share = left // len(open_columns)
        j = open_columns.pop(0)
        widths[j] = min(natural[j], share) if open_columns else max(min(natural[j], left), 1)
        left -= widths[j]
    return widths


def _place(figure: Page, item: Figure, top: float, bottom: float) -> None:
    """One figure with its caption between `top` and `bottom`, as large as the column allows."""
    caption = textwrap.fill(item.caption, width=125)
    caption_height = 0.014 * (caption.count("\n") + 1) + 0.006
    page_ratio = A4[0] / A4[1]
    height = min(top - bottom - caption_height, WIDTH * item.size[1] / item.size[0] * page_ratio)
    width = height * item.size[0] / item.size[1] / page_ratio
    axes = figure.add_axes((LEFT + (WIDTH - width) / 2, top - height, width, height))
    axes.imshow(matplotlib.image.imread(io.BytesIO(item.png), format="png"), interpolation="lanczos")
    axes.axis("off")
    figure.text(LEFT, top - height - 0.004, caption, fontsize=7.5, va="top")


def _image_page(pdf: PdfPages, title: str, rows: list[list[Figure]]) -> None:
    """A page of figures, row by row; each row shares the width, and rows shrink to fit the page."""
    figure = Page(figsize=A4)
    figure.text(LEFT, 0.96, title, fontsize=13, weight="bold", va="top")
    caption_height = 0.035
    page_ratio = A4[0] / A4[1]

    def row_height(row):  # in page fractions, at full width
        cell = WIDTH / len(row)
        return max(cell * f.size[1] / f.size[0] * page_ratio for f in row) + caption_height

    heights = [row_height(row) for row in rows]
    scale = min(1.0, 0.88 / sum(heights))
    top = 0.92
    for row, height in zip(rows, heights):
        cell = WIDTH / len(row)
        for index, item in enumerate(row):
            image = matplotlib.image.imread(io.BytesIO(item.png), format="png")
            image_height = (height - caption_height) * scale
            left = LEFT + index * cell
            axes = figure.add_axes((left, top - image_height, cell - 0.01, image_height))
            axes.imshow(image, interpolation="lanczos")
            axes.axis("off")
            caption = textwrap.fill(item.caption, width=max(30, int(120 * cell)))
            figure.text(left, top - image_height - 0.004, caption, fontsize=7, va="top")
        top -= height * scale + 0.01
    pdf.savefig(figure)


def _pairs(figures: list[Figure], per_row: int = 2) -> list[list[Figure]]:
    return [figures[i : i + per_row] for i in range(0, len(figures), per_row)]
