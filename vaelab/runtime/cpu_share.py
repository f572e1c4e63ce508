"""How many CPU threads a vaelab command uses: all of them alone, fewer while other programs compute.

Why. torch runs its CPU kernels on an OpenMP team (libgomp) whose threads, waiting for one another
between parallel regions, spin for about 300,000 iterations before they sleep. Alone that keeps a
training step fast. Beside another program that computes, a team of two on two cores keeps
waiting for the thread the other program keeps off its core: two vaelab runs at once went 4 to 12
times slower, and a run beside a plain PyTorch training loop kept 5-25 % of its speed (the loop,
whose own team spins as well, kept 55-69 % of its own).

What it does. A command that computes for long (train, evaluate, study: see cli.SHARES_CPUS) looks,
every CHECK_EVERY seconds, at two things, and sets torch's thread count from them:
- the vaelab commands running now: each holds a lock on a file in `<temp dir>/vaelab-<uid>/running/`
  while it runs (a process that dies loses its lock; the next command that looks deletes its
  file); n of them take `threads alone // n` threads each;
- how many CPUs all other processes kept busy since the last look (`MachineLoad`: the machine's busy
  time in /proc/stat less this process's and its children's CPU time). While they keep more than
  YIELD_AT of a CPU from this process's threads, it gives up threads (to 1 beside a program that
  keeps a CPU or more busy), and it takes them back once they leave RETURN_AT of a CPU free.
A team of one thread has no one to wait for: it computes whenever it has a core. Alone a command
keeps all of torch's threads, so its speed is unchanged. A training run looks before each step
(within a step of another program starting: the command line passes `update` to `train`, whose
epoch loop calls it), an evaluation before each batch of test images (`evaluate_model`'s
`between_batches`); each says on stderr, in
one line, when its count changes (the first from its first look on: a command that stops at bad
input prints only its error).
What sharing costs in numbers: at one thread count a run repeats bit for bit (tests/test_threads.py
checks that a run given 1 of 2 threads is the run fixed at 1). Another count sums some float32
products in another order on some CPUs (an AVX-512 Xeon; on an AMD EPYC MKL's products come out
the same), and Adam grows that last-bit difference in a near-zero gradient into a step of the
learning rate: weights part by up to lr x steps, metrics by about 1e-5 nats per image. A run that
must repeat bit for bit on a busy machine fixes its threads (OMP_NUM_THREADS, or VAELAB_THREADS=off).

Why thread counts and not OpenMP's wait settings (measured with benchmarks/concurrent_runs.py,
figures in docs/performance.md, "Sharing the CPU"). `OMP_WAIT_POLICY=passive` lets two runs reach
0.5-0.65 of a solo run each, but a run alone then puts its threads to sleep between parallel
regions and wakes them again, and lost 2-18% of its speed (on this virtual machine a sleeping CPU
is slow to wake). `GOMP_SPINCOUNT=1000` gave pairs only 0.42-0.50 and cost a run alone 0-9%. Thread
counts change at run time (torch.set_num_threads), whether or not torch was imported first, and
cost a run alone nothing; so vaelab sets no OpenMP variable.

What the user sets wins. `VAELAB_THREADS=off`: the command neither announces itself nor changes
threads. `OMP_NUM_THREADS` or `MKL_NUM_THREADS` set: the command keeps that count, and still
announces itself so that other vaelab commands make room.
"""

from __future__ import annotations

import fcntl
import math
import os
import resource
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from ..errors import VaelabError

SWITCH = "VAELAB_THREADS"  # "off": leave torch's threads alone and do not announce this process
USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHECK_EVERY = 0.5  # seconds between two looks: a directory listing, some flock calls, /proc/stat
YIELD_AT = 0.7  # CPUs that other processes take beyond what this process's threads leave them: give up a thread
RETURN_AT = 0.3  # CPUs that must stay free beyond one more thread before it is taken back


def hold_thread_count() -> None:
    """Make MKL compute with exactly torch's thread count, as a run that must repeat needs.

    Until torch.set_num_threads is first called in a process, torch leaves MKL's MKL_DYNAMIC on:
    MKL may then choose fewer threads for a product than it is given, by rules it does not state,
    and on a CPU whose products sum in another order on fewer threads, two runs with the same seed
    differ in the last bits, which Adam turns into whole steps on near-zero gradients (an Intel
    Xeon gave two processes with the same seed and thread count other weights beside another
    program). Intel's conditions for run-to-run reproducibility are a fixed thread count and
    MKL_DYNAMIC off. torch.set_num_threads turns MKL_DYNAMIC off; setting the count torch already
    has changes nothing else. Training and evaluation call this first.
    """
    torch.set_num_threads(torch.get_num_threads())


def running_directory() -> Path:
    """Where running vaelab commands of this user announce themselves (one locked file each)."""
    return Path(tempfile.gettempdir()) / f"vaelab-{os.getuid()}" / "running"


