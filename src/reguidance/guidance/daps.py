r"""Decoupled annealing posterior sampling (DAPS; Zhang, Chu, Berner, Meng, Anandkumar, Song, CVPR 2025;
arXiv:2407.01521, "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing").

DAPS works on the variance-exploding (EDM) scale ``x_sigma = x_0 + sigma n``. Our prior lives on the VP chain;
the two are the same process up to scale: a VP level with ``alpha_bar`` has ``sigma = sqrt((1 - ab) / ab)`` and
``x_vp = sqrt(ab) x_sigma``, so the denoiser is ``D(x_sigma; sigma) = x0_hat(sqrt(ab) x_sigma)`` (one network
evaluation). The sampler's state is kept on the VP scale like every sampler of this package (:mod:`.core`).

Annealing levels: ``N + 1`` levels ``sigma_0 > ... > sigma_N`` evenly spaced in ``sigma^{1/7}`` from ``sigma_max`` to
``sigma_min`` (EDM's "poly-7"); the first ``N`` are visited and the last re-noising goes to ``sigma = 0``, as in
the reference's annealing scheduler. The start is ``x = sigma_0 n``. At annealing step ``k``:

1. *Decoupled estimate.* Integrate the probability-flow ODE ``dx / dsigma = (x - D(x; sigma)) / sigma`` by Euler
   from ``sigma_k`` through ``ode_steps`` poly-7 levels ending at ``ode_sigma_min``, with a last Euler step to
   ``sigma = 0`` (which is Tweedie, ``x = D(x; s)``): ``x0_hat`` after ``ode_steps`` network evaluations.
2. *Langevin on the clean signal.* ``langevin_steps`` unadjusted Langevin steps on ``u`` (started at ``x0_hat``)
   targeting ``p(u | x0_hat, y) ∝ exp(-||A u - y||^2 / tau^2 - ||u - x0_hat||^2 / (2 sigma_k^2))``:

       u <- u - lr_k (2 A^T (A u - y) / tau^2 + (u - x0_hat) / sigma_k^2) + sqrt(2 lr_k) z,

   with ``lr_k = step_size (1 + k / (N + 1) (step_size_min_ratio - 1))`` (linear decay). ``tau`` is the
   reference's: its data term is ``||A u - y||^2 / tau^2`` with no 1/2, so the exact Gaussian-likelihood posterior
   has ``tau = sqrt(2) sigma_y``. The data gradient is ``operator.data_gradient``: ``2 A^T (A u - y)`` through the
   adjoint for a :class:`~reguidance.operators.LinearOperator`, the autograd gradient of ``||A(u) - y||^2`` at ``u``
   for any other operator, as the reference does. No network gradient is taken.
3. *Re-noise.* ``x = u + sigma_{k+1} n`` (the last step, ``sigma_N = 0``, returns ``u``).

Defaults are the public reference's (github.com/zhangbingliang2019/DAPS, ``configs``: annealing 200 steps from
sigma 100 to 0.1, poly-7; ODE 5 steps down to sigma 0.01; Langevin 100 steps, ``lr = 1e-4``, ``tau = 0.01``,
``lr_min_ratio = 0.01``), i.e. 200 x 5 = 1000 network evaluations.

What we changed, and why:

- *Levels snapped to the chain.* Our priors are discrete VP chains, so every sigma the algorithm needs (annealing
  and ODE) is replaced by the nearest level of ``prior.schedule`` in ``log sigma`` (as EDM's ``round_sigma`` does for
  discrete-time models); annealing levels that snap to the same chain level are visited once. The reference's own
  adapter for pixel DDPMs instead feeds the network a non-integer time (see docs/parity.md).
- *The ODE ends at sigma = 0.* The last Euler step lands on 0, i.e. the last network call gives Tweedie's
  ``x0_hat``, so ``ode_steps`` network evaluations are used in full.
- *Per-sample randomness.* Every draw comes from the sample's own generator, and the Langevin gradient is a sum of
  per-sample terms, so a batch is exactly a set of independent runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..conventions import InputError, check_nonnegative, check_positive_int
from ..diffusion import Denoiser, Level, Schedule
from .core import Cost, StepFn, Update, start
from .solve import ChainMethod, Functional, Problem

__all__ = ["DAPS", "annealing_levels", "daps", "poly_sigmas"]


def poly_sigmas(sigma_max: float, sigma_min: float, num: int, rho: float = 7.0) -> list[float]:
    """EDM's ``num`` levels from ``sigma_max`` to ``sigma_min`` evenly spaced in ``sigma^{1/rho}`` (both included)."""
    if num == 1:
        return [float(sigma_max)]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [float((a + k / (num - 1) * (b - a)) ** rho) for k in range(num)]


def _positive(name: str, value: float) -> float:
    if check_nonnegative(name, value) == 0:
        raise InputError(f"{name} must be > 0, got {value!r}")
    return float(value)


def annealing_levels(schedule: Schedule, steps: int, sigma_max: float = 100.0, sigma_min: float = 0.1) -> Schedule:
    """The first ``steps`` of ``steps + 1`` poly-7 levels from ``sigma_max`` to ``sigma_min``, snapped to
    ``schedule`` (:meth:`~reguidance.diffusion.Schedule.nearest`; duplicates visited once)."""
    sigmas = poly_sigmas(sigma_max, sigma_min, check_positive_int("steps", steps) + 1)[:-1]
    return schedule.respace(sorted({schedule.nearest(s) for s in sigmas}))


