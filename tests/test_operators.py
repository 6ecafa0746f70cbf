"""Specification of the forward operators: y = A(x) + sigma_y n on the [-1, 1] scale."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from reguidance.conventions import BatchRNG, InputError
from reguidance.operators import (
    Blur,
    GaussianBlur,
    Inpainting,
    LinearOperator,
    MatrixOperator,
    Operator,
    SuperResolution,
)

B = 3  # batch size used with per-sample operators


def _matrix_operator() -> LinearOperator:
    return MatrixOperator(torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))


def _asymmetric_blur() -> Blur:
    kernel = torch.arange(15, dtype=torch.float64).reshape(3, 5) ** 1.5
    return Blur((2, 9, 12), kernel / kernel.sum())


OPERATORS: dict[str, Callable[[], LinearOperator]] = {
    "matrix": _matrix_operator,
    "inpainting-flat": lambda: Inpainting.random_pixels((8,), 0.5, BatchRNG.from_seed(0, B)),
    "inpainting-box": lambda: Inpainting.random_box((3, 8, 8), (3, 4), BatchRNG.from_seed(0, B)),
    "inpainting-pixels": lambda: Inpainting.random_pixels((2, 6, 6), 0.3, BatchRNG.from_seed(0, B)),
    "sr-avgpool": lambda: SuperResolution((3, 8, 8), 2, "avgpool"),
    "sr-bicubic": lambda: SuperResolution((2, 16, 16), 4, "bicubic"),
    "gaussian-blur": lambda: GaussianBlur((2, 12, 10), blur_sigma=1.0),
    "asymmetric-blur": _asymmetric_blur,
}


@pytest.fixture(params=sorted(OPERATORS))
def op(request: pytest.FixtureRequest) -> LinearOperator:
    return OPERATORS[request.param]()


def _sample(op: LinearOperator, index: int | list[int]) -> LinearOperator:
    """Sample ``index``'s operator (``select`` is typed on :class:`Operator`; a linear one selects a linear one)."""
    one = op.select(index)
    assert isinstance(one, LinearOperator)
    return one


def _randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _smooth_image(c: int, h: int, w: int) -> torch.Tensor:
    """A (1, c, h, w) periodic image made of the two lowest spatial frequencies, in [-1, 1]."""
    i = torch.arange(h, dtype=torch.float64)[:, None] * 2 * math.pi / h
    j = torch.arange(w, dtype=torch.float64)[None, :] * 2 * math.pi / w
    base = 0.5 * torch.cos(i) + 0.3 * torch.sin(j) + 0.2 * torch.cos(i + 2 * j)
    return torch.stack([base * (k + 1) / c for k in range(c)]).unsqueeze(0)


