"""Sharing the CPUs: thread counts by the vaelab commands running and the CPUs other programs keep busy,
the user's settings first."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import _global_optimizer_pre_hooks

from vaelab.errors import VaelabError
from vaelab.runs.checkpoints import load_checkpoint
from vaelab.runs import RunDir, read_metrics
from vaelab.runtime.cpu_share import CHECK_EVERY, CpuShare, MachineLoad, running_directory, share_cpus

from .busy import beside_a_training_loop
from .progress import wait_until
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


class Load:
    """A MachineLoad stand-in: the CPUs other processes keep busy, as the test sets them."""

    def __init__(self, others=None):
        self.others = others

    def __call__(self):
        return self.others


def test_beside_other_programs_a_command_gives_up_threads_and_takes_them_back(tmp_path):
    clock, load, lines = Clock(), Load(), []
    calls = []
    share = CpuShare(tmp_path, 2, calls.append, lines.append, clock=clock, load=load)
    with share:
        assert share.threads == 2 and calls == []  # no measure yet: alone
        for others, threads in [(0.2, 2), (0.6, 2),  # a little background work: all threads
                                (1.1, 1),  # a program that keeps a CPU busy: one thread
                                (1.6, 1), (0.8, 1),  # still there (beside one thread it gets more)
                                (0.1, 2)]:  # gone: all threads again
            clock.now += CHECK_EVERY
            load.others = others
            share.update()
            assert share.threads == threads, others
        assert calls == [1, 2]
        assert lines == ["vaelab: other programs keep 1.1 CPUs busy: using 1 of 2 threads (VAELAB_THREADS=off "
                         "keeps them all)", "vaelab: the CPUs are free again: using 2 threads"]
        # beside another vaelab command, which is one of the other programs, the message says so
        other, _ = _share(tmp_path, clock, threads_alone=2)
        with other:
            clock.now += CHECK_EVERY
            load.others = 1.0
            share.update()
            assert share.threads == 1 and lines[-1] == "vaelab: 2 vaelab commands share the CPUs: using 1 of 2 threads"


def test_the_thread_count_that_fits_beside_other_programs():
    share = CpuShare(Path("unused"), 8, lambda _: None)
    share.threads = 8
    assert share.fitting(0.5) == 8 and share.fitting(0.7) == 8  # background noise
    assert share.fitting(1.0) == 7 and share.fitting(3.2) == 5 and share.fitting(8.0) == 1
    share.threads = 5
    assert share.fitting(3.2) == 5 and share.fitting(2.4) == 5  # no flapping at the edge
    assert share.fitting(2.2) == 6 and share.fitting(0.0) == 8


def test_the_machine_load_is_the_busy_time_that_is_not_this_process(monkeypatch):
    clock, busy, own = Clock(), [100.0], [10.0]
    load = MachineLoad(busy=lambda: busy[0], own=lambda: own[0], clock=clock)
    assert load() is None  # a first look has nothing to compare with
    clock.now, busy[0], own[0] = 2.0, 103.0, 11.0  # in 2 s the machine was busy 3 CPU s, this process 1
    assert load() == pytest.approx(1.0)
    clock.now, busy[0], own[0] = 3.0, 104.9, 12.9  # all of it this process's (its threads and children)
    assert load() == pytest.approx(0.0)
    unreadable = MachineLoad(busy=lambda: (_ for _ in ()).throw(OSError("no /proc")), own=lambda: 0.0, clock=clock)
    assert unreadable() is None and unreadable() is None


@pytest.mark.slow
def test_a_descendant_s_cpu_time_is_this_process_s_own_and_another_process_s_is_not(tmp_path):
    """What MachineLoad reads on this machine: a child that computes (as torch.compile's workers and
    their compilers do) counts as this process's own time, living or finished; a process that is no
    descendant counts as another program's. CPU seconds, not wall-clock time: the same on any machine."""
    from vaelab.runtime.cpu_share import _machine_busy_seconds, _own_seconds

    spin = ("import sys, time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"
            "open(sys.argv[1], 'w').close()\ntime.sleep(float(sys.argv[2]))")
    own_before = _own_seconds()
    child = subprocess.Popen([sys.executable, "-c", spin, str(tmp_path / "child"), "600"])
    wait_until(lambda: (tmp_path / "child").exists(), child, "the child computed")
    assert _own_seconds() - own_before >= 1.4  # living
    child.kill()
    child.wait()
    assert _own_seconds() - own_before >= 1.4  # finished
    own_before, busy_before = _own_seconds(), _machine_busy_seconds()
    # a grandchild whose parent exits at once: no descendant of this process any more
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" "$1" 0 &', spin, str(tmp_path / "stranger")], check=True)
    wait_until(lambda: (tmp_path / "stranger").exists(), None, "the other process computed")
    assert _machine_busy_seconds() - busy_before >= 1.4
    assert _own_seconds() - own_before < 0.5


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


def test_sharing_installs_no_hook_the_loop_does_not_show(tmp_path):
    """The training loop calls the share's look itself (`train_epoch`'s between_steps): nothing global."""
    clock = Clock()
    hooks_before = len(_global_optimizer_pre_hooks)
    share, calls = _share(tmp_path, clock, threads_alone=2)
    with share:
        assert len(_global_optimizer_pre_hooks) == hooks_before
    assert len(_global_optimizer_pre_hooks) == hooks_before


