"""The operator contract: nonlinear forward models for DPS, DAPS and ReGuidance; clear refusals elsewhere."""

from typing import Any

import pytest
import torch
from torch import Tensor

from reguidance.conventions import BatchRNG, InputError
from reguidance.guidance import GuidanceWarning, daps, diffpir, dps, pigdm, reddiff
from reguidance.guidance.unconditional import sample
from reguidance.operators import Operator
from reguidance.wrapper import reguide


class Saturating(Operator):
    """``A(x) = tanh(M x)``: a saturating sensor, differentiable and nonlinear."""

    weight: Tensor

    def __init__(self, matrix: Tensor, sigma_y: float) -> None:
        super().__init__((matrix.shape[1],), (matrix.shape[0],), sigma_y)
        self.register_buffer("weight", matrix)

    def _forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x @ self.weight.T)


class Quantised(Saturating):
    """``A(x) = round(4 M x) / 4``: its gradient is zero almost everywhere."""

    def _forward(self, x: Tensor) -> Tensor:
        return torch.round(4 * x @ self.weight.T) / 4


@pytest.fixture
def saturating(gmm_prior):
    matrix = torch.randn(3, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) / 8**0.5
    operator = Saturating(matrix, sigma_y=0.05)
    truth, _ = gmm_prior.mixture.sample(BatchRNG.from_seed(0, 6))
    y = operator.measure(truth.double(), BatchRNG.from_seed(1, 6))
    return operator, y


def unguided_residual(prior, operator, y):
    x = sample(
        prior,
        torch.randn(6, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
        prior.schedule.spaced(50),
    )
    return operator.residual_norm(x, y).mean()


def test_dps_fits_a_nonlinear_measurement(gmm_prior, saturating):
    operator, y = saturating
    out = dps(gmm_prior, operator, y, steps=100, step_size=1.0, rng=BatchRNG.from_seed(5, 6))
    assert operator.residual_norm(out.x, y).mean() < 0.5 * unguided_residual(gmm_prior, operator, y)  # 0.29 seen


def test_daps_takes_the_autograd_gradient_of_a_nonlinear_forward_model(gmm_prior, saturating):
    operator, y = saturating
    options: dict[str, Any] = dict(steps=20, ode_steps=2, langevin_steps=20, step_size_min_ratio=1.0, tau=0.1)
    guided = daps(gmm_prior, operator, y, rng=BatchRNG.from_seed(5, 6), step_size=5e-3, **options).x
    free = daps(gmm_prior, operator, y, rng=BatchRNG.from_seed(5, 6), step_size=0.0, **options).x
    assert operator.residual_norm(guided, y).mean() < 0.6 * operator.residual_norm(free, y).mean()  # 0.36 seen


def test_reguidance_step_differentiates_through_a_nonlinear_forward_model(gaussian):
    """With Gaussian data N(mu, v I), A(x) = tanh(M x) and one deterministic DPS level at t_end, the output is
    x0_hat - step_size * c J^T r / ||r||: r = tanh(M x0_hat) - y, J = diag(1 - tanh(M x0_hat)^2) M the Jacobian of A
    and c = sqrt(ab) v / (ab v + 1 - ab) the derivative of Tweedie's estimate x0_hat (closed form at the latent)."""
    matrix = torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) / 6**0.5
    operator = Saturating(matrix, sigma_y=0.05)
    candidate = gaussian.mu + 0.5 * torch.randn(4, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = operator.measure(candidate.flip(0), BatchRNG.from_seed(1, 4))  # another signal's measurement
    out = reguide(
        candidate,
        y,
        operator,
        gaussian.prior,
        inversion_steps=30,
        dps_steps=1,
        t_end=0.4,
        sampler="ddim",
        step_size=0.5,
        seed=0,
    )
    ab = float(gaussian.prior.schedule.alphas_cumprod[round(0.4 * 999)])
    c = ab**0.5 * gaussian.v / (ab * gaussian.v + 1 - ab)
    x0 = gaussian.x0_hat(out.latent, ab)
    a = torch.tanh(x0 @ matrix.T)
    r = a - y
    grad = c * ((1 - a**2) * r) @ matrix / r.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out.x, x0 - 0.5 * grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", [diffpir, pigdm])
def test_methods_that_solve_with_the_adjoint_refuse_a_nonlinear_operator_before_any_work(saturating, method):
    operator, y = saturating

    class Untouchable:  # a prior whose network must never run
        def __getattr__(self, name):
            raise AssertionError(f"the prior was used ({name}) before the operator was refused")

    with pytest.raises(InputError, match="needs a linear operator"):
        method(Untouchable(), operator, y, steps=5, rng=BatchRNG.from_seed(0, 6))


def test_a_nonlinear_operator_has_no_adjoint_pinv_prox_or_gram_solve():
    class Square(Operator):
        def _forward(self, x: Tensor) -> Tensor:
            return x**2

    op = Square((4,), (4,))
    for name in ("adjoint", "pinv", "prox_l2", "solve_gram", "matrix"):
        assert not hasattr(op, name)  # once adjoint(1) was 0 and prox_l2(z) was z, silently


def test_the_data_gradient_of_a_nonlinear_operator_is_the_chain_rule(saturating):
    operator, y = saturating
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    m = operator.weight
    a = torch.tanh(x @ m.T)
    # d/dx ||tanh(M x) - y||^2 = 2 M^T ((1 - tanh^2(M x)) (tanh(M x) - y))
    torch.testing.assert_close(operator.data_gradient(x, y), 2 * ((1 - a**2) * (a - y)) @ m)


def test_reddiff_without_a_pseudo_inverse_asks_for_init(gmm_prior, saturating):
    operator, y = saturating
    with pytest.raises(ValueError, match="init="):
        reddiff(gmm_prior, operator, y, steps=5, rng=BatchRNG.from_seed(0, 6))


def test_a_zero_guidance_gradient_is_reported(gmm_prior, saturating):
    operator, y = saturating
    quantised = Quantised(operator.weight, sigma_y=0.05)
    with pytest.warns(GuidanceWarning, match="gradient is zero"):
        dps(gmm_prior, quantised, y, steps=5, rng=BatchRNG.from_seed(0, 6))


def test_an_object_that_is_not_an_operator_is_refused_naming_what_is_needed(gmm_prior, gmm_problem):
    _, _, y = gmm_problem

    class Half:  # everything the old duck-typed contract asked for, but not an Operator
        x_shape, y_shape, sigma_y = (8,), (3,), 0.1

        def __call__(self, x):
            return x[:, :3]

    with pytest.raises(InputError, match=r"DPS needs a reguidance.operators.Operator, got Half: subclass Operator"):
        dps(gmm_prior, Half(), y, steps=5, rng=BatchRNG.from_seed(0, 6))  # type: ignore[arg-type]  # on purpose
