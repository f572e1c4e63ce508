"""The report's analyses on small inputs with known answers: the 2-D projection of points on a line
and on a plane, the decoded manifold's grid (on the prior's own quantiles) and layout, style transfer and the choice of examples,
with a model stub whose decoder shows its inputs. No training, no MNIST."""

from statistics import NormalDist

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

from vaelab.models import Densities, Family, GaussianMixture, rsample
from vaelab.report.analysis import (QUANTILE_DRAWS, label_classes, latent_means, manifold, pick_examples, project_2d,
                                    style_transfer)


class EchoModel(Family):
    """A stub family with the interface's members. Its decoder's mean shows what it was given:
    decoding z with label y gives the image [z, onehot(y)] (just [z] without labels), and the
    code of image x with label y (its q's mean) is x[:d] + y."""

    def __init__(self, latent_dim: int = 2):
        super().__init__()
        self.latent_dim, self.image_shape = latent_dim, (1, 1, latent_dim)
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # where the model lives (its device)

    @property
    def code_dim(self):
        return self.latent_dim

    def noise_shape(self, labelled=True):
        return (self.latent_dim,)

    def prior(self):
        return Independent(Normal(torch.zeros(self.latent_dim), torch.ones(self.latent_dim)), 1)

    def equations(self):
        return ["z ~ N(0, I)"]

    def posterior(self, x, y=None):
        return (x[..., : self.latent_dim] + (0 if y is None else y[..., None].to(x.dtype)),)

    def densities(self, x, y, posterior, noise, closed_form=False):
        z = posterior[0] + noise
        q = Independent(Normal(posterior[0], torch.ones_like(posterior[0])), 1)
        return Densities(self.decoder(z, y).log_prob(x), {"kl": q.log_prob(z) - self.prior().log_prob(z)})

    def code(self, x, y=None):
        return self.posterior(x, y)[0]

    def sample_codes(self, count, generator):
        return rsample(self.prior(), (count,), generator)

    def part_words(self):
        return {"recon": "E_q[log p(x | z)]", "kl": "KL(q(z | x) ‖ p(z))"}

    def decoder(self, z, y=None):
        return Independent(Normal(z, torch.ones_like(z)), 1)


class LabelledEchoModel(EchoModel):
    """The stub with a class label: a ClassConditional family."""

    def __init__(self, latent_dim: int = 2, num_classes: int = 3):
        super().__init__(latent_dim)
        self.num_classes = num_classes

    def class_log_prior(self):
        return torch.full((self.num_classes,), -np.log(self.num_classes))

    def decoder(self, z, y=None):
        image = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=-1)
        return Independent(Normal(image, torch.ones_like(image)), 1)


def echo_model(latent_dim: int = 2, num_classes: int = 0) -> EchoModel:
    return LabelledEchoModel(latent_dim, num_classes) if num_classes else EchoModel(latent_dim)


def test_label_classes_is_zero_without_labels():
    assert label_classes(echo_model()) == 0 and label_classes(echo_model(num_classes=3)) == 3


# --- latent means -----------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [0, 3])
def test_latent_means_in_batches_equal_the_encoder_means(num_classes):
    x = torch.arange(7 * 4, dtype=torch.float32).reshape(7, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0]) if num_classes else None
    means = latent_means(echo_model(num_classes=num_classes), x, y, batch_size=3)  # batches of 3, 3, 1
    expected = x[:, :2] + (y[:, None] if num_classes else 0)
    np.testing.assert_array_equal(means, expected.numpy())


# --- 2-D projection ---------------------------------------------------------------------------


def test_points_on_a_line_project_onto_their_positions_along_it():
    t = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])  # positions along the line (mean 0)
    direction = np.array([1.0, 2.0, 2.0]) / 3.0  # unit length
    codes = np.array([5.0, -1.0, 3.0]) + t[:, None] * direction

    projection = project_2d(codes)

    assert projection.points.shape == (5, 2)
    assert projection.explained == pytest.approx((1.0, 0.0), abs=1e-12)
    sign = np.sign(projection.points[-1, 0])  # a principal axis has no preferred sign
    np.testing.assert_allclose(sign * projection.points[:, 0], t, atol=1e-12)
    np.testing.assert_allclose(projection.points[:, 1], 0.0, atol=1e-12)


