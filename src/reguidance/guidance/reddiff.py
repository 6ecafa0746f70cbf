r"""RED-diff: variational diffusion sampling for inverse problems (Mardani, Song, Kautz, Vahdat, ICLR 2024;
arXiv:2305.04391, "A Variational Perspective on Solving Inverse Problems with Diffusion Models").

RED-diff fits a point estimate ``mu`` (the mean of a variational posterior with vanishing variance) by stochastic
optimisation, sweeping the levels of a chain from the most noisy to the least. At level ``t``:

    x_t   = sqrt(ab_t) mu + sqrt(1 - ab_t) n,                  n ~ N(0, I)   (one draw per step)
    loss  = obs_weight ||y - A mu||^2 / (2 m)  +  lambda_ w_t <sg(eps(x_t, t) - n), mu> / d,
    w_t   = sqrt((1 - ab_t) / ab_t)                            ("linear" weighting: the inverse SNR sigma_t)
    mu   <- Adam step on loss                                  (step_size, betas (0.9, 0.99), no weight decay)

``sg`` stops the gradient: the regulariser's gradient is ``lambda_ w_t (eps(x_t, t) - n) / d``, the score-matching
residual of the prior at ``x_t`` (regularisation by denoising), so no network gradient is taken. ``m`` is the
number of measurements and ``d`` the signal size of one sample (the reference takes means over entries). The
result is ``mu`` as it enters the last level: the reference returns its ``x0_pred``, formed before the last Adam
step, so that step's network evaluation cannot change the result and is skipped (``len(levels) - 1`` network
evaluations).

RED-diff's state is a clean estimate, not a noisy one: it starts from ``init`` (default the pseudo-inverse
``A^+ y``) and takes no ``latent``.

Defaults are those of the public reference (github.com/NVlabs/RED-diff, ``_configs/algo/reddiff.yaml`` and
``algos/reddiff.py``): ``step_size = 0.1`` (its ``lr``), ``lambda_ = 0.25`` (``grad_term_weight``),
``obs_weight = 1.0``, ``"linear"`` weighting, Adam betas (0.9, 0.99), 50 levels. The reference's ``sigma_x0``
(noise added to ``mu`` before noising; default 0) is omitted. The observation term has no ``1 / sigma_y^2``: the
reference weighs data and prior with ``obs_weight`` and ``lambda_`` alone.

Difference from the reference: its loss takes means over the whole batch, which scales every sample's gradient
by ``1 / B``; we sum per-sample means (Adam acts elementwise), so each sample's trajectory is that of a batch of
one and never depends on the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from ..conventions import InputError, check_nonnegative, check_signal_shape
from ..diffusion import Denoiser, Level, Schedule
from ..operators import LinearOperator
from .core import Cost, StepFn, Update
from .solve import ChainMethod, Functional, Problem

Weighting = Literal["linear", "sqrt", "const"]

__all__ = ["RedDiff", "reddiff"]


@dataclass(frozen=True)
class RedDiff(ChainMethod):
    """RED-diff's options: Adam's ``step_size`` >= 0, the regulariser's weight ``lambda_`` >= 0 and the data term's
    ``obs_weight`` >= 0, the ``weighting`` ``w_t`` as a function of ``sigma_t`` (``"linear"``: ``sigma_t``, the
    reference default; ``"sqrt"``; ``"const"``: 1); ``clip`` clamps the returned ``mu`` to [-1, 1]. Reference budget:
    50 evenly spaced levels, ``steps - 1`` network evaluations.

    ``init`` (B, *operator.x_shape), the initial ``mu`` (a clean-signal estimate; default ``operator.pinv(y)``), is
    data of one problem, not an option: it is left out of :func:`~reguidance.guidance.solve.options_of` and of
    comparisons. RED-diff's state is a clean estimate, so it takes no ``latent``.
    """

    name: ClassVar[str] = "reddiff"
    label: ClassVar[str] = "RED-diff"
    default_steps: ClassVar[int] = 50
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {"cpu": {"steps": 30}}
    step_sizes: ClassVar[tuple[str, ...]] = ("step_size", "lambda_")
    #: the reference lr 0.1 with lambda 0.25 among them
    tuning_grid: ClassVar[str] = "step_size=0.03,0.1,0.3;lambda_=0.1,0.25,0.5,1"

    step_size: float = 0.1
    lambda_: float = 0.25
    obs_weight: float = 1.0
    weighting: Weighting = "linear"
    clip: bool = False
    init: Tensor | None = field(default=None, repr=False, compare=False, metadata={"option": False})

    def cost(self) -> Cost:
        """One forward pass per level but the last (the reference returns ``mu`` before that level's step)."""
        return Cost(fwd=self.levels - 1)

    def check(self) -> None:
        check_nonnegative("step_size", self.step_size)
        check_nonnegative("lambda_", self.lambda_)
        check_nonnegative("obs_weight", self.obs_weight)

    def linear_only(self) -> bool:
        """Without ``init`` RED-diff starts from ``operator.pinv(y)``, which only a linear operator has."""
        return self.init is None

    def first_state(self, problem: Problem, levels: Schedule, latent: Tensor | None) -> Tensor:
        """``init``, else ``operator.pinv(y)``: the initial ``mu``."""
        if latent is not None:
            raise InputError("RED-diff optimises a clean estimate, not a noisy state: pass init= instead of latent=")
        operator, measurement = problem.operator, problem.measurement
        init = self.init
        if init is None:
            if not isinstance(operator, LinearOperator):
                raise InputError(
                    f"RED-diff starts from operator.pinv(y) but {type(operator).__name__} is not a LinearOperator "
                    "and has none: pass init="
                )
            init = operator.pinv(measurement)
        check_signal_shape("init", init, operator.x_shape, type(operator).__name__)
        if init.shape[0] != measurement.shape[0]:
            raise InputError(f"init has {init.shape[0]} samples but measurement has {measurement.shape[0]}")
        return init.detach().to(measurement.device, measurement.dtype)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        """The Adam step on ``mu``; ``mu`` and the optimiser are made from the first state the loop hands in."""
        operator, measurement, rng = problem.operator, problem.measurement, problem.rng
        step_size, lambda_, obs_weight, weighting, clip = (
            self.step_size,
            self.lambda_,
            self.obs_weight,
            self.weighting,
            self.clip,
        )
        d = math.prod(operator.x_shape)
        m = torch.as_tensor(operator.num_measurements, dtype=measurement.dtype, device=measurement.device)
        fit: list[tuple[Tensor, torch.optim.Adam]] = []

        def step(x: Tensor, level: Level) -> Update:
            if not fit:
                mu0 = x.clone().requires_grad_(True)
                fit.append((mu0, torch.optim.Adam([mu0], lr=step_size, betas=(0.9, 0.99), weight_decay=0.0)))
            mu, optimizer = fit[0]
            before = mu.detach().clone()
            if level.is_last:  # the reference returns mu before this level's Adam step
                return Update(before.clamp(-1, 1) if clip else before, before)
            noise = rng.randn_like(before)
            with torch.no_grad():
                x_t = math.sqrt(level.alpha_bar) * before + math.sqrt(1 - level.alpha_bar) * noise
                eps = net.at(x_t, level).eps
            s = level.sigma
            w = s if weighting == "linear" else math.sqrt(s) if weighting == "sqrt" else 1.0
            with torch.enable_grad():
                residual = (measurement - operator(mu)).flatten(1)
                loss_obs = (residual**2).sum(dim=1) / (2 * m)
                loss_reg = ((eps - noise).detach() * mu).flatten(1).sum(dim=1) / d
                loss = (obs_weight * loss_obs + lambda_ * w * loss_reg).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return Update(mu.detach().clone(), before)

        return step


#: the functional form: ``reddiff(prior, operator, measurement, *, rng, steps=None, ..., **options)``
reddiff = Functional(RedDiff)
