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

from ..conventions import BatchRNG, InputError
from ..guidance.core import SampleResult
from ..guidance.daps import daps
from ..guidance.diffpir import diffpir
from ..guidance.dps import dps
from ..guidance.pigdm import pigdm
from ..guidance.reddiff import reddiff
from ..operators import Operator
from ..priors.base import Prior

__all__ = ["METHODS", "MethodFn", "budget_option", "get_method"]

MethodFn = Callable[..., tuple[Tensor, int]]


def pinv_method(prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int]) -> tuple[Tensor, int]:
    """The classical candidate: the operator's pseudo-inverse (mask fill with 0, nearest upsampling, Tikhonov)."""
    return operator.pinv(y).clamp(-1, 1), 0


def _solver(fn: Callable[..., SampleResult], **fixed: object) -> MethodFn:
    """A sampler of :mod:`reguidance.guidance` as a method: fresh noise, ``x0_hat`` clipped for images."""

    def run(
        prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int], **options: object
    ) -> tuple[Tensor, int]:
        out = fn(prior, operator, y, rng=rng, clip=True, **{**fixed, **options})
        return out.x.clamp(-1, 1), out.nfe

    run.__doc__ = f"{fn.__name__} from fresh noise with clipping; see :mod:`{fn.__module__}`."
    return run


def budget_option(method: str) -> str:
    """The option that scales ``method``'s network-evaluation budget: ``"steps"`` (the number of levels) for every
    sampler; an InputError for methods without one (``pinv``, ``folder:``)."""
    name = method.split(":", 1)[0]
    if name not in METHODS or name == "pinv":
        raise InputError(f"method {method!r} has no step budget; only {', '.join(m for m in METHODS if m != 'pinv')}")
    return "steps"


def folder_method(path: str | Path) -> MethodFn:
    """External candidates from ``path``: ``<id>.png`` or ``<id:05d>.png`` per test image."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"folder candidates: {root} is not a directory")

    def load(prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int]) -> tuple[Tensor, int]:
        from ..images import load_images

        c, h, w = prior.signal_shape
        images = []
        for i in ids:
            file = next((root / n for n in (f"{i}.png", f"{i:05d}.png") if (root / n).is_file()), None)
            if file is None:
                raise InputError(f"folder candidates: no {i}.png or {i:05d}.png in {root}")
            x, _ = load_images(file, None, c)
            if tuple(x.shape[-2:]) != (h, w):
                raise InputError(f"folder candidates: {file} is {x.shape[-1]}x{x.shape[-2]}, expected {w}x{h}")
            images.append(x[0])
        return torch.stack(images).to(y.device, y.dtype), 0

    return load


METHODS: dict[str, MethodFn] = {
    "pinv": pinv_method,
    "dps": _solver(dps, sampler="ddpm"),
    "daps": _solver(daps),
    "diffpir": _solver(diffpir),
    "reddiff": _solver(reddiff),
    "pigdm": _solver(pigdm),
}


def get_method(name: str) -> MethodFn:
    """The method called ``name`` (or ``folder:PATH``); an InputError lists the known ones."""
    if name.startswith("folder:"):
        return folder_method(name.split(":", 1)[1])
    if name not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)} or folder:PATH; got {name!r}")
    return METHODS[name]
