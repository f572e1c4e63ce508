"""A researcher's own model with vaelab's guarantees, written from outside vaelab (no edit to its files):
(a) their own encoder and decoder on colour images in arrays, from `vaelab.train` to the report and the
explorer; (b) a family with a setting of its own, from the command line with --import and from Python;
(c) data as a torch Dataset, the same run as the same images in an .npz.

Everything here runs on one CPU thread (here and in the subprocesses alike), so that the compared
runs repeat bit for bit (see tests/progress.py `same_threads`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch

import vaelab
from vaelab.models import FAMILIES
from vaelab.runs import RunDir, read_metrics
from vaelab.runs.checkpoints import load_checkpoint

from .own_networks import CLASSES, IMAGES, ConvDecoder, ConvEncoder, colour_shapes
from .progress import HANG_GUARD, ROOT, same_threads

pytestmark = pytest.mark.usefixtures("one_thread")
TIMING = {"seconds", "samples_per_second"}


def _rows(out) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(RunDir(out).metrics)]


def _python(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], cwd=ROOT, env=same_threads(), capture_output=True,
                          text=True, timeout=HANG_GUARD, check=check)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- (a) your own encoder and decoder, colour images in arrays ----

@pytest.mark.slow
def test_your_networks_on_colour_arrays_train_resume_evaluate_sample_report_and_explore(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _python("-m", "tests.own_networks", str(whole))
    stopped = _python("-m", "tests.own_networks", str(cut), "--signal-at", "20", check=False)
    assert stopped.returncode == 128 + 15, stopped.stderr
    assert "SIGTERM received in epoch 2" in stopped.stderr and f"vaelab.train({str(cut)!r}, ..., resume=True)" \
        in stopped.stderr
    _python("-m", "tests.own_networks", str(cut), "--resume")
    assert _rows(cut) == _rows(whole) and len(_rows(whole)) == 3  # the resumed run is the uninterrupted one
    for name in ("checkpoint", "best"):
        first, second = (load_checkpoint(getattr(RunDir(out), name)).tensors for out in (whole, cut))
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    config = json.loads(RunDir(whole).config.read_text())
    assert (config["network"], config["encoder"], config["decoder"]) == \
        ("given", "__main__.ConvEncoder", "__main__.ConvDecoder")  # what the modules were, for the messages
    assert "hidden" not in config and "channels" not in config and "alpha" not in config  # only what it takes

    with pytest.raises(vaelab.VaelabError, match="trained with modules handed to vaelab.train"):
        vaelab.load_run(whole)  # nothing pickled: the modules are needed again
    run = vaelab.load_run(whole, encoder=ConvEncoder(), decoder=ConvDecoder())
    assert run.model.image_shape == (3, 32, 32) and run.class_names == ("0", "1", "2")
    iw5 = run.evaluate(iw_samples=5, seed=1)
    is500 = run.evaluate(iw_samples=500, seed=2)
    assert iw5["n_test"] == IMAGES // 10
    assert is500["elbo"] <= iw5["log_likelihood"] <= is500["log_likelihood"] < 0
    images, labels = run.sample(n=6, seed=0)
    assert images.shape == (6, 3, 32, 32) and labels is None and 0 <= images.min() and images.max() <= 1
    report = vaelab.write_report([run], tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "ConvEncoder" in page and "given" in page and report.runs[0].name.startswith("whole: VAE")
    explorer = vaelab.open_explorer([run], port=_free_port())
    try:
        with urllib.request.urlopen(explorer.url + "api/runs", timeout=HANG_GUARD) as response:
            assert response.status == 200 and "whole" in response.read().decode()
    finally:
        explorer.stop()


# ---- (b) a family with a setting of its own ----

@pytest.fixture
def own_family():
    """tests.own_setting_family imported in this process (it registers scaled-prior); unregistered after."""
    import importlib

    module = importlib.import_module("tests.own_setting_family")
    FAMILIES["scaled-prior"] = module.ScaledPriorVAE
    yield module
    FAMILIES.pop("scaled-prior", None)


def _train_flags(dataset, out, *more: str) -> list[str]:
    return ["train", "--import", "tests.own_setting_family", "--model", "scaled-prior", "--dataset", str(dataset),
            "--hidden", "64", "--latent-dim", "4", "--limit-train", "600", "--batch-size", "100", "--epochs", "2",
            "--sample-epochs", "1", "--no-progress", "--out", str(out), *more]


@pytest.mark.slow
def test_a_family_with_its_own_setting_from_the_command_line_and_from_python(own_family, mnist_slice, tmp_path):
    shown = _python("-m", "vaelab", "train", "--import", "tests.own_setting_family", "--help").stdout
    group = shown.split("settings of --model scaled-prior:")[1]
    assert "--prior-std PRIOR_STD" in group and "N(0, s^2 I) (default: 1)" in " ".join(group.split())
    assert "--prior-std" not in _python("-m", "vaelab", "train", "--help").stdout  # only with its module

    bad = _python("-m", "vaelab", *_train_flags(mnist_slice, tmp_path / "bad", "--prior-std", "-1"), check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr == ("vaelab: error: --prior-std -1.0 is not allowed: use a finite number > 0 and <= 100\n")
    rule = _python("-m", "vaelab", *_train_flags(mnist_slice, tmp_path / "rule", "--prior-std", "2", "--prior",
                                                 "vamp"), check=False)
    assert rule.returncode == 2 and "--prior-std scales the standard prior" in rule.stderr
    assert not (tmp_path / "bad").exists() and not (tmp_path / "rule").exists()

    command_line = tmp_path / "command-line"
    _python("-m", "vaelab", *_train_flags(mnist_slice, command_line, "--prior-std", "0.5"))
    stored = json.loads(RunDir(command_line).config.read_text())
    assert stored["prior_std"] == 0.5 and stored["imports"] == ["tests.own_setting_family"]
    assert "alpha" not in stored and "channels" not in stored

    refused = _python("-m", "vaelab", "evaluate", str(command_line), "--iw-samples", "5", check=False)
    assert refused.returncode == 2 and refused.stderr == (
        "vaelab: error: --model scaled-prior is not registered in this process: import tests.own_setting_family "
        "first (on the command line: --import tests.own_setting_family)\n")
    evaluated = _python("-m", "vaelab", "evaluate", str(command_line), "--iw-samples", "5", "--import",
                        "tests.own_setting_family", "--json")
    assert json.loads(evaluated.stdout)["model"] == "scaled-prior"

    python = tmp_path / "python"
    run = vaelab.train(python, mnist_slice, model="scaled-prior", prior_std=0.5, hidden=(64,), latent_dim=4,
                       limit_train=600, batch_size=100, epochs=2, sample_epochs=(1,), progress=False,
                       log=lambda _: None)
    assert isinstance(run.model, own_family.ScaledPriorVAE) and float(run.model.prior_scale[0]) == 0.5
    assert _rows(python) == _rows(command_line)  # the same run, from either side
    assert "N(0, 0.5² I_d)" in " ".join(run.model.equations())
    with pytest.raises(vaelab.VaelabError, match="prior_std -1.0 is not allowed"):
        vaelab.train(tmp_path / "never", mnist_slice, model="scaled-prior", prior_std=-1.0)


# ---- (c) a torch Dataset is the same data as the same images in an .npz ----

class ColourShapes(torch.utils.data.Dataset):
    """The colour shapes as a user's Dataset: (float image [3, 32, 32] in [0, 1], int label) items."""

    def __init__(self, count: int):
        self.images, self.labels = colour_shapes(count, seed=3)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return torch.from_numpy(self.images[index]).float() / 255, int(self.labels[index])


