"""``reguidance speed``: per-image cost of each method next to the network's floor, measured in one run.

The floor is the bare network: a forward pass (``fwd``) and a forward pass plus the gradient with respect to the
input (``fwd_grad``, what DPS needs per step), per image at the given batch size. Each method's *ratio to the floor*
is its measured time divided by the floor's cost of the same numbers of evaluations:

    DPS, K steps            K fwd_grad
    DAPS                    (annealing steps x ODE steps) fwd          (its Langevin steps use no network)
    inversion, S steps      S fwd
    ReGuidance              S fwd + K fwd_grad

so a ratio of 1.0 means the method's own arithmetic and bookkeeping cost nothing beside the network.

**Interleaved repeats.** On a shared or loaded machine the speed drifts within seconds, so a floor timed once and a
method timed a minute later do not compare (DPS once read 0.39 and 0.63 of the floor in two runs). After one
warm-up call of everything, each of ``repeats`` rounds times the floor *right before each method*:

    round r:  floor, dps, floor, daps, floor, inversion, floor, reguidance

and the method's ratio in round ``r`` divides its time by the floor timed just before it. The report gives, per
method, the median of these per-round ratios and their range (min-max), and keeps every round's figures. Timings
use ``time.perf_counter`` (or an injected clock) around whole runs, with ``torch.cuda.synchronize`` on CUDA.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..app.timing import Clock, Floor, floor_fns, measure_floor, peak_mb, timed, warm
from ..conventions import DTYPES, BatchRNG, check_positive_int
from ..diffusion import check_levels
from ..guidance.core import Cost
from ..guidance.daps import daps
from ..guidance.dps import dps
from ..inversion import invert
from ..operators import SuperResolution
from ..priors.base import Prior
from ..wrapper import ReGuidance, reguide

if TYPE_CHECKING:
    from ..io.files import Record

__all__ = [
    "DTYPES",
    "Cost",
    "Floor",
    "SpeedConfig",
    "cpu_facts",
    "format_speed",
    "interleave",
    "measure_floor",
    "measure_speed",
    "summarise_rounds",
    "timing_prior",
]


@dataclass(frozen=True)
class SpeedConfig:
    """What to time: batch size, step counts (reduce them on CPU; ratios stay meaningful), the calls of the floor
    averaged per timing (``floor_iters``) and the interleaved rounds (``repeats``; module docstring)."""

    batch_size: int = 16
    dps_steps: int = 20
    inversion_steps: int = 10
    daps_annealing_steps: int = 4
    floor_iters: int = 5
    repeats: int = 3

    def __post_init__(self) -> None:
        for name in ("batch_size", "dps_steps", "inversion_steps", "daps_annealing_steps", "floor_iters", "repeats"):
            check_positive_int(name, getattr(self, name))
        for name in ("dps_steps", "inversion_steps", "daps_annealing_steps"):  # t_end = 1: the whole chain
            check_levels(name, getattr(self, name))


def interleave(
    time_floor: Callable[[], Floor], time_methods: Mapping[str, Callable[[], float]], repeats: int
) -> dict[str, list[tuple[Floor, float]]]:
    """``repeats`` rounds of floor, method, floor, method, ... in the order of ``time_methods``: per method, one
    ``(floor timed just before it, its seconds per image)`` pair per round."""
    check_positive_int("repeats", repeats)
    rounds: dict[str, list[tuple[Floor, float]]] = {name: [] for name in time_methods}
    for _ in range(repeats):
        for name, time_method in time_methods.items():
            floor = time_floor()
            rounds[name].append((floor, time_method()))
    return rounds


def summarise_rounds(rounds: Sequence[tuple[Floor, float]], cost: Cost) -> Record:
    """One method's entry of the report from its ``(floor, seconds per image)`` rounds: the ratio of each round is
    ``seconds / cost.seconds(...)`` (the floor's time for the cost); ``ratio_to_floor`` is their median, ``ratio_min``
    / ``ratio_max`` their range, ``ms_per_image`` the median time, ``per_repeat`` every round's figures (ms per
    image)."""
    per_repeat = [
        {
            "floor_fwd_ms_per_image": floor.fwd_s * 1e3,
            "floor_fwd_grad_ms_per_image": floor.fwd_grad_s * 1e3,
            "ms_per_image": seconds * 1e3,
            "ratio_to_floor": seconds / cost.seconds(floor.fwd_s, floor.fwd_grad_s),
        }
        for floor, seconds in rounds
    ]
    ratios = [r["ratio_to_floor"] for r in per_repeat]
    return {
        "ms_per_image": statistics.median(r["ms_per_image"] for r in per_repeat),
        "nfe": cost.nfe,
        "ratio_to_floor": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "per_repeat": per_repeat,
    }


def measure_speed(prior: Prior, cfg: SpeedConfig, dtype: str = "fp32", *, clock: Clock = time.perf_counter) -> Record:
    """Time the floor and each method on ``prior`` (its device) in ``cfg.repeats`` interleaved rounds (module
    docstring); returns the JSON report of ``reguidance speed``. ``clock`` (seconds) is injectable for tests."""
    device = prior.device
    b = cfg.batch_size
    shape = tuple(prior.signal_shape)
    x, fwd, fwd_grad = floor_fns(prior, b)

    factor = 4 if shape[-1] % 4 == 0 else 2
    operator = SuperResolution(shape, factor, sigma_y=0.05).to(device)
    truth = x.clamp(-1, 1)
    y = operator.measure(truth, BatchRNG.from_seed(1, b, device=device))

    def rng() -> BatchRNG:
        return BatchRNG.from_seed(2, b, device=device)

    k, s = cfg.dps_steps, cfg.inversion_steps
    runs: dict[str, tuple[Callable[[], object], Cost]] = {
        "dps": (lambda: dps(prior, operator, y, steps=k, rng=rng(), clip=True), Cost(fwd_grad=k)),
        "daps": (
            lambda: daps(prior, operator, y, steps=cfg.daps_annealing_steps, rng=rng(), clip=True),
            Cost(fwd=cfg.daps_annealing_steps * 5),
        ),
        "inversion": (lambda: invert(prior, truth, prior.schedule, steps=s, t_end=1.0), Cost(fwd=s)),
        "reguidance": (
            lambda: reguide(
                truth,
                y,
                operator,
                prior,
                rng=rng(),
                config=ReGuidance().replace(inversion_steps=s, dps_steps=k, t_end=1.0, clip=True),
            ),
            Cost(fwd=s, fwd_grad=k),
        ),
    }
    for fn in (fwd, fwd_grad, *(fn for fn, _ in runs.values())):
        warm(fn, device)

    def time_floor() -> Floor:
        return Floor(
            timed(fwd, device, cfg.floor_iters, clock) / b, timed(fwd_grad, device, cfg.floor_iters, clock) / b
        )

    def timer(fn: Callable[[], object]) -> Callable[[], float]:
        return lambda: timed(fn, device, 1, clock) / b

    rounds = interleave(time_floor, {name: timer(fn) for name, (fn, _) in runs.items()}, cfg.repeats)
    methods = {}
    for name, (fn, cost) in runs.items():
        methods[name] = {**summarise_rounds(rounds[name], cost), "peak_mem_mb": peak_mb(device, fn)}
    floors = [floor for pairs in rounds.values() for floor, _ in pairs]
    return {
        "floor": {
            "fwd_ms_per_image": statistics.median(f.fwd_s for f in floors) * 1e3,
            "fwd_grad_ms_per_image": statistics.median(f.fwd_grad_s for f in floors) * 1e3,
        },
        "methods": methods,
        "repeats": cfg.repeats,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "dtype": dtype,
        "batch_size": b,
        "threads": torch.get_num_threads(),
    }


def format_speed(report: Record) -> str:
    """The speed report as a plain-text table: medians over the interleaved rounds, the ratio's range beside it."""
    floor: dict[str, float] = report["floor"]
    lines = [
        f"device {report['device']}, dtype {report['dtype']}, batch {report['batch_size']}, "
        f"threads {report['threads']}, {report['repeats']} interleaved repeats (the floor timed before each method)",
        f"floor: forward {floor['fwd_ms_per_image']:.2f} ms/image, forward+input-gradient "
        f"{floor['fwd_grad_ms_per_image']:.2f} ms/image (medians)",
        f"{'method':<12}{'ms/image':>12}{'NFE':>6}{'ratio to floor':>16}{'range':>14}{'peak MB':>10}",
    ]
    for name, m in report["methods"].items():
        spread = f"{m['ratio_min']:.3f}-{m['ratio_max']:.3f}"
        lines.append(
            f"{name:<12}{m['ms_per_image']:>12.1f}{m['nfe']:>6}{m['ratio_to_floor']:>16.3f}{spread:>14}"
            f"{m['peak_mem_mb']:>10.0f}"
        )
    return "\n".join(lines)


