"""The ReGuidance wrapper: inversion then DPS from the latent, its diagnostics, and its input checks."""

from typing import TypedDict, cast

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.operators import MatrixOperator
from reguidance.priors import Prior
from reguidance.wrapper import ReGuidance, reguide


class Budget(TypedDict):
    inversion_steps: int
    dps_steps: int


FAST: Budget = {"inversion_steps": 20, "dps_steps": 20}


def _gaussian_problem(gaussian):
    """A candidate off the data law's mean, and 2 noisy linear measurements of it (6-dimensional signals); the
    operator's matrix is :func:`_matrix` (the generator's first draw)."""
    g = torch.Generator().manual_seed(7)
    a = torch.randn(2, 6, generator=g, dtype=torch.float64) / 6**0.5
    operator = MatrixOperator(a, sigma_y=0.1)
    candidate = gaussian.mu + 0.8 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = operator.measure(candidate, BatchRNG.from_seed(1, 4))
    return operator, candidate, y


def _matrix() -> torch.Tensor:
    return torch.randn(2, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64) / 6**0.5


def test_reguidance_latent_is_the_exact_probability_flow_of_the_candidate(gaussian):
    # for N(mu, v I) data the flow to sigma is y - mu = (x_hat - mu) sqrt((v + sigma^2) / v); Euler's error is
    # first order in the step (0.5% at 400 steps, see test_inversion)
    operator, candidate, y = _gaussian_problem(gaussian)
    out = reguide(candidate, y, operator, gaussian.prior, inversion_steps=400, dps_steps=5, t_end=0.5, seed=0)
    ab = float(gaussian.prior.schedule.alphas_cumprod[round(0.5 * 999)])
    exact = gaussian.flow(candidate, ab)
    assert float(((out.latent - exact).norm(dim=1) / exact.norm(dim=1)).max()) < 0.01


def test_reguidance_output_is_one_hand_derived_dps_step_from_its_latent(gaussian):
    """With one deterministic DPS level at t_end the output is Tweedie's estimate at the latent minus
    step_size * c A^T r / ||r||, r = A x0_hat - y, c = sqrt(ab) v / (ab v + 1 - ab) (d x0_hat / d x_t)."""
    operator, candidate, y = _gaussian_problem(gaussian)
    out = reguide(
        candidate,
        y,
        operator,
        gaussian.prior,
        inversion_steps=50,
        dps_steps=1,
        t_end=0.5,
        sampler="ddim",
        step_size=0.3,
        seed=0,
    )
    ab = float(gaussian.prior.schedule.alphas_cumprod[round(0.5 * 999)])
    c = ab**0.5 * gaussian.v / (ab * gaussian.v + 1 - ab)
    x0 = gaussian.x0_hat(out.latent, ab)
    a = _matrix()
    r = x0 @ a.T - y
    expected = x0 - 0.3 * c * (r @ a) / r.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out.x, expected, rtol=1e-10, atol=1e-12)


