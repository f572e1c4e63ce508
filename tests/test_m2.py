"""The semi-supervised M2: its bound with the label summed out, the labelled subset, the epoch's
batches, the bad --labels, and (slow) training, resuming and evaluating on a real MNIST slice."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from vaelab import inference
from vaelab.cli import main
from vaelab.data import labelled_subset
from vaelab.errors import DataError
from vaelab.models import Classifies, Noise, Terms, build_model
from vaelab.models.semi_supervised import sum_over_labels
from vaelab.training.epoch import batch_plan, plan_images

SHAPE = (1, 6, 5)


def small_m2(network="mlp", seed=0, **settings):
    torch.manual_seed(seed)
    arch = dict(latent_dim=3, hidden=(16,)) if network == "mlp" else dict(latent_dim=3, channels=4)
    return build_model("m2", SHAPE, 4, network=network, **arch, **settings).eval()


def binary_images(batch, seed=1):
    return torch.bernoulli(torch.full((batch, *SHAPE), 0.4), generator=torch.Generator().manual_seed(seed))


def unlabelled(model, x, noise, bound=inference.elbo, kl_weight=1.0):
    """M2's objective with no label seen; noise [samples, images, classes, d]."""
    return model.objective(x, None, Noise(noise, None), bound, kl_weight)


def every_class(classes, images):
    return torch.arange(classes)[:, None].expand(classes, images)


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_unlabelled_bound_is_the_explicit_sum_over_classes(network):
    model, x = small_m2(network), binary_images(5)
    noise = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(2))  # [samples, images, classes, d]
    terms = unlabelled(model, x, noise)
    q_y = model.classifier(x)
    explicit = torch.zeros(5, dtype=torch.float64)
    for c in range(4):  # one class at a time, each image on its own: nothing shared, nothing broadcast
        y = torch.full((5,), c)
        per_class = inference.elbo(model, x, y, noise[:, :, c]).bound
        explicit += (q_y.probs[:, c] * (per_class + math.log(1 / 4) - q_y.probs[:, c].log())).double()
    torch.testing.assert_close(terms.bound.double(), explicit, atol=1e-4, rtol=1e-5)
    parts = terms.parts
    assert set(parts) == {"recon", "kl", "label_kl"}
    torch.testing.assert_close(parts["recon"] - parts["kl"] - parts["label_kl"], terms.bound)
    assert (parts["label_kl"] >= 0).all()
    torch.testing.assert_close(terms.maximised, terms.bound)  # no warm-up, no classifier term without labels
    annealed = unlabelled(model, x, noise, kl_weight=torch.tensor(0.5))
    torch.testing.assert_close(annealed.bound, terms.bound)
    assert (annealed.maximised > terms.bound).all()  # a KL weighed by 1/2 costs less


def test_exact_enumeration_against_sampling_the_label():
    """sum_y q(y|x) [B(x, y) + log pi_y - log q(y|x)] is E_{y ~ q}[...]: a Monte-Carlo mean over y approaches it."""
    model, x = small_m2(), binary_images(3)
    noise = torch.randn(1, 3, 4, 3, generator=torch.Generator().manual_seed(3))
    exact = unlabelled(model, x, noise).bound
    per_class = inference.elbo(model, x, every_class(4, 3), noise.movedim(2, 1)).bound  # [4, 3], fixed z per class
    q_y = model.classifier(x)
    y = q_y.sample((200_000,))  # [draws, 3]
    values = per_class.T.gather(1, y.T).T + math.log(1 / 4) - q_y.log_prob(y)
    estimate, error = values.mean(0), values.std(0) / math.sqrt(y.shape[0])
    assert ((estimate - exact).abs() < 5 * error + 1e-4).all(), (estimate, exact, error)


