"""Shared fixtures: a small exact-score mixture prior and a hard linear problem on it."""

import importlib.util

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.operators import MatrixOperator
from reguidance.priors.gmm import GaussianMixture, GMMPrior


@pytest.fixture(scope="session")
def gmm_prior() -> GMMPrior:
    return GMMPrior(GaussianMixture.random(8, 3, rank=2, seed=1), Schedule.linear())


@pytest.fixture(scope="session")
def gmm_problem(gmm_prior):
    """(operator, truth, measurement): 3 noisy measurements of 8-dimensional mixture samples, float64."""
    matrix = torch.randn(3, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) / 8**0.5
    operator = MatrixOperator(matrix, sigma_y=0.1)
    truth, _ = gmm_prior.mixture.sample(BatchRNG.from_seed(0, 6))
    truth = truth.double()
    y = operator.measure(truth, BatchRNG.from_seed(1, 6))
    return operator, truth, y


class GaussianLaw:
    """Data ``x0 ~ N(mu, v I)`` on the 1000-step linear chain, with every quantity of its diffusion in closed form.

    With ``x_t = sqrt(ab) x0 + sqrt(1 - ab) n``: Tweedie's estimate is affine in ``x_t``,
    ``x0_hat = mu + c (x_t - sqrt(ab) mu)``, ``c = sqrt(ab) v / (ab v + 1 - ab)``; in the ODE's variables
    ``y = x / sqrt(ab)``, ``sigma^2 = (1 - ab) / ab`` the probability-flow ODE is
    ``dy / dsigma = sigma (y - mu) / (v + sigma^2)``, solved by ``y - mu = (x0 - mu) sqrt((v + sigma^2) / v)``.
    """

    def __init__(self, mu: torch.Tensor, v: float) -> None:
        self.mu, self.v = mu, v
        self.prior = GMMPrior(GaussianMixture.isotropic(torch.ones(1), mu[None], v), Schedule.linear())

    def x0_hat(self, x_t: torch.Tensor, ab: float) -> torch.Tensor:
        c = ab**0.5 * self.v / (ab * self.v + 1 - ab)
        return self.mu + c * (x_t - ab**0.5 * self.mu)

    def flow(self, x0: torch.Tensor, ab: float) -> torch.Tensor:
        """The exact probability-flow map from the data ``x0`` to the level ``ab`` (VP scale)."""
        sigma2 = (1 - ab) / ab
        return ab**0.5 * (self.mu + (x0 - self.mu) * ((self.v + sigma2) / self.v) ** 0.5)

    def ddim(self, x_b: torch.Tensor, ab_b: float, ab_a: float) -> torch.Tensor:
        """One deterministic DDIM step from level ``ab_b`` down to ``ab_a`` (1: the data), from the closed form."""
        x0 = self.x0_hat(x_b, ab_b)
        return ab_a**0.5 * x0 + (1 - ab_a) ** 0.5 * (x_b - ab_b**0.5 * x0) / (1 - ab_b) ** 0.5

    def ddim_inverse(self, x_a: torch.Tensor, ab_b: float, ab_a: float) -> torch.Tensor:
        """The exact inverse of :meth:`ddim` (an affine map ``x_a = alpha x_b + beta``, isotropic: ``alpha`` a
        number)."""
        beta = self.ddim(torch.zeros_like(x_a), ab_b, ab_a)
        alpha = float((self.ddim(torch.ones_like(x_a), ab_b, ab_a) - beta).flatten()[0])
        return (x_a - beta) / alpha


@pytest.fixture(scope="session")
def gaussian() -> GaussianLaw:
    """A broad 6-dimensional Gaussian data law with a non-zero mean (see :class:`GaussianLaw`)."""
    return GaussianLaw(torch.linspace(-0.4, 0.6, 6, dtype=torch.float64), 0.25)


# tests/deepinv_tier/ needs the real deepinv, which does not import beside the pinned torch: `make test-deepinv` runs it
# in its own environment, and a suite without deepinv does not collect it
collect_ignore = [] if importlib.util.find_spec("deepinv") else ["deepinv_tier"]
