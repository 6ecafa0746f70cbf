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
