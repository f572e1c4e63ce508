"""The fast paths compute what the plain ones do: same step, same gradients, same training."""

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence


from vaelab.runtime import compilation
from vaelab.training.optimizer import make_adam
from vaelab import inference
from vaelab.config import make_config
from vaelab.data import make_splits
from vaelab.models import ReLU, rsample
from vaelab.models.priors import gaussian_kl
from vaelab.training import DeviceSplit, RandomStreams, TrainStep, new_training, train_epoch, validate
from vaelab.training.step import binarization_bits, binarize, step_noise, step_scale

from .conftest import SMALL
from .rounding import RUNS_APART, assert_step_apart_by_rounding


def test_relu_matches_torch_relu_in_value_and_gradient():
    x = torch.randn(64, 50, dtype=torch.float64)
    x[::3, ::4] = 0.0  # exact zeros: relu'(0) = 0 in both
    grad = torch.randn_like(x)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = ReLU()(a), nn.ReLU()(b)
    (out_a * grad).sum().backward()
    (out_b * grad).sum().backward()
    assert torch.equal(out_a, out_b)
    assert torch.equal(a.grad, b.grad)


def test_closed_form_kl_matches_torch_registry():
    g = torch.Generator().manual_seed(0)
    q = Independent(Normal(torch.randn(7, 5, generator=g), torch.rand(7, 5, generator=g) + 0.1), 1)
    p = Independent(Normal(torch.randn(5, generator=g), torch.rand(5, generator=g) + 0.5), 1)
    closed = gaussian_kl(q.base_dist.loc, q.base_dist.scale, p.base_dist.loc, p.base_dist.scale)
    torch.testing.assert_close(closed, kl_divergence(q, p), rtol=1e-6, atol=1e-6)


