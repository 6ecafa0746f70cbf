"""The deepinv adapter against the real deepinv 0.5.0 (``make test-deepinv``; the main suite does not collect this
folder, since deepinv does not import beside the pinned torch).

Every expectation comes from deepinv's own methods on its own [0, 1] scale: ``physics.A``, ``physics(x)`` (its noise
model), ``A_adjoint``, ``A_dagger``, ``A_vjp``, the class ``LinearPhysics``; our scale is ``x = 2 x_d - 1``."""

from __future__ import annotations

from collections.abc import Callable

import deepinv as dinv
import pytest
import torch

from reguidance.conventions import BatchRNG, InputError
from reguidance.guidance import diffpir, dps, pigdm
from reguidance.operators import LinearOperator, Operator
from reguidance.operators.deepinv import DeepinvOperator
from reguidance.priors import load_prior

SHAPE = (1, 16, 16)
SIGMA = 0.05  # deepinv's noise std on [0, 1]


def _noise() -> dinv.physics.GaussianNoise:
    return dinv.physics.GaussianNoise(SIGMA)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


#: deepinv physics of the classes the issue names, on 16x16 grey images, each with Gaussian noise
PHYSICS: dict[str, Callable[[], dinv.physics.Physics]] = {
    "inpainting": lambda: dinv.physics.Inpainting(img_size=SHAPE, mask=0.6, noise_model=_noise(), rng=_gen(1)),
    "downsampling_bicubic": lambda: dinv.physics.Downsampling(
        img_size=SHAPE, factor=2, filter="bicubic", noise_model=_noise()
    ),
    "downsampling_gaussian": lambda: dinv.physics.Downsampling(
        img_size=SHAPE, factor=2, filter="gaussian", noise_model=_noise()
    ),
    "blur_fft": lambda: dinv.physics.BlurFFT(
        img_size=SHAPE, filter=dinv.physics.functional.blur.gaussian_blur(sigma=1.0), noise_model=_noise()
    ),
    "compressed_sensing": lambda: dinv.physics.CompressedSensing(
        m=100, img_size=SHAPE, noise_model=_noise(), rng=_gen(2)
    ),
    "phase_retrieval": lambda: dinv.physics.RandomPhaseRetrieval(
        m=300, img_size=SHAPE, noise_model=_noise(), rng=_gen(3)
    ),
}
LINEAR = sorted(k for k in PHYSICS if k != "phase_retrieval")


