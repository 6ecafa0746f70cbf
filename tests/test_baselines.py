"""Baselines (DAPS, DiffPIR, RED-diff, PiGDM) through the one sampler core: shapes, seeds, batch independence, fit."""

from typing import Any

import pytest
import torch
from torch import nn

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.guidance import daps, diffpir, pigdm, reddiff
from reguidance.guidance.daps import annealing_levels
from reguidance.guidance.diffpir import time_grid
from reguidance.guidance.solve import Functional
from reguidance.operators import Inpainting, MatrixOperator, SuperResolution
from reguidance.priors.base import PriorOutput
from reguidance.priors.gmm import GaussianMixture, GMMPrior

# small step counts: each method with its guidance on, and the same call with the guidance off
METHODS: dict[str, tuple[Functional, dict[str, Any], dict[str, Any]]] = {
    "daps": (
        daps,
        dict(steps=20, ode_steps=3, langevin_steps=20, step_size=5e-3, tau=0.14, step_size_min_ratio=1.0),
        dict(step_size=0.0),
    ),
    "diffpir": (diffpir, dict(steps=60, lambda_=0.05), dict(lambda_=0.0)),
    "reddiff": (reddiff, dict(steps=41), dict(obs_weight=0.0)),
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
    assert operator.residual_norm(guided, y).mean() < 0.5 * operator.residual_norm(free, y).mean()


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


@pytest.mark.slow
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
        steps=30,
        langevin_steps=30,
        step_size=2e-3,
        step_size_min_ratio=1.0,
        tau=0.2 * 2**0.5,  # the exact Gaussian likelihood: the reference's tau is sqrt(2) sigma_y
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
    assert run("daps", gmm_prior, operator, y[:1], [0], steps=4, ode_steps=3).nfe == 12
    assert run("pigdm", gmm_prior, operator, y[:1], [0], steps=13).nfe == 13
    assert run("reddiff", gmm_prior, operator, y[:1], [0], steps=13).nfe == 12  # the last level cannot matter
    assert run("diffpir", gmm_prior, operator, y[:1], [0], steps=13).nfe == len(time_grid(gmm_prior.schedule, 13))


def test_diffpir_quad_grid_runs_from_the_noisiest_level_to_the_data_and_is_denser_at_low_noise(gmm_prior):
    grid = time_grid(gmm_prior.schedule, 100)
    t = grid.timestep_map
    assert int(t[0]) == 0 and int(t[-1]) == 999 and len(grid) == 100
    assert int(t[1] - t[0]) < int(t[-1] - t[-2])


def test_daps_annealing_visits_n_of_n_plus_one_levels_and_ends_above_sigma_min(gmm_prior):
    grid = annealing_levels(gmm_prior.schedule, 200, 100.0, 0.1)
    sigmas = grid.sigmas()
    # poly-7 from 100 to 0.1 with 201 points: the last visited level is the 200th, one level above sigma_min
    last_visited = (100 ** (1 / 7) + 199 / 200 * (0.1 ** (1 / 7) - 100 ** (1 / 7))) ** 7
    assert len(grid) == 200
    assert float(sigmas[0]) == pytest.approx(last_visited, rel=0.03)
    assert float(sigmas[0]) > 0.1


@pytest.mark.parametrize("name", ["daps", "diffpir", "pigdm"])
def test_methods_start_from_a_given_latent(gmm_prior, gmm_problem, name):
    """A chain that starts at a low noise level (sigma about 0.2) remembers its start: two latents one unit apart
    give results far apart (a fresh-noise start at full noise would forget it)."""
    operator, _, y = gmm_problem
    levels = gmm_prior.schedule.spaced(10, t_end=0.05)
    latent = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    options = {"steps": None, "levels": levels}
    a = run(name, gmm_prior, operator, y, range(6), latent=latent, **options).x
    b = run(name, gmm_prior, operator, y, range(6), latent=latent + 1, **options).x
    assert (a - b).abs().mean() > 0.1


def test_reddiff_starts_from_a_given_clean_estimate_and_refuses_a_latent(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    assert torch.equal(run("reddiff", gmm_prior, operator, y, range(6), steps=1, init=truth).x, truth)
    # two levels: one Adam step, whose first bias-corrected update moves every entry by step_size (|g| >> eps)
    moved = run("reddiff", gmm_prior, operator, y, range(6), steps=2, init=truth, step_size=0.1).x - truth
    assert torch.allclose(moved.abs(), torch.full_like(moved, 0.1), rtol=1e-4)  # within eps / |g|
    with pytest.raises(ValueError, match="init"):
        run("reddiff", gmm_prior, operator, y, range(6), latent=truth)


# ------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("daps", dict(steps=0)),
        ("daps", dict(ode_steps=0)),
        ("daps", dict(langevin_steps=0)),
        ("daps", dict(step_size=-1e-3)),
        ("daps", dict(tau=0.0)),
        ("diffpir", dict(steps=0)),
        ("diffpir", dict(lambda_=-1.0)),
        ("diffpir", dict(noise_mix=1.5)),
        ("reddiff", dict(steps=0)),
        ("reddiff", dict(step_size=-0.1)),
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
