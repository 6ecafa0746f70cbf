"""The Gaussian-mixture testbed: exact densities, scores, samples and posteriors against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.priors.base import Prior
from reguidance.priors.gmm import GaussianMixture, GaussianMixturePosterior, GMMPrior

F64 = torch.float64


# ------------------------------------------------------------------------------------------------ fixtures
def isotropic_3d() -> GaussianMixture:
    means = torch.tensor([[0.5, -0.2, 0.1], [-0.4, 0.3, -0.3]], dtype=F64)
    return GaussianMixture.isotropic(torch.tensor([0.3, 0.7]), means, torch.tensor([0.04, 0.09]))


def diagonal_3d() -> GaussianMixture:
    means = torch.tensor([[0.5, -0.2, 0.1], [-0.4, 0.3, -0.3], [0.0, 0.6, 0.5]], dtype=F64)
    variances = torch.tensor([[0.02, 0.1, 0.05], [0.2, 0.01, 0.03], [0.05, 0.05, 0.3]], dtype=F64)
    return GaussianMixture.diagonal(torch.tensor([0.2, 0.5, 0.3]), means, variances)


def low_rank_3d() -> GaussianMixture:
    g = torch.Generator().manual_seed(3)
    means = torch.tensor([[0.5, -0.2, 0.1], [-0.4, 0.3, -0.3]], dtype=F64)
    factors = 0.3 * torch.randn(2, 3, 1, generator=g, dtype=F64)
    return GaussianMixture.low_rank(torch.tensor([0.6, 0.4]), means, factors, torch.tensor([1e-3, 4e-3]))


MIXTURES = {"isotropic": isotropic_3d, "diagonal": diagonal_3d, "low_rank": low_rank_3d}


def scipy_log_prob(gm: GaussianMixture, x: np.ndarray, ab: float) -> np.ndarray:
    """log p_t(x) summed component by component with scipy."""
    covs = gm.covariances.numpy()
    terms = [
        math.log(float(w)) + multivariate_normal(math.sqrt(ab) * mu, ab * c + (1 - ab) * np.eye(len(mu))).logpdf(x)
        for w, mu, c in zip(gm.weights.numpy(), gm.means.numpy(), covs, strict=True)
    ]
    return logsumexp(np.stack(terms), axis=0)


def mixture_2d() -> GaussianMixture:
    means = torch.tensor([[0.6, 0.3], [-0.5, -0.4]], dtype=F64)
    factors = torch.tensor([[[0.4], [0.2]], [[-0.1], [0.5]]], dtype=F64)
    return GaussianMixture.low_rank(torch.tensor([0.45, 0.55]), means, factors, torch.tensor([0.01, 0.02]))


# ------------------------------------------------------------------------------------------ scores and eps
@pytest.mark.parametrize("kind", sorted(MIXTURES))
@pytest.mark.parametrize("ab", [0.999, 0.5, 0.01])
def test_eps_is_minus_sqrt_one_minus_alpha_bar_times_numerical_gradient_of_log_prob(kind: str, ab: float) -> None:
    gm = MIXTURES[kind]()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.5
    h = 1e-5
    grad = torch.zeros_like(x)
    for j in range(3):
        e = torch.zeros(3, dtype=F64)
        e[j] = h
        grad[:, j] = (gm.log_prob(x + e, ab) - gm.log_prob(x - e, ab)) / (2 * h)
    torch.testing.assert_close(gm.eps(x, ab), -math.sqrt(1 - ab) * grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gm.score(x, ab), grad, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("ab", [0.999, 0.5, 0.01])
def test_x0_mean_and_eps_agree_through_tweedie(ab: float) -> None:
    gm = GaussianMixture.random(4, 3, rank=2, seed=1)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    x0 = (x - math.sqrt(1 - ab) * gm.eps(x, ab)) / math.sqrt(ab)
    torch.testing.assert_close(gm.x0_mean(x, ab), x0, rtol=1e-9, atol=1e-9)


def test_x0_mean_is_the_identity_at_alpha_bar_one() -> None:
    gm = low_rank_3d()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(gm.x0_mean(x, 1.0), x)
    torch.testing.assert_close(gm.eps(x, 1.0), torch.zeros_like(x))


def test_per_sample_alpha_bar_equals_one_level_at_a_time() -> None:
    gm = diagonal_3d()
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    ab = torch.tensor([0.9, 0.4, 0.05], dtype=F64)
    rows = torch.stack([gm.eps(x[i : i + 1], float(ab[i]))[0] for i in range(3)])
    torch.testing.assert_close(gm.eps(x, ab), rows)
    lp = torch.stack([gm.log_prob(x[i : i + 1], float(ab[i]))[0] for i in range(3)])
    torch.testing.assert_close(gm.log_prob(x, ab), lp)


def test_results_come_back_in_the_input_dtype() -> None:
    gm = low_rank_3d()
    x = torch.randn(2, 3)
    assert gm.eps(x, 0.5).dtype == torch.float32
    assert gm.x0_mean(x, 0.5).dtype == torch.float32
    assert gm.log_prob(x).dtype == torch.float32
    assert gm.eps(x.double(), 0.5).dtype == F64


# --------------------------------------------------------------------------------------------- densities
@pytest.mark.parametrize("ab", [1.0, 0.3])
def test_log_prob_integrates_to_one_in_one_dimension(ab: float) -> None:
    gm = GaussianMixture.isotropic(
        torch.tensor([0.2, 0.5, 0.3]), torch.tensor([[-0.7], [0.1], [0.6]]), torch.tensor([0.01, 0.05, 0.002])
    )
    grid = torch.linspace(-6, 6, 200_001, dtype=F64)[:, None]
    density = gm.log_prob(grid, ab).exp()
    assert float(torch.trapezoid(density, grid[:, 0])) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("ab", [1.0, 0.7, 0.05])
@pytest.mark.parametrize("kind", sorted(MIXTURES))
def test_log_prob_matches_scipy_mixture_of_multivariate_normals(kind: str, ab: float) -> None:
    gm = MIXTURES[kind]()
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(5), dtype=F64) * 0.6
    expected = scipy_log_prob(gm, x.numpy(), ab)
    np.testing.assert_allclose(gm.log_prob(x, ab).numpy(), expected, rtol=1e-10, atol=1e-10)


def test_responsibilities_sum_to_one_and_nearest_component_is_their_argmax() -> None:
    gm = GaussianMixture.random(5, 4, rank=2, seed=2)
    x, comp = gm.sample(50, seed=3)
    gamma = gm.responsibilities(x)
    torch.testing.assert_close(gamma.sum(1), torch.ones(50))
    assert torch.equal(gm.nearest_component(x), gamma.argmax(1))
    assert float((gm.nearest_component(x) == comp).float().mean()) > 0.95


# ---------------------------------------------------------------------------------------------- sampling
def test_sample_is_reproducible_and_independent_of_batch_size() -> None:
    gm = GaussianMixture.random(6, 3, rank=2, seed=0)
    x3, c3 = gm.sample(BatchRNG.from_seed(11, 3))
    x10, c10 = gm.sample(BatchRNG.from_seed(11, 10))
    again, _ = gm.sample(BatchRNG.from_seed(11, 3))
    assert torch.equal(x3, x10[:3]) and torch.equal(c3, c10[:3])
    assert torch.equal(x3, again)
    shuffled, _ = gm.sample(BatchRNG.from_seed(11, [2, 0]))
    assert torch.equal(shuffled, x3[[2, 0]])


def test_sample_moments_and_component_frequencies_match_the_mixture() -> None:
    gm = diagonal_3d()
    n = 20_000
    x, comp = gm.sample(n, seed=7, dtype=F64)
    torch.testing.assert_close(x.mean(0), gm.mean(), atol=0.015, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), gm.covariance(), atol=0.01, rtol=0)
    freq = torch.bincount(comp, minlength=3).double() / n
    torch.testing.assert_close(freq, gm.weights, atol=0.015, rtol=0)


def test_random_mixture_is_reproducible_multimodal_and_roughly_in_unit_range() -> None:
    a = GaussianMixture.random(8, 5, rank=2, seed=4)
    b = GaussianMixture.random(8, 5, rank=2, seed=4)
    assert torch.equal(a.means, b.means) and torch.equal(a.eigvals, b.eigvals)
    assert a.num_components == 5 and a.dim == 8
    x, _ = a.sample(2000, seed=0)
    assert float((x.abs() <= 1).float().mean()) > 0.99
    # well separated: samples are attributed to the component that drew them
    _, comp = a.sample(2000, seed=1)
    x, _ = a.sample(2000, seed=1)
    assert float((a.nearest_component(x) == comp).float().mean()) > 0.99
    # concentrated near rank-2 subspaces: 6 of 8 eigenvalues are tiny
    small = (a.eigvals < 0.01 * a.eigvals.max(dim=1, keepdim=True).values).sum(1)
    assert torch.equal(small, torch.full((5,), 6))


# ----------------------------------------------------------------------------------------------- geometry
def test_manifold_distance_is_zero_at_a_mean_and_grows_off_the_subspace() -> None:
    means = torch.tensor([[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]], dtype=F64)
    factors = torch.tensor([[[0.0], [0.3], [0.0]], [[0.0], [0.0], [0.3]]], dtype=F64)
    gm = GaussianMixture.low_rank(torch.tensor([0.5, 0.5]), means, factors, torch.tensor([1e-4, 1e-4]))
    assert float(gm.manifold_distance(means[:1])[0]) == pytest.approx(0.0, abs=1e-12)
    off = torch.tensor([0.0, 0.0, 1.0], dtype=F64)  # orthogonal to component 0's subspace
    steps = torch.tensor([0.0, 0.01, 0.02, 0.05], dtype=F64)
    dist = gm.manifold_distance(means[0] + steps[:, None] * off)
    torch.testing.assert_close(dist, steps / 1e-2)  # distance / s with s = sqrt(1e-4)
    along = gm.manifold_distance(means[0] + steps[:, None] * torch.tensor([0.0, 1.0, 0.0], dtype=F64))
    assert bool((along[1:] < dist[1:]).all())


# ---------------------------------------------------------------------------------------------- posterior
def brute_force_posterior(gm: GaussianMixture, a: torch.Tensor, y: torch.Tensor, sigma_y: float):
    """Posterior mean, covariance and component weights of x given y on a 2-D grid."""
    u = torch.linspace(-3, 3, 601, dtype=F64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    joint = gm.log_prob(grid)[:, None] + gm.responsibilities(grid).log()  # (N, K): log w_k N_k(x)
    loglik = -0.5 * (((grid @ a.T) - y) ** 2).sum(1) / sigma_y**2
    logpost = joint + loglik[:, None]
    p = torch.softmax(logpost.reshape(-1), 0).reshape(logpost.shape)
    weights = p.sum(0)
    px = p.sum(1)
    mean = px @ grid
    cov = (grid - mean).T @ ((grid - mean) * px[:, None])
    return mean, cov, weights


def test_posterior_mean_and_weights_match_brute_force_bayes_on_a_grid() -> None:
    gm = mixture_2d()
    a = torch.tensor([[1.0, 0.5]], dtype=F64)
    y = torch.tensor([[0.2], [-0.6]], dtype=F64)
    post = gm.posterior(a, y, 0.3)
    for i in range(2):
        mean, _, weights = brute_force_posterior(gm, a, y[i], 0.3)
        torch.testing.assert_close(post.mean()[i], mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(post.weights[i], weights, atol=1e-6, rtol=0)


def test_posterior_samples_match_brute_force_mean_and_covariance() -> None:
    gm = mixture_2d()
    a = torch.tensor([[1.0, 0.5]], dtype=F64)
    y = torch.tensor([0.2], dtype=F64)
    n = 8000
    post = gm.posterior(a, y.expand(n, 1), 0.3)
    x = post.sample(BatchRNG.from_seed(5, n))
    mean, cov, _ = brute_force_posterior(gm, a, y, 0.3)
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.02, rtol=0)


def test_posterior_sample_is_independent_of_batch_size() -> None:
    gm = GaussianMixture.random(4, 3, rank=1, seed=0)
    a = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    small = gm.posterior(a, y[:2], 0.1).sample(BatchRNG.from_seed(3, 2))
    big = gm.posterior(a, y, 0.1).sample(BatchRNG.from_seed(3, 5))
    assert isinstance(gm.posterior(a, y, 0.1), GaussianMixturePosterior)
    assert small.dtype == torch.float32
    torch.testing.assert_close(small, big[:2])


def test_noiseless_posterior_samples_reproduce_the_measurement() -> None:
    gm = low_rank_3d()
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=F64)
    y = torch.tensor([[0.3, -0.1], [0.0, 0.4]], dtype=F64)
    post = gm.posterior(a, y, 0.0)
    x = post.sample(BatchRNG.from_seed(0, 2))
    torch.testing.assert_close(x @ a.T, y, atol=1e-8, rtol=0)
    torch.testing.assert_close(post.mean() @ a.T, y, atol=1e-8, rtol=0)
    assert post.most_likely_component().shape == (2,)


def test_noiseless_posterior_with_singular_a_s_a_transpose_is_refused() -> None:
    gm = low_rank_3d()
    a = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=F64)  # rank 1, m = 2
    with pytest.raises(ValueError, match="sigma_y = 0"):
        gm.posterior(a, torch.zeros(1, 2), 0.0)


# -------------------------------------------------------------------------------------------------- prior
def test_gmm_prior_predict_is_the_mixture_eps_at_the_schedules_alpha_bar() -> None:
    gm = GaussianMixture.random(5, 3, rank=2, seed=0)
    schedule = Schedule.linear()
    prior = GMMPrior(gm, schedule)
    assert isinstance(prior, Prior) and prior.signal_shape == (5,)
    t = torch.tensor([0, 10, 500, 999], dtype=torch.int64)
    x = torch.randn(4, 5)
    expected = gm.eps(x, schedule.alphas_cumprod[t])
    out = prior.predict(x, t)
    torch.testing.assert_close(out.eps, expected)
    assert out.var_values is None and out.eps.dtype == torch.float32
    torch.testing.assert_close(prior(x, t), expected)


def test_gmm_prior_on_a_respaced_schedule_looks_up_original_timesteps() -> None:
    gm = GaussianMixture.random(3, 2, seed=0)
    full = Schedule.linear()
    prior = GMMPrior(gm, full.spaced(10))
    t = prior.schedule.timestep_map[[0, 4, 9]]
    x = torch.randn(3, 3)
    torch.testing.assert_close(prior.predict(x, t).eps, gm.eps(x, full.alphas_cumprod[t]))
    with pytest.raises(ValueError, match="t holds timesteps"):
        prior.predict(x, torch.tensor([1, 2, 3]))


def test_gmm_prior_keeps_float64_buffers_through_to() -> None:
    prior = GMMPrior(GaussianMixture.random(3, 2, seed=0)).to(torch.float32)
    assert prior.means.dtype == F64 and prior.device == torch.device("cpu")
    moved = prior.mixture.to("cpu")
    assert torch.equal(moved.means, prior.means) and moved.means.data_ptr() != prior.means.data_ptr()


# -------------------------------------------------------------------------------------------- bad inputs
def test_negative_weights_are_refused_naming_weights() -> None:
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture.isotropic(torch.tensor([0.5, -0.5]), torch.zeros(2, 2), torch.ones(2))


def test_nonpositive_variances_are_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="variances"):
        GaussianMixture.diagonal(torch.ones(1), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="noise_variance"):
        GaussianMixture.low_rank(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2, 1), torch.zeros(1))


def test_negative_sigma_y_is_refused_naming_sigma_y() -> None:
    with pytest.raises(ValueError, match="sigma_y"):
        mixture_2d().posterior(torch.ones(1, 2), torch.zeros(3, 1), -0.1)


def test_measurement_of_the_wrong_shape_is_refused_naming_y() -> None:
    with pytest.raises(ValueError, match="y has shape"):
        mixture_2d().posterior(torch.ones(1, 2), torch.zeros(3, 2), 0.1)


def test_matrix_of_the_wrong_shape_is_refused_naming_matrix() -> None:
    with pytest.raises(ValueError, match="matrix"):
        mixture_2d().posterior(torch.ones(1, 3), torch.zeros(3, 1), 0.1)


def test_x_with_nan_is_refused_naming_x() -> None:
    x = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="x contains"):
        mixture_2d().log_prob(x)
    with pytest.raises(ValueError, match="x_t contains"):
        mixture_2d().eps(x, 0.5)


def test_x_of_the_wrong_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match=r"x has shape \(2, 3\)"):
        mixture_2d().manifold_distance(torch.zeros(2, 3))


def test_alpha_bar_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture_2d().eps(torch.zeros(2, 2), 0.0)
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture_2d().eps(torch.zeros(2, 2), torch.tensor([0.5, 1.5]))


def test_theory_mode_accuracy_interval_stays_inside_zero_one():
    from reguidance.studies.theory import TheoryConfig, run_theory

    report, _ = run_theory(TheoryConfig(candidates=8, candidate_steps=3).with_options(inversion_steps=3, dps_steps=3))
    for method in report["methods"].values():
        lo, hi = method["ci95"]["mode_accuracy"]
        assert 0.0 <= lo <= method["mode_accuracy"] <= hi <= 1.0


def test_the_reported_theory_problems_are_held_out_from_the_sweeps():
    """The sweep (seed 0) and the reported table (seed 1) share the testbed, not the problems."""
    from dataclasses import replace

    from reguidance.studies.theory import TheoryConfig, run_theory

    cfg = TheoryConfig(candidates=4, candidate_steps=2).with_options(inversion_steps=2, dps_steps=2)
    _, sweep = run_theory(replace(cfg, seed=0))
    _, report = run_theory(cfg)
    assert torch.equal(sweep["means"], report["means"])  # the same mixture
    assert not torch.isclose(sweep["truth"], report["truth"]).any()  # other problems
