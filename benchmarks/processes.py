"""Images per second of `vaelab train` in one process against N processes started by torchrun (gloo on a CPU).

Each variant is a whole `vaelab train` command on the default CVAE (configs/cvae-mnist.toml) with
`--limit-train`, eager and compiled; the variants take turns for several rounds, and each run's
figure is the median `samples_per_second` of its epochs after the first (which pays the
compilation). The ratios against one process, measured in the same run, come last.

On a 2-core CPU two processes have one core each and the gradients of 1.4 million parameters to
sum every step, so expect little or nothing: the group pays where each process has its own GPU.

Also measured: what one all_reduce of the gradients, and one of a stop check, costs.

    python benchmarks/processes.py [--processes 2] [--images 20000] [--epochs 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine

from vaelab.runs import RunDir, read_metrics

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "cvae-mnist.toml"


def processes_word(count: int) -> str:
    return f"{count} process{'es' if count > 1 else ''}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes: int, compile: str, images: int, epochs: int, device: str, folder: Path) -> float:
    """One `vaelab train`: the median images/s of its epochs after the first (all processes' images)."""
    out = folder / f"p{processes}-{compile}"
    command = ["-m", "vaelab", "train", "--config", str(CONFIG), "--out", str(out), "--limit-train", str(images),
               "--epochs", str(epochs), "--compile", compile, "--device", device, "--no-progress",
               "--sample-epochs", "1", "--patience", "0"]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1",
                   "--master-port", str(_free_port()), "--local-addr", "127.0.0.1", *command]
    environment = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "VAELAB_THREADS": "off"}
    subprocess.run([sys.executable, *command], check=True, capture_output=True, env=environment)
    rows = read_metrics(RunDir(out).metrics)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return statistics.median(row["samples_per_second"] for row in rows[1:])


def collectives(processes: int) -> str:
    """What the group's communication costs: one all_reduce of the CVAE's gradients, and of the 2
    numbers of a stop check (gloo on the loopback; each process one thread), median ms."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr",
               "127.0.0.1", "--master-port", str(_free_port()), "--local-addr", "127.0.0.1", __file__,
               "--measure-collectives"]
    environment = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    return subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout.strip()


def measure_collectives() -> None:
    """Run by each process of `collectives`; process 0 prints."""
    import time

    import torch
    import torch.distributed as dist

    from vaelab.config import make_config
    from vaelab.runs import new_model

    dist.init_process_group("gloo")
    gradients = torch.zeros(sum(p.numel() for p in new_model(make_config({})).parameters()))
    flags = torch.zeros(2, dtype=torch.int64)
    figures = {}
    for name, tensor, repeats in (("gradients", gradients, 50), ("stop check", flags, 200)):
        for _ in range(5):
            dist.all_reduce(tensor)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - started)
        figures[name] = 1e3 * statistics.median(times)
    if dist.get_rank() == 0:
        print(f"all_reduce of the gradients ({gradients.numel():,} float32): {figures['gradients']:.2f} ms; "
              f"of a stop check (2 int64): {figures['stop check']:.2f} ms")
    dist.destroy_process_group()


def main() -> None:
    if "--measure-collectives" in sys.argv:
        return measure_collectives()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"machine: {machine()}; CVAE 500-500, d = 40, batch 128, {args.images} images, {args.epochs} epochs "
          f"per run, {args.rounds} rounds")
    variants = [(1, "off"), (args.processes, "off"), (1, "on"), (args.processes, "on")]
    figures = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for processes, compile in variants:
                figures[processes, compile].append(run(processes, compile, args.images, args.epochs, args.device,
                                                       Path(folder)))
                print(f"round {round_ + 1}: {processes_word(processes)}, compile {compile}: "
                      f"{figures[processes, compile][-1]:,.0f} img/s", flush=True)
    print(f"\n{processes_word(args.processes)}: {collectives(args.processes)}")
    print(f"\n{'processes':>9}  {'compile':>7}  {'img/s (median)':>15}  {'vs 1 process':>12}")
    for processes, compile in variants:
        median = statistics.median(figures[processes, compile])
        alone = statistics.median(figures[1, compile])
        print(f"{processes:>9}  {compile:>7}  {median:>15,.0f}  {median / alone:>12.2f}")


if __name__ == "__main__":
    main()
