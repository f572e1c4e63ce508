"""The models wing: its parts against plain torch, and families told apart by what they can do."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vaelab.models import (CVAE, VAE, ClassConditional, Classifies, ConditionalLinear, Model, build_model,
                           class_conditional, decoder_mean)

IMAGE = (1, 28, 28)


def test_conditional_linear_equals_a_linear_layer_over_inputs_and_onehot():
    """W_in x + onehot(y) W_y + b is Linear([x, onehot(y)]), in values and in every gradient."""
    torch.manual_seed(0)
    layer = ConditionalLinear(7, 5, num_classes=3).double()
    plain = nn.Linear(7 + 3, 5).double()
    with torch.no_grad():
        plain.weight.copy_(torch.cat([layer.linear.weight, layer.class_weight.t()], dim=1))
        plain.bias.copy_(layer.linear.bias)
    x = torch.randn(4, 6, 7, dtype=torch.float64, requires_grad=True)  # [samples, batch, features]
    y = torch.tensor([0, 2, 1, 1, 0, 2])  # [batch]: broadcasts over the samples
    x_plain = x.detach().clone().requires_grad_()
    onehot = F.one_hot(y, 3).double().expand(4, 6, 3)
    out, expected = layer(x, y), plain(torch.cat([x_plain, onehot], dim=-1))
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    (out * grad).sum().backward()
    (expected * grad).sum().backward()
    torch.testing.assert_close(x.grad, x_plain.grad)
    torch.testing.assert_close(layer.linear.weight.grad, plain.weight.grad[:, :7])
    torch.testing.assert_close(layer.class_weight.grad, plain.weight.grad[:, 7:].t())
    torch.testing.assert_close(layer.linear.bias.grad, plain.bias.grad)


def test_conditional_linear_initialises_like_the_linear_layer_it_stands_for():
    """Its weights start uniform on +-1/sqrt(in + classes), as nn.Linear over the joined input would."""
    torch.manual_seed(0)
    layer = ConditionalLinear(784, 500, num_classes=10)
    bound = 1 / (784 + 10) ** 0.5
    for weights in (layer.linear.weight, layer.class_weight, layer.linear.bias):
        assert weights.abs().max() <= bound and weights.abs().max() > 0.95 * bound
    with pytest.raises(ValueError, match="pass the labels y"):
        layer(torch.zeros(2, 784), None)
    assert ConditionalLinear(3, 2, num_classes=0).class_weight is None


def test_families_are_told_apart_by_what_they_can_do():
    vae = build_model("vae", IMAGE, 10, latent_dim=3, hidden=(16,))
    cvae = build_model("cvae", IMAGE, 10, latent_dim=3, hidden=(16,))
    assert isinstance(vae, VAE) and isinstance(cvae, CVAE)
    assert isinstance(vae, Model) and isinstance(cvae, Model)
    assert class_conditional(cvae) and isinstance(cvae, ClassConditional) and cvae.num_classes == 10
    assert not class_conditional(vae) and not hasattr(vae, "num_classes") and not hasattr(vae, "class_log_prior")
    assert not isinstance(cvae, Classifies)  # neither family has a classifier q(y | x)
    torch.testing.assert_close(cvae.class_log_prior().exp(), torch.full((10,), 0.1))
    with pytest.raises(ValueError, match="model gan is not registered"):
        build_model("gan", IMAGE, 10, latent_dim=3)


@pytest.mark.parametrize("family", ["vae", "cvae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous-bernoulli"])
def test_images_keep_their_shape_through_the_networks(family, likelihood):
    """x [*batch, C, H, W] -> q over z [*batch, d] -> p over x with event [C, H, W], log_prob in nats per image."""
    shape = (3, 5, 4)  # channels, height, width: nothing assumes 1 x 28 x 28
    model = build_model(family, shape, 4, latent_dim=2, hidden=(8, 6), likelihood=likelihood)
    x, y = torch.rand(6, *shape), torch.tensor([0, 1, 2, 3, 0, 1])
    q = model.encoder(x, y)
    assert q.batch_shape == (6,) and q.event_shape == (2,)
    z = q.rsample((5,))  # [samples, batch, d]
    p = model.decoder(z, y)
    assert p.batch_shape == (5, 6) and p.event_shape == shape
    assert p.log_prob(x.expand(5, *x.shape)).shape == (5, 6)
    mean = decoder_mean(p)
    assert mean.shape == (5, 6, *shape) and 0 <= mean.min() and mean.max() <= 1
    equations = "\n".join(model.equations())
    assert "d = 2" in equations and "MLP 8-6" in equations and "MLP 6-8" in equations
    assert ("π_j = 1/4" in equations) == (family == "cvae")


def test_the_vae_ignores_labels_and_the_cvae_uses_them():
    torch.manual_seed(0)
    vae = build_model("vae", IMAGE, 10, latent_dim=3, hidden=(16,))
    cvae = build_model("cvae", IMAGE, 10, latent_dim=3, hidden=(16,))
    x = torch.rand(2, *IMAGE)
    torch.testing.assert_close(vae.encoder(x, torch.tensor([1, 2])).mean, vae.encoder(x).mean)
    assert not torch.allclose(cvae.encoder(x, torch.tensor([1, 2])).mean, cvae.encoder(x, torch.tensor([3, 4])).mean)
    with pytest.raises(ValueError, match="pass the labels y"):
        cvae.decoder(torch.zeros(2, 3))


def test_the_report_shows_the_settings_that_shape_the_model_and_no_others():
    """A plain CVAE's configuration table has no flow, VampPrior or hierarchy settings; each appears
    with what switches it on (`Family.settings_in_effect`)."""
    from vaelab.config import make_config
    from vaelab.models import ADGM, FAMILIES

    def shown(**values):
        config = make_config(values)
        return set(FAMILIES[config.model].settings_in_effect(config.model_settings))

    assert shown(model="cvae") == {"latent_dim", "network", "likelihood", "posterior", "prior", "hidden", "activation"}
    assert shown(model="vae", posterior="iaf", prior="vamp") >= {"flow_steps", "flow_hidden", "pseudo_inputs"}
    assert "prior_flow_steps" not in shown(model="vae", posterior="iaf", prior="vamp")
    assert shown(model="vae", prior="flow") >= {"prior_flow_steps", "flow_hidden"} and \
        "flow_steps" not in shown(model="vae", prior="flow")
    ladder = shown(model="vae", latent_dims=(8, 4), inference="bottom-up")
    assert {"latent_dims", "inference"} <= ladder and "latent_dim" not in ladder
    assert shown(model="vae", network="conv") >= {"channels", "depth"} and "hidden" not in shown(model="vae", network="conv")
    assert shown(model="adgm") == {"latent_dim", "aux_dim", "hidden", "activation", "alpha", "posterior", "prior"}
    assert ADGM.settings_in_effect(make_config({"model": "adgm", "posterior": "iaf"}).model_settings).keys() >= \
        {"flow_steps", "flow_hidden"}
