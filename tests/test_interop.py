"""deepinv interop through stand-ins that are what a deepinv Physics is: a torch.nn.Module with deepinv's class
hierarchy (``Physics``, ``LinearPhysics``), attribute names, buffers and float32 filters.

These run in the main suite, where deepinv cannot be imported (it imports torchvision, which does not import beside
the pinned torch); ``tests/deepinv_tier/`` (``make test-deepinv``) runs the adapter against the real deepinv 0.5.0. The
stand-ins follow deepinv's source (``deepinv/physics/forward.py``, ``inpainting.py``, ``blur.py``, ``noise.py``):
``Physics.A`` is the noiseless map on images in [0, 1], ``LinearPhysics`` adds ``A_adjoint`` and ``A_dagger``,
``noise_model`` is a ``GaussianNoise`` module whose ``sigma`` is a buffer; ``Inpainting`` keeps its mask as a ``mask``
buffer ``(1, C or 1, H, W)`` and multiplies by it; ``Downsampling`` keeps a float32 ``filter`` buffer
``(1, 1, k, k)``, convolves with circular padding, then keeps every ``factor``-th pixel, and its adjoint is the
zero-filled upsampling followed by the transposed convolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reguidance.conventions import BatchRNG, InputError
from reguidance.guidance import daps, diffpir, dps, pigdm, reddiff
from reguidance.operators import Inpainting, LinearOperator, Operator
from reguidance.operators.deepinv import DeepinvLinearOperator, DeepinvOperator, PriorDenoiser
from reguidance.priors import load_prior
from reguidance.wrapper import reguide


# ------------------------------------------------------------------------------------------------ stand-ins
class Physics(nn.Module):
    """deepinv's ``Physics``: a module with ``A``; linearity is the subclass below, as in deepinv."""


class LinearPhysics(Physics):
    """deepinv's ``LinearPhysics``: the class that marks a linear ``A`` (with ``A_adjoint`` and ``A_dagger``)."""


class GaussianNoise(nn.Module):
    """deepinv's ``GaussianNoise``: ``sigma`` a buffer, on the [0, 1] scale."""

    sigma: Tensor

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.register_buffer("sigma", torch.tensor([sigma]))

    def forward(self, y: Tensor) -> Tensor:
        return y + self.sigma * torch.randn_like(y)


class ZeroNoise(nn.Module):
    """deepinv's ``ZeroNoise``: no noise."""

    def forward(self, y: Tensor) -> Tensor:
        return y


class PoissonNoise(nn.Module):
    """deepinv's ``PoissonNoise``: ``y = gain * Poisson(z / gain)``, noise whose std depends on the signal."""

    def __init__(self, gain: float = 0.1) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, y: Tensor) -> Tensor:
        return self.gain * torch.poisson(y / self.gain)


class InpaintingPhysics(LinearPhysics):
    """deepinv's ``Inpainting``: ``A = A^T = A^dagger = mask *``, the mask a float32 buffer ``(1, 1, H, W)``."""

    mask: Tensor

    def __init__(self, mask: Tensor, sigma: float = 0.05) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.noise_model: nn.Module = GaussianNoise(sigma)  # deepinv's noise models are modules of their own

    def A(self, x: Tensor) -> Tensor:
        return self.mask * x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self.mask * y

    def A_dagger(self, y: Tensor) -> Tensor:
        return self.mask * y