@pytest.mark.slow
def test_a_torch_dataset_trains_the_run_the_same_images_in_an_npz_train(tmp_path):
    dataset = ColourShapes(300)
    npz = tmp_path / "shapes.npz"
    np.savez(npz, images=dataset.images, labels=dataset.labels)
    settings = dict(model="cvae", network="mlp", hidden=(32,), latent_dim=4, epochs=2, batch_size=60,
                    sample_epochs=(1,), progress=False, log=lambda _: None)
    from_file = vaelab.train(tmp_path / "file", npz, **settings)
    from_dataset = vaelab.train(tmp_path / "dataset", dataset, **settings)
    assert from_dataset.config.dataset == str(RunDir(tmp_path / "dataset").data.resolve())
    rows_file, rows_dataset = _rows(tmp_path / "file"), _rows(tmp_path / "dataset")
    assert [sorted(row) for row in rows_file] == [sorted(row) for row in rows_dataset]
    for row_file, row_dataset in zip(rows_file, rows_dataset):
        for key, value in row_file.items():
            assert abs(row_dataset[key] - value) <= 1e-6, key  # nats per image
    test_file, test_dataset = from_file.test_data(), from_dataset.test_data()
    assert torch.equal(test_file.x, test_dataset.x) and torch.equal(test_file.y, test_dataset.y)
    assert len(CLASSES) == from_file.model.num_classes == 3


# ---- your modules see one batch dimension; a wrong shape is one line ----

class Recording(torch.nn.Module):
    """A linear map that records the shapes it is called with."""

    def __init__(self, inputs: int, outputs: tuple[int, ...], classes: int = 0):
        super().__init__()
        self.linear, self.outputs, self.calls = torch.nn.Linear(inputs, int(np.prod(outputs))), outputs, []
        self.label = torch.nn.Embedding(classes, inputs) if classes else None

    def forward(self, x, y=None):
        self.calls.append((tuple(x.shape), None if y is None else tuple(y.shape)))
        flat = x.flatten(1)
        return self.linear(flat if y is None else flat + self.label(y)).view(-1, *self.outputs)


