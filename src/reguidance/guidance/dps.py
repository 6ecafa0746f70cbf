r"""Diffusion posterior sampling (DPS; Chung, Kim, Mccann, Klasky, Ye, ICLR 2023).

At each level ``t`` of the chain, with ``x0_hat(x_t)`` Tweedie's estimate (one network evaluation),

    x_{t-1}' = unconditional step(x_t, x0_hat)                 (DDPM ancestral by default, or DDIM with eta)
    x_{t-1}  = x_{t-1}' - step_size * grad_{x_t} || y - A(x0_hat(x_t)) ||_2

The gradient flows back through the network (one backward pass per step) and through ``A``, which may be
nonlinear. ``step_size`` is the paper's zeta (the reference code's ``scale``: 0.5 in its box-inpainting configs,
0.3 in its super-resolution and deblurring configs). ``clip`` clamps ``x0_hat`` to [-1, 1] before the residual
and the step, as the reference does for images (``clip_denoised``; the clamp's derivative is 0 where it clamps).

What we changed, and why: the norm is taken per sample, never over the whole batch (the reference takes one norm
over the batch, which couples the samples): with per-sample norms a batch is exactly a set of independent runs.
DPS may start from any latent at the first level of its chain: fresh noise (plain DPS) or an inverted candidate
(ReGuidance, :mod:`reguidance.wrapper`).

Nonlinear forward models are first-class: the operator needs only ``A(x)`` (differentiable), ``x_shape``,
``y_shape``, ``sigma_y`` and ``residual_norm``. A guidance gradient that is zero for a sample whose residual is not
(a quantiser, a clamp that saturates everywhere) is reported with a :class:`GuidanceWarning`, and a non-finite one
stops the run with an error: neither is silently ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ..conventions import check_nonnegative
from ..diffusion import Denoiser, Level, Schedule
from .core import Cost, StepFn, Update
from .solve import ChainMethod, Functional, Problem
from .unconditional import Sampler, unconditional_step

__all__ = ["DPS", "GuidanceWarning", "Sampler", "dps"]


class GuidanceWarning(UserWarning):
    """The measurement gives no guidance to some samples at some step (a zero gradient with a nonzero residual)."""


@dataclass(frozen=True)
class DPS(ChainMethod):
    """DPS's options: ``step_size`` (zeta) >= 0; ``sampler`` the unconditional step (``"ddpm"`` ancestral, or
    ``"ddim"`` with ``eta`` >= 0); ``clip`` clamps ``x0_hat`` to [-1, 1]. Reference budget: 1000 evenly spaced
    levels, one network evaluation (forward and backward) each."""

    name: ClassVar[str] = "dps"
    label: ClassVar[str] = "DPS"
    default_steps: ClassVar[int] = 1000
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {"cpu": {"steps": 50}}
    #: the reference code's ``scale`` (zeta): 0.5 in its box-inpainting configs, 0.3 in super-resolution and deblurring
    reference: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "inpainting": {"step_size": 0.5},
        "super_resolution": {"step_size": 0.3},
        "deblur": {"step_size": 0.3},
    }
    step_sizes: ClassVar[tuple[str, ...]] = ("step_size",)
    tuning_grid: ClassVar[str] = "step_size=0.1,0.3,0.5,1,2,3,5,10,20,30,60,100"

    step_size: float = field(default=1.0, metadata={"help": "DPS step size (zeta), on the measurement's scale"})
    sampler: Sampler = field(default="ddpm", metadata={"help": "DPS's unconditional step: ddpm (ancestral) or ddim"})
    eta: float = field(default=0.0, metadata={"help": "DDIM's eta (sampler ddim)"})
    clip: bool = field(default=False, metadata={"help": "clamp x0_hat to [-1, 1] at every DPS step"})

    def cost(self) -> Cost:
        """One forward pass with its backward pass per level."""
        return Cost(fwd_grad=self.levels)

    def check(self) -> None:
        check_nonnegative("step_size", self.step_size)
        check_nonnegative("eta", self.eta)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        operator, measurement, rng, prior = problem.operator, problem.measurement, problem.rng, problem.prior
        step_size, sampler, eta, clip = self.step_size, self.sampler, self.eta, self.clip
        warned = False

        def step(x: Tensor, level: Level) -> Update:
            nonlocal warned
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                d = net.at(x, level)
                x0 = d.x0.clamp(-1, 1) if clip else d.x0
                residual = operator.residual_norm(x0, measurement)
                (grad,) = torch.autograd.grad(residual.sum(), x)
            with torch.no_grad():
                size = grad.flatten(1).abs().amax(dim=1)
                if not bool(torch.isfinite(size).all()):
                    raise FloatingPointError(f"DPS: the guidance gradient is NaN or Inf at t={level.t}")
                silent = (size == 0) & (residual.detach() > 0)
                if step_size > 0 and not warned and bool(silent.any()):
                    warned = True
                    warnings.warn(
                        f"DPS: the guidance gradient is zero for {int(silent.sum())} of {len(silent)} samples at "
                        f"t={level.t} although their residual is not, so those samples are not guided at that "
                        "step: the forward model gives no gradient there (quantised or saturated?), or, with "
                        "clip=True, x0_hat is clipped to [-1, 1] wherever the measurement sees it (common at the "
                        "noisiest levels)",
                        GuidanceWarning,
                        stacklevel=5,
                    )
                x, x0, eps = x.detach(), x0.detach(), d.eps.detach()
                var = None if d.var_values is None else d.var_values.detach()
                x_next = unconditional_step(
                    levels, level, x, x0, eps, var, prior.variance, sampler=sampler, eta=eta, clip=clip, rng=rng
                )
            return Update(x_next - step_size * grad, x0)

        return step


#: the functional form: ``dps(prior, operator, measurement, *, rng, steps=None, ..., **options)``
dps = Functional(DPS)
