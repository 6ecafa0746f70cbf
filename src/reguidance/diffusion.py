r"""The discrete variance-preserving diffusion of guided-diffusion (ADM), respacing, Tweedie, DDIM and DDPM steps.

Forward process (``T`` steps, betas ``beta_1..beta_T``, ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``):

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),      t = 0, ..., T - 1 (integer timesteps).

A prior predicts ``eps`` from ``(x_t, t)``; Tweedie's formula gives the posterior mean of the clean signal

    x0_hat(x_t) = (x_t - sqrt(1 - alpha_bar_t) eps(x_t, t)) / sqrt(alpha_bar_t).

A :class:`Schedule` is a chain of ``N`` noise levels: ``alphas_cumprod[i]`` for chain index ``i`` and
``timestep_map[i]``, the original integer timestep handed to the network. Respacing keeps a subset of the
levels (guided-diffusion's ``space_timesteps``); the effective betas are recomputed as
``beta_i = 1 - alpha_bar_i / alpha_bar_{i-1}`` so DDPM steps jump between kept levels exactly. Chain index
``-1`` is the data (``alpha_bar = 1``).

Steps (``t`` the current level, ``s`` the next, less noisy one; all coefficients per sample):

- DDIM (Song et al. 2021): ``x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps + sigma z`` with
  ``sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)``; ``eta = 0`` is the probability-flow ODE
  discretised (deterministic), ``eta = 1`` matches DDPM's posterior variance.
- DDPM ancestral (Ho et al. 2020): ``x_s ~ N(mu(x_t, x0_hat), v)`` with the posterior mean of ``q(x_s | x_t, x_0)``
  and variance ``fixed_small`` (the posterior variance), ``fixed_large`` (beta) or ``learned_range``
  (``log v = f log beta + (1 - f) log beta_tilde`` with ``f = (v_model + 1) / 2``; Nichol & Dhariwal 2021).

A reverse chain is data: :meth:`Schedule.levels` lists its transitions (:class:`Level`, most noisy first, with
float64 ``alpha_bar`` values) and :class:`Denoiser` turns a prior into ``(x_t, level) -> (eps, x0_hat)`` while
counting network evaluations. The guided samplers (:mod:`reguidance.guidance`) are loops over these.

Schedules are stored in float64; every step coefficient is formed in float64 and cast to the batch's dtype once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from .conventions import BatchRNG, InputError, check_positive_int

Variance = Literal["fixed_small", "fixed_large", "learned_range"]

__all__ = [
    "CHAIN_LENGTH",
    "Denoised",
    "Denoiser",
    "EpsModel",
    "Level",
    "Schedule",
    "Variance",
    "chain_index",
    "chain_levels",
    "check_levels",
    "ddim_step",
    "ddpm_step",
    "eps_from_x0",
    "p_mean_variance",
    "x0_from_eps",
]


@dataclass(frozen=True, eq=False)
class Schedule:
    """A chain of noise levels: ``alphas_cumprod`` (N,) float64 decreasing, ``timestep_map`` (N,) int64."""

    alphas_cumprod: Tensor
    timestep_map: Tensor

    def __post_init__(self) -> None:
        ab = self.alphas_cumprod
        if ab.dim() != 1 or ab.numel() < 1:
            raise ValueError("alphas_cumprod must be a non-empty 1-D tensor")
        if not bool(((ab > 0) & (ab < 1)).all()):
            raise ValueError("alphas_cumprod must lie strictly between 0 and 1")
        if ab.numel() > 1 and not bool((ab[1:] < ab[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        if self.timestep_map.shape != ab.shape:
            raise ValueError("timestep_map must have the same length as alphas_cumprod")

    # ----------------------------------------------------------------------------------------------- builders
    @classmethod
    def from_betas(cls, betas: Tensor) -> Schedule:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        ab = torch.cumprod(1.0 - betas, dim=0)
        return cls(ab, torch.arange(len(betas), dtype=torch.int64))

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
        """guided-diffusion's linear schedule; the end points scale by ``1000 / num_timesteps``."""
        check_positive_int("num_timesteps", num_timesteps)
        scale = 1000 / num_timesteps
        return cls.from_betas(torch.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
        """Nichol & Dhariwal's cosine schedule, ``alpha_bar(u) = cos^2((u + s) / (1 + s) pi / 2)``."""
        check_positive_int("num_timesteps", num_timesteps)

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta) for i in range(num_timesteps)]
        return cls.from_betas(torch.tensor(betas, dtype=torch.float64))

    @classmethod
    def named(cls, name: str, num_timesteps: int = 1000) -> Schedule:
        if name == "linear":
            return cls.linear(num_timesteps)
        if name == "cosine":
            return cls.cosine(num_timesteps)
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {name!r}")

    # ---------------------------------------------------------------------------------------------- respacing
    def respace(self, indices: Sequence[int] | Tensor) -> Schedule:
        """Keep the chain indices ``indices`` (strictly increasing), as guided-diffusion's ``SpacedDiffusion``."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if idx.dim() != 1 or idx.numel() < 1:
            raise ValueError("indices must be a non-empty 1-D sequence")
        if int(idx.min()) < 0 or int(idx.max()) >= len(self):
            raise ValueError(f"indices must lie in [0, {len(self) - 1}], got {idx.tolist()[:8]}...")
        if idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()):
            raise ValueError("indices must be strictly increasing")
        return Schedule(self.alphas_cumprod[idx].clone(), self.timestep_map[idx].clone())

    def levels_up_to(self, t_end: float = 1.0) -> int:
        """How many levels the chain has from index 0 to ``round(t_end * (N - 1))``, both included: the most
        steps :meth:`spaced` can take to ``t_end`` in (0, 1] (``InputError`` for another ``t_end``)."""
        if isinstance(t_end, bool) or not (isinstance(t_end, (int, float)) and 0 < t_end <= 1):
            raise InputError(f"t_end must lie in (0, 1], got {t_end!r}")
        return round(t_end * (len(self) - 1)) + 1

    def spaced(self, num_steps: int, t_end: float = 1.0) -> Schedule:
        """``num_steps`` levels evenly spaced from index 0 to ``round(t_end * (N - 1))``, both included.

        With ``t_end = 1`` this is guided-diffusion's ``space_timesteps(N, [num_steps])``. ``t_end`` in (0, 1] is
        the fraction of the chain kept: the most noisy level is ``alphas_cumprod[round(t_end * (N - 1))]``.
        """
        check_positive_int("num_steps", num_steps)
        last = self.levels_up_to(t_end) - 1
        if num_steps > last + 1:
            raise InputError(
                f"num_steps={num_steps} exceeds the {last + 1} levels available up to t_end={t_end} (the chain has "
                f"{len(self)}): at most {last + 1}"
            )
        if num_steps == 1:
            return self.respace([last])
        stride = last / (num_steps - 1)
        return self.respace([round(i * stride) for i in range(num_steps)])

    # ------------------------------------------------------------------------------------- derived quantities
    def __len__(self) -> int:
        return self.alphas_cumprod.numel()

    @cached_property
    def alphas_cumprod_prev(self) -> Tensor:
        """``alpha_bar`` of the next less-noisy level; 1 (the data) before index 0."""
        return torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod[:-1]])

    @cached_property
    def betas(self) -> Tensor:
        return 1.0 - self.alphas_cumprod / self.alphas_cumprod_prev

    @cached_property
    def posterior_variance(self) -> Tensor:
        """Variance of ``q(x_{i-1} | x_i, x_0)``: ``beta_i (1 - ab_{i-1}) / (1 - ab_i)``."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_log_variance_clipped(self) -> Tensor:
        """``log`` of the posterior variance with index 0 (where it is 0) replaced by index 1's value."""
        pv = self.posterior_variance
        if len(pv) == 1:
            return torch.log(self.betas)
        return torch.log(torch.cat([pv[1:2], pv[1:]]))

    @cached_property
    def log_betas(self) -> Tensor:
        return torch.log(self.betas)

    @cached_property
    def log_variance_fixed_large(self) -> Tensor:
        """``log beta`` with index 0 replaced by the posterior variance of index 1 (guided-diffusion's choice)."""
        large = self.betas.clone()
        if len(large) > 1:
            large[0] = self.posterior_variance[1]
        return torch.log(large)

    @cached_property
    def sqrt_recip_alphas_cumprod(self) -> Tensor:
        return torch.sqrt(1.0 / self.alphas_cumprod)

    @cached_property
    def sqrt_recipm1_alphas_cumprod(self) -> Tensor:
        return torch.sqrt(1.0 / self.alphas_cumprod - 1.0)

    @cached_property
    def posterior_mean_coef1(self) -> Tensor:
        """The weight of ``x0`` in the mean of ``q(x_{i-1} | x_i, x0)``: ``sqrt(ab_{i-1}) beta_i / (1 - ab_i)``."""
        return torch.sqrt(self.alphas_cumprod_prev) * self.betas / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef2(self) -> Tensor:
        """The weight of ``x_i``: ``sqrt(1 - beta_i) (1 - ab_{i-1}) / (1 - ab_i)``."""
        return torch.sqrt(1.0 - self.betas) * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    def levels(self) -> list[Level]:
        """The transitions of this chain, most noisy first (:func:`chain_levels`)."""
        return chain_levels(self)

    def sigmas(self) -> Tensor:
        """Noise-to-signal ratios ``sqrt((1 - ab) / ab)`` (the variance-exploding time of each level)."""
        return torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)

    @cached_property
    def _log_sigmas(self) -> Tensor:
        return self.sigmas().log()

    def nearest(self, sigma: float) -> int:
        """The chain index whose noise-to-signal ratio is nearest to ``sigma > 0`` in ``log sigma``.

        How a continuous-time level (EDM's, DAPS's, a deepinv denoiser's ``sigma``) is snapped to this discrete chain,
        as EDM's ``round_sigma`` does for discrete-time models: nearest in log scale, because the levels are spread
        geometrically (a linear-sigma rule would snap every small sigma towards the data).
        """
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        return int((self._log_sigmas - math.log(sigma)).abs().argmin())

    def _on(self, values: Tensor, device: torch.device) -> Tensor:
        """``values`` on ``device``, copied once and cached: sampling loops never copy host to device per step.

        Keyed by identity, so pass the schedule's own (cached) tensors, never freshly computed ones."""
        cache: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = self.__dict__.setdefault("_device_cache", {})
        key = (id(values), device)
        hit = cache.get(key)
        if hit is None or hit[0] is not values:
            hit = (values, values.to(device))
            cache[key] = hit
        return hit[1]

    def timesteps(self, i: Tensor) -> Tensor:
        """The network's integer timesteps for chain indices ``i`` (B,)."""
        return self._on(self.timestep_map, i.device)[i]

    def gather(self, values: Tensor, i: Tensor, x: Tensor) -> Tensor:
        """``values[i]`` as a ``(B, 1, ..., 1)`` tensor broadcastable against ``x``, in ``x``'s dtype.

        ``i == -1`` means the data level, where ``alpha_bar = 1``; callers pass only ``alphas_cumprod`` then.
        """
        v = self._on(values, x.device)[i.to(x.device)]
        return v.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


