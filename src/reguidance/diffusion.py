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

Schedules are stored in float64 and cast to the batch's dtype when used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from .conventions import BatchRNG, check_positive_int

Variance = Literal["fixed_small", "fixed_large", "learned_range"]

__all__ = [
    "EpsModel",
    "Schedule",
    "Variance",
    "chain_index",
    "ddim_step",
    "ddpm_step",
    "denoise",
    "eps_from_x0",
    "p_mean_variance",
    "sample",
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

    def spaced(self, num_steps: int, t_end: float = 1.0) -> Schedule:
        """``num_steps`` levels evenly spaced from index 0 to ``round(t_end * (N - 1))``, both included.

        With ``t_end = 1`` this is guided-diffusion's ``space_timesteps(N, [num_steps])``. ``t_end`` in (0, 1] is
        the fraction of the chain kept: the most noisy level is ``alphas_cumprod[round(t_end * (N - 1))]``.
        """
        check_positive_int("num_steps", num_steps)
        if not (isinstance(t_end, (int, float)) and 0 < t_end <= 1):
            raise ValueError(f"t_end must lie in (0, 1], got {t_end!r}")
        last = round(t_end * (len(self) - 1))
        if num_steps > last + 1:
            raise ValueError(f"num_steps={num_steps} exceeds the {last + 1} levels available up to t_end={t_end}")
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

    def sigmas(self) -> Tensor:
        """Noise-to-signal ratios ``sqrt((1 - ab) / ab)`` (the variance-exploding time of each level)."""
        return torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)

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

    @cached_property
    def _alphas_cumprod_with_data(self) -> Tensor:
        return torch.cat([self.alphas_cumprod, self.alphas_cumprod.new_ones(1)])  # index -1 -> 1 (the data)

    def alpha_bar(self, i: Tensor, x: Tensor) -> Tensor:
        """``alpha_bar`` at chain indices ``i`` (B,), with ``i = -1`` the data (1), shaped to broadcast on x."""
        return self.gather(self._alphas_cumprod_with_data, i, x)


