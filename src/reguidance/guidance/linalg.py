r"""Per-sample conjugate gradients for the linear systems of the guidance methods.

Several baselines need a small symmetric positive (semi-)definite solve per sample and per step:

- DiffPIR's data-proximal step ``(A^T A + rho I) x = A^T y + rho x0`` (:func:`solve_proximal`);
- PiGDM's ``(r^2 A A^T + sigma_y^2 I) v = y - A x0`` in measurement space.

:func:`conjugate_gradient` solves ``M x = b`` for a batch ``b: (B, *shape)`` and a linear map ``M`` that acts
on each sample separately (a batch in, a batch out, sample ``i`` of ``M(x)`` depending only on sample ``i`` of
``x``). Inner products, step sizes and the stopping test are taken *per sample*: a sample stops changing once its
own residual satisfies ``||b_i - M x_i|| <= tol ||b_i||``, so its result never depends on the other samples in the
batch. This is textbook CG (Hestenes and Stiefel 1952; Nocedal and Wright, *Numerical Optimization*, Alg. 5.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..conventions import check_nonnegative, check_positive_int

if TYPE_CHECKING:
    from ..operators import Operator

__all__ = ["conjugate_gradient", "solve_proximal"]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner products ``<a_i, b_i>`` (B,)."""
    return (a * b).flatten(1).sum(dim=1)


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """A (B,) tensor shaped ``(B, 1, ..., 1)`` to broadcast against ``x``."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    x0: Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> Tensor:
    """Solve ``M x = b`` per sample by conjugate gradients; ``M = apply`` symmetric positive semi-definite.

    ``b: (B, *shape)``; ``apply`` maps ``(B, *shape) -> (B, *shape)`` sample by sample. ``x0`` is the starting
    point (zeros when ``None``). Each sample iterates until ``||b_i - M x_i|| <= tol ||b_i||`` or ``max_iter``
    iterations; converged samples are frozen. For a semi-definite ``M`` with ``b`` in its range (e.g. a masked
    operator) CG stays in that range and converges to the minimum-norm correction of ``x0``.
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


def solve_proximal(
    operator: Operator,
    rhs: Tensor,
    rho: Tensor | float,
    *,
    x0: Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> Tensor:
    """Solve ``(A^T A + rho I) x = rhs`` per sample with :func:`conjugate_gradient`; ``rho > 0``.

    ``rhs: (B, *operator.x_shape)``; ``rho`` a number or a (B,) tensor (one weight per sample). ``x0`` warm-starts
    CG (a good guess is the prior's estimate).
    """
    rho_t = torch.as_tensor(rho, dtype=rhs.dtype, device=rhs.device).reshape(-1)
    if not bool((rho_t > 0).all()):
        raise ValueError(f"rho must be > 0, got {rho_t.tolist()[:8]}")
    rho_b = _per_sample(rho_t, rhs) if rho_t.numel() > 1 else rho_t.reshape(())

    def apply(v: Tensor) -> Tensor:
        return operator.adjoint(operator(v)) + rho_b * v

    return conjugate_gradient(apply, rhs, x0=x0, max_iter=max_iter, tol=tol)