# -------------------------------------------------------------------------------------------------- levels
@dataclass(frozen=True)
class Level:
    """One transition of a reverse chain: from chain index ``index`` (network timestep ``t``, ``alpha_bar``) to the
    next, less noisy level (``t_next``, ``alpha_bar_next``); ``t_next = -1`` and ``alpha_bar_next = 1`` is the data.

    The ``alpha_bar`` values are float64 Python numbers, so every coefficient a step forms from them
    (``1 - alpha_bar``, ``alpha_bar / alpha_bar_next``, square roots) is computed in float64 and rounded once when it
    multiplies a tensor; ``step`` counts transitions from 0 (the most noisy one).
    """

    step: int
    index: int
    t: int
    alpha_bar: float
    t_next: int
    alpha_bar_next: float

    @property
    def sigma(self) -> float:
        """The variance-exploding noise level ``sqrt((1 - ab) / ab)`` of the current level."""
        return math.sqrt((1.0 - self.alpha_bar) / self.alpha_bar)

    @property
    def sigma_next(self) -> float:
        """``sqrt((1 - ab_next) / ab_next)``; 0 at the data."""
        return math.sqrt((1.0 - self.alpha_bar_next) / self.alpha_bar_next)

    @property
    def is_last(self) -> bool:
        """Whether this transition lands on the data."""
        return self.t_next < 0


