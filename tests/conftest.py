"""Shared fixtures: a small exact-score mixture prior and a hard linear problem on it."""

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
