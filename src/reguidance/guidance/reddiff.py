r"""RED-diff: variational diffusion sampling for inverse problems (Mardani, Song, Kautz, Vahdat, ICLR 2024;
arXiv:2305.04391, "A Variational Perspective on Solving Inverse Problems with Diffusion Models").

RED-diff fits a point estimate ``mu`` (the mean of a variational posterior with vanishing variance) by stochastic
optimisation, sweeping the noise levels of a chain from the most noisy to the least. At level ``t``:

    x_t   = sqrt(ab_t) mu + sqrt(1 - ab_t) n,                  n ~ N(0, I)   (one draw per step)
    loss  = obs_weight ||y - A mu||^2 / (2 m)  +  lambda_ w_t <sg(eps(x_t, t) - n), mu> / d,
    w_t   = sqrt((1 - ab_t) / ab_t)                            ("linear" weighting: the inverse SNR sigma_t)
    mu   <- Adam step on loss                                  (lr, betas (0.9, 0.99), no weight decay)

``sg`` stops the gradient: the regulariser's gradient is ``lambda_ w_t (eps(x_t, t) - n) / d``, the score-matching
residual of the prior at ``x_t`` (regularisation by denoising), so no network gradient is taken. ``m`` is the
number of measurements and ``d`` the signal size of one sample (the reference takes means over entries). The
result is ``mu`` after the last level (one network evaluation per level).

Defaults are those of the public reference (github.com/NVlabs/RED-diff, ``_configs/algo/reddiff.yaml`` and
``algos/reddiff.py``): ``lr = 0.1``, ``lambda_ = 0.25`` (``grad_term_weight``), ``obs_weight = 1.0``, ``"linear"``
weighting, Adam betas (0.9, 0.99), ``mu`` initialised at the pseudo-inverse ``A^+ y``; ``steps = 1000`` (the
reference runs all levels of the guided-diffusion chain). The reference's ``sigma_x0`` (noise added to ``mu``
before noising; default 0) is omitted. Note that the observation term has no ``1 / sigma_y^2``: the reference
weighs data and prior with ``obs_weight`` and ``lambda_`` alone.

Difference from the reference: its loss takes means over the whole batch, which scales every sample's gradient
by ``1 / B``; we sum per-sample means (Adam acts elementwise), so each sample's trajectory is that of a batch of
one and never depends on the batch. Every draw comes from the sample's own generator (:class:`BatchRNG`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import BatchRNG, check_nonnegative, check_positive_int
from ..diffusion import EpsModel, chain_index
from .common import check_inputs, starting_point

if TYPE_CHECKING:
    from ..operators import Operator

Weighting = Literal["linear", "sqrt", "const"]

__all__ = ["REDDiffResult", "reddiff"]


@dataclass
class REDDiffResult:
    """``x`` (B, *signal_shape) the fitted ``mu``; ``nfe`` network evaluations per sample."""

    x: Tensor
    nfe: int


def reddiff(
    prior: EpsModel,
    operator: Operator,
    measurement: Tensor,
    *,
    steps: int = 1000,
    lr: float = 0.1,
    lambda_: float = 0.25,
    obs_weight: float = 1.0,
    weighting: Weighting = "linear",
    rng: BatchRNG,
    latent: Tensor | None = None,
    clip: bool = False,
    progress: bool = False,
) -> REDDiffResult:
    """Fit ``mu`` over ``steps`` levels of ``prior.schedule`` (evenly spaced), most noisy first.

    ``measurement`` (B, *operator.y_shape); ``latent`` (B, *operator.x_shape), if given, is the initial ``mu``
    (a clean-signal estimate, e.g. a candidate), else ``operator.pinv(measurement)``. ``weighting`` is ``w_t`` as a
    function of ``sigma_t``: ``"linear"`` (``sigma_t``, the reference default), ``"sqrt"`` or ``"const"`` (1).
    ``clip`` clamps the returned ``mu`` to [-1, 1]. ``lambda_ = 0`` gives plain least squares from the start.
    """
    check_positive_int("steps", steps)
    check_nonnegative("lr", lr)
    check_nonnegative("lambda_", lambda_)
    check_nonnegative("obs_weight", obs_weight)
    if weighting not in ("linear", "sqrt", "const"):
        raise ValueError(f"weighting must be 'linear', 'sqrt' or 'const', got {weighting!r}")
    check_inputs(operator, measurement, rng)
    schedule = prior.schedule.spaced(steps)  # type: ignore[attr-defined]
    mu0 = starting_point(operator, measurement, latent, lambda: operator.pinv(measurement))

    d = math.prod(operator.x_shape)
    m = torch.as_tensor(operator.num_measurements, dtype=measurement.dtype, device=measurement.device)
    mu = mu0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    sigmas = schedule.sigmas()
    for k in tqdm(range(len(schedule) - 1, -1, -1), disable=not progress, desc="RED-diff"):
        i = chain_index(k, mu)
        ab = schedule.alpha_bar(i, mu)
        noise = rng.randn_like(mu)
        with torch.no_grad():
            x_t = ab.sqrt() * mu + (1 - ab).sqrt() * noise
            eps = prior.predict(x_t, schedule.timesteps(i)).eps
        s = float(sigmas[k])
        w = s if weighting == "linear" else math.sqrt(s) if weighting == "sqrt" else 1.0
        with torch.enable_grad():
            residual = (measurement - operator(mu)).flatten(1)
            loss_obs = (residual**2).sum(dim=1) / (2 * m)
            loss_reg = ((eps - noise).detach() * mu).flatten(1).sum(dim=1) / d
            loss = (obs_weight * loss_obs + lambda_ * w * loss_reg).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    x = mu.detach()
    return REDDiffResult(x=x.clamp(-1, 1) if clip else x, nfe=len(schedule))
