"""A family written outside vaelab gets every estimator, figure and page for free.

`LinearVAE` shares no code with vaelab's families: linear maps in both directions, a Bernoulli
decoder, a diagonal Gaussian q. Registered with one line (plus the --model choice), it trains,
resumes, evaluates, samples and gets its report through the command line.
"""

import dataclasses
import json
import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from vaelab import config as config_module
from vaelab.cli import main
from vaelab.models import FAMILIES, Model, class_conditional


class LinearVAE(nn.Module):
    """z ~ N(0, I_d), x | z ~ Bernoulli(sigmoid(W z + b)), q(z | x) = N(A x + c, diag exp(s))."""

    def __init__(self, image_shape, latent_dim, **_ignored):
        super().__init__()
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        pixels = math.prod(image_shape)
        self.to_code = nn.Linear(pixels, latent_dim)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))
        self.to_pixels = nn.Linear(latent_dim, pixels)

    @classmethod
    def for_data(cls, image_shape, num_classes, **architecture):
        return cls(image_shape, **architecture)

    def prior(self):
        zeros = torch.zeros(self.latent_dim, device=self.log_scale.device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def encoder(self, x, y=None):
        loc = self.to_code(x.flatten(-3))
        return Independent(Normal(loc, self.log_scale.exp().expand_as(loc)), 1)

    def decoder(self, z, y=None):
        logits = self.to_pixels(z).unflatten(-1, self.image_shape)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)

    def equations(self):
        return [f"z ~ N(0, I_d),  d = {self.latent_dim}", "x | z ~ Bernoulli(σ(W z + b)),  a linear decoder"]


@pytest.fixture
def linear_family(monkeypatch):
    monkeypatch.setitem(FAMILIES, "linear", LinearVAE)
    settings = dict(config_module.SETTINGS)
    settings["model"] = dataclasses.replace(settings["model"], choices=tuple(FAMILIES))
    monkeypatch.setattr(config_module, "SETTINGS", settings)


@pytest.mark.slow
def test_a_new_family_trains_evaluates_and_gets_its_report(linear_family, tmp_path, mnist_raw, capsys):
    run = tmp_path / "linear"
    flags = ["--model", "linear", "--latent-dim", "4", "--limit-train", "2000", "--batch-size", "100",
             "--sample-epochs", "1", "--no-progress", "--out", str(run)]
    assert main(["train", *flags, "--epochs", "1"]) == 0
    assert main(["train", *flags, "--epochs", "2", "--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and rows[1]["valid_elbo"] > rows[0]["valid_elbo"]

    assert main(["evaluate", str(run), "--iw-samples", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["log_likelihood"] > result["elbo"] - 1 and "accuracy" not in result  # no class label, no classifier

    import vaelab

    loaded = vaelab.load_run(run, device="cpu")
    assert isinstance(loaded.model, LinearVAE) and isinstance(loaded.model, Model)
    assert not class_conditional(loaded.model)
    assert main(["sample", str(run), "-o", str(tmp_path / "s.png"), "-n", "16"]) == 0
    assert main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "a linear decoder" in page and f"{result['log_likelihood']:.2f}" in page
