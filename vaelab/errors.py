"""The exceptions vaelab raises for problems it can explain, and the exit code of each.

The command line turns them into a single line on stderr, "vaelab: error: ...", and an exit code:

    2  bad input: a flag, a file, a run directory or the environment the user can fix (VaelabError)
    1  a failure while running on good input: a full disk, a diverged loss, a lost process,
       memory that ran out (RunFailed)

Library users catch VaelabError (RunFailed is one). Anything else that escapes is a bug in vaelab.

A message names a setting or an option as {name} ("{latent_dim} 'forty' is not allowed"): the
message, `str(error)`, shows the name as it is (latent_dim, as a TOML file or the API spells it),
and the command line shows its flag (--latent-dim: `VaelabError.worded`, called by `cli/commands.py`).
"""

import re
from collections.abc import Callable

EXIT_BAD_INPUT = 2
NAMED = re.compile(r"\{([a-z][a-z_]*)\}")  # {name}: a setting or an option in a message
EXIT_FAILURE = 1


class VaelabError(Exception):
    """A problem with the user's input, files or environment, with a message saying what to do.

    In a group of processes (`vaelab.runtime.processes`) process 0 prints it; another process prints it
    too where `local` says that only it met the problem, and none where `quiet` says another does.
    """

    exit_code = EXIT_BAD_INPUT
    local = False
    quiet = False

    def __init__(self, message: str = ""):
        self.template = message
        super().__init__(NAMED.sub(lambda match: match.group(1), message))

    def worded(self, name: Callable[[str], str]) -> str:
        """The message with every {setting} written as `name(setting)` (the command line: its flag)."""
        return NAMED.sub(lambda match: name(match.group(1)), self.template)


class RunFailed(VaelabError):
    """A command that started on good input failed while it ran; the message says what is kept and
    how to go on (usually: free some space, then resume)."""

    exit_code = EXIT_FAILURE


class DataError(VaelabError):
    """A data file is missing, corrupt, or does not match its pinned checksum."""


class NotRegistered(VaelabError, ValueError):
    """A family or network that is not registered in this process (an unknown --model or --network)."""


class RunError(VaelabError):
    """A run directory is missing, incomplete, or does not fit the requested operation."""


class TrainingDiverged(RunFailed):
    """The loss or a gradient became NaN or infinite."""


class TrainingInterrupted(VaelabError):
    """Training stopped on SIGINT or SIGTERM after saving its state; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says that memory ran out: Python's MemoryError, torch's OutOfMemoryError (a GPU),
    or the RuntimeError of torch's CPU allocator."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
