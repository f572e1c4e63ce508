"""Time per interaction of `vaelab explore`: each endpoint the page calls, through the whole web app.

Requests go through Starlette's test client (the app's routing, checks, JSON both ways, the model),
in process, so the figure is the server's share of an interaction; the browser adds its fetch and
drawing (a few ms). Median and 95th percentile of --repeats requests each, after 3 warm-up ones.

    python benchmarks/explore_latency.py RUN [--repeats 50] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import machine
from starlette.testclient import TestClient

from vaelab.explore.server import build_app
from vaelab.explore.session import explore_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = explore_runs([args.run], args.device)
    print(f"machine: {machine()}; run {args.run} loaded and its directions found in "
          f"{time.perf_counter() - started:.1f} s")
    client = TestClient(build_app(runs))
    explored = runs[0]
    label = 0 if explored.classes else None
    digit = explored.test_x[0, 0].cpu().numpy().tolist()
    rng = np.random.default_rng(0)
    requests = {
        "slider move (decode)": lambda: ("/api/decode", {"sliders": rng.uniform(-3, 3, len(explored.scales)).tolist(),
                                                         "label": label}),
        "random z": lambda: ("/api/random", {"seed": int(rng.integers(1 << 30)), "label": label}),
        "interpolate (8 steps)": lambda: ("/api/interpolate", {"first": int(rng.integers(1000)),
                                                               "last": int(rng.integers(1000)), "steps": 8,
                                                               "label": label}),
        "drawn digit (analyse)": lambda: ("/api/analyse", {"image": digit}),
    }
    print(f"{'interaction':<24}{'median ms':>10}{'p95 ms':>9}")
    for name, make in requests.items():
        times = []
        for repeat in range(args.repeats + 3):
            path, body = make()
            began = time.perf_counter()
            answer = client.post(path, json={"run": 0, **body})
            elapsed = time.perf_counter() - began
            assert answer.status_code == 200, answer.text
            if repeat >= 3:
                times.append(1e3 * elapsed)
        print(f"{name:<24}{statistics.median(times):>10.1f}{np.percentile(times, 95):>9.1f}")


if __name__ == "__main__":
    main()
