"""Sharing the CPUs between vaelab commands: thread counts by who is running, the user's settings first."""

import os
import signal
import subprocess
import sys
import tempfile

import pytest
import torch
from torch.optim.optimizer import _global_optimizer_pre_hooks

from vaelab.errors import VaelabError
from vaelab.checkpoints import load_checkpoint
from vaelab.runs import RunDir, read_metrics
from vaelab.threads import CHECK_EVERY, CpuShare, running_directory, share_cpus

from .test_train import _without_timing


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _share(directory, clock, threads_alone=4):
    calls = []
    share = CpuShare(directory, threads_alone, calls.append, clock=clock)
    return share, calls


def test_alone_a_command_keeps_its_threads_and_commands_running_together_divide_them(tmp_path):
    clock = Clock()
    first, first_calls = _share(tmp_path, clock)
    with first:
        assert first.threads == 4 and first_calls == []  # alone: torch's threads untouched
        second, second_calls = _share(tmp_path, clock)
        with second:
            assert second.threads == 2 and second_calls == [2]  # sees the first at once
            first.update()
            assert first.threads == 2 and first_calls == [2]  # its first step looks at once
            third, _ = _share(tmp_path, clock)
            with third:
                first.update()
                assert first.threads == 2  # then only after CHECK_EVERY seconds
                clock.now += CHECK_EVERY
                first.update()
                assert first.threads == 1 and first_calls == [2, 1]  # 4 // 3
        assert second_calls == [2, 4]  # its own count back on exit
        clock.now += CHECK_EVERY
        first.update()
        assert first.threads == 4 and first_calls == [2, 1, 4]  # alone again
    assert list(tmp_path.iterdir()) == []


def test_the_share_is_reported_from_the_first_step_on_and_bad_input_stays_one_line(tmp_path, monkeypatch, capsys):
    from vaelab.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("VAELAB_THREADS", raising=False)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with CpuShare(running_directory(), 2, None):  # another vaelab command, running
        assert main(["train", "--out", str(tmp_path / "run"), "--latent-dim", "0"]) == 2
        assert capsys.readouterr().err.count("\n") == 1  # the error alone
        lines = []
        share = CpuShare(running_directory(), 2, lambda _: None, lines.append)
        with share:
            assert lines == []  # set on entry, silently
            share.update()
            assert lines == ["vaelab: 2 vaelab commands share the CPUs: using 1 of 2 threads"]
            share.update()
            assert len(lines) == 1


def test_a_training_step_looks_again_and_the_hook_goes_with_the_command(tmp_path):
    clock = Clock()
    hooks_before = len(_global_optimizer_pre_hooks)
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    share, calls = _share(tmp_path, clock, threads_alone=2)
    with share:
        assert len(_global_optimizer_pre_hooks) == hooks_before + 1
        other, _ = _share(tmp_path, clock, threads_alone=2)
        with other:
            clock.now += CHECK_EVERY
            parameter.grad = torch.ones(3)
            optimizer.step()  # the hook before each step updates the share
            assert calls == [1]
    assert len(_global_optimizer_pre_hooks) == hooks_before


@pytest.mark.slow
def test_a_command_that_died_no_longer_counts_and_its_file_is_removed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from vaelab.threads import CpuShare\n"
                               f"with CpuShare({str(tmp_path)!r}, 2, None):\n"
                               "    print('in', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "in\n"
        share, _ = _share(tmp_path, Clock(), threads_alone=2)
        with share:
            assert share.running() == 2
            holder.send_signal(signal.SIGKILL)  # no clean-up: its file stays, unlocked
            holder.wait()
            assert len(list(tmp_path.glob("*.lock"))) == 2
            assert share.running() == 1
            assert len(list(tmp_path.glob("*.lock"))) == 1
    finally:
        holder.kill()
        holder.wait()


def test_the_user_settings_win(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    directory = running_directory()
    assert str(directory).startswith(str(tmp_path))
    with share_cpus(environ={"VAELAB_THREADS": "off"}) as share:  # neither announces itself nor changes threads
        assert share is None and not directory.exists()
    threads = torch.get_num_threads()
    with share_cpus(environ={"OMP_NUM_THREADS": str(threads)}) as fixed:  # announces itself, keeps its threads
        other, other_calls = _share(directory, Clock(), threads_alone=2)
        with other:
            assert other_calls == [1] and fixed.running() == 2
        fixed.next_check = -float("inf")
        fixed.update()
        assert torch.get_num_threads() == threads and fixed.threads == threads
    with pytest.raises(VaelabError, match="VAELAB_THREADS"):
        share_cpus(environ={"VAELAB_THREADS": "2"})


@pytest.mark.slow
def test_importing_vaelab_sets_no_openmp_variable():
    code = ("import os; before = dict(os.environ); import vaelab, vaelab.cli, torch; "
            "print(sorted(k for k in os.environ if os.environ.get(k) != before.get(k)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs 2 CPU threads to share")
@pytest.mark.slow
def test_a_run_beside_another_uses_fewer_threads_and_gets_the_same_numbers(tmp_path, mnist_raw):
    """`vaelab train` beside another vaelab command takes 1 of 2 threads; weights and metrics are bitwise those of a
    run with all threads (default 500-500 CVAE, eager: the compiled step was checked the same way by hand)."""
    command = [sys.executable, "-m", "vaelab", "train", "--limit-train", "1000", "--epochs", "2", "--no-progress",
               "--compile", "off", "--out"]
    env = {key: value for key, value in os.environ.items()
           if key not in ("VAELAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["TMPDIR"] = str(tmp_path)
    other = CpuShare(tmp_path / f"vaelab-{os.getuid()}" / "running", 2, None)  # another vaelab command, running
    with other:
        shared = subprocess.run(command + [str(tmp_path / "shared")], env=env, capture_output=True, text=True,
                                timeout=600)
        assert shared.returncode == 0, shared.stderr
        assert "2 vaelab commands share the CPUs: using 1 of 2 threads" in shared.stderr
    alone = subprocess.run(command + [str(tmp_path / "alone")], env=dict(env, VAELAB_THREADS="off"),
                           capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr
    assert "threads" not in alone.stderr
    a = load_checkpoint(RunDir(tmp_path / "shared").checkpoint).tensors
    b = load_checkpoint(RunDir(tmp_path / "alone").checkpoint).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _without_timing(read_metrics(RunDir(tmp_path / "shared").metrics)) == \
        _without_timing(read_metrics(RunDir(tmp_path / "alone").metrics))
