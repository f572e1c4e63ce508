"""The report: one self-contained HTML page (and optionally a PDF with the same content) for one or
more run directories, with a comparison section when there are several.

The content is built once (`build_report`) as plain data: equations, tables and PNG figures. Then
`render_html` and `render_pdf` lay it out. Each run's figures are also written as PNG files to
DIR/figures/ so that users can put them in their own documents.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import analysis, plots
from .api import Run, load_run
from .errors import VaelabError
from .runs import RunDir, atomic_write_bytes, read_metrics

TABLE_EPOCHS = (1, 10, 25, 50, 100)  # the course reports' table
LATENT_POINTS = 5000


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "curves"
    caption: str
    png: bytes

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, read from the PNG header."""
        return int.from_bytes(self.png[16:20], "big"), int.from_bytes(self.png[20:24], "big")


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class RunSection:
    name: str
    path: Path
    equations: list[str]
    tables: list[Table]
    figures: list[Figure]
    notes: list[str] = field(default_factory=list)

    def figure(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)


@dataclass
class Report:
    title: str
    runs: list[RunSection]
    comparison_tables: list[Table]
    comparison_figures: list[Figure]


# ---------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------


def model_equations(run: Run) -> list[str]:
    """The model and its bound as lines of Unicode math, the same in HTML and PDF."""
    c = run.config
    width = "-".join(map(str, c.hidden)) + f" {c.activation}"
    decoder = {"bernoulli": "Bernoulli(σ(f_θ({inputs})))", "gaussian": "N(σ(f_θ({inputs})), diag s²)",
               "continuous-bernoulli": "ContinuousBernoulli(σ(f_θ({inputs})))"}[c.likelihood]
    if run.model.conditional:
        return [
            "y ~ Categorical(π),  π_j = 1/10",
            f"z ~ N(0, I_d),  d = {c.latent_dim}",
            "x | y, z ~ " + decoder.format(inputs="z, onehot(y)") + f",  f_θ: MLP {width}",
            f"q_φ(z | x, y) = N(μ_φ(x, y), diag σ²_φ(x, y)),  MLP {width}",
            "ELBO(x, y) = E_q[log p_θ(x | y, z)] − KL(q_φ(z | x, y) ‖ p(z)) ≤ log p_θ(x | y)",
            "log p(x) = log Σ_y π_y p_θ(x | y);   ŷ(x) = argmax_y π_y p_θ(x | y)",
        ]
    return [
        f"z ~ N(0, I_d),  d = {c.latent_dim}",
        "x | z ~ " + decoder.format(inputs="z") + f",  f_θ: MLP {width}",
        f"q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x)),  MLP {width}",
        "ELBO(x) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)) ≤ log p_θ(x)",
    ]


def objective_line(run: Run) -> str:
    c = run.config
    if c.objective == "iwae":
        return f"Trained on the importance-weighted bound with k = {c.samples} samples."
    return f"Trained on the ELBO (SGVB, {c.samples} reparameterised sample(s) per image, analytic KL)."


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def epoch_table(rows: list[dict], bound_key: str, bound_name: str) -> Table:
    reached = {row["epoch"]: row for row in rows}
    wanted = [e for e in TABLE_EPOCHS if e in reached]
    if rows and rows[-1]["epoch"] not in wanted:
        wanted.append(rows[-1]["epoch"])
    return Table(
        caption="The bound per epoch (nats per image; training bound averaged over the epoch)",
        header=["epoch", f"training {bound_name}", "validation ELBO", "validation recon.", "validation KL"],
        rows=[[str(e), _fmt(reached[e][bound_key]), _fmt(reached[e]["valid_elbo"]),
               _fmt(-reached[e]["valid_recon"]), _fmt(reached[e]["valid_kl"])] for e in wanted],
    )


def test_metrics(run_dir: RunDir) -> dict | None:
    if not run_dir.eval.is_file():
        return None
    return json.loads(run_dir.eval.read_text())


METRIC_ROWS = [
    ("elbo", "test ELBO"),
    ("recon", "reconstruction term −E_q[log p(x|z)]"),
    ("kl", "KL term"),
    ("log_likelihood", "log-likelihood (IS)"),
    ("log_likelihood_marginal", "marginal log p(x) = log Σ_y π_y p(x|y)"),
    ("accuracy", "classification accuracy, argmax_y p(y|x)"),
]