class DownsamplingPhysics(LinearPhysics):
    """deepinv's ``Downsampling`` with ``padding="circular"``: a float32 ``filter`` buffer, circular convolution, then
    every ``factor``-th pixel. ``F.conv2d`` with a float32 weight refuses float64 input, as deepinv's filters do."""

    filter: Tensor

    def __init__(self, filter: Tensor, factor: int = 2, sigma: float = 0.05) -> None:
        super().__init__()
        self.register_buffer("filter", filter.float())
        self.factor = factor
        self.noise_model = GaussianNoise(sigma)

    def _weight(self, c: int) -> Tensor:
        return self.filter.expand(c, 1, *self.filter.shape[-2:])

    def A(self, x: Tensor) -> Tensor:
        p = self.filter.shape[-1] // 2
        blurred = F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), self._weight(x.shape[1]), groups=x.shape[1])
        return blurred[:, :, :: self.factor, :: self.factor]

    def A_adjoint(self, y: Tensor) -> Tensor:
        b, c, h, w = y.shape
        p = self.filter.shape[-1] // 2
        up = y.new_zeros(b, c, h * self.factor, w * self.factor)
        up[:, :, :: self.factor, :: self.factor] = y
        full = F.conv_transpose2d(up, self._weight(c), groups=c)  # (H + 2p, W + 2p): fold the border back
        hh, ww = h * self.factor, w * self.factor
        rows = full[:, :, p : p + hh].clone()
        rows[:, :, :p] += full[:, :, p + hh :]
        rows[:, :, hh - p :] += full[:, :, :p]
        out = rows[:, :, :, p : p + ww].clone()
        out[:, :, :, :p] += rows[:, :, :, p + ww :]
        out[:, :, :, ww - p :] += rows[:, :, :, :p]
        return out

    def A_dagger(self, y: Tensor) -> Tensor:
        """Least squares by conjugate gradients on ``A A^T u = y``, ``x = A^T u`` (deepinv solves the same problem)."""
        u, r = torch.zeros_like(y), y.clone()
        p, rs = r.clone(), (r * r).sum()
        for _ in range(200):
            ap = self.A(self.A_adjoint(p))
            alpha = rs / (p * ap).sum()
            u, r = u + alpha * p, r - alpha * ap
            rs_new = (r * r).sum()
            if rs_new.sqrt() < 1e-6 * y.norm():
                break
            p, rs = r + rs_new / rs * p, rs_new
        return self.A_adjoint(u)


class SquarePhysics(Physics):
    """A nonlinear deepinv ``Physics`` (no ``A_adjoint``): the squared 2x2-pooled intensity, Gaussian noise."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_model = GaussianNoise(0.05)

    def A(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) ** 2


def _gaussian_filter(size: int = 5, std: float = 1.0) -> Tensor:
    u = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (u / std) ** 2)
    k = torch.outer(g, g)
    return (k / k.sum()).reshape(1, 1, size, size)


def _box_mask(h: int = 32, w: int = 32) -> Tensor:
    mask = torch.ones(1, 1, h, w)
    mask[:, :, 8:20, 10:24] = 0
    return mask


SHAPE = (1, 32, 32)  # the embedded MNIST prior's images


def _images(n: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Smooth images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    return F.interpolate(low, size=SHAPE[1:], mode="bilinear", align_corners=False).to(dtype)


def _rand(*shape: int, seed: int = 1, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


#: the linear stand-ins
LinearStandIn = InpaintingPhysics | DownsamplingPhysics

PHYSICS: dict[str, Callable[[], LinearStandIn]] = {
    "inpainting": lambda: InpaintingPhysics(_box_mask()),
    "downsampling": lambda: DownsamplingPhysics(_gaussian_filter()),
}


@pytest.fixture(params=sorted(PHYSICS))
def physics(request: pytest.FixtureRequest) -> LinearStandIn:
    return PHYSICS[request.param]()


@pytest.fixture(scope="module")
def prior():
    return load_prior("mnist")


# ------------------------------------------------------------------------------------------ the operator itself
def test_a_linear_physics_module_becomes_a_linear_operator(physics: LinearStandIn) -> None:
    op = DeepinvOperator(physics, SHAPE)  # a real nn.Module: no AttributeError before Module.__init__
    assert isinstance(op, DeepinvLinearOperator) and isinstance(op, LinearOperator)
    assert op.physics is physics and "physics" in dict(op.named_children())
    assert op.sigma_y == pytest.approx(0.1)  # the noise std doubles with the scale


def test_a_nonlinear_physics_module_is_an_operator_without_adjoint_or_solves() -> None:
    op = DeepinvOperator(SquarePhysics(), SHAPE)
    assert isinstance(op, Operator) and not isinstance(op, LinearOperator)
    for name in ("adjoint", "pinv", "prox_l2", "solve_gram"):
        assert not hasattr(op, name)


def test_linearity_is_the_class_not_an_a_adjoint_attribute() -> None:
    """deepinv's ``PhaseRetrieval`` is a nonlinear ``Physics`` with an ``A_adjoint`` (that of its ``B``)."""

    class WithAdjoint(SquarePhysics):
        def A_adjoint(self, y: Tensor) -> Tensor:
            return F.interpolate(y, scale_factor=2)

    op = DeepinvOperator(WithAdjoint(), SHAPE)
    assert not isinstance(op, LinearOperator) and not hasattr(op, "adjoint")