def chain_levels(schedule: Schedule) -> list[Level]:
    """The transitions of ``schedule`` from its most noisy level (index ``N - 1``) down to the data."""
    ab = schedule.alphas_cumprod.tolist()
    ts = schedule.timestep_map.tolist()
    n = len(ab)
    return [
        Level(
            step=n - 1 - k,
            index=k,
            t=int(ts[k]),
            alpha_bar=float(ab[k]),
            t_next=int(ts[k - 1]) if k > 0 else -1,
            alpha_bar_next=float(ab[k - 1]) if k > 0 else 1.0,
        )
        for k in range(n - 1, -1, -1)
    ]


# ------------------------------------------------------------------------------------------------- Tweedie
def _sqrt(v: Tensor | float) -> Tensor | float:
    return torch.sqrt(v) if isinstance(v, Tensor) else math.sqrt(v)


def x0_from_eps(x_t: Tensor, eps: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """Tweedie's posterior mean ``sqrt(1 / ab) x_t - sqrt(1 / ab - 1) eps`` (guided-diffusion's form).

    ``alpha_bar`` is a float64 number (exact coefficients) or a tensor broadcasting on ``x_t``.
    """
    return _sqrt(1 / alpha_bar) * x_t - _sqrt(1 / alpha_bar - 1) * eps


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """The noise that maps ``x0`` to ``x_t``: ``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""
    return (x_t - _sqrt(alpha_bar) * x0) / _sqrt(1 - alpha_bar)


# ---------------------------------------------------------------------------------------------------- steps
def ddim_step(
    x0: Tensor,
    eps: Tensor,
    alpha_bar: Tensor | float,
    alpha_bar_next: Tensor | float,
    eta: float = 0.0,
    rng: BatchRNG | None = None,
) -> Tensor:
    """One DDIM step from the current level ``alpha_bar`` to the less noisy ``alpha_bar_next``, given
    ``(x0_hat, eps)``: ``sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z``.

    ``alpha_bar_next = 1`` lands on the data (returns ``x0``). ``eta > 0`` needs ``rng``. Pass float64 numbers
    (a :class:`Level`'s) for exact coefficients.
    """
    if eta == 0:
        return _sqrt(alpha_bar_next) * x0 + _sqrt(1 - alpha_bar_next) * eps
    if rng is None:
        raise ValueError("eta > 0 needs an rng for the fresh noise")
    var = eta**2 * (1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next)
    rest = 1 - alpha_bar_next - var
    rest = rest.clamp(min=0) if isinstance(rest, Tensor) else max(rest, 0.0)
    return _sqrt(alpha_bar_next) * x0 + _sqrt(rest) * eps + _sqrt(var) * rng.randn_like(x0)


def p_mean_variance(
    schedule: Schedule,
    x_t: Tensor,
    i: Tensor,
    eps: Tensor,
    var_values: Tensor | None = None,
    variance: Variance = "fixed_small",
    clip: bool = False,
) -> dict[str, Tensor]:
    """Mean and variance of the DDPM reverse step ``p(x_{i-1} | x_i)``, as guided-diffusion computes them.

    ``i`` (B,) holds chain indices into ``schedule``; ``var_values`` in [-1, 1] (shaped like ``x_t``) are the
    model's extra output channels, required by ``variance="learned_range"``. ``clip`` clamps ``x0_hat`` to [-1, 1]
    before the mean is formed. Every coefficient is formed in float64 from the schedule and rounded once to
    ``x_t``'s dtype. Returns ``mean``, ``variance``, ``log_variance`` (shaped like ``x_t`` or broadcastable) and
    ``pred_xstart``.
    """
    coef = schedule.gather
    x0 = (
        coef(schedule.sqrt_recip_alphas_cumprod, i, x_t) * x_t
        - coef(schedule.sqrt_recipm1_alphas_cumprod, i, x_t) * eps
    )
    if clip:
        x0 = x0.clamp(-1, 1)
    mean = coef(schedule.posterior_mean_coef1, i, x_t) * x0 + coef(schedule.posterior_mean_coef2, i, x_t) * x_t
    if variance == "learned_range":
        if var_values is None:
            raise ValueError("variance='learned_range' needs the model's var_values")
        min_log = coef(schedule.posterior_log_variance_clipped, i, x_t)
        max_log = coef(schedule.log_betas, i, x_t)
        frac = (var_values + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
    elif variance == "fixed_small":
        log_var = coef(schedule.posterior_log_variance_clipped, i, x_t).expand_as(x_t)
    elif variance == "fixed_large":
        log_var = coef(schedule.log_variance_fixed_large, i, x_t).expand_as(x_t)
    else:
        raise ValueError(f"variance must be fixed_small, fixed_large or learned_range, got {variance!r}")
    return {"mean": mean, "variance": torch.exp(log_var), "log_variance": log_var, "pred_xstart": x0}


def ddpm_step(out: dict[str, Tensor], i: Tensor, rng: BatchRNG) -> Tensor:
    """Draw ``x_{i-1} ~ N(mean, variance)`` from :func:`p_mean_variance`'s output; no noise where ``i == 0``."""
    mean = out["mean"]
    nonzero = (i != 0).to(mean.dtype).reshape(-1, *([1] * (mean.dim() - 1))).to(mean.device)
    return mean + nonzero * torch.exp(0.5 * out["log_variance"]) * rng.randn_like(mean)


# ------------------------------------------------------------------------------------------------- the prior
class EpsModel(Protocol):
    """What the samplers need of a prior: ``predict(x_t, t) -> (eps, var_values | None)`` (see priors.base)."""

    variance: Variance
    schedule: Schedule
    signal_shape: tuple[int, ...]

    def predict(self, x_t: Tensor, t: Tensor) -> Any: ...


def chain_index(i: int, x: Tensor) -> Tensor:
    """A (B,) int64 tensor filled with chain index ``i`` on ``x``'s device."""
    return torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)


@dataclass
class Denoised:
    """The prior's answer at one level: ``eps``, Tweedie's ``x0`` and, for learned-variance models, ``var_values``."""

    eps: Tensor
    x0: Tensor
    var_values: Tensor | None


class Denoiser:
    """The prior as the samplers see it: ``(x_t, t, alpha_bar) -> (eps, x0_hat)``, counting network evaluations.

    ``nfe`` counts calls; each call evaluates the network once on the whole batch, so it is also the number of
    network evaluations per sample (a backward pass through a call is not counted separately).
    """

    def __init__(self, prior: EpsModel) -> None:
        self.prior = prior
        self.nfe = 0

    def __call__(self, x_t: Tensor, t: int, alpha_bar: float) -> Denoised:
        """``x_t`` (B, *signal_shape) at network timestep ``t`` whose level has ``alpha_bar`` (a float64 number)."""
        timesteps = torch.full((x_t.shape[0],), int(t), dtype=torch.int64, device=x_t.device)
        out = self.prior.predict(x_t, timesteps)
        self.nfe += 1
        return Denoised(eps=out.eps, x0=x0_from_eps(x_t, out.eps, alpha_bar), var_values=out.var_values)

    def at(self, x_t: Tensor, level: Level) -> Denoised:
        """The prior at the current level of ``level``."""
        return self(x_t, level.t, level.alpha_bar)


#: the number of levels of the published checkpoints' chains and of the embedded priors' (T)
CHAIN_LENGTH = 1000


def check_levels(name: str, steps: int, chain: int = CHAIN_LENGTH, t_end: float = 1.0) -> int:
    """Refuse (``InputError`` starting with ``name``) a step count beyond the levels a spaced schedule can keep:
    ``round(t_end * (chain - 1)) + 1`` (:meth:`Schedule.spaced`), checked before any work."""
    check_positive_int(name, steps)
    if not (isinstance(t_end, (int, float)) and 0 < t_end <= 1):
        return int(steps)  # t_end itself is refused by its own check
    levels = round(t_end * (chain - 1)) + 1
    if steps > levels:
        where = f"the prior's {chain}-level chain" + (f" up to t_end={t_end}" if t_end < 1 else "")
        raise InputError(f"{name} {steps} is more than the {levels} levels of {where}; use at most {levels}")
    return int(steps)
