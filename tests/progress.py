"""Waiting on a run's progress, never on the clock.

A test that stops, kills or inspects a running command picks its moment by what the command has
done (a line in metrics.jsonl, a checkpoint, an optimizer step: see `tests/signal_at_step.py`),
so its verdict is the same on a fast machine, a slow one and a busy one. The only clock here is
HANG_GUARD, which turns a command that would hang forever into a failure with a message; a
command that makes progress never meets it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vaelab.runs import RunDir, read_metrics

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD = 1800  # seconds without the awaited progress: only a hung command gets here
POLL = 0.02  # seconds between two looks


def wait_until(condition: Callable[[], bool], process: subprocess.Popen | None, what: str,
               hang_guard: float = HANG_GUARD) -> None:
    """Return once `condition()` holds; fail if `process` ends first, or nothing happens for `hang_guard` s."""
    began = time.monotonic()
    while not condition():
        if process is not None and process.poll() is not None:
            if condition():
                return
            raise AssertionError(f"the command ended (exit {process.returncode}) before {what}:\n"
                                 f"{process.stderr.read() if process.stderr else ''}")
        if time.monotonic() - began > hang_guard:
            raise AssertionError(f"no progress towards {what} in {hang_guard:.0f} s: it hangs")
        time.sleep(POLL)


def logged_epochs(out: Path) -> int:
    """How many epochs the run in `out` has logged in metrics.jsonl."""
    return len(read_metrics(RunDir(Path(out)).metrics))


def wait_for_epoch(out: Path, epoch: int, process: subprocess.Popen | None) -> None:
    """Return once the run in `out` has logged `epoch` epochs (see `wait_until`)."""
    wait_until(lambda: logged_epochs(out) >= epoch, process, f"epoch {epoch} was logged in {out}")


class EpochWatch:
    """When each epoch of the run in `out` was first seen in metrics.jsonl, for picking moments
    inside an epoch (training, validation, the files written after it) by the run's own pace."""

    def __init__(self, out: Path):
        self.out, self.seen = Path(out), {}

    def logged(self) -> int:
        """How many epochs are logged now (noting when each count was first seen)."""
        count = logged_epochs(self.out)
        self.seen.setdefault(count, time.monotonic())
        return count

    def part_of_an_epoch(self, rng: random.Random) -> float:
        """A random share of the time between the last two epochs seen logged, in seconds: a wait
        that ends somewhere in the epoch after the last one, however fast the machine."""
        last = max(self.seen)
        return rng.random() * (self.seen[last] - self.seen[last - 1])


def same_threads() -> dict[str, str]:
    """The environment for a command whose numbers a test compares bit for bit with this process's:
    this process's torch thread count, fixed. Bit for bit holds only at one thread count: on some
    CPUs (an AVX-512 Xeon, say) a matrix product sums in another order on 2 threads than on 1."""
    import torch

    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def vaelab_command(*arguments: str, signal_at: tuple[int, str] | None = None, rank: int | None = None) -> list[str]:
    """The argv of `python -m vaelab ARGUMENTS`, or with signal_at = (step, signal name), of vaelab
    sending itself that signal before its step-th optimizer step (in process `rank` of a group only)."""
    if signal_at is None:
        return [sys.executable, "-m", "vaelab", *arguments]
    step, name = signal_at
    return [sys.executable, "-m", "tests.signal_at_step", str(step), name,
            *(["--rank", str(rank)] if rank is not None else []), "--", *arguments]