def test_iw_bound_with_the_label_summed_out_lies_above_the_mean_log_weight():
    """Per class, log mean w >= mean log w for the same draws (Jensen); summing y out keeps the order."""
    model, x = small_m2(), binary_images(4)
    noise = torch.randn(8, 4, 4, 3, generator=torch.Generator().manual_seed(4))
    iw = unlabelled(model, x, noise, inference.iw_bound).bound
    labels = every_class(4, 4)
    log_w = inference.log_weight(model.densities(x, labels, model.posterior(x, labels), noise.movedim(2, 1)))
    mean_log_w = Terms(log_w.mean(0), log_w.mean(0), {})
    summed = sum_over_labels(model.classifier(x), model.class_log_prior(), mean_log_w).bound
    assert (iw >= summed - 1e-4).all() and (iw > summed + 1e-3).any()


def test_a_confident_classifier_sends_no_subnormal_gradient_to_the_classes_it_rules_out():
    """Classes with q(y | x) < 1e-20 weigh 0 in the enumeration: their bounds get an exact zero
    gradient (not a subnormal one, which is slow on a CPU), and the bound moves by less than
    float32 can show."""
    from torch.distributions import Categorical

    logits = torch.tensor([[0.0, -30.0, -95.0, -200.0], [0.0, -1.0, -2.0, -3.0]])  # q ~ 1e-13, 6e-42, 0
    per_class = torch.tensor([[-90.0, -100.0], [-95.0, -101.0], [-300.0, -102.0], [-99.0, -103.0]], requires_grad=True)
    summed = sum_over_labels(Categorical(logits=logits), torch.full((4,), math.log(0.25)),
                             Terms(per_class, per_class, {"recon": per_class}))
    summed.maximised.sum().backward()
    grad = per_class.grad
    tiny = torch.finfo(torch.float32).tiny
    assert not ((grad != 0) & (grad.abs() < tiny)).any(), grad  # no subnormal number
    assert grad[2:, 0].eq(0).all() and grad[1, 0] > 0 and (grad[:, 1] > 0).all()
    q = torch.softmax(logits.double(), -1).T
    exact = (q * per_class.detach().double()).sum(0) + Categorical(logits=logits.double()).entropy() + math.log(0.25)
    torch.testing.assert_close(summed.bound.double(), exact, rtol=1e-6, atol=0)


def test_labelled_bound_adds_the_class_prior_and_alpha_times_the_classifier():
    model, x, y = small_m2(alpha=2.5), binary_images(4), torch.tensor([0, 1, 2, 3])
    noise = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(5))
    terms = model.objective(x, y, Noise(None, noise), inference.elbo)
    elbo = inference.elbo(model, x, y, noise).bound
    torch.testing.assert_close(terms.bound, elbo + math.log(1 / 4))
    torch.testing.assert_close(terms.maximised, terms.bound + 2.5 * model.classifier(x).log_prob(y))
    torch.testing.assert_close(terms.parts["label_kl"], torch.full((4,), math.log(4)))  # KL(onehot || uniform)


def test_alpha_defaults_to_kingmas_on_the_labelled_mean_and_to_the_old_weight_for_the_spread_plan():
    assert small_m2().alpha == 0.0  # built to be loaded: alpha weighs nothing it computes
    batch = build_model("m2", SHAPE, 4, 50_000, 100, 100, latent_dim=3, hidden=(16,))
    assert batch.alpha == pytest.approx(50.0)  # 0.1 N / N_l on the labelled mean
    spread = build_model("m2", SHAPE, 4, 50_000, 100, 0, latent_dim=3, hidden=(16,))
    assert spread.alpha == 2000.0 and build_model("m2", SHAPE, 4, 600, None, latent_dim=3, hidden=(16,)).alpha == 4.0


def test_a_mixed_step_is_its_unlabelled_and_its_labelled_images_apart():
    """A step's batch: the first images unlabelled, the last ones with labels; noise for each apart."""
    model, x, y = small_m2(alpha=3.0), binary_images(5), torch.tensor([2, 0])
    generator = torch.Generator().manual_seed(6)
    noise = Noise(torch.randn(2, 3, 4, 3, generator=generator), torch.randn(2, 2, 3, generator=generator))
    half = torch.tensor(0.5)
    both = model.objective(x, y, noise, inference.elbo, half)
    apart = [unlabelled(model, x[:3], noise.unlabelled, kl_weight=half),
             model.objective(x[3:], y, Noise(None, noise.labelled), inference.elbo, half)]
    torch.testing.assert_close(both.maximised, torch.cat([t.maximised for t in apart]))
    torch.testing.assert_close(both.bound, torch.cat([t.bound for t in apart]))
    for name in ("recon", "kl", "label_kl"):
        torch.testing.assert_close(both.parts[name], torch.cat([t.parts[name] for t in apart]))


