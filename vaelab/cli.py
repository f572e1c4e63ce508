"""The `vaelab` command: data, train, evaluate, sample, reconstruct.

Bad input ends in one line on stderr ("vaelab: error: ...") and exit code 2, never a traceback.
Started by torchrun (several processes), `train` and `evaluate` join the group
(`vaelab.distributed`); process 0 prints, the others only what they alone know.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from contextlib import nullcontext, redirect_stderr
from pathlib import Path

from .config import SETTINGS, TrainConfig, flag, make_config, read_toml
from .distributed import SINGLE, group
from .errors import TrainingInterrupted, VaelabError
from .fast import COMPILE_MODES
from .threads import share_cpus

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to find help."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"vaelab: error: {message} (see: {self.prog} --help)\n")


MAX_IW_SAMPLES = 100_000  # K = 5,000 is the literature's figure; 100,000 already takes days on a CPU
MAX_IMAGES = 10_000  # pictures: images per grid


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _count(maximum: int):
    """An argparse type: a whole number from 1 to `maximum`."""
    def parse(text: str) -> int:
        value = _int(text)
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 1 to {maximum:,}")
        return value
    return parse


def _port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 1 to 65535")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= SETTINGS["seed"].maximum:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 0 to {SETTINGS['seed'].maximum}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _class(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class (0, 1, ...)")
    return value


_FLAG_TYPES = {int: _int, float: _float}  # strings and lists are checked with the settings (config.check_value)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vaelab", description="Variational autoencoders on MNIST-family images.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    data = commands.add_parser("data", help="fetch, verify and cache a dataset; print a summary")
    data.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
    data.add_argument("--data-dir", help="folder with the IDX files")
    data.add_argument("--cache-dir", help="cache folder (default $VAELAB_CACHE or ~/.cache/vaelab)")
    data.add_argument("--json", action="store_true", help="print the summary as JSON")

    train = commands.add_parser("train", help="train a model, writing a run directory")
    train.add_argument("--config", help="TOML file of settings (flags override it)")
    train.add_argument("--out", required=True, help="run directory to write")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--cache-dir", help="data cache folder")
    defaults = TrainConfig()
    for name, setting in SETTINGS.items():
        default = getattr(defaults, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if setting.kind is bool:  # --tensorboard / --no-tensorboard
            train.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{setting.help} (default: {'on' if default else 'off'})")
            continue
        train.add_argument(flag(name), dest=name, type=_FLAG_TYPES.get(setting.kind, str), default=None,
                           help=f"{setting.help} (default: {shown})")

    evaluate = commands.add_parser("evaluate", help="test-set ELBO, IS log-likelihood (and CVAE extras)")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--iw-samples", type=_count(MAX_IW_SAMPLES), default=1000,
                          help="importance samples K per image")
    evaluate.add_argument("--class-samples", type=_count(MAX_IW_SAMPLES), help="CVAE: samples per class for log p(x) "
                          "and accuracy (default K/10)")
    evaluate.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    evaluate.add_argument("--seed", type=_seed, default=0)
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    evaluate.add_argument("--compile", default="auto", choices=COMPILE_MODES,
                          help="evaluate the importance weights through torch.compile (auto: for large K)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--no-progress", action="store_true")

    sample = commands.add_parser("sample", help="a grid of generated images")
    sample.add_argument("run", help="run directory")
    sample.add_argument("-o", "--output", required=True, help="PNG file to write")
    sample.add_argument("--per-class", type=_count(1000), default=8, help="class-conditional: images per class")
    sample.add_argument("--digit", type=_class, help="class-conditional: only this class")
    sample.add_argument("-n", type=_count(MAX_IMAGES), default=64, help="without classes: number of images")
    sample.add_argument("--seed", type=_seed, default=0)
    sample.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    sample.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    reconstruct = commands.add_parser("reconstruct", help="test images above their reconstructions")
    reconstruct.add_argument("run", help="run directory")
    reconstruct.add_argument("-o", "--output", required=True, help="PNG file to write")
    reconstruct.add_argument("-n", type=_count(MAX_IMAGES), default=10, help="number of test images")
    reconstruct.add_argument("--seed", type=_seed, default=0, help="which test images (random choice)")
    reconstruct.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    reconstruct.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    report = commands.add_parser("report", help="an HTML (and PDF) report of one or more runs")
    report.add_argument("runs", nargs="+", help="run directories; several get a comparison section")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--pdf", help="also write this PDF file")
    report.add_argument("--title", help="the report's title")
    report.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    explore = commands.add_parser("explore", help="a local web page to move through trained models' z (the "
                                  "explore extra)")
    explore.add_argument("runs", nargs="+", help="run directories; several are shown side by side")
    explore.add_argument("--port", type=_port, default=8765, help="port to serve on (8765)")
    explore.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1: this machine only)")
    explore.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    study = commands.add_parser("study", help="the assignment's study: VAE with k = 3 against k = 20, one report")
    study.add_argument("--out", required=True, help="folder for the runs and the report")
    study.add_argument("--latent-dims", type=_int_list, default=(3, 20), help="latent sizes to compare (3,20)")
    study.add_argument("--epochs", type=_int, default=100, help="maximum epochs per run (100)")
    study.add_argument("--patience", type=_int, default=10, help="early stopping on validation ELBO (10)")
    study.add_argument("--iw-samples", type=_count(MAX_IW_SAMPLES), default=1000, help="importance samples K (1000)")
    study.add_argument("--limit-train", type=_int, help="only the first N training images")
    study.add_argument("--seed", type=_seed, default=0)
    study.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    study.add_argument("--no-progress", action="store_true")
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    largest = SETTINGS["latent_dim"].maximum
    if not values or min(values) < 1 or max(values) > largest:
        raise argparse.ArgumentTypeError(f"{text!r}: every latent size must be from 1 to {largest:,}")
    return values


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_data(args) -> int:
    import numpy as np

    from .data import load_raw, make_splits

    raw = load_raw(args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir, log=_log)
    splits = make_splits(raw)
    summary = {
        "dataset": raw.dataset,
        "source": raw.source,
        "train": len(splits.train),
        "valid": len(splits.valid),
        "test": len(splits.test),
        "test_class_counts": np.bincount(splits.test.labels, minlength=splits.num_classes).tolist(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{raw.dataset}: train {summary['train']}, validation {summary['valid']}, test {summary['test']} "
              f"(from {raw.source}); test class counts {summary['test_class_counts']}")
    return 0


def cmd_train(args) -> int:
    from .training import train

    flag_values = {name: getattr(args, name) for name in SETTINGS}
    explicit = {name for name, value in flag_values.items() if value is not None}
    file_values = read_toml(args.config) if args.config else {}
    config = make_config(file_values, flag_values)
    rows = train(config, args.out, resume=args.resume, explicit=explicit | set(file_values),
                 log=_log, progress=not args.no_progress and sys.stderr.isatty(), cache_dir=args.cache_dir,
                 processes=args.processes)
    if rows:
        best = max(row["valid_elbo"] for row in rows)
        epochs = f"{len(rows)} epoch{'s' if len(rows) != 1 else ''}"
        print(f"trained {epochs}; best validation ELBO {best:.2f} nats; run directory: {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from .api import load_run
    from .evaluate import evaluate_run
    from .models import class_conditional
    from .runs import RunDir

    run = load_run(args.run, checkpoint=args.checkpoint, device=args.device, processes=args.processes)
    main = args.processes.main
    result = evaluate_run(run, iw_samples=args.iw_samples, class_samples=args.class_samples, seed=args.seed,
                          progress=main and not args.no_progress and sys.stderr.isatty(), compile=args.compile,
                          processes=args.processes)
    if not main:
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        labelled = class_conditional(run.model)
        name = "log p(x | y)" if labelled else "log p(x)"
        print(f"test ELBO {result['elbo']:.2f} (recon {result['recon']:.2f}, KL {result['kl']:.2f}); "
              f"{name} {result['log_likelihood']:.2f} with K = {args.iw_samples}"
              + (f"; log p(x) {result['log_likelihood_marginal']:.2f}; accuracy {100 * result['accuracy']:.2f}%"
                 if labelled else "")
              + (f" (Bayes rule), {100 * result['classifier_accuracy']:.2f}% (q(y | x)); bound with y summed out "
                 f"{result['unlabelled_elbo']:.2f}" if "classifier_accuracy" in result else "")
              + f"  [nats per image, {result['n_test']} test images, {result['seconds']:.0f} s]")
        print(f"written to {RunDir(run.path).eval}")
    return 0


def cmd_sample(args) -> int:
    from .api import load_run
    from .report.plots import save_sample_grid

    run = load_run(args.run, checkpoint=args.checkpoint, device=args.device)
    images, labels = run.sample(n=args.n, per_class=args.per_class, digit=args.digit, seed=args.seed)
    if labels is not None:
        columns = args.per_class
        rows = sorted(set(labels.tolist()))
    else:
        columns, rows = min(8, args.n), None
    title = f"{run.config.model.upper()} samples, epoch {run.epoch} (Bernoulli means)"
    _write_figure(args.output, lambda path: save_sample_grid(path, images, columns, rows, run.class_names, title))
    return 0


def cmd_reconstruct(args) -> int:
    import numpy as np

    from .api import load_run
    from .report.plots import save_reconstructions

    run = load_run(args.run, checkpoint=args.checkpoint, device=args.device)
    test = run.test_data()
    pick = np.random.default_rng(args.seed).choice(test.x.shape[0], size=min(args.n, test.x.shape[0]), replace=False)
    x = test.x[pick].cpu().numpy()
    means = run.reconstruct(x, test.y[pick].cpu().numpy())
    title = f"{run.config.model.upper()} reconstructions, epoch {run.epoch} (Bernoulli means of p(x | E[z]))"
    _write_figure(args.output, lambda path: save_reconstructions(path, x, means, title))
    return 0


def _write_figure(output: str, write) -> None:
    path = Path(output)
    if path.suffix.lower() != ".png":
        raise VaelabError(f"-o {output}: the output must be a .png file")
    if not path.parent.exists():
        raise VaelabError(f"-o {output}: folder {path.parent} does not exist")
    try:
        write(path)
    except OSError as exc:
        raise VaelabError(f"cannot write {output} ({exc.strerror})") from None
    print(f"wrote {path}")


def cmd_report(args) -> int:
    from .report import pdf_page_count, write_report

    report = write_report(args.runs, args.output, args.pdf, title=args.title, device=args.device)
    print(f"wrote {args.output}" + (f" and {args.pdf} ({pdf_page_count(report)} pages)" if args.pdf else ""))
    return 0


STUDY_BASE = dict(model="vae", hidden=(500,), activation="tanh", likelihood="bernoulli", binarize="dynamic",
                  batch_size=100, lr=1e-3, sample_epochs=(1, 10, 25, 50, 100))


def cmd_explore(args) -> int:
    import socket

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise VaelabError("vaelab explore needs the explore extra: pip install 'vaelab[explore]' "
                          "(make install installs it)") from None
    from .explore.server import serve
    from .explore.session import explore_runs

    try:  # a port in use is the user's to change, before the runs are loaded
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise VaelabError(f"cannot serve on {args.host}:{args.port} ({exc.strerror}); pass another --port or "
                          "--host") from None
    serve(explore_runs(args.runs, args.device), args.host, args.port, log=_log)
    return 0


def cmd_study(args) -> int:
    """Train a VAE per latent size (resuming what exists), evaluate each, and write one comparison report."""
    from .api import load_run
    from .evaluate import evaluate_run
    from .report import write_report
    from .runs import RunDir
    from .training import train

    out = Path(args.out)
    paths = []
    settings = {latent_dim: dict(STUDY_BASE, latent_dim=latent_dim, epochs=args.epochs, patience=args.patience,
                                 seed=args.seed, device=args.device, limit_train=args.limit_train)
                for latent_dim in args.latent_dims}
    configs = {latent_dim: make_config(values) for latent_dim, values in settings.items()}  # all checked first
    for latent_dim, config in configs.items():
        path = out / f"vae-k{latent_dim}"
        _log(f"== VAE with k = {latent_dim} -> {path}")
        train(config, path, resume=True, explicit=set(settings[latent_dim]), log=_log,
              progress=not args.no_progress and sys.stderr.isatty())
        run = load_run(path, device=args.device)
        done = json.loads(RunDir(path).eval.read_text()) if RunDir(path).eval.is_file() else {}
        if (done.get("epoch"), done.get("iw_samples")) == (run.epoch, args.iw_samples):
            _log(f"   already evaluated: test ELBO {done['elbo']:.2f}, log p(x) {done['log_likelihood']:.2f}")
            paths.append(path)
            continue
        result = evaluate_run(run, iw_samples=args.iw_samples, progress=not args.no_progress and sys.stderr.isatty())
        _log(f"   test ELBO {result['elbo']:.2f}, log p(x) {result['log_likelihood']:.2f} (K = {args.iw_samples})")
        paths.append(path)
    title = "VAE on binarised MNIST: latent size " + " vs ".join(f"k = {d}" for d in args.latent_dims)
    write_report(paths, out / "report.html", out / "report.pdf", title=title, device=args.device)
    print(f"wrote {out / 'report.html'} and {out / 'report.pdf'}")
    return 0


# commands that compute for long share the CPUs with each other by thread counts (vaelab/threads.py)
SHARES_CPUS = ("train", "evaluate", "study")
COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
            "reconstruct": cmd_reconstruct, "report": cmd_report, "study": cmd_study, "explore": cmd_explore}


# commands that run in a group of processes started by torchrun (vaelab/distributed.py)
IN_GROUPS = ("train", "evaluate")


def _rank(environ=os.environ) -> int:
    """This process's rank in torchrun's group (0 outside one): only rank 0 prints what all know."""
    try:
        return int(environ.get("RANK", "0")) if int(environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> int:
    rank = _rank()
    with redirect_stderr(io.StringIO()) if rank else nullcontext():  # the same usage error: rank 0 says it
        args = build_parser().parse_args(argv)
    try:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and args.command not in IN_GROUPS:
            raise VaelabError(f"`vaelab {args.command}` runs in one process: start it without torchrun "
                              f"(only {' and '.join(IN_GROUPS)} run in several)")
        with group() if args.command in IN_GROUPS else nullcontext(SINGLE) as processes, \
                share_cpus(_log if rank == 0 else lambda _: None) if args.command in SHARES_CPUS else nullcontext():
            args.processes = processes
            return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        if rank == 0:
            print(f"vaelab: {exc}", file=sys.stderr)
        return exc.exit_code
    except VaelabError as exc:
        if rank == 0 or (exc.local and not exc.quiet):
            print(f"vaelab: error{f' (process {rank})' if rank else ''}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if rank == 0:
            print("vaelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
