"""Training speed of one `vaelab train` alone, two at once, and beside a plain PyTorch training loop:
vaelab's CPU sharing against OpenMP settings.

Each variant is an environment for `python -m vaelab train` subprocesses (compiled step, batch 128,
`--limit-train` images per epoch, each run in its own temporary run directory):

    vaelab       vaelab as it comes: commands running together divide the threads (vaelab/runtime/cpu_share.py)
    today        VAELAB_THREADS=off: no thread count changed; libgomp spins ~300,000 times before it sleeps
    passive      VAELAB_THREADS=off OMP_WAIT_POLICY=passive: a waiting OpenMP thread sleeps at once
    spin-N       VAELAB_THREADS=off GOMP_SPINCOUNT=N: spin N times, then sleep
    1-thread     VAELAB_THREADS=off OMP_NUM_THREADS=1

Alone: one run per variant, all started together but taking turns, one second each (the others
are held with SIGSTOP), so that a machine whose speed drifts by 10-30% from minute to minute (other
virtual machines on the host) slows all variants alike. An epoch's training time is its `seconds`
in `metrics.jsonl` less the time the run was held during it.

Two at once: a first run trains alone through its first epoch, a second one with the same
environment starts (so a run that is already training must make room), and the first is stopped
(SIGTERM) when the second has finished. An epoch counts if the other run was running throughout:
it had finished its first epoch (torch.compile's start-up) and not yet its last one. The variants
take turns, one pair each per round, each round starting with the next variant.

Beside a plain PyTorch loop: a tutorial-style CVAE training loop (benchmarks/common.ReferenceCVAE,
batch 128, torch's default threads, random binary images) runs in another process; it trains alone
for LOOP_ALONE seconds, then a `vaelab train` run starts beside it, and the loop is stopped when
the run has finished. vaelab's epochs after its first count; the loop's speed is measured alone
and over vaelab's counted epochs.

Speeds are training images per second (validation excluded), epoch 1 skipped (it includes
torch.compile's start-up), medians over the epochs of all rounds. Pairs that spin-wait on each
other (`today`, `spin-N` for N >= 10,000) are so slow that they train on `--slow-limit-train`
images per epoch; speeds are per image, so they compare. Prints, per variant, the speed of each
run of a pair against today's solo speed (target: 0.40 or more) and against the variant's own
solo speed, and the variant's solo speed against today's (target: 0.95 or more); beside the plain
loop, the run's speed against the variant's solo speed (target: 0.40 or more) and the loop's speed
against its own alone. Run it alone:

    flock -x /tmp/vaelab-cpu.lock .venv/bin/python benchmarks/concurrent_runs.py [--rounds 2]
    ... --variants vaelab,today,passive,spin-1000,spin-30000,1-thread
    ... --variants vaelab,today --plain   (also beside a plain PyTorch loop; --only plain: solo and that)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME",
                    "VAELAB_THREADS")
POLL = 0.01  # seconds between two looks at the runs' files
TURN = 1.0  # seconds each solo run trains before the next one's turn
LOOP_ALONE = 8.0  # seconds the plain loop trains alone before vaelab starts beside it
PLAIN_LOOP = """
import sys, time, torch
sys.path.insert(0, sys.argv[2])
from common import ReferenceCVAE
torch.manual_seed(0)
model = ReferenceCVAE()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.rand(6400, 784).round(), torch.randint(0, 10, (6400,))
with open(sys.argv[1], "w", buffering=1) as log:
    step = 0
    while True:
        rows = slice(128 * (step % 50), 128 * (step % 50 + 1))
        loss = model.loss(x[rows], y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 5 == 0:
            print(time.perf_counter(), step, file=log)
"""


def variant_environment(name: str) -> dict[str, str]:
    """The variables a variant sets, on top of an environment cleared of OPENMP_VARIABLES."""
    if name == "vaelab":
        return {}
    if name == "today":
        return {"VAELAB_THREADS": "off"}
    if name == "passive":
        return {"VAELAB_THREADS": "off", "OMP_WAIT_POLICY": "passive"}
    if re.fullmatch(r"spin-\d+", name):
        return {"VAELAB_THREADS": "off", "GOMP_SPINCOUNT": name.removeprefix("spin-")}
    if name == "1-thread":
        return {"VAELAB_THREADS": "off", "OMP_NUM_THREADS": "1"}
    raise SystemExit(f"unknown variant {name!r}")


def spins_in_pairs(name: str) -> bool:
    return name == "today" or name.startswith("spin-") and int(name.removeprefix("spin-")) >= 10_000


class Run:
    """One `vaelab train` subprocess; its metrics rows and stderr epoch lines, stamped with when they were seen."""

    def __init__(self, folder: Path, name: str, env: dict[str, str], epochs: int, limit_train: int, clock):
        self.out, self.log = folder / name, folder / f"{name}.log"
        self.clock = clock
        full = {key: value for key, value in os.environ.items() if key not in OPENMP_VARIABLES}
        full.update(env)
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "vaelab", "train", "--out", str(self.out), "--limit-train",
                   str(limit_train), "--epochs", str(epochs), "--compile", "on", "--batch-size", "128",
                   "--no-progress", "--sample-epochs", str(epochs)]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, env=full, stdout=subprocess.DEVNULL, stderr=log)
        self.rows: list[dict] = []
        self.epoch_logged: dict[int, float] = {}  # epoch -> when its stderr line was seen (the next epoch starts)
        self.held: list[tuple[float, float]] = []  # (from, to): held with SIGSTOP

    def read(self, seen_at: float | None = None) -> None:
        """Note new metrics rows and epoch lines, as seen at `seen_at` (default: now)."""
        seen_at = self.clock() if seen_at is None else seen_at
        path = self.out / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines[len(self.rows):]:
            if line.endswith("}"):
                self.rows.append(dict(json.loads(line), seen=seen_at))
        for match in re.finditer(r"^epoch +(\d+) ", self.log.read_text(), re.MULTILINE):
            self.epoch_logged.setdefault(int(match.group(1)), seen_at)
        if self.process.poll() not in (None, 0, 128 + signal.SIGTERM):
            raise SystemExit(f"a training run failed:\n{self.log.read_text()}")

    @property
    def done(self) -> bool:
        return self.process.poll() is not None

    def hold(self) -> None:
        """SIGSTOP, wait until stopped, then note what it wrote before it stopped."""
        self.process.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.pid}/stat")
        while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in "TtZX":
            time.sleep(0.0005)
        held_from = self.clock()
        self.read(held_from)
        self.held.append((held_from, float("inf")))

    def release(self) -> None:
        self.held[-1] = (self.held[-1][0], self.clock())
        self.process.send_signal(signal.SIGCONT)

    def training_speeds(self) -> list[tuple[float, float]]:
        """(seconds, images/s) of each epoch after the first, the time it was held taken out."""
        speeds = []
        for row in self.rows[1:]:
            started = self.epoch_logged[row["epoch"] - 1]
            ended = started + row["seconds"]
            held = sum(max(0.0, min(ended, to) - max(started, since)) for since, to in self.held)
            seconds = row["seconds"] - held
            speeds.append((seconds, row["samples_per_second"] * row["seconds"] / seconds))
        return speeds


def solo_by_turns(envs: dict[str, dict[str, str]], epochs: int, limit_train: int) -> dict[str, list]:
    """One run per variant, taking turns of TURN seconds; per variant, (seconds, images/s) of its epochs."""
    with tempfile.TemporaryDirectory(prefix="vaelab-concurrent-") as tmp:
        clock = time.perf_counter
        runs = {}
        try:
            for name, env in envs.items():
                runs[name] = Run(Path(tmp), name, env, epochs, limit_train, clock)
                runs[name].hold()
            while not all(run.done for run in runs.values()):
                for run in runs.values():
                    if run.done:
                        continue
                    run.release()
                    turn_ends = clock() + TURN
                    while clock() < turn_ends and not run.done:
                        time.sleep(POLL)
                        run.read()
                    run.hold()
        finally:
            for run in runs.values():
                if not run.done:
                    run.process.send_signal(signal.SIGCONT)
                    run.process.kill()
                run.process.wait()
        for run in runs.values():
            run.read()
        return {name: run.training_speeds() for name, run in runs.items()}


def pair(env: dict[str, str], epochs: int, limit_train: int) -> list[tuple[float, float]]:
    """(seconds, images/s) of the epochs of two runs during which the other run was running too."""
    with tempfile.TemporaryDirectory(prefix="vaelab-concurrent-") as tmp:
        start = time.perf_counter()
        clock = lambda: time.perf_counter() - start  # noqa: E731
        first, second = Run(Path(tmp), "first", env, 100_000, limit_train, clock), None
        try:
            while not first.rows:
                first.read()
                time.sleep(POLL)
            second = Run(Path(tmp), "second", env, epochs, limit_train, clock)
            while not second.done:
                first.read()
                second.read()
                time.sleep(POLL)
            second.read()
            first.read()
        finally:
            stopped = clock()
            first.process.send_signal(signal.SIGTERM)  # it saves its state and exits 143
            if second is not None and not second.done:
                second.process.kill()
            first.process.wait()
    speeds = []
    for mine, other, other_ended in ((first, second, second.rows[-1]["seen"]), (second, first, stopped)):
        for previous, row in zip(mine.rows, mine.rows[1:]):
            if other.rows and other.rows[0]["seen"] <= previous["seen"] and row["seen"] <= other_ended:
                speeds.append((row["seconds"], row["samples_per_second"]))
    return speeds


class PlainLoop:
    """The plain PyTorch training loop in a subprocess; its log holds (time, steps done) every 5 steps."""

    def __init__(self, folder: Path):
        self.log = folder / "plain-loop.log"
        env = {key: value for key, value in os.environ.items() if key not in OPENMP_VARIABLES}
        self.process = subprocess.Popen([sys.executable, "-c", PLAIN_LOOP, str(self.log), str(REPO / "benchmarks")],
                                        env=env)

    def points(self) -> list[tuple[float, int]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(float(t), int(n)) for t, n in (line.split() for line in lines if len(line.split()) == 2)]

    def speed(self, start: float, end: float) -> float:
        """Images per second between two moments (perf_counter), from the logged points within them."""
        inside = [(t, n) for t, n in self.points() if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        return 128 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def beside_plain_loop(env: dict[str, str], epochs: int, limit_train: int) -> tuple[list, float, float]:
    """A run beside the plain loop: ((seconds, images/s) of its epochs after the first, the loop's images/s
    alone, the loop's images/s during those epochs)."""
    with tempfile.TemporaryDirectory(prefix="vaelab-concurrent-") as tmp:
        loop = PlainLoop(Path(tmp))
        try:
            while len(loop.points()) < 2:  # started
                time.sleep(POLL)
            alone_from = time.perf_counter()
            time.sleep(LOOP_ALONE)
            alone = loop.speed(alone_from, time.perf_counter())
            run = Run(Path(tmp), "beside", env, epochs, limit_train, time.perf_counter)
            while not run.done:
                run.read()
                time.sleep(POLL)
            run.read()
        finally:
            loop.process.kill()
            loop.process.wait()
        counted_from = run.epoch_logged[1]  # the end of epoch 1 (torch.compile's start-up)
        beside = loop.speed(counted_from, run.rows[-1]["seen"])
        return [(row["seconds"], row["samples_per_second"]) for row in run.rows[1:]], alone, beside


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process's finished children)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, children.ru_utime + children.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="vaelab,today,passive", help="comma-separated, see above")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of a solo run and of the second run of a pair")
    parser.add_argument("--limit-train", type=int, default=20_000, help="images per epoch")
    parser.add_argument("--slow-limit-train", type=int, default=1_280, help="images per epoch of pairs that spin")
    parser.add_argument("--only", choices=("solo", "pairs", "plain"),
                        help="measure only solo runs, only pairs, or only runs beside the plain loop")
    parser.add_argument("--plain", action="store_true", help="also measure each variant beside the plain loop")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that held runs are released and ended
    variants = args.variants.split(",")
    envs = {name: variant_environment(name) for name in variants}
    solo: dict[str, list] = {name: [] for name in variants}
    two: dict[str, list] = {name: [] for name in variants}
    plain: dict[str, list] = {name: [] for name in variants}  # vaelab's epochs beside the plain loop
    loop_alone: dict[str, list] = {name: [] for name in variants}
    loop_beside: dict[str, list] = {name: [] for name in variants}
    started, (busy_before, ours_before) = time.perf_counter(), busy_seconds()
    for round_ in range(args.rounds):
        if args.only != "pairs":
            for name, speeds in solo_by_turns(envs, args.epochs, args.limit_train).items():
                solo[name] += speeds
            print(f"round {round_ + 1} alone: " + ", ".join(f"{name} {median(s for _, s in solo[name]):.0f}"
                                                            for name in variants)
                  + f" images/s  ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        if args.only == "plain" or args.plain and args.only is None:
            for name in variants[round_ % len(variants):] + variants[: round_ % len(variants)]:
                speeds, alone, beside = beside_plain_loop(envs[name], args.epochs, args.limit_train)
                plain[name] += speeds
                loop_alone[name].append(alone)
                loop_beside[name].append(beside)
                print(f"round {round_ + 1} beside a plain PyTorch loop: {name} {median(s for _, s in speeds):.0f} "
                      f"images/s; the loop {beside:.0f} (alone {alone:.0f}) ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr, flush=True)
        if args.only in (None, "pairs"):
            for name in variants[round_ % len(variants):] + variants[: round_ % len(variants)]:
                limit = args.slow_limit_train if spins_in_pairs(name) else args.limit_train
                two[name] += pair(envs[name], args.epochs, limit)
                print(f"round {round_ + 1} two at once: {name} {median(s for _, s in two[name]):.0f} images/s per run "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    wall, (busy_after, ours_after) = time.perf_counter() - started, busy_seconds()
    others = max(0.0, (busy_after - busy_before) - (ours_after - ours_before)) / wall

    import torch  # only for the machine's description, after the runs

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"{args.limit_train} images per epoch ({args.slow_limit_train} for pairs that spin), batch 128, "
          f"--compile on; {args.rounds} rounds, medians; {wall:.0f} s; other processes kept {others:.2f} CPUs busy")
    today = median(s for _, s in solo.get("today", []))
    print(f"{'variant':12s} {'alone s/epoch':>13s} {'images/s':>9s} {'two at once s/epoch':>19s} {'images/s':>9s} "
          f"{'two/today alone':>15s} {'two/alone':>9s} {'alone/today alone':>17s}")
    for name in variants:
        solo_t, solo_s = median(t for t, _ in solo[name]), median(s for _, s in solo[name])
        two_t, two_s = median(t for t, _ in two[name]), median(s for _, s in two[name])
        print(f"{name:12s} {solo_t:13.2f} {solo_s:9.0f} {two_t:19.2f} {two_s:9.0f} {two_s / today:15.2f} "
              f"{two_s / solo_s:9.2f} {solo_s / today:17.3f}   {envs[name] or '(nothing set)'}")
    if any(plain.values()):
        print(f"{'variant':12s} {'beside the loop images/s':>24s} {'/alone':>7s} {'the loop images/s':>17s} "
              f"{'loop alone':>10s} {'loop beside/alone':>17s}")
        for name in variants:
            beside_s, solo_s = median(s for _, s in plain[name]), median(s for _, s in solo[name])
            loop_b, loop_a = median(loop_beside[name]), median(loop_alone[name])
            print(f"{name:12s} {beside_s:24.0f} {beside_s / solo_s:7.2f} {loop_b:17.0f} {loop_a:10.0f} "
                  f"{loop_b / loop_a:17.2f}")
    print("epochs counted, alone / two at once / beside the loop: " + ", ".join(
        f"{name} {len(solo[name])}/{len(two[name])}/{len(plain[name])}" for name in variants))


if __name__ == "__main__":
    main()