def test_drawn_noise_is_what_rsample_draws():
    model = new_training(make_config(dict(SMALL)), torch.device("cpu"), dynamic=True, compile=False).model
    x, y = torch.rand(6, 1, 28, 28).round(), torch.arange(6)
    q = model.encoder(x, y)
    z = rsample(q, (3,), torch.Generator().manual_seed(5))
    noise = inference.draw_noise(model, 3, 6, torch.Generator().manual_seed(5), "cpu")
    assert torch.equal(z, q.base_dist.loc + q.base_dist.scale * noise)
    densities = model.densities(x, y, model.posterior(x, y), noise)
    torch.testing.assert_close(densities.kl["kl"], q.log_prob(z) - model.prior().log_prob(z), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_the_eager_step_by_autograd_gives_what_torch_func_gives(objective):
    config = make_config(dict(SMALL, objective=objective, samples=3))
    training = new_training(config, torch.device("cpu"), dynamic=True, compile=False)
    step = training.step
    step.loss.double()  # in float64, so that the two orders of summation agree far below any real difference
    x, y = torch.rand(8, 1, 28, 28, dtype=torch.float64), torch.arange(8) % 10
    bits = binarization_bits(x, torch.Generator().manual_seed(1))
    noise = step_noise(step.model, 8, 8, 3, torch.Generator().manual_seed(2), "cpu", torch.float64)
    weight = torch.tensor(0.7, dtype=torch.float64)  # during KL warm-up
    scale = step_scale(8, 8, False, torch.float64, "cpu")
    by_func, (loss_func, sum_func) = step.loss_and_gradients(x, y, bits, noise, weight, scale)
    by_autograd, (loss_autograd, sum_autograd) = step.eager_loss_and_gradients(x, y, bits, noise, weight, scale)
    assert by_func.keys() == by_autograd.keys() and len(by_func) == len(step.parameters)
    torch.testing.assert_close((loss_autograd, sum_autograd), (loss_func, sum_func), rtol=1e-12, atol=1e-10)
    for name in by_func:
        torch.testing.assert_close(by_autograd[name], by_func[name], rtol=1e-9, atol=1e-12)
    assert not loss_autograd.requires_grad and all(not g.requires_grad for g in by_autograd.values())


def test_binarize_draws_bernoulli_pixels_with_the_gray_level_as_probability():
    """Two pixels per 64-bit draw: each pixel is Bernoulli(x), and the two are independent."""
    levels = torch.tensor([0.0, 1 / 255, 0.25, 0.5, 254 / 255, 1.0])
    x = levels.repeat(33_333, 1)  # [33333, 6]: every level in every row
    generator = torch.Generator().manual_seed(0)
    bits = binarization_bits(x, generator)
    assert bits.shape == ((x.numel() + 1) // 2,) and bits.dtype == torch.int64 and (bits >= 0).all()
    pixels = binarize(x, bits)
    assert pixels.shape == x.shape and set(pixels.unique().tolist()) <= {0.0, 1.0}
    rate = pixels.mean(0)
    n = x.shape[0]
    for p, observed in zip(levels.tolist(), rate.tolist()):
        assert abs(observed - p) <= 5 * (p * (1 - p) / n) ** 0.5 + 1e-12, (p, observed)  # exact at 0 and 1
    # words 2i and 2i + 1 come from one 64-bit number: at level 1/2 they must not agree more than chance
    half = binarize(torch.full((100_000,), 0.5), binarization_bits(torch.empty(100_000), generator))
    agree = (half[0::2] == half[1::2]).float().mean().item()
    assert abs(agree - 0.5) < 5 * (0.25 / 50_000) ** 0.5
    # an odd number of pixels, and the same bits give the same pixels
    odd = torch.full((3, 5), 0.5)
    bits = binarization_bits(odd, generator)
    assert bits.shape == (8,) and torch.equal(binarize(odd, bits), binarize(odd, bits))


def _step_and_gradients(step, model, x, y, seed):
    model.zero_grad(set_to_none=True)
    sums = step(x, y, RandomStreams.seeded(seed, "cpu"))  # leaves the gradients in .grad
    return sums.pop("loss"), sums, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_compiled_step_equals_the_eager_step(mnist_raw, objective):
    """Same weights, same batch, same generator: the compiled step gives the eager loss and gradients.

    Both compute the same torch.func function; compiled, it is one generated program.
    """
    settings = dict(SMALL, batch_size=32, objective=objective, samples=1 if objective == "elbo" else 3)
    config = make_config(settings)
    model = new_training(config, torch.device("cpu"), dynamic=True, compile=False).model
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=32).train, torch.device("cpu"))
    eager = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic=True, compile=False)
    compiled = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic=True, compile=True)
    loss_e, sum_e, grads_e = _step_and_gradients(eager, model, data.x, data.y, seed=3)
    loss_c, sum_c, grads_c = _step_and_gradients(compiled, model, data.x, data.y, seed=3)
    assert compiled.compiled.active  # it really compiled (no silent fallback)
    assert_step_apart_by_rounding((loss_c, sum_c, grads_c), (loss_e, sum_e, grads_e))


@pytest.mark.slow
def test_a_vampprior_step_encodes_its_pseudo_inputs_once_and_compiles_to_the_eager_numbers(mnist_raw):
    """M2 with a VampPrior bounds a step's unlabelled and labelled images apart (two draws of the
    prior): the pseudo-inputs go through the encoder once per step, and the compiled step gives the
    eager loss and gradients."""
    settings = dict(SMALL, model="m2", prior="vamp", pseudo_inputs=20, batch_size=32)
    config = make_config(settings)
    model = new_training(config, torch.device("cpu"), dynamic=True, compile=False).model
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=32).train, torch.device("cpu"))
    y = data.y[20:]  # the last 12 images keep their label
    made = []
    hook = model.pseudo_inputs.register_forward_hook(lambda *_: made.append(1))
    eager = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic=True, compile=False)
    loss_e, sum_e, grads_e = _step_and_gradients(eager, model, data.x, y, seed=3)
    assert len(made) == 1
    hook.remove()
    compiled = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic=True, compile=True)
    loss_c, sum_c, grads_c = _step_and_gradients(compiled, model, data.x, y, seed=3)
    assert compiled.compiled.active
    assert_step_apart_by_rounding((loss_c, sum_c, grads_c), (loss_e, sum_e, grads_e))
    assert grads_e["pseudo_inputs.values"].abs().sum() > 0  # the prior's gradient reaches the pseudo-inputs


