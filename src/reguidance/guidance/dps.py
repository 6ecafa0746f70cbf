r"""Diffusion posterior sampling (DPS; Chung, Kim, Mccann, Klasky, Ye, ICLR 2023).

At each level ``t`` of the chain, with ``x0_hat(x_t)`` Tweedie's estimate (one network evaluation),

    x_{t-1}' = unconditional step(x_t, x0_hat)                 (DDPM ancestral by default, or DDIM with eta)
    x_{t-1}  = x_{t-1}' - zeta * grad_{x_t} || y - A(x0_hat(x_t)) ||_2

The gradient flows back through the network (one backward pass per step). The norm is taken per sample, never
over the whole batch (the public reference code takes one norm over the batch, which couples the samples and makes
each result depend on the batch): with per-sample norms a batch is exactly a set of independent runs.
``zeta`` is the step size of the reference (their ``scale``; 0.5-1.0 for their FFHQ tasks). ``clip`` clamps
``x0_hat`` to [-1, 1] before the residual and the step, as the reference does for images (``clip_denoised``).

DPS may start from any latent at the last level of its chain: fresh noise (plain DPS) or an inverted candidate
(ReGuidance, :mod:`reguidance.wrapper`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import BatchRNG, check_finite, check_nonnegative, check_positive_int
from ..diffusion import EpsModel, Schedule, chain_index, ddim_step, ddpm_step, denoise, eps_from_x0, p_mean_variance

if TYPE_CHECKING:
    from ..operators import Operator

Sampler = Literal["ddpm", "ddim"]

__all__ = ["DPSResult", "Sampler", "dps"]


@dataclass
class DPSResult:
    """``x`` (B, *signal_shape) the restorations; ``nfe`` forward-plus-backward network evaluations per sample."""

    x: Tensor
    nfe: int


def dps(
    prior: EpsModel,
    operator: Operator,
    measurement: Tensor,
    schedule: Schedule,
    *,
    zeta: float = 1.0,
    sampler: Sampler = "ddpm",
    eta: float = 0.0,
    latent: Tensor | None = None,
    rng: BatchRNG | None = None,
    clip: bool = False,
    progress: bool = False,
) -> DPSResult:
    """Run DPS down ``schedule`` (e.g. ``base.spaced(1000)``) to the data.

    ``measurement`` (B, *operator.y_shape); ``latent`` (B, *operator.x_shape) at the last level of ``schedule``,
    or ``None`` to start from fresh noise drawn from ``rng``. ``rng`` (one generator per sample) is needed for
    fresh noise and for stochastic steps (``ddpm``, or ``ddim`` with ``eta > 0``).
    """
    check_finite("measurement", measurement)
    check_nonnegative("zeta", zeta)
    check_nonnegative("eta", eta)
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    check_positive_int("DPS steps", len(schedule))
    stochastic = sampler == "ddpm" or eta > 0
    if (latent is None or stochastic) and rng is None:
        raise ValueError("rng is required for fresh noise or stochastic steps (sampler='ddpm' or eta > 0)")
    if latent is None:
        assert rng is not None
        x = rng.randn(*operator.x_shape, dtype=measurement.dtype).to(measurement.device)
    else:
        x = check_finite("latent", latent).detach()
    if x.shape[0] != measurement.shape[0]:
        raise ValueError(f"latent has {x.shape[0]} samples but measurement has {measurement.shape[0]}")

    for k in tqdm(range(len(schedule) - 1, -1, -1), disable=not progress, desc="DPS"):
        i = chain_index(k, x)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out, x0 = denoise(prior, schedule, x, i)
            if clip:
                x0 = x0.clamp(-1, 1)
            residual = operator.residual_norm(x0, measurement)  # (B,): one norm per sample
            (grad,) = torch.autograd.grad(residual.sum(), x)
        x0, eps = x0.detach(), out.eps.detach()
        with torch.no_grad():
            if sampler == "ddpm":
                var_values = None if out.var_values is None else out.var_values.detach()
                pmv = p_mean_variance(schedule, x.detach(), i, eps, var_values, prior.variance, clip)
                x_next = ddpm_step(pmv, i, rng)  # type: ignore[arg-type]
            else:
                ab = schedule.alpha_bar(i, x)
                if clip:
                    eps = eps_from_x0(x.detach(), x0, ab)
                x_next = ddim_step(x0, eps, schedule.alpha_bar(i - 1, x), ab, eta, rng)
            x = x_next - zeta * grad
    return DPSResult(x=x.detach(), nfe=len(schedule))
