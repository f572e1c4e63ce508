"""`python -m tests.signal_at_step STEP SIGNAL [--rank R] [--import MODULE] -- VAELAB ARGUMENTS`: run the
vaelab command, and have it send itself SIGNAL (TERM, INT or KILL) just before its STEP-th optimizer
step of this call, counted from 1, as a user's Ctrl-C, a scheduler's SIGTERM or the kernel's kill -9
would arrive at that moment. With --rank, only process R of a torchrun group sends it. --import
(repeatable) imports MODULE first, e.g. one that registers model families written outside vaelab
(`tests/register_outside_families.py`).

The moment is a step of the run, not a time: a test that uses this gets the same interrupted run
on any machine (`tests/progress.py`).
"""

import argparse
import importlib
import os
import signal
import sys

from torch.optim.optimizer import register_optimizer_step_pre_hook

from vaelab.cli import main


def arm(step: int, signum: int) -> None:
    """Send this process `signum` before the `step`-th optimizer step from now."""
    calls = 0

    def before_step(*_):
        nonlocal calls
        calls += 1
        if calls == step:
            os.kill(os.getpid(), signum)

    register_optimizer_step_pre_hook(before_step)


if __name__ == "__main__":
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("step", type=int)
    parser.add_argument("signal", choices=("TERM", "INT", "KILL"))
    parser.add_argument("--rank", type=int)
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    args = parser.parse_args(sys.argv[1:split])
    for module in args.imports:
        importlib.import_module(module)
    if args.rank is None or int(os.environ.get("RANK", "0")) == args.rank:
        arm(args.step, getattr(signal, f"SIG{args.signal}"))
    sys.exit(main(sys.argv[split + 1 :]))