# ------------------------------------------------------------------------------------------ linear algebra
def test_adjoint_satisfies_inner_product_identity(op: LinearOperator) -> None:
    x = _randn(B, *op.x_shape, seed=1)
    y = _randn(B, *op.y_shape, seed=2)
    lhs = (op(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_forward_adjoint_and_pinv_have_declared_shapes(op: LinearOperator) -> None:
    x = _randn(B, *op.x_shape)
    y = _randn(B, *op.y_shape)
    assert op(x).shape == (B, *op.y_shape)
    assert op.adjoint(y).shape == (B, *op.x_shape)
    assert op.pinv(y).shape == (B, *op.x_shape)


def test_matrix_agrees_with_forward(op: LinearOperator) -> None:
    single = _sample(op, 0)
    x = _randn(4, *op.x_shape)
    expected = single(x).reshape(4, -1)
    assert single.matrix().shape == (math.prod(op.y_shape), math.prod(op.x_shape))
    torch.testing.assert_close(x.reshape(4, -1) @ single.matrix().T, expected, rtol=1e-10, atol=1e-10)


def test_operators_keep_the_input_dtype(op: LinearOperator) -> None:
    x = _randn(B, *op.x_shape).float()
    assert op(x).dtype == torch.float32
    assert op.adjoint(op(x)).dtype == torch.float32
    assert op.pinv(op(x)).dtype == torch.float32


def test_adjoint_is_differentiable_with_respect_to_the_measurement() -> None:
    op = SuperResolution((1, 8, 8), 2, "bicubic")
    y = _randn(2, *op.y_shape).requires_grad_()
    op.adjoint(y).square().sum().backward()
    assert y.grad is not None and bool(y.grad.abs().sum() > 0)


def test_matrix_of_an_operator_with_several_masks_needs_select() -> None:
    op = OPERATORS["inpainting-box"]()
    with pytest.raises(ValueError, match="select"):
        op.matrix()


# ------------------------------------------------------------------------------------------------ the solves
def _dense(op: LinearOperator, i: int) -> torch.Tensor:
    """The dense matrix of sample ``i``'s operator."""
    return (_sample(op, i) if op.batch_size else op).matrix()


@pytest.mark.parametrize("gamma", [1e-3, 1.0, 1e4])
def test_prox_l2_equals_a_dense_solve_of_its_normal_equations(op: LinearOperator, gamma: float) -> None:
    z, y = _randn(B, *op.x_shape, seed=3), _randn(B, *op.y_shape, seed=4)
    x = op.prox_l2(z, y, gamma)
    for i in range(B):
        m = _dense(op, i)
        lhs = gamma * m.T @ m + torch.eye(m.shape[1], dtype=torch.float64)
        want = torch.linalg.solve(lhs, gamma * m.T @ y[i].flatten() + z[i].flatten())
        torch.testing.assert_close(x[i].flatten(), want, rtol=1e-5, atol=1e-5 * (1 + want.abs().max().item()))


def test_prox_l2_takes_one_weight_per_sample(op: LinearOperator) -> None:
    z, y = _randn(B, *op.x_shape, seed=3), _randn(B, *op.y_shape, seed=4)
    gammas = torch.tensor([0.1, 2.0, 50.0], dtype=torch.float64)
    x = op.prox_l2(z, y, gammas)
    for i in range(B):
        one = _sample(op, [i]) if op.batch_size else op
        torch.testing.assert_close(x[i : i + 1], one.prox_l2(z[i : i + 1], y[i : i + 1], float(gammas[i])))


@pytest.mark.parametrize(("a", "b"), [(0.7, 0.01), (2.0, 0.0)])
def test_solve_gram_equals_the_dense_pseudo_inverse(op: LinearOperator, a: float, b: float) -> None:
    v = op(_randn(B, *op.x_shape, seed=5))  # in the range of A, where b = 0 has a solution
    u = op.solve_gram(v, a, b)
    for i in range(B):
        m = _dense(op, i)
        gram = a * m @ m.T + b * torch.eye(m.shape[0], dtype=torch.float64)
        want = torch.linalg.pinv(gram, hermitian=True, rtol=1e-10) @ v[i].flatten()
        torch.testing.assert_close(u[i].flatten(), want, rtol=1e-5, atol=1e-5 * (1 + want.abs().max().item()))


def test_conjugate_gradient_fallback_reaches_its_stated_tolerance() -> None:
    op = SuperResolution((1, 16, 16), 4, "bicubic")  # no closed form: the conjugate-gradient path
    z, y, gamma = _randn(2, 1, 16, 16, seed=6), _randn(2, 1, 4, 4, seed=7), 30.0
    x = op.prox_l2(z, y, gamma)
    m = op.matrix()
    for i in range(2):
        rhs = gamma * m.T @ y[i].flatten() + z[i].flatten()
        residual = rhs - (gamma * m.T @ m @ x[i].flatten() + x[i].flatten())
        assert residual.norm() <= op.cg_tol * rhs.norm() * 1.01


def test_bad_solve_weights_are_rejected() -> None:
    op = SuperResolution((1, 8, 8), 2)
    z, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="gamma"):
        op.prox_l2(z, y, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        op.prox_l2(z, y, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="a must be > 0"):
        op.solve_gram(y, 0.0, 1.0)


def test_matrix_operator_pinv_is_moore_penrose() -> None:
    op = _matrix_operator()
    y = _randn(B, 5)
    torch.testing.assert_close(op.pinv(y), y @ torch.linalg.pinv(op.matrix()).T)


def test_operator_without_pseudo_inverse_raises_not_implemented() -> None:
    class Doubling(LinearOperator):
        def _forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    op = Doubling((4,), (4,))
    with pytest.raises(NotImplementedError, match="pseudo-inverse"):
        op.pinv(_randn(1, 4))
    torch.testing.assert_close(op.adjoint(_randn(2, 4)), 2 * _randn(2, 4))


# ------------------------------------------------------------------------------------------ pseudo-inverses
def test_avgpool_pinv_is_an_exact_right_inverse() -> None:
    op = SuperResolution((3, 16, 16), 4, "avgpool")
    y = _randn(2, *op.y_shape)
    torch.testing.assert_close(op(op.pinv(y)), y, rtol=1e-12, atol=1e-12)


def test_avgpool_pinv_is_moore_penrose() -> None:
    op = SuperResolution((1, 8, 8), 2, "avgpool")
    y = _randn(2, *op.y_shape)
    expected = y.reshape(2, -1) @ torch.linalg.pinv(op.matrix()).T
    torch.testing.assert_close(op.pinv(y).reshape(2, -1), expected, rtol=1e-10, atol=1e-10)


def test_bicubic_pinv_is_an_approximate_right_inverse_on_smooth_measurements() -> None:
    op = SuperResolution((2, 32, 32), 2, "bicubic")
    y = op(_smooth_image(2, 32, 32))
    assert float((op(op.pinv(y)) - y).abs().max()) < 0.03


def test_blur_pinv_approximately_inverts_blur_of_a_smooth_image() -> None:
    op = GaussianBlur((3, 32, 32), blur_sigma=1.5)
    x = _smooth_image(3, 32, 32)
    assert float((op(x) - x).abs().max()) > 0.01  # the blur does change the image
    assert float((op.pinv(op(x)) - x).abs().max()) < 0.01


def test_blur_is_a_convolution_centred_on_the_kernel() -> None:
    op = _asymmetric_blur()
    impulse = torch.zeros(1, *op.x_shape, dtype=torch.float64)
    impulse[:, :, 4, 6] = 1
    response = op(impulse)[0, 0]
    torch.testing.assert_close(response[3:6, 4:9], op.kernel)  # the kernel itself, not flipped
    assert float(response.sum()) == pytest.approx(1.0)


def test_blur_wraps_around_the_image_border() -> None:
    op = _asymmetric_blur()
    impulse = torch.zeros(1, *op.x_shape, dtype=torch.float64)
    impulse[:, :, 0, 0] = 1
    torch.testing.assert_close(op(impulse)[0, 0, -1, -2], op.kernel[0, 0])


def test_gaussian_kernel_is_normalised_and_keeps_constant_images() -> None:
    op = GaussianBlur((1, 16, 16), kernel_size=9, blur_sigma=2.0)
    assert op.kernel.shape == (9, 9)
    assert float(op.kernel.sum()) == pytest.approx(1.0)
    x = torch.full((1, 1, 16, 16), 0.3, dtype=torch.float64)
    torch.testing.assert_close(op(x), x)


# ------------------------------------------------------------------------------------------------ masks
def test_box_mask_misses_the_box_pixels_in_every_channel() -> None:
    op = Inpainting.box((3, 16, 16), (4, 6))
    assert int((~op.mask).sum()) == 24
    assert op.num_measurements == 3 * (256 - 24)


def test_centred_box_sits_in_the_middle() -> None:
    op = Inpainting.box((1, 10, 12), 4)
    expected = torch.ones(10, 12, dtype=torch.bool)
    expected[3:7, 4:8] = False
    assert op.top_left is not None and op.top_left.tolist() == [[3, 4]]
    assert torch.equal(op.mask[0, 0], expected)


def test_box_at_given_positions_has_one_mask_per_image() -> None:
    op = Inpainting.box((1, 8, 8), 2, top_left=torch.tensor([[0, 0], [6, 5]]))
    assert op.batch_size == 2
    assert not bool(op.mask[0, 0, 0:2, 0:2].any()) and not bool(op.mask[1, 0, 6:8, 5:7].any())
    assert isinstance(op.num_measurements, torch.Tensor) and op.num_measurements.tolist() == [60, 60]


def test_random_box_positions_differ_between_samples() -> None:
    op = Inpainting.random_box((1, 32, 32), 4, BatchRNG.from_seed(0, 4))
    assert op.top_left is not None
    assert len({tuple(p) for p in op.top_left.tolist()}) > 1


def test_random_box_mask_of_a_sample_does_not_depend_on_the_batch() -> None:
    alone = Inpainting.random_box((3, 16, 16), 5, BatchRNG.from_seed(7, [2]))
    batch = Inpainting.random_box((3, 16, 16), 5, BatchRNG.from_seed(7, [0, 1, 2, 3]))
    assert torch.equal(alone.mask[0], batch.mask[2])
    assert alone.top_left is not None and batch.top_left is not None
    assert torch.equal(alone.top_left[0], batch.top_left[2])


def test_random_pixels_observes_the_requested_fraction_shared_over_channels() -> None:
    op = Inpainting.random_pixels((3, 10, 10), 0.25, BatchRNG.from_seed(0, 2))
    assert op.mask.shape == (2, 1, 10, 10)
    assert isinstance(op.num_measurements, torch.Tensor) and op.num_measurements.tolist() == [75, 75]
    assert not torch.equal(op.mask[0], op.mask[1])


def test_random_pixels_mask_of_a_sample_does_not_depend_on_the_batch() -> None:
    alone = Inpainting.random_pixels((12,), 0.5, BatchRNG.from_seed(3, [1]))
    batch = Inpainting.random_pixels((12,), 0.5, BatchRNG.from_seed(3, [0, 1, 2]))
    assert torch.equal(alone.mask[0], batch.mask[1])


def test_masks_and_box_positions_are_saved_in_the_state_dict() -> None:
    op = Inpainting.random_box((1, 8, 8), 3, BatchRNG.from_seed(0, 2))
    assert set(op.state_dict()) == {"mask", "top_left"}


def test_select_keeps_the_chosen_samples_masks() -> None:
    op = Inpainting.random_box((1, 8, 8), 3, BatchRNG.from_seed(0, 4))
    sub = op.select([3, 1])
    assert torch.equal(sub.mask, op.mask[[3, 1]])
    assert sub.top_left is not None and op.top_left is not None
    assert torch.equal(sub.top_left, op.top_left[[3, 1]])
    assert op.select(2).batch_size is None  # a single mask applies to any batch


def test_shared_operator_select_returns_itself() -> None:
    op = GaussianBlur((1, 8, 8), blur_sigma=1.0)
    assert op.select([0, 1]) is op


# ---------------------------------------------------------------------------------------------- measure
def test_measure_is_reproducible_with_the_same_seed() -> None:
    op = SuperResolution((1, 8, 8), 2, sigma_y=0.1)
    x = _randn(2, 1, 8, 8)
    y1 = op.measure(x, BatchRNG.from_seed(5, 2))
    y2 = op.measure(x, BatchRNG.from_seed(5, 2))
    y3 = op.measure(x, BatchRNG.from_seed(6, 2))
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, y3)


def test_measurement_noise_has_std_sigma_y() -> None:
    op = GaussianBlur((3, 64, 64), blur_sigma=1.0, sigma_y=0.05)
    x = _randn(2, 3, 64, 64).clamp(-1, 1)
    noise = op.measure(x, BatchRNG.from_seed(0, 2)) - op(x)
    assert float(noise.std()) == pytest.approx(0.05, rel=0.05)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.005)


