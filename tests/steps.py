"""What several test files share beyond fixtures: the real-MNIST slice's size, and the check that a
compiled training step equals the eager one."""

MNIST_SLICE = 3000  # images in the `mnist_slice` fixture: 2,400 training images, then 300 validation and 300 test


def assert_compiled_step_equals_eager(settings: dict, mnist_raw) -> None:
    """A training step of the model `settings` describe, on 16 real images, compiled and eager: the
    same loss, bound and every gradient to float32's rounding, and no silent fallback to eager."""
    import torch

    from vaelab.config import make_config

    from .rounding import assert_step_apart_by_rounding
    from vaelab.data import make_splits
    from vaelab.training import DeviceSplit, RandomStreams, TrainStep, new_training

    config = make_config(settings)
    model = new_training(config, torch.device("cpu"), dynamic=True, compile=False).model
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=16).train, torch.device("cpu"))
    results = []
    for compile in (False, True):
        step = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic=True, compile=compile)
        model.zero_grad(set_to_none=True)
        sums = step(data.x, data.y, RandomStreams.seeded(3, "cpu"), kl_weight=0.5)
        results.append((sums.pop("loss"), sums, {name: p.grad.clone() for name, p in model.named_parameters()}))
        assert step.compiled.active == compile  # no silent fallback
    eager, compiled = results
    assert_step_apart_by_rounding(compiled, eager)  # tests/rounding.py: float32's bound, derived
