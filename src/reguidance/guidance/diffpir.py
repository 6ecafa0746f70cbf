r"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu, Zhang, Liang, Cao, Wen, Timofte,
Van Gool, CVPR Workshops (NTIRE) 2023; arXiv:2305.08995).

Half-quadratic splitting with the diffusion model as the denoiser. At each level ``t`` of a chain (noise-to-signal
ratio ``sigma_t = sqrt((1 - ab_t) / ab_t)``):

1. prior step (one network evaluation): ``x0 = x0_hat(x_t)`` (Tweedie);
2. data step: ``x0' = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2``, ``rho_t = lambda_ sigma_n^2 / sigma_t^2``,
   solved exactly by the operator (:meth:`Operator.prox_l2` with ``gamma = 1 / rho_t``: a closed form for masks,
   circular blurs and average pooling, conjugate gradients to a stated tolerance for other operators);
3. re-noising to the next level ``s``: with ``eps_hat = (x_t - sqrt(ab_t) x0') / sqrt(1 - ab_t)``,

       x_s = sqrt(ab_s) x0' + sqrt(1 - ab_s) (sqrt(1 - noise_mix) eps_hat + sqrt(noise_mix) z),      z ~ N(0, I);

   ``noise_mix = 0`` is a deterministic DDIM step from the corrected ``x0'``, ``noise_mix = 1`` a fresh draw
   (the reference's ``zeta``).

The last level (``t = 0``) returns ``x0`` without a data step, as the reference does.

Hyperparameters and defaults (public reference github.com/yuanzhi-zhu/DiffPIR, ``configs/sisr.yaml`` and
``configs/deblur.yaml``, the noisy super-resolution and deblurring setting): 100 levels on the ``"quad"`` time grid
(``t_i = T - 1 - floor(sqrt(i / (n - 1)) T)``, denser at low noise), ``lambda_ = 1.0``, ``noise_mix = 0.1`` for
deblurring; its super-resolution config uses ``noise_mix = 0.25`` and its noiseless inpainting config 20 levels
with ``noise_mix = 1.0``.

Scale of ``sigma_n``: the reference measures the noise level of ``y`` on the [0, 1] image scale while its images
live in [-1, 1]; to reproduce its ``rho_t`` for the same ``lambda_`` we use ``sigma_n = max(sigma_y / 2, 0.001)``
with ``sigma_y`` on our [-1, 1] scale (the floor 0.001 is the reference's, for noiseless problems). Posing the data
step on [0, 1] gives the same minimiser because these operators map constants to constants.

Differences from the reference: the time grid is built from ``prior.schedule`` (the same quad rule, duplicates
dropped), the start is fresh noise (the reference mixes ``sqrt(ab_T) y``, about ``0.006 y``, into its start) and
every draw comes from the sample's own generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from ..conventions import InputError, check_nonnegative, check_positive_int, check_unit_interval
from ..diffusion import Denoiser, Level, Schedule, eps_from_x0
from .core import Cost, StepFn, Update
from .solve import ChainMethod, Functional, Problem

SkipType = Literal["quad", "uniform"]

__all__ = ["DiffPIR", "diffpir", "time_grid"]


def time_grid(schedule: Schedule, steps: int, skip_type: SkipType = "quad") -> Schedule:
    """``schedule`` respaced to at most ``steps`` levels: the reference's ``"quad"`` grid or an even one."""
    check_positive_int("steps", steps)
    n = len(schedule)
    if steps > n:
        raise InputError(f"steps={steps} exceeds the {n} levels of the prior's schedule")
    if skip_type == "uniform":
        return schedule.spaced(steps)
    if skip_type != "quad":
        raise InputError(f"skip_type must be 'quad' or 'uniform', got {skip_type!r}")
    if steps == 1:
        return schedule.respace([n - 1])
    seq = [int(math.sqrt(i / (steps - 1) * n * n)) for i in range(steps)]
    seq[-1] -= 1
    return schedule.respace(sorted({n - 1 - min(s, n - 1) for s in seq}))


@dataclass(frozen=True)
class DiffPIR(ChainMethod):
    """DiffPIR's options: ``lambda_`` >= 0 (0 turns the data step off: unconditional sampling), ``noise_mix`` in
    [0, 1], the time grid ``skip_type``; ``clip`` clamps ``x0_hat`` to [-1, 1] before the data step. Needs a linear
    operator (its data step is a proximal solve with ``A``). Reference budget: 100 levels, one network evaluation
    each."""

    name: ClassVar[str] = "diffpir"
    label: ClassVar[str] = "DiffPIR"
    default_steps: ClassVar[int] = 100
    needs_linear: ClassVar[bool] = True
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {"cpu": {"steps": 20}}
    #: the reference configs' zeta (``configs/{inpaint,sisr,deblur}.yaml``)
    reference: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "inpainting": {"noise_mix": 1.0},
        "super_resolution": {"noise_mix": 0.25},
        "deblur": {"noise_mix": 0.1},
    }
    step_sizes: ClassVar[tuple[str, ...]] = ("lambda_", "noise_mix")
    tuning_grid: ClassVar[str] = "lambda_=1,2,4,8;noise_mix=0.1,0.25,1.0"
    #: the reference config for noiseless inpainting (``configs/inpaint.yaml``) runs 20 steps, not 100
    inpainting_steps: ClassVar[int] = 20

    @classmethod
    def budget(cls, protocol: str, family: str) -> dict[str, object]:
        """The reference budget, except for inpainting under the reference protocol: :attr:`inpainting_steps`."""
        budget = super().budget(protocol, family)
        if protocol == "reference" and family == "inpainting":
            budget["steps"] = cls.inpainting_steps
        return budget

    lambda_: float = 1.0
    noise_mix: float = 0.1
    skip_type: SkipType = "quad"
    clip: bool = False

    def cost(self) -> Cost:
        """One forward pass per level."""
        return Cost(fwd=self.levels)

    def check(self) -> None:
        check_nonnegative("lambda_", self.lambda_)
        check_unit_interval("noise_mix", self.noise_mix, open_left=False)

    def grid(self, schedule: Schedule, steps: int) -> Schedule:
        return time_grid(schedule, steps, self.skip_type)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        operator, measurement, rng = problem.linear_operator("DiffPIR"), problem.measurement, problem.rng
        lambda_, noise_mix, clip = self.lambda_, self.noise_mix, self.clip
        sigma_n = max(operator.sigma_y / 2, 0.001)

        def step(x: Tensor, level: Level) -> Update:
            x0 = net.at(x, level).x0
            x0 = x0.clamp(-1, 1) if clip else x0
            if level.is_last:
                return Update(x0, x0)
            if lambda_ > 0:
                rho = lambda_ * sigma_n**2 / level.sigma**2
                x0 = operator.prox_l2(x0, measurement, 1 / rho)
            eps_hat = eps_from_x0(x, x0, level.alpha_bar)
            noise = math.sqrt(1 - noise_mix) * eps_hat + math.sqrt(noise_mix) * rng.randn_like(x)
            return Update(math.sqrt(level.alpha_bar_next) * x0 + math.sqrt(1 - level.alpha_bar_next) * noise, x0)

        return step


#: the functional form: ``diffpir(prior, operator, measurement, *, rng, steps=None, ..., **options)``
diffpir = Functional(DiffPIR)