def test_measurement_of_a_sample_does_not_depend_on_the_batch() -> None:
    op = MatrixOperator(_randn(4, 6), sigma_y=0.3)
    x = _randn(3, 6)
    batch = op.measure(x, BatchRNG.from_seed(9, [0, 1, 2]))
    alone = op.measure(x[2:], BatchRNG.from_seed(9, [2]))
    torch.testing.assert_close(alone[0], batch[2], rtol=1e-12, atol=1e-12)  # up to matmul rounding


def test_inpainting_noise_falls_on_observed_entries_only() -> None:
    op = Inpainting.box((2, 8, 8), 4, sigma_y=0.5)
    y = op.measure(_randn(1, 2, 8, 8), BatchRNG.from_seed(0, 1))
    assert bool((y[:, :, 2:6, 2:6] == 0).all())
    assert bool((y * op.mask != 0).sum() == op.num_measurements)


# ------------------------------------------------------------------------------------------- diagnostics
def test_residual_norm_is_per_sample() -> None:
    op = SuperResolution((1, 8, 8), 2)
    x = _randn(3, 1, 8, 8)
    y = _randn(3, 1, 4, 4, seed=2)
    before = op.residual_norm(x, y)
    x_changed = x.clone()
    x_changed[1] += 5.0
    after = op.residual_norm(x_changed, y)
    assert before.shape == (3,)
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=0)
    assert float(after[1]) != float(before[1])
    torch.testing.assert_close(before[2], (y[2] - op(x[2:])[0]).norm())


