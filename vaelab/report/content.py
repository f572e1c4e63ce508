"""The report's content as plain data, built once from run directories and then laid out by
`html.render_html` and `pdf.render_pdf`: a section per run (equations, notes, tables, PNG figures)
and, with several runs, a comparison (metrics side by side, validation curves on one plot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..api import Run, load_run
from ..errors import VaelabError
from ..runs import RunDir, read_metrics
from . import plots
from .analysis import label_classes
from .figures import EPOCH_SAMPLES, Figure, run_figures

TABLE_EPOCHS = (1, 10, 25, 50, 100)  # the course reports' table


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

    @property
    def samples_by_epoch(self) -> list[Figure]:
        """The sample grids the trainer saved, in epoch order."""
        return [f for f in self.figures if f.name.startswith(EPOCH_SAMPLES)]

    @property
    def drawn_figures(self) -> list[Figure]:
        """The figures drawn for the report, the curves first: all but the trainer's sample grids."""
        return [f for f in self.figures if not f.name.startswith(EPOCH_SAMPLES)]


@dataclass
class Report:
    title: str
    runs: list[RunSection]
    comparison_tables: list[Table]
    comparison_figures: list[Figure]


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
    ("accuracy", "classification accuracy, Bayes rule argmax_y π_y p(x|y)"),
    ("classifier_accuracy", "classification accuracy, argmax_y q(y|x)"),
    ("unlabelled_elbo", "bound on log p(x) with y summed out, Σ_y q(y|x)[ELBO(x, y) + log π_y] + H"),
]
PERCENT = ("accuracy", "classifier_accuracy")


def metric_value(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "–"
    if key in PERCENT:
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
                         f"from epoch {metrics.get('epoch', '?')}; nats per image)", header=["metric", "value"],
                 rows=rows)


def config_table(run: Run) -> Table:
    c = run.config
    networks = (f"mlp, hidden {'-'.join(map(str, c.hidden))}" if c.network == "mlp"
                else f"{c.network}, {c.channels} channels, depth {c.depth or 'default'}")
    rows = [["model", c.model.upper()], ["dataset", f"{c.dataset} ({c.binarize} binarisation)"],
            ["latent size d", str(c.latent_dim)], ["networks", f"{networks}, {c.activation}"],
            ["prior", "N(0, I)" if c.prior == "standard" else f"VampPrior, K = {c.pseudo_inputs} pseudo-inputs"],
            ["likelihood", c.likelihood],
            ["objective", c.objective + (f", k = {c.samples}" if c.objective == "iwae" else "")
             + (f", KL warm-up over {c.warmup} epochs" if c.warmup else "")],
            ["optimiser", f"Adam, learning rate {c.lr:g} ({c.lr_schedule}), batch {c.batch_size}"],
            ["training set", f"{c.train_on}" + (f", first {c.limit_train} images" if c.limit_train else "")
             + (f", labels of {c.labels} images (label seed {c.label_seed}), the rest unlabelled" if c.labels else "")],
            ["epochs", f"{len(run.metrics)} (max {c.epochs}, patience {c.patience or 'off'})"], ["seed", str(c.seed)]]
    return Table(caption="Configuration", header=["setting", "value"], rows=rows)


def build_run_section(path: str | Path, seed: int = 0, device: str = "auto") -> RunSection:
    """One run's section: its equations, configuration, bound per epoch, test metrics and figures."""
    run = load_run(path, device=device)
    rows = run.metrics
    if not rows:
        raise VaelabError(f"{run.path} has no logged epoch (metrics.jsonl is empty)")
    tables = [config_table(run), epoch_table(rows, run.config.bound_key, run.config.bound_name)]
    notes = [objective_line(run)]
    metrics = test_metrics(RunDir(run.path))
    if metrics is None:
        notes.append(f"Not evaluated on the test set yet: run `vaelab evaluate {run.path}` and write the report again.")
    else:
        tables.append(metrics_table(metrics, conditional=bool(label_classes(run.model))))
    name = f"{run.path.name}: {run.config.model.upper()}, d = {run.config.latent_dim}"
    return RunSection(name=name, path=run.path, equations=run.model.equations(), tables=tables,
                      figures=run_figures(run, seed=seed), notes=notes)


def comparison_table(sections: list[RunSection]) -> Table:
    """The runs side by side: epochs, best validation ELBO and every test metric some run has."""
    evaluations = [test_metrics(RunDir(s.path)) or {} for s in sections]
    histories = [read_metrics(RunDir(s.path).metrics) for s in sections]
    rows = [["epochs trained"] + [str(len(h)) for h in histories],
            ["best validation ELBO"] + [_fmt(max(r["valid_elbo"] for r in h)) for h in histories]]
    for key, label in METRIC_ROWS:
        if any(key in e for e in evaluations):
            if key == "log_likelihood":
                label = "log-likelihood (IS; log p(x | y) for a CVAE), K = " + " / ".join(
                    sorted({str(e["iw_samples"]) for e in evaluations if "iw_samples" in e}))
            rows.append([label] + [metric_value(e, key) for e in evaluations])
    return Table("The runs side by side (nats per image)", ["metric"] + [s.name for s in sections], rows)


def build_report(paths: list[str | Path], title: str | None = None, device: str = "auto") -> Report:
    """The report of one or more run directories; several get a comparison first."""
    sections = [build_run_section(path, device=device) for path in paths]
    names = [s.name for s in sections]
    if len(set(names)) < len(names):  # two runs in folders of the same name: tell them apart by path
        for s in sections:
            s.name = f"{s.path}: {s.name.split(': ', 1)[1]}"
    comparison_tables, comparison_figures = [], []
    if len(sections) > 1:
        histories = [read_metrics(RunDir(s.path).metrics) for s in sections]
        comparison_tables.append(comparison_table(sections))
        comparison_figures.append(Figure("comparison_curves", "Validation ELBO per epoch of every run.",
                                         plots.png_bytes(plots.comparison_curves_figure(list(zip(names, histories))))))
    return Report(title=title or "vaelab report", runs=sections, comparison_tables=comparison_tables,
                  comparison_figures=comparison_figures)
