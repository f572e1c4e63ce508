"""Families written outside vaelab get training, exact resume, evaluation, samples, the report and the
explorer, each with one registration line and no change to vaelab.

The two families (`tests/outside_families.py`) go beyond one Gaussian z: a planar flow on top of a
diagonal Gaussian q (its KL only at the draw, its code the flow of the mean) and two stochastic
layers (two KL parts, ancestral draws from the prior). They are built on the public
`vaelab.models` interface only; the `families` fixture registers them with
`vaelab.models.register_family` and removes them again, and a command run in a process of its own
imports `tests/register_outside_families.py`, which does the same.

The end-to-end runs train on a 3,000-image slice of real MNIST given as a user's .npz dataset
(2,000 training images, 300 for validation, 300 for test), so that `vaelab evaluate --iw-samples 500`
decodes 150,000 draws rather than the 5,000,000 the full test set would need. Everything here runs
on one CPU thread (in this process and in the subprocess alike): the compared runs then repeat bit
for bit, and the file shares the machine without torch's thread team waiting on a busy core.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import vaelab
from vaelab import inference
from vaelab.runs.checkpoints import load_checkpoint
from vaelab.cli import main
from vaelab.config import make_config
from vaelab.errors import VaelabError
from vaelab.models import (FAMILIES, DataFacts, Model, build_model, class_conditional, decoder_mean,
                           family_settings, register_family)
from vaelab.runs import RunDir, new_model, read_metrics

from .steps import MNIST_SLICE
from .outside_families import OUTSIDE_FAMILIES, PlanarFlowVAE, TwoLayerVAE, standard_log_density
from .progress import HANG_GUARD, ROOT, same_threads

TIMING = {"seconds", "samples_per_second"}
SLICE = MNIST_SLICE  # MNIST images in the .npz dataset: 2,400 to train on (2,000 used), 300 validation, 300 test
EPOCHS, STEPS_PER_EPOCH = 3, 20  # 2,000 images in batches of 100
SIGNAL_STEP = 27  # SIGTERM just before the 27th optimizer step: step 7 of epoch 2


@pytest.fixture(scope="module")
def families():
    """The two outside families as --model choices, one line each; removed from the registry afterwards."""
    assert not set(OUTSIDE_FAMILIES) & set(FAMILIES)
    register_family("planar-flow", PlanarFlowVAE)
    register_family("two-layer", TwoLayerVAE)
    try:
        yield OUTSIDE_FAMILIES
    finally:
        for name in OUTSIDE_FAMILIES:
            FAMILIES.pop(name, None)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread in this module


# ---- the flow's density, against change of variables computed without the flow's own log-determinant ----

def _tiny_flow(latent_dim: int, steps: int) -> PlanarFlowVAE:
    """A planar-flow family on 2 x 2 images with a linear encoder, in float64."""
    return PlanarFlowVAE((1, 2, 2), latent_dim=latent_dim, flow_steps=steps, hidden=None).double()


def _log_q(model: PlanarFlowVAE, x: torch.Tensor, posterior, noise: torch.Tensor) -> torch.Tensor:
    """log q_K(z_K | x) as the family's forward pass gives it: its KL part plus log N(z_K; 0, I)."""
    z = model.flow(posterior[0] + posterior[1] * noise)[0]
    return model.densities(x, None, posterior, noise).kl["kl"] + standard_log_density(z)


