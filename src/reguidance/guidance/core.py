r"""The sampler core: every sampler of this package is one loop over the levels of a reverse chain.

The pieces, kept apart (as azula keeps schedule, denoiser and sampler apart):

- **levels** are data: a :class:`~reguidance.diffusion.Schedule` (e.g. ``prior.schedule.spaced(50)``) whose
  transitions :class:`~reguidance.diffusion.Level` are visited from its most noisy level down to the data. Each
  level carries its network timestep ``t`` and float64 ``alpha_bar``, ``alpha_bar_next``.
- the **state** ``x`` (B, *signal_shape) is the sample at the current level on the variance-preserving scale,
  ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``. Its value at the first level is the **latent**.
- the **prior** is seen through a :class:`~reguidance.diffusion.Denoiser`: ``(x_t, level) -> (eps, x0_hat)``, which
  counts network evaluations.
- a method's **step** ``step(x, level) -> Update(x_next, x0_hat)`` is its own update for one transition, made by
  its config's ``stepper`` (:class:`reguidance.guidance.solve.Method`): all that a method writes besides its typed
  options and, where it differs from an even spacing, its default levels.
- :func:`run` is the one loop: it calls ``step`` once per level, shows a progress bar, records the per-step
  measurement residual ``||y - A x0_hat||`` and calls the user's ``callback`` (as k-diffusion's samplers do).

A method is a frozen config with one stepper, run on a problem by :func:`reguidance.guidance.solve.solve`
(``solve(DPS(step_size=0.3), Problem(prior, operator, measurement, rng), steps=50)``); each also has the
functional form

    method(prior, operator, measurement, *, steps=None, levels=None, rng, latent=None, callback=None,
           progress=False, **options) -> SampleResult

``steps`` picks the method's own default grid of that many levels; ``levels`` gives the chain explicitly (then
``steps`` must be left out). ``rng`` (:class:`~reguidance.conventions.BatchRNG`, one generator per sample) draws
the fresh start and every stochastic step. ``latent`` replaces the fresh start ``N(0, I)`` at the first level.
``callback(info)`` receives a :class:`StepInfo` after every transition; returning ``True`` stops the loop and the
result holds the state reached. A new method is one config with its own update; see the README's "Adding a
method".

Names that mean one thing across the methods: ``step_size`` is the size of a gradient-type step on the data term
(DPS's zeta, DAPS's Langevin lr, RED-diff's Adam lr); ``latent`` is always a noisy state at the first level;
``measurement`` is ``y``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import BatchRNG, InputError, check_positive_int, check_signal_shape
from ..diffusion import Denoiser, EpsModel, Level, Schedule
from ..operators import LinearOperator, Operator

__all__ = [
    "Callback",
    "Cost",
    "SampleResult",
    "StepFn",
    "StepInfo",
    "Update",
    "check_device",
    "check_operator",
    "check_prior",
    "check_problem",
    "choose_levels",
    "run",
    "start",
]


class Update(NamedTuple):
    """What one step returns: the state at the next level and the clean estimate ``x0_hat`` it used."""

    x: Tensor
    x0: Tensor


class StepFn(Protocol):
    def __call__(self, x: Tensor, level: Level) -> Update: ...


@dataclass(frozen=True)
class StepInfo:
    """Handed to the callback after each transition: the ``level`` just taken, the new state ``x`` (at the next
    level, or the result after the last), the clean estimate ``x0`` of that step and its per-sample measurement
    residual ``residual = ||y - A x0||`` (B,)."""

    level: Level
    x: Tensor
    x0: Tensor
    residual: Tensor


Callback = Callable[[StepInfo], bool | None]


@dataclass(frozen=True)
class Cost:
    """Network evaluations per image of a run: ``fwd`` forward passes alone, and ``fwd_grad`` forward passes whose
    graph is kept for one backward pass (the gradient with respect to the input, what DPS and PiGDM take per step).
    Equal NFE is not equal compute: a ``fwd_grad`` costs a few forwards (``reguidance speed`` measures both), so
    comparisons at equal compute weigh them by their measured seconds (:meth:`seconds`)."""

    fwd: int = 0
    fwd_grad: int = 0

    @property
    def nfe(self) -> int:
        """Network evaluations, with or without a backward pass."""
        return self.fwd + self.fwd_grad

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.fwd + other.fwd, self.fwd_grad + other.fwd_grad)

    def seconds(self, fwd_s: float, fwd_grad_s: float) -> float:
        """The bare network's time for these evaluations, given its seconds per forward and per forward with the
        input gradient."""
        return self.fwd * fwd_s + self.fwd_grad * fwd_grad_s


@dataclass
class SampleResult:
    """A sampler's output.

    ``x`` (B, *signal_shape) the result; ``nfe`` network evaluations per sample (a forward pass with its backward
    counts once); ``timesteps`` the network timestep of each step taken, and ``residuals`` (steps, B) the
    measurement residual ``||y - A x0_hat||`` of each step's clean estimate; ``stopped`` is True when the callback
    ended the loop early.
    """

    x: Tensor
    nfe: int
    timesteps: list[int]
    residuals: Tensor
    stopped: bool = False


def check_operator(operator: object, method: str, *, linear: bool) -> None:
    """Check once, before any work, that ``operator`` is of the kind ``method`` needs, or raise an InputError.

    The contract is the class, not a list of attributes: every method needs an instance of
    :class:`reguidance.operators.Operator` (any differentiable ``A``; DPS, DAPS, RED-diff and ReGuidance use only
    ``A(x)``, its autograd gradient and the checks and diagnostics the base class provides), and ``linear=True``
    (methods that solve with ``A`` and its adjoint: DiffPIR's ``prox_l2``, PiGDM's ``solve_gram``) needs an instance
    of :class:`reguidance.operators.LinearOperator`. Duck-typed objects are refused: the methods call more than
    ``A(x)`` (shape checks, residuals, ``data_gradient``), and only the class says whether ``A`` is linear.
    """
    if not isinstance(operator, Operator):
        raise InputError(
            f"{method} needs a reguidance.operators.Operator, got {type(operator).__name__}: subclass Operator "
            "(any differentiable A) or LinearOperator (a linear A) and implement _forward(x), or wrap a deepinv "
            "Physics with reguidance.operators.deepinv.DeepinvOperator"
        )
    if linear and not isinstance(operator, LinearOperator):
        raise InputError(
            f"{method} needs a linear operator (a reguidance.operators.LinearOperator: it solves with A and its "
            f"adjoint); {type(operator).__name__} is not one: use dps, daps, reddiff (with init=) or reguide, which "
            "differentiate through the forward model"
        )


#: what every method asks of a prior (:class:`reguidance.diffusion.EpsModel`)
PRIOR_ATTRIBUTES = ("predict", "schedule", "variance")


def check_prior(prior: object, method: str, *, needs: tuple[str, ...] = PRIOR_ATTRIBUTES) -> None:
    """Check once, before any work, that ``prior`` is a diffusion prior ``method`` can run (it has every attribute
    in ``needs``: ``predict(x_t, t)``, its ``schedule`` and ``variance``, and for ReGuidance its ``signal_shape``),
    or raise an InputError naming what was given: ``None`` or another object is refused by name rather than failing
    later on a missing attribute."""
    missing = [name for name in needs if not hasattr(prior, name)]
    if missing:
        lacks = "" if prior is None else f" without {', '.join(missing)}"
        raise InputError(
            f"{method} needs a diffusion prior (e.g. reguidance.load_prior('mnist'), or a "
            f"reguidance.priors.base.Prior), got {type(prior).__name__}{lacks}"
        )


def check_device(name: str, x: Tensor, prior: object) -> None:
    """Refuse (InputError naming ``name``) a tensor on another device than ``prior`` (where it has one), before the
    first network evaluation fails on it."""
    device = getattr(prior, "device", None)
    if not isinstance(device, torch.device) or not isinstance(x, Tensor):
        return
    here, there = x.device, device
    if here.type != there.type or (here.index or 0) != (there.index or 0):
        raise InputError(f"{name} is on {here} but the prior is on {there}; move it with .to(prior.device)")


def check_problem(operator: Operator, measurement: Tensor, rng: BatchRNG) -> None:
    """A measurement ``(B, *operator.y_shape)`` and one generator per sample, or an InputError naming the problem."""
    if not isinstance(rng, BatchRNG) and not hasattr(rng, "randn_like"):
        raise InputError(f"rng must be a BatchRNG (one generator per sample), got {type(rng).__name__}")
    operator.check_measurement(measurement)
    if len(rng) != measurement.shape[0]:
        raise InputError(f"rng holds {len(rng)} generators but measurement has {measurement.shape[0]} samples")


def choose_levels(
    prior: EpsModel,
    steps: int | None,
    levels: Schedule | None,
    grid: Callable[[Schedule, int], Schedule],
    default_steps: int,
) -> Schedule:
    """The chain a method visits: ``levels`` as given, else the method's ``grid(prior.schedule, steps)`` with
    ``steps`` (``default_steps`` when ``None``) levels."""
    if levels is not None:
        if steps is not None:
            raise InputError("pass steps or levels, not both")
        if not isinstance(levels, Schedule):
            raise InputError(f"levels must be a Schedule (e.g. prior.schedule.spaced(50)), got {type(levels).__name__}")
        return levels
    return grid(prior.schedule, check_positive_int("steps", default_steps if steps is None else steps))


def start(operator: Operator, measurement: Tensor, latent: Tensor | None, rng: BatchRNG, scale: float = 1.0) -> Tensor:
    """The state at the first level: ``latent`` (checked against the operator's signal shape and the batch, cast
    to the measurement's dtype), or fresh noise ``scale * N(0, I)`` from ``rng``."""
    if latent is None:
        return scale * rng.randn(*operator.x_shape, dtype=measurement.dtype).to(measurement.device)
    check_signal_shape("latent", latent, operator.x_shape, type(operator).__name__)
    if not latent.is_floating_point():
        raise InputError(f"latent must be a floating-point tensor, got dtype {latent.dtype}")
    if latent.shape[0] != measurement.shape[0]:
        raise InputError(f"latent has {latent.shape[0]} samples but measurement has {measurement.shape[0]}")
    return latent.detach().to(measurement.device, measurement.dtype)


def run(
    step: StepFn,
    x: Tensor,
    levels: Schedule | Sequence[Level],
    net: Denoiser,
    operator: Operator | None,
    measurement: Tensor | None,
    *,
    callback: Callback | None = None,
    progress: bool = False,
    desc: str = "sampling",
) -> SampleResult:
    """The loop: ``x = step(x, level).x`` for every transition of ``levels``, most noisy first (or for each
    :class:`~reguidance.diffusion.Level` of a sequence, in its order: the inversion walks a chain upwards).

    The per-sample residual ``||y - A x0_hat||`` of each step is recorded (nothing for unconditional sampling,
    ``operator = None``). ``progress`` shows a bar of steps done out of the chain's length with the elapsed time
    and an ETA. Returns the final state, the network
    evaluations ``net`` counted, and the per-step record.
    """
    timesteps: list[int] = []
    residuals: list[Tensor] = []
    stopped = False
    chain = levels.levels() if isinstance(levels, Schedule) else list(levels)
    # step/total, elapsed and ETA (tqdm's remaining time, from the mean step time so far)
    for level in tqdm(chain, total=len(chain), disable=not progress, desc=desc, leave=False, unit="step"):
        x, x0 = step(x, level)
        r = x0.new_zeros(0)
        if operator is not None and measurement is not None:
            with torch.no_grad():
                r = operator.residual_norm(x0.detach(), measurement)
            residuals.append(r)
        timesteps.append(level.t)
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"{desc}: the state holds NaN or Inf after the step at t={level.t}; the step size is likely too large"
            )
        if callback is not None and callback(StepInfo(level=level, x=x, x0=x0, residual=r)) is True:
            stopped = True
            break
    stack = torch.stack(residuals) if residuals else x.new_zeros(0, x.shape[0])
    return SampleResult(x=x.detach(), nfe=net.nfe, timesteps=timesteps, residuals=stack, stopped=stopped)
