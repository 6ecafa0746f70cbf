"""The diffusion core: schedules, respacing, Tweedie and the DDIM / DDPM steps."""

import math

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule, ddim_step, ddpm_step, eps_from_x0, p_mean_variance, x0_from_eps


def test_linear_schedule_matches_guided_diffusion_betas():
    s = Schedule.linear()
    assert len(s) == 1000
    assert torch.allclose(s.betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), atol=1e-12)


def test_cosine_schedule_alpha_bar_follows_the_cosine_law():
    s = Schedule.cosine(1000)
    u = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    f = lambda v: torch.cos((v + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = f(u + 1 / 1000) / f(torch.zeros(1, dtype=torch.float64))
    got = s.alphas_cumprod[(u * 1000).long()]
    assert torch.allclose(got, expected, rtol=1e-6)


def test_spaced_schedule_keeps_the_first_and_last_timesteps_and_the_alpha_bars():
    base = Schedule.linear()
    s = base.spaced(100)
    assert s.timestep_map[0] == 0 and s.timestep_map[-1] == 999
    assert torch.equal(s.alphas_cumprod, base.alphas_cumprod[s.timestep_map])


def test_respaced_betas_chain_the_kept_levels_exactly():
    base = Schedule.linear()
    s = base.spaced(10)
    assert torch.allclose(torch.cumprod(1 - s.betas, 0), s.alphas_cumprod, rtol=1e-12)


def test_partial_depth_spacing_ends_at_the_requested_fraction():
    s = Schedule.linear().spaced(20, t_end=0.5)
    assert int(s.timestep_map[-1]) == round(0.5 * 999)


def test_spacing_rejects_more_steps_than_levels():
    with pytest.raises(ValueError, match="num_steps"):
        Schedule.linear().spaced(20, t_end=0.01)


def test_tweedie_and_eps_are_inverse_maps():
    ab = torch.tensor(0.3, dtype=torch.float64)
    x0 = torch.randn(4, 5, dtype=torch.float64)
    eps = torch.randn(4, 5, dtype=torch.float64)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    assert torch.allclose(x0_from_eps(x_t, eps, ab), x0)
    assert torch.allclose(eps_from_x0(x_t, x0, ab), eps)


def test_deterministic_ddim_step_to_the_data_returns_x0():
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.allclose(ddim_step(x0, eps, torch.tensor(0.5), torch.tensor(1.0)), x0)


def test_ddim_with_eta_one_has_the_ddpm_posterior_variance():
    ab_t, ab_s = torch.tensor(0.4, dtype=torch.float64), torch.tensor(0.6, dtype=torch.float64)
    x0 = torch.zeros(20000, 1, dtype=torch.float64)
    eps = torch.zeros_like(x0)
    rng = BatchRNG.from_seed(0, 20000)
    out = ddim_step(x0, eps, ab_t, ab_s, eta=1.0, rng=rng)
    posterior_var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
    assert out.var().item() == pytest.approx(float(posterior_var), rel=0.05)


def test_ddpm_step_adds_no_noise_at_the_last_level():
    s = Schedule.linear().spaced(10)
    x = torch.randn(3, 4, dtype=torch.float64)
    i = torch.zeros(3, dtype=torch.int64)
    out = p_mean_variance(s, x, i, torch.randn_like(x))
    assert torch.equal(ddpm_step(out, i, BatchRNG.from_seed(0, 3)), out["mean"])


def test_ddpm_mean_is_the_forward_posterior_mean_given_the_true_x0():
    s = Schedule.linear()
    i = torch.full((2,), 500)
    ab, ab_prev = s.alphas_cumprod[500], s.alphas_cumprod[499]
    x0, eps = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    beta = 1 - ab / ab_prev
    expected = ab_prev.sqrt() * beta / (1 - ab) * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    assert torch.allclose(p_mean_variance(s, x_t, i, eps)["mean"], expected)
