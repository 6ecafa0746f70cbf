r"""Interoperability with deepinv: its ``Physics`` as one of our operators.

deepinv's images live in ``[0, 1]`` and ours in ``[-1, 1]``: ``x01 = (x + 1) / 2``. For deepinv's forward model
``A_d`` and measurement ``y_d = A_d(x01) + n_d`` (Gaussian noise of std ``sigma_d``), :class:`DeepinvOperator` is
the operator on our scale

    A(x) = 2 A_d((x + 1) / 2) - b,        b = A_d(1) for a linear physics (so that A = A_d), else 0,

with measurements ``y = 2 y_d - b`` (:meth:`DeepinvOperator.measurement_from_deepinv`) and ``sigma_y = 2 sigma_d``.
A linear physics (deepinv's ``LinearPhysics``: one with a callable ``A_adjoint``) becomes a
:class:`DeepinvLinearOperator`, a :class:`~reguidance.operators.LinearOperator` with ``A = A_d``, ``A^T = A_d^T``
and ``pinv = A_d^dagger`` (deepinv's ``A_dagger``, where the physics has one); its proximal and Gram solves use our
float64 conjugate gradients, never deepinv's ``prox_l2`` (which stores its solver settings on the physics). Any
other physics becomes a plain :class:`~reguidance.operators.Operator`, for DPS, DAPS, RED-diff (with ``init=``) and
ReGuidance, which only differentiate ``A``; DiffPIR and PiGDM refuse it.

The physics is a registered submodule (every deepinv ``Physics`` is a :class:`torch.nn.Module`), so
``operator.to(device)`` moves its buffers (masks, filters) and ``state_dict`` holds them. deepinv keeps its filters
in float32: every call into the physics casts its input to the physics' floating dtype (that of its first
floating-point buffer or parameter) and the result back, so float64 solves and float32 filters work together; the
accuracy of those solves is then the physics' own (float32). deepinv is an optional dependency: nothing here
imports it.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..conventions import InputError
from .base import LinearOperator, Operator, _check_shape

__all__ = ["DeepinvLatent", "DeepinvLinearOperator", "DeepinvOperator", "latent_to_deepinv"]


def _is_linear(physics: nn.Module) -> bool:
    """deepinv's mark of a linear physics: ``LinearPhysics`` defines ``A_adjoint`` (the base ``Physics`` has none)."""
    return callable(getattr(physics, "A_adjoint", None))


def _working_dtype(physics: nn.Module) -> torch.dtype | None:
    """The floating dtype of the physics' first floating-point buffer or parameter; ``None`` when it has none."""
    for t in (*physics.buffers(), *physics.parameters()):
        if t.is_floating_point():
            return t.dtype
    return None


def _working_device(physics: nn.Module) -> torch.device:
    for t in (*physics.buffers(), *physics.parameters()):
        return t.device
    return torch.device("cpu")


def _noise_sigma(physics: nn.Module) -> float:
    """``physics.noise_model.sigma`` of deepinv's ``GaussianNoise`` (one value for the batch), else InputError."""
    model = getattr(physics, "noise_model", None)
    sigma = getattr(model, "sigma", None)
    if type(model).__name__ != "GaussianNoise" or sigma is None:
        got = "no noise model" if model is None else f"noise model {type(model).__name__}"
        raise InputError(
            f"the physics has {got}, not a GaussianNoise with a sigma: pass sigma_y (the Gaussian noise std on the "
            "[-1, 1] scale, twice deepinv's std on [0, 1])"
        )
    values = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    if values.numel() == 0 or not bool((values == values[0]).all()):
        raise InputError(f"the physics' noise_model.sigma holds {values.numel()} different values: pass sigma_y")
    return float(values[0])


