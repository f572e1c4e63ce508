"""Several processes through torchrun (gloo on CPU, every address on the loopback): the same run as one
process, resumed across process counts, stopped by a signal to one process, and a process killed."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from vaelab import inference
from vaelab.runs.checkpoints import load_checkpoint
from vaelab.cli import main
from vaelab.config import make_config
from vaelab.runtime.processes import Processes
from vaelab.runs import RunDir, read_metrics
from vaelab.training import new_training, train
from vaelab.training.step import process_share, step_noise, step_scale

from .progress import HANG_GUARD, ROOT, same_threads, vaelab_command
from .rounding import RUNS_APART
from .test_reliability import TIMING, _flags
from .test_train import _without_timing

SETTINGS = dict(latent_dim=8, hidden=(64,), batch_size=100, sample_epochs=(1,), compile="off")
LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # each process of a group, as torchrun sets it by default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(command: list[str], nproc: int, *, nodes: str | None = None, signal_at=None, rank=None) -> subprocess.Popen:
    """`torchrun` (as `python -m torch.distributed.run`) on the loopback: one node with nproc processes,
    or, with nodes = "rendezvous-id:port", one of two nodes meeting at a c10d rendezvous; with
    signal_at = (step, name), process `rank` signals itself before that step (`tests/signal_at_step.py`)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                "--local-addr", "127.0.0.1", "--monitor-interval", "0.1"]
    if nodes is None:
        launcher += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    else:
        run_id, port = nodes.split(":")
        launcher += ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                     "--rdzv-id", run_id]
    program = vaelab_command(*command, signal_at=signal_at, rank=rank)[1:]  # after the interpreter
    return subprocess.Popen(launcher + program, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **LOOPBACK, **ONE_THREAD}, start_new_session=True, cwd=ROOT)


def _train(out, settings, nproc: int, resume=True, signal_at=None, rank=None) -> subprocess.Popen:
    command = ["train", "--out", str(out), "--no-progress", *_flags(settings)] + (["--resume"] if resume else [])
    if nproc == 1:
        return subprocess.Popen(vaelab_command(*command, signal_at=signal_at), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=same_threads())
    return _launch(command, nproc, signal_at=signal_at, rank=rank)


def _finish(process, timeout=HANG_GUARD) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out + err


# A group of processes sums each step's gradient in another order than one process does, and Adam
# turns a rounding difference in a near-zero gradient into a whole step: no bound follows from
# float32, so runs across process counts are held to vaelab's promise, RUNS_APART (tests/rounding.py,
# docs/reliability.md). What is the same computation is compared bit for bit.


def _close(rows_a, rows_b, tolerance=RUNS_APART):
    """metrics.jsonl rows equal but for `processes` and the promise's tolerance (nats per image)."""
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b):
        a, b = dict(a), dict(b)
        a.pop("processes"), b.pop("processes")
        assert a.keys() == b.keys()
        for key in a.keys() - TIMING:
            assert a[key] == pytest.approx(b[key], abs=tolerance), key


def _vaelab_traceback(err: str) -> bool:
    """Whether a vaelab process printed a traceback (torchrun prints its own when a process fails)."""
    return any(line.strip().startswith("File") and "/vaelab/" in line for line in err.splitlines())


# ---- the math of sharing a step, in one process ----

@pytest.mark.parametrize("model, labelled, apart", [("vae", 7, False), ("cvae", 7, False), ("m2", 3, False),
                                                    ("m2", 3, True), ("m2", 0, True)])
def test_the_shares_of_a_step_sum_to_the_whole_steps_bound_and_gradient(model, labelled, apart):
    """Every process's share (images, labels, noise rows) of a step, taken by 3 processes, gives
    bounds and gradients that add up to those of the whole step, with the step's mean over all its
    images or over its unlabelled and labelled images apart (the labelled-batch plan)."""
    config = make_config(dict(SETTINGS, model=model, **({"labels": 100} if model == "m2" else {})))
    loss = new_training(config, torch.device("cpu"), dynamic=False, compile=False, train_images=1000).step.loss
    loss.double()
    n = 7
    gray = torch.rand(n, 1, 28, 28, dtype=torch.float64)
    x = gray.round()
    seen = gray if model == "m2" else None  # q reading the gray levels is shared out with the images
    y = torch.arange(n)[n - labelled :] % 10 if model == "m2" else torch.arange(n) % 10
    noise = step_noise(loss.model, n, y.shape[0], 1, torch.Generator().manual_seed(3), "cpu", torch.float64)
    weight, scale = torch.tensor(1.0, dtype=torch.float64), step_scale(n, y.shape[0], apart, torch.float64, "cpu")
    assert torch.allclose(scale, torch.tensor([1 / (n - 3), 1 / 3], dtype=torch.float64) if apart and labelled
                          else torch.full((2,), 1 / n, dtype=torch.float64))

    def gradients(*arguments, seen):
        total, sums = loss(*arguments, weight, scale, seen)
        return torch.autograd.grad(total, list(loss.parameters()), allow_unused=True, materialize_grads=True), sums

    whole, whole_sums = gradients(x, y, None, noise, seen=seen)
    shares = []
    for rank in range(3):
        x_r, y_r, noise_r, seen_r = process_share(Processes(rank, 3), x, y, noise, seen)
        shares.append(gradients(x_r, y_r, None, noise_r, seen=seen_r))
    for index, expected in enumerate(whole):
        torch.testing.assert_close(sum(share[0][index] for share in shares), expected, rtol=1e-10, atol=1e-12)
    assert {"bound", "recon"} <= whole_sums.keys()  # the bound and its parts
    for name, expected in whole_sums.items():
        torch.testing.assert_close(sum(share[1][name] for share in shares), expected, rtol=1e-10, atol=1e-10)


