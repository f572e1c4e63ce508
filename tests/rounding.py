"""How far float32 rounding alone may move a figure: the tolerance of every test that compares a
computation with the same computation done another way (another thread count, other CPU kernels, a
compiled program, another memory layout, another split over processes), derived here once rather
than measured on one machine.

float32 rounds each operation to a relative error of at most u = 2^-24. A figure of one image (a
bound, a log-likelihood, a gradient's share) is a chain of at most OPERATIONS = 4,000 rounded
operations along any path: an encoder's and a decoder's dot products of up to 794 and 500 terms,
the 784-pixel sum, the KL's and the importance weights' sums, and their reverse in the backward
pass. Another order of summation, another kernel, a fused program or another exp or log changes
which roundings it makes, not how many. Rounding errors behave as independent zero-mean variables
(Higham and Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput.
41(5), 2019, Theorem 2.4): with probability at least 1 - 2n exp(-LAMBDA^2 / 2), below 1e-10 for
n = 4,000 and LAMBDA = 8, a computation of n operations is off by at most LAMBDA sqrt(n) u of the
magnitude it accumulates. Two such computations are at most twice that apart: RELATIVE = 3.0e-5
of the magnitude, 6e-3 nats for an image whose bound is -200 nats.

The magnitude a figure accumulates: for a per-image bound, its own size (its terms are
log-probabilities of one sign, and the importance weights are of that size); for a mean over
images, the mean of theirs; for a gradient, the largest entry of its tensor (an entry that sums to
near zero cancels terms that are no larger than the entries that do not). A different random
draw, a skipped batch or a gradient applied to the wrong elements moves a figure by far more.

Where Adam has stepped on such gradients, no bound follows: a rounding difference in a gradient
that is near zero becomes a whole step of the learning rate. Tests compare whole training runs
bit for bit at one thread count. Runs that compute the same steps in another order (compiled
against eager, N processes against one, a run of an earlier version against its figures from
another CPU) follow one path for a while and then part as two seeds' runs do; the tests' two-epoch
runs are held to the promise that docs/reliability.md states, RUNS_APART: their metrics within
0.01 nats per image (and validation accuracy within 0.01). It is a promise, not a bound:
measured on an AMD EPYC, such runs part by 3e-4 nats at most after two epochs, where another seed
moves the metrics of the same 2-epoch run (the 1,000-image CVAE of tests/test_distributed.py) by
2 to 17 nats.
"""

import math

import torch

U = 2.0 ** -24
OPERATIONS = 4000
LAMBDA = 8.0
RELATIVE = 2 * LAMBDA * math.sqrt(OPERATIONS) * U  # 3.0e-5
RUNS_APART = 0.01  # nats per image: the promise for runs that Adam parts (above)


def rounding_bound(magnitude):
    """How far two float32 computations of a figure accumulating `magnitude` may be apart."""
    return RELATIVE * magnitude


def assert_apart_by_rounding(actual: torch.Tensor, expected: torch.Tensor, magnitude=None, what: str = "") -> None:
    """`actual` is `expected` computed another way: every element within the rounding bound of the
    magnitude (by default the largest |expected| in the tensor, as for a gradient)."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    if magnitude is None:
        magnitude = expected.abs().max()
    allowed = rounding_bound(torch.as_tensor(magnitude, dtype=torch.float64))
    apart = (actual - expected).abs()
    assert bool((apart <= allowed).all()), \
        f"{what}: {apart.max().item():.3g} apart where rounding allows {allowed.min().item():.3g}"


def assert_step_apart_by_rounding(found: tuple, expected: tuple) -> None:
    """A training step's (loss, {"bound": sum, part: sum}, {name: gradient}) computed another way:
    the loss and the bound's sum within the rounding bound of their own size (their images' bounds
    share one sign), each part's sum within that of the larger of its own size and the bound's (a
    part's images may differ in sign, as a KL estimated at the draw; each is a term of a bound, no
    larger in size than the bound and the reconstruction term together), each gradient within that
    of its tensor's largest entry."""
    (loss, sums, gradients), (loss_e, sums_e, gradients_e) = found, expected
    assert_apart_by_rounding(loss, loss_e, loss_e.abs(), "loss")
    assert sums.keys() == sums_e.keys()
    size = max(sums_e["bound"].abs(), sums_e.get("recon", sums_e["bound"]).abs())
    for name, value in sums_e.items():
        assert_apart_by_rounding(sums[name], value, max(value.abs(), size), f"{name} sum")
    assert gradients.keys() == gradients_e.keys()
    for name, gradient in gradients_e.items():
        assert_apart_by_rounding(gradients[name], gradient, what=f"gradient of {name}")
