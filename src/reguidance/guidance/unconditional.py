r"""Unconditional sampling with the prior alone, through the same loop as the guided samplers.

``sampler="ddim"`` with ``eta = 0`` integrates the probability-flow ODE (deterministic; the inverse of
:func:`reguidance.inversion.invert`), ``"ddpm"`` draws ancestral steps with the prior's own variance
(:func:`reguidance.diffusion.p_mean_variance`). :func:`unconditional_step` is that one step, which DPS also takes
before its guidance term.
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
    Variance,
    chain_index,
    ddim_step,
    ddpm_step,
    eps_from_x0,
    p_mean_variance,
)
from .core import Update, run

#: the unconditional step: ancestral (``"ddpm"``) or DDIM with ``eta`` (``"ddim"``)
Sampler = Literal["ddpm", "ddim"]

__all__ = ["Sampler", "sample", "unconditional_step"]


def unconditional_step(
    levels: Schedule,
    level: Level,
    x: Tensor,
    x0: Tensor,
    eps: Tensor,
    var_values: Tensor | None,
    variance: Variance,
    *,
    sampler: Sampler,
    eta: float,
    clip: bool,
    rng: BatchRNG | None,
) -> Tensor:
    """One step of the prior alone from ``x`` (B, ...) at ``level`` of ``levels`` to the next level.

    ``x0``, ``eps`` and ``var_values`` are the network's estimates at ``x`` (``x0`` already clamped to [-1, 1] where
    ``clip``); ``variance`` is the prior's variance rule. ``"ddpm"``: a draw from ``N(mean, var)`` of
    :func:`~reguidance.diffusion.p_mean_variance` (which clamps its own ``x0`` where ``clip``; needs ``rng``).
    ``"ddim"``: :func:`~reguidance.diffusion.ddim_step` from ``x0`` with ``eps`` (recomputed from the clamped ``x0``
    where ``clip``), fresh noise from ``rng`` where ``eta > 0``.
    """
    if sampler == "ddpm":
        i = chain_index(level.index, x)
        assert rng is not None
        return ddpm_step(p_mean_variance(levels, x, i, eps, var_values, variance, clip), i, rng)
    eps = eps_from_x0(x, x0, level.alpha_bar) if clip else eps
    return ddim_step(x0, eps, level.alpha_bar, level.alpha_bar_next, eta, rng)


def sample(
    prior: EpsModel,
    x_T: Tensor,
    levels: Schedule,
    *,
    sampler: Sampler = "ddim",
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
        x_next = unconditional_step(
            levels, level, x, x0, d.eps, d.var_values, prior.variance, sampler=sampler, eta=eta, clip=clip, rng=rng
        )
        return Update(x_next, x0)

    with torch.inference_mode():
        return run(step, x_T, levels, net, None, None, progress=progress, desc=f"{sampler} sampling").x
