r"""Pseudoinverse-guided diffusion models (PiGDM; Song, Vahdat, Mardani, Kautz, ICLR 2023, "Pseudoinverse-Guided
Diffusion Models for Inverse Problems").

PiGDM approximates ``p(x_0 | x_t)`` by ``N(x0_hat(x_t), r_t^2 I)``, so that ``p(y | x_t)`` is Gaussian,

    p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I),

and guides each DDIM step with the (vector-Jacobian) gradient, through the network, of

    g = grad_{x_t} [ v^T A x0_hat(x_t) ],        v = sg[(r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)],

with ``r_t^2 = 1 - ab_t`` (the paper's ``sigma_t^2 / (1 + sigma_t^2)`` for data of unit variance). The step is

    x_s = DDIM_eta(x0_hat, eps_hat; ab_t -> ab_s) + scale * sqrt(ab_s) sqrt(ab_t) r_t^2 g.

``v`` comes from the operator's measurement-space solve (:meth:`Operator.solve_gram`: closed form for masks,
average pooling and circular blurs, conjugate gradients otherwise). One forward and one backward network pass per
step.

Sources and choices. The guidance coefficient follows the authors' public implementation of PiGDM
(github.com/NVlabs/RED-diff, ``algos/pgdm.py`` with ``awd = True``: ``sqrt(ab_s) sqrt(ab_t) * grad_term_weight``
times the gradient of ``<A^+ (y - A x0_hat), x0_hat>``). For ``sigma_y = 0`` we have
``r_t^2 A^T (r_t^2 A A^T)^{-1} = A^+``, so our step equals that code exactly; for ``sigma_y > 0`` the paper's
noisy ``(r_t^2 A A^T + sigma_y^2 I)^{-1}`` replaces the pseudo-inverse. Defaults: 100 levels (the paper's DDIM
budget), ``eta = 0.0`` and ``scale = 1.0`` (that implementation's ``_configs/algo/pgdm.yaml``). Per-sample
quantities throughout: a sample's result never depends on the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..conventions import check_nonnegative
from ..diffusion import Denoiser, Level, Schedule, ddim_step, eps_from_x0
from .core import Cost, StepFn, Update
from .solve import ChainMethod, Functional, Problem

__all__ = ["PiGDM", "pigdm"]


@dataclass(frozen=True)
class PiGDM(ChainMethod):
    """PiGDM's options: the guidance ``scale`` >= 0 (0 gives plain DDIM), the DDIM ``eta`` >= 0; ``clip`` clamps
    ``x0_hat`` to [-1, 1] (the DDIM direction is then recomputed from the clamped estimate). Needs a linear operator
    (its guidance solves with ``A A^T``). Reference budget: 100 evenly spaced levels, one forward and one backward
    network pass each."""

    name: ClassVar[str] = "pigdm"
    label: ClassVar[str] = "PiGDM"
    default_steps: ClassVar[int] = 100
    needs_linear: ClassVar[bool] = True
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {"cpu": {"steps": 20}}
    step_sizes: ClassVar[tuple[str, ...]] = ("scale",)
    tuning_grid: ClassVar[str] = "scale=0.125,0.25,0.5,1,1.5,2,3,4,6,8,12,16"

    scale: float = 1.0
    eta: float = 0.0
    clip: bool = False

    def cost(self) -> Cost:
        """One forward pass with its backward pass (a vector-Jacobian product) per level."""
        return Cost(fwd_grad=self.levels)

    def check(self) -> None:
        check_nonnegative("eta", self.eta)
        check_nonnegative("scale", self.scale)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        operator, measurement, rng = problem.linear_operator("PiGDM"), problem.measurement, problem.rng
        scale, eta, clip = self.scale, self.eta, self.clip
        s2 = operator.sigma_y**2

        def step(x: Tensor, level: Level) -> Update:
            r2 = 1 - level.alpha_bar
            x = x.detach().requires_grad_(scale > 0)
            with torch.enable_grad():
                d = net.at(x, level)
                x0 = d.x0.clamp(-1, 1) if clip else d.x0
                if scale > 0:
                    v = operator.solve_gram((measurement - operator(x0)).detach(), r2, s2)
                    (grad,) = torch.autograd.grad((operator(x0) * v).sum(), x)
            with torch.no_grad():
                x, x0 = x.detach(), x0.detach()
                eps = eps_from_x0(x, x0, level.alpha_bar) if clip else d.eps.detach()
                x_next = ddim_step(x0, eps, level.alpha_bar, level.alpha_bar_next, eta, rng)
                if scale > 0:
                    x_next = x_next + scale * math.sqrt(level.alpha_bar_next * level.alpha_bar) * r2 * grad
            return Update(x_next, x0)

        return step


#: the functional form: ``pigdm(prior, operator, measurement, *, rng, steps=None, ..., **options)``
pigdm = Functional(PiGDM)