def test_planar_flow_log_q_is_the_change_of_variables_density(families):
    """1-D, two steps, one of them with wᵀu < -1 (so û must be constrained for f to be invertible):
    log q_K(z_K | x) of the forward pass equals log q_0(f⁻¹(z_K)) - log f'(f⁻¹(z_K)), with f⁻¹ by
    bisection and f' by central differences of the flow map alone; q_K integrates to 1. 2-D, three
    steps: it equals log q_0(z_0) - log |det ∂z_K/∂z_0| with the Jacobian by autograd."""
    torch.manual_seed(0)
    model = _tiny_flow(1, 2)
    with torch.no_grad():
        model.flow_u.copy_(torch.tensor([[-1.2], [0.8]]))
        model.flow_w.copy_(torch.tensor([[1.0], [-2.0]]))
        model.flow_b.copy_(torch.tensor([0.3, -0.5]))
        model.encoder_net.net.weight.zero_()
        model.encoder_net.net.bias.copy_(torch.tensor([0.4, 0.2]))  # loc 0.4, scale softplus(0.2) + 0.001
    with torch.no_grad():
        assert float(model.flow_w[0] @ model.flow_u[0]) < -1
        assert bool(((model.flow_w * model.u_hat()).sum(-1) > -1).all())  # the invertibility constraint
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    with torch.no_grad():
        loc, scale = model.posterior(x)  # [1, 1] each

        def f(z):  # the flow map only, elementwise on any shape
            return model.flow(z[..., None])[0][..., 0]

        targets = torch.linspace(-7, 7, 4001, dtype=torch.float64)
        low, high = torch.full_like(targets, -60.0), torch.full_like(targets, 60.0)
        for _ in range(200):  # f is increasing (f' >= 1 + wᵀû > 0): bisection finds f⁻¹
            middle = (low + high) / 2
            above = f(middle) > targets
            high, low = torch.where(above, middle, high), torch.where(above, low, middle)
        z0 = (low + high) / 2
        assert torch.allclose(f(z0), targets, atol=1e-12, rtol=0)
        h = 1e-5
        slope = (f(z0 + h) - f(z0 - h)) / (2 * h)
        assert bool((slope > 0).all()) and float(slope.min()) < 0.5  # the constrained step flattens f, never folds it
        expected = (-0.5 * ((z0 - loc[0, 0]) / scale[0, 0]) ** 2 - scale[0, 0].log() - 0.5 * math.log(2 * math.pi)
                    - slope.log())
        noise = ((z0 - loc[0, 0]) / scale[0, 0])[:, None, None]  # [samples, batch 1, d 1]
        forward = _log_q(model, x, (loc, scale), noise)[:, 0]
        assert torch.allclose(forward, expected, atol=1e-6, rtol=0), (forward - expected).abs().max()
        assert math.isclose(torch.trapezoid(forward.exp(), targets).item(), 1.0, abs_tol=1e-4)

    torch.manual_seed(1)
    model = _tiny_flow(2, 3)
    with torch.no_grad():
        model.flow_u.normal_(0, 1.5)
        model.flow_w.normal_(0, 1.5)
        model.flow_b.normal_(0, 0.5)
    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]], dtype=torch.float64)
    noise = torch.randn(6, 1, 2, dtype=torch.float64)
    with torch.no_grad():
        loc, scale = model.posterior(x)
        z0 = loc + scale * noise
        densities = model.densities(x, None, (loc, scale), noise)
        forward = _log_q(model, x, (loc, scale), noise)
        z_k = model.flow(z0)[0]
        assert torch.allclose(densities.log_px, model.decoder(z_k).log_prob(x))  # x is decoded from z_K
        assert torch.allclose(model.code(x), model.flow(loc)[0])  # the code is the flow of the mean
    for sample in range(noise.shape[0]):
        jacobian = torch.autograd.functional.jacobian(lambda z: model.flow(z)[0], z0[sample, 0])
        log_q0 = torch.distributions.Normal(loc[0], scale[0]).log_prob(z0[sample, 0]).sum()
        expected = log_q0 - torch.linalg.slogdet(jacobian).logabsdet
        assert math.isclose(forward[sample, 0].item(), expected.item(), abs_tol=1e-9)


