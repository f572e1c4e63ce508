"""Ctrl-C and SIGTERM during training: a flag the loop checks between steps, so the state can be saved."""

from __future__ import annotations

import signal

import torch


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received`; calling the object says whether one came."""

    def __init__(self):
        self.received: int | None = None
        self.ignore_after = False  # on exit ignore both signals (a process of a group that is stopping)
        self._previous = {}

    def __call__(self) -> bool:
        return self.received is not None

    def __enter__(self) -> "StopSignals":
        def handler(signum, frame):
            self.received = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: signals keep their default handling
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.ignore_after else previous)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name


class AgreedStop:
    """StopSignals of a group of processes (`vaelab.runtime.processes`): stop when any process got a signal.

    Every process calls it at the same points (once per step, and with force=True between epochs);
    every `every`-th call, and every forced one, is a collective, so all processes stop at the
    same step; `received` is then SIGINT if any process got one, else SIGTERM. A collective costs
    0.2-0.8 ms between two processes on a 2-core CPU (gloo; benchmarks/processes.py), and checking
    at every step cost 2 compiled processes 13% of their speed: hence every 25 steps. One process
    on its own asks its StopSignals at every call, with no collective.
    """

    def __init__(self, signals: StopSignals, processes, every: int = 1):
        self.signals, self.processes, self.every = signals, processes, every
        self.received: int | None = None
        self.calls = 0

    def __call__(self, force: bool = False) -> bool:
        if self.processes.count == 1:
            self.received = self.signals.received
            return self.received is not None
        self.calls += 1
        if force or self.calls % self.every == 0:
            got = torch.zeros(2, dtype=torch.int64)
            if self.signals.received is not None:
                got[0 if self.signals.received == signal.SIGINT else 1] = 1
            interrupt, terminate = self.processes.sum(got).tolist()
            self.received = signal.SIGINT if interrupt else signal.SIGTERM if terminate else None
        if self.received is not None:
            # torchrun answers the first process to exit by sending SIGTERM to the others: they are
            # stopping already, and must not die of it before they exit with their own code
            self.signals.ignore_after = True
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name