def test_an_entry_the_forward_model_never_reaches_is_not_a_measurement() -> None:
    """deepinv's inpainting keeps y the image's shape, 0 where unobserved: m counts the observed entries only, the
    noise lands on them only, and the truth's consistency is about 1 (our Inpainting's m: the mask's ones)."""
    mask = _box_mask()
    op = DeepinvOperator(InpaintingPhysics(mask, sigma=0.05), SHAPE)
    assert op.num_measurements == int(mask.sum()) == Inpainting(mask).num_measurements
    truth = _images(64)
    y = op.measure(truth, BatchRNG.from_seed(3, 64))
    assert bool((y[:, :, ~mask[0, 0].bool()] == 0).all())
    assert float(op.consistency(truth, y).mean()) == pytest.approx(1.0, abs=0.03)


def test_a_noise_model_no_sigma_y_expresses_is_refused_by_name() -> None:
    physics = InpaintingPhysics(_box_mask())
    physics.noise_model = PoissonNoise()
    for sigma_y in (None, 0.1):  # also when a sigma_y is offered: it would not be the noise's law
        with pytest.raises(InputError, match="noise model is PoissonNoise, not Gaussian noise of one std"):
            DeepinvOperator(physics, SHAPE, sigma_y=sigma_y)


def test_images_from_deepinv_must_lie_on_the_stated_range() -> None:
    op = DeepinvOperator(InpaintingPhysics(_box_mask()), SHAPE)
    x = _images()
    torch.testing.assert_close(op.image_from_deepinv((x + 1) / 2), x)  # deepinv's [0, 1] by default
    with pytest.raises(InputError, match=r"image_range is \(0, 1\)"):
        op.image_from_deepinv(x)  # a [-1, 1] image handed over as a [0, 1] one
    ours = DeepinvOperator(InpaintingPhysics(_box_mask()), SHAPE, image_range=(-1, 1))
    torch.testing.assert_close(ours.image_from_deepinv(x), x)
    assert ours.sigma_y == pytest.approx(0.05)  # the physics' own scale: no doubling


