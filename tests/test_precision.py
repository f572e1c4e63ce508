"""--precision: the networks' products in bfloat16 and nothing else, float32 everywhere the numbers are
read, and TensorFloat-32 switched on for CUDA only within training."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.runtime import precision
from vaelab.config import make_config
from vaelab.data import make_splits
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.layers import Network, reduced_precision
from vaelab.training import DeviceSplit, RandomStreams, TrainStep, new_training, validate

from .conftest import SMALL


class Products(TorchDispatchMode):
    """Records the dtype of every matrix product torch runs while it is on (after autocast's casts)."""

    PRODUCTS = ("mm", "addmm", "bmm", "convolution")

    def __enter__(self):
        self.dtypes = []
        super().__enter__()
        return self.dtypes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.PRODUCTS:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_bf16_runs_the_products_in_bfloat16_and_returns_float32():
    """Under reduced_precision every network's dense layers compute in bfloat16, the networks hand
    back float32, and on exit they are float32 networks again (what validation and evaluation see)."""
    torch.manual_seed(0)
    model = build_model("cvae", (1, 6, 6), 3, latent_dim=2, hidden=(8,), prior="vamp", pseudo_inputs=4)
    networks = [m for m in model.modules() if isinstance(m, Network)]
    assert len(networks) == 2  # the encoder and the decoder
    x, y = torch.rand(5, 1, 6, 6).round(), torch.tensor([0, 1, 2, 0, 1])
    with reduced_precision(model, torch.bfloat16), Products() as seen:
        q = model.posterior(x, y)
        logits = model.decoder_net(q[0], y)
    with reduced_precision(model, torch.bfloat16), Products() as prior_seen:
        prior = model.prior().log_prob(q[0])  # the mixture's own products stay float32
    assert set(seen) == {torch.bfloat16} and len(seen) >= 4
    assert torch.float32 in prior_seen
    assert all(t.dtype == torch.float32 for t in (*q, logits, prior))
    with Products() as seen:
        model.posterior(x, y)
    assert set(seen) == {torch.float32} and all(n.precision is None for n in networks)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("family", ["cvae", "adgm"])
def test_a_bf16_step_is_the_float32_step_to_bfloat16_rounding_and_compiles(family, mnist_raw):
    """One step on 32 real images: the bf16 loss within 0.5% of the float32 one, every gradient
    pointing the same way (cosine above 0.99), compiled the same as eager, and Adam's state float32."""
    settings = dict(SMALL, model=family, batch_size=32)
    if family == "adgm":
        settings.update(latent_dim=4, aux_dim=4, labels=100)
    config = make_config(settings)
    model = new_training(config, torch.device("cpu"), dynamic=True, compile=False).model
    data = DeviceSplit.from_split(make_splits(mnist_raw, limit_train=32).train, torch.device("cpu"))
    y = data.y if family == "cvae" else data.y[16:]
    results = {}
    for name, dtype, compile in (("float32", None, False), ("bf16", torch.bfloat16, False),
                                 ("bf16 compiled", torch.bfloat16, True)):
        step = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic=True, compile=compile,
                         precision=dtype)
        model.zero_grad(set_to_none=True)
        loss = step(data.x, y, RandomStreams.seeded(3, "cpu"))["loss"]
        assert step.compiled.active == compile
        results[name] = loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    full, half = results["float32"], results["bf16"]
    assert half[0].dtype == torch.float32
    assert abs(half[0] - full[0]) <= 5e-3 * abs(full[0])
    assert not torch.equal(half[1], full[1])  # the products really were rounded
    assert torch.nn.functional.cosine_similarity(half[1], full[1], dim=0) > 0.99
    torch.testing.assert_close(results["bf16 compiled"][0], half[0], rtol=2e-3, atol=1e-2)
    assert torch.nn.functional.cosine_similarity(results["bf16 compiled"][1], half[1], dim=0) > 0.99
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.step()
    assert all(v.dtype == torch.float32 for state in optimizer.state.values() for v in state.values()
               if v.dim())
    assert all(n.precision is None for n in model.modules() if isinstance(n, Network))  # nothing left set
    with Products() as seen:  # so validation multiplies in float32
        validate(model, data)
    assert seen and set(seen) == {torch.float32}


def test_tf32_is_for_cuda_and_only_within_training():
    """check_precision refuses tf32 off CUDA; matmul_precision sets CUDA's switches for the stretch and
    puts them back (the switches can be set without a GPU), and float32 turns cuDNN's TF32 off."""
    with pytest.raises(VaelabError, match="tf32 is for CUDA GPUs"):
        precision.check_precision("tf32", torch.device("cpu"))
    precision.check_precision("bf16", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown precision"):
        precision.network_dtype("fp8")
    assert precision.network_dtype("bf16") == torch.bfloat16 and precision.network_dtype("tf32") is None
    switches = torch.backends.cuda.matmul, torch.backends.cudnn
    before = tuple(s.allow_tf32 for s in switches)
    try:
        for s, value in zip(switches, (False, True)):
            s.allow_tf32 = value
        with precision.matmul_precision("tf32", torch.device("cuda")):
            assert all(s.allow_tf32 for s in switches)
            with precision.matmul_precision("float32", torch.device("cuda")):
                assert not any(s.allow_tf32 for s in switches)
            assert all(s.allow_tf32 for s in switches)
        assert tuple(s.allow_tf32 for s in switches) == (False, True)
        with precision.matmul_precision("tf32", torch.device("cpu")):
            assert tuple(s.allow_tf32 for s in switches) == (False, True)
    finally:
        for s, value in zip(switches, before):
            s.allow_tf32 = value


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_instructions_says_so_in_the_log(native, monkeypatch, tmp_path, mnist_raw):
    """Where the CPU has neither AVX-512 BF16 nor AMX, oneDNN emulates bf16: the run still trains, and
    its log says bf16 is slower there and to use float32; with the instructions (or float32) it says nothing."""
    from vaelab.training import train

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: native, raising=False)
    cpu = torch.device("cpu")
    assert precision.native_bf16(cpu) is native
    assert precision.precision_warning("float32", cpu) is None and precision.precision_warning("tf32", cpu) is None
    lines = []
    train(make_config(dict(SMALL, epochs=1, limit_train=200, precision="bf16", compile="off")), tmp_path / "run",
          log=lines.append, progress=False)
    notes = [line for line in lines if "no bfloat16 instructions" in line]
    if native:
        assert not notes
    else:
        assert notes == ["note: this cpu has no bfloat16 instructions, so --precision bf16 is emulated and slower "
                         "than float32; use float32 here"]