def test_consistency_is_about_one_for_the_true_signal() -> None:
    op = Inpainting.random_pixels((3, 32, 32), 0.5, BatchRNG.from_seed(0, 2), sigma_y=0.1)
    x = _randn(2, 3, 32, 32).clamp(-1, 1)
    y = op.measure(x, BatchRNG.from_seed(1, 2))
    c = op.consistency(x, y)
    assert c.shape == (2,)
    assert torch.allclose(c, torch.ones_like(c), atol=0.05)


def test_consistency_without_noise_raises() -> None:
    op = SuperResolution((1, 8, 8), 2, sigma_y=0.0)
    x = _randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match="sigma_y"):
        op.consistency(x, op(x))


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "build",
    [
        lambda: MatrixOperator(torch.eye(3), sigma_y=-0.1),
        lambda: Inpainting.box((1, 8, 8), 2, sigma_y=-0.1),
        lambda: SuperResolution((1, 8, 8), 2, sigma_y=-0.1),
        lambda: GaussianBlur((1, 8, 8), blur_sigma=1.0, sigma_y=-0.1),
    ],
)
def test_negative_sigma_y_is_rejected(build: Callable[[], LinearOperator]) -> None:
    with pytest.raises(ValueError, match="sigma_y"):
        build()


@pytest.mark.parametrize("size", [9, (4, 9), (9, 4)])
def test_box_larger_than_the_image_is_rejected(size: int | tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="size"):
        Inpainting.box((1, 8, 8), size)


