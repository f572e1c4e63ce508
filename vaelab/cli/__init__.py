"""The `vaelab` command line.

    arguments.py  the parser: every command and flag (the training settings' flags come from `vaelab.config`)
    commands.py   what each command does, and `main`: errors as one line and an exit code
"""

from .commands import main

__all__ = ["main"]
