"""The report's content as plain data, built once from run directories and then laid out by
`html.render_html` and `pdf.render_pdf`: a section per run (equations, notes, tables, PNG figures)
and, with several runs, a comparison (metrics side by side, validation curves on one plot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


from .. import pictures
from ..api import Run, load_run
from ..errors import VaelabError
from ..models import Classifies, class_conditional
from ..runs import RunDir, read_metrics
from .analysis import label_classes
from .figures import EPOCH_SAMPLES, Figure, run_figures

TABLE_EPOCHS = (1, 10, 25, 50, 100)  # the epochs of the classic bound-per-epoch table


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class RunSection:
    """One run's part of the report. `mean_words` names what its images show ("Bernoulli means", ...;
    None: not known); `conditional`: the model has a class label y; `parts`: its bound's parts in
    words (the family's `part_words`); `test_table` is its test-set table (None before `vaelab evaluate`)."""

    name: str
    path: Path
    equations: list[str]
    tables: list[Table]
    figures: list[Figure]
    notes: list[str] = field(default_factory=list)
    mean_words: str | None = None
    conditional: bool = False
    parts: dict[str, str] = field(default_factory=dict)
    test_table: Table | None = None

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

    @property
    def image_note(self) -> str:
        """What the images show, true of every run: one likelihood's words, or each run's."""
        words = {section.mean_words for section in self.runs}
        if len(words) == 1 and None not in words:
            return f"Images show {words.pop()} of p(x | z), not draws of x."
        if None in words:
            return "Images show the decoder's mean images, not draws of x."
        return ("Images show each run's decoder means, not draws of x: "
                + "; ".join(f"{section.name}: {section.mean_words}" for section in self.runs) + ".")

    @property
    def headline_tables(self) -> list[Table]:
        """The results that lead the report: the comparison with several runs, else the test table."""
        if self.comparison_tables:
            return self.comparison_tables
        return [section.test_table for section in self.runs if section.test_table is not None]

    @property
    def headline_figure(self) -> Figure | None:
        """The figure that leads the report: the runs' curves side by side, else the one run's samples."""
        if self.comparison_figures:
            return self.comparison_figures[0]
        return self.runs[0].figure("samples") if self.runs else None


def objective_line(run: Run) -> str:
    config = run.config
    beta = f", the KL terms weighed by β = {config.beta:g} in what is maximised" if config.beta != 1 else ""
    if config.objective == "iwae":
        return f"Trained on the importance-weighted bound with k = {config.samples} samples{beta}."
    return f"Trained on the ELBO (SGVB, {config.samples} reparameterised sample(s) per image{beta})."


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _samples(count: int) -> str:
    return f"{count} importance sample{'s' if count != 1 else ''}"


def bound_words(model) -> str:
    """What the bounds of a model bound, asked of the model."""
    if isinstance(model, Classifies):
        return "log p(x, y) where the label is seen, log p(x) where it is not"
    return "log p(x | y)" if class_conditional(model) else "log p(x)"


def epoch_table(rows: list[dict], bound_key: str, bound_name: str, parts: dict[str, str],
                bounds: str = "log p(x)", validation_bounds: str = "log p(x)") -> Table:
    """The bound per epoch at TABLE_EPOCHS (and the last), with its parts in training (where the
    run logged them) and in validation (`parts`: {name: words}, the family's `part_words`, those
    logged). bounds / validation_bounds: what the training and the validation bound bound, in
    words (see `bound_words`)."""
    reached = {row["epoch"]: row for row in rows}
    wanted = [e for e in TABLE_EPOCHS if e in reached]
    if rows and rows[-1]["epoch"] not in wanted:
        wanted.append(rows[-1]["epoch"])
    logged = [name for name in parts if any(f"valid_{name}" in row for row in rows)]
    trained = [name for name in parts if any(f"train_{name}" in row for row in rows)]
    return Table(
        caption=f"The bound per epoch (nats per image). Training {bound_name}: a bound on {bounds}, the mean "
                "over the epoch of each batch's bound as it was trained on, before its update, and its parts. Validation: the "
                f"ELBO on {validation_bounds} with one draw of the latents per image, the same draws every epoch, "
                "and its parts: " + "; ".join(f"{name} = {parts[name]}" for name in logged),
        header=["epoch", f"training {bound_name}", *(f"training {name}" for name in trained), "validation ELBO",
                *(f"validation {name}" for name in logged)],
        rows=[[str(e), _fmt(reached[e][bound_key]),
               *(_fmt(reached[e][f"train_{name}"]) if f"train_{name}" in reached[e] else "–" for name in trained),
               _fmt(reached[e]["valid_elbo"]),
               *(_fmt(reached[e][f"valid_{name}"]) if f"valid_{name}" in reached[e] else "–" for name in logged)]
              for e in wanted],
    )


def test_metrics(run_dir: RunDir) -> dict | None:
    if not run_dir.eval.is_file():
        return None
    return json.loads(run_dir.eval.read_text())


def metric_rows(parts: dict[str, str]) -> list[tuple[str, str]]:
    """(eval.json key, words) of every figure a test table may show, the family's parts (`part_words`)
    after the ELBO and, with the label summed out, after the unlabelled bound."""
    return [("elbo", "test ELBO, one draw of the latents per image"),
            *((name, words) for name, words in parts.items()),
            ("log_likelihood", "log-likelihood by importance sampling"),
            ("log_likelihood_marginal", "marginal log p(x) = log Σ_y π_y p(x|y)"),
            ("accuracy", "classification accuracy, Bayes rule argmax_y π_y p(x|y)"),
            ("classifier_accuracy", "classification accuracy, argmax_y q(y|x)"),
            ("unlabelled_elbo", "bound on log p(x) with y summed out, Σ_y q(y|x)[ELBO(x, y) + log π_y] + H, one "
                                "draw of the latents per class"),
            *((f"unlabelled_{name}", f"{words}, with y summed out") for name, words in parts.items())]


PERCENT = ("accuracy", "classifier_accuracy")


def metric_value(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "–"
    if key in PERCENT:
        return f"{100 * metrics[key]:.2f}%"
    return _fmt(metrics[key])


def metrics_table(metrics: dict, conditional: bool, parts: dict[str, str]) -> Table:
    """The test set's figures from eval.json, each labelled with what was computed. conditional: the
    model has a class label y (log p(x | y)); parts: the family's `part_words`."""
    name = "log p(x | y)" if conditional else "log p(x)"
    per_class = f", p(x | y) from {_samples(metrics['class_samples'])} per class" if "class_samples" in metrics else ""
    rows = []
    for key, label in metric_rows(parts):
        if key in metrics:
            if key == "elbo":
                label += f" (a bound on {name})"
            elif key == "log_likelihood":
                label = f"{name}, importance sampling, K = {metrics['iw_samples']}"
            elif key in ("log_likelihood_marginal", "accuracy"):
                label += per_class
            rows.append([label, metric_value(metrics, key)])
    rows += annealing_rows(metrics, name)
    rows += latent_rows(metrics.get("latents")) + quality_rows(metrics.get("quality"))
    return Table(caption=f"Test set ({metrics['n_test']} images, checkpoint '{metrics.get('checkpoint', 'best')}' "
                         f"from epoch {metrics.get('epoch', '?')}; nats per image)", header=["metric", "value"],
                 rows=rows)


def latent_rows(found: dict | None) -> list[list[str]]:
    """The table rows of eval.json's "latents": each latent's active units and KL per unit, and I(x; latents)."""
    if not found or not found.get("layers"):
        return []
    rows = []
    for name, layer in found["layers"].items():
        value = f"{layer['active']} of {layer['units']}"
        if layer.get("kl_units"):
            value += f"; KL a unit {min(layer['kl_units']):.2f} … {max(layer['kl_units']):.2f}"
        rows.append([f"{name}: active units (Cov_x(E_q[u | x]) > {found['threshold']})"
                     + ("; KL of each unit, nats" if layer.get("kl_units") else ""), value])
    told = found["information"]
    names = ", ".join(found["layers"])
    rows.append([f"I(x; {names}), aggregate posterior of {told['images']:,} test images (at most log "
                 f"{told['images']:,} = {told['cap']:.2f})", f"{told['value']:.2f} ± {told['standard_error']:.3f}"])
    return rows


def quality_rows(found: dict | None) -> list[list[str]]:
    """The table rows of eval.json's "quality" (`vaelab evaluate --quality`)."""
    if not found:
        return []
    judge = found["judge"]
    by = (f"a classifier of the dataset ({100 * judge['test_accuracy']:.2f}% test accuracy, "
          f"{100 * judge['test_accuracy_binarised']:.2f}% binarised)")
    rows = []
    if "class_consistency" in found:
        rows.append([f"class consistency: samples labelled as their class by {by}",
                     f"{100 * found['class_consistency']:.2f}%"])
    rows += [["samples: mean entropy of its prediction; entropy of the mean prediction (at most "
              f"{found['class_entropy_cap']:.2f})", f"{found['prediction_entropy']:.3f}; {found['class_entropy']:.3f}"],
             [f"Fréchet distance between {found['samples']:,} samples and the test images in its features (validation "
              "against test images)", f"{found['frechet_distance']:.2f} ({found['frechet_floor']:.2f})"]]
    return rows


def annealing_rows(metrics: dict, name: str) -> list[list[str]]:
    """The table rows of eval.json's "ais" and "bdmc" (`vaelab evaluate --ais / --bdmc`), if any."""
    rows = []
    if "ais" in metrics:
        ais = metrics["ais"]
        how = (f"AIS, {ais['steps']} steps of {ais['leapfrog']} leapfrog steps, {ais['chains']} chains, "
               f"first {ais['images']} test images")
        rows += [[f"{name}, {how} (± its Monte-Carlo standard error)",
                  f"{_fmt(ais['log_likelihood'])} ± {ais['standard_error']:.2f}"],
                 [f"{name}, importance sampling with K = {ais['iw_samples']} on the same images; AIS − IS",
                  f"{_fmt(ais['log_likelihood_is'])}; {ais['gap']:+.2f}"],
                 ["AIS: mean HMC acceptance probability", f"{ais['acceptance']:.2f}"]]
        if "log_likelihood_marginal" in ais:
            rows += [[f"marginal log p(x), {how}", _fmt(ais["log_likelihood_marginal"])],
                     ["classification accuracy, Bayes rule on the AIS estimates", f"{100 * ais['accuracy']:.2f}%"]]
    if "bdmc" in metrics:
        bdmc = metrics["bdmc"]
        rows.append([f"{name} of {bdmc['images']} images simulated from the model, bidirectional Monte Carlo "
                     f"({bdmc['steps']} steps): forward AIS … reverse AIS (width)",
                     f"{_fmt(bdmc['lower'])} … {_fmt(bdmc['upper'])} ({bdmc['width']:.2f})"])
    return rows


BINARIZATION = {"dynamic": "binarised afresh every epoch (validation and test once, with a fixed seed)",
                "expected": "training on the bound averaged over every binarisation, exactly (the Bernoulli "
                            "scores the gray levels; validation and test binarised once, with a fixed seed)",
                "static": "binarised once, with a fixed seed", "none": "intensities in [0, 1], not binarised"}


def image_words(shape: tuple[int, int, int]) -> str:
    """(C, H, W) in words: "1 × 28 × 28 (grey)", "3 × 32 × 32 (RGB colour)", "2 × 8 × 8 (2 channels)"."""
    channels = shape[0]
    kind = "grey" if channels == 1 else "RGB colour" if channels == 3 else f"{channels} channels"
    return f"{' × '.join(map(str, shape))} ({kind})"


def config_table(run: Run) -> Table:
    """The run's settings: the data and training, and the settings its family and network take that
    shape its model (`Family.settings_in_effect`), no others."""
    config = run.config
    shown = run.model.settings_in_effect(config.model_settings)  # not those its other settings switch off
    model_rows = [[name.replace("_", " "), _setting_words(value)] for name, value in shown.items()]
    rows = [["model", config.model.upper()],
            ["dataset", f"{config.dataset}, images C × H × W = {image_words(run.model.image_shape)}, "
                        f"{BINARIZATION.get(config.binarize, config.binarize)}; pictures show the "
                        f"{run.model.pixel_words}"],
            *model_rows,
            ["objective", config.objective + (f", k = {config.samples}" if config.objective == "iwae" else "")
             + (f", KL warm-up over {config.warmup} epochs" if config.warmup else "") + (f", β = {config.beta:g}" if config.beta != 1 else "")
             + (f", gradients clipped to norm {config.clip_grad_norm:g}" if config.clip_grad_norm is not None else "")],
            ["optimiser", f"Adam, learning rate {config.lr:g} ({config.lr_schedule}), batch {config.batch_size}"],
            ["training set", f"{config.train_on}" + (f", first {config.limit_train} images" if config.limit_train else "")
             + (f", labels of {config.labels} images (label seed {config.label_seed}), the rest unlabelled" if config.labels else "")],
            ["epochs", f"{len(run.metrics)} (max {config.epochs}, patience {config.patience or 'off'})"], ["seed", str(config.seed)]]
    return Table(caption="Configuration", header=["setting", "value"], rows=rows)


def _setting_words(value) -> str:
    if value is None:
        return "default"
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)


def build_run_section(path: "str | Path | Run", seed: int = 0, device: str = "auto") -> RunSection:
    """One run's section: its equations, configuration, bound per epoch, test metrics and figures.
    path: a run directory, or a `Run` already loaded (as `vaelab.train` returns it)."""
    run = path if isinstance(path, Run) else load_run(path, device=device)
    rows = run.metrics
    if not rows:
        raise VaelabError(f"{run.path} has no logged epoch (metrics.jsonl is empty)")
    conditional = bool(label_classes(run.model))
    validation_bounds = "log p(x | y)" if conditional else "log p(x)"
    parts = run.model.part_words()
    tables = [config_table(run), epoch_table(rows, run.config.bound_key, run.config.bound_name, parts,
                                             bound_words(run.model), validation_bounds)]
    notes = [objective_line(run)]
    metrics = test_metrics(RunDir(run.path))
    test_table = None
    if metrics is None:
        notes.append(f"Not evaluated on the test set yet: run `vaelab evaluate {run.path}` and write the report again.")
    else:
        test_table = metrics_table(metrics, conditional=conditional, parts=parts)
        tables.append(test_table)
    name = f"{run.path.name}: {run.config.model.upper()}, d = {run.model.code_dim}"
    return RunSection(name=name, path=run.path, equations=run.model.equations(), tables=tables,
                      figures=run_figures(run, seed=seed), notes=notes, mean_words=run.model.pixel_words,
                      conditional=conditional, parts=parts, test_table=test_table)


def comparison_table(sections: list[RunSection]) -> Table:
    """The runs side by side: epochs, best validation ELBO and every test metric some run has."""
    evaluations = [test_metrics(RunDir(s.path)) or {} for s in sections]
    histories = [read_metrics(RunDir(s.path).metrics) for s in sections]
    rows = [["epochs trained"] + [str(len(h)) for h in histories],
            ["best validation ELBO"] + [_fmt(max(r["valid_elbo"] for r in h)) for h in histories]]
    conditional = {s.conditional for s in sections}
    name = ("log p(x | y)" if conditional == {True} else "log p(x)" if conditional == {False}
            else "log p(x), log p(x | y) for the runs with a class label y")
    class_samples = sorted({e["class_samples"] for e in evaluations if "class_samples" in e})
    parts: dict[str, str] = {}
    for section in sections:  # every part some run has; a part's words where the runs agree on them
        for part, words in section.parts.items():
            parts[part] = words if parts.get(part, words) == words else f"{part}, as each run's section says"
    for key, label in metric_rows(parts):
        if any(key in e for e in evaluations):
            if key == "elbo":
                label += f" (a bound on {name})"
            elif key == "log_likelihood":
                label = f"{name}, importance sampling, K = " + " / ".join(
                    sorted({str(e["iw_samples"]) for e in evaluations if "iw_samples" in e}))
            elif key in ("log_likelihood_marginal", "accuracy") and class_samples:
                label += f", p(x | y) from {' / '.join(_samples(n) for n in class_samples)} per class"
            rows.append([label] + [metric_value(e, key) for e in evaluations])
    return Table("The runs side by side (nats per image)", ["metric"] + [s.name for s in sections], rows)


def distinct_names(sections: list[RunSection]) -> None:
    """Rename sections whose names collide: first by their full path (two runs in folders of the same
    name), then, if still alike (one run given twice), by their place in the list."""
    if len({s.name for s in sections}) < len(sections):
        for s in sections:
            s.name = f"{s.path}: {s.name.split(': ', 1)[1]}" if ": " in s.name else f"{s.path}"
    seen: dict[str, int] = {}
    for s in sections:
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s.name = f"{s.name} (#{seen[s.name]})"


def build_report(paths: "list[str | Path | Run]", title: str | None = None, device: str = "auto") -> Report:
    """The report of one or more run directories (or loaded `Run`s); several get a comparison first."""
    sections = [build_run_section(path, device=device) for path in paths]
    distinct_names(sections)
    comparison_tables, comparison_figures = [], []
    if len(sections) > 1:
        histories = [read_metrics(RunDir(s.path).metrics) for s in sections]
        comparison_tables.append(comparison_table(sections))
        named = [(s.name, history) for s, history in zip(sections, histories)]
        comparison_figures.append(Figure("comparison_curves", "Validation ELBO per epoch of every run.",
                                         pictures.png_bytes(pictures.comparison_curves_figure(named))))
    return Report(title=title or "vaelab report", runs=sections, comparison_tables=comparison_tables,
                  comparison_figures=comparison_figures)