def test_build_model_hands_a_family_only_the_settings_it_declares(families):
    seen = []

    class Recording(TwoLayerVAE):
        @classmethod
        def for_data(cls, data, **settings):
            seen.append((data, settings))
            return super().for_data(data, **settings)

    assert family_settings("planar-flow") == ("latent_dim",)
    assert family_settings("two-layer") == ("latent_dim", "hidden")
    model = build_model("planar-flow", (1, 28, 28), 10, latent_dim=3)
    assert isinstance(model, PlanarFlowVAE) and isinstance(model, Model) and model.code_dim == 3
    assert not class_conditional(model)
    with pytest.raises(ValueError, match="does not take hidden"):
        build_model("planar-flow", (1, 28, 28), 10, latent_dim=3, hidden=(16,))
    register_family("recording", Recording)
    try:
        build_model("recording", (1, 28, 28), 10, train_images=2000, latent_dim=4, hidden=(16,))
        build_model("recording", (1, 28, 28), 10, latent_dim=None, hidden=None)  # None: the family's defaults
        with pytest.raises(ValueError, match="does not take alpha"):
            build_model("recording", (1, 28, 28), 10, latent_dim=4, alpha=1.0)
    finally:
        FAMILIES.pop("recording")
    assert seen == [(DataFacts((1, 28, 28), 10, 2000, None), {"latent_dim": 4, "hidden": (16,)}),
                    (DataFacts((1, 28, 28), 10, None, None), {})]
    # a run's config hands each family its own settings, and only those
    flow = make_config({"model": "planar-flow", "latent_dim": 3})
    layers = make_config({"model": "two-layer", "latent_dim": 6, "hidden": (16,)})
    assert flow.family_settings() == {"latent_dim": 3}  # not hidden, though every config holds one
    with pytest.raises(VaelabError, match="planar-flow does not take"):  # a setting it would ignore, given
        make_config({"model": "planar-flow", "latent_dim": 3, "hidden": (16,)})
    assert layers.family_settings() == {"latent_dim": 6, "hidden": (16,)}
    built = new_model(layers)
    assert isinstance(built, TwoLayerVAE) and (built.d1, built.d2) == (6, 3) and built.noise_shape() == (9,)
    with pytest.raises(VaelabError, match="planar-flow, two-layer"):  # the choices are the registry's, now
        make_config({"model": "no-such-family"})


# ---- end to end: train, resume after SIGTERM, evaluate, sample, report, explore ----

def _flags(family: str, dataset, out) -> list[str]:
    """`vaelab train` flags of the small runs: d = 8 (two-layer: d1 = 8, d2 = 4), 3 epochs of 20 steps."""
    hidden = ["--hidden", "128"] if family == "two-layer" else []
    return ["--model", family, "--dataset", str(dataset), "--latent-dim", "8", *hidden, "--limit-train", "2000",
            "--batch-size", "100", "--epochs", str(EPOCHS), "--sample-epochs", "1", "--no-progress",
            "--out", str(out)]


def _rows(run) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(RunDir(run).metrics)]


@pytest.fixture(scope="module", params=list(OUTSIDE_FAMILIES))
def trained(request, families, mnist_slice, tmp_path_factory):
    """(family, its run directory): an uninterrupted run through `vaelab train`."""
    family = request.param
    out = tmp_path_factory.mktemp(family) / "full"
    assert main(["train", *_flags(family, mnist_slice, out)]) == 0
    return family, out


@pytest.mark.slow
def test_it_trains_and_logs_every_part_of_its_bound(trained):
    family, run = trained
    rows = read_metrics(RunDir(run).metrics)
    assert [row["epoch"] for row in rows] == [1, 2, 3] and rows[-1]["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert rows[-1]["valid_elbo"] > rows[0]["valid_elbo"] + 20  # it learns
    kls = ["kl"] if family == "planar-flow" else ["kl_z1", "kl_z2"]
    for row in rows:
        assert {f"valid_{name}" for name in kls} | {"valid_recon"} <= set(row)
        assert "valid_kl" not in row or kls == ["kl"]
        assert math.isclose(row["valid_elbo"], row["valid_recon"] - sum(row[f"valid_{k}"] for k in kls), abs_tol=1e-3)
    loaded = vaelab.load_run(run, device="cpu")
    assert isinstance(loaded.model, OUTSIDE_FAMILIES[family]) and isinstance(loaded.model, Model)
    assert not class_conditional(loaded.model)
    assert RunDir(run).sample_grid(1).is_file() and RunDir(run).sample_grid(EPOCHS).is_file()


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_uninterrupted_run(trained, mnist_slice, tmp_path):
    """SIGTERM before optimizer step 27 (step 7 of epoch 2) of a run in a process of its own, which
    imports the registration first; resumed, the run's metrics and final state (model, optimizer,
    random streams) are the uninterrupted run's, bit for bit."""
    family, full = trained
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "tests.signal_at_step", str(SIGNAL_STEP), "TERM",
               "--import", "tests.register_outside_families", "--", "train", *_flags(family, mnist_slice, out)]
    process = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=HANG_GUARD,
                             env=same_threads())  # compared bit for bit with the run in this process
    assert process.returncode == 143, process.stderr
    assert "Resume with: vaelab train --out" in process.stderr and "Traceback" not in process.stderr
    info = load_checkpoint(RunDir(out).checkpoint).info
    assert (info["epoch"], info["partial_step"]) == (1, SIGNAL_STEP - STEPS_PER_EPOCH)
    assert main(["train", *_flags(family, mnist_slice, out), "--resume"]) == 0
    assert _rows(out) == _rows(full)
    for name in ("checkpoint", "best"):
        a = load_checkpoint(getattr(RunDir(full), name)).tensors
        b = load_checkpoint(getattr(RunDir(out), name)).tensors
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def _mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    """The mean over images and its standard error."""
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