def test_confusion_matrix_counts_true_against_predicted_classes():
    model, x = small_m2(), binary_images(37)
    y = torch.arange(37) % 4
    predicted = model.classifier(x).probs.argmax(-1)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for true, guess in zip(y.tolist(), predicted.tolist()):
        expected[true, guess] += 1
    assert torch.equal(inference.confusion_matrix(model, x, y, batch_size=10), expected)


def test_m2_has_a_classifier_for_every_network():
    for network in ("mlp", "conv", "resnet"):
        model = small_m2(network)
        assert isinstance(model, Classifies)
        assert model.classifier(binary_images(2)).probs.shape == (2, 4)


def test_labelled_subset_is_balanced_and_reproducible():
    labels = np.repeat(np.arange(10), 50)[np.random.default_rng(0).permutation(500)]
    chosen = labelled_subset(labels, 25, 10, seed=3)
    counts = np.bincount(labels[chosen], minlength=10)
    assert len(chosen) == 25 == len(set(chosen.tolist())) and set(counts.tolist()) == {2, 3}
    assert (chosen == labelled_subset(labels, 25, 10, seed=3)).all()
    assert not (chosen == labelled_subset(labels, 25, 10, seed=4)).all()
    for count, message in [(5, "fewer than the 10 classes"), (501, "more than the 500 training images"),
                           (500 - 1, None)]:
        if message is None:
            assert len(labelled_subset(labels, count, 10, 0)) == count
            continue
        with pytest.raises(DataError, match=message):
            labelled_subset(labels, count, 10, 0)
    few_threes = np.concatenate([labels[labels != 3], [3] * 10])
    with pytest.raises(DataError, match="class 3, but the training split holds only 10"):
        labelled_subset(few_threes, 200, 10, 0)


def test_each_labelled_image_is_seen_once_per_epoch():
    n, batch = 1000, 64
    labelled = torch.zeros(n, dtype=torch.bool)
    labelled[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:150]] = True
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    plan = batch_plan(order, labelled, batch)
    seen = torch.cat([b.index for b in plan])
    assert sorted(seen.tolist()) == list(range(n))  # every image exactly once
    for index, known, _ in plan:  # the labels seen are those of the last `known` images, and only theirs
        assert labelled[index[len(index) - known :]].all() and not labelled[index[: len(index) - known]].any()
    shares = [b.labelled for b in plan]
    assert len(plan) == 16 and set(shares) == {9, 10}  # every step carries an even share of the labels
    assert [len(b.index) - b.labelled for b in plan[:-1]] == [54] * 15 and not plan[-1].full_size
    assert len(plan[-1].index) - plan[-1].labelled == 850 - 15 * 54  # the short last step
    assert all(b.full_size for b in plan[:-1])
    # the order decides which images share a step: a resumed epoch rebuilds the same plan
    assert all(torch.equal(a.index, b.index) for a, b in zip(plan, batch_plan(order, labelled, batch)))
    # every label known: the plain consecutive batches
    plain = batch_plan(order, None, batch)
    assert all(len(b.index) == b.labelled for b in plain) and torch.equal(torch.cat([b.index for b in plain]), order)
    assert [b.full_size for b in plain] == [True] * 15 + [False]


BAD_LABELS = [
    (["--model", "m2", "--labels", "0"], "--labels 0 is not allowed: use a whole number of labelled training images"),
    (["--model", "m2", "--labels", "-5"], "--labels -5 is not allowed"),
    (["--model", "cvae", "--labels", "100"], "--labels needs a model that infers missing labels (--model m2, adgm or sdgm)"),
    (["--model", "vae", "--labels", "100"], "--model vae trains on every label"),
]


@pytest.mark.parametrize("argv, message", BAD_LABELS)
def test_bad_labels_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error:") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("labels, message", [("60000", "more than the 50,000 training images"),
                                             ("7", "fewer than the 10 classes")])