def test_your_modules_see_one_batch_dimension_and_the_labels_beside_each_image():
    from vaelab import inference
    from vaelab.models import Noise, build_model, given_settings

    image, classes, d = (3, 4, 4), 3, 2
    encoder, decoder = Recording(48, (2 * d,), classes), Recording(d, image, classes)
    classifier = Recording(48, (classes,))
    modules = {"encoder": encoder, "decoder": decoder, "classifier": classifier}
    model = build_model("m2", image, classes, modules=modules, **given_settings(modules, {"latent_dim": d}))
    x, y = torch.rand(5, *image).round(), torch.tensor([0, 2])
    generator = torch.Generator().manual_seed(0)
    noise = Noise(inference.draw_noise(model, 4, 3, generator, "cpu", labelled=False),
                  inference.draw_noise(model, 4, 2, generator, "cpu"))
    terms = model.objective(x, y, noise, inference.BOUNDS["elbo"])
    assert terms.bound.shape == (5,) and torch.isfinite(terms.bound).all()
    # unlabelled: every image in every class, 3 classes x 3 images; draws: 4 samples x 3 classes x 3 images
    assert ((9, *image), (9,)) in encoder.calls and ((36, d), (36,)) in decoder.calls
    assert all(len(shape) == 2 and (labels is None or labels == (shape[0],)) for shape, labels in decoder.calls)
    assert classifier.calls and all(labels is None for _, labels in classifier.calls)


def test_a_module_of_the_wrong_shape_is_refused_in_one_line_when_the_model_is_built():
    from vaelab.models import build_model, given_settings

    modules = {"encoder": Recording(48, (3,)), "decoder": Recording(2, (3, 4, 4))}
    with pytest.raises(vaelab.VaelabError, match=r"^the encoder \(Recording\) returned \(2, 3\) for 2 inputs; it must "
                                                 r"return \[2, 4\]$"):
        build_model("vae", (3, 4, 4), 1, modules=modules, **given_settings(modules, {"latent_dim": 2}))
    labelled = {"encoder": Recording(48, (4,), 2), "decoder": Recording(2, (3, 4, 4), 2)}
    with pytest.raises(vaelab.VaelabError, match="a classifier module too"):
        build_model("m2", (3, 4, 4), 2, modules=labelled, **given_settings(labelled, {"latent_dim": 2}))
    with pytest.raises(vaelab.VaelabError, match="modules or a network's name, not both"):
        given_settings(modules, {"network": "conv"})
    with pytest.raises(vaelab.VaelabError, match="trained with modules handed to vaelab.train"):
        build_model("vae", (3, 4, 4), 1, network="given", encoder="mine.Encoder", decoder="mine.Decoder")
    with pytest.raises(vaelab.VaelabError, match="given is the modules handed to vaelab.train"):
        build_model("vae", (3, 4, 4), 1, network="given")  # asked for by name, as --network given would


@pytest.mark.slow
def test_torchrun_imports_your_family_in_every_process(own_family, mnist_slice, tmp_path):
    """`--import` under torchrun: each of 2 processes imports the module before it reads its flags,
    trains the family with its own setting and evaluates the run; without it, one line. Its 300
    validation images are one chunk, so one process validates none of them (an empty share)."""
    from .test_distributed import _finish, _launch, _vaelab_traceback

    out = tmp_path / "run"
    _finish(_launch(_train_flags(mnist_slice, out, "--prior-std", "0.5", "--epochs", "1"), 2))
    rows = read_metrics(RunDir(out).metrics)
    assert [row["processes"] for row in rows] == [2]
    assert json.loads(RunDir(out).config.read_text())["prior_std"] == 0.5
    evaluated = _finish(_launch(["evaluate", str(out), "--iw-samples", "2", "--import", "tests.own_setting_family",
                                 "--json"], 2))
    assert '"model": "scaled-prior"' in evaluated and '"processes": 2' in evaluated
    refused = _launch(["evaluate", str(out), "--iw-samples", "2"], 2)
    _, err = refused.communicate(timeout=HANG_GUARD)
    assert refused.returncode != 0
    assert "vaelab: error: --model scaled-prior is not registered in this process: import tests.own_setting_family" \
        in err and not _vaelab_traceback(err)


def test_progress_bars_are_text_outside_a_jupyter_kernel():
    """Here (no kernel) the terminal's tqdm, not tqdm.auto's fallback with its warning."""
    import warnings

    from tqdm import tqdm

    from vaelab.runtime.progress import progress_bar

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert progress_bar() is tqdm