def test_a_process_with_no_image_of_a_short_step_computes_nothing():
    config = make_config(dict(SETTINGS, model="m2", labels=100))
    model = new_training(config, torch.device("cpu"), dynamic=False, compile=False, train_images=1000).model
    x, y = torch.rand(1, 1, 28, 28).round(), torch.zeros(0, dtype=torch.long)
    noise = step_noise(model, 1, 0, 1, torch.Generator().manual_seed(0), "cpu", torch.float32)
    share = process_share(Processes(0, 2), x, y, noise)
    assert share[0].shape[0] == 0 and share[2].unlabelled.shape[1] == 0 and share[2].labelled is None
    terms = model.objective(*share[:3], inference.elbo, 1.0)
    assert terms.maximised.shape == terms.bound.shape == (0,)


def test_rows_share_out_every_index_once():
    for n in (0, 1, 5, 128):
        for count in (1, 2, 3, 8):
            covered = [i for rank in range(count) for i in range(n)[Processes(rank, count).rows(n)]]
            assert covered == list(range(n))


def test_commands_that_run_in_one_process_say_so_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["sample", "nowhere", "-o", "x.png"]) == 2
    assert "runs in one process: start it without torchrun" in capsys.readouterr().err


def test_a_world_size_that_is_not_a_number_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    assert "WORLD_SIZE='two' is not a number of processes" in capsys.readouterr().err


def test_a_group_without_torchruns_variables_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "start several processes with torchrun" in err and "Traceback" not in err


# ---- torchrun, end to end ----

@pytest.fixture(scope="module")
def one_process(tmp_path_factory, mnist_raw):
    """The uninterrupted one-process runs the tests compare against."""
    root = tmp_path_factory.mktemp("one")
    runs = {}
    for name, settings in BASELINES.items():
        train(make_config(settings), root / name, log=lambda _: None, progress=False)
        runs[name] = root / name
    return runs