@dataclass(frozen=True)
class DAPS(ChainMethod):
    """DAPS's options (the module docstring gives their meaning): annealing from ``sigma_max`` to ``sigma_min``
    (> 0), ``ode_steps`` Euler steps down to ``ode_sigma_min``, ``langevin_steps`` Langevin steps of size
    ``step_size`` decaying to ``step_size * step_size_min_ratio``, the reference's likelihood scale ``tau`` (> 0);
    ``clip`` clamps each ``D(x; sigma)`` to [-1, 1]. Reference budget: 200 annealing levels, ``steps * ode_steps``
    network evaluations per sample."""

    name: ClassVar[str] = "daps"
    label: ClassVar[str] = "DAPS"
    default_steps: ClassVar[int] = 200
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {"cpu": {"steps": 20, "ode_steps": 2, "langevin_steps": 50}}
    step_sizes: ClassVar[tuple[str, ...]] = ("step_size", "tau")
    #: the reference code's Langevin lr 1e-4 with tau 0.01 among them
    tuning_grid: ClassVar[str] = "step_size=1e-5,3e-5,1e-4,3e-4,1e-3,3e-3;tau=0.01,0.1"

    sigma_max: float = 100.0
    sigma_min: float = 0.1
    ode_steps: int = 5
    ode_sigma_min: float = 0.01
    langevin_steps: int = 100
    step_size: float = 1e-4
    step_size_min_ratio: float = 0.01
    tau: float = 0.01
    clip: bool = False

    def cost(self) -> Cost:
        """``ode_steps`` forward passes per annealing level (its Langevin steps use no network)."""
        return Cost(fwd=self.levels * self.ode_steps)

    def check(self) -> None:
        check_positive_int("ode_steps", self.ode_steps)
        check_positive_int("langevin_steps", self.langevin_steps)
        _positive("sigma_max", self.sigma_max)
        _positive("sigma_min", self.sigma_min)
        if self.sigma_min > self.sigma_max:
            raise InputError(
                f"sigma_min must be <= sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )
        _positive("ode_sigma_min", self.ode_sigma_min)
        check_nonnegative("step_size", self.step_size)
        check_nonnegative("step_size_min_ratio", self.step_size_min_ratio)
        _positive("tau", self.tau)

    def grid(self, schedule: Schedule, steps: int) -> Schedule:
        return annealing_levels(schedule, steps, sigma_max=self.sigma_max, sigma_min=self.sigma_min)

    def first_state(self, problem: Problem, levels: Schedule, latent: Tensor | None) -> Tensor:
        """``latent``, or ``sigma_0 n`` on the VE scale, i.e. ``sqrt(1 - ab_0) n`` on the VP scale."""
        scale = math.sqrt(1 - float(levels.alphas_cumprod[-1]))
        return start(problem.operator, problem.measurement, latent, problem.rng, scale=scale)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        operator, measurement, rng = problem.operator, problem.measurement, problem.rng
        chain: Schedule = problem.prior.schedule
        chain_sigmas = chain.sigmas()
        clip, tau, ode_steps, ode_sigma_min = self.clip, self.tau, self.ode_steps, self.ode_sigma_min
        step_size, step_size_min_ratio, langevin_steps = self.step_size, self.step_size_min_ratio, self.langevin_steps

        def denoise(x_ve: Tensor, k: int) -> Tensor:
            """``D(x_ve; sigma_k)`` at index ``k`` of the prior's chain."""
            ab = float(chain.alphas_cumprod[k])
            x0 = net(math.sqrt(ab) * x_ve, int(chain.timestep_map[k]), ab).x0
            return x0.clamp(-1, 1) if clip else x0

        def ode(x_ve: Tensor, sigma: float) -> Tensor:
            ks = [chain.nearest(s) for s in poly_sigmas(sigma, min(ode_sigma_min, sigma), ode_steps)]
            s = [float(chain_sigmas[k]) for k in ks] + [0.0]
            for j, k in enumerate(ks):
                x_ve = x_ve + (s[j + 1] - s[j]) / s[j] * (x_ve - denoise(x_ve, k))
            return x_ve

        def step(x: Tensor, level: Level) -> Update:
            x0_hat = ode(x / math.sqrt(level.alpha_bar), level.sigma)
            lr = step_size * (1 + level.step / (len(levels) + 1) * (step_size_min_ratio - 1))
            u = x0_hat
            for _ in range(langevin_steps):
                grad = operator.data_gradient(u, measurement) / tau**2 + (u - x0_hat) / level.sigma**2
                u = u - lr * grad + math.sqrt(2 * lr) * rng.randn_like(u)
            if level.is_last:
                return Update(u, u)
            x_next = u + level.sigma_next * rng.randn_like(u)
            return Update(math.sqrt(level.alpha_bar_next) * x_next, u)

        return step


#: the functional form: ``daps(prior, operator, measurement, *, rng, steps=None, ..., **options)``
daps = Functional(DAPS)
