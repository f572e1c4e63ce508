"""Two source trees of vaelab against each other: training images/s and evaluation images/s, in turns.

For a change that must not cost speed: each round runs one probe per tree, each in a fresh Python
process that imports vaelab from that tree (PYTHONPATH), alternating the trees, so that a shared
or throttled CPU slows both alike. The training probe builds the default CVAE (`make run`'s
settings), trains one untimed epoch on --images MNIST training images (compiling the step), then
times three more; the evaluation probe times `evaluate_model` three times on --eval-images test
images each with K = 1000 (the compiled weights, warmed up on a few images first). A probe reports
its median. Prints every round and the median ratio second tree / first tree of each. `--set
key=value` (repeatable) changes a setting of the model in both trees: `--set prior=vamp`.

    python benchmarks/versions.py OLD_TREE NEW_TREE [--rounds 3] [--images 20000] [--eval-images 200]
        [--set key=value]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = r"""
import json, sys, time
import torch
from vaelab.config import make_config
from vaelab.data import load_raw, make_splits
try:
    from vaelab.inference import evaluate_model
except ImportError:  # a tree from before the inference wing
    from vaelab.evaluate import evaluate_model
from vaelab.training import DeviceSplit, new_training, train_epoch

kind, images, eval_images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
TIMED = 3  # timed epochs (or evaluations) per probe; the probe reports their median
from vaelab.config import SETTINGS
extra = {}
for pair in json.loads(sys.argv[4]):  # --set key=value, read with this tree's own settings
    key, _, value = pair.partition("=")
    name = key.replace("-", "_")
    extra[name] = SETTINGS[name].kind(value) if SETTINGS[name].kind in (int, float) else value
config = make_config(dict(model="cvae", latent_dim=40, hidden=(500, 500), batch_size=128, seed=0, compile="on",
                          **extra))
splits = make_splits(load_raw("mnist"), "dynamic", "train", images)
device = torch.device("cpu")
training = new_training(config, device, dynamic=True, compile=True, train_images=images)
speeds = []
if kind == "train":
    data = DeviceSplit.from_split(splits.train, device)
    train_epoch(training.step, training.optimizer, data, 128, training.streams)  # compiles
    for _ in range(TIMED):
        started = time.perf_counter()
        train_epoch(training.step, training.optimizer, data, 128, training.streams)
        speeds.append(images / (time.perf_counter() - started))
else:
    test = DeviceSplit.from_split(splits.test, device)
    few = DeviceSplit(test.x[:100], test.y[:100], test.binary)
    evaluate_model(training.model, few, iw_samples=1000, compile="on")  # compiles
    for turn in range(TIMED):
        part = DeviceSplit(test.x[turn * eval_images : (turn + 1) * eval_images],
                           test.y[turn * eval_images : (turn + 1) * eval_images], test.binary)
        started = time.perf_counter()
        evaluate_model(training.model, part, iw_samples=1000, compile="on")
        speeds.append(eval_images / (time.perf_counter() - started))
print(json.dumps({"images_per_second": sorted(speeds)[len(speeds) // 2]}))
"""


def probe(tree: str, kind: str, images: int, eval_images: int, settings: list[str]) -> float:
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(tree), VAELAB_THREADS="off")
    done = subprocess.run([sys.executable, "-c", PROBE, kind, str(images), str(eval_images), json.dumps(settings)],
                          env=environment, capture_output=True, text=True, check=True, cwd=os.path.abspath(tree))
    return json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=20_000, help="training images per epoch")
    parser.add_argument("--eval-images", type=int, default=200, help="test images the evaluation probe times")
    parser.add_argument("--set", action="append", default=[], help="a setting for both trees' model, key=value")
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {"train": [], "evaluate": []}
    for round_ in range(1, args.rounds + 1):
        for kind in ratios:
            trees = (args.old, args.new) if round_ % 2 else (args.new, args.old)  # who goes first alternates
            speed = {tree: probe(tree, kind, args.images, args.eval_images, args.set) for tree in trees}
            ratios[kind].append(speed[args.new] / speed[args.old])
            print(f"round {round_} {kind:8s}  old {speed[args.old]:8,.0f} img/s  new {speed[args.new]:8,.0f} img/s"
                  f"  new / old {ratios[kind][-1]:.3f}", flush=True)
    for kind, values in ratios.items():
        print(f"{kind}: median new / old = {statistics.median(values):.3f} over {len(values)} rounds")


if __name__ == "__main__":
    main()
