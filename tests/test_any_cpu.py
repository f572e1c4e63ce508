"""What holds on any CPU: figures that move with the thread count and the CPU's kernels by float32
rounding alone, within a bound derived from float32 (not one measured on one machine), and MKL held
to torch's thread count, so that the same seed gives the same bits on a busy machine."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import vaelab

from .progress import ROOT
from .rounding import RELATIVE

# Other thread counts and kernels than the reference's (this process's thread count, default kernels). MKL_CBWR=COMPATIBLE takes MKL's plain SSE2
# kernels, which sum a product in another order than its default ones on any x86-64 CPU and, unlike
# those, in another order on 2 threads than on 1: so the comparison is never of identical bits,
# whatever CPU the suite runs on.
VARIANTS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "AVX2 kernels, 1 thread": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"},
    "MKL's compatible kernels, 2 threads": {"MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "2"},
    "MKL's compatible kernels, 1 thread": {"MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"},
}
IMAGES = 1000

def _figures(run, out, environment: dict) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                          "ATEN_CPU_CAPABILITY")}
    done = subprocess.run([sys.executable, "-m", "tests.per_image", str(run), str(out), str(IMAGES)],
                          env={**env, **environment}, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return dict(np.load(out))


@pytest.mark.slow
def test_evaluation_agrees_across_thread_counts_and_kernels(small_run, tmp_path):
    """Each image's ELBO, IS log p(x | y) and log p(x | y) of every class under other thread counts
    and CPU kernels are this process's to the rounding bound of float32 (tests/rounding.py: 3.0e-5
    of the image's |ELBO|), and a class decision changes only for an image whose two best classes
    are within that bound of each other."""
    reference = _figures(small_run, tmp_path / "reference.npz", {"OMP_NUM_THREADS": str(torch.get_num_threads())})
    bound = RELATIVE * np.abs(reference["elbo"])  # nats, per image
    log_prior = vaelab.load_run(small_run, device="cpu").model.class_log_prior().double().numpy()
    posterior = reference["per_class"] + log_prior
    top_two = np.sort(posterior, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] <= 2 * bound
    worst = {}
    for name, environment in VARIANTS.items():
        other = _figures(small_run, tmp_path / f"{len(worst)}.npz", environment)
        for figure in ("elbo", "log_likelihood"):
            apart = np.abs(other[figure] - reference[figure])
            assert (apart <= bound).all(), (name, figure, apart.max(), bound[apart.argmax()])
            worst[name, figure] = apart.max()
        apart = np.abs(other["per_class"] - reference["per_class"])
        assert (apart <= bound[:, None]).all(), (name, "per_class", apart.max())
        changed = (other["per_class"] + log_prior).argmax(1) != posterior.argmax(1)
        assert not (changed & ~near_tie).any(), (name, np.flatnonzero(changed & ~near_tie))
    print("largest difference per image (nats):", {key: f"{value:.1e}" for key, value in worst.items()},
          f"bound for the median image: {np.median(bound):.1e}")


_MKL_DYNAMIC = """
import ctypes, os, sys, torch
try:
    get = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")).mkl_serv_get_dynamic
except (OSError, AttributeError):
    sys.exit(3)
before, threads = get(), torch.get_num_threads()
from vaelab.runtime.cpu_share import hold_thread_count
hold_thread_count()
print(before, get(), torch.get_num_threads() == threads)
"""


@pytest.mark.slow
def test_holding_the_thread_count_turns_mkl_s_dynamic_threads_off():
    """A process that never set torch's thread count leaves MKL free to take fewer threads on a busy
    machine (MKL_DYNAMIC); vaelab's hold turns that off and keeps torch's count."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MKL_", "OMP_"))}
    done = subprocess.run([sys.executable, "-c", _MKL_DYNAMIC], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode == 3:
        pytest.skip("this torch has no MKL whose dynamic setting can be read")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0", "True"]


class Held(Exception):
    """Raised by a stand-in for hold_thread_count: the call it was, before anything else."""


def test_training_and_evaluation_hold_the_thread_count_first(monkeypatch, tmp_path):
    from vaelab.inference import evaluation
    from vaelab.config import make_config
    from vaelab.training import trainer

    def held():
        raise Held

    monkeypatch.setattr(trainer, "hold_thread_count", held)
    monkeypatch.setattr(evaluation, "hold_thread_count", held)
    with pytest.raises(Held):
        trainer.train(make_config({}), tmp_path / "run", log=lambda _: None, progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(Held):
        evaluation.evaluate_model(vaelab.build_model("cvae", (1, 28, 28), 10, latent_dim=2, hidden=(8,)), None)


@pytest.mark.slow
def test_compiled_runs_with_other_cpu_kernels_share_no_compiled_graph(tmp_path, mnist_raw):
    """A compiled run with AVX2 kernels, then one with the CPU's own, both into one empty inductor
    cache (as every process of a user shares one): each compiles for its own vector width. Before
    vaelab named the width, the second took the first's graph and stopped on a non-finite loss (or
    crashed); now both train, to the same metrics within the promise for runs computed another way."""
    from vaelab.runs import RunDir, read_metrics

    from .rounding import RUNS_APART

    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    rows = []
    for name, kernels in (("avx2", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}), ("own", {})):
        done = subprocess.run([sys.executable, "-m", "vaelab", "train", "--out", str(tmp_path / name), "--limit-train",
                               "512", "--batch-size", "128", "--epochs", "1", "--hidden", "32", "--latent-dim", "4",
                               "--compile", "on", "--no-progress"], env={**env, **kernels}, capture_output=True,
                              text=True, timeout=900, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert "(compiled step)" in done.stderr and "running eagerly" not in done.stderr, done.stderr
        rows.append(read_metrics(RunDir(tmp_path / name).metrics)[-1])
    for key in ("train_elbo", "valid_elbo"):
        assert rows[1][key] == pytest.approx(rows[0][key], abs=RUNS_APART), key
