"""Nothing lost, nothing trusted blindly: signals, kill -9 at many moments (some during checkpoint
writes), a full disk, an unwritable run directory, and random command lines."""

import errno
import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vaelab
from vaelab.training import trainer as trainer_module
from vaelab.cli import main
from vaelab.cli.arguments import build_parser
from vaelab.config import make_config, read_toml
from vaelab.errors import RunError, RunFailed, VaelabError
from vaelab.runs.checkpoints import load_checkpoint, save_checkpoint
from vaelab.runs import RunDir, read_metrics
from vaelab.training import train

from .progress import HANG_GUARD, ROOT, EpochWatch, same_threads, vaelab_command, wait_until

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


def _start(out, settings, resume=True, signal_at=None):
    """`vaelab train` in a subprocess (with signal_at = (step, name): it signals itself then)."""
    command = vaelab_command("train", "--out", str(out), "--no-progress", *_flags(settings),
                             *(["--resume"] if resume else []), signal_at=signal_at)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=same_threads())  # compared bit for bit with runs in this process


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [("TERM", 143), ("INT", 130)])
def test_signal_saves_state_and_resume_equals_the_uninterrupted_run(tmp_path, mnist_raw, sig, code):
    """The signal arrives before step 47 of the run (step 17 of epoch 2, 30 steps an epoch): the
    state is saved after that step, and resuming gives the uninterrupted run."""
    settings = dict(SETTINGS, limit_train=3000, epochs=3)
    train(make_config(settings), tmp_path / "full", log=lambda _: None, progress=False)
    process = _start(tmp_path / "run", settings, resume=False, signal_at=(47, sig))
    _, err = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == code, err
    assert "Resume with: vaelab train --out" in err and "Traceback" not in err
    info = load_checkpoint(RunDir(tmp_path / "run").checkpoint).info
    assert (info["epoch"], info["partial_step"]) == (1, 17)
    done = _start(tmp_path / "run", settings)
    _, err = done.communicate(timeout=HANG_GUARD)
    assert done.returncode == 0, err
    assert _rows(tmp_path / "run") == _rows(tmp_path / "full")


@pytest.mark.slow
def test_kill_9_at_many_moments_then_resume_gives_the_uninterrupted_run(tmp_path, mnist_raw):
    """kill -9 a training run 12 times, each time once it has logged two new epochs and then a
    random part of an epoch more, by the run's own pace (so kills land in training, in validation
    and in the files written after an epoch); every checkpoint left behind loads, and the finished
    run's metrics equal an uninterrupted run's.

    Each kill waits for two epochs that this start of the run logged, so every start makes
    progress; a kill comes at most four epochs after the last checkpoint, so 12 of them use at
    most 48 of the 60 epochs, whatever the machine's speed."""
    settings = dict(SETTINGS, limit_train=500, epochs=60)
    train(make_config(settings), tmp_path / "full", log=lambda _: None, progress=False)
    out = tmp_path / "run"
    rng = random.Random(0)
    kills, mid_write = 0, 0
    while kills < 12:
        checkpointed = load_checkpoint(RunDir(out).checkpoint).info["epoch"] if RunDir(out).checkpoint.exists() else 0
        process, watch = _start(out, settings), EpochWatch(out)
        # at most one epoch is logged after the last checkpoint: the two after it are this start's
        wait_until(lambda: watch.logged() >= checkpointed + 3, process, "two new epochs were logged")
        time.sleep(watch.part_of_an_epoch(rng))
        assert process.poll() is None, "the run finished before its 12th kill"
        process.kill()
        process.wait()
        kills += 1
        mid_write += any(RunDir(out).path.glob(".*.tmp"))
        epoch = load_checkpoint(RunDir(out).checkpoint).info["epoch"]  # readable, never half-written
        assert epoch > checkpointed
        logged = [row["epoch"] for row in read_metrics(RunDir(out).metrics)]
        assert logged[:epoch] == list(range(1, epoch + 1))
    done = _start(out, settings)
    _, err = done.communicate(timeout=HANG_GUARD)
    assert done.returncode == 0, err
    assert _rows(out) == _rows(tmp_path / "full")
    print(f"{kills} kills, {mid_write} left a temporary file (killed while writing)")


_WRITER = """
import sys, torch
from vaelab.runs.checkpoints import save_checkpoint
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
    """A process that does nothing but write 8 MB checkpoints, killed 10 times, each time after a
    random number of complete writes (so during one of the next): the file always loads whole, with
    weights that match its own metadata."""
    path = tmp_path / "checkpoint.safetensors"
    rng = random.Random(1)
    for _ in range(10):
        process = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(rng.randint(1, 4)):
            assert process.stdout.readline(), "the writer ended"  # one more complete write
        process.kill()
        process.wait()
        checkpoint = load_checkpoint(path)
        assert torch.all(checkpoint.tensors["model.weight"] == checkpoint.info["epoch"])


def test_an_atomic_write_gets_the_permissions_of_a_new_file_and_never_touches_the_umask(tmp_path, monkeypatch):
    code = ("import os, sys; os.umask(0o027); from vaelab.runtime.files import atomic_write_bytes; "
            "atomic_write_bytes(sys.argv[1], b'new'); print(oct(os.stat(sys.argv[1]).st_mode & 0o777))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f")], capture_output=True, text=True)
    assert done.stdout.strip() == "0o640", done.stderr
    from vaelab.runtime.files import atomic_write_bytes

    def umask(_):
        raise AssertionError("the process-wide umask was changed (a race with the caller's other threads)")

    monkeypatch.setattr(os, "umask", umask)
    (tmp_path / "g").write_bytes(b"old")
    atomic_write_bytes(tmp_path / "g", b"new")
    assert (tmp_path / "g").read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["f", "g"]


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
    with pytest.raises(RunFailed, match=r"\(No space left on device\); the previous checkpoint is intact: free some space and resume") as raised:
        train(make_config(dict(SETTINGS, limit_train=1000, epochs=3)), out, log=lambda _: None, progress=False)
    assert raised.value.exit_code == 1  # a failure while running, not bad input
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
    with pytest.raises(VaelabError, match="config.json: latent_dim 'forty' is not allowed"):
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
