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
    """StopSignals of a group of processes (`vaelab.distributed`): stop when any process got a signal.

    Every call is a collective (every process calls it at the same step), so all processes stop at
    the same step; `received` is then SIGINT if any process got one, else SIGTERM. One process
    on its own asks its StopSignals, with no collective.
    """

    def __init__(self, signals: StopSignals, processes):
        self.signals, self.processes = signals, processes
        self.received: int | None = None

    def __call__(self) -> bool:
        if self.processes.count == 1:
            self.received = self.signals.received
        else:
            got = torch.zeros(2, dtype=torch.int64)
            if self.signals.received is not None:
                got[0 if self.signals.received == signal.SIGINT else 1] = 1
            interrupt, terminate = self.processes.sum(got).tolist()
            self.received = signal.SIGINT if interrupt else signal.SIGTERM if terminate else None
        if self.received is not None and self.processes.count > 1:
            # torchrun answers the first process to exit by sending SIGTERM to the others: they are
            # stopping already, and must not die of it before they exit with their own code
            self.signals.ignore_after = True
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name
