r"""Decoupled annealing posterior sampling (DAPS; Zhang, Chu, Berner, Meng, Anandkumar, Song, CVPR 2025;
arXiv:2407.01521, "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing").

DAPS works on the variance-exploding (EDM) scale ``x_sigma = x_0 + sigma n``. Our prior lives on the VP chain;
the two are the same process up to scale: a VP level with ``alpha_bar`` has ``sigma = sqrt((1 - ab) / ab)``
(:meth:`Schedule.sigmas`) and ``x_vp = sqrt(ab) x_sigma``, so the denoiser is

    D(x_sigma; sigma) = x0_hat(sqrt(ab) x_sigma)              (Tweedie at that level, one network evaluation).

Annealing levels ``sigma_0 > ... > sigma_{N-1}`` follow EDM's ``rho``-polynomial spacing ("poly-7")

    sigma_k = (sigma_max^{1/7} + k / (N - 1) (sigma_min^{1/7} - sigma_max^{1/7}))^7,     sigma_N = 0,

and start from ``x = sigma_0 n``. At each annealing step ``k``:

1. *Decoupled estimate.* Integrate the probability-flow ODE ``dx / dsigma = (x - D(x; sigma)) / sigma`` by Euler
   from ``sigma_k`` down through ``ode_steps`` poly-7 levels ending at ``ode_sigma_min``, with a last Euler step to
   ``sigma = 0`` (which is Tweedie, ``x = D(x; s)``): ``x0_hat`` after ``ode_steps`` network evaluations.
2. *Langevin on the clean signal.* Run ``langevin_steps`` unadjusted Langevin steps on ``x0`` (started at
   ``x0_hat``) targeting

       p(x0 | x0_hat, y) ∝ N(x0; x0_hat, r_k^2 I) N(y; A x0, tau^2 I),      r_k = sigma_k,
       x0 <- x0 - lr_k grad U(x0) + sqrt(2 lr_k) z,
       grad U(x0) = A^T (A x0 - y) / tau^2 + (x0 - x0_hat) / r_k^2,

   with the step size decaying linearly over annealing, ``lr_k = lr (1 + k / N (lr_min_ratio - 1))``. For our
   linear operators the gradient is exact through ``operator.adjoint``; no network gradient is taken.
3. *Re-noise.* ``x = x0 + sigma_{k+1} n`` (the last step, ``sigma_N = 0``, returns ``x0``).

Defaults are the public reference's (github.com/zhangbingliang2019/DAPS, ``configs``: annealing 200 steps from
sigma 100 to 0.1, poly-7; ODE 5 steps down to sigma 0.01; Langevin 100 steps, ``lr = 1e-4``, ``tau = 0.01``,
``lr_min_ratio = 0.01``), i.e. 200 x 5 = 1000 network evaluations. ``tau`` is a temperature on the measurement
term, not necessarily ``sigma_y``: the reference tunes it (0.01 for all its linear tasks); ``tau = sigma_y`` makes
step 2 target the exact Gaussian-likelihood posterior.

What we changed, and why:

- *Levels snapped to the chain.* Our priors are discrete VP chains, so every sigma the algorithm needs (annealing
  and ODE) is replaced by the nearest level of ``prior.schedule`` in ``log sigma`` (as EDM's ``round_sigma`` does for
  discrete-time models); ``r_k`` and the re-noising use the snapped values too, so each ``x`` is exactly at a level
  the network was trained on. ``sigma_max = 100`` and ``sigma_min = 0.1`` both lie inside the range of the
  guided-diffusion linear schedule (sigma from 0.01 to about 157).
- *The ODE ends at sigma = 0.* The reference's inner scheduler appends a final level; we make the last Euler step
  land on 0, i.e. the last network call gives Tweedie's ``x0_hat``, so ``ode_steps`` network evaluations are used
  in full.
- *Per-sample randomness.* Every draw comes from the sample's own generator (:class:`BatchRNG`), and the Langevin
  loss is a sum of per-sample terms, so a batch is exactly a set of independent runs.

``latent`` (optional) is a start on the VP scale at the first annealing level (``sqrt(ab_0) x_sigma``), the way
every sampler of this package takes its latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import BatchRNG, check_finite, check_nonnegative, check_positive_int
from ..diffusion import EpsModel, Schedule, chain_index, denoise
from .common import check_inputs, starting_point

if TYPE_CHECKING:
    from ..operators import Operator

__all__ = ["DAPSResult", "daps", "poly_sigmas"]


@dataclass
class DAPSResult:
    """``x`` (B, *signal_shape) the restorations; ``nfe`` network evaluations per sample."""

    x: Tensor
    nfe: int


def poly_sigmas(sigma_max: float, sigma_min: float, num: int, rho: float = 7.0) -> list[float]:
    """EDM's ``num`` levels from ``sigma_max`` to ``sigma_min`` evenly spaced in ``sigma^{1/rho}`` (both included)."""
    if num == 1:
        return [float(sigma_max)]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [float((a + k / (num - 1) * (b - a)) ** rho) for k in range(num)]


