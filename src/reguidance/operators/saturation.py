"""A nonlinear operator: a saturating sensor ``tanh(k L x)`` after a linear map ``L``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..conventions import (
    check_nonnegative,
)
from .base import (
    Index,
    LinearOperator,
    Operator,
)

__all__ = ["Saturation"]


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