class DeepinvOperator(Operator):
    """A deepinv ``Physics`` acting on signals ``x_shape = (C, H, W)`` in ``[-1, 1]`` (module docstring).

    ``physics`` must be a :class:`torch.nn.Module` with deepinv's ``A(x)`` (every deepinv ``Physics`` is); one with
    a callable ``A_adjoint`` (a ``LinearPhysics``) makes ``DeepinvOperator(...)`` return a
    :class:`DeepinvLinearOperator`. ``sigma_y`` defaults to twice the physics' ``noise_model.sigma`` when that is
    deepinv's ``GaussianNoise``, and must be given otherwise (``ZeroNoise``, Poisson, ...). The physics' shapes are
    found by one noiseless call ``A_d(0)`` on a ``(1, *x_shape)`` probe of its own device and dtype.
    """

    physics: Any  # a deepinv Physics: an nn.Module whose A, A_adjoint, A_dagger the type checker cannot see

    def __new__(cls, physics: Any = None, *args: Any, **kwargs: Any) -> DeepinvOperator:
        # no arguments when copy / pickle rebuild an instance of the class they already know
        if cls is DeepinvOperator and isinstance(physics, nn.Module) and _is_linear(physics):
            cls = DeepinvLinearOperator
        return super().__new__(cls)

    def __init__(self, physics: Any, x_shape: Sequence[int], sigma_y: float | None = None) -> None:
        if not isinstance(physics, nn.Module) or not callable(getattr(physics, "A", None)):
            raise InputError(
                f"physics must be a deepinv Physics (a torch.nn.Module with A(x)), got {type(physics).__name__}; "
                "for a forward model of your own, subclass reguidance.operators.Operator or LinearOperator"
            )
        shape = _check_shape("x_shape", x_shape)
        sigma = _noise_sigma(physics) * 2 if sigma_y is None else sigma_y
        probe = torch.zeros(1, *shape, dtype=_working_dtype(physics) or torch.float32, device=_working_device(physics))
        module: Any = physics  # deepinv's methods are untyped
        with torch.no_grad():
            y_shape = tuple(module.A(probe).shape[1:])
        super().__init__(shape, y_shape, sigma)
        self.physics = physics  # a registered submodule: .to(device) and state_dict carry its buffers

    def _call(self, fn: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
        """``fn(t)`` in the physics' working dtype, returned in ``t``'s dtype."""
        dtype = _working_dtype(self.physics)
        if dtype is None or dtype == t.dtype:
            return fn(t)
        return fn(t.to(dtype)).to(t.dtype)

    def _offset(self, like: Tensor) -> Tensor:
        """``b = A_d(1)`` for a linear physics, else 0 (one measurement, ``like``'s dtype and device)."""
        if not isinstance(self, LinearOperator):
            return like.new_zeros(1, *self.y_shape)
        return self._call(self.physics.A, like.new_ones(1, *self.x_shape))

    def _forward(self, x: Tensor) -> Tensor:
        return 2 * self._call(self.physics.A, (x + 1) / 2)

    def measurement_from_deepinv(self, y_d: Tensor) -> Tensor:
        """deepinv's measurement ``y_d`` (of an image in [0, 1]) on our scale: ``2 y_d - b``."""
        return 2 * y_d - self._offset(y_d)

    @staticmethod
    def image_to_deepinv(x: Tensor) -> Tensor:
        """Our ``[-1, 1]`` images on deepinv's ``[0, 1]`` scale."""
        return (x + 1) / 2


class DeepinvLinearOperator(DeepinvOperator, LinearOperator):
    """A deepinv ``LinearPhysics`` as a :class:`~reguidance.operators.LinearOperator`: ``A = A_d``, ``A^T = A_d^T``,
    ``pinv = A_d^dagger`` (``physics.A_dagger``; ``NotImplementedError`` when the physics has none); ``prox_l2`` and
    ``solve_gram`` by our conjugate gradients (module docstring). Made by ``DeepinvOperator(physics, x_shape)``."""

    def _forward(self, x: Tensor) -> Tensor:
        return self._call(self.physics.A, x)  # 2 A_d((x + 1) / 2) - A_d(1) = A_d(x) for a linear A_d

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._call(self.physics.A_adjoint, y)

    def _pinv(self, y: Tensor) -> Tensor:
        dagger = getattr(self.physics, "A_dagger", None)
        if not callable(dagger):
            raise NotImplementedError(f"the physics {type(self.physics).__name__} has no A_dagger")
        return self._call(dagger, y)


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
    from ..diffusion import Schedule

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