@pytest.mark.slow
def test_compiled_training_follows_the_eager_training(mnist_raw):
    """Two epochs on 2,000 real images, compiled against eager: the same bounds within vaelab's promise
    for runs that compute the same steps in another order (tests/rounding.py: 0.01 nats)."""
    config = make_config(dict(SMALL, batch_size=50))
    splits = make_splits(mnist_raw, limit_train=2000)
    train_data = DeviceSplit.from_split(splits.train, torch.device("cpu"))
    valid_data = DeviceSplit.from_split(splits.valid, torch.device("cpu"))
    results = {}
    for compile in (False, True):
        t = new_training(config, torch.device("cpu"), True, compile)
        bounds = [train_epoch(t.step, t.optimizer, train_data, config.batch_size, t.streams)[0]["bound"] for _ in (1, 2)]
        results[compile] = bounds + [validate(t.model, valid_data)["elbo"]]
    assert results[True] == pytest.approx(results[False], abs=RUNS_APART)  # a promise: Adam parts them
    assert results[False][1] > results[False][0]  # it learns


def _no_compiler(graph, inputs):
    """A compiler backend that fails as inductor does on a machine without a C++ compiler."""
    raise RuntimeError("no C++ compiler found\nmore detail")


_real_compile = torch.compile


def _broken_compile(fn, **options):
    """torch.compile on a machine without a C++ compiler: dynamo traces, the backend fails at the first call."""
    return _real_compile(fn, **{**options, "backend": _no_compiler})


def test_failed_compilation_falls_back_to_the_same_numbers(capsys):
    wrapped = compilation.CompiledOrEager(lambda a: a * 2, "a test", backend=_no_compiler)
    assert wrapped(torch.tensor(3.0)).item() == 6.0
    assert not wrapped.active
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torch.compile is unavailable for a test (RuntimeError: no C++ compiler found)" in err
    assert wrapped(torch.tensor(4.0)).item() == 8.0 and capsys.readouterr().err == ""  # said once


def test_only_a_failed_compilation_falls_back(capsys):
    """A bug in the function, and memory that runs out while compiling, are raised as they are."""
    def buggy(a):
        return a @ torch.ones(5, 7)

    wrapped = compilation.CompiledOrEager(buggy, "a buggy function")
    with pytest.raises(RuntimeError, match="must have same reduction dim"):
        wrapped(torch.ones(3, 4))
    assert wrapped.active and "unavailable" not in capsys.readouterr().err

    def out_of_memory(graph, inputs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 GB")

    wrapped = compilation.CompiledOrEager(lambda a: a * 2, "a test", backend=out_of_memory)
    with pytest.raises(RuntimeError, match="can't allocate memory") as raised:
        wrapped(torch.tensor(3.0))
    assert type(raised.value) is RuntimeError  # the allocator's own error, not the compiler's wrapper
    assert "unavailable" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_training_step_whose_compilation_fails_gives_the_eager_gradients(monkeypatch, capsys, mnist_raw):
    config = make_config(dict(SMALL, batch_size=16))
    model = new_training(config, torch.device("cpu"), dynamic=True, compile=False).model
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=16).train, torch.device("cpu"))
    arguments = (model, config.objective, config.samples, config.batch_size)
    expected = _step_and_gradients(TrainStep(*arguments, dynamic=True, compile=False), model, data.x, data.y, 4)
    monkeypatch.setattr(torch, "compile", _broken_compile)
    step = TrainStep(*arguments, dynamic=True, compile=True)
    for _ in range(2):  # the failing call (then eagerly), then eagerly from the start
        loss, bound_sum, grads = _step_and_gradients(step, model, data.x, data.y, 4)
        torch.testing.assert_close(loss, expected[0])
        torch.testing.assert_close(bound_sum, expected[1])
        for name in grads:
            torch.testing.assert_close(grads[name], expected[2][name], rtol=1e-5, atol=1e-6)
    assert not step.compiled.active
    assert "torch.compile is unavailable for the training step" in capsys.readouterr().err


