"""Ctrl-C and SIGTERM during training: a flag the loop checks between steps, so the state can be saved."""

from __future__ import annotations

import signal


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received`; calling the object says whether one came."""

    def __init__(self):
        self.received: int | None = None
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
            signal.signal(sig, previous)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name
