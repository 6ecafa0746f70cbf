r"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu, Zhang, Liang, Cao, Wen, Timofte,
Van Gool, CVPR Workshops (NTIRE) 2023; arXiv:2305.08995).

Half-quadratic splitting with the diffusion model as the denoiser. At each level ``t`` of a chain (noise-to-signal
ratio ``sigma_t = sqrt((1 - ab_t) / ab_t)``, :meth:`Schedule.sigmas`):

1. prior step (one network evaluation): ``x0 = x0_hat(x_t)`` (Tweedie);
2. data step: ``x0' = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2``, ``rho_t = lambda sigma_n^2 / sigma_t^2``,
   i.e. ``(A^T A + rho_t I) x0' = A^T y + rho_t x0``: closed form for :class:`~reguidance.operators.Inpainting`
   (``(mask y + rho_t x0) / (mask + rho_t)``), conjugate gradients (:func:`.linalg.solve_proximal`, warm-started
   at ``x0``) for every other linear operator;
3. re-noising to the next level ``s``: with ``eps_hat = (x_t - sqrt(ab_t) x0') / sqrt(1 - ab_t)``,

       x_s = sqrt(ab_s) x0' + sqrt(1 - ab_s) (sqrt(1 - zeta) eps_hat + sqrt(zeta) z),      z ~ N(0, I);

   ``zeta = 0`` is a deterministic DDIM step from the corrected ``x0'``, ``zeta = 1`` a fresh draw.

The last level (``t = 0``) returns ``x0`` without a data step, as the reference does.

Hyperparameters and defaults (public reference github.com/yuanzhi-zhu/DiffPIR, ``configs/sisr.yaml`` and
``configs/deblur.yaml``, the noisy (``sigma = 0.05``) super-resolution and deblurring setting): ``steps = 100``
network evaluations on the ``"quad"`` time grid (``t_i = T - 1 - floor(sqrt(i / (n - 1)) T)``, denser at low
noise), ``lambda_ = 1.0``, ``zeta = 0.1``. Its noiseless inpainting config uses ``steps = 20``, ``zeta = 1.0``.

Scale of ``sigma_n``: the reference measures the noise level of ``y`` on the [0, 1] image scale while its images
live in [-1, 1]; to reproduce its ``rho_t`` for the same ``lambda_`` we use ``sigma_n = max(sigma_y / 2, 0.001)``
with ``sigma_y`` on our [-1, 1] scale (the floor 0.001 is the reference's, for noiseless problems).

Differences from the reference: the time grid is built from ``prior.schedule`` (the same quad rule, duplicates
dropped), the data step for non-mask operators uses CG instead of the reference's FFT closed forms (same solution
up to ``cg_tol``), the start is fresh noise (the reference mixes ``sqrt(ab_T) y``, about ``0.006 y``, into its
start) and every draw comes from the sample's own generator (:class:`BatchRNG`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import BatchRNG, check_nonnegative, check_positive_int, check_unit_interval
from ..diffusion import EpsModel, Schedule, chain_index, denoise
from .common import check_inputs, starting_point
from .linalg import solve_proximal

if TYPE_CHECKING:
    from ..operators import Operator

SkipType = Literal["quad", "uniform"]

__all__ = ["DiffPIRResult", "data_proximal", "diffpir", "time_grid"]


@dataclass
class DiffPIRResult:
    """``x`` (B, *signal_shape) the restorations; ``nfe`` network evaluations per sample."""

    x: Tensor
    nfe: int


def time_grid(schedule: Schedule, steps: int, skip_type: SkipType = "quad") -> Schedule:
    """``schedule`` respaced to at most ``steps`` levels: the reference's ``"quad"`` grid or an even one."""
    check_positive_int("steps", steps)
    n = len(schedule)
    if steps > n:
        raise ValueError(f"steps={steps} exceeds the {n} levels of the prior's schedule")
    if skip_type == "uniform":
        return schedule.spaced(steps)
    if skip_type != "quad":
        raise ValueError(f"skip_type must be 'quad' or 'uniform', got {skip_type!r}")
    if steps == 1:
        return schedule.respace([n - 1])
    seq = [int(math.sqrt(i / (steps - 1) * n * n)) for i in range(steps)]
    seq[-1] -= 1
    return schedule.respace(sorted({n - 1 - min(s, n - 1) for s in seq}))


def data_proximal(
    operator: Operator,
    measurement: Tensor,
    x0: Tensor,
    rho: float,
    *,
    cg_iters: int = 50,
    cg_tol: float = 1e-6,
) -> Tensor:
    """``argmin_x ||y - A x||^2 + rho ||x - x0||^2`` per sample (``rho > 0``): closed form for masks, else CG."""
    from ..operators import Inpainting

    rhs = operator.adjoint(measurement) + rho * x0
    if isinstance(operator, Inpainting):
        mask = operator.mask.to(x0.dtype)
        return rhs / (mask + rho)
    return solve_proximal(operator, rhs, rho, x0=x0, max_iter=cg_iters, tol=cg_tol)


def diffpir(
    prior: EpsModel,
    operator: Operator,
    measurement: Tensor,
    *,
    steps: int = 100,
    lambda_: float = 1.0,
    zeta: float = 0.1,
    skip_type: SkipType = "quad",
    cg_iters: int = 50,
    cg_tol: float = 1e-6,
    rng: BatchRNG,
    latent: Tensor | None = None,
    clip: bool = False,
    progress: bool = False,
) -> DiffPIRResult:
    """Run DiffPIR down ``steps`` levels of ``prior.schedule``; ``len(grid)`` (= ``steps`` unless the quad grid
    has duplicates) network evaluations per sample.

    ``measurement`` (B, *operator.y_shape); ``latent`` (B, *operator.x_shape) at the most noisy level of the grid,
    or ``None`` for fresh noise from ``rng``. ``lambda_ = 0`` turns the data step off (unconditional sampling).
    ``clip`` clamps ``x0_hat`` to [-1, 1] before the data step.
    """
    check_nonnegative("lambda_", lambda_)
    check_unit_interval("zeta", zeta, open_left=False)
    check_positive_int("cg_iters", cg_iters)
    check_nonnegative("cg_tol", cg_tol)
    check_inputs(operator, measurement, rng)
    schedule = time_grid(prior.schedule, steps, skip_type)  # type: ignore[attr-defined]
    dtype, device = measurement.dtype, measurement.device
    x = starting_point(operator, measurement, latent, lambda: rng.randn(*operator.x_shape, dtype=dtype).to(device))

    sigma_n = max(operator.sigma_y / 2, 0.001)
    chain_sigmas = schedule.sigmas()
    with torch.no_grad():
        for k in tqdm(range(len(schedule) - 1, -1, -1), disable=not progress, desc="DiffPIR"):
            i = chain_index(k, x)
            _, x0 = denoise(prior, schedule, x, i)
            if clip:
                x0 = x0.clamp(-1, 1)
            if k == 0:
                x = x0
                break
            if lambda_ > 0:
                rho = lambda_ * sigma_n**2 / float(chain_sigmas[k]) ** 2
                x0 = data_proximal(operator, measurement, x0, rho, cg_iters=cg_iters, cg_tol=cg_tol)
            ab, ab_next = schedule.alpha_bar(i, x), schedule.alpha_bar(i - 1, x)
            eps_hat = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            noise = math.sqrt(1 - zeta) * eps_hat + math.sqrt(zeta) * rng.randn_like(x)
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * noise
    return DiffPIRResult(x=x.detach(), nfe=len(schedule))
