r"""Probability-flow ODE inversion (DDIM inversion): from a clean signal to a latent at noise level ``t_end``.

In the variables ``y = x / sqrt(alpha_bar)`` and ``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` the probability-flow
ODE of the VP diffusion is ``dy / dsigma = eps(x, t)`` (Song et al. 2021). DDIM sampling with ``eta = 0`` is
its Euler discretisation from high to low ``sigma``; inversion runs it the other way, from ``sigma = 0`` (the
candidate) through the levels of ``schedule = base.spaced(steps, t_end)``:

- ``euler``: ``y_b = y_a + (sigma_b - sigma_a) eps(x_a)`` — classic DDIM inversion, 1 NFE per step. It is not the
  exact inverse of DDIM sampling, which uses ``eps(x_b)`` on that interval; the mismatch is O(h^2) per step.
- ``heun``: the trapezoid corrector ``y_b = y_a + (sigma_b - sigma_a) (eps(x_a) + eps(x_b^euler)) / 2``, 2 NFE per
  step, second order.
- ``fixed_point``: solve the implicit step ``y_b = y_a + (sigma_b - sigma_a) eps(x_b)`` by ``fixed_point_iters``
  iterations started from Euler (1 + iters NFE per step); a sample whose residual grows (the map does not
  contract where the ODE is stiff) is kept at its best iterate. Its fixed point is exactly the state from which one DDIM
  step returns to ``x_a``, so the round trip through :func:`reguidance.guidance.unconditional.sample` is exact up to
  the solve.

The first step starts at the data (``sigma = 0``), where the network is evaluated at the chain's first level.
Far from the data manifold the ODE is stiff and no integrator need round-trip; :func:`roundtrip_error` reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor

from .conventions import check_finite, check_positive_int
from .diffusion import Denoiser, EpsModel, Level, Schedule
from .guidance.core import Update, run
from .guidance.unconditional import sample

InversionMethod = Literal["euler", "heun", "fixed_point"]

__all__ = ["InversionMethod", "InversionResult", "invert", "latent_statistics", "roundtrip_error"]


@dataclass
class InversionResult:
    """``latent`` (B, *signal_shape) at the last level of ``schedule``; ``nfe`` network evaluations per sample."""

    latent: Tensor
    schedule: Schedule
    nfe: int

    def diagnostics(self, prior: EpsModel, x0: Tensor) -> dict[str, Tensor]:
        """Per-sample diagnostics of this inversion of ``x0``: ``roundtrip_rel_error`` (run the deterministic
        sampler back from the latent and compare with ``x0``; costs ``len(schedule)`` more NFE) and the latent's
        :func:`latent_statistics`."""
        back = sample(prior, self.latent, self.schedule, sampler="ddim", eta=0.0)
        return {"roundtrip_rel_error": relative_l2(back, x0), **latent_statistics(self.latent)}


#: network evaluations per inversion step of each method (the fixed point with :func:`invert`'s default 2 iterations)
EVALUATIONS_PER_STEP: dict[str, int] = {"euler": 1, "heun": 2, "fixed_point": 3}


def invert(
    prior: EpsModel,
    x0: Tensor,
    base: Schedule,
    *,
    steps: int = 100,
    t_end: float = 1.0,
    method: InversionMethod = "euler",
    fixed_point_iters: int = 2,
    progress: bool = False,
) -> InversionResult:
    """Integrate the probability-flow ODE from ``x0`` (B, *signal_shape) up to level ``t_end`` of ``base``.

    ``steps`` levels of ``base.spaced(steps, t_end)`` are visited; ``t_end`` in (0, 1] is the fraction of the
    chain (1 = full noise). The prior is seen through a :class:`~reguidance.diffusion.Denoiser` (which counts the
    network evaluations) and the steps run in the samplers' loop (:func:`reguidance.guidance.core.run`, with its
    progress bar and NaN guard) over the chain's transitions taken upwards: the transition from level ``k`` down
    to ``k - 1`` (or the data) is integrated from ``k - 1`` up to ``k``. Runs under inference mode: no graph is kept.
    """
    check_finite("candidate", x0)
    check_positive_int("inversion steps", steps)
    check_positive_int("fixed_point_iters", fixed_point_iters)
    if method not in ("euler", "heun", "fixed_point"):
        raise ValueError(f"inversion method must be 'euler', 'heun' or 'fixed_point', got {method!r}")
    schedule = base.spaced(steps, t_end)
    sig = torch.cat([torch.zeros(1, dtype=torch.float64), schedule.sigmas()])  # sigma of data, then each level
    scale = torch.sqrt(torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_cumprod]))
    net = Denoiser(prior)

    def step(x: Tensor, level: Level) -> Update:
        y = x  # the state is y = x / sqrt(alpha_bar), the ODE's variable
        k = level.index  # from level k - 1 (k = 0: the data, where the network sees level 0) up to level k
        h = float(sig[k + 1] - sig[k])
        s_b = float(scale[k + 1])
        t_a, ab_a = (level.t_next, level.alpha_bar_next) if k > 0 else (level.t, level.alpha_bar)
        eps_a = net(y * float(scale[k]), t_a, ab_a).eps
        y_b = y + h * eps_a
        if method == "heun":
            y_b = y + h * 0.5 * (eps_a + net(y_b * s_b, level.t, level.alpha_bar).eps)
        elif method == "fixed_point":
            implicit = partial(_implicit_map, net, level, y, h, s_b)
            y_b = _fixed_point(implicit, y_b, fixed_point_iters)
        return Update(y_b, y_b)

    with torch.inference_mode():
        upwards = schedule.levels()[::-1]
        out = run(step, x0.clone(), upwards, net, None, None, progress=progress, desc=f"{method} inversion")
        latent = out.x * float(scale[-1])
    return InversionResult(latent=latent, schedule=schedule, nfe=out.nfe)


def _implicit_map(net: Denoiser, level: Level, y: Tensor, h: float, s_b: float, z: Tensor) -> Tensor:
    """The implicit Euler map ``z -> y + h eps(s_b z)`` of one inversion step up to ``level``."""
    return y + h * net(z * s_b, level.t, level.alpha_bar).eps


def _fixed_point(step: Callable[[Tensor], Tensor], z: Tensor, iters: int) -> Tensor:
    """Iterate ``z <- step(z)`` per sample, freezing a sample at its best iterate once its residual grows.

    Where the ODE is stiff the map need not contract; the guard keeps such samples at their last good state
    (at worst the Euler step) instead of letting them diverge.
    """
    dims = (-1,) + (1,) * (z.dim() - 1)
    best_r = torch.full((z.shape[0],), float("inf"), dtype=z.dtype, device=z.device)
    active = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    for _ in range(iters):
        g = step(z)
        r = (g - z).flatten(1).norm(dim=1)
        active = active & (r < best_r)
        best_r = torch.where(active, r, best_r)
        z = torch.where(active.view(dims), g, z)
    return z


def relative_l2(x: Tensor, ref: Tensor) -> Tensor:
    """Per-sample ``||x - ref|| / ||ref||`` (B,)."""
    return (x - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-12)


def roundtrip_error(prior: EpsModel, x0: Tensor, base: Schedule, **inversion_options: Any) -> Tensor:
    """Invert ``x0``, run the deterministic DDIM sampler back on the same levels; per-sample relative L2 error (B,)."""
    inv = invert(prior, x0, base, **inversion_options)
    return inv.diagnostics(prior, x0)["roundtrip_rel_error"]


def latent_statistics(latent: Tensor) -> dict[str, Tensor]:
    """How Gaussian a latent looks, per sample: ``mean``, ``std`` (N(0, I) gives 0 and 1) and, for images, the
    fraction of spectral energy in the lowest quarter of frequencies ``low_freq_energy`` (white noise gives
    about the fraction of the frequency plane that band covers, reported as ``low_freq_energy_white``)."""
    flat = latent.flatten(1)
    stats = {"mean": flat.mean(dim=1), "std": flat.std(dim=1)}
    if latent.dim() == 4:
        power = torch.fft.fft2(latent.float()).abs().pow(2).sum(dim=1)  # (B, H, W)
        fy = torch.fft.fftfreq(latent.shape[-2], device=latent.device).abs()
        fx = torch.fft.fftfreq(latent.shape[-1], device=latent.device).abs()
        low = (fy[:, None] <= 0.125) & (fx[None, :] <= 0.125)
        stats["low_freq_energy"] = (power * low).flatten(1).sum(1) / power.flatten(1).sum(1)
        stats["low_freq_energy_white"] = low.float().mean().expand(latent.shape[0])
    return stats
