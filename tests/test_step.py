"""The reference step (`train_step`, plain PyTorch) and the step the trainer runs (`TrainStep`): the
same step. Eagerly in one process they agree bit for bit (same operations in the same order, same
thread count); compiled, to float32 rounding (tests/test_fast.py, tests/rounding.py)."""

import copy

import pytest
import torch

from vaelab.config import make_config
from vaelab.inference import BOUNDS
from vaelab.training import DeviceSplit, RandomStreams, new_training
from vaelab.training.optimizer import make_adam
from vaelab.training.step import train_step

from .conftest import SMALL

CASES = {
    "cvae": dict(SMALL),
    "vae, IWAE bound, 3 samples, clipped": dict(SMALL, model="vae", objective="iwae", samples=3, clip_grad_norm=1.0),
    "VampPrior": dict(SMALL, prior="vamp", pseudo_inputs=10),
    "m2, labelled batch apart": dict(SMALL, model="m2", labels=100, latent_dim=4),
    "adgm, labelled batch apart": dict(SMALL, model="adgm", labels=100, latent_dim=4, aux_dim=4),
}


@pytest.mark.parametrize("case", CASES)
def test_the_trainer_step_is_the_reference_step_bit_for_bit(case, mnist_raw):
    from vaelab.data import make_splits

    config = make_config(CASES[case])
    training = new_training(config, torch.device("cpu"), dynamic=True, compile=False, train_images=3000)
    reference = copy.deepcopy(training.model)
    reference_optimizer = make_adam(reference.parameters(), config.lr)
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=300).train, torch.device("cpu"))
    x = data.x[:32]
    y = data.y[28:32] if config.labels is not None else data.y[:32]  # M2: the last 4 images labelled
    apart = config.labelled_batch_size() > 0
    streams, reference_streams = RandomStreams.seeded(5, "cpu"), RandomStreams.seeded(5, "cpu")
    for step_number in range(3):  # Adam's second and third steps read the moments the first wrote
        fast = training.step(x, y, streams, kl_weight=0.5, full_size=False)
        training.optimizer.step()
        plain = train_step(reference, reference_optimizer, x, y, reference_streams, BOUNDS[config.objective],
                           config.samples, 0.5, True, config.clip_grad_norm, apart)
        assert fast.keys() == plain.keys() and {"loss", "bound", "recon"} <= fast.keys()
        for name in fast:
            assert torch.equal(fast[name], plain[name]), (step_number, name)
        for (name, mine), theirs in zip(training.model.state_dict().items(), reference.state_dict().values()):
            assert torch.equal(mine, theirs), (step_number, name)


def test_a_step_returns_the_bound_with_its_parts(mnist_raw):
    """bound = recon - kl for the CVAE's ELBO, summed over the batch, nats."""
    from vaelab.data import make_splits

    config = make_config(SMALL)
    training = new_training(config, torch.device("cpu"), dynamic=True, compile=False)
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=100).train, torch.device("cpu"))
    sums = training.step(data.x[:50], data.y[:50], RandomStreams.seeded(1, "cpu"), full_size=False)
    assert set(sums) == {"loss", "bound", "recon", "kl"}
    torch.testing.assert_close(sums["bound"], sums["recon"] - sums["kl"])
    torch.testing.assert_close(sums["loss"], -sums["bound"] / 50)  # kl_weight 1: the loss is -(mean bound)
