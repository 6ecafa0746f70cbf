"""DPS: per-sample guidance, reproducibility, and that guidance fits the measurement."""

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Variance
from reguidance.guidance.dps import dps


def run(prior, operator, y, ids, **kw):
    kw.setdefault("step_size", 1.0)
    kw.setdefault("steps", 30)
    return dps(prior, operator, y, rng=BatchRNG.from_seed(5, ids), **kw)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_dps_results_do_not_depend_on_the_batch(gmm_prior, gmm_problem, sampler):
    operator, _, y = gmm_problem
    full = run(gmm_prior, operator, y, range(6), sampler=sampler, eta=0.5).x
    part = run(gmm_prior, operator, y[2:4], [2, 3], sampler=sampler, eta=0.5).x
    assert torch.allclose(full[2:4], part, atol=1e-10)


def test_same_seed_same_output(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    assert torch.equal(run(gmm_prior, operator, y, range(6)).x, run(gmm_prior, operator, y, range(6)).x)


def test_guidance_fits_the_measurement_better_than_unguided_sampling(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    guided = run(gmm_prior, operator, y, range(6), steps=100, step_size=1.0).x
    free = run(gmm_prior, operator, y, range(6), steps=100, step_size=0.0).x
    assert operator.residual_norm(guided, y).mean() < 0.5 * operator.residual_norm(free, y).mean()


def test_dps_starts_from_a_given_latent_deterministically(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    latent = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sched = gmm_prior.schedule.spaced(20)
    a = dps(gmm_prior, operator, y, levels=sched, latent=latent, sampler="ddim", rng=BatchRNG.from_seed(0, 6)).x
    b = dps(gmm_prior, operator, y, levels=sched, latent=latent, sampler="ddim", rng=BatchRNG.from_seed(9, 6)).x
    assert torch.equal(a, b)  # deterministic steps from the same latent draw nothing from the generators


def test_nfe_is_the_number_of_levels(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    assert run(gmm_prior, operator, y[:1], [0], steps=13).nfe == 13


def test_dps_needs_an_rng(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    with pytest.raises(TypeError, match="rng"):
        dps(gmm_prior, operator, y, steps=5)  # type: ignore[call-arg]  # the missing rng is what is tested


def test_dps_rejects_a_negative_step_size(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    with pytest.raises(ValueError, match="step_size"):
        run(gmm_prior, operator, y, range(6), step_size=-1.0)


def test_steps_and_levels_cannot_both_be_given(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    with pytest.raises(ValueError, match="steps or levels"):
        run(gmm_prior, operator, y, range(6), steps=5, levels=gmm_prior.schedule.spaced(5))


def test_one_ddim_dps_step_on_a_gaussian_prior_matches_the_hand_derivation():
    """For a Gaussian prior N(mu, s^2 I) Tweedie's estimate is linear in x_t,

        x0_hat = mu + c (x_t - sqrt(ab) mu),          c = sqrt(ab) s^2 / (ab s^2 + 1 - ab),

    so grad_{x_t} ||y - A x0_hat|| = c A^T (A x0_hat - y) / ||A x0_hat - y|| and the DDIM (eta = 0) step is
    sqrt(ab') x0_hat + sqrt(1 - ab') (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab), minus step_size times that gradient."""
    from reguidance.diffusion import Schedule
    from reguidance.operators import MatrixOperator
    from reguidance.priors.gmm import GaussianMixture, GMMPrior

    d, s2 = 5, 0.3
    mu = torch.linspace(-0.5, 0.5, d, dtype=torch.float64)
    prior = GMMPrior(GaussianMixture.isotropic(torch.ones(1), mu[None], s2), Schedule.linear())
    a = torch.randn(2, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    operator = MatrixOperator(a, sigma_y=0.1)
    x_t = torch.randn(3, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    levels = Schedule.linear().respace([300, 400])
    ab, ab_next = float(levels.alphas_cumprod[1]), float(levels.alphas_cumprod[0])

    c = ab**0.5 * s2 / (ab * s2 + 1 - ab)
    x0 = mu + c * (x_t - ab**0.5 * mu)
    r = x0 @ a.T - y
    grad = c * (r @ a) / r.norm(dim=1, keepdim=True)
    ddim = ab_next**0.5 * x0 + (1 - ab_next) ** 0.5 * (x_t - ab**0.5 * x0) / (1 - ab) ** 0.5
    expected = ddim - 0.7 * grad

    first = []

    def keep_the_first_step(info):
        first.append(info.x)
        return True  # stop: one step is compared

    dps(
        prior,
        operator,
        y,
        levels=levels,
        rng=BatchRNG.from_seed(0, 3),
        latent=x_t,
        step_size=0.7,
        sampler="ddim",
        callback=keep_the_first_step,
    )
    torch.testing.assert_close(first[0], expected, rtol=1e-6, atol=1e-6)  # the mixture prior rounds to ~1e-7


class _LinearEps:
    """A stand-in prior whose noise prediction is ``eps(x, t) = a x``: every step can be written out by hand."""

    variance: Variance = "fixed_small"
    signal_shape: tuple[int, ...] = (2,)

    def __init__(self, schedule, a: float) -> None:
        self.schedule, self.a = schedule, a

    def predict(self, x_t, t):
        from reguidance.priors.base import PriorOutput

        return PriorOutput(self.a * x_t)


def test_the_jacobian_free_step_is_the_hand_written_one():
    # one DDIM (eta 0) step from level ab to the data, A = I (2x2), sigma_y 0.1:
    #   x0 = (x - sqrt(1 - ab) a x) / sqrt(ab),  g0 = (x0 - y) / ||x0 - y||,  x_next = x0 - zeta g0 / sqrt(ab)
    from reguidance.diffusion import Schedule
    from reguidance.guidance import DPS, Problem, solve
    from reguidance.operators import MatrixOperator

    base = Schedule.linear()
    levels = base.spaced(1, 0.5)
    ab = float(levels.alphas_cumprod[-1])
    prior = _LinearEps(base, a=0.3)
    x = torch.tensor([[0.4, -0.2]], dtype=torch.float64)
    y = torch.tensor([[0.1, 0.3]], dtype=torch.float64)
    op = MatrixOperator(torch.eye(2, dtype=torch.float64), sigma_y=0.1)
    zeta = 0.05
    config = DPS(step_size=zeta, sampler="ddim", guidance="tweedie")
    out = solve(config, Problem(prior, op, y, BatchRNG.from_seed(0, 1)), levels=levels, latent=x).x
    x0 = (x - (1 - ab) ** 0.5 * 0.3 * x) / ab**0.5
    g0 = (x0 - y) / (x0 - y).norm()
    torch.testing.assert_close(out, x0 - zeta * g0 / ab**0.5)


@pytest.mark.parametrize(("every", "steps", "guided"), [(1, 7, 7), (3, 7, 3), (5, 10, 2), (100, 7, 1)])
@pytest.mark.parametrize("guidance", ["network", "tweedie"])
def test_only_every_kth_step_is_guided_counting_from_the_first(gmm_prior, gmm_problem, every, steps, guided, guidance):
    from reguidance.guidance import DPS, Problem, solve
    from reguidance.operators import MatrixOperator

    operator, _, y = gmm_problem
    calls = []

    class Counting(MatrixOperator):
        def residual_norm(self, x, measurement):
            if torch.is_grad_enabled() and x.requires_grad:
                calls.append(1)
            return super().residual_norm(x, measurement)

    counting = Counting(operator.matrix(), sigma_y=operator.sigma_y)
    config = DPS(steps=steps, guidance_every=every, guidance=guidance)
    solve(config, Problem(gmm_prior, counting, y, BatchRNG.from_seed(0, 6)))
    assert len(calls) == guided == config.guided_levels()