BASELINES = {
    "cvae": dict(SETTINGS, limit_train=1000, epochs=2),
    "m2-compiled": dict(SETTINGS, model="m2", labels=100, limit_train=1000, epochs=2, compile="on"),
    "m2-eager": dict(SETTINGS, model="m2", labels=100, limit_train=450, epochs=2),
    "long": dict(SETTINGS, limit_train=12_000, epochs=3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cvae", "m2-eager", "m2-compiled"])
def test_two_processes_give_the_one_process_run(tmp_path, one_process, name):
    """Eagerly through DDP, and the compiled step with its own all_reduce; the M2's steps mix
    labelled and unlabelled images, which are shared out apart."""
    output = _finish(_train(tmp_path / "run", BASELINES[name], 2, resume=False))
    rows = read_metrics(RunDir(tmp_path / "run").metrics)
    assert [row["processes"] for row in rows] == [2] * len(rows)
    _close(rows, read_metrics(RunDir(one_process[name]).metrics))
    assert output.count("trained 2 epochs") == 1  # process 0 alone prints


@pytest.mark.slow
def test_two_machines_give_the_one_process_run(tmp_path, one_process):
    """--nnodes 2: two launchers meet at a c10d rendezvous on 127.0.0.1, one process each."""
    command = ["train", "--out", str(tmp_path / "run"), "--no-progress", *_flags(BASELINES["cvae"])]
    nodes = f"vaelab-test:{_free_port()}"
    launchers = [_launch(command, 1, nodes=nodes), _launch(command, 1, nodes=nodes)]
    for launcher in launchers:
        _finish(launcher)
    _close(read_metrics(RunDir(tmp_path / "run").metrics), read_metrics(RunDir(one_process["cvae"]).metrics))


STEPS = 120  # an epoch of the "long" run: 12,000 images in batches of 100
IN_EPOCH_2 = STEPS + 30  # the step before which a process is signalled or killed


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [("TERM", 143), ("INT", 130)])
def test_a_signal_to_one_process_stops_all_then_one_process_resumes(tmp_path, one_process, sig, code):
    """The signal goes to process 1 only (before step 30 of epoch 2); both stop at the same step,
    process 0 saves one checkpoint and says so once; one process then finishes the run as if
    nothing had happened."""
    settings, out = BASELINES["long"], tmp_path / "run"
    launcher = _train(out, settings, 2, resume=False, signal_at=(IN_EPOCH_2, sig), rank=1)
    _, err = launcher.communicate(timeout=HANG_GUARD)
    assert err.count("Resume with: vaelab train --out") == 1, err
    assert f"exitcode  : {code}" in err  # torchrun's report of both processes
    assert "vaelab: error" not in err and not _vaelab_traceback(err)
    info = load_checkpoint(RunDir(out).checkpoint).info
    assert info["epoch"] == 1 and 30 <= info["partial_step"] < STEPS  # at the first agreed check after it
    _finish(_train(out, settings, 1))
    _close(read_metrics(RunDir(out).metrics), read_metrics(RunDir(one_process["long"]).metrics))


@pytest.mark.slow
def test_one_process_stopped_then_two_resume(tmp_path, one_process):
    settings, out = BASELINES["long"], tmp_path / "run"
    process = _train(out, settings, 1, resume=False, signal_at=(IN_EPOCH_2, "TERM"))
    process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 143
    assert load_checkpoint(RunDir(out).checkpoint).info["partial_step"] == 30
    _finish(_train(out, settings, 2))
    rows, baseline = read_metrics(RunDir(out).metrics), read_metrics(RunDir(one_process["long"]).metrics)
    assert rows[-1]["processes"] == 2
    assert _without_timing(rows[:1]) == _without_timing(baseline[:1])  # one process, its thread count: bit for bit
    _close(rows, baseline)


@pytest.mark.slow
def test_kill_9_of_one_process_ends_the_others_with_a_clear_error_then_resume(tmp_path, one_process):
    settings, out = BASELINES["long"], tmp_path / "run"
    launcher = _train(out, settings, 2, resume=False, signal_at=(IN_EPOCH_2, "KILL"), rank=1)
    _, err = launcher.communicate(timeout=HANG_GUARD)  # the others end (a hang would be cut here and fail)
    assert launcher.returncode != 0
    assert "vaelab: error: lost contact with the other training processes" in err, err
    assert "resume with: vaelab train --out" in err
    assert not _vaelab_traceback(err)
    assert load_checkpoint(RunDir(out).checkpoint).info["epoch"] == 1  # intact
    _finish(_train(out, settings, 2))
    _close(read_metrics(RunDir(out).metrics), read_metrics(RunDir(one_process["long"]).metrics))


@pytest.mark.slow
def test_evaluation_split_over_two_processes_gives_the_one_process_figures(tmp_path, one_process):
    """IS, AIS (two batches of images, each with its own generator) and BDMC alike."""
    run = one_process["m2-compiled"]
    flags = ["--iw-samples", "20", "--class-samples", "5", "--ais", "5", "--leapfrog", "2", "--chains", "16",
             "--ais-images", "30", "--bdmc", "6", "--json", "--no-progress", "--compile", "off"]
    single = subprocess.run([sys.executable, "-m", "vaelab", "evaluate", str(run), *flags], capture_output=True,
                            text=True, check=True, env={**os.environ, **ONE_THREAD})  # as each process of the group
    one = json.loads(single.stdout)
    output = _finish(_launch(["evaluate", str(run), *flags], 2))
    two = json.loads(RunDir(run).eval.read_text())
    assert output.count('"elbo"') == 1  # process 0 alone prints
    assert two.pop("processes") == 2 and one.pop("processes") == 1
    assert one["ais"]["images"] == 30 and one["bdmc"]["images"] == 6
    _same_figures(one, two)


# Each batch of images is the same computation whichever process makes it (its own generator, one
# thread): only the float64 sums of the batches' figures over processes come in another order, which
# moves a mean of at most 10,000 terms by at most 2 x 10,000 x 2^-53 of its size (Higham, eq. 4.4):
# below 1e-9 for figures under 2,000 nats.
SUMS_APART = 1e-9


def _same_figures(one: dict, two: dict) -> None:
    """Every figure of `one` in `two`, floats to SUMS_APART, but for the seconds."""
    for key, value in one.items():
        if key == "seconds":
            continue
        if isinstance(value, dict):
            _same_figures(value, two[key])
        elif isinstance(value, float):
            assert two[key] == pytest.approx(value, rel=0, abs=SUMS_APART), key
        elif isinstance(value, list) and value and isinstance(value[0], float):
            assert two[key] == pytest.approx(value, rel=0, abs=SUMS_APART), key
        else:
            assert two[key] == value, key


def test_the_backend_vaelab_picks_carries_this_machines_tensors(tmp_path):
    """The backend string vaelab gives init_process_group works here, for CPU tensors (and for CUDA
    tensors where this machine has a GPU: NCCL cannot be checked without one)."""
    import torch.distributed as dist

    from vaelab.runtime import processes

    dist.init_process_group(processes.backend(), store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)
    try:
        for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            total = torch.tensor([2.0, 3.0], device=device)
            dist.all_reduce(total)
            assert total.tolist() == [2.0, 3.0]
    finally:
        dist.destroy_process_group()


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from vaelab.errors import VaelabError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert Processes(3, 4, 1).device(torch.device("cuda")) == torch.device("cuda", 1)
    assert Processes(0, 1, 0).device(torch.device("cuda")) == torch.device("cuda")
    assert Processes(2, 4, 2).device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(VaelabError, match="start at most one process per GPU"):
        Processes(2, 4, 2).device(torch.device("cuda"))