def test_our_measurement_of_an_image_is_deepinvs_on_the_other_scale(physics: LinearStandIn) -> None:
    op = DeepinvOperator(physics, SHAPE)
    x = _images()
    y_deepinv = physics.A((x + 1) / 2)  # what deepinv measures of the same image (noise-free), on [0, 1]
    # A is linear and y = 2 y_d - A_d(1): our measurement of x is A_d applied to x itself
    torch.testing.assert_close(op.measurement_from_deepinv(y_deepinv), physics.A(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op(x), physics.A(x))


def test_the_stand_in_inpainting_is_our_inpainting() -> None:
    mask = _box_mask()
    op, ours = DeepinvOperator(InpaintingPhysics(mask), SHAPE, sigma_y=0.1), Inpainting(mask, 0.1)
    assert isinstance(op, DeepinvLinearOperator)
    x, z = _images(dtype=torch.float64), _rand(2, *SHAPE)
    y = _rand(2, *SHAPE, seed=2) * mask  # a measurement: 0 where nothing is observed
    torch.testing.assert_close(op(x), ours(x))
    torch.testing.assert_close(op.adjoint(y), ours.adjoint(y))
    torch.testing.assert_close(op.pinv(y), ours.pinv(y))
    torch.testing.assert_close(op.prox_l2(z, y, 3.0), ours.prox_l2(z, y, 3.0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.solve_gram(y, 2.0, 0.5), ours.solve_gram(y, 2.0, 0.5), rtol=1e-5, atol=1e-5)
    assert op.num_measurements == ours.num_measurements


def test_the_adjoint_satisfies_the_inner_product_identity(physics: LinearStandIn) -> None:
    op = DeepinvOperator(physics, SHAPE)
    assert isinstance(op, DeepinvLinearOperator)
    x, v = _rand(2, *SHAPE), _rand(2, *op.y_shape, seed=2)
    lhs, rhs = (op(x) * v).sum(), (x * op.adjoint(v)).sum()
    assert abs(float(lhs - rhs)) <= 1e-5 * float(lhs.abs() + rhs.abs())  # float32 filters: float32 rounding


def test_float64_solves_run_through_float32_filters_and_solve_their_equations() -> None:
    """The float64 conjugate gradients call the physics in its own float32 (once: ``expected scalar type Double``)."""
    op = DeepinvOperator(DownsamplingPhysics(_gaussian_filter()), SHAPE)
    assert isinstance(op, DeepinvLinearOperator)
    z, y, gamma = _rand(2, *SHAPE), _rand(2, *op.y_shape, seed=2), 4.0
    x = op.prox_l2(z, y, gamma)
    assert x.dtype == torch.float64
    residual = gamma * op.adjoint(op(x)) + x - (gamma * op.adjoint(y) + z)  # the normal equations
    assert float(residual.norm() / z.norm()) < 1e-4
    u = op.solve_gram(y, 2.0, 0.1)
    assert float((2.0 * op(op.adjoint(u)) + 0.1 * u - y).norm() / y.norm()) < 1e-4
    torch.testing.assert_close(op(op.pinv(y.float())), y.float(), rtol=1e-3, atol=1e-3)  # A_dagger: a right inverse


def test_the_physics_follows_the_operator_to_another_device_and_dtype(physics: LinearStandIn) -> None:
    op = DeepinvOperator(physics, SHAPE).to(torch.float64)
    assert all(b.dtype == torch.float64 for b in op.physics.buffers() if b.is_floating_point())
    x = _images(dtype=torch.float64)
    torch.testing.assert_close(op(x), physics.A(x))  # now computed in float64 throughout
    op.to("meta")
    assert all(b.device.type == "meta" for b in op.physics.buffers())


def test_the_shape_probe_runs_where_the_physics_lives() -> None:
    physics = DownsamplingPhysics(_gaussian_filter()).to("meta")  # a CPU probe would fail against meta buffers
    op = DeepinvOperator(physics, (3, 16, 16), sigma_y=0.1)
    assert op.y_shape == (3, 8, 8)


def test_sigma_y_is_required_without_gaussian_noise() -> None:
    physics = InpaintingPhysics(_box_mask())
    physics.noise_model = ZeroNoise()
    with pytest.raises(InputError, match="pass sigma_y"):
        DeepinvOperator(physics, SHAPE)
    assert DeepinvOperator(physics, SHAPE, sigma_y=0.2).sigma_y == 0.2


def test_an_object_that_is_not_a_module_is_refused_naming_what_is_needed() -> None:
    class Plain:
        def A(self, x: Tensor) -> Tensor:
            return x

    with pytest.raises(InputError, match=r"physics must be a deepinv Physics \(a torch.nn.Module"):
        DeepinvOperator(Plain(), SHAPE, sigma_y=0.1)


# -------------------------------------------------------------------------------- every method on the stand-ins
def _problem(physics: nn.Module) -> tuple[DeepinvOperator, Tensor]:
    op = DeepinvOperator(physics, SHAPE)
    return op, op.measure(_images(), BatchRNG.from_seed(7, 2))


def _check(x: Tensor, op: Operator) -> None:
    assert x.shape == (2, *op.x_shape) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())


METHODS = {
    "dps": lambda prior, op, y, rng: dps(prior, op, y, steps=2, rng=rng),
    "daps": lambda prior, op, y, rng: daps(prior, op, y, steps=2, ode_steps=1, langevin_steps=2, rng=rng),
    "diffpir": lambda prior, op, y, rng: diffpir(prior, op, y, steps=2, rng=rng),
    "pigdm": lambda prior, op, y, rng: pigdm(prior, op, y, steps=2, rng=rng),
    "reddiff": lambda prior, op, y, rng: reddiff(prior, op, y, steps=2, rng=rng),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_on_a_linear_physics_module(prior, physics: LinearStandIn, method: str) -> None:
    op, y = _problem(physics)
    _check(METHODS[method](prior, op, y, BatchRNG.from_seed(0, 2)).x, op)


def test_reguidance_runs_on_a_linear_physics_module(prior, physics: LinearStandIn) -> None:
    op, y = _problem(physics)
    assert isinstance(op, DeepinvLinearOperator)
    candidate = op.pinv(y).clamp(-1, 1)
    out = reguide(candidate, y, op, prior, inversion_steps=2, dps_steps=2)
    _check(out.x, op)


@pytest.mark.parametrize("method", ["dps", "daps"])
def test_methods_that_differentiate_run_on_a_nonlinear_physics_module(prior, method: str) -> None:
    op, y = _problem(SquarePhysics())
    _check(METHODS[method](prior, op, y, BatchRNG.from_seed(0, 2)).x, op)


def test_reddiff_and_reguidance_run_on_a_nonlinear_physics_module_from_a_given_start(prior) -> None:
    op, y = _problem(SquarePhysics())
    start = torch.zeros(2, *SHAPE)
    _check(reddiff(prior, op, y, steps=2, init=start, rng=BatchRNG.from_seed(0, 2)).x, op)
    _check(reguide(start, y, op, prior, inversion_steps=2, dps_steps=2).x, op)


@pytest.mark.parametrize("method", ["diffpir", "pigdm"])
def test_methods_that_solve_with_the_adjoint_refuse_a_nonlinear_physics(prior, method: str) -> None:
    op, y = _problem(SquarePhysics())
    with pytest.raises(InputError, match="needs a linear operator"):
        METHODS[method](prior, op, y, BatchRNG.from_seed(0, 2))


# -------------------------------------------------------------------------------- the prior as deepinv's denoiser
@pytest.mark.parametrize("index", [10, 300, 999])
def test_the_prior_as_a_deepinv_denoiser_returns_tweedies_estimate_on_the_unit_scale(gaussian, index: int) -> None:
    """deepinv's denoiser convention: ``x = x0_01 + sigma n`` in [0, 1] units. For data ``N(mu, v I)`` on our scale the
    posterior mean is in closed form (``conftest.GaussianLaw``); at a level of the chain, ``sigma`` is half its
    noise-to-signal ratio and the estimate comes back as ``(x0_hat + 1) / 2``."""
    ab = float(gaussian.prior.schedule.alphas_cumprod[index])
    sigma = math.sqrt((1 - ab) / ab) / 2
    x0 = gaussian.mu + 0.5 * _rand(4, 6)
    noisy = (x0 + 1) / 2 + sigma * _rand(4, 6, seed=5)  # what a deepinv denoiser is given
    x_t = math.sqrt(ab) * (2 * noisy - 1)  # the same on our VP scale
    want = (gaussian.x0_hat(x_t, ab) + 1) / 2
    denoiser = PriorDenoiser(gaussian.prior)
    torch.testing.assert_close(denoiser(noisy, sigma), want)
    torch.testing.assert_close(denoiser(noisy, torch.full((4,), sigma)), want)  # one sigma per sample
    assert denoiser.nfe == 2
    torch.testing.assert_close(denoiser(noisy, 0.0), noisy)  # no noise: nothing to remove