def cpu_facts() -> tuple[str, bool]:
    """This machine's CPU model name and whether it has bf16 units (AVX512-BF16 or AMX), from ``/proc/cpuinfo``
    (``("unknown CPU", False)`` where that cannot be read). Without bf16 units, bf16 is emulated and slow."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU", False
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return name, bool(flags & {"avx512_bf16", "amx_bf16"})


def timing_prior(
    name: str,
    device: str,
    dtype: str,
    *,
    load: Callable[..., Prior],
    prior_config: object | None = None,
    **optimize: Any,
) -> Prior:
    """The prior ``reguidance speed`` times: a known model that is not embedded gets random weights of its
    registered architecture (the same cost as the real checkpoint, no file needed; ``prior_config`` is refused for
    it); anything else is ``load(name, device, dtype, **optimize)``."""
    from ..conventions import InputError
    from ..priors.loading import random_prior
    from ..priors.zoo import MODELS

    entry = MODELS.get(name)
    if entry is None or entry.embedded:
        return load(name, device, dtype, **optimize)
    if prior_config is not None:
        raise InputError(
            f"--prior-config is for checkpoint files; speed times {name} with random weights of its registered "
            "architecture"
        )
    prior = random_prior(name, device=device)
    prior.optimize(DTYPES[dtype], **optimize)
    return prior
