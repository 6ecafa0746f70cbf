r"""ReGuidance (Karan, Shah, Chen, arXiv 2506.10955): candidate -> probability-flow ODE inversion -> DPS.

Given a candidate ``x_hat`` from any solver (DAPS, DiffPIR, a pseudo-inverse, a user's own outputs), a measurement
``y = A(x) + sigma_y n`` and an unconditional prior:

1. invert the unconditional probability-flow ODE from ``x_hat`` to a latent at level ``t_end``
   (:func:`reguidance.inversion.invert`, ``inversion_steps`` levels);
2. run DPS from that latent instead of fresh noise (:class:`reguidance.guidance.dps.DPS` run by
   :func:`reguidance.guidance.solve.solve`, ``dps_steps`` levels of the same chain, ending at the data).

The latent keeps the candidate's coarse content (for a candidate near the data manifold the ODE maps it back to
itself), while DPS's guided steps pull it towards the measurement along the manifold. The paper proves, for
Gaussian-mixture data and linear measurements, that this raises the reward ``-||y - A x||^2`` and moves the
candidate towards the data manifold; ``reguidance theory`` measures it.

Defaults, chosen on the Gaussian-mixture testbed by ``reguidance theory-sweep`` (README, "Choosing the defaults"):
inversion to 30% of the chain (``t_end = 0.3``) with Euler (classic DDIM) steps, then DPS with DDPM ancestral
steps and ``step_size = 0.2`` (DPS's zeta). Full-depth inversion followed by stochastic steps washes the candidate
out (the reward falls); deterministic DDIM steps keep more of it but leave the result further from the manifold.
``step_size`` is on the measurement's scale: tune it per task (the image benchmark stores its own per-task values).

Randomness is per sample: sample ``i`` of a batch draws from the generator derived from ``(seed, ids[i])``, so an
image gives the same restoration alone or in any batch (up to the floating-point effects of batching; see the
README's "Reproducibility").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from .conventions import (
    BatchRNG,
    InputError,
    check_finite,
    check_image_scale,
    check_nonnegative,
    check_positive_int,
    check_signal_shape,
)
from .guidance.core import Callback, check_device, check_operator, check_prior
from .guidance.dps import DPS, Sampler
from .guidance.solve import Problem, solve
from .inversion import InversionMethod, invert

if TYPE_CHECKING:
    from .operators import Operator
    from .priors.base import Prior

Start = Literal["inversion", "renoise", "fresh"]

__all__ = ["ReGuidanceConfig", "ReGuidanceResult", "Spread", "adaptive_depth", "reguide", "reward", "spread"]


@dataclass(frozen=True)
class ReGuidanceConfig:
    """The wrapper's options. ``t_end`` in (0, 1] is the inversion depth as a fraction of the prior's chain.

    ``start`` chooses the latent DPS starts from, at level ``t_end``: ``"inversion"`` (ReGuidance: the
    probability-flow ODE run backwards from the candidate), or the two ablations that tell where its gains come
    from: ``"renoise"`` (the candidate forward-noised, ``sqrt(ab) x_hat + sqrt(1 - ab) n``: SDEdit followed by DPS)
    and ``"fresh"`` (fresh noise ``n ~ N(0, I)``, DPS's own start, at that level: DPS over the same final levels
    with no candidate at all). The ablations spend no inversion evaluations.
    """

    inversion_steps: int = 100
    t_end: float = 0.3
    inversion_method: InversionMethod = "euler"
    start: Start = "inversion"
    dps_steps: int = 100
    step_size: float = 0.2
    sampler: Sampler = "ddpm"
    eta: float = 0.0
    clip: bool = False

    def __post_init__(self) -> None:
        check_positive_int("inversion_steps", self.inversion_steps)
        check_positive_int("dps_steps", self.dps_steps)
        check_nonnegative("step_size", self.step_size)
        check_nonnegative("eta", self.eta)
        if not (isinstance(self.t_end, (int, float)) and 0 < self.t_end <= 1):
            raise InputError(f"t_end must lie in (0, 1], got {self.t_end!r}")
        if self.inversion_method not in ("euler", "heun", "fixed_point"):
            raise InputError(
                f"inversion_method must be 'euler', 'heun' or 'fixed_point', got {self.inversion_method!r}"
            )
        if self.start not in ("inversion", "renoise", "fresh"):
            raise InputError(f"start must be 'inversion', 'renoise' or 'fresh', got {self.start!r}")
        if self.sampler not in ("ddpm", "ddim"):
            raise InputError(f"sampler must be 'ddpm' or 'ddim', got {self.sampler!r}")

    def dps(self) -> DPS:
        """The DPS that runs from the latent (its chain, ``dps_steps`` levels down from ``t_end``, is the
        wrapper's: :func:`reguide` passes it as ``levels``)."""
        return DPS(step_size=self.step_size, sampler=self.sampler, eta=self.eta, clip=self.clip)


@dataclass
class ReGuidanceResult:
    """``x`` (B, *signal_shape) the restorations, the ``latent`` they started from, and diagnostics."""

    x: Tensor
    latent: Tensor
    reward_before: Tensor  # (B,) -||y - A x_hat||^2 of the candidate
    reward_after: Tensor  # (B,) -||y - A x||^2 of the restoration
    nfe: int  # network evaluations per sample: inversion (forward only) + DPS (forward and backward)
    nfe_inversion: int
    seconds: float
    config: ReGuidanceConfig = field(default_factory=ReGuidanceConfig)


def reward(operator: Operator, x: Tensor, measurement: Tensor) -> Tensor:
    """Per-sample reward ``-||y - A x||^2`` (B,), the quantity the paper's theorem says ReGuidance raises."""
    return -operator.residual_norm(x, measurement).pow(2)


def reguide(
    candidate: Tensor,
    measurement: Tensor,
    operator: Operator,
    prior: Prior,
    *,
    config: ReGuidanceConfig | None = None,
    rng: BatchRNG | None = None,
    seed: int = 0,
    ids: Sequence[int] | None = None,
    latent: Tensor | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    **options: Any,
) -> ReGuidanceResult:
    """Wrap a solver's ``candidate`` (B, *prior.signal_shape), in [-1, 1] for images, with ReGuidance.

    ``measurement`` (B, *operator.y_shape) is ``y``; options are those of :class:`ReGuidanceConfig`, given as a
    ``config`` or as keywords. Randomness: ``rng`` (one generator per sample), or one derived from ``seed`` and each
    sample's id in ``ids`` (default ``0 .. B - 1``): give the images' own ids so that an image's result does not
    depend on its position in the batch. ``latent`` (B, *signal_shape), a state at level ``t_end`` made earlier
    (e.g. ``reguide(...).latent``), skips the start step: DPS runs from it (no inversion evaluations are counted).
    ``callback`` sees every DPS step (:class:`reguidance.guidance.StepInfo`).
    """
    if config is not None and options:
        raise InputError("pass either config or keyword options, not both")
    if config is None:
        known = {f.name for f in fields(ReGuidanceConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(
                f"unknown ReGuidance option(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
            )
        config = ReGuidanceConfig(**options)
    cfg = config
    check_prior(prior, "ReGuidance", needs=("signal_shape",))  # what the input checks below ask of it
    check_operator(operator, "ReGuidance", linear=False)
    if not isinstance(candidate, Tensor) or not candidate.is_floating_point():
        got = candidate.dtype if isinstance(candidate, Tensor) else type(candidate).__name__
        raise InputError(f"candidate must be a floating-point tensor in [-1, 1], got {got}")
    shape = tuple(prior.signal_shape)
    if tuple(operator.x_shape) != shape:
        raise InputError(f"operator acts on signals of shape {tuple(operator.x_shape)} but the prior's are {shape}")
    check_signal_shape("candidate", candidate, shape, "the prior")
    check_image_scale("candidate", candidate)
    check_signal_shape("measurement", measurement, operator.y_shape, "the operator")
    if candidate.shape[0] != measurement.shape[0]:
        raise InputError(f"candidate has {candidate.shape[0]} samples but measurement has {measurement.shape[0]}")
    check_prior(prior, "ReGuidance")  # the inputs are right: now what the samplers ask of the prior
    check_device("candidate", candidate, prior)
    if rng is None:
        if ids is not None and len(ids) != candidate.shape[0]:
            raise InputError(f"ids has {len(ids)} entries but candidate has {candidate.shape[0]} samples")
        rng = BatchRNG.from_seed(seed, list(ids) if ids is not None else candidate.shape[0], device=candidate.device)
    elif ids is not None:
        raise InputError("pass rng or ids, not both")

    base = prior.schedule
    available = base.levels_up_to(cfg.t_end)
    for name, steps in (("inversion_steps", cfg.inversion_steps), ("dps_steps", cfg.dps_steps)):
        if steps > available and (name == "dps_steps" or (latent is None and cfg.start == "inversion")):
            raise InputError(
                f"{name}={steps} exceeds the {available} levels of the prior's {len(base)}-level chain up to "
                f"t_end={cfg.t_end}: at most {available}"
            )
    start = time.perf_counter()
    levels = base.spaced(cfg.dps_steps, cfg.t_end)
    nfe_inversion = 0
    if latent is not None:
        check_signal_shape("latent", latent, shape, "the prior")
        latent = latent.detach().clone()
    elif cfg.start == "inversion":
        inv = invert(
            prior,
            candidate,
            base,
            steps=cfg.inversion_steps,
            t_end=cfg.t_end,
            method=cfg.inversion_method,
            progress=progress,
        )
        latent = inv.latent.clone()  # leave inference mode: DPS differentiates through the network
        nfe_inversion = inv.nfe
    else:
        ab = float(levels.alphas_cumprod[-1])  # the level DPS starts at, where the inversion would end
        noise = rng.randn_like(candidate)
        latent = ab**0.5 * candidate + (1 - ab) ** 0.5 * noise if cfg.start == "renoise" else noise
    out = solve(
        cfg.dps(),
        Problem(prior, operator, measurement, rng),
        levels=levels,
        latent=latent,
        callback=callback,
        progress=progress,
    )
    if candidate.device.type == "cuda":
        torch.cuda.synchronize(candidate.device)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        before = reward(operator, candidate, measurement)
        after = reward(operator, check_finite("restoration", out.x), measurement)
    return ReGuidanceResult(
        x=out.x,
        latent=latent,
        reward_before=before,
        reward_after=after,
        nfe=nfe_inversion + out.nfe,
        nfe_inversion=nfe_inversion,
        seconds=seconds,
        config=cfg,
    )


@dataclass
class Spread:
    """``k`` restorations of each candidate from one latent: ``samples`` (k, B, *signal_shape), their per-pixel
    ``mean`` and ``std`` (B, *signal_shape; ``std`` with Bessel's correction), and the shared ``latent``."""

    samples: Tensor
    mean: Tensor
    std: Tensor
    latent: Tensor
    nfe: int


def spread(
    candidate: Tensor,
    measurement: Tensor,
    operator: Operator,
    prior: Prior,
    *,
    k: int,
    config: ReGuidanceConfig | None = None,
    seed: int = 0,
    ids: Sequence[int] | None = None,
    rngs: Sequence[BatchRNG] | None = None,
) -> Spread:
    """``k >= 2`` ReGuidance restorations per candidate from the *same* latent (the inversion is deterministic and
    runs once); they differ only in DPS's ancestral noise, draw ``j`` of image ``i`` seeded by ``(seed + j, ids[i])``,
    or drawn from ``rngs[j]`` when ``k`` generators are given (draw 0 is then exactly ``reguide(..., rng=rngs[0])``).

    The per-pixel standard deviation is an uncertainty map: where ``y`` pins the image down the draws agree, where
    it does not (a missing box, lost high frequencies) they spread. It is a spread of the sampler, not a calibrated
    posterior: how often the truth lies within it is measured, per task, by ``scripts/beyond_paper.py``.
    """
    check_positive_int("k", k)
    if k < 2:
        raise InputError(f"k must be at least 2 to give a spread, got {k}")
    if rngs is not None and len(rngs) != k:
        raise InputError(f"rngs has {len(rngs)} generators but k is {k}")
    cfg = config or ReGuidanceConfig()

    def draw(j: int, latent: Tensor | None) -> ReGuidanceResult:
        if rngs is not None:
            return reguide(candidate, measurement, operator, prior, config=cfg, rng=rngs[j], latent=latent)
        return reguide(candidate, measurement, operator, prior, config=cfg, seed=seed + j, ids=ids, latent=latent)

    first = draw(0, None)
    draws, nfe = [first.x], first.nfe
    for j in range(1, k):
        out = draw(j, first.latent)
        draws.append(out.x)
        nfe += out.nfe
    samples = torch.stack(draws)
    return Spread(samples, samples.mean(0), samples.std(0), first.latent, nfe)


def adaptive_depth(
    candidate: Tensor,
    measurement: Tensor,
    operator: Operator,
    prior: Prior,
    *,
    depths: Sequence[float],
    config: ReGuidanceConfig | None = None,
    seed: int = 0,
    ids: Sequence[int] | None = None,
) -> tuple[ReGuidanceResult, Tensor]:
    """ReGuidance with ``t_end`` chosen per image from ``depths`` without the truth: each depth runs with
    ``config``'s budget split evenly (``inversion_steps`` and ``dps_steps`` divided by ``len(depths)``, at least 1),
    so the whole costs about one fixed-depth run; each image keeps the restoration whose clamped output has the
    measurement consistency ``||A x - y|| / (sigma_y sqrt(m))`` closest to 1 (it explains ``y`` up to the noise).

    Returns the assembled result (``x`` and ``latent`` per image from its chosen depth, ``nfe`` the total) and the
    chosen depth per image (B,).

    An experiment, measured in BENCHMARK.md ("Beyond the paper", ``scripts/beyond_paper.py``): on the MNIST tasks it
    was no better than the tuned fixed ``t_end`` at the same NFE, and worse on deblurring, so nothing uses it by
    default; it stays so that the measurement can be remade.
    """
    if not depths:
        raise InputError("depths is empty: give at least one t_end")
    cfg = config or ReGuidanceConfig()
    n = len(depths)
    runs = []
    for depth in depths:
        sub = replace(
            cfg,
            t_end=depth,
            inversion_steps=max(1, cfg.inversion_steps // n),
            dps_steps=max(1, cfg.dps_steps // n),
        )
        runs.append(reguide(candidate, measurement, operator, prior, config=sub, seed=seed, ids=ids))
    with torch.no_grad():
        gaps = torch.stack([(operator.consistency(r.x.clamp(-1, 1), measurement) - 1).abs() for r in runs])
    pick = gaps.argmin(0)  # (B,)
    rows = torch.arange(candidate.shape[0], device=pick.device)
    x = torch.stack([r.x for r in runs])[pick, rows]
    latent = torch.stack([r.latent for r in runs])[pick, rows]
    with torch.no_grad():
        after = reward(operator, x, measurement)
    result = ReGuidanceResult(
        x=x,
        latent=latent,
        reward_before=runs[0].reward_before,
        reward_after=after,
        nfe=sum(r.nfe for r in runs),
        nfe_inversion=sum(r.nfe_inversion for r in runs),
        seconds=sum(r.seconds for r in runs),
        config=cfg,
    )
    return result, torch.tensor([float(depths[int(i)]) for i in pick])
