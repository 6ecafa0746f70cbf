"""The ReGuidance wrapper: inversion then DPS from the latent, its diagnostics, and its input checks."""

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.operators import MatrixOperator
from reguidance.wrapper import ReGuidanceConfig, reguide

FAST = {"inversion_steps": 20, "dps_steps": 20}


def test_reguidance_raises_the_reward_of_pseudo_inverse_candidates(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    candidate = torch.zeros(6, 8, dtype=torch.float64)  # a poor, off-manifold candidate
    out = reguide(candidate, y, operator, gmm_prior, inversion_steps=50, dps_steps=100)
    assert out.reward_after.mean() > out.reward_before.mean()
    assert gmm_prior.mixture.manifold_distance(out.x).mean() < gmm_prior.mixture.manifold_distance(candidate).mean()


def test_result_reports_network_evaluations_and_time(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    out = reguide(truth, y, operator, gmm_prior, **FAST)
    assert out.nfe == 40 and out.nfe_inversion == 20
    assert out.seconds > 0
    assert out.x.shape == truth.shape and out.latent.shape == truth.shape


def test_results_do_not_depend_on_the_batch(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    cfg = ReGuidanceConfig(sampler="ddpm", **FAST)
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
        ReGuidanceConfig(**option)


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
        ReGuidanceConfig(start="sdedit")


def test_a_given_latent_skips_the_inversion_and_reproduces_the_run(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    first = reguide(truth, y, operator, gmm_prior, seed=4, **FAST)
    again = reguide(truth, y, operator, gmm_prior, seed=4, latent=first.latent, **FAST)
    assert again.nfe == 20 and again.nfe_inversion == 0  # DPS only
    assert torch.allclose(again.x, first.x, atol=1e-10)


def test_spread_draws_k_restorations_from_one_latent(gmm_prior, gmm_problem):
    from reguidance.wrapper import spread

    operator, truth, y = gmm_problem
    cfg = ReGuidanceConfig(**FAST)
    s = spread(truth, y, operator, gmm_prior, k=3, config=cfg, seed=4)
    assert s.nfe == 20 + 3 * 20  # one inversion, three DPS runs
    assert torch.allclose(s.samples[0], reguide(truth, y, operator, gmm_prior, config=cfg, seed=4).x, atol=1e-10)
    assert (s.samples[1] - s.samples[0]).abs().max() > 1e-3  # other draws, other noise
    by_hand = ((s.samples - s.samples.mean(0)) ** 2).sum(0).div(2).sqrt()  # Bessel: divide by k - 1
    assert torch.allclose(s.std, by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="k must be at least 2"):
        spread(truth, y, operator, gmm_prior, k=1, config=cfg)


def test_adaptive_depth_keeps_the_depth_whose_consistency_is_closest_to_one(gmm_prior, gmm_problem):
    from reguidance.wrapper import adaptive_depth

    operator, truth, y = gmm_problem
    cfg = ReGuidanceConfig(inversion_steps=20, dps_steps=20)
    out, chosen = adaptive_depth(truth, y, operator, gmm_prior, depths=[0.2, 0.6], config=cfg, seed=1)
    assert out.nfe == 2 * (10 + 10)  # each depth with half the budget: about one fixed-depth run
    runs = [
        reguide(truth, y, operator, gmm_prior, t_end=d, inversion_steps=10, dps_steps=10, seed=1) for d in (0.2, 0.6)
    ]
    gaps = [(operator.consistency(r.x.clamp(-1, 1), y) - 1).abs() for r in runs]
    for i in range(truth.shape[0]):
        k = 0 if gaps[0][i] <= gaps[1][i] else 1
        assert chosen[i] == (0.2, 0.6)[k]
        assert torch.allclose(out.x[i], runs[k].x[i], atol=1e-10)