def test_box_position_outside_the_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="top_left"):
        Inpainting.box((1, 8, 8), 4, top_left=torch.tensor([[0, 0], [5, 0]]))


@pytest.mark.parametrize("factor", [3, 1, 32, 2.0])
def test_bad_factor_is_rejected(factor: int) -> None:
    with pytest.raises(ValueError, match="factor"):
        SuperResolution((1, 32, 32), factor)


def test_random_pixels_fraction_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="fraction_observed"):
        Inpainting.random_pixels((1, 8, 8), 0.0, BatchRNG.from_seed(0, 1))


def test_blur_kernel_larger_than_the_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        GaussianBlur((1, 8, 8), kernel_size=11)


def test_signal_of_the_wrong_shape_is_rejected(op: LinearOperator) -> None:
    x = _randn(B, *op.x_shape[:-1], op.x_shape[-1] + 1)
    with pytest.raises(ValueError, match=r"^x has shape"):
        op(x)


def test_signal_with_nan_is_rejected(op: LinearOperator) -> None:
    x = _randn(B, *op.x_shape)
    x.view(-1)[3] = float("nan")
    with pytest.raises(ValueError, match=r"^x contains 1 NaN"):
        op(x)


def test_measurement_of_the_wrong_shape_is_rejected(op: LinearOperator) -> None:
    y = _randn(B, *op.y_shape, 2)
    with pytest.raises(ValueError, match=r"^measurement has shape"):
        op.adjoint(y)


