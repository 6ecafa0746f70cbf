r"""ReGuidance (Karan, Shah, Chen, arXiv 2506.10955): candidate -> probability-flow ODE inversion -> DPS.

Given a candidate ``x_hat`` from any solver (DAPS, DiffPIR, a pseudo-inverse, a user's own outputs), a measurement
``y = A(x) + sigma_y n`` and an unconditional prior:

1. invert the unconditional probability-flow ODE from ``x_hat`` to a latent at level ``t_end``
   (:func:`reguidance.inversion.invert`, ``inversion_steps`` levels);
2. run DPS from that latent instead of fresh noise (:func:`reguidance.guidance.dps.dps`, ``dps_steps`` levels of the
   same chain, ending at the data).

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
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from .conventions import BatchRNG, InputError, check_finite, check_nonnegative, check_positive_int, check_signal_shape
from .guidance.core import Callback
from .guidance.dps import Sampler, dps
from .inversion import InversionMethod, invert

if TYPE_CHECKING:
    from .operators import Operator
    from .priors.base import Prior

Start = Literal["inversion", "renoise", "fresh"]

__all__ = ["ReGuidanceConfig", "ReGuidanceResult", "reguide", "reward"]


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
    callback: Callback | None = None,
    progress: bool = False,
    **options: Any,
) -> ReGuidanceResult:
    """Wrap a solver's ``candidate`` (B, *prior.signal_shape), in [-1, 1] for images, with ReGuidance.

    ``measurement`` (B, *operator.y_shape) is ``y``; options are those of :class:`ReGuidanceConfig`, given as a
    ``config`` or as keywords. Randomness: ``rng`` (one generator per sample), or one derived from ``seed`` and each
    sample's id in ``ids`` (default ``0 .. B - 1``): give the images' own ids so that an image's result does not
    depend on its position in the batch. ``callback`` sees every DPS step (:class:`reguidance.guidance.StepInfo`).
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
    if not isinstance(candidate, Tensor) or not candidate.is_floating_point():
        got = candidate.dtype if isinstance(candidate, Tensor) else type(candidate).__name__
        raise InputError(f"candidate must be a floating-point tensor in [-1, 1], got {got}")
    shape = tuple(prior.signal_shape)
    if tuple(operator.x_shape) != shape:
        raise InputError(f"operator acts on signals of shape {tuple(operator.x_shape)} but the prior's are {shape}")
    check_signal_shape("candidate", candidate, shape, "the prior")
    check_signal_shape("measurement", measurement, operator.y_shape, "the operator")
    if candidate.shape[0] != measurement.shape[0]:
        raise InputError(f"candidate has {candidate.shape[0]} samples but measurement has {measurement.shape[0]}")
    if rng is None:
        if ids is not None and len(ids) != candidate.shape[0]:
            raise InputError(f"ids has {len(ids)} entries but candidate has {candidate.shape[0]} samples")
        rng = BatchRNG.from_seed(seed, list(ids) if ids is not None else candidate.shape[0], device=candidate.device)
    elif ids is not None:
        raise InputError("pass rng or ids, not both")

    start = time.perf_counter()
    base = prior.schedule
    levels = base.spaced(cfg.dps_steps, cfg.t_end)
    nfe_inversion = 0
    if cfg.start == "inversion":
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
    out = dps(
        prior,
        operator,
        measurement,
        levels=levels,
        step_size=cfg.step_size,
        sampler=cfg.sampler,
        eta=cfg.eta,
        latent=latent,
        rng=rng,
        clip=cfg.clip,
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
