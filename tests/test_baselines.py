"""Baselines (DAPS, DiffPIR, RED-diff, PiGDM) and the shared CG solver: shapes, seeds, batch independence, fit."""

import pytest
import torch
from torch import nn

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.guidance import conjugate_gradient, daps, diffpir, pigdm, reddiff, solve_proximal
from reguidance.guidance.diffpir import time_grid
from reguidance.operators import Inpainting, MatrixOperator, SuperResolution
from reguidance.priors.base import PriorOutput
from reguidance.priors.gmm import GaussianMixture, GMMPrior

# small step counts: each method with its guidance on, and the same call with the guidance off
METHODS = {
    "daps": (
        daps,
        dict(annealing_steps=20, ode_steps=3, langevin_steps=20, lr=5e-3, tau=0.1, lr_min_ratio=1.0),
        dict(lr=0.0),
    ),
    "diffpir": (diffpir, dict(steps=60), dict(lambda_=0.0)),
    "reddiff": (reddiff, dict(steps=40), dict(obs_weight=0.0)),
    "pigdm": (pigdm, dict(steps=60, eta=1.0), dict(scale=0.0)),
}


def run(name, prior, operator, y, ids, seed=5, **overrides):
    fn, kw, _ = METHODS[name]
    return fn(prior, operator, y, rng=BatchRNG.from_seed(seed, ids), **{**kw, **overrides})


class FlatImagePrior(nn.Module):
    """A Gaussian mixture on (C, H, W) images: the flat mixture prior reshaped (for the image code paths)."""

    variance = "fixed_small"

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, w = shape
        self.inner = GMMPrior(GaussianMixture.random(c * h * w, 2, rank=2, seed=4), Schedule.linear())
        self.schedule = self.inner.schedule
        self.signal_shape = shape

    def predict(self, x_t, t):
        return PriorOutput(self.inner.predict(x_t.flatten(1), t).eps.reshape(x_t.shape))