# ------------------------------------------------------------------------------------------------- Tweedie
def x0_from_eps(x_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """Tweedie's posterior mean ``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``; ``alpha_bar`` broadcasts on ``x_t``."""
    return (x_t - torch.sqrt(1 - alpha_bar) * eps) / torch.sqrt(alpha_bar)


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: Tensor) -> Tensor:
    """The noise that maps ``x0`` to ``x_t``: ``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""
    return (x_t - torch.sqrt(alpha_bar) * x0) / torch.sqrt(1 - alpha_bar)


# ---------------------------------------------------------------------------------------------------- steps
def ddim_step(
    x0: Tensor,
    eps: Tensor,
    alpha_bar_next: Tensor,
    alpha_bar: Tensor,
    eta: float = 0.0,
    rng: BatchRNG | None = None,
) -> Tensor:
    """One DDIM step from level ``alpha_bar`` to the less noisy ``alpha_bar_next`` given ``(x0_hat, eps)``.

    ``alpha_bar_next = 1`` lands on the data (returns ``x0``). ``eta > 0`` needs ``rng``.
    """
    if eta == 0:
        return torch.sqrt(alpha_bar_next) * x0 + torch.sqrt(1 - alpha_bar_next) * eps
    if rng is None:
        raise ValueError("eta > 0 needs an rng for the fresh noise")
    sigma = eta * torch.sqrt((1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next))
    direction = torch.sqrt((1 - alpha_bar_next - sigma**2).clamp(min=0)) * eps
    return torch.sqrt(alpha_bar_next) * x0 + direction + sigma * rng.randn_like(x0)


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
    before the mean is formed. Returns ``mean``, ``variance``, ``log_variance`` (shaped like ``x_t`` or
    broadcastable) and ``pred_xstart``.
    """
    ab = schedule.gather(schedule.alphas_cumprod, i, x_t)
    ab_prev = schedule.gather(schedule.alphas_cumprod_prev, i, x_t)
    beta = 1 - ab / ab_prev
    x0 = x0_from_eps(x_t, eps, ab)
    if clip:
        x0 = x0.clamp(-1, 1)
    mean = (torch.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (torch.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x_t
    if variance == "learned_range":
        if var_values is None:
            raise ValueError("variance='learned_range' needs the model's var_values")
        min_log = schedule.gather(schedule.posterior_log_variance_clipped, i, x_t)
        max_log = schedule.gather(schedule.log_betas, i, x_t)
        frac = (var_values + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
    elif variance == "fixed_small":
        log_var = schedule.gather(schedule.posterior_log_variance_clipped, i, x_t).expand_as(x_t)
    elif variance == "fixed_large":
        log_var = schedule.gather(schedule.log_variance_fixed_large, i, x_t).expand_as(x_t)
    else:
        raise ValueError(f"variance must be fixed_small, fixed_large or learned_range, got {variance!r}")
    return {"mean": mean, "variance": torch.exp(log_var), "log_variance": log_var, "pred_xstart": x0}


def ddpm_step(out: dict[str, Tensor], i: Tensor, rng: BatchRNG) -> Tensor:
    """Draw ``x_{i-1} ~ N(mean, variance)`` from :func:`p_mean_variance`'s output; no noise where ``i == 0``."""
    mean = out["mean"]
    nonzero = (i != 0).to(mean.dtype).reshape(-1, *([1] * (mean.dim() - 1))).to(mean.device)
    return mean + nonzero * torch.exp(0.5 * out["log_variance"]) * rng.randn_like(mean)


# ------------------------------------------------------------------------------------------------- samplers
class EpsModel(Protocol):
    """What the samplers need of a prior: ``predict(x_t, t) -> (eps, var_values | None)`` (see priors.base)."""

    variance: Variance

    def predict(self, x_t: Tensor, t: Tensor) -> Any: ...


def chain_index(i: int, x: Tensor) -> Tensor:
    """A (B,) int64 tensor filled with chain index ``i`` on ``x``'s device."""
    return torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)


def denoise(prior: EpsModel, schedule: Schedule, x_t: Tensor, i: Tensor) -> tuple[Any, Tensor]:
    """The prior's output at chain indices ``i`` and Tweedie's ``x0_hat``; one network evaluation."""
    out = prior.predict(x_t, schedule.timesteps(i))
    return out, x0_from_eps(x_t, out.eps, schedule.alpha_bar(i, x_t))


def sample(
    prior: EpsModel,
    x_T: Tensor,
    schedule: Schedule,
    *,
    sampler: Literal["ddim", "ddpm"] = "ddim",
    eta: float = 0.0,
    rng: BatchRNG | None = None,
    clip: bool = False,
    progress: bool = False,
) -> Tensor:
    """Unconditional sampling from ``x_T`` at the last level of ``schedule`` down to the data; ``len(schedule)`` NFE.

    ``sampler="ddim"`` with ``eta=0`` integrates the probability-flow ODE (deterministic, the inverse of
    :func:`reguidance.inversion.invert`); ``"ddpm"`` draws ancestral steps with the prior's own variance.
    """
    from tqdm.auto import tqdm

    x = x_T
    with torch.inference_mode():
        for k in tqdm(range(len(schedule) - 1, -1, -1), disable=not progress, desc=f"{sampler} sampling"):
            i = chain_index(k, x)
            out, x0 = denoise(prior, schedule, x, i)
            if clip:
                x0 = x0.clamp(-1, 1)
            if sampler == "ddim":
                eps = eps_from_x0(x, x0, schedule.alpha_bar(i, x)) if clip else out.eps
                x = ddim_step(x0, eps, schedule.alpha_bar(i - 1, x), schedule.alpha_bar(i, x), eta, rng)
            elif sampler == "ddpm":
                if rng is None:
                    raise ValueError("sampler='ddpm' needs an rng")
                pmv = p_mean_variance(schedule, x, i, out.eps, out.var_values, prior.variance, clip)
                x = ddpm_step(pmv, i, rng)
            else:
                raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
    return x