def test_result_reports_network_evaluations_and_time(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    out = reguide(truth, y, operator, gmm_prior, **FAST)
    assert out.nfe == 40 and out.nfe_inversion == 20
    assert out.seconds > 0
    assert out.x.shape == truth.shape and out.latent.shape == truth.shape


def test_results_do_not_depend_on_the_batch(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    cfg = ReGuidance().replace(sampler="ddpm", **FAST)
    full = reguide(truth, y, operator, gmm_prior, config=cfg, rng=BatchRNG.from_seed(0, range(6))).x
    part = reguide(truth[3:], y[3:], operator, gmm_prior, config=cfg, rng=BatchRNG.from_seed(0, [3, 4, 5])).x
    assert torch.allclose(full[3:], part, atol=1e-10)


def test_candidate_with_wrong_shape_is_rejected_naming_it(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    with pytest.raises(ValueError, match=r"candidate has shape \(6, 7\)"):
        reguide(truth[:, :7], y, operator, gmm_prior, **FAST)


def test_measurement_with_wrong_shape_is_rejected_naming_it(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    with pytest.raises(ValueError, match="measurement"):
        reguide(truth, y[:, :2], operator, gmm_prior, **FAST)


def test_batch_size_mismatch_is_rejected(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    with pytest.raises(ValueError, match="samples"):
        reguide(truth[:2], y, operator, gmm_prior, **FAST)


def test_operator_for_another_signal_shape_is_rejected(gmm_prior, gmm_problem):
    _, truth, y = gmm_problem
    other = MatrixOperator(torch.randn(3, 5, dtype=torch.float64), sigma_y=0.1)
    with pytest.raises(ValueError, match="operator"):
        reguide(truth, y, other, gmm_prior, **FAST)


def test_nan_candidate_is_rejected(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    bad = truth.clone()
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="candidate"):
        reguide(bad, y, operator, gmm_prior, **FAST)


@pytest.mark.parametrize(
    ("option", "word"),
    [
        ({"inversion_steps": 0}, "inversion_steps"),
        ({"dps_steps": 0}, "dps_steps"),
        ({"t_end": 0.0}, "t_end"),
        ({"step_size": -1.0}, "step_size"),
        ({"sampler": "euler"}, "sampler"),
    ],
)
def test_bad_options_are_rejected_naming_them(option, word):
    with pytest.raises(ValueError, match=word):
        ReGuidance().replace(**option)


def test_negative_sigma_y_is_rejected():
    with pytest.raises(ValueError, match="sigma_y"):
        MatrixOperator(torch.eye(3), sigma_y=-0.1)


def test_renoise_start_is_the_candidate_forward_noised_to_t_end(gmm_prior, gmm_problem):
    """The latent handed to DPS is exactly
    sqrt(ab) x_hat + sqrt(1 - ab) n, n the first draw of each sample's generator."""
    operator, truth, y = gmm_problem
    out = reguide(truth, y, operator, gmm_prior, start="renoise", t_end=0.3, dps_steps=5, rng=BatchRNG.from_seed(4, 6))
    ab = float(gmm_prior.schedule.spaced(5, 0.3).alphas_cumprod[-1])
    n = BatchRNG.from_seed(4, 6).randn(8, dtype=torch.float64)
    torch.testing.assert_close(out.latent, ab**0.5 * truth + (1 - ab) ** 0.5 * n)
    assert out.nfe_inversion == 0 and out.nfe == 5


def test_fresh_start_ignores_the_candidate(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    a = reguide(truth, y, operator, gmm_prior, start="fresh", dps_steps=5, rng=BatchRNG.from_seed(4, 6))
    b = reguide(
        torch.zeros_like(truth), y, operator, gmm_prior, start="fresh", dps_steps=5, rng=BatchRNG.from_seed(4, 6)
    )
    assert torch.equal(a.x, b.x)
    torch.testing.assert_close(a.latent, BatchRNG.from_seed(4, 6).randn(8, dtype=torch.float64))


def test_an_unknown_start_is_refused():
    with pytest.raises(ValueError, match="start"):
        ReGuidance(start="sdedit")  # type: ignore[arg-type]  # not a Start, on purpose


def test_a_given_latent_skips_the_inversion_and_reproduces_the_run(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    first = reguide(truth, y, operator, gmm_prior, seed=4, **FAST)
    again = reguide(truth, y, operator, gmm_prior, seed=4, latent=first.latent, **FAST)
    assert again.nfe == 20 and again.nfe_inversion == 0  # DPS only
    assert torch.allclose(again.x, first.x, atol=1e-10)


def test_spread_draws_k_restorations_from_one_latent(gaussian):
    from reguidance.wrapper import spread

    operator, candidate, y = _gaussian_problem(gaussian)
    cfg = ReGuidance().replace(inversion_steps=400, dps_steps=20, t_end=0.5)
    s = spread(candidate, y, operator, gaussian.prior, k=3, config=cfg, seed=4)
    assert s.nfe == 400 + 3 * 20  # one inversion, three DPS runs
    ab = float(gaussian.prior.schedule.alphas_cumprod[round(0.5 * 999)])
    exact = gaussian.flow(candidate, ab)  # the one latent is the candidate's probability flow
    assert float(((s.latent - exact).norm(dim=1) / exact.norm(dim=1)).max()) < 0.01
    assert (s.samples[1] - s.samples[0]).abs().max() > 1e-3  # other draws, other noise
    by_hand = ((s.samples - s.samples.mean(0)) ** 2).sum(0).div(2).sqrt()  # Bessel: divide by k - 1
    assert torch.allclose(s.std, by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="k must be at least 2"):
        spread(candidate, y, operator, gaussian.prior, k=1, config=cfg)


def test_spread_of_a_deterministic_dps_is_zero(gaussian):
    # DPS's ancestral noise is the only thing the draws do not share: with DDIM (eta = 0) they coincide
    from reguidance.wrapper import spread

    operator, candidate, y = _gaussian_problem(gaussian)
    cfg = ReGuidance().replace(inversion_steps=20, dps_steps=10, sampler="ddim", eta=0.0)
    s = spread(candidate, y, operator, gaussian.prior, k=2, config=cfg, seed=4)
    assert torch.equal(s.samples[0], s.samples[1])
    assert float(s.std.abs().max()) == 0.0


def test_adaptive_depth_keeps_the_depth_whose_consistency_is_closest_to_one(monkeypatch):
    """Each depth's run is replaced by outputs set by hand: with A = I, y = 0 and sigma_y = 0.5 the consistency
    ||A x - y|| / (sigma_y sqrt(m)) of x = a (1, 1) is 2a, so the image-0 outputs (a = 0.55 at depth 0.2, 0.25 at
    0.6) have consistencies 1.1 and 0.5 (keep 0.2), the image-1 outputs (0.95, 0.6) have 1.9 and 1.2 (keep 0.6)."""
    from reguidance import wrapper

    operator = MatrixOperator(torch.eye(2, dtype=torch.float64), sigma_y=0.5)
    y = torch.zeros(2, 2, dtype=torch.float64)
    scale = {0.2: torch.tensor([0.55, 0.95]), 0.6: torch.tensor([0.25, 0.6])}
    seen = []

    def by_hand(candidate, measurement, operator, prior, *, config, seed, ids):
        seen.append(config)
        x = scale[config.t_end].double()[:, None].expand(2, 2).clone()
        return wrapper.ReGuidanceResult(
            x=x,
            nfe=7,
            timesteps=[],
            residuals=torch.zeros(0, 2),
            latent=-x,
            reward_before=torch.zeros(2),
            reward_after=torch.zeros(2),
            nfe_inversion=3,
            seconds=0.0,
            config=config,
        )

    monkeypatch.setattr(wrapper, "reguide", by_hand)
    cfg = ReGuidance().replace(inversion_steps=20, dps_steps=21)
    no_prior = cast(Prior, None)  # reguide is replaced: no prior runs
    out, chosen = wrapper.adaptive_depth(y, y, operator, no_prior, depths=[0.2, 0.6], config=cfg, seed=1)
    torch.testing.assert_close(chosen, torch.tensor([0.2, 0.6]))
    torch.testing.assert_close(out.x, torch.tensor([[0.55, 0.55], [0.6, 0.6]], dtype=torch.float64))
    torch.testing.assert_close(out.latent, -out.x)  # each image's latent from its chosen depth
    assert out.nfe == 14 and out.nfe_inversion == 6
    assert [(c.inversion_steps, c.dps_steps) for c in seen] == [(10, 10), (10, 10)]  # the budget split in two
