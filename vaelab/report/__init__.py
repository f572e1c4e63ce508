"""The report wing: one self-contained HTML page (and optionally a PDF with the same content) for one
or more run directories, with a comparison section when there are several.

    content.py    what the report says: Report, RunSection, Table; sections built from run directories
    figures.py    the figures of one run (Figure: a name, a caption, PNG bytes)
    analysis.py   the numbers behind the figures: latent means, 2-D projection, manifold, style transfer
    plots.py      matplotlib figures and the sample/reconstruction PNGs the trainer and the CLI write
    html.py       the page, from templates/report.html (Jinja2, autoescaped) and templates/style.css
    pdf.py        the PDF, A4 pages drawn with matplotlib
    write.py      write_report: build once, write the HTML, the PDF and every run's figures/*.png
"""

from .content import Report, RunSection, Table, build_report, build_run_section
from .figures import Figure
from .html import render_html
from .pdf import pdf_page_count, render_pdf
from .write import write_report

__all__ = ["Figure", "Report", "RunSection", "Table", "build_report", "build_run_section", "pdf_page_count",
           "render_html", "render_pdf", "write_report"]
