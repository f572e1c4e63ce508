"""The command line: bad input gets one line and exit code 2, a failure while running one line and exit
code 1; an end-to-end run on a real MNIST slice."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from vaelab.cli import commands
from vaelab.cli import main
from vaelab.config import SETTINGS, make_config, read_toml
from vaelab.models import settings_of
from vaelab.runtime.processes import ProcessLost
from vaelab.errors import RunFailed, TrainingDiverged, VaelabError

BAD_INPUT = [
    (["train", "--out", "X", "--latent-dim", "0"], "--latent-dim 0 is not allowed"),
    (["train", "--out", "X", "--epochs", "-1"], "--epochs -1 is not allowed"),
    (["train", "--out", "X", "--batch-size", "0"], "--batch-size 0 is not allowed"),
    (["train", "--out", "X", "--lr", "nan"], "--lr nan is not allowed"),
    (["train", "--out", "X", "--lr", "fast"], "'fast' is not a number"),
    (["train", "--out", "X", "--model", "gan"], "--model 'gan' is not allowed: use one of vae, cvae"),
    (["train", "--out", "X", "--dataset", "cifar"], "--dataset 'cifar' is not allowed"),
    (["train", "--out", "X", "--hidden", "500,x"], "--hidden '500,x' is not allowed"),
    (["train", "--out", "X", "--binarize", "none"], "needs binarised pixels"),
    (["train", "--out", "X", "--objective", "iwae"], "--objective iwae needs --samples k >= 2"),
    (["train", "--out", "X", "--config", "missing.toml"], "config file missing.toml does not exist"),
    (["sample", "nowhere", "-o", "x.png", "--digit", "-1"], "'-1' is not a class"),
    (["evaluate", "nowhere", "--iw-samples", "0"], "'0' must be a whole number from 1 to 100,000"),
    (["evaluate", "nowhere", "--iw-samples", "99999999999999999999"], "must be a whole number from 1 to 100,000"),
    (["train", "--out", "X", "--hidden", "100000000"], "--hidden [100000000] is not allowed: use comma-separated "
     "whole numbers from 1 to 10,000"),
    (["train", "--out", "X", "--latent-dim", "99999"], "--latent-dim 99999 is not allowed: use a whole number from 1"),
    (["train", "--out", "X", "--samples", "1000000"], "--samples 1000000 is not allowed"),
    (["evaluate", "nowhere"], "run directory nowhere does not exist"),
    (["evaluate", "nowhere", "--ais", "0"], "'0' must be a whole number from 1 to 1,000,000"),
    (["evaluate", "nowhere", "--leapfrog", "5"], "--leapfrog is a setting of AIS: add --ais STEPS"),
    (["evaluate", "nowhere", "--bdmc", "5", "--ais-images", "3"], "--ais-images is a setting of AIS"),
    (["evaluate", "nowhere", "--bdmc", "-2"], "'-2' must be a whole number from 1 to 10,000"),
    (["evaluate", "nowhere", "--ais", "5", "--chains", "1"], "'1' must be a whole number from 2 to 10,000"),
    (["reconstruct", "nowhere", "-o", "r.png", "--seed", "-1"], "'-1' must be a whole number from 0 to "),
    (["sample", "nowhere", "-o", "s.png", "--per-class", "0"], "'0' must be a whole number from 1 to 1,000"),
    (["train", "--out", "X", "--patience", "-1"], "--patience -1 is not allowed"),
    (["train", "--out", "X", "--compile", "fast"], "--compile 'fast' is not allowed: use one of auto, on, off"),
    (["train", "--out", "X", "--precision", "fp8"], "--precision 'fp8' is not allowed: use one of float32, bf16, tf32"),
    (["train", "--out", "X", "--device", "cpu", "--precision", "tf32"], "--precision tf32 is for CUDA GPUs"),
    (["study", "--out", "X", "--latent-dims", "3,0"], "every latent size must be from 1 to 10,000"),
    (["study", "--out", "X", "--epochs", "0"], "--epochs 0 is not allowed"),
    (["report", "nowhere", "-o", "r.html"], "run directory nowhere does not exist"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: command"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("vaelab: error:") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize("content, message", [
    ("latent_dim = 4\nwidth = 3\n", "unknown key 'width'"),
    ("latent_dim = 'four'\n", "--latent-dim 'four' is not allowed"),
    ("hidden = [500, -1]\n", "--hidden"),
    ("epochs = 2.5\n", "--epochs 2.5 is not allowed"),
    ("this is not toml", "is not valid TOML"),
])
def test_bad_config_file(tmp_path, content, message, capsys):
    path = tmp_path / "c.toml"
    path.write_text(content)
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "r").exists()  # nothing written for a rejected command


@pytest.mark.parametrize("recipe", sorted(p.name for p in (Path(__file__).parents[1] / "configs").glob("*.toml")))
def test_every_shipped_recipe_is_a_valid_config(recipe):
    """The recipes load as they are (M2's with the --labels its comment asks for), and every value they
    set is the one the run gets: no key is ignored, misspelt or overridden by a default."""
    settings = read_toml(Path(__file__).parents[1] / "configs" / recipe)
    config = make_config(settings, {"labels": 100} if settings.get("model") == "m2" else {})
    taken = {**SETTINGS, **settings_of(config.model, config.get("network"))}
    for name, value in settings.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert config.get(name) == pytest.approx(expected) if taken[name].kind is float else \
            config.get(name) == expected, name
    defaults = make_config({"model": config.model})
    assert {name for name in taken if config.get(name) != defaults.get(name)} <= set(settings) | {"labels"}


@pytest.mark.parametrize("failure, code, words", [
    (VaelabError("--out X: bad input"), 2, "vaelab: error: --out X: bad input"),
    (TrainingDiverged("the loss became non-finite in epoch 3 at step 7 of the epoch"), 1, "became non-finite"),
    (RunFailed("could not write run/checkpoint.safetensors (No space left on device)"), 1, "No space left"),
    (ProcessLost("lost contact with the other training processes (Connection closed by peer)"), 1, "lost contact"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 4000000000000 bytes."), 1, "out of memory in `vaelab train` ("),
    (MemoryError(), 1, "out of memory in `vaelab train` (MemoryError); use a smaller --batch-size"),
])
def test_failures_while_running_exit_1_and_bad_input_2_each_in_one_line(monkeypatch, capsys, failure, code, words):
    def command(args, session):
        raise failure

    monkeypatch.setitem(commands.COMMANDS, "train", command)
    assert main(["train", "--out", "X"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


def test_a_bug_in_vaelab_is_not_dressed_up_as_a_users_problem(monkeypatch):
    def command(args, session):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (3x4 and 5x7)")

    monkeypatch.setitem(commands.COMMANDS, "train", command)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # its traceback is the report
        main(["train", "--out", "X"])


def test_folder_without_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "holds no finished epoch of a vaelab run" in capsys.readouterr().err


def _vaelab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.slow
def test_end_to_end_train_evaluate_sample_reconstruct(tmp_path, mnist_raw):
    config = tmp_path / "small.toml"
    config.write_text('model = "cvae"\nlatent-dim = 8\nhidden = [128]\nlimit-train = 2000\nsample-epochs = [1]\n')
    done = _vaelab("train", "--config", str(config), "--epochs", "2", "--out", "run", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trained 2 epochs" in done.stdout
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    done = _vaelab("evaluate", "run", "--iw-samples", "20", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["n_test"] == 10_000 and result["iw_samples"] == 20
    assert result["elbo"] <= result["log_likelihood"] + 0.5  # IS with K = 20 beats the ELBO (up to noise)
    assert result["log_likelihood"] <= result["log_likelihood_marginal"] + 5  # log p(x) >= log p(x|y) + log 0.1
    assert 0.1 < result["accuracy"] <= 1.0

    for command, name, height in [("sample", "grid.png", 10), ("reconstruct", "recon.png", 2)]:
        done = _vaelab(command, "run", "-o", name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > height * 28 * 0.5  # decodes, and holds the rows of digits

    done = _vaelab("sample", "run", "-o", "one.png", "--digit", "3", "--per-class", "5", cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "one.png").is_file()

    # training again into the same folder without --resume refuses and keeps what is there
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    done = _vaelab("train", "--out", "run", "--epochs", "1", cwd=tmp_path)
    assert done.returncode == 2 and "resume it (--resume)" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before


def test_data_command(capsys, mnist_raw):
    assert main(["data", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"] == 50_000 and summary["test_class_counts"][1] == 1135


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "no CUDA GPU is available; use --device cpu or auto" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_message_names_a_setting_by_its_flag_on_the_command_line_and_by_its_name_in_python(tmp_path, capsys):
    """Library errors name settings as {name}: the API's message says latent_dim, the command line --latent-dim."""
    from vaelab.config import make_config
    from vaelab.errors import VaelabError

    with pytest.raises(VaelabError) as raised:
        make_config({"latent_dim": 0})
    assert str(raised.value).startswith("latent_dim 0 is not allowed") and "--" not in str(raised.value)
    assert main(["train", "--out", str(tmp_path / "run"), "--latent-dim", "0"]) == 2
    assert capsys.readouterr().err.startswith("vaelab: error: --latent-dim 0 is not allowed")
