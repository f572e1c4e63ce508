"""The `vaelab` command: what data, train, evaluate, sample, reconstruct, report, explore and study do
(their flags: `arguments.py`).

A problem ends in one line on stderr ("vaelab: error: ..."), never a traceback: exit code 2 for bad
input, 1 for a failure while running (a full disk, a diverged loss, a lost process, memory; see
`errors.py`), 128 + the signal for a run stopped by Ctrl-C or SIGTERM.
Started by torchrun (several processes), `train` and `evaluate` join the group
(`vaelab.runtime.processes`); process 0 prints, the others only what they alone know.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext, redirect_stderr
from dataclasses import dataclass
from pathlib import Path

from ..config import SETTINGS, flag, make_config, read_toml
from ..errors import EXIT_FAILURE, TrainingInterrupted, VaelabError, out_of_memory
from ..runtime.cpu_share import share_cpus
from ..runtime.processes import SINGLE, Processes, group, group_size
from .arguments import build_parser, chosen_model, model_setting_names, modules_to_import


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Session:
    """What `main` gives a command besides its flags: the group of processes it runs in, and the
    CPU share's look at the machine, which training calls before every step and evaluation before
    every batch (`vaelab.runtime.cpu_share.CpuShare.update`; nothing where it does not share)."""

    processes: Processes
    look_at_the_cpus: Callable[[], None]


def cmd_data(args, session: Session) -> int:
    import numpy as np

    from ..data import load_raw, make_splits

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


def cmd_train(args, session: Session) -> int:
    from ..training import train

    flag_values = {name: getattr(args, name) for name in (*SETTINGS, *model_setting_names())}
    explicit = {name for name, value in flag_values.items() if value is not None}
    file_values = read_toml(args.config) if args.config else {}
    config = make_config(file_values, flag_values)
    rows = train(config, args.out, resume=args.resume, explicit=explicit | set(file_values),
                 log=_log, progress=not args.no_progress and sys.stderr.isatty(), processes=session.processes,
                 between_steps=session.look_at_the_cpus)
    if rows:
        best = max(row["valid_elbo"] for row in rows)
        epochs = f"{len(rows)} epoch{'s' if len(rows) != 1 else ''}"
        print(f"trained {epochs}; best validation ELBO {best:.2f} nats; run directory: {args.out}")
    return 0


def cmd_evaluate(args, session: Session) -> int:
    from ..api import evaluate_run, load_run
    from ..inference.annealing import AisSettings
    from ..models import Simulates, class_conditional
    from ..runs import RunDir

    if args.ais is None and args.ais_images is not None:
        raise VaelabError("--ais-images is a setting of AIS: add --ais STEPS")
    for name, value in (("--leapfrog", args.leapfrog), ("--chains", args.chains)):
        if value is not None and args.ais is None and args.bdmc is None:
            raise VaelabError(f"{name} is a setting of AIS: add --ais STEPS (or --bdmc N)")
    defaults = AisSettings()
    ais = AisSettings(steps=args.ais or defaults.steps, leapfrog=args.leapfrog or defaults.leapfrog,
                      chains=args.chains or defaults.chains)
    run = load_run(args.run, checkpoint=args.checkpoint, device=args.device, processes=session.processes)
    if args.bdmc and not isinstance(run.model, Simulates):
        raise VaelabError(f"--bdmc: {type(run.model).__name__} has no simulate method (models.Simulates) to draw "
                          "images with their latents; leave out --bdmc")
    main = session.processes.main
    result = evaluate_run(run, iw_samples=args.iw_samples, class_samples=args.class_samples, seed=args.seed,
                          progress=main and not args.no_progress and sys.stderr.isatty(), compile=args.compile,
                          processes=session.processes, between_batches=session.look_at_the_cpus,
                          ais=ais if args.ais else None, ais_images=args.ais_images, bdmc=args.bdmc or 0,
                          bdmc_settings=ais, information_images=args.information_images, quality=args.quality,
                          log=_log)
    if not main:
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        labelled = class_conditional(run.model)
        name = "log p(x | y)" if labelled else "log p(x)"
        parts = ", ".join(f"{part} {result[part]:.2f}" for part in run.model.part_words() if part in result)
        print(f"test ELBO {result['elbo']:.2f} ({parts}); "
              f"{name} {result['log_likelihood']:.2f} with K = {args.iw_samples}"
              + (f"; log p(x) {result['log_likelihood_marginal']:.2f}; accuracy {100 * result['accuracy']:.2f}%"
                 if labelled else "")
              + (f" (Bayes rule), {100 * result['classifier_accuracy']:.2f}% (q(y | x)); bound with y summed out "
                 f"{result['unlabelled_elbo']:.2f}" if "classifier_accuracy" in result else "")
              + f"  [nats per image, {result['n_test']} test images, {result['seconds']:.0f} s]")
        if "ais" in result:
            done = result["ais"]
            print(f"AIS ({done['steps']} steps, {done['leapfrog']} leapfrog, {done['chains']} chains): {name} "
                  f"{done['log_likelihood']:.2f} ± {done['standard_error']:.2f} against IS {done['log_likelihood_is']:.2f} "
                  f"(gap {done['gap']:.2f})" + (f"; log p(x) {done['log_likelihood_marginal']:.2f}; accuracy "
                                                f"{100 * done['accuracy']:.2f}%" if labelled else "")
                  + f"; acceptance {done['acceptance']:.2f}  [{done['images']} test images, {done['seconds']:.0f} s]")
        if result.get("latents"):
            print(latents_line(result["latents"]))
        if "quality" in result:
            print(quality_line(result["quality"]))
        if "bdmc" in result:
            done = result["bdmc"]
            print(f"BDMC ({done['steps']} steps, {done['images']} simulated images): {name} between "
                  f"{done['lower']:.2f} and {done['upper']:.2f}, width {done['width']:.2f}  [{done['seconds']:.0f} s]")
        print(f"written to {RunDir(run.path).eval}")
    return 0


def latents_line(found: dict) -> str:
    """eval.json's "latents" in one line: each latent's active units and KL, then I(x; latents)."""
    layers = []
    for name, layer in found["layers"].items():
        kl = "" if layer["kl"] is None else f", KL {layer['kl']:.2f}"
        if layer["kl_units"]:
            kl += f" ({min(layer['kl_units']):.2f} to {max(layer['kl_units']):.2f} a unit)"
        layers.append(f"{name} {layer['active']} of {layer['units']} active{kl}")
    told = found["information"]
    names = ", ".join(found["layers"])
    return (f"latents: {'; '.join(layers)}; I(x; {names}) {told['value']:.2f} ± {told['standard_error']:.3f} "
            f"(at most log {told['images']:,} = {told['cap']:.2f})  [{found['seconds']:.0f} s]")


def quality_line(found: dict) -> str:
    """eval.json's "quality" in one line."""
    judge = found["judge"]
    consistency = (f"class consistency {100 * found['class_consistency']:.2f}%; "
                   if "class_consistency" in found else "")
    return (f"samples ({found['samples']:,}, judged by a classifier of {100 * judge['test_accuracy']:.2f}% test "
            f"accuracy, {100 * judge['test_accuracy_binarised']:.2f}% binarised): {consistency}prediction entropy "
            f"{found['prediction_entropy']:.3f}, class entropy {found['class_entropy']:.3f} of "
            f"{found['class_entropy_cap']:.3f}; Fréchet distance in its features {found['frechet_distance']:.2f} "
            f"(validation against test images: {found['frechet_floor']:.2f})  [{found['seconds']:.0f} s]")