def test_points_on_a_plane_project_onto_their_plane_coordinates():
    u = np.array([1.0, 1.0, 0.0, 0.0]) / np.sqrt(2)  # orthonormal axes of a plane in 4-D
    v = np.array([0.0, 0.0, 1.0, -1.0]) / np.sqrt(2)
    a = np.array([2.0, -2.0, 0.0, 0.0])  # coordinates along u: variance 8 / 4
    b = np.array([0.0, 0.0, 1.0, -1.0])  # along v, uncorrelated with a: variance 2 / 4
    codes = np.array([1.0, 2.0, 3.0, 4.0]) + a[:, None] * u + b[:, None] * v

    projection = project_2d(codes)

    assert projection.explained == pytest.approx((0.8, 0.2), abs=1e-12)  # 8 / (8 + 2), 2 / (8 + 2)
    points = projection.points * np.sign(projection.points[[0, 2]].diagonal())  # fix each axis's sign
    np.testing.assert_allclose(points, np.stack([a, b], axis=1), atol=1e-12)


def test_two_dimensional_codes_are_their_own_projection():
    codes = np.array([[1.0, 2.0], [3.0, -4.0], [0.5, 0.0]])
    projection = project_2d(codes)
    assert projection.explained is None
    np.testing.assert_array_equal(projection.points, codes)


def test_one_dimensional_codes_are_padded_with_zeros():
    projection = project_2d(np.array([[1.0], [-2.0], [3.0]]))
    assert projection.explained is None
    np.testing.assert_array_equal(projection.points, [[1.0, 0.0], [-2.0, 0.0], [3.0, 0.0]])


# --- decoded manifold -------------------------------------------------------------------------


def test_manifold_grid_spans_the_priors_5_to_95_percent_quantiles_row_major_top_row_highest_z2():
    steps = 5
    grid = manifold(echo_model(), steps=steps)
    images, coordinates = grid.images, grid.coordinates

    quantile_95 = NormalDist().inv_cdf(0.95)  # 1.645
    expected = [NormalDist().inv_cdf(p) for p in (0.05, 0.275, 0.5, 0.725, 0.95)]  # evenly spaced in prior mass
    assert coordinates.shape == (steps, 2) and grid.draws is None  # N(0, I): exact quantiles
    np.testing.assert_allclose(coordinates, np.stack([expected, expected], axis=1), atol=1e-6)
    assert coordinates[0, 0] == pytest.approx(-quantile_95, abs=1e-6) and coordinates[2, 1] == 0
    assert images.shape == (steps * steps, 2)
    cells = images.reshape(steps, steps, 2)  # row-major: [row, column, (z_1, z_2)]
    for row in range(steps):
        for column in range(steps):
            z1, z2 = cells[row, column]
            assert z1 == pytest.approx(coordinates[column, 0])  # z_1 grows to the right
            assert z2 == pytest.approx(coordinates[steps - 1 - row, 1])  # z_2 grows upwards: top row highest
    assert cells[0, 0].tolist() == pytest.approx([-quantile_95, quantile_95], abs=1e-6)  # top left


class MixtureEchoModel(EchoModel):
    """The stub under a two-component mixture prior, as the VampPrior is: no inverse CDF, and
    marginals of different spread on the two axes."""

    def prior(self):
        return GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.tensor([[0.5, 1.0], [0.5, 3.0]]))


def _mixture_cdf(z, locs, scales):
    """P(Z <= z) under (1/K) sum_k N(loc_k, scale_k^2) in 1-D."""
    return np.mean([NormalDist(m, s).cdf(z) for m, s in zip(locs, scales)])