def _machine_busy_seconds(stat: Path = Path("/proc/stat")) -> float:
    """CPU seconds the whole machine has spent busy since boot (user, nice, system, irq, softirq:
    not idle, iowait or the hypervisor's steal)."""
    fields = [int(value) for value in stat.read_text().split("\n", 1)[0].split()[1:8]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds this process and its descendants have used, living or finished (torch.compile's
    workers and the compilers they start are this command's work, not another program's)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the finished children it has waited for
    return time.process_time() + children.ru_utime + children.ru_stime + _descendants_seconds(os.getpid())


def _descendants_seconds(pid: int) -> float:
    """CPU seconds of the living descendants of `pid`, with the finished children each waited for."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return total
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:  # after the command's name: state, ..., utime (12th), stime, cutime, cstime
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(value) for value in fields[11:15]) / tick + _descendants_seconds(int(child))
    return total


class MachineLoad:
    """How many CPUs other processes kept busy between two calls: (machine busy time - this
    process's CPU time) / wall time. None at the first call after creation or `restart()`, or where
    /proc/stat cannot be read."""

    def __init__(self, busy: Callable[[], float] = _machine_busy_seconds, own: Callable[[], float] = _own_seconds,
                 clock: Callable[[], float] = time.monotonic):
        self.busy, self.own, self.clock = busy, own, clock
        self.last: tuple[float, float, float] | None = None

    def __call__(self) -> float | None:
        try:
            now = (self.clock(), self.busy(), self.own())
        except (OSError, ValueError, IndexError):  # not Linux, or no /proc: share with vaelab commands only
            return None
        last, self.last = self.last, now
        if last is None or now[0] <= last[0]:
            return None
        return max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])

    def restart(self) -> None:
        """Forget the last look: the next call starts a new window (and returns None)."""
        self.last = None


class CpuShare:
    """This process's share of the CPUs, kept up to date: by the vaelab commands running and by the
    CPUs that other processes keep busy (see the module's docstring).

    A context manager: on entry it announces the process (a file in `directory`, locked until
    exit) and sets the thread count; `update()` sets it again if CHECK_EVERY seconds have passed;
    on exit the file is removed and `threads_alone` restored. `set_threads` is None when the user
    fixed the count: the process then only announces itself. `load` says how many CPUs other
    processes keep busy (a MachineLoad; None: look at vaelab commands only). While the process is
    stopped (Ctrl-Z, SIGSTOP) the others compute without it, which says nothing about sharing:
    on SIGCONT the load's window starts anew.
    """

    def __init__(self, directory: Path, threads_alone: int, set_threads: Callable[[int], None] | None,
                 log: Callable[[str], None] = lambda _: None, clock: Callable[[], float] = time.monotonic,
                 load: Callable[[], float | None] | None = None):
        self.directory = Path(directory)
        self.threads_alone = threads_alone
        self.set_threads = set_threads
        self.log = log
        self.clock = clock
        self.load = load
        self.threads = threads_alone
        self.reported = threads_alone
        self.next_check = -float("inf")
        self._file = None
        self._path: Path | None = None
        self._previous_sigcont = None

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
            if hasattr(self.load, "restart"):
                try:  # only where nobody else handles SIGCONT, and from the main thread
                    if signal.getsignal(signal.SIGCONT) == signal.SIG_DFL:
                        self._previous_sigcont = signal.signal(signal.SIGCONT, lambda *_: self.load.restart())
                except ValueError:
                    pass
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous_sigcont is not None:
            signal.signal(signal.SIGCONT, self._previous_sigcont)
            self._previous_sigcont = None
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

    def fitting(self, others: float) -> int:
        """The thread count beside other processes that keep `others` CPUs busy, from the count now:
        fewer once they take more than YIELD_AT of a CPU beyond what these threads leave them, more
        once a further thread would still leave RETURN_AT of a CPU free; else the same."""
        free = self.threads_alone - others
        if free < self.threads - YIELD_AT:
            return max(1, math.floor(free + YIELD_AT))
        if free >= self.threads + 1 - RETURN_AT:
            return min(self.threads_alone, math.floor(free + RETURN_AT))
        return self.threads

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
        others = self.load() if self.load is not None else None
        fits = threads if others is None else self.fitting(others)
        busy = fits < threads  # other programs, not only vaelab commands, leave it fewer threads
        threads = min(threads, fits)
        if threads != self.threads:
            self.set_threads(threads)
            self.threads = threads
        if report and self.threads != self.reported:
            self.reported = self.threads
            if busy:
                self.log(f"vaelab: other programs keep {others:.1f} CPUs busy: using {threads} of "
                         f"{self.threads_alone} threads (VAELAB_THREADS=off keeps them all)")
            elif running > 1:
                self.log(f"vaelab: {running} vaelab commands share the CPUs: using {threads} of "
                         f"{self.threads_alone} threads")
            else:
                self.log(f"vaelab: the CPUs are free again: using {threads} threads")


def share_cpus(log: Callable[[str], None] = lambda _: None, environ=os.environ) -> CpuShare | nullcontext:
    """The CpuShare a long vaelab command runs in, as `VAELAB_THREADS` and the user's settings allow."""
    switch = environ.get(SWITCH, "on").strip().lower()
    if switch not in ("on", "off", ""):
        raise VaelabError(f"{SWITCH}={environ[SWITCH]!r}: use on (share the CPUs with other programs) or off")
    if switch == "off":
        return nullcontext()
    user_fixed = any(environ.get(name) for name in USER_THREAD_VARIABLES)
    return CpuShare(running_directory(), torch.get_num_threads(), None if user_fixed else torch.set_num_threads, log,
                    load=MachineLoad())
