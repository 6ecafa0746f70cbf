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

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..conventions import (
    BatchRNG,
    InputError,
    check_finite,
    check_image_scale,
    check_nonnegative,
    check_positive_int,
    check_signal_shape,
    check_unit_interval,
)

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

Index = int | slice | Sequence[int] | Tensor


def _check_shape(name: str, shape: Sequence[int], ndim: int | None = None) -> tuple[int, ...]:
    """A per-sample shape as a tuple of ints >= 1 (with ``ndim`` entries when given)."""
    try:
        out = tuple(check_positive_int(name, s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of integers >= 1, got {shape!r}") from None
    if len(out) == 0 or (ndim is not None and len(out) != ndim):
        want = f"{ndim} entries" if ndim is not None else "at least one entry"
        raise ValueError(f"{name} must have {want}, got {shape!r}")
    return out


def _image_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    c, h, w = _check_shape("x_shape", x_shape, ndim=3)
    return c, h, w


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """A (B,) or () tensor shaped to broadcast against the batch ``x``."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def _positive(name: str, value: float | Tensor, x: Tensor) -> Tensor:
    """``value`` (a number or a (B,) tensor) as a float64 tensor on ``x``'s device, or InputError unless all > 0."""
    v = torch.as_tensor(value, dtype=torch.float64, device=x.device).reshape(-1)
    if v.numel() not in (1, x.shape[0]) or not bool(torch.isfinite(v).all() & (v > 0).all()):
        raise InputError(f"{name} must be a number > 0 or one per sample ({x.shape[0]},), got {value!r}")
    return v


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner products ``<a_i, b_i>`` (B,)."""
    return (a * b).flatten(1).sum(dim=1)


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    x0: Tensor | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> Tensor:
    """Solve ``M x = b`` per sample by conjugate gradients; ``M = apply`` symmetric positive semi-definite.

    ``b: (B, *shape)``; ``apply`` maps ``(B, *shape) -> (B, *shape)`` sample by sample. ``x0`` is the starting
    point (zeros when ``None``). Inner products, step sizes and the stopping test are per sample (Hestenes and
    Stiefel 1952; Nocedal and Wright, Alg. 5.2): sample ``i`` stops once ``||b_i - M x_i|| <= tol ||b_i||`` or after
    ``max_iter`` iterations, so its result never depends on the other samples. For a semi-definite ``M`` with ``b``
    in its range, CG stays in that range and converges to the minimum-norm correction of ``x0``.
    """
    check_positive_int("max_iter", max_iter)
    check_nonnegative("tol", tol)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = _dot(r, r)
    threshold = (tol * _dot(b, b).sqrt()) ** 2
    active = rs > threshold
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        mp = apply(p)
        pmp = _dot(p, mp)
        ok = active & (pmp > 0)
        alpha = torch.where(ok, rs / torch.where(ok, pmp, torch.ones_like(pmp)), torch.zeros_like(rs))
        x = x + _per_sample(alpha, x) * p
        r = r - _per_sample(alpha, r) * mp
        rs_new = _dot(r, r)
        beta = torch.where(ok, rs_new / torch.where(ok, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = torch.where(_per_sample(ok, p), r + _per_sample(beta, p) * p, p)
        rs = torch.where(ok, rs_new, rs)
        active = ok & (rs > threshold)
    return x


def _as_index(index: Index) -> Index:
    """An index that keeps the batch dimension (an int becomes a one-element list)."""
    if isinstance(index, (int, np.integer)):
        return [int(index)]
    return index


class Operator(nn.Module):
    """A forward operator ``A: (B, *x_shape) -> (B, *y_shape)``, linear or not, with Gaussian noise of std ``sigma_y``.

    Subclasses set ``x_shape`` and ``y_shape`` through ``__init__`` and implement :meth:`_forward`, the unvalidated
    ``A(x)``, differentiable in ``x`` (DPS, DAPS and ReGuidance differentiate through it). A linear map subclasses
    :class:`LinearOperator` instead, which adds the adjoint, the pseudo-inverse and the exact solves.
    """

    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]

    def __init__(self, x_shape: Sequence[int], y_shape: Sequence[int], sigma_y: float = 0.0) -> None:
        super().__init__()
        self.x_shape = _check_shape("x_shape", x_shape)
        self.y_shape = _check_shape("y_shape", y_shape)
        self.sigma_y = sigma_y

    # ------------------------------------------------------------------------------------------ attributes
    @property
    def sigma_y(self) -> float:
        """Measurement noise std on the ``[-1, 1]`` scale (>= 0)."""
        return self._sigma_y

    @sigma_y.setter
    def sigma_y(self, value: float) -> None:
        self._sigma_y = check_nonnegative("sigma_y", value)

    @property
    def batch_size(self) -> int | None:
        """Number of samples with their own parameters; ``None`` when the operator is shared by all samples."""
        return None

    @property
    def num_measurements(self) -> int | Tensor:
        """Observed scalar entries per sample ``m``: an int when shared, else a ``(batch_size,)`` int64 tensor."""
        return math.prod(self.y_shape)

    @property
    def device(self) -> torch.device:
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}, y_shape={self.y_shape}, sigma_y={self.sigma_y}"

    # ---------------------------------------------------------------------------------------- validation
    def _check_batch(self, name: str, n: int) -> None:
        b = self.batch_size
        if b is not None and b != 1 and n != b:
            raise ValueError(
                f"{name} has batch size {n} but {type(self).__name__} holds parameters for {b} samples; "
                "use select() to restrict it to the samples at hand"
            )

    def check_signal(self, x: Tensor, name: str = "x") -> Tensor:
        """Check that ``x`` is a finite ``(B, *x_shape)`` batch this operator can act on."""
        check_signal_shape(name, x, self.x_shape, type(self).__name__)
        self._check_batch(name, x.shape[0])
        return x

    def check_measurement(self, y: Tensor, name: str = "measurement") -> Tensor:
        """Check that ``y`` is a finite ``(B, *y_shape)`` batch this operator can act on."""
        check_signal_shape(name, y, self.y_shape, type(self).__name__)
        self._check_batch(name, y.shape[0])
        return y

    def _check_pair(self, x: Tensor, y: Tensor) -> None:
        self.check_signal(x)
        self.check_measurement(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has batch size {x.shape[0]} but measurement has batch size {y.shape[0]}")

    # ------------------------------------------------------------------------------------ the operator
    def _forward(self, x: Tensor) -> Tensor:
        """``A(x)`` without validation; ``x: (B, *x_shape) -> (B, *y_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _forward(x)")

    def forward(self, x: Tensor) -> Tensor:
        """The noiseless measurement ``A(x)``: ``x (B, *x_shape) -> (B, *y_shape)``."""
        return self._forward(self.check_signal(x))

    def measure(self, x: Tensor, rng: BatchRNG) -> Tensor:
        """A noisy measurement ``A(x) + sigma_y n``, ``n`` drawn from sample ``i``'s generator in ``rng``.

        ``x`` is the truth: images ``(B, C, H, W)`` must lie on the ``[-1, 1]`` scale (:func:`check_image_scale`).
        The noise is always drawn (also when ``sigma_y = 0``), so the generators advance the same way whatever
        the noise level.
        """
        check_image_scale("x", x)
        ax = self(x)
        return ax + self.sigma_y * rng.randn_like(ax)

    def data_gradient(self, x: Tensor, y: Tensor) -> Tensor:
        """``grad_x ||A(x) - y||^2`` per sample (B, *x_shape), by automatic differentiation through :meth:`_forward`.

        Samples do not interact, so the gradient of the batch sum is each sample's own gradient. ``x`` is taken
        as a constant (detached); the result carries no graph.
        """
        self._check_pair(x, y)
        with torch.enable_grad():
            u = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad((self._forward(u) - y).pow(2).sum(), u)
        return g

    # ---------------------------------------------------------------------------------------- diagnostics
    def residual_norm(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample ``||y - A(x)||_2`` (B,) for ``x (B, *x_shape)`` and ``y (B, *y_shape)``."""
        self._check_pair(x, y)
        return (y - self._forward(x)).flatten(1).norm(dim=1)

    def consistency(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample ``||A(x) - y||_2 / (sigma_y sqrt(m))`` (B,); about 1 when ``x`` explains ``y``.

        Raises ``ValueError`` when ``sigma_y = 0``, where the ratio is undefined.
        """
        if self.sigma_y == 0:
            raise ValueError("sigma_y is 0, so consistency ||A x - y|| / (sigma_y sqrt(m)) is undefined")
        r = self.residual_norm(x, y)
        m = torch.as_tensor(self.num_measurements, dtype=r.dtype, device=r.device)
        return r / (self.sigma_y * torch.sqrt(m))

    def picture(self, y: Tensor) -> Tensor:
        """The measurement ``y`` (B, *y_shape) as a picture the size of a signal (B, *x_shape), for people to look
        at: ``y`` itself when it has the signal's shape (a blurred image as measured, an inpainting measurement with
        its hole at 0, mid-grey), else ``y`` resized by nearest neighbour (each low-resolution pixel a block, for
        super-resolution); not clamped. An InputError for measurements that are not images of the signal's channels.
        """
        self.check_measurement(y)
        if tuple(self.y_shape) == tuple(self.x_shape):
            return y
        if len(self.y_shape) != 3 or len(self.x_shape) != 3 or self.y_shape[0] != self.x_shape[0]:
            raise InputError(
                f"{type(self).__name__}: a measurement of shape {tuple(self.y_shape)} is not an image of the "
                f"signal's {tuple(self.x_shape)} channels, so it has no picture"
            )
        return F.interpolate(y, size=tuple(self.x_shape[1:]), mode="nearest-exact")

    def select(self, index: Index) -> Operator:
        """The operator restricted to samples ``index``; a shared operator returns itself."""
        if self.batch_size is None:
            return self
        raise NotImplementedError(f"{type(self).__name__} does not implement select()")


class LinearOperator(Operator):
    """A linear forward operator ``A x``: an :class:`Operator` with an adjoint, a pseudo-inverse and exact solves.

    Subclasses implement :meth:`_forward` (linear in ``x``). The adjoint defaults to the vector-Jacobian product
    of :meth:`_forward` (exact, since ``A`` is linear); subclasses override :meth:`_adjoint` where a closed form is
    cheap, :meth:`_pinv` where a cheap pseudo-inverse exists (else :meth:`pinv` raises ``NotImplementedError``),
    and :meth:`_prox_l2` / :meth:`_solve_gram` where a closed form exists (else conjugate gradients).
    """

    def _adjoint(self, y: Tensor) -> Tensor:
        """``A^T y`` as the vector-Jacobian product of the linear map :meth:`_forward`."""
        zeros = y.new_zeros((y.shape[0], *self.x_shape))
        vjp = torch.func.vjp(self._forward, zeros)[1]  # (output, vjp_fn); a third item only with has_aux
        return vjp(y)[0]

    def _pinv(self, y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no cheap pseudo-inverse")

    def adjoint(self, y: Tensor) -> Tensor:
        """The exact adjoint ``A^T y``: ``y (B, *y_shape) -> (B, *x_shape)``."""
        return self._adjoint(self.check_measurement(y))

    def pinv(self, y: Tensor) -> Tensor:
        """A cheap pseudo-inverse (see the subclass for which one): ``y (B, *y_shape) -> (B, *x_shape)``."""
        return self._pinv(self.check_measurement(y))

    def data_gradient(self, x: Tensor, y: Tensor) -> Tensor:
        """``grad_x ||A x - y||^2 = 2 A^T (A x - y)`` per sample (B, *x_shape), exactly, through the adjoint."""
        return 2 * self.adjoint(self(x) - y)

    # ------------------------------------------------------------------------------------------- the solves
    #: relative residual ``||b - M x|| / ||b||`` at which the conjugate-gradient fallback stops, and its iteration cap
    cg_tol: float = 1e-6
    cg_max_iter: int = 1000

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor) -> Tensor:
        """``argmin_x (gamma / 2) ||A x - y||^2 + (1 / 2) ||x - z||^2`` per sample, i.e. the solution of
        ``(gamma A^T A + I) x = gamma A^T y + z``; ``z (B, *x_shape)``, ``y (B, *y_shape)``, ``gamma > 0`` a number
        or a (B,) tensor. With ``gamma = 1 / rho`` this is DiffPIR's ``argmin ||y - A x||^2 + rho ||x - z||^2``.

        The default solves by conjugate gradients in float64 to :attr:`cg_tol`; subclasses with a closed form
        override :meth:`_prox_l2`.
        """
        self._check_pair(z, y)
        g = _per_sample(_positive("gamma", gamma, z), z)
        return self._prox_l2(z, y, g).to(z.dtype)

    def solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        """``u = (a A A^T + b I)^{-1} v`` per sample in measurement space; ``v (B, *y_shape)``, ``a > 0``, ``b >= 0``.

        With ``b = 0`` and a rank-deficient ``A A^T`` (a mask's unobserved entries, a blur's zeros), ``u`` is the
        minimum-norm (pseudo-inverse) solution. PiGDM's ``(r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0)``.
        """
        self.check_measurement(v, "v")
        if check_nonnegative("a", a) == 0:
            raise InputError("a must be > 0, got 0")
        check_nonnegative("b", b)
        return self._solve_gram(v, float(a), float(b)).to(v.dtype)

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        z64, g = z.double(), gamma.double()
        rhs = g * self._adjoint(y.double()) + z64
        return conjugate_gradient(
            lambda v: g * self._adjoint(self._forward(v)) + v, rhs, x0=z64, max_iter=self.cg_max_iter, tol=self.cg_tol
        )

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        return conjugate_gradient(
            lambda u: a * self._forward(self._adjoint(u)) + b * u,
            v.double(),
            max_iter=self.cg_max_iter,
            tol=self.cg_tol,
        )

    def matrix(self, dtype: torch.dtype = torch.float64, chunk: int = 1024) -> Tensor:
        """The dense matrix of ``A`` for one sample, ``(prod(y_shape), prod(x_shape))``, row-major flattening.

        Built by applying :meth:`forward` to the identity basis, ``chunk`` columns at a time; meant for small
        signals (the Gaussian-mixture testbed). Needs a shared operator, or one holding a single sample.
        """
        if self.batch_size not in (None, 1):
            raise ValueError(
                f"{type(self).__name__} holds parameters for {self.batch_size} samples; "
                "matrix() needs one: call select(i).matrix()"
            )
        d = math.prod(self.x_shape)
        cols = []
        for start in range(0, d, chunk):
            stop = min(start + chunk, d)
            basis = torch.zeros(stop - start, d, dtype=dtype, device=self.device)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
            cols.append(self._forward(basis.reshape(-1, *self.x_shape)).reshape(stop - start, -1))
        return torch.cat(cols).T.contiguous()


# ------------------------------------------------------------------------------------------------ matrix
class MatrixOperator(LinearOperator):
    """``A x = x M^T`` for flat signals ``x: (B, d)`` and a dense matrix ``M: (m, d)``, shared by all samples.

    ``pinv`` is the Moore-Penrose pseudo-inverse ``M^+``, computed once (in float64) at construction.
    """

    weight: Tensor
    weight_pinv: Tensor

    def __init__(self, matrix: Tensor, sigma_y: float = 0.0) -> None:
        if not isinstance(matrix, Tensor) or matrix.dim() != 2 or matrix.numel() == 0:
            raise ValueError(f"matrix must be a non-empty 2-D tensor (m, d), got {getattr(matrix, 'shape', matrix)}")
        if not matrix.is_floating_point():
            matrix = matrix.to(torch.get_default_dtype())
        check_finite("matrix", matrix)
        m, d = matrix.shape
        super().__init__((d,), (m,), sigma_y)
        self.register_buffer("weight", matrix.detach().clone())
        self.register_buffer("weight_pinv", torch.linalg.pinv(matrix.detach().double()).to(matrix.dtype))

    def _forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.to(x.dtype).T

    def _adjoint(self, y: Tensor) -> Tensor:
        return y @ self.weight.to(y.dtype)

    def _pinv(self, y: Tensor) -> Tensor:
        return y @ self.weight_pinv.to(y.dtype).T

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        m = self.weight.double()
        g = gamma.reshape(-1, 1, 1)
        lhs = g * (m.T @ m) + torch.eye(m.shape[1], dtype=torch.float64, device=m.device)  # (B or 1, d, d)
        rhs = gamma.reshape(-1, 1) * (y.double() @ m) + z.double()
        return torch.linalg.solve(lhs.expand(z.shape[0], -1, -1), rhs)

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        m = self.weight.double()
        gram = a * (m @ m.T) + b * torch.eye(m.shape[0], dtype=torch.float64, device=m.device)
        return v.double() @ torch.linalg.pinv(gram, hermitian=True)

    def matrix(self, dtype: torch.dtype = torch.float64, chunk: int = 1024) -> Tensor:
        return self.weight.to(dtype).clone()


# -------------------------------------------------------------------------------------------- inpainting
class Inpainting(LinearOperator):
    """``A x = x * mask``: keep the observed entries, zero the others; ``y`` has ``x``'s shape.

    ``mask`` is 0/1 with shape ``(B or 1, 1 or C, *spatial)`` for images (a one-channel mask is shared by all
    channels) or ``(B or 1, d)`` for flat signals; a leading 1 means one mask for every sample. ``x_shape``
    defaults to ``mask.shape[1:]``; pass it to apply a one-channel mask to ``C``-channel images.

    The operator is its own adjoint and pseudo-inverse (an orthogonal projection): ``adjoint = pinv = y * mask``.
    :meth:`measure` adds noise on the observed entries only, ``y = mask (x + sigma_y n)``, so unobserved entries
    stay 0 and ``consistency`` is about 1 for the true signal. ``num_measurements`` counts the observed entries
    over all channels. ``top_left`` (B, 2) optionally records the box positions the mask was built from.
    """

    mask: Tensor
    top_left: Tensor | None

    def __init__(
        self,
        mask: Tensor,
        sigma_y: float = 0.0,
        *,
        x_shape: Sequence[int] | None = None,
        top_left: Tensor | None = None,
    ) -> None:
        if not isinstance(mask, Tensor) or mask.dim() < 2:
            got = getattr(mask, "shape", mask)
            raise ValueError(f"mask must be a tensor (B or 1, 1 or C, *spatial) or (B or 1, d), got {got!r}")
        check_finite("mask", mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1 (observed = 1)")
        shape = tuple(mask.shape[1:]) if x_shape is None else _check_shape("x_shape", x_shape)
        compatible = len(shape) == mask.dim() - 1 and (
            tuple(mask.shape[1:]) == shape
            or (len(shape) >= 2 and mask.shape[1] == 1 and tuple(mask.shape[2:]) == shape[1:])
        )
        if not compatible:
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but x_shape is {shape}; expected (B or 1, {shape[0]} or 1, "
                f"{', '.join(map(str, shape[1:]))}) for images or (B or 1, d) for flat signals"
            )
        super().__init__(shape, shape, sigma_y)
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())
        if top_left is not None:
            top_left = torch.as_tensor(top_left, dtype=torch.int64)
            if top_left.dim() != 2 or top_left.shape != (mask.shape[0], 2):
                raise ValueError(
                    f"top_left has shape {tuple(top_left.shape)}; expected ({mask.shape[0]}, 2) matching the mask"
                )
            top_left = top_left.to(mask.device)
        self.register_buffer("top_left", top_left)

    # ------------------------------------------------------------------------------------------- factories
    @classmethod
    def box(
        cls,
        x_shape: Sequence[int],
        size: int | Sequence[int],
        top_left: Tensor | Sequence[int] | None = None,
        sigma_y: float = 0.0,
    ) -> Inpainting:
        """A missing ``size = (h, w)`` (or ``h = w = size``) box in images ``x_shape = (C, H, W)``.

        ``top_left`` (B, 2) int holds each image's box corner ``(row, col)``; ``None`` centres one box shared
        by all images at ``((H - h) // 2, (W - w) // 2)``. The mask is ``(B or 1, 1, H, W)``, shared by channels.
        """
        c, h_img, w_img = _image_shape(x_shape)
        h, w = cls._box_size(size, h_img, w_img)
        if top_left is None:
            corners = torch.tensor([[(h_img - h) // 2, (w_img - w) // 2]], dtype=torch.int64)
        else:
            corners = torch.as_tensor(top_left)
            if corners.dim() == 1:
                corners = corners.unsqueeze(0)
            if corners.dim() != 2 or corners.shape[1] != 2 or corners.shape[0] < 1:
                raise ValueError(f"top_left must have shape (B, 2), got {tuple(corners.shape)}")
            if corners.is_floating_point() or corners.is_complex() or corners.dtype == torch.bool:
                raise ValueError(f"top_left must hold integers, got dtype {corners.dtype}")
            corners = corners.to(torch.int64).cpu()
            rows, cols = corners[:, 0], corners[:, 1]
            if bool((rows < 0).any() | (rows > h_img - h).any() | (cols < 0).any() | (cols > w_img - w).any()):
                raise ValueError(
                    f"top_left puts a ({h}, {w}) box outside a ({h_img}, {w_img}) image; rows must lie in "
                    f"[0, {h_img - h}] and columns in [0, {w_img - w}], got {corners.tolist()}"
                )
        r = torch.arange(h_img)
        q = torch.arange(w_img)
        in_rows = (r >= corners[:, :1]) & (r < corners[:, :1] + h)  # (B, H)
        in_cols = (q >= corners[:, 1:]) & (q < corners[:, 1:] + w)  # (B, W)
        mask = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return cls(mask.unsqueeze(1), sigma_y, x_shape=(c, h_img, w_img), top_left=corners)

    @classmethod
    def random_box(
        cls, x_shape: Sequence[int], size: int | Sequence[int], rng: BatchRNG, sigma_y: float = 0.0
    ) -> Inpainting:
        """A missing box per image at a uniformly random position, drawn from that image's generator in ``rng``."""
        _, h_img, w_img = _image_shape(x_shape)
        h, w = cls._box_size(size, h_img, w_img)
        corners = torch.stack(
            [
                torch.cat(
                    [
                        torch.randint(h_img - h + 1, (1,), generator=g, device=rng.device),
                        torch.randint(w_img - w + 1, (1,), generator=g, device=rng.device),
                    ]
                )
                for g in rng.generators
            ]
        )
        return cls.box(x_shape, (h, w), top_left=corners.cpu(), sigma_y=sigma_y)

    @classmethod
    def random_pixels(
        cls, x_shape: Sequence[int], fraction_observed: float, rng: BatchRNG, sigma_y: float = 0.0
    ) -> Inpainting:
        """Per-sample random masks observing ``max(1, round(fraction_observed * n))`` of ``n`` positions.

        Images ``(C, *spatial)``: the positions are pixels, shared by the channels. Flat ``(d,)``: entries.
        ``fraction_observed`` lies in (0, 1]; sample ``i``'s mask comes from generator ``i`` of ``rng``.
        """
        fraction = check_unit_interval("fraction_observed", fraction_observed)
        shape = _check_shape("x_shape", x_shape)
        positions = shape if len(shape) == 1 else (1, *shape[1:])
        n = math.prod(positions)
        k = max(1, round(fraction * n))
        u = rng.rand(n, dtype=torch.float64).cpu()
        observed = torch.zeros(len(rng), n, dtype=torch.bool)
        observed.scatter_(1, u.argsort(dim=1)[:, :k], True)
        return cls(observed.reshape(len(rng), *positions), sigma_y, x_shape=shape)

    @staticmethod
    def _box_size(size: int | Sequence[int], h_img: int, w_img: int) -> tuple[int, int]:
        hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if len(hw) != 2:
            raise ValueError(f"size must be an int or a pair (h, w), got {size!r}")
        h, w = (check_positive_int("size", s) for s in hw)
        if h > h_img or w > w_img:
            raise ValueError(f"size ({h}, {w}) is larger than the ({h_img}, {w_img}) image")
        return h, w

    # ------------------------------------------------------------------------------------------- operator
    @property
    def batch_size(self) -> int | None:
        return None if self.mask.shape[0] == 1 else self.mask.shape[0]

    @property
    def num_measurements(self) -> int | Tensor:
        per_mask = self.mask.flatten(1).sum(dim=1) * (math.prod(self.x_shape) // math.prod(self.mask.shape[1:]))
        return int(per_mask[0]) if self.batch_size is None else per_mask

    def _forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.dtype)

    def _adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask.to(y.dtype)

    def _pinv(self, y: Tensor) -> Tensor:
        return y * self.mask.to(y.dtype)

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        mask = self.mask.double()
        return (gamma * mask * y.double() + z.double()) / (gamma * mask + 1)

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        mask = self.mask.double()  # A A^T is the mask itself on the measurement space
        return mask * v.double() / (a * mask + b + (1 - mask))  # unobserved entries: 0 (the minimum-norm solution)

    def measure(self, x: Tensor, rng: BatchRNG) -> Tensor:
        """``mask (x + sigma_y n)``: noise on the observed entries only (unobserved entries stay 0)."""
        check_image_scale("x", x)
        ax = self(x)
        return ax + self.sigma_y * self._forward(rng.randn_like(ax))

    def select(self, index: Index) -> Inpainting:
        if self.batch_size is None:
            return self
        idx = _as_index(index)
        top_left = None if self.top_left is None else self.top_left[idx]
        return Inpainting(self.mask[idx], self.sigma_y, x_shape=self.x_shape, top_left=top_left)


# -------------------------------------------------------------------------------------- super-resolution
class SuperResolution(LinearOperator):
    """Downsampling of images ``x_shape = (C, H, W)`` by an integer ``factor`` to ``(C, H / f, W / f)``.

    ``kind="avgpool"``: mean over ``f x f`` blocks. Its adjoint is nearest upsampling divided by ``f^2`` and its
    Moore-Penrose pseudo-inverse is nearest upsampling (``A A^T = I / f^2``), an exact right inverse.

    ``kind="bicubic"``: ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)`` to the low
    resolution (the PIL-style resize). The adjoint is the exact vector-Jacobian product; ``pinv`` is bicubic
    upsampling, only an approximate right inverse (``A pinv(y) ~ y``).
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        factor: int,
        kind: Literal["avgpool", "bicubic"] = "avgpool",
        sigma_y: float = 0.0,
    ) -> None:
        c, h, w = _image_shape(x_shape)
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or not 2 <= factor <= 16:
            raise ValueError(f"factor must be an integer in [2, 16], got {factor!r}")
        if h % factor or w % factor:
            raise ValueError(f"factor {factor} does not divide the image size ({h}, {w})")
        if kind not in ("avgpool", "bicubic"):
            raise ValueError(f"kind must be 'avgpool' or 'bicubic', got {kind!r}")
        super().__init__((c, h, w), (c, h // factor, w // factor), sigma_y)
        self.factor = int(factor)
        self.kind = kind

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, kind={self.kind!r}"

    def _forward(self, x: Tensor) -> Tensor:
        if self.kind == "avgpool":
            return F.avg_pool2d(x, self.factor)
        return F.interpolate(x, size=self.y_shape[1:], mode="bicubic", antialias=True, align_corners=False)

    def _upsample_nearest(self, y: Tensor) -> Tensor:
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def _adjoint(self, y: Tensor) -> Tensor:
        if self.kind == "avgpool":
            return self._upsample_nearest(y) / self.factor**2
        return super()._adjoint(y)

    def _pinv(self, y: Tensor) -> Tensor:
        if self.kind == "avgpool":
            return self._upsample_nearest(y)
        return F.interpolate(y, size=self.x_shape[1:], mode="bicubic", align_corners=False)

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        if self.kind != "avgpool":
            return super()._prox_l2(z, y, gamma)
        # A A^T = I / f^2, so (I + g A^T A)^{-1} = I - g / (1 + g / f^2) A^T A  (Woodbury)
        r = gamma * self._adjoint(y.double()) + z.double()
        return r - gamma / (1 + gamma / self.factor**2) * self._adjoint(self._forward(r))

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        if self.kind != "avgpool":
            return super()._solve_gram(v, a, b)
        return v.double() / (a / self.factor**2 + b)


# ---------------------------------------------------------------------------------------------------- blur
class Blur(LinearOperator):
    r"""Circular (periodic) convolution of each channel of images ``(C, H, W)`` with ``kernel (kh, kw)``.

    ``(A x)[i, j] = sum_{a, b} kernel[a, b] x[(i - a + kh // 2) mod H, (j - b + kw // 2) mod W]``: a true
    convolution centred on the kernel's middle entry (odd ``kh <= H``, ``kw <= W``). In Fourier space
    ``A x = F^{-1}(K F x)`` with ``K`` the transfer function of the zero-padded, centred kernel; the adjoint is the
    circular correlation ``F^{-1}(conj(K) F y)``.

    ``pinv`` is Tikhonov-regularised deconvolution ``F^{-1}(conj(K) Y / (|K|^2 + reg))``, an approximate inverse
    that is accurate at frequencies where ``|K|^2 >> reg`` (``reg > 0``; ``|K| <= 1`` for a normalised kernel).
    """

    kernel: Tensor

    def __init__(self, x_shape: Sequence[int], kernel: Tensor, sigma_y: float = 0.0, reg: float = 1e-3) -> None:
        c, h, w = _image_shape(x_shape)
        if not isinstance(kernel, Tensor) or kernel.dim() != 2:
            raise ValueError(f"kernel must be a 2-D tensor (kh, kw), got {getattr(kernel, 'shape', kernel)!r}")
        kh, kw = kernel.shape
        if kh % 2 == 0 or kw % 2 == 0 or kh > h or kw > w:
            raise ValueError(f"kernel must have odd sizes at most the image size ({h}, {w}), got ({kh}, {kw})")
        check_finite("kernel", kernel)
        if check_nonnegative("reg", reg) == 0:
            raise ValueError("reg must be > 0, got 0")
        super().__init__((c, h, w), (c, h, w), sigma_y)
        self.register_buffer("kernel", kernel.detach().to(torch.float64).clone())
        self.reg = float(reg)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={tuple(self.kernel.shape)}, reg={self.reg}"

    def transfer(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``K = rfft2`` of the kernel zero-padded to ``(H, W)`` with its centre at ``(0, 0)``: ``(H, W // 2 + 1)``."""
        h, w = self.x_shape[1:]
        kh, kw = self.kernel.shape
        padded = self.kernel.new_zeros(h, w)
        padded[:kh, :kw] = self.kernel
        padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        return torch.fft.rfft2(padded.to(dtype))

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=self.x_shape[1:])

    def _forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self.transfer(x.dtype))

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self.transfer(y.dtype).conj())

    def _pinv(self, y: Tensor) -> Tensor:
        k = self.transfer(y.dtype)
        return self._filter(y, k.conj() / (k.abs() ** 2 + self.reg))

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        # (g |K|^2 + 1) X = g conj(K) Y + Z, frequency by frequency, in float64
        k = self.transfer(torch.float64)
        g = gamma.reshape(-1, *([1] * (z.dim() - 1)))
        rhs = g * torch.fft.rfft2(y.double()) * k.conj() + torch.fft.rfft2(z.double())
        return torch.fft.irfft2(rhs / (g * k.abs() ** 2 + 1), s=self.x_shape[1:])

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        power = a * self.transfer(torch.float64).abs() ** 2 + b
        keep = power > 1e-12 * a  # frequencies the blur removes get 0 when b = 0 (the minimum-norm solution)
        gain = torch.where(keep, 1 / torch.where(keep, power, torch.ones_like(power)), torch.zeros_like(power))
        return self._filter(v.double(), gain)


class GaussianBlur(Blur):
    """:class:`Blur` with a normalised Gaussian kernel of std ``blur_sigma`` pixels, ``kernel_size`` pixels wide.

    ``kernel_size=None`` takes ``2 ceil(3 blur_sigma) + 1`` (the kernel truncated at 3 standard deviations).
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        kernel_size: int | None = None,
        blur_sigma: float = 3.0,
        sigma_y: float = 0.0,
        reg: float = 1e-3,
    ) -> None:
        if check_nonnegative("blur_sigma", blur_sigma) == 0:
            raise ValueError("blur_sigma must be > 0, got 0")
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * blur_sigma) + 1
        size = check_positive_int("kernel_size", kernel_size)
        _, h, w = _image_shape(x_shape)
        if size % 2 == 0 or size > min(h, w):
            raise ValueError(f"kernel_size must be odd and at most {min(h, w)}, got {size}")
        u = torch.arange(size, dtype=torch.float64) - size // 2
        g = torch.exp(-0.5 * (u / blur_sigma) ** 2)
        kernel = torch.outer(g, g)
        super().__init__(x_shape, kernel / kernel.sum(), sigma_y, reg)
        self.blur_sigma = float(blur_sigma)


class Saturation(Operator):
    r"""A saturating sensor after a linear map: ``A(x) = tanh(k L x)``, nonlinear (no adjoint, no pseudo-inverse).

    ``inner`` is the linear map ``L`` (a :class:`LinearOperator`, e.g. a :class:`GaussianBlur`: the benchmark's
    ``satblur``), ``k > 0`` the sensor's gain: ``tanh`` is about linear (``A(x) ~ k L x``) while ``|k L x| << 1``
    and flattens towards +-1 beyond, so bright and dark regions lose contrast and ``y`` in (-1, 1) (before noise).
    ``sigma_y`` is the noise after the sensor. The data gradient, by automatic differentiation, is

        grad_x ||A(x) - y||^2 = 2 k L^T [(1 - tanh^2(k L x)) (tanh(k L x) - y)].

    Only methods that differentiate through ``A`` take it (DPS, DAPS, ReGuidance; RED-diff with an ``init``).
    """

    def __init__(self, inner: LinearOperator, gain: float, sigma_y: float = 0.0) -> None:
        if not isinstance(inner, LinearOperator):
            raise ValueError(f"inner must be a LinearOperator, got {type(inner).__name__}")
        if check_nonnegative("gain", gain) == 0:
            raise ValueError("gain must be > 0, got 0")
        super().__init__(inner.x_shape, inner.y_shape, sigma_y)
        self.inner = inner
        self.gain = float(gain)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gain={self.gain}"

    @property
    def batch_size(self) -> int | None:
        return self.inner.batch_size

    @property
    def num_measurements(self) -> int | Tensor:
        return self.inner.num_measurements

    def _forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.gain * self.inner._forward(x))

    def select(self, index: Index) -> Operator:
        if self.batch_size is None:
            return self
        inner = self.inner.select(index)
        assert isinstance(inner, LinearOperator)
        return Saturation(inner, self.gain, self.sigma_y)
