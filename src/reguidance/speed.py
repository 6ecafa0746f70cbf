"""``reguidance speed``: per-image cost of each method next to the network's floor, measured in one run.

The floor is the bare network: a forward pass (``fwd``) and a forward pass plus the gradient with respect to the
input (``fwd_grad``, what DPS needs per step), per image at the given batch size. Each method's *ratio to the floor*
is its measured time divided by the floor's cost of the same numbers of evaluations:

    DPS, K steps            K fwd_grad
    DAPS                    (annealing steps x ODE steps) fwd          (its Langevin steps use no network)
    inversion, S steps      S fwd
    ReGuidance              S fwd + K fwd_grad

so a ratio of 1.0 means the method's own arithmetic and bookkeeping cost nothing beside the network. Timings use
``time.perf_counter`` around whole runs, after a warm-up run, with ``torch.cuda.synchronize`` on CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .conventions import DTYPES, BatchRNG, check_positive_int
from .diffusion import check_levels
from .guidance.daps import daps
from .guidance.dps import dps
from .inversion import invert
from .operators import SuperResolution
from .priors.base import Prior
from .wrapper import ReGuidanceConfig, reguide

if TYPE_CHECKING:
    from .files import Record

__all__ = ["DTYPES", "SpeedConfig", "cpu_facts", "format_speed", "measure_floor", "measure_speed", "timing_prior"]


@dataclass(frozen=True)
class SpeedConfig:
    """What to time: batch size, step counts (reduce them on CPU; ratios stay meaningful), repeats."""

    batch_size: int = 16
    dps_steps: int = 20
    inversion_steps: int = 10
    daps_annealing_steps: int = 4
    floor_iters: int = 5

    def __post_init__(self) -> None:
        for name in ("batch_size", "dps_steps", "inversion_steps", "daps_annealing_steps", "floor_iters"):
            check_positive_int(name, getattr(self, name))
        for name in ("dps_steps", "inversion_steps", "daps_annealing_steps"):  # t_end = 1: the whole chain
            check_levels(name, getattr(self, name))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Seconds per call of ``fn``, after one warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _peak_mb(device: torch.device, fn: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _floor_fns(prior: Prior, b: int) -> tuple[Tensor, Callable[[], Tensor], Callable[[], Tensor]]:
    """A fixed noisy batch and the two floor computations on it: a forward pass, and a forward pass plus the
    gradient with respect to the input (what DPS needs per step)."""
    device = prior.device
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((b, *tuple(prior.signal_shape)), generator=g, device=device)
    t = torch.full((b,), len(prior.schedule) // 2, device=device, dtype=torch.int64)

    def fwd() -> Tensor:
        with torch.inference_mode():
            return prior.predict(x, t).eps

    def fwd_grad() -> Tensor:
        xr = x.clone().requires_grad_(True)
        eps = prior.predict(xr, t).eps
        (grad,) = torch.autograd.grad(eps.square().sum(), xr)
        return grad

    return x, fwd, fwd_grad


def measure_floor(prior: Prior, batch_size: int = 1, iters: int = 2) -> Record:
    """The network's floor on ``prior``: seconds per image of a forward pass and of a forward pass with the input
    gradient (each after a warm-up, mean of ``iters``), and the peak memory of the latter (MB: CUDA's allocator
    peak on GPU, the process's peak resident set on CPU, so call it in a fresh process)."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("iters", iters)
    _, fwd, fwd_grad = _floor_fns(prior, batch_size)
    return {
        "fwd_s_per_image": _timed(fwd, prior.device, iters) / batch_size,
        "fwd_grad_s_per_image": _timed(fwd_grad, prior.device, iters) / batch_size,
        "fwd_grad_peak_mb": _peak_mb(prior.device, fwd_grad),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
    }


def measure_speed(prior: Prior, cfg: SpeedConfig, dtype: str = "fp32") -> Record:
    """Time the floor and each method on ``prior`` (its device); returns the JSON report of ``reguidance speed``."""
    device = prior.device
    b = cfg.batch_size
    shape = tuple(prior.signal_shape)
    x, fwd, fwd_grad = _floor_fns(prior, b)
    fwd_s = _timed(fwd, device, cfg.floor_iters) / b
    fwd_grad_s = _timed(fwd_grad, device, cfg.floor_iters) / b

    factor = 4 if shape[-1] % 4 == 0 else 2
    operator = SuperResolution(shape, factor, sigma_y=0.05).to(device)
    truth = x.clamp(-1, 1)
    y = operator.measure(truth, BatchRNG.from_seed(1, b, device=device))

    def rng() -> BatchRNG:
        return BatchRNG.from_seed(2, b, device=device)

    k, s = cfg.dps_steps, cfg.inversion_steps
    daps_nfe = cfg.daps_annealing_steps * 5
    runs: dict[str, tuple[Callable[[], object], int, float]] = {
        "dps": (lambda: dps(prior, operator, y, steps=k, rng=rng(), clip=True), k, k * fwd_grad_s),
        "daps": (
            lambda: daps(prior, operator, y, steps=cfg.daps_annealing_steps, rng=rng(), clip=True),
            daps_nfe,
            daps_nfe * fwd_s,
        ),
        "inversion": (lambda: invert(prior, truth, prior.schedule, steps=s, t_end=1.0), s, s * fwd_s),
        "reguidance": (
            lambda: reguide(
                truth,
                y,
                operator,
                prior,
                rng=rng(),
                config=ReGuidanceConfig(inversion_steps=s, dps_steps=k, t_end=1.0, clip=True),
            ),
            s + k,
            s * fwd_s + k * fwd_grad_s,
        ),
    }
    methods = {}
    for name, (fn, nfe, floor_s) in runs.items():
        seconds = _timed(fn, device) / b
        methods[name] = {
            "ms_per_image": seconds * 1e3,
            "nfe": nfe,
            "ratio_to_floor": seconds / floor_s,
            "peak_mem_mb": _peak_mb(device, fn),
        }
    return {
        "floor": {"fwd_ms_per_image": fwd_s * 1e3, "fwd_grad_ms_per_image": fwd_grad_s * 1e3},
        "methods": methods,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "dtype": dtype,
        "batch_size": b,
        "threads": torch.get_num_threads(),
    }


def format_speed(report: Record) -> str:
    """The speed report as a plain-text table."""
    floor: dict[str, float] = report["floor"]
    lines = [
        f"device {report['device']}, dtype {report['dtype']}, batch {report['batch_size']}, "
        f"threads {report['threads']}",
        f"floor: forward {floor['fwd_ms_per_image']:.2f} ms/image, forward+input-gradient "
        f"{floor['fwd_grad_ms_per_image']:.2f} ms/image",
        f"{'method':<12}{'ms/image':>12}{'NFE':>6}{'ratio to floor':>16}{'peak MB':>10}",
    ]
    for name, m in report["methods"].items():
        lines.append(
            f"{name:<12}{m['ms_per_image']:>12.1f}{m['nfe']:>6}{m['ratio_to_floor']:>16.3f}{m['peak_mem_mb']:>10.0f}"
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
    from .conventions import InputError
    from .priors.zoo import MODELS, random_prior

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
