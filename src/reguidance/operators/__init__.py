r"""Forward operators of inverse problems and their measurement noise.

A measurement of a signal ``x`` is

    y = A(x) + sigma_y n,        n ~ N(0, I).

Signals are image batches ``x: (B, C, H, W)`` in ``[-1, 1]`` or flat batches ``x: (B, d)``; ``sigma_y`` is a
standard deviation on that same ``[-1, 1]`` scale (no hidden rescaling anywhere). Every operator is a
:class:`torch.nn.Module` whose masks and kernels are buffers, so ``.to(device)`` and ``state_dict`` carry them.

Two classes, as deepinv's ``Physics`` and ``LinearPhysics``:

:class:`Operator`, any differentiable forward map ``A`` (linear or not), provides

- ``forward(x)`` the noiseless ``A(x)``: ``(B, *x_shape) -> (B, *y_shape)``;
- ``measure(x, rng)`` a noisy measurement drawn with one generator per sample (:class:`BatchRNG`), so that a
  sample's noise never depends on the batch it was drawn in;
- ``data_gradient(x, y)`` the per-sample ``grad_x ||A(x) - y||^2``, by automatic differentiation;
- ``num_measurements`` ``m``, the number of observed scalar entries per sample, and the per-sample diagnostics
  ``residual_norm(x, y) = ||y - A(x)||_2`` and ``consistency(x, y) = ||A(x) - y||_2 / (sigma_y sqrt(m))``, which
  is about 1 when ``x`` explains ``y`` up to the noise;
- ``check_signal`` / ``check_measurement``, the shape and finiteness checks every method runs once.

:class:`LinearOperator`, a linear ``A``, adds what only a linear map has (a nonlinear :class:`Operator` has none of
these, so nothing can return a silently wrong solve):

- ``adjoint(y)`` the exact adjoint ``A^T y``: ``<A x, y> = <x, A^T y>`` for every ``x`` and ``y``;
- ``pinv(y)`` a cheap pseudo-inverse, or a documented approximate right inverse (``A pinv(y) ~ y``); it is the
  *classical candidate* handed to ReGuidance;
- ``prox_l2(z, y, gamma)`` the data-proximal map ``argmin_x (gamma / 2) ||A x - y||^2 + (1 / 2) ||x - z||^2`` and
  ``solve_gram(v, a, b)`` the measurement-space solve ``(a A A^T + b I)^{-1} v``: exact closed forms where the
  operator has one (a mask; the Fourier transfer function of a circular blur; the block structure of average
  pooling, ``A A^T = I / f^2``; a dense matrix), conjugate gradients to ``cg_tol`` otherwise (any other operator,
  users' own included);
- ``data_gradient(x, y) = 2 A^T (A x - y)`` exactly, through the adjoint; ``matrix()`` the dense matrix.

An operator is either *shared* by all samples (``batch_size is None``) or holds per-sample parameters (the masks
of :class:`Inpainting`) for ``batch_size`` samples; :meth:`Operator.select` restricts it to some of them.

Operators (all linear): :class:`MatrixOperator` (dense ``(m, d)`` matrix on flat signals), :class:`Inpainting`
(masks), :class:`SuperResolution` (average pooling or antialiased bicubic downsampling), :class:`Blur` (circular
convolution with any kernel: the motion blur of the benchmark) and :class:`GaussianBlur`; one nonlinear operator,
:class:`Saturation` (a saturating sensor ``tanh(k L x)`` after a linear map ``L``). A nonlinear forward
model subclasses :class:`Operator` and implements ``_forward``; a deepinv ``Physics`` is wrapped by
:class:`reguidance.operators.deepinv.DeepinvOperator`.
"""

from .base import LinearOperator, Operator, conjugate_gradient
from .blur import Blur, GaussianBlur
from .inpainting import Inpainting
from .matrix import MatrixOperator
from .resampling import SuperResolution
from .saturation import Saturation

__all__ = [
    "Blur",
    "GaussianBlur",
    "Inpainting",
    "LinearOperator",
    "MatrixOperator",
    "Operator",
    "Saturation",
    "SuperResolution",
    "conjugate_gradient",
]
