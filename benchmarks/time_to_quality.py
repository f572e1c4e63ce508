"""Time to quality: wall-clock from the start of training until the validation ELBO reaches -100,
-95 and -90 nats, vaelab's trainer with its defaults against the course setup in a tutorial loop
(DataLoader, batch 128, Adam 1e-3, `.item()` every step). Validation ELBO after every epoch, on the
fixed-binarised validation set, counted in the wall-clock of both, as is torch.compile's start-up.
Each `--variant NAME:key=value,...` is another vaelab run with those settings (`vaelab train`'s
keys, as in a config file), run after the defaults: `--variant bf16:precision=bf16`.

    python benchmarks/time_to_quality.py [--minutes 5] [--variant NAME:key=value,...] [--reference on|off]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ReferenceCVAE, machine, parse_settings

from vaelab.config import make_config
from vaelab.data import load_raw, make_splits
from vaelab.runtime.compilation import use_compile
from vaelab.training import COMPILE_FROM_STEPS, DeviceSplit, new_training, train_epoch, validate

THRESHOLDS = (-100.0, -95.0, -90.0)


@torch.no_grad()
def reference_validation(model: ReferenceCVAE, valid: DeviceSplit) -> float:
    with torch.random.fork_rng():  # a fixed seed for validation must not reset the training's random stream
        torch.manual_seed(1234)
        return _reference_validation(model, valid)


def _reference_validation(model: ReferenceCVAE, valid: DeviceSplit) -> float:
    total = sum(model.loss(valid.x[i : i + 1000], valid.y[i : i + 1000]).item() * len(valid.x[i : i + 1000])
                for i in range(0, len(valid.x), 1000))
    return -total / len(valid.x)


def crossings(history: list[tuple[float, float]]) -> dict[float, float | None]:
    return {t: next((s for s, elbo in history if elbo >= t), None) for t in THRESHOLDS}


def run_reference(train: DeviceSplit, valid: DeviceSplit, budget: float) -> list[tuple[float, float]]:
    torch.manual_seed(0)
    model = ReferenceCVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train.x, train.y), batch_size=128, shuffle=True)
    history, start = [], time.perf_counter()
    while time.perf_counter() - start < budget:
        model.train()
        for xb, yb in loader:
            loss = model.loss(torch.bernoulli(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        model.eval()
        history.append((time.perf_counter() - start, reference_validation(model, valid)))
        print(f"  reference epoch {len(history)}: {history[-1][1]:.2f} at {history[-1][0]:.0f} s", flush=True)
        if history[-1][1] >= THRESHOLDS[-1]:
            break
    return history


def run_vaelab(train: DeviceSplit, valid: DeviceSplit, budget: float, settings: dict) -> list[tuple[float, float]]:
    config = make_config(settings)
    history, start, epoch = [], time.perf_counter(), 0  # the clock includes torch.compile's start-up
    steps = int(budget * 100)  # at most ~100 steps/s here: a 5-minute budget is a long run, as `vaelab train` sees it
    compile = use_compile(config.compile, steps, COMPILE_FROM_STEPS)
    t = new_training(config, train.x.device, dynamic=not train.binary, compile=compile)
    while time.perf_counter() - start < budget:
        epoch += 1
        train_epoch(t.step, t.optimizer, train, config.batch_size, t.streams)
        history.append((time.perf_counter() - start, validate(t.model, valid)["elbo"]))
        print(f"  vaelab {settings or 'defaults'} epoch {epoch}: {history[-1][1]:.2f} at {history[-1][0]:.0f} s", flush=True)
        if history[-1][1] >= THRESHOLDS[-1]:
            break
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="time budget for each run")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:key=value,...",
                        help="another vaelab run with these settings (repeatable)")
    parser.add_argument("--reference", choices=("on", "off"), default="on", help="also run the tutorial loop")
    args = parser.parse_args()
    runs = {"vaelab defaults": {}}
    for variant in args.variant:
        name, _, settings = variant.partition(":")
        runs[f"vaelab {name}"] = parse_settings([item for item in settings.split(",") if item])
    splits = make_splits(load_raw("mnist"))
    cpu = torch.device("cpu")
    train, valid = DeviceSplit.from_split(splits.train, cpu), DeviceSplit.from_split(splits.valid, cpu)
    histories = {name: run_vaelab(train, valid, args.minutes * 60, settings) for name, settings in runs.items()}
    if args.reference == "on":
        histories["course setup, tutorial loop"] = run_reference(train, valid, args.minutes * 60)
    results = {name: crossings(history) for name, history in histories.items()}
    print(f"machine: {machine()}; budget {args.minutes:g} min each; seconds until validation ELBO reaches:")
    print(f"{'':30s}" + "".join(f"{t:>10.0f}" for t in THRESHOLDS) + "   best (epochs)")
    for name, cross in results.items():
        best = max(elbo for _, elbo in histories[name])
        print(f"{name:30s}" + "".join(f"{('%.0f s' % s) if s else 'not yet':>10s}" for s in cross.values())
              + f"   {best:.2f} ({len(histories[name])})")
    for name in results:
        if name != "vaelab defaults":
            for t in THRESHOLDS:
                a, b = results["vaelab defaults"][t], results[name][t]
                print(f"ratio time to {t:.0f} nats, {name} / vaelab defaults: " + (f"{b / a:.2f}" if a and b else "n/a"))


if __name__ == "__main__":
    main()