def _snap(chain_sigmas: Tensor, sigma: float) -> int:
    """The chain index whose sigma is nearest to ``sigma > 0`` in log scale."""
    return int((chain_sigmas.log() - math.log(sigma)).abs().argmin())


def _check_positive(name: str, value: float) -> float:
    if check_nonnegative(name, value) == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def daps(
    prior: EpsModel,
    operator: Operator,
    measurement: Tensor,
    *,
    annealing_steps: int = 200,
    sigma_max: float = 100.0,
    sigma_min: float = 0.1,
    ode_steps: int = 5,
    ode_sigma_min: float = 0.01,
    langevin_steps: int = 100,
    lr: float = 1e-4,
    lr_min_ratio: float = 0.01,
    tau: float = 0.01,
    rng: BatchRNG,
    latent: Tensor | None = None,
    clip: bool = False,
    progress: bool = False,
) -> DAPSResult:
    """Run DAPS on ``prior.schedule``; ``annealing_steps * ode_steps`` network evaluations per sample.

    ``measurement`` (B, *operator.y_shape) with ``sigma_y`` on the [-1, 1] scale; ``rng`` one generator per sample
    (fresh noise, Langevin noise, re-noising). ``latent`` (B, *operator.x_shape), if given, replaces the fresh start
    (VP scale, at the first annealing level). ``clip`` clamps each ``D(x; sigma)`` to [-1, 1].
    """
    check_positive_int("annealing_steps", annealing_steps)
    check_positive_int("ode_steps", ode_steps)
    check_positive_int("langevin_steps", langevin_steps)
    _check_positive("sigma_max", sigma_max)
    _check_positive("sigma_min", sigma_min)
    if sigma_min > sigma_max:
        raise ValueError(f"sigma_min must be <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    _check_positive("ode_sigma_min", ode_sigma_min)
    check_nonnegative("lr", lr)
    check_nonnegative("lr_min_ratio", lr_min_ratio)
    _check_positive("tau", tau)
    check_inputs(operator, measurement, rng)

    schedule: Schedule = prior.schedule  # type: ignore[attr-defined]
    chain_sigmas = schedule.sigmas()
    ab_all = schedule.alphas_cumprod
    dtype, device = measurement.dtype, measurement.device
    levels = [_snap(chain_sigmas, s) for s in poly_sigmas(sigma_max, sigma_min, annealing_steps)]
    sig = [float(chain_sigmas[k]) for k in levels] + [0.0]

    def fresh() -> Tensor:
        return sig[0] * rng.randn(*operator.x_shape, dtype=dtype).to(device)

    x = starting_point(operator, measurement, latent, fresh)
    if latent is not None:
        x = x / math.sqrt(float(ab_all[levels[0]]))  # a VP latent to the VE scale of the annealing

    def denoiser(x_ve: Tensor, k: int) -> Tensor:
        x_vp = math.sqrt(float(ab_all[k])) * x_ve
        _, x0 = denoise(prior, schedule, x_vp, chain_index(k, x_vp))
        return x0.clamp(-1, 1) if clip else x0

    def ode(x_ve: Tensor, sigma_start: float) -> Tensor:
        stop = min(ode_sigma_min, sigma_start)
        ks = [_snap(chain_sigmas, s) for s in poly_sigmas(sigma_start, stop, ode_steps)]
        s = [float(chain_sigmas[k]) for k in ks] + [0.0]
        for j, k in enumerate(ks):
            d = denoiser(x_ve, k)
            x_ve = x_ve + (s[j + 1] - s[j]) / s[j] * (x_ve - d)
        return x_ve

    with torch.no_grad():
        for step in tqdm(range(annealing_steps), disable=not progress, desc="DAPS"):
            x0_hat = ode(x, sig[step])
            lr_k = lr * (1 + step / annealing_steps * (lr_min_ratio - 1))
            r2 = sig[step] ** 2
            x0 = x0_hat.clone()
            for _ in range(langevin_steps):
                grad = operator.adjoint(operator(x0) - measurement) / tau**2 + (x0 - x0_hat) / r2
                x0 = x0 - lr_k * grad + math.sqrt(2 * lr_k) * rng.randn_like(x0)
            check_finite("DAPS iterate", x0)
            x = x0 + sig[step + 1] * rng.randn_like(x0) if sig[step + 1] > 0 else x0
    return DAPSResult(x=x.detach(), nfe=annealing_steps * ode_steps)
