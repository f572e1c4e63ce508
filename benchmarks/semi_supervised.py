"""Semi-supervised learning: test error of q(y | x) for several models and numbers of labels, over label draws.

Each (recipe, labels, draw) trains a recipe of configs/ (its model and settings, then --set) with
`--labels N --label-seed D --seed D` on the 50,000 training images (the other 50,000 - N
unlabelled), for the recipe's epochs or --epochs (or until --minutes of training). The run uses no label beyond its N: no choice is made on
the validation or test labels. At the last epoch it measures the error of argmax_y q(y | x) on the
10,000 test images, grayscale (as Pyro and Maaloe et al. classify them) and binarised once with
the fixed seed the evaluation uses. Beside it: the same classifier (`model.classifier`, freshly
initialised) trained on the N labelled images alone (cross-entropy, Adam at the run's learning
rate, 2,000 steps of up to 128 freshly binarised images), i.e. what the unlabelled images add; the
median seconds per epoch and the minutes in all; and the published figures. Runs go to
--out/RECIPE-labels-N-draw-D; an unfinished run resumes, a finished one is read back, so the
benchmark can be stopped and continued.

    python benchmarks/semi_supervised.py [--recipe configs/cpu-m2.toml --recipe configs/cpu-sdgm.toml]
        [--labels 100,3000] [--draws 3 | --draw D ...] [--epochs E] [--minutes M] [--set key=value ...] [--out runs/semi]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import add_run_arguments, common_settings, machine

import vaelab
from vaelab.config import make_config, read_toml
from vaelab.data import load_raw, make_splits
from vaelab.runs import RunDir
from vaelab.runtime.cpu_share import share_cpus
from vaelab.training import train
from vaelab.training.baseline import labels_alone

PUBLISHED = {  # test error (%) on MNIST with N labels
    100: [("Kingma et al. 2014 M2", "11.97 +- 1.71"), ("Kingma et al. 2014 M1+M2", "3.33 +- 0.14"),
          ("Pyro SS-VAE (M2), best validation epoch", "6.81"), ("Maaloe et al. 2016 ADGM", "0.96 +- 0.02"),
          ("Maaloe et al. 2016 SDGM", "1.32 +- 0.07")],
    600: [("Kingma et al. 2014 M2", "4.94 +- 0.13"), ("Pyro SS-VAE (M2)", "5.63")],
    1000: [("Kingma et al. 2014 M2", "3.60 +- 0.56"), ("Pyro SS-VAE (M2)", "5.13")],
    3000: [("Kingma et al. 2014 M2", "3.92 +- 0.63"), ("Kingma et al. 2014 M1+M2", "2.18 +- 0.04"),
           ("Pyro SS-VAE (M2)", "4.18")],
}


def test_error(model, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Error (%) of argmax_y q(y | x) on images [n, C, H, W] with labels [n]."""
    with torch.no_grad():
        predicted = torch.cat([model.classifier(part).logits.argmax(-1) for part in images.split(batch)])
    return 100 * (predicted != labels).double().mean().item()


def test_images(config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grayscale test images, the same binarised with the evaluation's fixed seed, labels)."""
    raw = load_raw(config.dataset, data_dir=config.data_dir)
    gray = make_splits(raw, "none").test
    binary = make_splits(raw, "dynamic" if config.binarize == "none" else config.binarize).test
    return (torch.from_numpy(gray.float_images()), torch.from_numpy(binary.float_images()),
            torch.from_numpy(gray.labels))


def supervised_only(config, steps: int = 2000) -> tuple[float, float]:
    """Test error (%) on (grayscale, binarised) images of `config`'s classifier q(y | x), freshly
    initialised and trained on its labelled images alone (`training.baseline.labels_alone`)."""
    model = labels_alone(config, steps)
    gray, binary, labels = test_images(config)
    return test_error(model, gray, labels), test_error(model, binary, labels)


def run_one(recipe: Path, labels: int, draw: int, args, common: dict) -> dict:
    out = Path(args.out) / f"{recipe.stem}-labels-{labels}-draw-{draw}"
    result_path = out / "semi_supervised.json"
    settings = dict(read_toml(recipe), **common, labels=labels, label_seed=draw, seed=draw)
    if args.epochs:
        settings["epochs"] = args.epochs
    if args.minutes:
        settings["time_limit"] = args.minutes
    settings["sample_epochs"] = (settings.get("epochs", 100),)
    model = settings.get("model", "cvae")
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    if result_path.is_file():
        done = json.loads(result_path.read_text())
        if done["settings"] == stored:
            return done
    started = time.perf_counter()
    with share_cpus(print) as cpus:  # as the command line does: fewer threads while other programs use the CPUs,
        train(make_config(settings), out, resume=RunDir(out).config.is_file(), explicit=set(settings),  # all alone
              log=lambda line: None, progress=False, between_steps=getattr(cpus, "update", lambda: None))
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in RunDir(out).metrics.read_text().splitlines() if line.strip()]
    run = vaelab.load_run(out, checkpoint="latest", device="cpu")
    gray, binary, test_labels = test_images(run.config)
    alone_gray, alone_binary = supervised_only(make_config(settings))
    result = {"recipe": recipe.stem, "model": model, "labels": labels, "draw": draw, "epochs": len(rows),
              "seconds": sum(row["seconds"] for row in rows), "last_call_seconds": seconds,
              "seconds_per_epoch": statistics.median(row["seconds"] for row in rows),
              "test_error": test_error(run.model.eval(), gray, test_labels),
              "test_error_binarised": test_error(run.model, binary, test_labels),
              "valid_error_last": 100 * (1 - rows[-1]["valid_accuracy"]),
              "supervised_only_error": alone_gray, "supervised_only_error_binarised": alone_binary,
              "settings": stored}
    result_path.write_text(json.dumps(result, indent=1))
    return result


