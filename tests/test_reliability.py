"""Nothing lost, nothing trusted blindly: signals, kill -9 at many moments (some during checkpoint
writes), a full disk, an unwritable run directory, and random command lines."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vaelab
from vaelab.training import trainer as trainer_module
from vaelab.cli import build_parser, main
from vaelab.config import make_config, read_toml
from vaelab.errors import RunError, VaelabError
from vaelab.checkpoints import load_checkpoint, save_checkpoint
from vaelab.runs import RunDir, read_metrics
from vaelab.training import train

SETTINGS = dict(latent_dim=8, hidden=(128,), batch_size=100, sample_epochs=(1,))
TIMING = {"seconds", "samples_per_second"}


def _rows(path):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(RunDir(path).metrics)]


def _flags(settings: dict) -> list[str]:
    flags = []
    for name, value in settings.items():
        value = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        flags += ["--" + name.replace("_", "-"), value]
    return flags


def _start(out, settings, resume=True):
    command = [sys.executable, "-m", "vaelab", "train", "--out", str(out), "--no-progress", *_flags(settings)]
    return subprocess.Popen(command + (["--resume"] if resume else []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_epoch(out, epoch, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if len(read_metrics(RunDir(out).metrics)) >= epoch:
            return
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_state_and_resume_equals_the_uninterrupted_run(tmp_path, mnist_raw, sig, code):
    settings = dict(SETTINGS, limit_train=20_000, epochs=3)
    train(make_config(settings), tmp_path / "full", log=lambda _: None, progress=False)
    process = _start(tmp_path / "run", settings, resume=False)
    _wait_for_epoch(tmp_path / "run", 1, process)
    time.sleep(0.3)  # somewhere in epoch 2
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Resume with: vaelab train --out" in err and "Traceback" not in err
    info = load_checkpoint(RunDir(tmp_path / "run").checkpoint).info
    assert info["epoch"] >= 1
    done = _start(tmp_path / "run", settings)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert _rows(tmp_path / "run") == _rows(tmp_path / "full")


@pytest.mark.slow
def test_kill_9_at_many_moments_then_resume_gives_the_uninterrupted_run(tmp_path, mnist_raw):
    """kill -9 a training run 12 times at random moments; every checkpoint left behind loads, and the
    finished run's metrics equal an uninterrupted run's."""
    # about 0.17 s an epoch after 3 s of start-up: enough epochs that 12 kills come before the end
    # even when a start is quick (with 120, one run of the suite finished after 9)
    settings = dict(SETTINGS, limit_train=500, epochs=180)
    train(make_config(settings), tmp_path / "full", log=lambda _: None, progress=False)
    out = tmp_path / "run"
    rng = random.Random(0)
    kills, mid_write = 0, 0
    while kills < 12:
        process = _start(out, settings)
        time.sleep(rng.uniform(2.5, 5.0))
        if process.poll() is not None:  # finished before the kill: start over for more kill moments
            assert process.returncode == 0, process.stderr.read()
            break
        process.kill()
        process.wait()
        kills += 1
        mid_write += any(RunDir(out).path.glob(".*.tmp"))
        if RunDir(out).checkpoint.exists():
            epoch = load_checkpoint(RunDir(out).checkpoint).info["epoch"]  # readable, never half-written
            logged = [row["epoch"] for row in read_metrics(RunDir(out).metrics)]
            assert logged[: epoch] == list(range(1, epoch + 1))
    done = _start(out, settings)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert kills >= 10
    assert _rows(out) == _rows(tmp_path / "full")
    print(f"{kills} kills, {mid_write} left a temporary file (killed while writing)")


_WRITER = """
import sys, torch
from vaelab.checkpoints import save_checkpoint
model = torch.nn.Linear(1000, 2000)
version = 0
while True:
    version += 1
    with torch.no_grad():
        model.weight.fill_(version)
    save_checkpoint(sys.argv[1], model, {"epoch": version})
    print(version, flush=True)
"""


@pytest.mark.slow
def test_kill_9_during_checkpoint_writes_leaves_a_readable_checkpoint(tmp_path):
    """A process that does nothing but write 8 MB checkpoints, killed 10 times: the file always loads
    whole, with weights that match its own metadata."""
    path = tmp_path / "checkpoint.safetensors"
    rng = random.Random(1)
    for _ in range(10):
        process = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # one complete write
        time.sleep(rng.uniform(0.0, 0.3))
        process.kill()
        process.wait()
        checkpoint = load_checkpoint(path)
        assert torch.all(checkpoint.tensors["model.weight"] == checkpoint.info["epoch"])


@pytest.mark.slow
def test_full_disk_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, mnist_raw, monkeypatch):
    out = tmp_path / "run"
    real = trainer_module.save_checkpoint
    calls = {"n": 0}

    def failing(path, *args, **kwargs):
        if path == RunDir(out).checkpoint:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", failing)
    with pytest.raises(RunError, match=r"\(No space left on device\); the previous checkpoint is intact: free some space and resume"):
        train(make_config(dict(SETTINGS, limit_train=1000, epochs=3)), out, log=lambda _: None, progress=False)
    assert load_checkpoint(RunDir(out).checkpoint).info["epoch"] == 1
    assert not list(out.glob(".*.tmp"))


def test_unwritable_run_directory(tmp_path, mnist_raw, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["train", "--out", str(blocker / "run"), "--limit-train", "100", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the run directory" in err and err.count("\n") == 1


def test_checkpoint_with_other_shapes_or_config(tmp_path):
    model = vaelab.build_model("cvae", (1, 28, 28), 10, latent_dim=4, hidden=(16,))
    save_checkpoint(tmp_path / "c.safetensors", model, {"epoch": 1})
    other = vaelab.build_model("cvae", (1, 28, 28), 10, latent_dim=4, hidden=(32,))
    with pytest.raises(RunError, match="does not fit this model"):
        load_checkpoint(tmp_path / "c.safetensors").restore(other)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"latent_dim": "forty"}))
    (tmp_path / "c.safetensors").rename(run / "best.safetensors")
    with pytest.raises(VaelabError, match="--latent-dim 'forty' is not allowed"):
        vaelab.load_run(run)


_TOKENS = ["train", "evaluate", "sample", "reconstruct", "report", "study", "data", "--out", "--epochs",
           "--latent-dim", "--lr", "--batch-size", "--model", "--dataset", "--hidden", "--digit", "--iw-samples",
           "--config", "-o", "--resume", "--binarize", "--likelihood", "--objective", "--samples", "0", "-1", "12",
           "nan", "inf", "cvae", "vae", "mnist", "none", "3,20", "x", "--", "-"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=8)), max_size=8))
def test_random_command_lines_end_in_a_result_or_a_vaelab_error(argv):
    """Parsing and validation (not running): either settings come out, or vaelab's one-line error."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            make_config(read_toml(args.config) if args.config else {},
                        {name: getattr(args, name) for name in vars(args) if name in make_config().to_dict()})
    except SystemExit as exc:
        assert exc.code in (0, 2)
    except VaelabError:
        pass
