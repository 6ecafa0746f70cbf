r"""Unconditional sampling with the prior alone, through the same loop as the guided samplers.

``sampler="ddim"`` with ``eta = 0`` integrates the probability-flow ODE (deterministic; the inverse of
:func:`reguidance.inversion.invert`), ``"ddpm"`` draws ancestral steps with the prior's own variance
(:func:`reguidance.diffusion.p_mean_variance`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..conventions import BatchRNG, InputError
from ..diffusion import (
    Denoiser,
    EpsModel,
    Level,
    Schedule,
    chain_index,
    ddim_step,
    ddpm_step,
    eps_from_x0,
    p_mean_variance,
)
from .core import Update, run

__all__ = ["sample"]


def sample(
    prior: EpsModel,
    x_T: Tensor,
    levels: Schedule,
    *,
    sampler: Literal["ddim", "ddpm"] = "ddim",
    eta: float = 0.0,
    rng: BatchRNG | None = None,
    clip: bool = False,
    progress: bool = False,
) -> Tensor:
    """From ``x_T`` (B, *signal_shape) at the first level of ``levels`` down to the data; ``len(levels)`` NFE."""
    if sampler not in ("ddim", "ddpm"):
        raise InputError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
    if rng is None and (sampler == "ddpm" or eta > 0):
        raise InputError("stochastic sampling (sampler='ddpm' or eta > 0) needs an rng")
    net = Denoiser(prior)

    def step(x: Tensor, level: Level) -> Update:
        d = net.at(x, level)
        x0 = d.x0.clamp(-1, 1) if clip else d.x0
        if sampler == "ddpm":
            i = chain_index(level.index, x)
            assert rng is not None
            return Update(
                ddpm_step(p_mean_variance(levels, x, i, d.eps, d.var_values, prior.variance, clip), i, rng), x0
            )
        eps = eps_from_x0(x, x0, level.alpha_bar) if clip else d.eps
        return Update(ddim_step(x0, eps, level.alpha_bar, level.alpha_bar_next, eta, rng), x0)

    with torch.inference_mode():
        return run(step, x_T, levels, net, None, None, progress=progress, desc=f"{sampler} sampling").x