def test_use_compile_and_adam():
    assert compilation.use_compile("auto", 5000, 4000) and not compilation.use_compile("auto", 100, 4000)
    assert compilation.use_compile("on", 1, 4000) and not compilation.use_compile("off", 10**9, 4000)
    params = [nn.Parameter(torch.randn(3, 3))]
    assert make_adam(params, 1e-3).defaults["fused"]
    # CUDA graphs for the step on a GPU only; a CPU step compiles in the default mode
    assert compilation.step_compile_mode(torch.device("cuda")) == "reduce-overhead"
    assert compilation.step_compile_mode(torch.device("cpu")) is None
    step = TrainStep(nn.Linear(2, 2), "elbo", 1, 4, dynamic=False, compile=True)
    assert step.compiled.active and step.compiled.mode is None


def _square_loss_steps(nets_and_optimizers, x):
    """One optimizer step of each net on the loss mean(net(x)^2), same x for all."""
    for net, opt in nets_and_optimizers:
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()


def test_fused_adam_updates_like_the_default_adam():
    torch.manual_seed(0)
    a = nn.Linear(20, 10)
    b = nn.Linear(20, 10)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    for _ in range(20):
        _square_loss_steps(((a, opt_a), (b, opt_b)), torch.randn(8, 20))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_run_resumed_equals_the_uninterrupted_one(tmp_path, mnist_raw):
    from vaelab.runs.checkpoints import load_checkpoint
    from vaelab.runs import RunDir
    from vaelab.training import train

    settings = dict(SMALL, limit_train=1000, compile="on")
    quiet = {"log": lambda _: None, "progress": False}
    full = train(make_config(dict(settings, epochs=2)), tmp_path / "full", **quiet)
    train(make_config(dict(settings, epochs=1)), tmp_path / "run", **quiet)
    resumed = train(make_config(dict(settings, epochs=2)), tmp_path / "run", resume=True, explicit={"epochs"}, **quiet)
    assert [r["valid_elbo"] for r in resumed] == [r["valid_elbo"] for r in full]
    a = load_checkpoint(RunDir(tmp_path / "full").checkpoint).tensors
    b = load_checkpoint(RunDir(tmp_path / "run").checkpoint).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_another_adam_implementation_resumes_with_the_fused_one(tmp_path):
    """Runs saved with foreach Adam (vaelab before fused) resume fused, with the same moments and step."""
    from vaelab.runs.checkpoints import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    old = nn.Linear(6, 3)
    old_optimizer = torch.optim.Adam(old.parameters(), lr=1e-2, foreach=True)
    for _ in range(3):
        _square_loss_steps(((old, old_optimizer),), torch.randn(4, 6))
    save_checkpoint(tmp_path / "c.safetensors", old, {"epoch": 1}, old_optimizer)
    new = nn.Linear(6, 3)
    optimizer = make_adam(new.parameters(), 1e-3)
    load_checkpoint(tmp_path / "c.safetensors").restore(new, optimizer)
    group = optimizer.param_groups[0]
    assert group["fused"] and not group["foreach"] and group["lr"] == 1e-2  # fast, with the stored settings
    for p, q in zip(old.parameters(), new.parameters()):
        torch.testing.assert_close(optimizer.state[q]["exp_avg_sq"], old_optimizer.state[p]["exp_avg_sq"])
        assert float(optimizer.state[q]["step"]) == 3.0
    _square_loss_steps(((old, old_optimizer), (new, optimizer)), torch.randn(4, 6))
    for p, q in zip(old.parameters(), new.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_clipping_scales_the_steps_gradients_down_to_the_norm_and_leaves_small_ones_alone():
    config = make_config(dict(SMALL))
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10

    def gradients(clip):
        training = new_training(config, torch.device("cpu"), dynamic=True, compile=False)
        training.step.clip_grad_norm = clip
        training.step(x, y, RandomStreams.seeded(3, "cpu"))
        return torch.cat([p.grad.reshape(-1) for _, p in training.step.parameters])

    plain = gradients(None)
    norm = plain.norm()
    assert norm > 1.0  # a fresh model's gradients: far above the clip below
    clipped = gradients(0.5)
    torch.testing.assert_close(clipped.norm(), torch.tensor(0.5), rtol=1e-5, atol=0)
    torch.testing.assert_close(clipped, plain * (0.5 / norm), rtol=1e-4, atol=1e-9)  # the same direction
    assert torch.equal(gradients(float(norm) * 2), plain)  # below the clip: untouched

