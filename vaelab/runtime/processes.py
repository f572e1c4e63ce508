"""Several processes on one model: the group torchrun starts, and the few collectives vaelab needs.

vaelab manages no processes. `torchrun --nproc-per-node N -m vaelab train ...` (with `--nnodes` and
a rendezvous for several machines) starts them and describes the group in the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `joined()` joins it. Collectives on CPU tensors
go through gloo, on CUDA tensors through NCCL (where torch has it).

How the processes stay one run. Every process holds the whole data set and identical random
streams: each draws the whole global batch's order, binarisation bits and noise, and computes on
its own rows of it (`Processes.rows`); the sum of their gradients is the one-process gradient.
Whatever only one process may decide (the run directory's contents, the clock of a time limit) is
decided by process 0 and broadcast. Only process 0 reads or writes the run directory.

Every collective that fails (another process died, or did not answer within TIMEOUT) raises
ProcessLost, a VaelabError, instead of torch's traceback.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import RunFailed, VaelabError

TIMEOUT = timedelta(minutes=10)  # longest wait for another process: it compiles, validates or writes meanwhile
GROUP_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class ProcessLost(RunFailed):
    """A collective failed: another process ended, or did not answer within TIMEOUT."""

    local = True  # every process that sees it says so


class OtherProcessFailed(VaelabError):
    """Another process of the group failed with an error of its own (that process prints it)."""

    quiet = True


@dataclass(frozen=True)
class Processes:
    """This process's place in the group: rank of count (1 and 0 for a process on its own)."""

    rank: int = 0
    count: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Process 0: the one that reads and writes the run directory and prints."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This process's rows of n, in rank order: rank * n // count up to (rank + 1) * n // count."""
        return slice(self.rank * n // self.count, (self.rank + 1) * n // self.count)

    def device(self, device: torch.device) -> torch.device:
        """The device this process computes on: GPU LOCAL_RANK where `device` is CUDA in a group."""
        if self.count == 1 or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise VaelabError(f"process {self.rank} is local process {self.local_rank} of its machine, which has "
                              f"{torch.cuda.device_count()} GPUs: start at most one process per GPU "
                              "(torchrun --nproc-per-node)")
        return torch.device("cuda", self.local_rank)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """All processes' `tensor` summed, in place (every process gets the sum); returns it."""
        if self.count > 1:
            _collective(dist.all_reduce, tensor)
        return tensor

    def main_decides(self, flag: bool) -> bool:
        """Process 0's `flag`, on every process (the others' are ignored)."""
        if self.count == 1:
            return flag
        value = torch.tensor([int(flag) if self.main else 0])
        return bool(self.sum(value).item())

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Process 0's `data` on every process (the others pass None)."""
        if self.count == 1:
            return data
        size = torch.tensor([len(data) if self.main else 0], dtype=torch.int64)
        _collective(dist.broadcast, size, 0)
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.main and len(data) \
            else torch.empty(int(size.item()), dtype=torch.uint8)
        if buffer.numel():
            _collective(dist.broadcast, buffer, 0)
        return buffer.numpy().tobytes()

    def broadcast_json(self, value):
        """Process 0's JSON-able `value` on every process."""
        if self.count == 1:
            return value
        return json.loads(self.broadcast_bytes(json.dumps(value).encode() if self.main else None))

    @contextmanager
    def agreement(self, what: str) -> Iterator[None]:
        """Run the block on every process; if it raised a VaelabError on any, raise one on all.

        The processes that failed raise their own error (printed by process 0 if it is one of
        them, else by each with its rank); the others raise OtherProcessFailed, quietly, except
        process 0, which names the processes that failed `what`.
        """
        error = None
        try:
            yield
        except VaelabError as exc:
            error = exc
        if self.count == 1:
            if error is not None:
                raise error
            return
        failed = torch.zeros(self.count, dtype=torch.int64)
        failed[self.rank] = error is not None
        failed = self.sum(failed).tolist()
        if not any(failed):
            return
        if error is not None:
            if not self.main and not failed[0]:
                error.local = True  # process 0 did not fail: this process says why it did
            raise error
        ranks = ", ".join(str(r) for r, f in enumerate(failed) if f)
        message = f"process {ranks} failed {what} (its message says why)"
        if self.main:
            raise VaelabError(message)
        raise OtherProcessFailed(message)


def _collective(operation, *args) -> None:
    try:
        operation(*args)
    except (RuntimeError, dist.DistError) as exc:  # DistBackendError and gloo's errors are RuntimeErrors
        raise ProcessLost(lost_message(exc)) from None


def lost_message(exc: BaseException) -> str:
    """ProcessLost's message: torch's first sentence, without the C++ source file it names."""
    text = str(exc).strip()
    reason = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]).split(". ")[0][:160] if text else type(exc).__name__
    return f"lost contact with the other training processes ({reason})"


SINGLE = Processes()


def backend() -> str:
    """gloo for CPU tensors, and NCCL for CUDA tensors where torch has both."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def group_size(environ=os.environ) -> int:
    """WORLD_SIZE as torchrun sets it: the number of processes in the group (1 outside one)."""
    text = environ.get("WORLD_SIZE", "") or "1"
    if not text.isdigit() or int(text) < 1:
        raise VaelabError(f"WORLD_SIZE={text!r} is not a number of processes: start several processes with "
                          "torchrun, or unset it")
    return int(text)


def joined(environ=os.environ) -> Processes:
    """Join the group torchrun describes in `environ`; SINGLE when there is none (or it has one process).

    A process with a CUDA GPU per local rank takes GPU LOCAL_RANK as its current device.
    """
    count = group_size(environ)
    if count <= 1:
        return SINGLE
    missing = [name for name in GROUP_VARIABLES if name not in environ]
    if missing:
        raise VaelabError(f"WORLD_SIZE={count} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                          "set: start several processes with torchrun (see docs/guides/distributed.md)")
    if not dist.is_available():
        raise VaelabError("this build of torch has no torch.distributed: run one process, or install a torch with it")
    processes = Processes(int(environ["RANK"]), count, int(environ["LOCAL_RANK"]))
    if torch.cuda.is_available() and processes.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(processes.local_rank)
    try:
        dist.init_process_group(backend(), rank=processes.rank, world_size=count, timeout=TIMEOUT)
    except (RuntimeError, ValueError, dist.DistError) as exc:
        raise ProcessLost(f"could not join the group of {count} processes at {environ['MASTER_ADDR']}:"
                          f"{environ['MASTER_PORT']} ({str(exc).strip().splitlines()[0][:160]})") from None
    return processes


def leave(processes: Processes) -> None:
    """Leave the group (at the end of a command, whatever happened).

    What still holds the group (DistributedDataParallel's reducer, in a reference cycle) is freed
    first: freed later, during the interpreter's shutdown, gloo's threads abort the process
    ("terminate called without an active exception", 1 exit in 8 on a loaded 2-core machine).
    """
    if processes.count > 1 and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


@contextmanager
def group(environ=os.environ) -> Iterator[Processes]:
    """`joined()` for the length of a command."""
    processes = joined(environ)
    try:
        yield processes
    finally:
        leave(processes)
