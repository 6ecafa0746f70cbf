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

ReGuidance's latent in deepinv's terms (:func:`latent_to_deepinv`). The latent is a state of our VP chain,
``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps`` with ``x0`` in ``[-1, 1]`` and ``ab`` the ``alpha_bar`` of its level.
deepinv's ``DPS`` keeps its state on that same scale and starts from ``2 x_init - 1``, so ``x_init = (x_t + 1) / 2``
makes its first state the latent itself; its denoisers see ``(x_t / sqrt(ab) + 1) / 2 = (x0 + 1) / 2 + s eps`` at
noise level ``s = sqrt((1 - ab) / ab) / 2`` (the variance-exploding noise level, halved by the ``[0, 1]`` scale).
deepinv's ``DPS`` and ``DiffPIR`` hard-code the linear 1000-step chain (``betas = linspace(1e-4, 0.02, 1000)``,
:meth:`reguidance.diffusion.Schedule.linear`), and ``DPS`` always starts at its most noisy timestep
``1000 - 1000 // max_iter`` (read in ``deepinv/sampling/diffusion.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .conventions import InputError
from .operators import Operator

__all__ = ["DeepinvLatent", "DeepinvOperator", "latent_to_deepinv"]


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


@dataclass(frozen=True)
class DeepinvLatent:
    """A latent ``x_t`` (B, C, H, W) of level ``alpha_bar`` in deepinv's conventions (module docstring).

    ``x_init``: ``(x_t + 1) / 2``, deepinv ``DPS``'s ``x_init`` (not an image in ``[0, 1]``: DPS's first state is
    ``2 x_init - 1 = x_t``); ``noisy_image``: ``(x_t / sqrt(ab) + 1) / 2 = x0_01 + sigma eps``, what a deepinv
    denoiser sees; ``sigma``: ``sqrt((1 - ab) / ab) / 2``, its noise level on the ``[0, 1]`` scale; ``timestep``: the
    timestep of deepinv's linear 1000-step chain whose ``sigma`` is nearest in log scale.
    """

    x_init: Tensor
    noisy_image: Tensor
    sigma: float
    timestep: int
    alpha_bar: float


def latent_to_deepinv(latent: Tensor, alpha_bar: float) -> DeepinvLatent:
    """Our latent ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps`` (B, C, H, W) at level ``alpha_bar`` in ``(0, 1)`` (for
    ReGuidance: ``prior.schedule.alphas_cumprod[round(t_end * (N - 1))]``, the last level of ``invert``'s
    schedule) in deepinv's conventions: see :class:`DeepinvLatent`.

    ``timestep`` is the level of deepinv's linear chain nearest to ``sqrt((1 - ab) / ab)`` in log sigma
    (:meth:`reguidance.diffusion.Schedule.nearest`, the one snapping rule of this package); it is the latent's own
    timestep when the prior uses that chain (guided-diffusion's linear schedule: ``ffhq_10m``, the embedded priors).
    """
    from .diffusion import Schedule

    if not isinstance(latent, Tensor) or not latent.is_floating_point():
        got = latent.dtype if isinstance(latent, Tensor) else type(latent).__name__
        raise InputError(f"latent must be a floating-point tensor, got {got}")
    ab = float(alpha_bar)
    if not 0 < ab < 1:
        raise InputError(f"alpha_bar must lie in (0, 1), got {alpha_bar!r}")
    ve_sigma = math.sqrt((1 - ab) / ab)
    timestep = Schedule.linear().nearest(ve_sigma)
    return DeepinvLatent(
        x_init=(latent + 1) / 2,
        noisy_image=(latent / math.sqrt(ab) + 1) / 2,
        sigma=ve_sigma / 2,
        timestep=timestep,
        alpha_bar=ab,
    )
