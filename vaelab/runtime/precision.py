"""The precision of the training step's products (`--precision`): float32, bf16 or tf32.

    float32   every product in float32: the default, and what the evaluation always uses.
    bf16      the networks' matrix products and convolutions in bfloat16 under torch.autocast
              (`models.layers.Network`); their inputs, outputs, the log-likelihood, the KL terms,
              the flows, the reductions, the parameters and Adam's state stay in float32. For CPUs
              with bfloat16 instructions (AVX-512 BF16, AMX) and for GPUs.
    tf32      CUDA only: float32 products on the tensor cores with TensorFloat-32 inputs (10-bit
              mantissas), everything else as float32.

Only training changes: validation, the evaluation's importance-sampled and annealed estimates and
every picture are computed in float32 whatever the run trained with.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ..errors import VaelabError

PRECISIONS = ("float32", "bf16", "tf32")


def network_dtype(precision: str) -> torch.dtype | None:
    """The dtype the networks' products run in for `precision`: bfloat16 for bf16, else None (their own)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "bf16" else None


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot give (VaelabError, one line): tf32 on anything but CUDA."""
    network_dtype(precision)
    if precision == "tf32" and device.type != "cuda":
        raise VaelabError(f"--precision tf32 is for CUDA GPUs, and this run trains on the {device.type}; "
                          "use float32 or bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 in hardware: a CPU with AVX-512 BF16 or AMX, a GPU that
    torch says supports it. Elsewhere oneDNN emulates bf16 and `--precision bf16` is slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True  # other accelerators: their own business
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def precision_warning(precision: str, device: torch.device) -> str | None:
    """A line for the run's log where `precision` will be slow on `device` (bf16 without bf16
    instructions), or None."""
    if precision == "bf16" and not native_bf16(device):
        return (f"note: this {device.type} has no bfloat16 instructions, so --precision bf16 is emulated and "
                "slower than float32; use float32 here")
    return None


@contextmanager
def matmul_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Within it, CUDA's float32 products and convolutions use TensorFloat-32 for precision tf32, and
    true float32 for the others (cuDNN's convolutions would use TensorFloat-32 by default); on exit
    torch's settings are put back as they were. Nothing changes on a CPU."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def in_float32(function: Callable) -> Callable:
    """`function(model, ...)` run with true float32 products on the model's device (`matmul_precision`):
    validation and the evaluation, whatever the training ran with."""
    @functools.wraps(function)
    def in_true_float32(model, *args, **kwargs):
        tensor = next(itertools.chain(model.parameters(), model.buffers()), None)  # a model may have neither
        with matmul_precision("float32", torch.device("cpu") if tensor is None else tensor.device):
            return function(model, *args, **kwargs)

    return in_true_float32
