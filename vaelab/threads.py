"""How many CPU threads a vaelab command uses: all of them alone, a fair share beside other vaelab commands.

Why. torch runs its CPU kernels on an OpenMP team (libgomp) whose threads, waiting for one another
between parallel regions, spin for about 300,000 iterations before they sleep. Alone that keeps a
training step fast. Two runs at once on a 2-core machine put four spinning threads on two cores:
each team waits for a thread that the other keeps off its core, and both ran 4 to 12 times slower
(50 times in the issue that asked for this).

Why thread counts and not OpenMP's wait settings (measured with benchmarks/concurrent_runs.py,
figures in docs/performance.md, "Sharing the CPU"). `OMP_WAIT_POLICY=passive` lets two runs reach
0.5-0.65 of a solo run each, but a run alone then puts its threads to sleep between parallel
regions and wakes them again, and lost 2-18% of its speed (on this virtual machine a sleeping CPU
is slow to wake, and how slow changed through the day). `GOMP_SPINCOUNT=1000` gave pairs only
0.42-0.50 and cost a run alone 0-9%; 30,000 spins keep the solo speed and leave a pair at 0.1. The
targets were two runs at 0.40 of a solo run or more and one run within 5% of its speed: thread
counts meet both with room (0.60-0.70, and the solo run unchanged), so vaelab sets no OpenMP
variable, and nothing has to happen before torch is imported.

How. A command that computes for long (train, evaluate, study: see cli.SHARES_CPUS) announces
itself while it runs, by holding a lock on a file in `<temp dir>/vaelab-<uid>/running/`, and uses
`threads alone // vaelab commands running` threads (at least 1). A run alone keeps torch's threads,
so its speed is today's; two runs on two cores take one thread each, a team of one has no one to
wait for, and each goes at 0.60-0.70 of a solo run. A training run looks again every CHECK_EVERY
seconds, from a hook before each optimizer step: it gives up threads within a step of another
command starting and takes them back when that command ends, with one line on stderr each time
(the first from its first step on: a command that stops at bad input prints only its error).
An evaluation takes its share when it starts, silently, and keeps it (its loop has no hook yet).
A process that dies loses its lock; the next command that looks deletes its file. The numbers do
not change: vaelab's kernels give bitwise the same results with 1 or 2 threads (tests/test_threads.py
checks a training run; the compiled step and an evaluation were checked the same way by hand).

What the user sets wins. `VAELAB_THREADS=off`: the command neither announces itself nor changes
threads (vaelab as before). `OMP_NUM_THREADS` or `MKL_NUM_THREADS` set: the command keeps that
count, and still announces itself so that other vaelab commands make room. The count is changed at
run time (torch.set_num_threads), so sharing works whether or not torch was imported before
vaelab. It knows only vaelab commands: beside other programs that compute, start Python with
`OMP_WAIT_POLICY=passive` set (it has no effect once torch is imported), at 2-18% alone.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from .errors import VaelabError

SWITCH = "VAELAB_THREADS"  # "off": leave torch's threads alone and do not announce this process
USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHECK_EVERY = 0.5  # seconds between two looks at who else is running: a directory listing, some flock calls


def running_directory() -> Path:
    """Where running vaelab commands of this user announce themselves (one locked file each)."""
    return Path(tempfile.gettempdir()) / f"vaelab-{os.getuid()}" / "running"


class CpuShare:
    """This process's share of the CPUs among the vaelab commands running now, kept up to date.

    A context manager: on entry it announces the process (a file in `directory`, locked until
    exit; a process that dies loses its lock, and the others then delete its file) and sets the
    thread count; `update()` sets it again if CHECK_EVERY seconds have passed; on exit the file is
    removed and `threads_alone` restored. `set_threads` is None when the user fixed the count:
    the process then only announces itself.
    """

    def __init__(self, directory: Path, threads_alone: int, set_threads: Callable[[int], None] | None,
                 log: Callable[[str], None] = lambda _: None, clock: Callable[[], float] = time.monotonic):
        self.directory = Path(directory)
        self.threads_alone = threads_alone
        self.set_threads = set_threads
        self.log = log
        self.clock = clock
        self.threads = threads_alone
        self.reported = threads_alone
        self.next_check = -float("inf")
        self._file = None
        self._path: Path | None = None
        self._hook = None

    def __enter__(self) -> CpuShare:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # lock a file under a name no one counts, then rename it: a counted file is always locked
            name = f"{os.getpid()}-{secrets.token_hex(4)}"
            pending = self.directory / f"{name}.new"
            self._file = open(pending, "w")
            fcntl.flock(self._file, fcntl.LOCK_EX)
            pending.rename(self.directory / f"{name}.lock")
            self._path = self.directory / f"{name}.lock"
        except OSError:  # no writable temporary folder: run without sharing rather than not at all
            self._close()
            return self
        if self.set_threads is not None:
            self.update(report=False)
            self.next_check = -float("inf")  # the first step looks again, and reports
            self._hook = register_optimizer_step_pre_hook(lambda *_: self.update())
        return self

    def __exit__(self, *exc_info) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._file is not None:
            try:
                self._path.unlink()
            except OSError:
                pass
            self._close()
        if self.set_threads is not None and self.threads != self.threads_alone:
            self.set_threads(self.threads_alone)
            self.threads = self.threads_alone

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None

    def running(self) -> int:
        """How many vaelab commands are running, this one included; stale files of dead ones are removed."""
        count = 1
        for path in self.directory.glob("*.lock"):
            if path == self._path:
                continue
            try:
                with open(path) as other:
                    fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # its owner holds the lock: running
                count += 1
                continue
            except OSError:  # gone meanwhile
                continue
            try:  # we got the lock: its owner died without cleaning up
                path.unlink()
            except OSError:
                pass
        return count

    def update(self, report: bool = True) -> None:
        """Set the thread count to this process's share, at most every CHECK_EVERY seconds.

        With `report`, a share that differs from the last one reported (at first: all threads) is
        logged. The look on entry does not report, so a command that fails on bad input says
        only what is wrong; the training loop's first look reports the share it started with.
        """
        now = self.clock()
        if now < self.next_check or self._file is None or self.set_threads is None:
            return
        self.next_check = now + CHECK_EVERY
        running = self.running()
        threads = max(1, self.threads_alone // running)
        if threads != self.threads:
            self.set_threads(threads)
            self.threads = threads
        if report and self.threads != self.reported:
            self.reported = self.threads
            self.log(f"vaelab: {running} vaelab commands share the CPUs: using {threads} of {self.threads_alone} "
                     f"threads" if running > 1 else f"vaelab: running alone again: using {threads} threads")


def share_cpus(log: Callable[[str], None] = lambda _: None, environ=os.environ) -> CpuShare | nullcontext:
    """The CpuShare a long vaelab command runs in, as `VAELAB_THREADS` and the user's settings allow."""
    switch = environ.get(SWITCH, "on").strip().lower()
    if switch not in ("on", "off", ""):
        raise VaelabError(f"{SWITCH}={environ[SWITCH]!r}: use on (share the CPUs with other vaelab commands) or off")
    if switch == "off":
        return nullcontext()
    user_fixed = any(environ.get(name) for name in USER_THREAD_VARIABLES)
    return CpuShare(running_directory(), torch.get_num_threads(), None if user_fixed else torch.set_num_threads, log)