def metric_value(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "–"
    if key == "accuracy":
        return f"{100 * metrics[key]:.2f}%"
    if key == "recon":
        return _fmt(-metrics[key])
    return _fmt(metrics[key])


def metrics_table(metrics: dict, conditional: bool) -> Table:
    name = "log p(x | y)" if conditional else "log p(x)"
    rows = []
    for key, label in METRIC_ROWS:
        if key in metrics:
            if key == "log_likelihood":
                label = f"{name}, importance sampling, K = {metrics['iw_samples']}"
            rows.append([label, metric_value(metrics, key)])
    return Table(caption=f"Test set ({metrics['n_test']} images, checkpoint '{metrics.get('checkpoint', 'best')}' "
                         f"from epoch {metrics.get('epoch', '?')}; nats per image)", header=["metric", "value"], rows=rows)


def config_table(run: Run) -> Table:
    c = run.config
    rows = [["model", c.model.upper()], ["dataset", f"{c.dataset} ({c.binarize} binarisation)"],
            ["latent size d", str(c.latent_dim)], ["hidden layers", "-".join(map(str, c.hidden)) + f" {c.activation}"],
            ["likelihood", c.likelihood], ["objective", c.objective + (f", k = {c.samples}" if c.objective == "iwae" else "")],
            ["optimiser", f"Adam, learning rate {c.lr:g}, batch {c.batch_size}"],
            ["training set", f"{c.train_on}" + (f", first {c.limit_train} images" if c.limit_train else "")],
            ["epochs", f"{len(run.metrics)} (max {c.epochs}, patience {c.patience or 'off'})"], ["seed", str(c.seed)]]
    return Table(caption="Configuration", header=["setting", "value"], rows=rows)


def run_figures(run: Run, seed: int = 0) -> list[Figure]:
    """Every figure of one run, as PNG bytes."""
    rows = run.metrics
    bound_key, bound_name = run.config.bound_key, run.config.bound_name
    names = run.class_names
    model_name = run.config.model.upper()
    figures = [Figure("curves", "The bound per epoch (left) and the validation ELBO's reconstruction and KL terms"
                      " (right), in nats per image.", plots.png_bytes(plots.curves_figure(rows, bound_key, bound_name)))]

    grids = sorted(RunDir(run.path).samples.glob("epoch_*.png"))
    for grid in grids:
        epoch = int(grid.stem.split("_")[1])
        figures.append(Figure(f"samples_epoch_{epoch:03d}", f"Samples after epoch {epoch} (Bernoulli means), "
                              "from the same z at every epoch.", grid.read_bytes()))

    images, labels = run.sample(n=64, per_class=8, seed=seed)
    if labels is not None:
        fig = plots.grid_figure(images, 8, f"{model_name} samples, one row per class (Bernoulli means)",
                                row_labels=[names[c] for c in labels[::8]])
    else:
        fig = plots.grid_figure(images, 8, f"{model_name} random samples (Bernoulli means)")
    figures.append(Figure("samples", "Fresh samples from the prior (Bernoulli means, not thresholded).",
                          plots.png_bytes(fig)))

    test = run.test_data()
    test_labels = test.y.cpu().numpy()
    pick = analysis.pick_examples(test_labels, 1, seed=seed)
    x, y = test.x[pick], test.y[pick]
    conditional_y = y if run.model.conditional else None
    recon = run.reconstruct(x.cpu().numpy(), None if conditional_y is None else y.cpu().numpy())
    both = np.concatenate([x.cpu().numpy(), recon])
    figures.append(Figure("reconstructions", "Test images (top) and the means of p(x | z = E_q[z]) (bottom).",
                          plots.png_bytes(plots.grid_figure(both, len(pick), f"{model_name} reconstructions",
                                                            row_labels=["test image", "reconstruction"],
                                                            row_axis=""))))

    subset = np.random.default_rng(seed).choice(len(test_labels), size=min(LATENT_POINTS, len(test_labels)),
                                                replace=False)
    codes = analysis.latent_means(run.model, test.x[subset], test.y[subset] if run.model.conditional else None)
    projection = analysis.project_2d(codes)
    if projection.explained is None:
        axis_names, how = ("z_1", "z_2"), "the posterior means themselves (d = 2)"
    else:
        axis_names = (f"PC 1 ({100 * projection.explained[0]:.0f}% of variance)",
                      f"PC 2 ({100 * projection.explained[1]:.0f}% of variance)")
        how = f"the first two principal components of the posterior means (d = {run.config.latent_dim})"
    given = " given y" if run.model.conditional else ""
    why = (" The classes overlap: the label y carries the class, so z is free to hold only style."
           if run.model.conditional else "")
    figures.append(Figure("latent", f"{len(subset)} test images in latent space{given}: {how}, coloured by class.{why}",
                          plots.png_bytes(plots.latent_figure(projection.points, test_labels[subset], names,
                                                              f"Test codes E_q[z]{given}", axis_names))))
    if run.config.latent_dim == 2:
        if run.model.conditional:
            for label in range(run.model.num_classes):
                images, coords = analysis.manifold(run.model, steps=10, label=label)
                figures.append(Figure(f"manifold_class_{label}", f"Decoded manifold for class {names[label]}.",
                                      plots.png_bytes(plots.manifold_figure(images, coords, f"class {names[label]}"))))
        else:
            images, coords = analysis.manifold(run.model, steps=15)
            figures.append(Figure("manifold", "The decoded manifold: means of p(x | z) over a grid of z at the "
                                  "prior's 5%-95% quantiles.", plots.png_bytes(plots.manifold_figure(
                                      images, coords, "Decoded manifold over z"))))
    if run.model.conditional:
        pick = analysis.pick_examples(test_labels, 1, seed=seed + 1)
        transfer = analysis.style_transfer(run.model, test.x[pick], test.y[pick])
        images = np.concatenate([np.concatenate([test.x[pick].cpu().numpy()[i : i + 1], transfer[i]])
                                 for i in range(len(pick))])
        fig = plots.grid_figure(images, run.model.num_classes + 1, "Style transfer: z from the test image, decoded "
                                "with every label", row_labels=[f"test {names[c]}" for c in test_labels[pick]],
                                column_labels=["input"] + list(names), row_axis="", column_axis="decoded with label y")
        figures.append(Figure("style_transfer", "Each test image (left) is encoded with its own label; the same z is "
                              "decoded with every label 0-9. What stays the same is what z holds once y is given: "
                              "slant, thickness, size.", plots.png_bytes(fig)))
    return figures


def build_run_section(path: str | Path, seed: int = 0, device: str = "auto") -> RunSection:
    run = load_run(path, device=device)
    run_dir = RunDir(run.path)
    rows = run.metrics
    if not rows:
        raise VaelabError(f"{run.path} has no logged epoch (metrics.jsonl is empty)")
    bound_key, bound_name = run.config.bound_key, run.config.bound_name
    tables = [config_table(run), epoch_table(rows, bound_key, bound_name)]
    notes = [objective_line(run)]
    metrics = test_metrics(run_dir)
    if metrics is None:
        notes.append(f"Not evaluated on the test set yet: run `vaelab evaluate {run.path}` and write the report again.")
    else:
        tables.append(metrics_table(metrics, run.model.conditional))
    figures = run_figures(run, seed=seed)
    for figure in figures:
        if not figure.name.startswith("samples_epoch_"):
            atomic_write_bytes(run_dir.path / "figures" / f"{figure.name}.png", figure.png)
    name = f"{run.path.name}: {run.config.model.upper()}, d = {run.config.latent_dim}"
    return RunSection(name=name, path=run.path, equations=model_equations(run), tables=tables, figures=figures,
                      notes=notes)


def build_report(paths: list[str | Path], title: str | None = None, device: str = "auto") -> Report:
    sections = [build_run_section(path, device=device) for path in paths]
    names = [s.name for s in sections]
    if len(set(names)) < len(names):
        for s in sections:
            s.name = f"{s.path}: {s.name.split(': ', 1)[1]}"
    comparison_tables, comparison_figures = [], []
    if len(sections) > 1:
        evaluations = [test_metrics(RunDir(s.path)) or {} for s in sections]
        histories = [read_metrics(RunDir(s.path).metrics) for s in sections]
        header = ["metric"] + [s.name for s in sections]
        rows = [["epochs trained"] + [str(len(h)) for h in histories],
                ["best validation ELBO"] + [_fmt(max(r["valid_elbo"] for r in h)) for h in histories]]
        for key, label in METRIC_ROWS:
            if any(key in e for e in evaluations):
                if key == "log_likelihood":
                    label = "log-likelihood (IS; log p(x | y) for a CVAE), K = " + " / ".join(
                        sorted({str(e["iw_samples"]) for e in evaluations if "iw_samples" in e}))
                rows.append([label] + [metric_value(e, key) for e in evaluations])
        comparison_tables.append(Table("The runs side by side (nats per image)", header, rows))
        comparison_figures.append(Figure("comparison_curves", "Validation ELBO per epoch of every run.",
                                         plots.png_bytes(plots.comparison_curves_figure(list(zip(names, histories))))))
    return Report(title=title or "vaelab report", runs=sections, comparison_tables=comparison_tables,
                  comparison_figures=comparison_figures)


COLUMN_FIGURES = ("samples", "reconstructions", "latent", "curves")  # shown side by side in a comparison
FIGURE_HEADINGS = {"samples": "Fresh samples", "reconstructions": "Reconstructions of test images",
                   "latent": "Latent space", "manifold": "Decoded manifold", "style_transfer": "Style transfer"}


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

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
        by_epoch = [f for f in section.figures if f.name.startswith("samples_epoch_")]
        others = [f for f in section.figures if not f.name.startswith("samples_epoch_")]
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


# ---------------------------------------------------------------------------------------------
# PDF (matplotlib, A4 pages)
# ---------------------------------------------------------------------------------------------

A4 = (8.27, 11.69)


def _text_page(pdf, title: str, blocks: list):
    """A page of text: a title, then equations (list[str]), notes (str) and tables, top to bottom."""
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=A4)
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
    plt.close(figure)