def cmd_sample(args, session: Session) -> int:
    from ..api import load_run
    from ..pictures import save_sample_grid

    run = load_run(args.run, checkpoint=args.checkpoint, device=args.device)
    images, labels = run.sample(n=args.n, per_class=args.per_class, digit=args.digit, seed=args.seed)
    if labels is not None:
        columns = args.per_class
        rows = sorted(set(labels.tolist()))
    else:
        columns, rows = min(8, args.n), None
    title = f"{run.config.model.upper()} samples, epoch {run.epoch} ({run.model.pixel_words})"
    _write_figure(args.output, lambda path: save_sample_grid(path, images, columns, rows, run.class_names, title))
    return 0


def cmd_reconstruct(args, session: Session) -> int:
    import numpy as np

    from ..api import load_run
    from ..pictures import save_reconstructions

    run = load_run(args.run, checkpoint=args.checkpoint, device=args.device)
    test = run.test_data()
    pick = np.random.default_rng(args.seed).choice(test.x.shape[0], size=min(args.n, test.x.shape[0]), replace=False)
    x = test.read[pick].cpu().numpy()
    means = run.reconstruct(x, test.y[pick].cpu().numpy())
    title = (f"{run.config.model.upper()} reconstructions, epoch {run.epoch} "
             f"({run.model.pixel_words} of p(x | z = {run.model.code_words}))")
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


def cmd_report(args, session: Session) -> int:
    from ..report import pdf_page_count, write_report

    report = write_report(args.runs, args.output, args.pdf, title=args.title, device=args.device)
    print(f"wrote {args.output}" + (f" and {args.pdf} ({pdf_page_count(report)} pages)" if args.pdf else ""))
    return 0


STUDY_TRAINING = dict(binarize="dynamic", batch_size=100, lr=1e-3, sample_epochs=(1, 10, 25, 50, 100))


def cmd_explore(args, session: Session) -> int:
    import socket

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise VaelabError("vaelab explore needs the explore extra: pip install 'vaelab[explore]' "
                          "(make install installs it)") from None
    from ..explore.server import serve
    from ..explore.session import explore_runs

    try:  # a port in use is the user's to change, before the runs are loaded
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise VaelabError(f"cannot serve on {args.host}:{args.port} ({exc.strerror}); pass another --port or "
                          "--host") from None
    serve(explore_runs(args.runs, args.device), args.host, args.port, log=_log)
    return 0


