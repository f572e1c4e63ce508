"""`vaelab train --tensorboard`: event files with every epoch's metrics and the sample grids, read back."""

import builtins
import json

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.runs import RunDir, read_metrics
from vaelab.training.dashboard import GRID_TAG, TAGS

SMALL = ["--latent-dim", "4", "--hidden", "32", "--limit-train", "600", "--batch-size", "100", "--compile", "off",
         "--no-progress", "--sample-epochs", "1,3"]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


@pytest.mark.slow
def test_event_files_hold_every_epochs_metrics_and_the_sample_grids(tmp_path, mnist_raw):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "2", "--tensorboard", *SMALL]) == 0
    assert main(["train", "--out", str(out), "--epochs", "3", "--resume", "--tensorboard", *SMALL]) == 0
    rows = read_metrics(RunDir(out).metrics)
    events = _events(RunDir(out).tensorboard)
    for key, tag in TAGS.items():
        if key not in rows[0]:
            assert tag not in events.Tags()["scalars"]
            continue
        logged = events.Scalars(tag)
        assert [event.step for event in logged] == [1, 2, 3], tag
        np.testing.assert_allclose([event.value for event in logged], [row[key] for row in rows], rtol=1e-6)
    active = events.Scalars("latents/active_z")  # every epoch's active units of z on the validation images
    assert [event.step for event in active] == [1, 2, 3] and all(event.value in (0, 1, 2, 3, 4) for event in active)
    assert active[-1].value >= 1  # after 3 epochs the encoder's mean moves with x in one unit at least
    grids = events.Images(GRID_TAG)
    assert [image.step for image in grids] == [1, 2, 3]  # 1 and 3 asked for, 2 the last of the first call
    with Image.open(RunDir(out).sample_grid(3)) as png:
        assert (grids[-1].width, grids[-1].height) == png.size


@pytest.mark.slow
def test_events_of_epochs_after_the_last_checkpoint_are_dropped_on_resume(tmp_path, mnist_raw):
    """A run killed after writing epoch 2's events but before its checkpoint logs epoch 2 once, not twice:
    the checkpoint is replaced by the one the same run wrote after epoch 1 (same seed, same state)."""
    out, one = tmp_path / "run", tmp_path / "one"
    assert main(["train", "--out", str(out), "--epochs", "2", "--tensorboard", *SMALL]) == 0
    assert main(["train", "--out", str(one), "--epochs", "1", *SMALL]) == 0
    RunDir(out).checkpoint.write_bytes(RunDir(one).checkpoint.read_bytes())
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", *SMALL]) == 0
    assert json.loads(RunDir(out).config.read_text())["tensorboard"] is True  # the stored setting rules
    steps = [event.step for event in _events(RunDir(out).tensorboard).Scalars("bound/valid_elbo")]
    assert steps == [1, 2]


def test_without_the_extra_the_flag_says_what_to_install(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", "--tensorboard", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "pip install 'vaelab[tensorboard]'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written


def test_the_setting_is_a_boolean(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('tensorboard = "yes"\n')
    assert main(["train", "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    assert "--tensorboard 'yes' is not allowed: use true or false" in capsys.readouterr().err