def test_labels_that_do_not_fit_the_data(labels, message, tmp_path, capsys, mnist_raw):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--model", "m2", "--labels", labels]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()  # nothing written


M2_SMALL = dict(model="m2", latent_dim=8, hidden=(128,), labels=100, limit_train=4000, batch_size=50,
                sample_epochs=(1,), compile="off")


@pytest.mark.slow
def test_m2_learns_resumes_mid_epoch_and_evaluates(tmp_path, mnist_raw):
    check_a_semi_supervised_run(tmp_path, M2_SMALL)


def check_a_semi_supervised_run(tmp_path, settings: dict) -> None:
    """On 4,000 real images with 100 labels (78 steps of 50 unlabelled and all 100 labelled images an
    epoch): the classifier learns, a SIGTERM in epoch 2 then --resume gives the uninterrupted run,
    and evaluate, sample, reconstruct and report work on the run (tests/test_adgm.py calls it too)."""
    import json

    import vaelab
    from tests.progress import HANG_GUARD
    from tests.test_reliability import _rows, _start
    from vaelab.runs.checkpoints import load_checkpoint
    from vaelab.config import make_config
    from vaelab.report import write_report
    from vaelab.training import train

    settings = dict(settings, epochs=3)
    full = train(make_config(settings), tmp_path / "full", log=lambda _: None, progress=False)
    assert full[-1]["valid_accuracy"] > 0.6 and full[-1]["steps"] == 3 * 78  # chance is 0.1
    assert all(math.isfinite(row["train_elbo"]) for row in full)
    process = _start(tmp_path / "run", settings, resume=False, signal_at=(103, "TERM"))
    _, err = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 143, err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").info["partial_step"] == 103 - 78
    done = _start(tmp_path / "run", settings)
    _, err = done.communicate(timeout=HANG_GUARD)
    assert done.returncode == 0, err
    assert _rows(tmp_path / "run") == _rows(tmp_path / "full")

    assert main(["evaluate", str(tmp_path / "full"), "--iw-samples", "20", "--no-progress"]) == 0
    result = json.loads((tmp_path / "full" / "eval.json").read_text())
    assert result["classifier_accuracy"] == pytest.approx(np.trace(result["confusion"]) / 10_000)
    assert result["unlabelled_elbo"] <= result["log_likelihood_marginal"] + 1.0  # a bound, up to IS noise
    assert 0.5 < result["classifier_accuracy"]  # the Bayes rule needs a better decoder than 3 short epochs give
    run = vaelab.load_run(tmp_path / "full", device="cpu")
    images, labels = run.sample(per_class=2, seed=0)
    assert images.shape == (20, 1, 28, 28) and list(labels) == [c for c in range(10) for _ in range(2)]
    assert main(["reconstruct", str(tmp_path / "full"), "-o", str(tmp_path / "r.png")]) == 0
    assert main(["sample", str(tmp_path / "full"), "-o", str(tmp_path / "s.png"), "--digit", "3"]) == 0
    assert (tmp_path / "r.png").stat().st_size > 1000 and (tmp_path / "s.png").stat().st_size > 1000
    report = tmp_path / "report.html"
    write_report([tmp_path / "full"], report)
    page = report.read_text()
    assert "argmax_y q(y|x)" in page and "the class q(y | x) names" in page and "Validation error of the classifier" in page
    if importlib.util.find_spec("starlette"):  # the explorer's class posterior of a drawn image is q(y | x)
        from starlette.testclient import TestClient

        from vaelab.explore import session
        from vaelab.explore.server import build_app

        explored = session.explore_runs([tmp_path / "full"], device="cpu")
        client = TestClient(build_app(explored), raise_server_exceptions=False)
        image = explored[0].test_x[3]
        analysis = client.post("/api/analyse", json={"run": 0, "image": image[0].tolist()}).json()
        with torch.no_grad():
            expected = explored[0].run.model.classifier(image[None]).probs[0].double().numpy()
        np.testing.assert_allclose(analysis["posterior"], expected, atol=1e-6)