def cmd_study(args, session: Session) -> int:
    """Train a VAE per latent size (resuming what exists), evaluate each, and write one comparison report."""
    from ..api import evaluate_run, load_run
    from ..models.families import kingma_welling_vae
    from ..report import write_report
    from ..runs import RunDir
    from ..training import train

    out = Path(args.out)
    paths = []
    settings = {size: dict(STUDY_TRAINING, **kingma_welling_vae(size), epochs=args.epochs, patience=args.patience,
                           seed=args.seed, device=args.device, limit_train=args.limit_train)
                for size in args.latent_dims}
    configs = {size: make_config(values) for size, values in settings.items()}  # all checked first
    for size, config in configs.items():
        path = out / f"vae-k{size}"
        _log(f"== VAE with k = {size} -> {path}")
        train(config, path, resume=True, explicit=set(settings[size]), log=_log,
              progress=not args.no_progress and sys.stderr.isatty(), between_steps=session.look_at_the_cpus)
        run = load_run(path, device=args.device)
        done = json.loads(RunDir(path).eval.read_text()) if RunDir(path).eval.is_file() else {}
        if (done.get("epoch"), done.get("iw_samples")) == (run.epoch, args.iw_samples):
            _log(f"   already evaluated: test ELBO {done['elbo']:.2f}, log p(x) {done['log_likelihood']:.2f}")
            paths.append(path)
            continue
        result = evaluate_run(run, iw_samples=args.iw_samples, progress=not args.no_progress and sys.stderr.isatty(),
                              between_batches=session.look_at_the_cpus)
        _log(f"   test ELBO {result['elbo']:.2f}, log p(x) {result['log_likelihood']:.2f} (K = {args.iw_samples})")
        paths.append(path)
    title = "VAE on binarised MNIST: latent size " + " vs ".join(f"k = {d}" for d in args.latent_dims)
    write_report(paths, out / "report.html", out / "report.pdf", title=title, device=args.device)
    print(f"wrote {out / 'report.html'} and {out / 'report.pdf'}")
    return 0


# commands that compute for long share the CPUs with each other by thread counts (vaelab/runtime/cpu_share.py)
SHARES_CPUS = ("train", "evaluate", "study")
COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
            "reconstruct": cmd_reconstruct, "report": cmd_report, "study": cmd_study, "explore": cmd_explore}


# commands that run in a group of processes started by torchrun (vaelab/runtime/processes.py)
IN_GROUPS = ("train", "evaluate")


def _rank(environ=os.environ) -> int:
    """This process's rank in torchrun's group (0 outside one): only rank 0 prints what all know."""
    try:
        return int(environ.get("RANK", "0")) if int(environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:
        return 0


def import_module(name: str) -> None:
    """Import a user's module by name, as `--import` asks (it registers its families and networks):
    from the current folder too, as `python -m` would. VaelabError (one line) where it cannot."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise VaelabError(f"--import {name}: there is no module {exc.name!r} here; run vaelab from the folder "
                              f"that holds {exc.name.replace('.', '/')}.py, or add its folder to PYTHONPATH") from None
        raise VaelabError(f"--import {name}: the module needs {exc.name!r}, which is not installed") from None
    except Exception as exc:  # the user's module failed: its one line, not vaelab's traceback
        raise VaelabError(f"--import {name}: importing it failed ({type(exc).__name__}: {exc})") from None


def main(argv: list[str] | None = None) -> int:
    rank = _rank()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        for name in modules_to_import(argv):
            import_module(name)
    except VaelabError as exc:
        if rank == 0:
            print(f"vaelab: error: {exc.worded(flag)}", file=sys.stderr)
        return exc.exit_code
    with redirect_stderr(io.StringIO()) if rank else nullcontext():  # the same usage error: rank 0 says it
        args = build_parser(chosen_model(argv)).parse_args(argv)
    try:
        if group_size() > 1 and args.command not in IN_GROUPS:
            raise VaelabError(f"`vaelab {args.command}` runs in one process: start it without torchrun "
                              f"(only {' and '.join(IN_GROUPS)} run in several)")
        with group() if args.command in IN_GROUPS else nullcontext(SINGLE) as processes, \
                share_cpus(_log if rank == 0 else lambda _: None) if args.command in SHARES_CPUS else nullcontext() \
                as cpus:
            return COMMANDS[args.command](args, Session(processes, getattr(cpus, "update", lambda: None)))
    except TrainingInterrupted as exc:
        if rank == 0:
            print(f"vaelab: {exc.worded(flag)}", file=sys.stderr)
        return exc.exit_code
    except VaelabError as exc:
        if rank == 0 or (exc.local and not exc.quiet):
            print(f"vaelab: error{f' (process {rank})' if rank else ''}: {exc.worded(flag)}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise  # a bug in vaelab: its traceback is the report
        print(f"vaelab: error{f' (process {rank})' if rank else ''}: out of memory in `vaelab {args.command}` "
              f"({str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}); use a "
              "smaller --batch-size, model or --iw-samples", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        if rank == 0:
            print("vaelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
