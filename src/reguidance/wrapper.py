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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_type_hints

import torch
from torch import Tensor

from .conventions import (
    BatchRNG,
    InputError,
    check_finite,
    check_image_scale,
    check_positive_int,
    check_signal_shape,
)
from .diffusion import Schedule
from .guidance.core import Callback, Cost, SampleResult, check_device, check_operator, check_prior
from .guidance.dps import DPS
from .guidance.solve import Method, Problem, option_names, solve
from .inversion import EVALUATIONS_PER_STEP, InversionMethod, invert

if TYPE_CHECKING:
    from .operators import Operator
    from .priors.base import Prior

Start = Literal["inversion", "renoise", "fresh"]

__all__ = [
    "ReGuidance",
    "ReGuidanceResult",
    "Spread",
    "adaptive_depth",
    "check_candidate",
    "reguide",
    "reward",
    "spread",
]


#: the flat name of the DPS's ``steps`` among the wrapper's options; every other DPS field keeps its own name
DPS_STEPS = "dps_steps"


def _dps_options() -> dict[str, str]:
    """The wrapper's flat option names of the fields of the DPS it runs: ``steps`` is ``dps_steps``, every other DPS
    option keeps its name (``step_size``, ``sampler``, ...), so a new DPS option is a new wrapper option."""
    return {(DPS_STEPS if name == "steps" else name): name for name in option_names(DPS)}