@pytest.mark.slow
def test_it_evaluates_and_its_estimators_are_in_order(trained, capsys):
    """`vaelab evaluate --iw-samples 500`, and on the 300 test images ELBO <= IW(5) <= IS(500).

    Each estimator is a mean over images of a random estimate; the order holds for their
    expectations (Burda et al. 2015: E L_1 <= E L_5 <= E L_500 <= log p(x)), not for every draw. So
    each step of the order is checked on the per-image differences (the same images), allowing 3
    standard errors of their mean for the Monte-Carlo noise (a false alarm about once in 700 for
    a step whose expected gap is 0, less for a real gap). That the whole gap, IS(500) - ELBO, is
    more than 3 standard errors above 0 shows the estimates are not all one number. The command's
    test ELBO and log p(x) are the same estimators on the same images with other draws: they must
    agree with these within 4 standard errors of such a difference, estimated from the draws.
    """
    family, run = trained
    assert main(["evaluate", str(run), "--iw-samples", "500", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    kls = ["kl"] if family == "planar-flow" else ["kl_z1", "kl_z2"]
    assert result["n_test"] == SLICE // 10 and result["iw_samples"] == 500 and result["model"] == family
    assert math.isclose(result["elbo"], result["recon"] - sum(result[k] for k in kls), abs_tol=1e-3)
    assert result["log_likelihood"] > result["elbo"] and "accuracy" not in result  # no class label, no classifier
    assert json.loads(RunDir(run).eval.read_text())["log_likelihood"] == result["log_likelihood"]

    loaded = vaelab.load_run(run, device="cpu")
    model, test = loaded.model, loaded.test_data()
    x, n = test.x, test.x.shape[0]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        noise = inference.draw_noise(model, 20, n, g, "cpu")
        elbo = inference.elbo(model, x, None, noise).bound
        iw5 = inference.iw_bound(model, x, None, inference.draw_noise(model, 5, n, g, "cpu")).bound
        is500 = inference.log_likelihood_is(model, x, None, 500, g, chunk=100)
        again = inference.log_likelihood_is(model, x, None, 500, g, chunk=100)  # other draws, for its noise
        draws = inference.log_weight(model.densities(x, None, model.posterior(x), noise))  # [20, n] one-draw ELBOs
    torch.testing.assert_close(elbo, draws.mean(0))  # no closed form: the ELBO is the mean log-weight
    for name, difference in {"IW(5) - ELBO": iw5 - elbo, "IS(500) - IW(5)": is500 - iw5}.items():
        mean, error = _mean_and_error(difference)
        assert mean >= -3 * error, (family, name, mean, error)
    mean, error = _mean_and_error(is500 - elbo)
    assert mean > 3 * error, (family, mean, error)
    # the command's figures are these estimators' on the same 300 images with other draws: they agree
    # within 4 standard errors of the difference of two such means (one draw per image for its ELBO)
    elbo_error = math.sqrt(draws.var(0).mean().item() / n * (1 + 1 / 20))
    assert abs(result["elbo"] - elbo.mean().item()) < 4 * elbo_error, (result["elbo"], elbo.mean(), elbo_error)
    is_error = _mean_and_error(is500 - again)[1]  # the standard error of a difference of two IS(500) means
    assert abs(result["log_likelihood"] - is500.mean().item()) < 4 * is_error, (result, is500.mean(), is_error)
    print(f"{family}: ELBO {elbo.mean():.2f}, IW(5) {iw5.mean():.2f}, IS(500) {is500.mean():.2f} (IS - ELBO "
          f"{mean:.2f} ± {error:.2f}); vaelab evaluate: ELBO {result['elbo']:.2f} (± {elbo_error:.2f}), log p(x) "
          f"{result['log_likelihood']:.2f} (± {is_error:.3f}), K = 500; nats per image")


@pytest.mark.slow
def test_ais_reaches_it_through_the_interface_and_bdmc_asks_for_simulate(trained, capsys):
    """AIS needs nothing but `posterior` and `densities`: a family from outside gets it; BDMC also
    needs `simulate`, and without it the command says so in one line, exit 2, before any work."""
    family, run = trained
    assert main(["evaluate", str(run), "--iw-samples", "8", "--ais", "20", "--chains", "2", "--leapfrog", "2",
                 "--ais-images", "20", "--json", "--no-progress"]) == 0
    ais = json.loads(capsys.readouterr().out.splitlines()[-1])["ais"]
    assert ais["images"] == 20 and math.isfinite(ais["log_likelihood"]) and 0 < ais["acceptance"] <= 1
    before = RunDir(run).eval.read_bytes()
    assert main(["evaluate", str(run), "--bdmc", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "has no simulate method" in err and err.count("\n") == 1 and "Traceback" not in err
    assert RunDir(run).eval.read_bytes() == before


def _ancestral_codes(model: TwoLayerVAE, count: int, seed: int) -> torch.Tensor:
    """z2 ~ N(0, I), then z1 ~ p(z1 | z2), drawn here from the family's p(z1 | z2) with one generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z2 = torch.randn((count, model.d2), generator=g)
        loc, scale = model.p_z1(z2)
        return loc + scale * torch.randn((count, model.d1), generator=g)


@pytest.mark.slow
def test_it_samples_and_gets_its_report(trained, tmp_path):
    family, run = trained
    assert main(["sample", str(run), "-o", str(tmp_path / "samples.png"), "-n", "16"]) == 0
    assert (tmp_path / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = vaelab.load_run(run, device="cpu")
    model = loaded.model
    images, labels = loaded.sample(n=16, seed=0)
    assert labels is None and images.shape == (16, 1, 28, 28)
    codes = model.sample_codes(16, torch.Generator().manual_seed(0))
    if family == "two-layer":
        torch.testing.assert_close(codes, _ancestral_codes(model, 16, 0), rtol=0, atol=0)
    with torch.no_grad():
        np.testing.assert_array_equal(images, decoder_mean(model.decoder(codes)).numpy())

    if not RunDir(run).eval.is_file():  # not evaluated yet (this test run alone): the report needs its figures
        assert main(["evaluate", str(run), "--iw-samples", "20", "--json", "--no-progress"]) == 0
    evaluated = json.loads(RunDir(run).eval.read_text())
    assert main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert f"{evaluated['log_likelihood']:.2f}" in page
    words = model.part_words()
    for name, description in words.items():
        assert description in page  # the epoch table's caption and the test table name every part
    kls = [name for name in words if name != "recon"]
    assert kls == (["kl"] if family == "planar-flow" else ["kl_z1", "kl_z2"])
    for name in kls:  # columns of the epoch table and a panel of the curves per latent's KL
        assert f"<th>validation {name}</th>" in page and f"<th>training {name}</th>" in page
    assert ("planar-flow steps" if family == "planar-flow" else "two stochastic layers") in page  # its equations
    from vaelab import pictures

    figure = pictures.curves_figure(loaded.metrics, loaded.config.bound_key, loaded.config.bound_name, words)
    titles = [axes.get_title().split("\n")[0] for axes in figure.axes]
    assert titles == ["Lower bound per epoch (higher is better)", "recon", *kls]  # validation and training
    match = re.search(r'<img src="data:image/png;base64,([^"]+)" width="(\d+)" height="(\d+)" alt="The bound per '
                      r'epoch', page)
    assert match, "the page has no curves figure"
    from PIL import Image

    shown = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    assert shown.size == (int(match.group(2)), int(match.group(3)))
    # the panels side by side: 1 + 2 of them come out about 3.2 times as wide as high, 1 + 3 about 4.1 times
    assert (shown.size[0] / shown.size[1] > 3.65) == (family == "two-layer"), shown.size


@pytest.mark.slow
def test_it_serves_in_the_explorer(trained):
    pytest.importorskip("starlette", reason="the explore extra is not installed (make install installs it)")
    from starlette.testclient import TestClient

    from vaelab.explore import session
    from vaelab.explore.server import build_app

    family, run = trained
    explored = session.explore_runs([run], device="cpu")
    client = TestClient(build_app(explored), raise_server_exceptions=False)
    here, model = explored[0], explored[0].run.model

    def shown(z):  # what the page must show for codes z [n, d]: round(255 x the decoder's mean)
        with torch.no_grad():
            means = decoder_mean(model.decoder(torch.as_tensor(np.asarray(z), dtype=torch.float32)))
        return np.round(means[:, 0].clamp(0, 1).numpy() * 255)

    described = client.get("/api/runs").json()["runs"]
    assert len(described) == 1 and described[0]["model"] == family and described[0]["classes"] == []
    assert described[0]["latent_dim"] == model.code_dim == 8 and described[0]["directions"] == 8
    assert described[0]["test_images"] == SLICE // 10
    with torch.no_grad():  # the sliders' centre is the mean of the family's codes of the test images
        codes = model.code(here.test_x[: session.DIRECTION_IMAGES]).double().numpy()
    np.testing.assert_allclose(here.mean, codes.mean(0), atol=1e-6)
    # a code, then the sliders
    z = np.linspace(-1, 1, 8)
    answer = client.post("/api/decode", json={"run": 0, "z": z.tolist()}).json()
    np.testing.assert_array_equal(np.asarray(answer["images"][0]), shown(z[None])[0])
    assert client.post("/api/decode", json={"run": 0, "z": z.tolist(), "label": 1}).status_code == 400
    sliders = [0.0] * 8
    sliders[1] = -1.5
    answer = client.post("/api/decode", json={"run": 0, "sliders": sliders}).json()
    expected = here.mean - 1.5 * here.scales[1] * here.directions[1]
    np.testing.assert_allclose(np.asarray(answer["z"][0]), expected, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(answer["images"][0]), shown(np.asarray(answer["z"]))[0])
    # a random code: the family's draw from its prior (for two layers, ancestral), with the seed
    answer = client.post("/api/random", json={"run": 0, "seed": 4}).json()
    drawn = model.sample_codes(1, torch.Generator().manual_seed(4))
    if family == "two-layer":
        torch.testing.assert_close(drawn, _ancestral_codes(model, 1, 4), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(answer["z"][0]), drawn[0].double().numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(answer["images"][0]), shown(drawn)[0])
    # the line between two test images' codes, and a drawn image's code and reconstruction
    strip = client.post("/api/interpolate", json={"run": 0, "first": 0, "last": 7, "steps": 5}).json()
    with torch.no_grad():
        ends = model.code(here.test_x[[0, 7]]).double().numpy()
    np.testing.assert_allclose(np.asarray(strip["z"])[[0, 4]], ends, atol=1e-6)
    image = here.test_x[3, 0].numpy()
    analysis = client.post("/api/analyse", json={"run": 0, "image": image.tolist()}).json()
    with torch.no_grad():
        code = model.code(here.test_x[3:4])[0].double().numpy()
    assert analysis["posterior"] == [] and analysis["label"] is None
    np.testing.assert_allclose(analysis["z"], code, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(analysis["reconstruction"]), shown(np.asarray(analysis["z"])[None])[0])