def _counted_looks(monkeypatch, tmp_path) -> list[bool]:
    """The CPU share's looks of a command run next, as they come (each one's `report`), with sharing on."""
    from vaelab.runtime import cpu_share

    looks = []
    real = cpu_share.CpuShare.update
    monkeypatch.setattr(cpu_share.CpuShare, "update", lambda self, report=True: looks.append(report) or real(self, report))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("VAELAB_THREADS")
    for name in cpu_share.USER_THREAD_VARIABLES:  # a thread count the user fixed turns the looks off
        monkeypatch.delenv(name, raising=False)
    return looks


@pytest.mark.slow
def test_a_training_run_looks_at_the_cpus_before_every_step(tmp_path, monkeypatch):
    """`vaelab train` fits its threads to the machine as it goes: one look before each of its steps."""
    from vaelab.cli import main

    looks = _counted_looks(monkeypatch, tmp_path)
    assert main(["train", "--out", str(tmp_path / "run"), "--limit-train", "300", "--batch-size", "100",
                 "--epochs", "2", "--latent-dim", "2", "--hidden", "8", "--compile", "off", "--no-progress"]) == 0
    assert looks == [False] + [True] * 6  # on entry (silently), then before each of the 2 x 3 steps


@pytest.mark.slow
def test_a_command_that_died_no_longer_counts_and_its_file_is_removed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from vaelab.runtime.cpu_share import CpuShare\n"
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
def test_a_run_beside_another_takes_fewer_threads_and_is_then_a_run_on_that_many(tmp_path, mnist_raw):
    """`vaelab train` beside another vaelab command (and a program that computes) takes 1 of 2 threads,
    and gives bit for bit the run of a command fixed at one thread on a quiet machine: sharing
    changes the thread count and nothing else.

    Against a run on 2 threads nothing is asserted here: on a CPU whose matrix products sum in
    another order on 2 threads than on 1 (an AVX-512 Xeon), Adam makes a rounding difference in a
    near-zero gradient a whole step, and weights part by up to lr x steps (8e-3 after 20 steps,
    seen). How far figures move with the thread count where Adam cannot amplify is
    `test_evaluation_agrees_across_thread_counts_and_kernels`."""
    command = [sys.executable, "-m", "vaelab", "train", "--limit-train", "1000", "--epochs", "2", "--no-progress",
               "--compile", "off", "--out"]
    env = {key: value for key, value in os.environ.items()
           if key not in ("VAELAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["TMPDIR"] = str(tmp_path)
    other = CpuShare(tmp_path / f"vaelab-{os.getuid()}" / "running", 2, None)  # another vaelab command, running
    with other, beside_a_training_loop():  # and a program that computes: the count only goes down
        shared = subprocess.run(command + [str(tmp_path / "shared")], env=env, capture_output=True, text=True,
                                timeout=600)
        assert shared.returncode == 0, shared.stderr
        assert "2 vaelab commands share the CPUs: using 1 of 2 threads" in shared.stderr
    alone = subprocess.run(command + [str(tmp_path / "alone")], env=dict(env, VAELAB_THREADS="off", OMP_NUM_THREADS="1"),
                           capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr
    assert "threads" not in alone.stderr
    a = load_checkpoint(RunDir(tmp_path / "shared").checkpoint).tensors
    b = load_checkpoint(RunDir(tmp_path / "alone").checkpoint).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _without_timing(read_metrics(RunDir(tmp_path / "shared").metrics)) == \
        _without_timing(read_metrics(RunDir(tmp_path / "alone").metrics))


def test_an_evaluation_looks_at_the_cpus_before_every_batch(small_run, tmp_path, monkeypatch):
    """`vaelab evaluate` fits its threads to the machine as it goes, not once at its start."""
    from vaelab.cli import main

    looks = _counted_looks(monkeypatch, tmp_path)
    assert main(["evaluate", str(small_run), "--iw-samples", "2", "--no-progress", "--compile", "off"]) == 0
    assert looks == [False] + [True] * 100  # on entry (silently), then before each of the 100 batches


def test_a_command_that_was_stopped_starts_a_new_window_when_it_continues(tmp_path):
    """Ctrl-Z, SIGSTOP: while stopped the others ran without it, which says nothing about sharing."""
    clock, busy, own = Clock(), [0.0], [0.0]
    load = MachineLoad(busy=lambda: busy[0], own=lambda: own[0], clock=clock)
    share = CpuShare(tmp_path, 2, lambda _: None, clock=clock, load=load)
    with share:
        clock.now, busy[0] = 10.0, 20.0  # stopped for 10 s while two CPUs were busy without it
        os.kill(os.getpid(), signal.SIGCONT)
        share.update()
        assert share.threads == 2  # a new window: nothing measured yet
        clock.now, busy[0], own[0] = 10.5, 21.0, 0.95
        share.update()
        assert share.threads == 2
    assert signal.getsignal(signal.SIGCONT) == signal.SIG_DFL
