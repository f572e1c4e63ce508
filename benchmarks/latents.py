"""What the latent figures and the sample-quality figures cost `vaelab evaluate`, measured in one run.

`vaelab evaluate` now adds what every latent does (`inference.latent_terms`: active units, the KL of
every unit, I(x; latents)) to every evaluation. This times `evaluate_model` on a trained run without
them (as before) and with them, in turns, `--repeats` times each, and prints the medians and their
ratio; then `--quality`'s share: the judge's training (in a cache folder of its own, so it is trained
here, once) and the sample-quality figures with the judge cached.

    python benchmarks/latents.py RUN [--iw-samples 1000] [--repeats 3] [--no-quality]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import machine

from vaelab.api import load_run
from vaelab.quality import judge_for, quality_terms
from vaelab.data import make_splits
from vaelab.runtime.devices import DeviceSplit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--iw-samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-quality", action="store_true")
    args = parser.parse_args()
    run = load_run(args.run)
    print(machine())
    seconds = {False: [], True: []}
    found = {}
    for repeat in range(args.repeats):
        for latents in (False, True):
            started = time.perf_counter()
            result = run.evaluate(iw_samples=args.iw_samples, latents=latents)
            seconds[latents].append(time.perf_counter() - started)
            if latents:
                found = result["latents"]
            print(f"repeat {repeat + 1}, {'with' if latents else 'without'} the latent figures: "
                  f"{seconds[latents][-1]:.1f} s", flush=True)
    before, after = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"K = {args.iw_samples}: {before:.1f} s without the latent figures, {after:.1f} s with them (medians of "
          f"{args.repeats}); ratio {after / before:.3f}; the figures' own seconds {found['seconds']:.1f}")
    if args.no_quality:
        return
    raw = run._raw()
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        judge = judge_for(raw, cache)
        trained = time.perf_counter() - started
        started = time.perf_counter()
        judge = judge_for(raw, cache)
        splits = make_splits(raw, run.config.binarize)
        gray = run.config.encoder_input == "grayscale"
        quality = quality_terms(run.model, judge, DeviceSplit.from_split(splits.test, run.device, gray),
                                DeviceSplit.from_split(splits.valid, run.device, gray))
        judged = time.perf_counter() - started
    print(f"--quality: the judge trains in {trained:.1f} s (once per dataset; {100 * judge.record.test_accuracy:.2f}% "
          f"test accuracy); with it cached, the sample-quality figures take {judged:.1f} s "
          f"({quality['samples']:,} samples)")


if __name__ == "__main__":
    main()
