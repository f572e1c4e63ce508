"""Semi-supervised M2: test error of q(y | x) for several numbers of labels, over several label draws.

Each (labels, draw) trains `--model m2 --labels N --label-seed D --seed D` on the 50,000 training
images (the other 50,000 - N unlabelled) for --epochs, or until --minutes of training, and measures
the error of argmax_y q(y | x) on the 10,000 test images (the run's last epoch; no test label is
used for anything else). Prints the mean +- sd over the draws next to the published figures, with
the time per epoch and in all, and next to the same classifier network trained on the N labelled
images alone (cross-entropy, the run's Adam learning rate, 2,000 steps of up to 128 freshly
binarised images): what the unlabelled images add. Runs go to --out/labels-N-draw-D; a finished
run is read back, not trained again, so the benchmark can be stopped and continued.

    python benchmarks/semi_supervised.py [--labels 100,600,1000,3000] [--draws 3] [--epochs 50]
        [--minutes M] [--set network=conv --set alpha=50 ...] [--out runs/semi]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import add_run_arguments, common_settings, machine

import torch

import vaelab
from vaelab.config import make_config
from vaelab.data import labelled_subset, load_raw, make_splits
from vaelab.objectives import confusion_matrix
from vaelab.runs import RunDir, new_model
from vaelab.training import train

PUBLISHED = {  # test error (%) on MNIST: Kingma et al. 2014 (M2, M1+M2) and Pyro's SS-VAE tutorial
    100: ("11.97 +- 1.71", "3.33", "6.8"),
    600: ("about 4.9", "about 2.6", "5.6"),
    1000: ("3.60", "2.40", "5.1"),
    3000: ("about 3.9", "about 2.2", "4.2"),
}


def supervised_only(config, steps: int = 2000) -> float:
    """Test error (%) of `config`'s classifier q(y | x), trained on its labelled images alone."""
    splits = make_splits(load_raw(config.dataset, data_dir=config.data_dir), config.binarize)
    train, test = splits.train, splits.test
    chosen = labelled_subset(train.labels, config.labels, splits.num_classes, config.label_seed)
    x, y = torch.from_numpy(train.float_images()[chosen]), torch.from_numpy(train.labels[chosen])
    torch.manual_seed(config.seed)
    classifier = new_model(config).classifier_net
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(steps):
        batch = torch.randint(len(x), (min(128, len(x)),), generator=generator)
        images = torch.bernoulli(x[batch], generator=generator) if config.binarize == "dynamic" else x[batch]
        loss = torch.nn.functional.cross_entropy(classifier(images), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = torch.cat([classifier(part).argmax(-1) for part in torch.from_numpy(test.float_images()).split(1000)])
    return 100 * (predicted != torch.from_numpy(test.labels)).double().mean().item()


def run_one(labels: int, draw: int, args, common: dict) -> dict:
    out = Path(args.out) / f"labels-{labels}-draw-{draw}"
    result_path = out / "semi_supervised.json"
    settings = dict(common, model="m2", labels=labels, label_seed=draw, seed=draw, epochs=args.epochs,
                    time_limit=args.minutes, sample_epochs=(args.epochs,))
    if result_path.is_file():
        done = json.loads(result_path.read_text())
        if done["settings"] == {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}:
            if "supervised_only_error" not in done:  # a result from before the baseline was measured
                done["supervised_only_error"] = supervised_only(make_config(settings))
                result_path.write_text(json.dumps(done, indent=1))
            return done
    started = time.perf_counter()
    rows = train(make_config(settings), out, resume=RunDir(out).config.is_file(), explicit=set(settings),
                 log=lambda line: None, progress=False)
    seconds = time.perf_counter() - started
    run = vaelab.load_run(out, checkpoint="latest", device=args.device)
    test = run.test_data()
    confusion = confusion_matrix(run.model.eval(), test.x, test.y).cpu().numpy()
    result = {"labels": labels, "draw": draw, "epochs": len(rows), "seconds": seconds,
              "seconds_per_epoch": statistics.median(row["seconds"] for row in rows),
              "test_error": 100 * (1 - confusion.trace() / confusion.sum()),
              "valid_error": 100 * (1 - rows[-1]["valid_accuracy"]),
              "supervised_only_error": supervised_only(make_config(settings)),
              "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}
    result_path.write_text(json.dumps(result, indent=1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default="100,600,1000,3000", help="numbers of labelled images")
    parser.add_argument("--draws", type=int, default=3, help="label draws (and seeds) per number of labels")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=None, help="also stop a run after this much training")
    add_run_arguments(parser, out="runs/semi")
    args = parser.parse_args()
    common = common_settings(args)
    results: dict[int, list[dict]] = {}
    for labels in [int(n) for n in args.labels.split(",")]:
        for draw in range(args.draws):
            result = run_one(labels, draw, args, common)
            results.setdefault(labels, []).append(result)
            print(f"labels {labels:5d} draw {draw}: test error {result['test_error']:5.2f}% after "
                  f"{result['epochs']} epochs ({result['seconds'] / 60:.1f} min); the classifier on the labelled "
                  f"images alone: {result['supervised_only_error']:5.2f}%", flush=True)
    print(f"\nmachine: {machine()}; up to {args.epochs} epochs"
          + (f" or {args.minutes:g} minutes" if args.minutes else "") + f" per run; settings: {common}")
    print(f"{'labels':>6s} {'vaelab M2 error (%)':>20s} {'labelled only':>15s} {'s/epoch':>8s} {'min/run':>8s}   "
          f"{'Kingma M2':>14s} {'Kingma M1+M2':>12s} {'Pyro':>5s}")
    for labels, runs in results.items():
        errors = [r["test_error"] for r in runs]
        spread = statistics.stdev(errors) if len(errors) > 1 else float("nan")
        alone = [r["supervised_only_error"] for r in runs]
        alone_spread = statistics.stdev(alone) if len(alone) > 1 else float("nan")
        published = PUBLISHED.get(labels, ("", "", ""))
        print(f"{labels:6d} {statistics.mean(errors):12.2f} +- {spread:4.2f} "
              f"{statistics.mean(alone):7.2f} +- {alone_spread:4.2f} "
              f"{statistics.median(r['seconds_per_epoch'] for r in runs):8.1f} "
              f"{statistics.mean(r['seconds'] for r in runs) / 60:8.1f}   "
              f"{published[0]:>14s} {published[1]:>12s} {published[2]:>5s}")


if __name__ == "__main__":
    main()
