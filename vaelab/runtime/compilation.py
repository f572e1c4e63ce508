"""Speed without different numbers: torch.compile with an eager fallback, and the fastest Adam the device has.

Nothing here changes what is computed. A compiled function and its eager original take the same
inputs (random draws are made outside, from the caller's generator) and agree to float rounding;
tests/test_fast.py checks that they do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from ..errors import out_of_memory

COMPILE_MODES = ("auto", "on", "off")


def use_compile(mode: str, work: int, threshold: int) -> bool:
    """Whether to compile: "on"/"off" as said; "auto" when `work` reaches `threshold`.

    torch.compile costs seconds up front (5-20 s on a 2-core CPU, less once its cache is warm),
    so "auto" compiles only jobs long enough to earn that back.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}")
    return mode == "on" or (mode == "auto" and work >= threshold)


def step_compile_mode(device: torch.device) -> str | None:
    """torch.compile's mode for a function of static shapes called once per step on `device`:
    "reduce-overhead" on CUDA, which records the step's kernels once as a CUDA graph and replays it
    with one launch (a step of the default CVAE is a few dozen small kernels, whose launches a GPU
    would otherwise wait on); None (the default mode) elsewhere, where there are no graphs to replay."""
    return "reduce-overhead" if device.type == "cuda" else None


def vector_width_options() -> dict:
    """torch.compile's inductor options that name the CPU vector width its C++ kernels are written
    for: the width inductor picks itself (AVX-512: 512 bits, AVX2: 256; ATEN_CPU_CAPABILITY chooses).

    Why name it: inductor's cache of compiled graphs (under the temporary folder, shared by every
    process of the user) does not tell the widths apart, and a graph written for one width and
    built for another computed NaN or crashed the process (torch 2.13: a run with
    ATEN_CPU_CAPABILITY=avx2 after one without, or the other way round). The width set as an
    option enters the cache's key, and the kernels are those inductor would write anyway.
    """
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        return {"cpp.simdlen": pick_vec_isa().bit_width()}
    except Exception:  # another torch, or no C++ compiler: name no width; torch.compile says what fails
        return {}


def compilation_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that say torch.compile could not compile a function, as opposed to the function
    failing: no C++ compiler or Triton, an operation the compiler cannot lower or trace, a backend
    that failed. (torch.compile raises an error of the function itself, found while tracing, as
    TorchRuntimeError; that one is not among them.)"""
    from torch._dynamo import exc as dynamo
    from torch._inductor import exc as inductor

    return (dynamo.BackendCompilerFailed, dynamo.Unsupported, dynamo.InvalidBackend, inductor.CppCompileError,
            inductor.InvalidCxxCompiler, inductor.OperatorIssue, inductor.TritonMissing, inductor.GPUTooOldForTriton)


def _cause(exc: BaseException) -> BaseException:
    """The error inside a failed compilation (BackendCompilerFailed wraps the backend's own)."""
    return getattr(exc, "inner_exception", None) or exc


class CompiledOrEager:
    """`fn` through torch.compile, falling back to running eagerly if compilation fails.

    Compilation needs a C++ compiler on a CPU and may meet an operation it cannot handle; the first
    such failure (`compilation_errors`) prints one line on stderr and every later call runs
    eagerly. Same results either way. Any other error, such as a bug in the model or memory that
    ran out (also while compiling), is raised as it is. `eager` (default: `fn` itself) is what runs
    eagerly: a function that computes what `fn` does in a way that is faster without a compiler.
    `backend` and `mode` are torch.compile's.
    """

    def __init__(self, fn: Callable, what: str, enabled: bool = True, dynamic: bool | None = None,
                 eager: Callable | None = None, backend: str | Callable = "inductor", mode: str | None = None):
        self.fn = fn if eager is None else eager
        self.what = what
        self.mode = mode
        # a mode brings its own options (torch.compile takes one or the other); modes are for CUDA
        options = vector_width_options() if enabled and mode is None and backend == "inductor" else None
        self.compiled = torch.compile(fn, dynamic=dynamic, backend=backend, mode=mode, options=options) \
            if enabled else None

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except compilation_errors() as exc:
                cause = _cause(exc)
                if out_of_memory(cause):
                    raise cause from None
                first_line = str(cause).strip().splitlines()[0][:120] if str(cause).strip() else ""
                print(f"vaelab: torch.compile is unavailable for {self.what} ({type(cause).__name__}: "
                      f"{first_line}); running eagerly", file=sys.stderr)
                self.compiled = None
        return self.fn(*args)