def test_a_labelled_batch_rides_in_every_step_and_every_unlabelled_image_comes_once():
    n, batch, labels = 1000, 64, 150
    labelled = torch.zeros(n, dtype=torch.bool)
    labelled[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:labels]] = True
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    plan = batch_plan(order, labelled, batch, labelled_batch=40)
    assert len(plan) == math.ceil((n - labels) / batch) == 14
    unlabelled = torch.cat([b.index[: len(b.index) - b.labelled] for b in plan])
    assert sorted(unlabelled.tolist()) == sorted(torch.nonzero(~labelled).flatten().tolist())  # each once
    assert all(b.labelled == 40 and labelled[b.index[-40:]].all() for b in plan)
    assert all(not labelled[b.index[:-40]].any() for b in plan)
    # the labelled images come in the epoch's order, cycling: 14 x 40 = 560 = 3 rounds of 150, and 110
    known = order[labelled[order]]
    taken = torch.cat([b.index[-40:] for b in plan])
    assert torch.equal(taken, known[torch.arange(560) % labels])
    assert [b.full_size for b in plan] == [True] * 13 + [False] and len(plan[-1].index) == 850 - 13 * 64 + 40
    # with fewer labels than the labelled batch... all of them in every step
    every = batch_plan(order, labelled, batch, labelled_batch=labels)
    assert all(sorted(b.index[-labels:].tolist()) == sorted(known.tolist()) for b in every)
    assert plan_images(plan) == 850 + 14 * 40
    assert all(torch.equal(a.index, b.index) for a, b in zip(plan, batch_plan(order, labelled, batch, 40)))


def test_the_labelled_batch_is_asked_for_and_a_run_without_it_keeps_its_plan(tmp_path):
    from vaelab.config import make_config
    from vaelab.runs import RunDir, stored_config

    assert make_config({"model": "m2", "labels": 100}).labelled_batch_size() == 100  # all of them, every step
    assert make_config({"model": "m2", "labels": 3000}).labelled_batch_size() == 100
    assert make_config({"model": "m2", "labels": 40}).labelled_batch_size() == 40
    assert make_config({"model": "m2", "labels": 100, "labelled_batch": 0}).labelled_batch_size() == 0  # spread
    assert make_config({"model": "cvae"}).labelled_batch_size() == 0
    old = make_config({"model": "m2", "labels": 100}).to_dict()
    del old["labelled_batch"]  # config.json of a run made before the labelled batch existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert stored_config(RunDir(tmp_path)).labelled_batch_size() == 0
    plain = make_config({"model": "cvae"}).to_dict()
    del plain["labelled_batch"]
    (tmp_path / "config.json").write_text(json.dumps(plain))
    assert stored_config(RunDir(tmp_path)).labelled_batch is None


def test_a_labelled_batch_without_labels_is_one_line(capsys, tmp_path):
    assert main(["train", "--model", "m2", "--labelled-batch", "50", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--labelled-batch sizes the labelled batch" in err and "use it with --labels" in err


@pytest.mark.slow
def test_a_run_with_a_labelled_batch_resumes_mid_epoch_to_the_uninterrupted_run(tmp_path, mnist_raw):
    from tests.progress import HANG_GUARD
    from tests.test_reliability import _rows, _start
    from vaelab.runs.checkpoints import load_checkpoint
    from vaelab.config import make_config
    from vaelab.training import train

    settings = dict(M2_SMALL, limit_train=1000, labelled_batch=50, epochs=2)  # 900 unlabelled: 18 steps an epoch
    full = train(make_config(settings), tmp_path / "full", log=lambda _: None, progress=False)
    assert full[-1]["steps"] == 36 and full[-1]["valid_accuracy"] > 0.3  # chance is 0.1
    process = _start(tmp_path / "run", settings, resume=False, signal_at=(25, "TERM"))
    _, err = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 143, err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").info["partial_step"] == 7
    done = _start(tmp_path / "run", settings)
    _, err = done.communicate(timeout=HANG_GUARD)
    assert done.returncode == 0, err
    assert _rows(tmp_path / "run") == _rows(tmp_path / "full")
