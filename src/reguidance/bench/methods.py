"""Candidate-producing methods for the benchmark, by command-line name.

A method maps ``(prior, operator, measurement, rng, ids)`` to ``(candidates, nfe)``: candidates ``(B, C, H, W)`` in
[-1, 1] and the network evaluations it spent per image. ``folder:PATH`` reads external candidates, one PNG per test
image named ``<id>.png`` or ``<id:05d>.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..conventions import BatchRNG
from ..guidance.daps import daps
from ..guidance.diffpir import diffpir
from ..guidance.dps import dps
from ..guidance.pigdm import pigdm
from ..guidance.reddiff import reddiff
from ..operators import Operator
from ..priors.base import Prior

__all__ = ["METHODS", "MethodFn", "get_method"]

MethodFn = Callable[..., tuple[Tensor, int]]


def pinv_method(prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int]) -> tuple[Tensor, int]:
    """The classical candidate: the operator's pseudo-inverse (mask fill with 0, nearest upsampling, Tikhonov)."""
    return operator.pinv(y).clamp(-1, 1), 0


def dps_method(
    prior: Prior,
    operator: Operator,
    y: Tensor,
    rng: BatchRNG,
    ids: Sequence[int],
    *,
    steps: int = 1000,
    zeta: float = 1.0,
) -> tuple[Tensor, int]:
    """DPS from fresh noise, DDPM ancestral steps, ``x0_hat`` clipped to [-1, 1] as in the reference code."""
    out = dps(prior, operator, y, prior.schedule.spaced(steps), zeta=zeta, sampler="ddpm", rng=rng, clip=True)
    return out.x.clamp(-1, 1), out.nfe


def _solver(fn: Callable[..., object]) -> MethodFn:
    """A baseline of :mod:`reguidance.guidance` as a method: fresh noise, ``x0_hat`` clipped for images."""

    def run(prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int], **options: object):
        out = fn(prior, operator, y, rng=rng, clip=True, **options)
        return out.x.clamp(-1, 1), out.nfe  # type: ignore[attr-defined]

    run.__doc__ = f"{fn.__name__} from fresh noise with clipping; see :mod:`{fn.__module__}`."
    return run


def folder_method(path: str | Path) -> MethodFn:
    """External candidates from ``path``: ``<id>.png`` or ``<id:05d>.png`` per test image."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"folder candidates: {root} is not a directory")

    def load(prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int]) -> tuple[Tensor, int]:
        from ..data import load_images

        c, h, w = prior.signal_shape
        images = []
        for i in ids:
            file = next((root / n for n in (f"{i}.png", f"{i:05d}.png") if (root / n).is_file()), None)
            if file is None:
                raise ValueError(f"folder candidates: no {i}.png or {i:05d}.png in {root}")
            x, _ = load_images(file, None, c)
            if tuple(x.shape[-2:]) != (h, w):
                raise ValueError(f"folder candidates: {file} is {x.shape[-1]}x{x.shape[-2]}, expected {w}x{h}")
            images.append(x[0])
        return torch.stack(images).to(y.device, y.dtype), 0

    return load


METHODS: dict[str, MethodFn] = {
    "pinv": pinv_method,
    "dps": dps_method,
    "daps": _solver(daps),
    "diffpir": _solver(diffpir),
    "reddiff": _solver(reddiff),
    "pigdm": _solver(pigdm),
}


def get_method(name: str) -> MethodFn:
    """The method called ``name`` (or ``folder:PATH``); a ValueError lists the known ones."""
    if name.startswith("folder:"):
        return folder_method(name.split(":", 1)[1])
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} or folder:PATH; got {name!r}")
    return METHODS[name]


# ---------------------------------------------------------------------------------------------- TEMP shim (lead)
def budget_option(method: str) -> str:
    """TEMP until the sampler core lands: the option that scales ``method``'s budget (its step count)."""
    return "annealing_steps" if method.split(":", 1)[0] == "daps" else "steps"