def test_a_mixture_priors_manifold_sits_at_its_own_marginal_quantiles_not_at_standard_normal_ones():
    grid = manifold(MixtureEchoModel(), steps=5)
    assert grid.draws == QUANTILE_DRAWS  # no inverse CDF: estimated from draws of p(z)
    probabilities = [0.05, 0.275, 0.5, 0.725, 0.95]
    # each axis's cells hold the prior mass they claim: the marginal CDF at the cell is its probability
    mass_z1 = [_mixture_cdf(z, (-2.0, 2.0), (0.5, 0.5)) for z in grid.coordinates[:, 0]]
    mass_z2 = [_mixture_cdf(z, (0.0, 0.0), (1.0, 3.0)) for z in grid.coordinates[:, 1]]
    np.testing.assert_allclose(mass_z1, probabilities, atol=0.004)
    np.testing.assert_allclose(mass_z2, probabilities, atol=0.004)
    assert abs(grid.coordinates[0, 0] - NormalDist().inv_cdf(0.05)) > 0.9  # far from N(0, 1)'s 5% quantile
    assert grid.coordinates[4, 1] > 3  # z_2 is three times as wide in one component
    cells = grid.images.reshape(5, 5, 2)
    np.testing.assert_allclose(cells[0, :, 0], grid.coordinates[:, 0], atol=1e-6)  # decoded at those z
    np.testing.assert_allclose(cells[:, 0, 1], grid.coordinates[::-1, 1], atol=1e-6)
    again = manifold(MixtureEchoModel(), steps=5)
    np.testing.assert_array_equal(again.coordinates, grid.coordinates)  # a fixed seed: the same figure


@pytest.mark.parametrize("label, decoded_with", [(2, 2), (None, 0)])
def test_class_conditional_manifold_decodes_every_cell_with_the_label(label, decoded_with):
    grid = manifold(echo_model(num_classes=3), steps=4, label=label)
    assert grid.images.shape == (16, 2 + 3)
    np.testing.assert_array_equal(grid.images[:, 2:], np.tile(np.eye(3)[decoded_with], (16, 1)))
    np.testing.assert_allclose(np.unique(grid.images[:, 0]), grid.coordinates[:, 0], atol=1e-6)


def test_manifold_needs_a_two_dimensional_latent_space():
    with pytest.raises(ValueError, match="2-D latent space"):
        manifold(echo_model(latent_dim=3))


# --- style transfer ---------------------------------------------------------------------------


def test_style_transfer_decodes_each_images_code_with_every_label():
    classes = 3
    x = torch.tensor([[0.1, 0.2, 9.0], [0.3, 0.4, 9.0], [0.5, 0.6, 9.0], [0.7, 0.8, 9.0]])
    y = torch.tensor([0, 2, 1, 2])

    transfer = style_transfer(echo_model(num_classes=classes), x, y)

    assert transfer.shape == (4, classes, 2 + classes)  # (n, classes, image)
    for i in range(4):
        for label in range(classes):
            np.testing.assert_array_equal(transfer[i, label, 2:], np.eye(classes)[label])  # column = label's image
            # the same z in every column: the image's code, encoded with its own label
            np.testing.assert_allclose(transfer[i, label, :2], (x[i, :2] + y[i]).numpy())


def test_style_transfer_needs_a_class_conditional_model():
    with pytest.raises(ValueError, match="class-conditional"):
        style_transfer(echo_model(), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


# --- examples ---------------------------------------------------------------------------------


def test_pick_examples_takes_per_class_examples_of_each_present_class_in_class_order():
    labels = np.array([5, 0, 2, 0, 5, 5, 2, 0, 2, 5])  # classes 0, 2 and 5, three or four of each

    pick = pick_examples(labels, 2, seed=3)

    assert labels[pick].tolist() == [0, 0, 2, 2, 5, 5]
    assert len(set(pick.tolist())) == 6  # no image twice
    np.testing.assert_array_equal(pick, pick_examples(labels, 2, seed=3))  # a fixed choice for a seed
    choices = {tuple(pick_examples(labels, 2, seed=seed)) for seed in range(20)}
    assert len(choices) > 1  # ... but a random one across seeds
    with pytest.raises(ValueError):
        pick_examples(labels, 4, seed=0)  # class 2 has only three examples
