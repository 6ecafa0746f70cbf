r"""Interoperability with deepinv: its ``Physics`` as one of our operators.

deepinv's images live in ``[0, 1]`` and ours in ``[-1, 1]``: ``x01 = (x + 1) / 2``. For deepinv's forward model
``A_d`` and measurement ``y_d = A_d(x01) + n_d`` (Gaussian noise of std ``sigma_d``), :class:`DeepinvOperator` is
the operator on our scale

    A(x) = 2 A_d((x + 1) / 2) - b,        b = A_d(1) for a linear physics (so that A = A_d is linear), else 0,

with measurements ``y = 2 y_d - b`` (:meth:`DeepinvOperator.measurement_from_deepinv`) and ``sigma_y = 2 sigma_d``.
A linear physics (one with ``A_adjoint``) keeps its adjoint, ``A^T = A_d^T``; its proximal and Gram solves use our
conjugate-gradient fallback. A nonlinear one serves DPS, DAPS and ReGuidance, which only differentiate ``A``.
deepinv is an optional dependency: nothing here imports it; any object with deepinv's ``A`` (and ``A_adjoint``)
works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .conventions import InputError
from .operators import Operator

__all__ = ["DeepinvOperator"]


class DeepinvOperator(Operator):
    """A deepinv ``Physics`` acting on signals ``x_shape = (C, H, W)`` in ``[-1, 1]`` (module docstring).

    ``sigma_y`` defaults to twice the physics' Gaussian noise std (``physics.noise_model.sigma``) and must be given
    when the physics has no such noise model.
    """

    def __init__(self, physics: Any, x_shape: Sequence[int], sigma_y: float | None = None) -> None:
        if not callable(getattr(physics, "A", None)):
            raise InputError(f"physics must have deepinv's A(x) method, got {type(physics).__name__}")
        self.physics = physics
        self.linear = callable(getattr(physics, "A_adjoint", None))
        if sigma_y is None:
            sigma_d = getattr(getattr(physics, "noise_model", None), "sigma", None)
            if sigma_d is None:
                raise InputError("the physics has no Gaussian noise_model.sigma: pass sigma_y (on the [-1, 1] scale)")
            sigma_y = 2 * float(sigma_d)
        probe = torch.zeros(1, *x_shape)
        with torch.no_grad():
            y_shape = tuple(physics.A(probe).shape[1:])
        super().__init__(x_shape, y_shape, sigma_y)

    def _offset(self, like: Tensor) -> Tensor:
        """``b = A_d(1)`` for a linear physics, else 0 (shaped like one measurement)."""
        if not self.linear:
            return like.new_zeros(1, *self.y_shape)
        return self.physics.A(torch.ones(1, *self.x_shape, dtype=like.dtype, device=like.device))

    def _forward(self, x: Tensor) -> Tensor:
        return 2 * self.physics.A((x + 1) / 2) - self._offset(x)

    def _adjoint(self, y: Tensor) -> Tensor:
        if not self.linear:
            raise InputError(f"the physics {type(self.physics).__name__} has no A_adjoint: it is not linear")
        return self.physics.A_adjoint(y)

    def measurement_from_deepinv(self, y_d: Tensor) -> Tensor:
        """deepinv's measurement ``y_d`` (of an image in [0, 1]) on our scale: ``2 y_d - b``."""
        return 2 * y_d - self._offset(y_d)

    @staticmethod
    def image_to_deepinv(x: Tensor) -> Tensor:
        """Our ``[-1, 1]`` images on deepinv's ``[0, 1]`` scale."""
        return (x + 1) / 2
