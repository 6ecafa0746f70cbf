r"""Pseudoinverse-guided diffusion models (PiGDM; Song, Vahdat, Mardani, Kautz, ICLR 2023, "Pseudoinverse-Guided
Diffusion Models for Inverse Problems").

PiGDM approximates ``p(x_0 | x_t)`` by ``N(x0_hat(x_t), r_t^2 I)``, so that ``p(y | x_t)`` is Gaussian,

    p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I),

and guides each DDIM step with the (vector-Jacobian) gradient, through the network, of

    g = grad_{x_t} [ v^T A x0_hat(x_t) ],        v = sg[(r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)],

with ``r_t^2 = 1 - ab_t`` (the paper's ``sigma_t^2 / (1 + sigma_t^2)`` for data of unit variance). The step is

    x_s = DDIM_eta(x0_hat, eps_hat; ab_t -> ab_s) + scale * sqrt(ab_s) sqrt(ab_t) r_t^2 g.

``v`` is computed in closed form for :class:`~reguidance.operators.Inpainting` (``A A^T`` is the mask) and by
conjugate gradients (:func:`.linalg.conjugate_gradient`, per sample) for every other linear operator. One forward
and one backward network pass per step.

Sources and choices. The guidance coefficient follows the authors' public implementation of PiGDM
(github.com/NVlabs/RED-diff, ``algos/pgdm.py`` with ``awd = True``: ``sqrt(ab_s) sqrt(ab_t) * grad_term_weight``
times the gradient of ``<A^+ (y - A x0_hat), x0_hat>``). For ``sigma_y = 0`` we have
``r_t^2 A^T (r_t^2 A A^T)^{-1} = A^+``, so our step equals that code exactly; for ``sigma_y > 0`` the paper's
noisy ``(r_t^2 A A^T + sigma_y^2 I)^{-1}`` replaces the pseudo-inverse. Defaults: ``steps = 100`` (the paper's
100-step DDIM budget), ``eta = 0.0`` and ``scale = 1.0`` (that implementation's ``_configs/algo/pgdm.yaml``).
Per-sample quantities throughout: a sample's result never depends on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import BatchRNG, check_nonnegative, check_positive_int
from ..diffusion import EpsModel, chain_index, ddim_step, denoise, eps_from_x0
from .common import check_inputs, starting_point
from .linalg import conjugate_gradient

if TYPE_CHECKING:
    from ..operators import Operator

__all__ = ["PiGDMResult", "pigdm", "pigdm_weights"]


@dataclass
class PiGDMResult:
    """``x`` (B, *signal_shape) the restorations; ``nfe`` forward-plus-backward network evaluations per sample."""

    x: Tensor
    nfe: int


def pigdm_weights(
    operator: Operator,
    residual: Tensor,
    r2: float,
    *,
    cg_iters: int = 50,
    cg_tol: float = 1e-6,
) -> Tensor:
    """``v = (r2 A A^T + sigma_y^2 I)^{-1} residual`` per sample; ``residual`` (B, *operator.y_shape), ``r2 > 0``."""
    from ..operators import Inpainting

    s2 = operator.sigma_y**2
    if isinstance(operator, Inpainting):
        mask = operator.mask.to(residual.dtype)
        return residual * mask / (r2 * mask + s2 + (1 - mask))  # unobserved entries carry no residual

    def apply(v: Tensor) -> Tensor:
        return r2 * operator(operator.adjoint(v)) + s2 * v

    return conjugate_gradient(apply, residual, max_iter=cg_iters, tol=cg_tol)


def pigdm(
    prior: EpsModel,
    operator: Operator,
    measurement: Tensor,
    *,
    steps: int = 100,
    eta: float = 0.0,
    scale: float = 1.0,
    cg_iters: int = 50,
    cg_tol: float = 1e-6,
    rng: BatchRNG,
    latent: Tensor | None = None,
    clip: bool = False,
    progress: bool = False,
) -> PiGDMResult:
    """Run PiGDM down ``steps`` evenly spaced levels of ``prior.schedule``; ``steps`` network evaluations.

    ``measurement`` (B, *operator.y_shape); ``latent`` (B, *operator.x_shape) at the most noisy level, or ``None``
    for fresh noise from ``rng``. ``scale = 0`` gives plain DDIM. ``clip`` clamps ``x0_hat`` to [-1, 1] (the
    DDIM direction is then recomputed from the clamped estimate).
    """
    check_positive_int("steps", steps)
    check_nonnegative("eta", eta)
    check_nonnegative("scale", scale)
    check_positive_int("cg_iters", cg_iters)
    check_nonnegative("cg_tol", cg_tol)
    check_inputs(operator, measurement, rng)
    schedule = prior.schedule.spaced(steps)  # type: ignore[attr-defined]
    dtype, device = measurement.dtype, measurement.device
    x = starting_point(operator, measurement, latent, lambda: rng.randn(*operator.x_shape, dtype=dtype).to(device))

    for k in tqdm(range(len(schedule) - 1, -1, -1), disable=not progress, desc="PiGDM"):
        i = chain_index(k, x)
        ab, ab_next = schedule.alpha_bar(i, x), schedule.alpha_bar(i - 1, x)
        r2 = 1 - float(schedule.alphas_cumprod[k])
        x = x.detach().requires_grad_(scale > 0)
        with torch.enable_grad():
            out, x0 = denoise(prior, schedule, x, i)
            if clip:
                x0 = x0.clamp(-1, 1)
            if scale > 0:
                with torch.no_grad():
                    v = pigdm_weights(operator, measurement - operator(x0), r2, cg_iters=cg_iters, cg_tol=cg_tol)
                (grad,) = torch.autograd.grad((operator(x0) * v).sum(), x)
            else:
                grad = torch.zeros_like(x)
        with torch.no_grad():
            x0, eps = x0.detach(), out.eps.detach()
            if clip:
                eps = eps_from_x0(x.detach(), x0, ab)
            x_next = ddim_step(x0, eps, ab_next, ab, eta, rng)
            x = x_next + scale * (ab_next * ab).sqrt() * r2 * grad
    return PiGDMResult(x=x.detach(), nfe=len(schedule))
