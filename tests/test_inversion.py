"""Probability-flow ODE inversion with exact scores: round trips and the latent's diagnostics."""

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.guidance.unconditional import sample
from reguidance.inversion import invert, latent_statistics, roundtrip_error
from reguidance.priors.gmm import GaussianMixture, GMMPrior


@pytest.fixture(scope="module")
def prior():
    return GMMPrior(GaussianMixture.random(8, 3, rank=2, seed=1), Schedule.linear())


@pytest.fixture(scope="module")
def data(prior):
    x, _ = prior.mixture.sample(BatchRNG.from_seed(0, 64))
    return x.double()


def test_euler_roundtrip_error_falls_as_steps_grow(prior, data):
    errors = [float(roundtrip_error(prior, data, prior.schedule, steps=n).mean()) for n in (10, 50, 250)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_heun_roundtrips_better_than_euler_at_the_same_steps(prior, data):
    euler = roundtrip_error(prior, data, prior.schedule, steps=20, method="euler").mean()
    heun = roundtrip_error(prior, data, prior.schedule, steps=20, method="heun").mean()
    assert heun < euler


def test_fixed_point_inversion_roundtrips_far_better_than_euler(prior, data):
    # the implicit step is the exact inverse of a DDIM step; what remains is the unconverged solve
    euler = roundtrip_error(prior, data, prior.schedule, steps=20, method="euler").median()
    fixed = roundtrip_error(prior, data, prior.schedule, steps=20, method="fixed_point", fixed_point_iters=8)
    assert fixed.median() < 0.1 * euler


def test_fixed_point_inversion_is_exact_where_the_ode_is_smooth():
    # a broad isotropic Gaussian: eps is gently varying, the fixed-point map contracts, the round trip is exact
    from reguidance.priors.gmm import GaussianMixture as GM

    smooth = GMMPrior(GM.isotropic(torch.ones(1), torch.zeros(1, 4), torch.tensor([0.5])), Schedule.linear())
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.7
    err = roundtrip_error(smooth, x, smooth.schedule, steps=20, method="fixed_point", fixed_point_iters=10)
    assert float(err.max()) < 1e-6


def test_full_depth_latent_of_prior_samples_looks_gaussian(prior, data):
    latent = invert(prior, data, prior.schedule, steps=100).latent
    stats = latent_statistics(latent)
    assert abs(float(stats["mean"].mean())) < 0.2
    assert float(stats["std"].mean()) == pytest.approx(1.0, abs=0.2)


def test_partial_depth_inversion_ends_at_the_requested_level(prior, data):
    inv = invert(prior, data, prior.schedule, steps=30, t_end=0.4)
    assert int(inv.schedule.timestep_map[-1]) == round(0.4 * 999)
    back = sample(prior, inv.latent, inv.schedule)
    assert float(((back - data).norm(dim=1) / data.norm(dim=1)).mean()) < 0.05


def test_nfe_counts_every_network_evaluation(prior, data):
    assert invert(prior, data[:2], prior.schedule, steps=7).nfe == 7
    assert invert(prior, data[:2], prior.schedule, steps=7, method="heun").nfe == 14
    assert invert(prior, data[:2], prior.schedule, steps=7, method="fixed_point", fixed_point_iters=3).nfe == 28


def test_image_latent_statistics_report_low_frequency_energy():
    white = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    stats = latent_statistics(white)
    assert torch.allclose(stats["low_freq_energy"], stats["low_freq_energy_white"], atol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"steps": 0}, "steps"), ({"method": "rk4"}, "method"), ({"t_end": 1.5}, "t_end")],
)
def test_inversion_rejects_bad_options_naming_them(prior, data, kwargs, word):
    with pytest.raises(ValueError, match=word):
        invert(prior, data[:1], prior.schedule, **kwargs)


def test_inversion_rejects_nan_candidates(prior, data):
    bad = data[:2].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="candidate"):
        invert(prior, bad, prior.schedule, steps=5)


def _sample(gaussian, n: int, seed: int) -> torch.Tensor:
    noise = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return gaussian.mu + gaussian.v**0.5 * noise


def _ab(schedule, k: int) -> float:
    """alpha_bar of level ``k`` of ``schedule``; 1 (the data) at ``k = -1``."""
    return float(schedule.alphas_cumprod[k]) if k >= 0 else 1.0


def test_fixed_point_inversion_is_the_exact_inverse_of_ddim_on_a_gaussian(gaussian):
    # each implicit step solves "one DDIM step from x_b lands on x_a", an affine equation for Gaussian data whose
    # solution the test writes down from Tweedie's closed form
    x0 = _sample(gaussian, 5, 0)
    inv = invert(
        gaussian.prior, x0, gaussian.prior.schedule, steps=10, t_end=0.5, method="fixed_point", fixed_point_iters=30
    )
    expected = x0
    for k in range(len(inv.schedule)):
        expected = gaussian.ddim_inverse(expected, _ab(inv.schedule, k), _ab(inv.schedule, k - 1))
    torch.testing.assert_close(inv.latent, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("t_end", [0.6, 1.0])
def test_euler_latent_converges_to_the_exact_probability_flow_at_first_order(gaussian, t_end):
    # the flow of N(mu, v I) in closed form: y(sigma) - mu = (x0 - mu) sqrt((v + sigma^2) / v)
    x0 = _sample(gaussian, 5, 1)
    errors = []
    for steps in (25, 100, 400):
        inv = invert(gaussian.prior, x0, gaussian.prior.schedule, steps=steps, t_end=t_end)
        exact = gaussian.flow(x0, _ab(inv.schedule, len(inv.schedule) - 1))
        errors.append(float(((inv.latent - exact).norm(dim=1) / exact.norm(dim=1)).max()))
    assert errors[2] < 0.02
    assert 3 < errors[0] / errors[1] < 5 and 3 < errors[1] / errors[2] < 5  # 4 times the steps, a quarter the error


def test_inversion_diagnostics_report_the_roundtrip_through_ddim_and_gaussianity(gaussian):
    # the round trip, computed here through the closed-form DDIM chain, is far from exact for 10 Euler steps
    x0 = _sample(gaussian, 4, 2)
    inv = invert(gaussian.prior, x0, gaussian.prior.schedule, steps=10, t_end=0.5)
    back = inv.latent
    for k in range(len(inv.schedule) - 1, -1, -1):
        back = gaussian.ddim(back, _ab(inv.schedule, k), _ab(inv.schedule, k - 1))
    diag = inv.diagnostics(gaussian.prior, x0)
    expected = (back - x0).norm(dim=1) / x0.norm(dim=1)
    assert float(expected.min()) > 0.05
    torch.testing.assert_close(diag["roundtrip_rel_error"], expected, rtol=1e-9, atol=0)
    assert set(diag) >= {"mean", "std"}  # the latent's statistics: latent_statistics' own tests
