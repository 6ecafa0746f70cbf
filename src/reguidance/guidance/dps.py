r"""Diffusion posterior sampling (DPS; Chung, Kim, Mccann, Klasky, Ye, ICLR 2023).

At each level ``t`` of the chain, with ``x0_hat(x_t)`` Tweedie's estimate (one network evaluation),

    x_{t-1}' = unconditional step(x_t, x0_hat)                 (DDPM ancestral by default, or DDIM with eta)
    x_{t-1}  = x_{t-1}' - step_size * grad_{x_t} || y - A(x0_hat(x_t)) ||_2

The gradient flows back through the network (one backward pass per step) and through ``A``, which may be
nonlinear.

Two cheaper guidances, options of the same config (each tuned like any other option):

- ``guidance="tweedie"``, Jacobian-free: the gradient is taken through ``A`` at the clean estimate only, with the
  network's output held fixed, ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)`` so
  ``d x0_hat / d x_t = I / sqrt(ab_t)``:

      x_{t-1} = x_{t-1}' - step_size * grad_{x0} || y - A(x0) ||_2 |_{x0 = x0_hat} / sqrt(ab_t)

  (the manifold-preserving guidance of MPGD, He et al. 2024, and azula's Jacobian-free posterior sampler make the
  same approximation): a forward pass per step and no backward pass through the network;
- ``guidance_every=k``: only the transitions ``0, k, 2k, ...`` (counted from the most noisy) are guided, the others
  take the unconditional step alone (DSG's tuned settings guide every 5th step for inpainting, every 20th for
  super-resolution): ``ceil(steps / k)`` backward passes instead of ``steps``.

:meth:`DPS.cost` counts what a config spends: forward passes with a backward pass for each guided level of the
network guidance, forward passes alone otherwise.

``step_size`` is the paper's zeta (the reference code's ``scale``: 0.5 in its box-inpainting configs, 0.3 in its
super-resolution and deblurring configs). ``clip`` clamps ``x0_hat`` to [-1, 1] before the residual
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
from typing import ClassVar, Literal

import torch
from torch import Tensor

from ..conventions import check_nonnegative, check_positive_int
from ..diffusion import Denoiser, Level, Schedule
from .core import Cost, StepFn, Update
from .solve import ChainMethod, Functional, Problem
from .unconditional import Sampler, unconditional_step

__all__ = ["DPS", "Guidance", "GuidanceWarning", "Sampler", "dps"]

#: where the guidance gradient is taken (module docstring): through the network (DPS) or at the clean estimate
Guidance = Literal["network", "tweedie"]


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
    guidance: Guidance = field(
        default="network",
        metadata={"help": "DPS's gradient: network (through its Jacobian) or tweedie (through A only, no backward)"},
    )
    guidance_every: int = field(default=1, metadata={"help": "guide every k-th DPS step only (1: every step)"})

    def guided_levels(self) -> int:
        """How many levels are guided: ``ceil(levels / guidance_every)``."""
        return -(-self.levels // self.guidance_every)

    def cost(self) -> Cost:
        """Per level one forward pass, with its backward pass where the network guidance guides it."""
        guided = self.guided_levels() if self.guidance == "network" else 0
        return Cost(fwd=self.levels - guided, fwd_grad=guided)

    def check(self) -> None:
        check_nonnegative("step_size", self.step_size)
        check_nonnegative("eta", self.eta)
        check_positive_int("guidance_every", self.guidance_every)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        operator, measurement, rng, prior = problem.operator, problem.measurement, problem.rng, problem.prior
        step_size, sampler, eta, clip = self.step_size, self.sampler, self.eta, self.clip
        jacobian_free, every = self.guidance == "tweedie", self.guidance_every
        warned = False

        def step(x: Tensor, level: Level) -> Update:
            nonlocal warned
            if level.step % every:  # an unguided level: the prior's step alone, no gradient
                with torch.no_grad():
                    d = net.at(x, level)
                    x0 = d.x0.clamp(-1, 1) if clip else d.x0
                    var = None if d.var_values is None else d.var_values
                    x_next = unconditional_step(
                        levels, level, x, x0, d.eps, var, prior.variance, sampler=sampler, eta=eta, clip=clip, rng=rng
                    )
                return Update(x_next, x0)
            if jacobian_free:
                with torch.no_grad():
                    d = net.at(x, level)
                with torch.enable_grad():
                    x0 = (d.x0.clamp(-1, 1) if clip else d.x0).detach().requires_grad_(True)
                    residual = operator.residual_norm(x0, measurement)
                    (grad0,) = torch.autograd.grad(residual.sum(), x0)
                grad = grad0 / level.alpha_bar**0.5  # d x0_hat / d x_t with the network's output held fixed
            else:
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
