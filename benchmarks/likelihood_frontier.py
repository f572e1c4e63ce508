"""Which network, prior, posterior and depth is best per minute: each trained for the same wall-clock
budget, then test log p(x) (VAE) and log p(x | y) (CVAE) by importance sampling, next to published
numbers.

Every variant trains on the same data (dynamically binarised MNIST, 50,000 training images) with
the same settings apart from --network, --prior and its latents, for --minutes of training (the
epoch that crosses the budget finishes), then its best checkpoint (by validation ELBO) is evaluated
on the test set with K importance samples (and each latent's active units, `inference.latent_terms`).
A variant is network/prior[/latents], the latents one
of `gaussian` (the default: one diagonal Gaussian), `iaf` or `iaf:T` (an IAF posterior of T steps),
`top-down:64x32` or `bottom-up:64x32` (a hierarchy of those layer sizes, inferred so).
Runs go to --out/<model>-<network>-<prior>[-<latents>]; a variant whose
run already holds an evaluation with this K is read back, and one that has finished its budget
(trained.json) is evaluated, not trained again, so the benchmark can be stopped and continued,
and the evaluation redone with another K or test subset. A variant stopped before the end of its
budget is trained again from the start: a budget is minutes of one uninterrupted call.

    python benchmarks/likelihood_frontier.py --minutes 60 [--models vae,cvae]
        [--variants mlp/standard,mlp/vamp,mlp/standard/iaf,mlp/flow,mlp/vamp/top-down:64x32,...]
        [--iw-samples 1000] [--test-images N] [--set warmup=20 --set pseudo-inputs=100 ...]
        [--out runs/frontier]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from common import add_run_arguments, common_settings, machine

import vaelab
from vaelab.config import make_config
from vaelab.inference.evaluation import evaluate_model
from vaelab.runs import RunDir, read_metrics
from vaelab.training import DeviceSplit, train

PUBLISHED = [  # test log p(x), dynamically binarised MNIST, nats (REFERENCE.md)
    ("MLP VAE, 3,280 epochs (Burda et al. 2015)", "-86.76"),
    ("MLP IWAE, k = 50 (Burda et al. 2015)", "-84.78"),
    ("class-conditional MLP, log p(x | y), k = 1 / k = 50 (nbip/IWAE)", "-82.32 / -80.78"),
    ("MLP IWAE, 2 stochastic layers, k = 50 (Burda et al. 2015)", "-82.90"),
    ("Ladder VAE, top-down inference (Sønderby et al. 2016)", "-81.74"),
    ("ResNet VAE (Kingma et al. 2016)", "-81.08"),
    ("ResNet VAE + IAF (Kingma et al. 2016)", "-79.10"),
    ("ResNet VAE + RealNVP prior (Xu et al. 2019)", "-78.49"),
]


def latent_settings(latents: str) -> dict:
    """The settings of a variant's latents (see the module's docstring)."""
    kind, _, detail = latents.partition(":")
    if kind == "gaussian" and not detail:
        return {}
    if kind == "iaf":
        return dict(posterior="iaf", **({"flow_steps": int(detail)} if detail else {}))
    if kind in ("top-down", "bottom-up") and detail:
        return dict(latent_dims=tuple(int(size) for size in detail.split("x")), inference=kind)
    raise SystemExit(f"unknown latents {latents!r}: use gaussian, iaf, iaf:T, top-down:64x32 or bottom-up:64x32")


def run_variant(model: str, network: str, prior: str, latents: str, args, common: dict) -> dict:
    named = "" if latents == "gaussian" else "-" + latents.replace(":", "")
    out = Path(args.out) / f"{model}-{network}-{prior}{named}"
    run = RunDir(out)
    if run.eval.is_file():
        done = json.loads(run.eval.read_text())
        if (done.get("iw_samples"), done.get("time_limit"), done.get("n_test")) == \
                (args.iw_samples, args.minutes, args.test_images or 10_000) and isinstance(done.get("latents"), dict):
            return done  # (one written before the latent figures is evaluated again, not trained again)
    settings = dict(common, model=model, network=network, prior=prior, time_limit=args.minutes,
                    epochs=100_000, sample_epochs=(1,), **latent_settings(latents))
    marker = out / "trained.json"
    if marker.is_file() and json.loads(marker.read_text())["time_limit"] == args.minutes:
        trained = json.loads(marker.read_text())["seconds"]
        rows = read_metrics(run.metrics)
    else:
        if out.exists():  # stopped before its budget, or trained for another: the budget counts one call
            print(f"  {out.name}: not trained for {args.minutes:g} minutes in one go; training it again", flush=True)
            shutil.rmtree(out)
        # every variant's step compiles afresh: torch.compile keeps one cache per function for the whole
        # process, and after 8 models it would run the next ones eagerly (its recompile limit)
        torch._dynamo.reset()
        started = time.perf_counter()

        def log(line: str) -> None:  # the run's own lines, without one per epoch
            if not line.startswith("epoch"):
                print(f"  {out.name}: {line}", flush=True)

        rows = train(make_config(settings), out, explicit=set(settings), log=log,
                     progress=False)
        trained = time.perf_counter() - started
        marker.write_text(json.dumps({"time_limit": args.minutes, "seconds": trained}))
    loaded = vaelab.load_run(out, device=args.device)
    test = loaded.test_data()
    if args.test_images:  # a convolutional decoder costs 10-20 times an MLP's per code: a subset keeps K
        test = DeviceSplit(test.x[: args.test_images], test.y[: args.test_images], test.binary)
    result = evaluate_model(loaded.model, test, iw_samples=args.iw_samples)
    result.update(epochs=len(rows), train_minutes=trained / 60, time_limit=args.minutes,
                  best_valid_elbo=max(row["valid_elbo"] for row in rows), network=network, prior=prior, model=model,
                  variant_latents=latents)
    run.eval.write_text(json.dumps(result, indent=1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per variant (60)")
    parser.add_argument("--models", default="vae,cvae")
    parser.add_argument("--variants", default="mlp/standard,mlp/vamp,conv/standard,conv/vamp,resnet/standard,"
                                              "resnet/vamp", help="network/prior[/latents] variants")
    parser.add_argument("--iw-samples", type=int, default=1000)
    parser.add_argument("--test-images", type=int, default=0, help="evaluate on the first N test images (0: all)")
    add_run_arguments(parser, out="runs/frontier")
    args = parser.parse_args()
    common = common_settings(args)
    results = []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            network, prior, *rest = variant.split("/")
            latents = rest[0] if rest else "gaussian"
            latent_settings(latents)  # a bad one stops here, before any training
            print(f"{model} {network} {prior} {latents}: {args.minutes:g} minutes of training", flush=True)
            results.append(run_variant(model, network, prior, latents, args, common))
    print(f"\nmachine: {machine()}; {args.minutes:g} minutes of training each; K = {args.iw_samples} on "
          f"{args.test_images or 10_000} test images; common settings: {common or 'defaults'}")
    print(f"{'model':5s} {'network':7s} {'prior':8s} {'latents':17s} {'epochs':>6s} {'min':>5s} {'valid ELBO':>10s} "
          f"{'test ELBO':>9s} {'KL (per layer)':>14s} {'active units':>14s} {'log p(x|y) or log p(x)':>22s} "
          f"{'log p(x), CVAE':>14s}")
    for r in results:
        marginal = f"{r['log_likelihood_marginal']:14.2f}" if "log_likelihood_marginal" in r else f"{'':14s}"
        kl = " + ".join(f"{r[name]:.1f}" for name in sorted(r) if name == "kl" or name.startswith("kl_z"))
        layers = r.get("latents", {}).get("layers", {})
        active = " + ".join(f"{layer['active']}/{layer['units']}" for layer in layers.values())
        print(f"{r['model']:5s} {r['network']:7s} {r['prior']:8s} {r.get('variant_latents', 'gaussian'):17s} "
              f"{r['epochs']:6d} {r['train_minutes']:5.1f} "
              f"{r['best_valid_elbo']:10.2f} {r['elbo']:9.2f} {kl:>14s} {active:>14s} {r['log_likelihood']:22.2f} "
              f"{marginal}")
    print("\npublished (test log p(x), nats):")
    for name, value in PUBLISHED:
        print(f"  {name:66s} {value}")


if __name__ == "__main__":
    main()
