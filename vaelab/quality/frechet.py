"""The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian.

    d² = |μ₁ - μ₂|² + tr(Σ₁ + Σ₂ - 2 (Σ₁^½ Σ₂ Σ₁^½)^½)

the squared 2-Wasserstein distance between N(μ₁, Σ₁) and N(μ₂, Σ₂). Heusel et al.'s FID is this
distance in the features of an Inception network; vaelab computes it in the features of its own judge
of the dataset (`judge.JudgeNet.features`), so it is named for what it is, not "FID". Its estimate
from n vectors a set is biased upwards, by about tr-terms that fall as 1/n: compare figures made with
the same numbers of vectors, against the floor of two sets of real images of those sizes.
"""

from __future__ import annotations

import torch


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [k], covariance [k, k]) of features [n, k], in float64 (the unbiased covariance)."""
    values = features.double()
    return values.mean(0), torch.cov(values.T)


def symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric positive semi-definite square root of a symmetric matrix [k, k] (negative
    eigenvalues from rounding are taken as 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor]) -> float:
    """d² between the Gaussians (mean, covariance) `first` and `second` (`gaussian_fit`), in squared
    feature units; 0 for the same Gaussian."""
    (mu1, cov1), (mu2, cov2) = first, second
    root = symmetric_sqrt(cov1)
    cross = torch.linalg.eigvalsh(root @ cov2 @ root).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(value.item(), 0.0)