@dataclass(frozen=True)
class ReGuidance(Method):
    """ReGuidance as a method: it wraps a *candidate* (``solve(ReGuidance(), problem, candidate=x_hat)``).

    ``t_end`` in (0, 1] is the inversion depth as a fraction of the prior's chain; ``inversion_steps`` levels of
    the probability-flow ODE (``inversion_method``) take the candidate there; ``dps`` is the DPS that runs from the
    latent down to the data (its ``steps`` levels of the same chain below ``t_end``).

    ``start`` chooses the latent DPS starts from, at level ``t_end``: ``"inversion"`` (ReGuidance: the
    probability-flow ODE run backwards from the candidate), or the two ablations that tell where its gains come
    from: ``"renoise"`` (the candidate forward-noised, ``sqrt(ab) x_hat + sqrt(1 - ab) n``: SDEdit followed by DPS)
    and ``"fresh"`` (fresh noise ``n ~ N(0, I)``, DPS's own start, at that level: DPS over the same final levels
    with no candidate at all). The ablations spend no inversion evaluations.

    Serialized flat (:meth:`options`): the wrapper's own fields, then the DPS's, ``steps`` as ``dps_steps`` and every
    other under its own name (``step_size``, ``sampler``, ``eta``, ``clip``); :meth:`from_options` and
    :meth:`replace` take those names, and the command line's flags are made from them (:meth:`option_fields`): a new
    field of :class:`ReGuidance` or of :class:`~reguidance.guidance.DPS` is a new option and flag of the wrapper.
    """

    name: ClassVar[str] = "reguidance"
    label: ClassVar[str] = "ReGuidance"
    takes_candidate: ClassVar[bool] = True
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {"cpu": {"inversion_steps": 10, "dps_steps": 20}}
    image_options: ClassVar[Mapping[str, object]] = {"clip": True}

    inversion_steps: int = field(default=100, metadata={"help": "levels of the ODE inversion (forward passes only)"})
    t_end: float = field(default=0.3, metadata={"help": "inversion depth, a fraction of the prior's chain in (0, 1]"})
    inversion_method: InversionMethod = field(
        default="euler", metadata={"help": "the inversion's ODE step: euler (DDIM), heun or fixed_point"}
    )
    start: Start = field(
        default="inversion",
        metadata={"help": "where DPS starts at t_end: inversion (ReGuidance), renoise (SDEdit) or fresh (noise)"},
    )
    dps: DPS = field(default=DPS(steps=100, step_size=0.2), metadata={"help": "the DPS run from the latent"})

    def check(self) -> None:
        check_positive_int("inversion_steps", self.inversion_steps)
        if self.dps.steps is None:
            raise InputError("the wrapper's DPS needs its number of steps (dps_steps): DPS(steps=..., ...)")
        if not 0 < self.t_end <= 1:
            raise InputError(f"t_end must lie in (0, 1], got {self.t_end!r}")

    @property
    def dps_steps(self) -> int:
        """DPS levels from ``t_end`` down to the data."""
        assert self.dps.steps is not None  # checked when built
        return self.dps.steps

    @property
    def step_size(self) -> float:
        """DPS's step size (zeta)."""
        return self.dps.step_size

    @property
    def clip(self) -> bool:
        return self.dps.clip

    # ------------------------------------------------------------------------------------------- the serializer
    def options(self) -> dict[str, object]:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dps"}
        return {**own, **{flat: getattr(self.dps, name) for flat, name in _dps_options().items()}}

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, data: bool = False) -> ReGuidance:
        flat = _dps_options()
        known = [*(f.name for f in fields(cls) if f.name != "dps"), *flat]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InputError(f"unknown ReGuidance option(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
        if DPS_STEPS in options:  # named as the wrapper's option, not as the DPS's own steps
            check_positive_int(DPS_STEPS, options[DPS_STEPS])
        base = cls()
        dps = {name: options.get(key, getattr(base.dps, name)) for key, name in flat.items()}
        own = {k: v for k, v in options.items() if k not in flat}
        return cls(**own, dps=DPS(**dps))  # type: ignore[arg-type]

    @classmethod
    def option_fields(cls) -> list[tuple[str, object, object, str]]:
        """``(name, type hint, default, meaning)`` of every flat option, in :meth:`options` order: what a command
        line makes its flags from (one declaration, one default)."""
        own_hints, dps_hints = get_type_hints(cls), get_type_hints(DPS)
        default = cls()
        meaning = {f.name: str(f.metadata.get("help", "")) for f in fields(DPS)}
        meaning["steps"] = "DPS levels from t_end down to the data (one forward and one backward pass each)"
        rows = [
            (f.name, own_hints[f.name], getattr(default, f.name), str(f.metadata.get("help", "")))
            for f in fields(cls)
            if f.name != "dps"
        ]
        rows += [
            (key, dps_hints[name], getattr(default.dps, name), meaning[name]) for key, name in _dps_options().items()
        ]
        return rows

    def cost(self) -> Cost:
        """The inversion's forward passes (when it inverts: ``inversion_steps`` times the method's evaluations per
        step, :data:`reguidance.inversion.EVALUATIONS_PER_STEP`) and the DPS's forward passes with their backward
        pass; the candidate's own cost is not included."""
        inversion = (
            self.inversion_steps * EVALUATIONS_PER_STEP[self.inversion_method] if self.start == "inversion" else 0
        )
        return Cost(fwd=inversion) + self.dps.cost()

    # ---------------------------------------------------------------------------------------------------- solving
    def run(
        self,
        problem: Problem,
        *,
        candidate: Tensor | None = None,
        steps: int | None = None,
        levels: Schedule | None = None,
        latent: Tensor | None = None,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> ReGuidanceResult:
        """Invert ``candidate`` to ``t_end`` (or start there as :attr:`start` says), then run :attr:`dps` from the
        latent. ``latent`` (B, *signal_shape), a state at level ``t_end`` made earlier (e.g. a result's
        ``latent``), skips the start step (no inversion evaluations are counted). The chain is the wrapper's:
        ``steps`` and ``levels`` are refused (set ``dps_steps`` / ``inversion_steps``)."""
        if steps is not None or levels is not None:
            raise InputError("ReGuidance sets its own chains: give inversion_steps and dps_steps, not steps or levels")
        prior, operator, measurement, rng = problem.prior, problem.operator, problem.measurement, problem.rng
        check_candidate(candidate, measurement, operator, prior)
        assert candidate is not None  # checked
        shape = tuple(prior.signal_shape)
        base = prior.schedule
        available = base.levels_up_to(self.t_end)
        for name, n in (("inversion_steps", self.inversion_steps), ("dps_steps", self.dps_steps)):
            if n > available and (name == "dps_steps" or (latent is None and self.start == "inversion")):
                raise InputError(
                    f"{name}={n} exceeds the {available} levels of the prior's {len(base)}-level chain up to "
                    f"t_end={self.t_end}: at most {available}"
                )
        began = time.perf_counter()
        chain = base.spaced(self.dps_steps, self.t_end)
        nfe_inversion = 0
        if latent is not None:
            check_signal_shape("latent", latent, shape, "the prior")
            latent = latent.detach().clone()
        elif self.start == "inversion":
            inv = invert(
                prior,
                candidate,
                base,
                steps=self.inversion_steps,
                t_end=self.t_end,
                method=self.inversion_method,
                progress=progress,
            )
            latent = inv.latent.clone()  # leave inference mode: DPS differentiates through the network
            nfe_inversion = inv.nfe
        else:
            ab = float(chain.alphas_cumprod[-1])  # the level DPS starts at, where the inversion would end
            noise = rng.randn_like(candidate)
            latent = ab**0.5 * candidate + (1 - ab) ** 0.5 * noise if self.start == "renoise" else noise
        dps = replace(self.dps, steps=None)  # its chain is the wrapper's: dps_steps levels below t_end
        out = dps.run(problem, levels=chain, latent=latent, callback=callback, progress=progress)
        if candidate.device.type == "cuda":
            torch.cuda.synchronize(candidate.device)
        seconds = time.perf_counter() - began
        with torch.no_grad():
            before = reward(operator, candidate, measurement)
            after = reward(operator, check_finite("restoration", out.x), measurement)
        return ReGuidanceResult(
            x=out.x,
            nfe=nfe_inversion + out.nfe,
            timesteps=out.timesteps,
            residuals=out.residuals,
            stopped=out.stopped,
            latent=latent,
            reward_before=before,
            reward_after=after,
            nfe_inversion=nfe_inversion,
            seconds=seconds,
            config=self,
        )


@dataclass(kw_only=True)
class ReGuidanceResult(SampleResult):
    """What :meth:`ReGuidance.run` returns: a :class:`~reguidance.guidance.SampleResult` (``x`` (B, *signal_shape)
    the restorations, ``nfe`` network evaluations per sample: inversion (forward only) + DPS (forward and backward),
    the DPS steps' ``timesteps`` and ``residuals``) with the ``latent`` DPS started from and diagnostics."""

    latent: Tensor
    reward_before: Tensor  # (B,) -||y - A x_hat||^2 of the candidate
    reward_after: Tensor  # (B,) -||y - A x||^2 of the restoration
    nfe_inversion: int
    seconds: float
    config: ReGuidance


def check_candidate(candidate: object, measurement: Tensor, operator: Operator, prior: object) -> None:
    """Refuse (``InputError`` naming it) a candidate that is not a floating-point ``(B, *signal_shape)`` tensor in
    [-1, 1] on the prior's device with one sample per measurement, or an operator on another signal shape than the
    prior's; only ``prior.signal_shape`` and ``prior.device`` are read, so the inputs are refused before the prior
    is used."""
    if not isinstance(candidate, Tensor) or not candidate.is_floating_point():
        got = candidate.dtype if isinstance(candidate, Tensor) else type(candidate).__name__
        raise InputError(f"candidate must be a floating-point tensor in [-1, 1], got {got}")
    shape = tuple(getattr(prior, "signal_shape", ()))
    if tuple(operator.x_shape) != shape:
        raise InputError(f"operator acts on signals of shape {tuple(operator.x_shape)} but the prior's are {shape}")
    check_signal_shape("candidate", candidate, shape, "the prior")
    check_image_scale("candidate", candidate)
    check_device("candidate", candidate, prior)
    if candidate.shape[0] != measurement.shape[0]:
        raise InputError(f"candidate has {candidate.shape[0]} samples but measurement has {measurement.shape[0]}")


def reward(operator: Operator, x: Tensor, measurement: Tensor) -> Tensor:
    """Per-sample reward ``-||y - A x||^2`` (B,), the quantity the paper's theorem says ReGuidance raises."""
    return -operator.residual_norm(x, measurement).pow(2)


def reguide(
    candidate: Tensor,
    measurement: Tensor,
    operator: Operator,
    prior: Prior,
    *,
    config: ReGuidance | None = None,
    rng: BatchRNG | None = None,
    seed: int = 0,
    ids: Sequence[int] | None = None,
    latent: Tensor | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    **options: Any,
) -> ReGuidanceResult:
    """Wrap a solver's ``candidate`` (B, *prior.signal_shape), in [-1, 1] for images, with ReGuidance: a thin
    convenience for ``solve(config, Problem(prior, operator, measurement, rng), candidate=candidate)``.

    ``measurement`` (B, *operator.y_shape) is ``y``; the wrapper is ``config`` (a :class:`ReGuidance`) or built from
    keyword ``options`` (its flat option names: ``t_end``, ``dps_steps``, ``step_size``, ...). Randomness: ``rng``
    (one generator per sample), or one derived from ``seed`` and each sample's id in ``ids`` (default
    ``0 .. B - 1``): give the images' own ids so that an image's result does not depend on its position in the
    batch. ``latent`` as in :meth:`ReGuidance.run`; ``callback`` sees every DPS step
    (:class:`reguidance.guidance.StepInfo`).
    """
    if config is not None and options:
        raise InputError("pass either config or keyword options, not both")
    check_prior(prior, "ReGuidance", needs=("signal_shape",))  # a None prior is named before anything asks it
    method = config if config is not None else ReGuidance.from_options(options)
    if not isinstance(method, ReGuidance):
        raise InputError(f"config must be a ReGuidance, got {type(method).__name__}")
    check_operator(operator, "ReGuidance", linear=False)
    check_signal_shape("measurement", measurement, operator.y_shape, "the operator")
    check_candidate(candidate, measurement, operator, prior)  # before its device makes generators
    if rng is None:
        if ids is not None and len(ids) != candidate.shape[0]:
            raise InputError(f"ids has {len(ids)} entries but candidate has {candidate.shape[0]} samples")
        rng = BatchRNG.from_seed(seed, list(ids) if ids is not None else candidate.shape[0], device=candidate.device)
    elif ids is not None:
        raise InputError("pass rng or ids, not both")
    out = solve(
        method,
        Problem(prior, operator, measurement, rng),
        candidate=candidate,
        latent=latent,
        callback=callback,
        progress=progress,
    )
    assert isinstance(out, ReGuidanceResult)
    return out


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
    config: ReGuidance | None = None,
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
    cfg = config or ReGuidance()

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
    config: ReGuidance | None = None,
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
    cfg = config or ReGuidance()
    n = len(depths)
    runs = []
    for depth in depths:
        sub = cfg.replace(
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
        nfe=sum(r.nfe for r in runs),
        timesteps=[],
        residuals=x.new_zeros(0, x.shape[0]),
        latent=latent,
        reward_before=runs[0].reward_before,
        reward_after=after,
        nfe_inversion=sum(r.nfe_inversion for r in runs),
        seconds=sum(r.seconds for r in runs),
        config=cfg,
    )
    return result, torch.tensor([float(depths[int(i)]) for i in pick])
