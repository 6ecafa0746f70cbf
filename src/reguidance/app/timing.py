"""The network's floor: how long the bare prior takes per image for a forward pass and for a forward pass with the
gradient with respect to its input (what a DPS step needs), the unit every cost here is measured in.

:func:`measure_floor` times both after a warm-up call; :meth:`reguidance.guidance.Cost.seconds` turns a method's
evaluations into the floor's seconds. ``reguidance speed`` (:mod:`reguidance.studies.speed`) interleaves these
timings with the methods'; a run estimates its own duration from them before it starts
(:func:`reguidance.bench.session.estimate_seconds`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..conventions import check_positive_int
from ..priors.base import Prior

__all__ = ["Clock", "Floor", "floor_fns", "measure_floor", "peak_mb", "synchronize", "timed", "warm"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class Floor:
    """The network's floor, seconds per image: a forward pass (``fwd_s``) and a forward pass with the gradient
    with respect to the input (``fwd_grad_s``)."""

    fwd_s: float
    fwd_grad_s: float


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm(fn: Callable[[], object], device: torch.device) -> None:
    """One untimed call (compilation, allocator and kernel caches)."""
    fn()
    synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, iters: int = 1, clock: Clock = time.perf_counter) -> float:
    """Seconds per call of ``fn``, the mean of ``iters`` back-to-back calls (no warm-up: see :func:`_warm`)."""
    synchronize(device)
    start = clock()
    for _ in range(iters):
        fn()
    synchronize(device)
    return (clock() - start) / iters


def peak_mb(device: torch.device, fn: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor_fns(prior: Prior, b: int) -> tuple[Tensor, Callable[[], Tensor], Callable[[], Tensor]]:
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


def measure_floor(prior: Prior, batch_size: int = 1, iters: int = 2) -> dict[str, Any]:
    """The network's floor on ``prior``: seconds per image of a forward pass and of a forward pass with the input
    gradient (each after a warm-up, mean of ``iters``), and the peak memory of the latter (MB: CUDA's allocator
    peak on GPU, the process's peak resident set on CPU, so call it in a fresh process)."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("iters", iters)
    _, fwd, fwd_grad = floor_fns(prior, batch_size)
    warm(fwd, prior.device)
    warm(fwd_grad, prior.device)
    return {
        "fwd_s_per_image": timed(fwd, prior.device, iters) / batch_size,
        "fwd_grad_s_per_image": timed(fwd_grad, prior.device, iters) / batch_size,
        "fwd_grad_peak_mb": peak_mb(prior.device, fwd_grad),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
    }