def test_batch_that_does_not_match_per_sample_masks_is_rejected() -> None:
    op = Inpainting.random_box((1, 8, 8), 3, BatchRNG.from_seed(0, 4))
    with pytest.raises(ValueError, match="x has batch size 2"):
        op(_randn(2, 1, 8, 8))


def test_mask_with_values_other_than_zero_and_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="mask"):
        Inpainting(torch.full((1, 1, 4, 4), 0.5))


# ------------------------------------------------------------------------------------- linear and nonlinear
def test_every_operator_here_is_linear_and_its_data_gradient_is_twice_the_adjoint_residual(op: LinearOperator) -> None:
    x, y = _randn(B, *op.x_shape), _randn(B, *op.y_shape, seed=2)
    for i in range(B):
        m = _dense(op, i)
        # d/dx ||M x - y||^2 = 2 M^T (M x - y), with the dense matrix of sample i
        want = 2 * m.T @ (m @ x[i].flatten() - y[i].flatten())
        got = op.data_gradient(x, y)[i].flatten()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_a_nonlinear_subclass_takes_its_data_gradient_by_autograd() -> None:
    class Cube(Operator):
        def _forward(self, x: torch.Tensor) -> torch.Tensor:
            return x**3

    op, x, y = Cube((5,), (5,)), _randn(2, 5), _randn(2, 5, seed=2)
    torch.testing.assert_close(op.data_gradient(x, y), 2 * (x**3 - y) * 3 * x**2)  # chain rule by hand


# ------------------------------------------------------------------------------------------------- scales
@pytest.mark.parametrize(
    ("scale", "message"),
    [(lambda x: (x + 1) * 127.5, r"\[0, 255\] pixels"), (lambda x: x * 1e6, "far outside the \\[-1, 1\\] scale")],
)
def test_measuring_an_image_on_another_scale_is_refused_naming_it(scale, message) -> None:
    op = SuperResolution((1, 8, 8), 2, sigma_y=0.1)
    x = _smooth_image(1, 8, 8)
    with pytest.raises(InputError, match=message):
        op.measure(scale(x), BatchRNG.from_seed(0, 1))
    with pytest.raises(InputError, match=message):
        Inpainting.box((1, 8, 8), 2).measure(scale(x), BatchRNG.from_seed(0, 1))


def test_images_slightly_beyond_the_unit_range_and_flat_signals_of_any_scale_are_measured() -> None:
    image = _smooth_image(1, 8, 8) * 3.9  # within IMAGE_SCALE_LIMIT: an unclamped estimate
    SuperResolution((1, 8, 8), 2).measure(image, BatchRNG.from_seed(0, 1))
    flat = _randn(2, 8) * 100  # not an image: the mixture testbed's own scale
    _matrix_operator().measure(flat, BatchRNG.from_seed(0, 2))


def test_the_measurement_picture_is_y_itself_blockwise_for_super_resolution() -> None:
    op = SuperResolution((1, 8, 8), 4, sigma_y=0.0)
    y = torch.arange(4.0).reshape(1, 1, 2, 2)
    shown = op.picture(y)
    assert shown.shape == (1, 1, 8, 8)
    for i in range(8):
        for j in range(8):
            assert shown[0, 0, i, j] == y[0, 0, i // 4, j // 4]


def test_the_measurement_picture_of_a_same_size_measurement_is_unchanged() -> None:
    op = Inpainting.box((1, 8, 8), 4, sigma_y=0.0)
    y = op(torch.ones(1, 1, 8, 8))
    assert torch.equal(op.picture(y), y)
