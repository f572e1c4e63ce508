"""The one exception type that vaelab raises for problems a user can fix.

The command line turns it into a single line on stderr and exit code 2; library users catch it.
Anything else that escapes is a bug in vaelab.
"""


class VaelabError(Exception):
    """A problem with the user's input, files or environment, with a message saying what to do.

    In a group of processes (`vaelab.distributed`) process 0 prints it; another process prints it
    too where `local` says that only it met the problem, and none where `quiet` says another does.
    """

    local = False
    quiet = False


class DataError(VaelabError):
    """A data file is missing, corrupt, or does not match its pinned checksum."""


class RunError(VaelabError):
    """A run directory is missing, incomplete, or does not fit the requested operation."""


class TrainingDiverged(VaelabError):
    """The loss or a gradient became NaN or infinite."""


class TrainingInterrupted(VaelabError):
    """Training stopped on SIGINT or SIGTERM after saving its state; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
