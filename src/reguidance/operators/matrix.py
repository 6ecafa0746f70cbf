"""A dense matrix on flat signals: ``A x`` with ``x`` (B, d), ``A`` (m, d)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..conventions import (
    check_finite,
)
from .base import (
    LinearOperator,
)

__all__ = ["MatrixOperator"]


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