def mean_sd(values: list[float]) -> str:
    """"mean +- standard deviation" of the draws' figures; one draw's figure alone."""
    if len(values) == 1:
        return f"{values[0]:6.2f}"
    return f"{statistics.mean(values):6.2f} +- {statistics.stdev(values):4.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", type=Path, help="a config file of configs/ (repeatable; "
                        "default: configs/cpu-m2.toml and configs/cpu-sdgm.toml)")
    parser.add_argument("--labels", default="100", help="numbers of labelled images, comma-separated")
    parser.add_argument("--draws", type=int, default=3, help="label draws (and seeds) per number of labels")
    parser.add_argument("--draw", type=int, action="append", help="run only this draw (repeatable; e.g. one "
                        "draw per process, and then --draws N to gather them)")
    parser.add_argument("--epochs", type=int, default=None, help="instead of the recipe's epochs")
    parser.add_argument("--minutes", type=float, default=None, help="also stop a run after this much training")
    add_run_arguments(parser, out="runs/semi")
    args = parser.parse_args()
    common = common_settings(args)
    results: dict[tuple[str, int], list[dict]] = {}
    recipes = args.recipe or [Path("configs/cpu-m2.toml"), Path("configs/cpu-sdgm.toml")]
    for recipe in recipes:
        for labels in [int(n) for n in args.labels.split(",")]:
            for draw in args.draw or range(args.draws):
                r = run_one(recipe, labels, draw, args, common)
                results.setdefault((recipe.stem, labels), []).append(r)
                print(f"{recipe.stem} labels {labels:5d} draw {draw}: test error {r['test_error']:5.2f}% grayscale, "
                      f"{r['test_error_binarised']:5.2f}% binarised, after {r['epochs']} epochs "
                      f"({r['seconds'] / 60:.1f} min); the classifier on the labelled images alone: "
                      f"{r['supervised_only_error']:5.2f}% / {r['supervised_only_error_binarised']:5.2f}%", flush=True)
    print(f"\nmachine: {machine()}; test error at the last epoch" + (f", --epochs {args.epochs}" if args.epochs else "")
          + (f", at most {args.minutes:g} minutes" if args.minutes else "") + f"; --set {common}")
    print(f"{'recipe':>10s} {'labels':>6s} {'test error % (gray)':>20s} {'(binarised)':>16s} "
          f"{'labels alone (gray)':>20s} {'s/epoch':>8s} {'min/run':>8s}")
    for (recipe, labels), runs in results.items():
        print(f"{recipe:>10s} {labels:6d} {mean_sd([r['test_error'] for r in runs]):>20s} "
              f"{mean_sd([r['test_error_binarised'] for r in runs]):>16s} "
              f"{mean_sd([r['supervised_only_error'] for r in runs]):>20s} "
              f"{statistics.median(r['seconds_per_epoch'] for r in runs):8.1f} "
              f"{statistics.mean(r['seconds'] for r in runs) / 60:8.1f}   "
              f"({len(runs)} draw{'s' if len(runs) > 1 else ''}, "
              f"{statistics.median(r['epochs'] for r in runs)} epochs)")
    print("\npublished (test error %):")
    for labels in sorted({labels for _, labels in results}):
        for source, figure in PUBLISHED.get(labels, []):
            print(f"  {labels:5d} labels  {source:42s} {figure}")


if __name__ == "__main__":
    main()