def _image_page(pdf, title: str, rows: list[list[Figure]]):
    """A page of figures, row by row; each row shares the width, and rows shrink to fit the page."""
    import textwrap

    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=A4)
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
            image = plt.imread(io.BytesIO(item.png), format="png")
            image_height = (height - caption_height) * scale
            left = 0.07 + index * cell
            axes = figure.add_axes((left, top - image_height, cell - 0.01, image_height))
            axes.imshow(image, interpolation="lanczos")
            axes.axis("off")
            caption = textwrap.fill(item.caption, width=max(30, int(120 * cell)))
            figure.text(left, top - image_height - 0.004, caption, fontsize=7, va="top")
        top -= height * scale + 0.01
    pdf.savefig(figure)
    plt.close(figure)


def _pairs(figures: list[Figure], per_row: int = 2) -> list[list[Figure]]:
    return [figures[i : i + per_row] for i in range(0, len(figures), per_row)]


def pdf_page_count(report: Report) -> int:
    """Pages `render_pdf` writes: a cover, four per run, and one of side-by-side figures if several runs."""
    return 1 + 4 * len(report.runs) + (1 if len(report.runs) > 1 else 0)


def render_pdf(report: Report) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(buffer) as pdf:  # TrueType: text stays searchable
        cover = ["Figures in nats per image; images show Bernoulli means.",
                 "Runs: " + "; ".join(s.name for s in report.runs)]
        _text_page(pdf, report.title, cover + report.comparison_tables)
        for section in report.runs:
            _text_page(pdf, section.name, [section.equations] + section.notes + section.tables)
            by_epoch = [f for f in section.figures if f.name.startswith("samples_epoch_")][-4:]
            named = {f.name: f for f in section.figures}
            _image_page(pdf, f"{section.name}: training", [[named["curves"]]] + _pairs(by_epoch))
            _image_page(pdf, f"{section.name}: samples and reconstructions",
                        [[named["samples"]], [named["reconstructions"]]])
            latent = [f for f in section.figures if f.name in ("latent", "manifold", "style_transfer")]
            manifolds = [f for f in section.figures if f.name.startswith("manifold_class_")]
            _image_page(pdf, f"{section.name}: latent space", [[f] for f in latent] + _pairs(manifolds, 5))
        if len(report.runs) > 1:
            samples = [s.figure("samples") for s in report.runs]
            _image_page(pdf, "Comparison", [report.comparison_figures] + _pairs(samples, 3))
    return buffer.getvalue()


def write_report(paths: list[str | Path], html_path: str | Path, pdf_path: str | Path | None = None,
                 title: str | None = None, device: str = "auto") -> Report:
    """Build the report for `paths` and write the HTML (and PDF) atomically."""
    for target in [html_path] + ([pdf_path] if pdf_path else []):
        if not Path(target).parent.exists():
            raise VaelabError(f"cannot write {target}: folder {Path(target).parent} does not exist")
    report = build_report(paths, title=title, device=device)
    atomic_write_bytes(Path(html_path), render_html(report).encode())
    if pdf_path:
        atomic_write_bytes(Path(pdf_path), render_pdf(report))
    return report
