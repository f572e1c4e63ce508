"""Writing the report: the HTML page, the PDF if asked for, and each run's figures as PNG files in
RUN/figures/, every file atomically."""

from __future__ import annotations

from pathlib import Path

from ..api import Run
from ..errors import VaelabError
from ..runs import RunDir
from ..runtime.files import atomic_write_bytes
from .content import Report, build_report
from .figures import Figure
from .html import render_html
from .pdf import render_pdf


def write_report(paths: "list[str | Path | Run]", html_path: str | Path, pdf_path: str | Path | None = None,
                 title: str | None = None, device: str = "auto") -> Report:
    """Build the report for `paths` (run directories, or `Run`s as `vaelab.train` and `vaelab.load_run`
    give them) and write the HTML (and PDF) atomically."""
    for target in [html_path] + ([pdf_path] if pdf_path else []):
        if not Path(target).parent.exists():
            raise VaelabError(f"cannot write {target}: folder {Path(target).parent} does not exist")
    report = build_report(paths, title=title, device=device)
    for section in report.runs:
        write_run_figures(section.path, section.drawn_figures)
    atomic_write_bytes(Path(html_path), render_html(report).encode())
    if pdf_path:
        atomic_write_bytes(Path(pdf_path), render_pdf(report))
    return report


def write_run_figures(run_path: Path, figures: list[Figure]) -> None:
    """The report's figures of one run as RUN/figures/NAME.png, for users' own documents."""
    for figure in figures:
        atomic_write_bytes(RunDir(run_path).path / "figures" / f"{figure.name}.png", figure.png)
