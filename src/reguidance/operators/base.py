"""The two operator classes, :class:`Operator` (any differentiable ``A``) and :class:`LinearOperator` (adjoint,
pseudo-inverse, exact solves), and the helpers every operator shares; the package docstring states the conventions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..conventions import (
    BatchRNG,
    InputError,
    check_image_scale,
    check_nonnegative,
    check_positive_int,
    check_signal_shape,
)

__all__ = ["LinearOperator", "Operator", "conjugate_gradient"]

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