# ------------------------------------------------------------------------------------------- the methods
@pytest.mark.parametrize("name", list(METHODS))
def test_output_is_a_finite_batch_of_signals(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    result = run(name, gmm_prior, operator, y, range(6))
    assert result.x.shape == (6, 8)
    assert torch.isfinite(result.x).all()
    assert result.nfe >= 1


@pytest.mark.parametrize("name", list(METHODS))
def test_same_seed_same_output(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    assert torch.equal(run(name, gmm_prior, operator, y, range(6)).x, run(name, gmm_prior, operator, y, range(6)).x)


@pytest.mark.parametrize("name", list(METHODS))
def test_results_do_not_depend_on_the_batch(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    full = run(name, gmm_prior, operator, y, range(6)).x
    part = run(name, gmm_prior, operator, y[2:4], [2, 3]).x
    assert torch.allclose(full[2:4], part, atol=1e-10)


@pytest.mark.parametrize("name", list(METHODS))
def test_guidance_fits_the_measurement_better_than_unguided_sampling(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    _, _, off = METHODS[name]
    guided = run(name, gmm_prior, operator, y, range(6)).x
    free = run(name, gmm_prior, operator, y, range(6), **off).x
    assert operator.residual_norm(guided, y).mean() < 0.6 * operator.residual_norm(free, y).mean()


@pytest.mark.parametrize("name", list(METHODS))
def test_images_with_per_sample_masks_are_batch_independent(name):
    prior = FlatImagePrior((1, 4, 4))
    truth = prior.inner.mixture.sample(BatchRNG.from_seed(0, 4))[0].double().reshape(4, 1, 4, 4)
    operator = Inpainting.random_pixels((1, 4, 4), 0.5, BatchRNG.from_seed(2, 4), sigma_y=0.05)
    y = operator.measure(truth, BatchRNG.from_seed(1, 4))
    full = run(name, prior, operator, y, range(4)).x
    part = run(name, prior, operator.select([2, 3]), y[2:4], [2, 3]).x
    assert full.shape == (4, 1, 4, 4) and torch.isfinite(full).all()
    assert torch.allclose(full[2:4], part, atol=1e-10)


@pytest.mark.parametrize("name", list(METHODS))
def test_images_with_super_resolution_fit_the_measurement(name):
    prior = FlatImagePrior((1, 4, 4))
    truth = prior.inner.mixture.sample(BatchRNG.from_seed(0, 3))[0].double().reshape(3, 1, 4, 4)
    operator = SuperResolution((1, 4, 4), 2, sigma_y=0.1)
    y = operator.measure(truth, BatchRNG.from_seed(1, 3))
    _, _, off = METHODS[name]
    guided = run(name, prior, operator, y, range(3)).x
    free = run(name, prior, operator, y, range(3), **off).x
    assert guided.shape == (3, 1, 4, 4) and torch.isfinite(guided).all()
    assert operator.residual_norm(guided, y).mean() < operator.residual_norm(free, y).mean()


def test_daps_mean_is_near_the_exact_posterior_mean_on_a_1d_mixture():
    mixture = GaussianMixture.isotropic(torch.tensor([0.3, 0.7]), torch.tensor([[-0.5], [0.5]]), 0.04)
    prior = GMMPrior(mixture, Schedule.linear())
    operator = MatrixOperator(torch.tensor([[1.0]], dtype=torch.float64), sigma_y=0.2)
    n = 200
    y = torch.cat([torch.full((n, 1), -0.3), torch.full((n, 1), 0.3)]).double()
    result = daps(
        prior,
        operator,
        y,
        annealing_steps=30,
        langevin_steps=30,
        lr=2e-3,
        lr_min_ratio=1.0,
        tau=0.2,
        rng=BatchRNG.from_seed(7, 2 * n),
    )
    exact = mixture.posterior(operator.weight, y[[0, n]], 0.2).mean().squeeze(1)  # about (-0.37, 0.40)
    estimate = torch.stack([result.x[:n].mean(), result.x[n:].mean()])
    prior_mean = mixture.mean().squeeze()
    # DAPS is approximate (Gaussian p(x0 | x_t) with r_t = sigma_t): near the posterior mean, far from the prior's
    assert (estimate - exact).abs().max() < 0.12
    assert ((estimate - exact).abs() < 0.5 * (exact - prior_mean).abs()).all()


def test_nfe_counts_network_evaluations(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    assert run("daps", gmm_prior, operator, y[:1], [0], annealing_steps=4, ode_steps=3).nfe == 12
    assert run("pigdm", gmm_prior, operator, y[:1], [0], steps=13).nfe == 13
    assert run("reddiff", gmm_prior, operator, y[:1], [0], steps=13).nfe == 13
    assert run("diffpir", gmm_prior, operator, y[:1], [0], steps=13).nfe == len(time_grid(gmm_prior.schedule, 13))


def test_diffpir_quad_grid_runs_from_the_noisiest_level_to_the_data_and_is_denser_at_low_noise(gmm_prior):
    grid = time_grid(gmm_prior.schedule, 100)
    t = grid.timestep_map
    assert int(t[0]) == 0 and int(t[-1]) == 999 and len(grid) == 100
    assert int(t[1] - t[0]) < int(t[-1] - t[-2])


@pytest.mark.parametrize("name", list(METHODS))
def test_methods_start_from_a_given_latent(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    latent = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = run(name, gmm_prior, operator, y, range(6), latent=latent).x
    b = run(name, gmm_prior, operator, y, range(6), latent=2 * latent).x
    assert not torch.equal(a, b)


# ------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("daps", dict(annealing_steps=0)),
        ("daps", dict(ode_steps=0)),
        ("daps", dict(langevin_steps=0)),
        ("daps", dict(lr=-1e-3)),
        ("daps", dict(tau=0.0)),
        ("diffpir", dict(steps=0)),
        ("diffpir", dict(lambda_=-1.0)),
        ("diffpir", dict(zeta=1.5)),
        ("reddiff", dict(steps=0)),
        ("reddiff", dict(lr=-0.1)),
        ("reddiff", dict(lambda_=-0.25)),
        ("pigdm", dict(steps=0)),
        ("pigdm", dict(scale=-1.0)),
        ("pigdm", dict(eta=-1.0)),
    ],
)
def test_bad_hyperparameters_raise_value_errors_naming_them(gmm_prior, gmm_problem, name, bad):
    operator, _, y = gmm_problem
    (arg,) = bad
    with pytest.raises(ValueError, match=arg):
        run(name, gmm_prior, operator, y, range(6), **bad)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_measurement_of_the_wrong_shape_is_rejected(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    with pytest.raises(ValueError, match="measurement"):
        run(name, gmm_prior, operator, y[:, :2], range(6))


# --------------------------------------------------------------------------------------- conjugate gradients
def test_conjugate_gradient_matches_a_dense_solve_per_sample():
    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(5, 12, generator=g, dtype=torch.float64)
    operator = MatrixOperator(matrix)
    rhs = torch.randn(4, 12, generator=g, dtype=torch.float64)
    rho = torch.tensor([0.1, 1.0, 3.0, 0.01], dtype=torch.float64)
    x = solve_proximal(operator, rhs, rho, max_iter=100, tol=1e-12)
    for k in range(4):
        dense = torch.linalg.solve(matrix.T @ matrix + rho[k] * torch.eye(12, dtype=torch.float64), rhs[k])
        assert torch.allclose(x[k], dense, atol=1e-8)


def test_conjugate_gradient_results_do_not_depend_on_the_batch():
    g = torch.Generator().manual_seed(1)
    spd = torch.randn(6, 6, generator=g, dtype=torch.float64)
    spd = spd @ spd.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(5, 6, generator=g, dtype=torch.float64)
    b[1] = 0  # a converged sample stays put and does not stop the others

    def apply(v):
        return v @ spd.T

    full = conjugate_gradient(apply, b, max_iter=3)
    assert torch.equal(full[1], torch.zeros(6, dtype=torch.float64))
    assert torch.allclose(full[3:], conjugate_gradient(apply, b[3:], max_iter=3), atol=1e-12)


def test_conjugate_gradient_solves_a_masked_semidefinite_system():
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 0.0, -1.0, 4.0]], dtype=torch.float64)
    x = conjugate_gradient(lambda v: 0.5 * mask * v, b, tol=1e-12)
    assert torch.allclose(x, 2 * b)


def test_conjugate_gradient_rejects_bad_settings():
    b = torch.ones(2, 3)
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(lambda v: v, b, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        conjugate_gradient(lambda v: v, b, tol=-1.0)
    with pytest.raises(ValueError, match="rho"):
        solve_proximal(MatrixOperator(torch.eye(3)), b, 0.0)