def _truth(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Images on deepinv's [0, 1] scale."""
    return torch.rand(n, *SHAPE, generator=_gen(seed))


def _deepinv_input(op: DeepinvOperator, x01: torch.Tensor) -> torch.Tensor:
    """What deepinv's physics itself takes: a complex tensor for a physics with a complex matrix."""
    return x01.to(torch.cfloat) if op.complex_input else x01


@pytest.fixture(params=sorted(PHYSICS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -------------------------------------------------------------------------------------------------- linearity
def test_linearity_is_deepinvs_own_class(name: str) -> None:
    physics = PHYSICS[name]()
    op = DeepinvOperator(physics, SHAPE)
    assert isinstance(op, LinearOperator) == isinstance(physics, dinv.physics.LinearPhysics)


def test_phase_retrieval_is_a_nonlinear_operator_though_it_has_an_a_adjoint() -> None:
    physics = PHYSICS["phase_retrieval"]()
    assert callable(physics.A_adjoint) and not isinstance(physics, dinv.physics.LinearPhysics)
    op = DeepinvOperator(physics, SHAPE)
    assert isinstance(op, Operator) and not isinstance(op, LinearOperator)
    for name in ("adjoint", "pinv", "prox_l2", "solve_gram"):
        assert not hasattr(op, name)


@pytest.mark.parametrize("method", [diffpir, pigdm])
def test_methods_that_solve_with_the_adjoint_refuse_phase_retrieval(method: Callable[..., object]) -> None:
    op = DeepinvOperator(PHYSICS["phase_retrieval"](), SHAPE)
    y = op.measure(_truth(2) * 2 - 1, BatchRNG.from_seed(0, 2))
    with pytest.raises(InputError, match="needs a linear operator"):
        method(load_prior("mnist"), op, y, steps=2, rng=BatchRNG.from_seed(0, 2))  # before the prior's shape


# --------------------------------------------------------------------------------------- forward and adjoint
def test_our_forward_model_is_deepinvs_on_the_other_scale(name: str) -> None:
    """With ``x_d = (x + 1) / 2``: ``A(x) = 2 A_d(x_d) - A_d(1)`` for a linear physics, ``2 A_d(x_d)`` otherwise, by
    deepinv's own ``A``; the conversion of deepinv's measurement is the same formula."""
    physics = PHYSICS[name]()
    op = DeepinvOperator(physics, SHAPE)
    x01 = _truth(4)
    y_d = physics.A(_deepinv_input(op, x01))
    offset = physics.A(torch.ones(1, *SHAPE)) if name in LINEAR else 0
    torch.testing.assert_close(op(2 * x01 - 1), 2 * y_d - offset, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op.measurement_from_deepinv(y_d), 2 * y_d - offset)


@pytest.mark.parametrize("name", LINEAR)
def test_a_linear_physics_is_applied_as_it_is(name: str) -> None:
    physics = PHYSICS[name]()
    op = DeepinvOperator(physics, SHAPE)
    x = torch.randn(3, *SHAPE, generator=_gen(4))
    torch.testing.assert_close(op(x), physics.A(x))
    v = torch.randn(3, *op.y_shape, generator=_gen(5))
    assert isinstance(op, LinearOperator)
    torch.testing.assert_close(op.adjoint(v), physics.A_adjoint(v))
    torch.testing.assert_close(op.pinv(v), physics.A_dagger(v))


@pytest.mark.parametrize("name", LINEAR)
def test_the_adjoint_passes_the_inner_product_test(name: str) -> None:
    op = DeepinvOperator(PHYSICS[name](), SHAPE)
    assert isinstance(op, LinearOperator)
    x, v = torch.randn(2, *SHAPE, generator=_gen(6)), torch.randn(2, *op.y_shape, generator=_gen(7))
    lhs, rhs = float((op(x) * v).sum()), float((x * op.adjoint(v)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-4)


def test_the_data_gradient_of_phase_retrieval_is_deepinvs_vector_jacobian_product() -> None:
    """``A(x) = 2 |B x_d|^2``, so ``grad ||A(x) - y||^2 = 2 J^T r`` with ``J^T r = Re(A_vjp(x_d, r))`` (chain rule:
    the 2 of the scale and the 1/2 of ``x_d = (x + 1) / 2`` cancel)."""
    physics = PHYSICS["phase_retrieval"]()
    op = DeepinvOperator(physics, SHAPE)
    x01, y = _truth(2), torch.randn(2, *op.y_shape, generator=_gen(8))
    r = op(2 * x01 - 1) - y
    want = 2 * physics.A_vjp(x01.to(torch.cfloat), r.to(torch.cfloat)).real
    torch.testing.assert_close(op.data_gradient(2 * x01 - 1, y), want, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------------------------- noise and consistency
def test_the_truth_is_consistent_with_deepinvs_own_measurement(name: str) -> None:
    """deepinv draws ``y_d = physics(x_d)`` with its noise model; converted, the truth's consistency
    ``||A x - y|| / (sigma_y sqrt(m))`` is about 1 (the mean of 16 images within 0.1; deepinv's inpainting, whose
    unobserved entries are zeros, gave sqrt(0.6) = 0.77 before m counted only the observed entries)."""
    physics = PHYSICS[name]()
    op = DeepinvOperator(physics, SHAPE)
    assert op.sigma_y == pytest.approx(2 * SIGMA)
    x01 = _truth()
    torch.manual_seed(9)  # deepinv's noise models draw from the global generator
    y = op.measurement_from_deepinv(physics(_deepinv_input(op, x01)))
    assert float(op.consistency(2 * x01 - 1, y).mean()) == pytest.approx(1.0, abs=0.1)


def test_deepinvs_inpainting_counts_only_observed_pixels_and_we_noise_only_those() -> None:
    physics = PHYSICS["inpainting"]()
    op = DeepinvOperator(physics, SHAPE)
    mask = physics.mask.bool().expand(1, *SHAPE)
    assert op.num_measurements == int(mask.sum()) < 16 * 16
    y = op.measure(_truth(2) * 2 - 1, BatchRNG.from_seed(0, 2))
    assert bool((y[:, ~mask[0]] == 0).all())  # as deepinv: y is 0 where nothing is observed


def test_measurements_round_trip_between_the_scales(name: str) -> None:
    physics = PHYSICS[name]()
    op = DeepinvOperator(physics, SHAPE)
    torch.manual_seed(10)
    y_d = physics(_deepinv_input(op, _truth(3)))
    torch.testing.assert_close(op.measurement_to_deepinv(op.measurement_from_deepinv(y_d)), y_d)


@pytest.mark.parametrize(
    "noise", [dinv.physics.PoissonNoise(gain=0.1), dinv.physics.PoissonGaussianNoise(gain=0.1, sigma=0.05)]
)
def test_a_signal_dependent_noise_model_is_refused_by_name(noise: torch.nn.Module) -> None:
    physics = dinv.physics.Inpainting(img_size=SHAPE, mask=0.6, noise_model=noise, rng=_gen(1))
    for sigma_y in (None, 0.1):
        with pytest.raises(InputError, match=f"noise model is {type(noise).__name__}, not Gaussian noise of one std"):
            DeepinvOperator(physics, SHAPE, sigma_y=sigma_y)


def test_zero_noise_needs_sigma_y() -> None:
    physics = dinv.physics.Inpainting(img_size=SHAPE, mask=0.6, rng=_gen(1))  # ZeroNoise
    with pytest.raises(InputError, match=r"adds no noise \(ZeroNoise\): pass sigma_y"):
        DeepinvOperator(physics, SHAPE)
    assert DeepinvOperator(physics, SHAPE, sigma_y=0.2).sigma_y == 0.2


# ------------------------------------------------------------------------------------------ complex and ranges
def test_a_physics_with_a_complex_matrix_measures_our_real_images() -> None:
    op = DeepinvOperator(PHYSICS["phase_retrieval"](), SHAPE)
    assert op.complex_input and op.y_shape == (300,)
    x = _truth(2) * 2 - 1
    assert op(x).dtype == torch.float32 and op(x.double()).dtype == torch.float64


def test_complex_measurements_are_refused_by_name() -> None:
    physics = dinv.physics.CompressedSensing(m=100, img_size=SHAPE, dtype=torch.cfloat, rng=_gen(2))
    with pytest.raises(InputError, match=r"CompressedSensing measures a real image as a complex tensor"):
        DeepinvOperator(physics, SHAPE, sigma_y=0.1)


def test_a_physics_that_cannot_measure_the_shape_is_refused_by_name() -> None:
    physics = PHYSICS["compressed_sensing"]()  # built for 16x16 images
    with pytest.raises(InputError, match=r"CompressedSensing cannot measure an image of shape \(1, 1, 8, 8\)"):
        DeepinvOperator(physics, (1, 8, 8))


def test_a_deepinv_image_is_converted_on_its_stated_range_and_refused_off_it() -> None:
    op = DeepinvOperator(PHYSICS["blur_fft"](), SHAPE)
    x01 = _truth(2)
    torch.testing.assert_close(op.image_from_deepinv(x01), 2 * x01 - 1)
    torch.testing.assert_close(op.image_to_deepinv(2 * x01 - 1), x01)
    with pytest.raises(InputError, match=r"image_range is \(0, 1\)"):
        op.image_from_deepinv(2 * x01 - 1)  # a [-1, 1] candidate handed over as deepinv's
    with pytest.raises(InputError, match=r"image_range is \(0, 1\)"):
        op.image_from_deepinv(255 * x01)  # [0, 255] pixels


def test_a_physics_on_minus_one_one_images_says_so_and_needs_no_conversion() -> None:
    physics = PHYSICS["downsampling_gaussian"]()
    op = DeepinvOperator(physics, SHAPE, image_range=(-1, 1))
    x = _truth(2) * 2 - 1
    torch.manual_seed(11)
    y_d = physics(x)  # deepinv's measurement of our image as it is
    torch.testing.assert_close(op.measurement_from_deepinv(y_d), y_d)
    assert op.sigma_y == pytest.approx(SIGMA)


MNIST = (1, 32, 32)  # the embedded prior's images


@pytest.mark.parametrize(
    "build",
    [
        lambda: dinv.physics.Inpainting(img_size=MNIST, mask=0.5, noise_model=_noise(), rng=_gen(1)),
        lambda: dinv.physics.RandomPhaseRetrieval(m=1500, img_size=MNIST, noise_model=_noise(), rng=_gen(3)),
    ],
    ids=["inpainting", "phase_retrieval"],
)
def test_dps_runs_on_a_real_deepinv_physics(build: Callable[[], dinv.physics.Physics]) -> None:
    op = DeepinvOperator(build(), MNIST)
    y = op.measure(torch.zeros(2, *MNIST), BatchRNG.from_seed(0, 2))
    x = dps(load_prior("mnist"), op, y, steps=2, rng=BatchRNG.from_seed(1, 2)).x
    assert x.shape == (2, *MNIST) and bool(torch.isfinite(x).all())
