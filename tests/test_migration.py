"""Run directories of earlier versions are read in today's form, in one place (`vaelab.runs.migration`):
config.json without the labelled batch, and a checkpoint stopped mid-epoch that holds the epoch's
bound alone under its old name. (Runs of vaelab 0.1 as a whole: tests/test_legacy_runs.py.)"""

import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from vaelab.config import make_config
from vaelab.errors import TrainingInterrupted
from vaelab.runs import RunDir, load_checkpoint, read_metrics
from vaelab.runs.migration import PARTIAL_SUMS, current_config, current_tensors
from vaelab.training import train

from .conftest import SMALL


def test_a_semi_supervised_config_without_a_labelled_batch_gets_the_plan_it_trained_with():
    old = {"model": "m2", "labels": 100}
    assert current_config(old) == {"model": "m2", "labels": 100, "labelled_batch": 0, "encoder_input": "target"}
    assert old == {"model": "m2", "labels": 100}  # the values read are not changed
    assert current_config({"model": "cvae", "labels": None}) == {"model": "cvae", "labels": None,
                                                                 "encoder_input": "target"}
    assert current_config({"model": "m2", "labels": 100, "labelled_batch": 64})["labelled_batch"] == 64


def test_an_epochs_bound_under_its_old_name_is_read_under_todays():
    bound, order = torch.tensor(-1234.5, dtype=torch.float64), torch.arange(4)
    assert current_tensors({"partial.order": order, "partial.bound_sum": bound}) == \
        {"partial.order": order, PARTIAL_SUMS + "bound": bound}


def _stop_before_step(step: int):
    """A `between_steps` that sends this process SIGINT before its `step`-th step (a user's Ctrl-C)."""
    calls = 0

    def look():
        nonlocal calls
        calls += 1
        if calls == step:
            os.kill(os.getpid(), signal.SIGINT)

    return look


def _as_an_earlier_version_saved_it(path: Path) -> None:
    """Rewrite a mid-epoch checkpoint as vaelab wrote it before the parts were summed: the epoch's
    bound alone, as partial.bound_sum."""
    with safe_open(str(path), "pt") as stored:
        metadata = stored.metadata()
        tensors = {name: stored.get_tensor(name) for name in stored.keys()}
    tensors["partial.bound_sum"] = tensors.pop(PARTIAL_SUMS + "bound")
    for name in [name for name in tensors if name.startswith(PARTIAL_SUMS)]:
        del tensors[name]
    path.write_bytes(safetensors_save(tensors, metadata=metadata))


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_by_an_earlier_version_resumes_to_the_same_run(tmp_path, mnist_raw):
    """The resumed epoch logs its bound (the same as the uninterrupted run's) but not its parts,
    which the old checkpoint does not hold; the next epoch logs them all, as the uninterrupted run."""
    config = make_config(dict(SMALL, limit_train=600, batch_size=100, epochs=2, compile="off"))
    whole = train(config, tmp_path / "whole", log=lambda _: None, progress=False)
    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "cut", log=lambda _: None, progress=False, between_steps=_stop_before_step(4))
    checkpoint = RunDir(tmp_path / "cut").checkpoint
    assert {PARTIAL_SUMS + "recon", PARTIAL_SUMS + "kl"} <= set(load_checkpoint(checkpoint).tensors)
    _as_an_earlier_version_saved_it(checkpoint)
    train(config, tmp_path / "cut", resume=True, log=lambda _: None, progress=False)
    resumed = read_metrics(RunDir(tmp_path / "cut").metrics)
    timing = ("seconds", "samples_per_second")
    assert "train_recon" not in resumed[0] and "train_recon" in whole[0]
    assert {key: value for key, value in resumed[0].items() if key not in timing} == \
        {key: value for key, value in whole[0].items() if key not in timing + ("train_recon", "train_kl")}
    assert {key: value for key, value in resumed[1].items() if key not in timing} == \
        {key: value for key, value in whole[1].items() if key not in timing}
