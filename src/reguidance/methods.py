"""Candidate-producing methods for the benchmark, by command-line name.

A method maps ``(prior, operator, measurement, rng, ids, *, progress=False, **options)`` to :class:`Candidates`
``(x, nfe, raw)``: candidates ``x (B, C, H, W)`` in [-1, 1], the network evaluations it spent per image, and
``raw``, the output before the final clamp to [-1, 1] (the report measures how well the unclamped output fits ``y``
too). ``progress=True`` shows a sampler's per-step bar with its ETA (:func:`reguidance.guidance.core.run`; methods
without steps ignore it). ``folder:PATH`` reads external candidates, one PNG per test image named ``<id>.png`` or
``<id:05d>.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .conventions import BatchRNG, InputError
from .guidance.registry import METHODS as SAMPLERS
from .guidance.registry import method_config, method_option_names
from .guidance.solve import Problem, solve
from .operators import LinearOperator, Operator
from .priors.base import Prior

__all__ = [
    "METHODS",
    "Candidates",
    "MethodFn",
    "budget_option",
    "check_method_options",
    "get_method",
    "method_option_defaults",
    "scaled_budget",
]


class Candidates(NamedTuple):
    """A method's output: ``x`` (B, C, H, W) clamped to [-1, 1], ``nfe`` network evaluations per image, ``raw`` the
    same before the clamp (equal to ``x`` for methods that do not clamp)."""

    x: Tensor
    nfe: int
    raw: Tensor


MethodFn = Callable[..., Candidates]


def pinv_method(
    prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int], *, progress: bool = False
) -> Candidates:
    """The classical candidate: the operator's pseudo-inverse (mask fill with 0, nearest upsampling, Tikhonov);
    one closed-form solve, so no progress bar."""
    if not isinstance(operator, LinearOperator):
        raise InputError(
            f"the pinv candidate needs a linear operator; {type(operator).__name__} is not a LinearOperator"
        )
    raw = operator.pinv(y)
    return Candidates(raw.clamp(-1, 1), 0, raw)


#: options a sampler's method sets itself (never a user's option): the benchmark clips ``x0_hat`` for images
_FIXED: dict[str, object] = {"clip": True}


def _solver(name: str) -> MethodFn:
    """The sampler ``name`` of :data:`reguidance.guidance.METHODS` as a method: its config built from the options
    by :func:`~reguidance.guidance.method_config`, fresh noise, ``x0_hat`` clipped for images."""

    def run(
        prior: Prior,
        operator: Operator,
        y: Tensor,
        rng: BatchRNG,
        ids: Sequence[int],
        *,
        progress: bool = False,
        **options: object,
    ) -> Candidates:
        method = method_config(name, {**options, **_FIXED})
        out = solve(method, Problem(prior, operator, y, rng), progress=progress)
        return Candidates(out.x.clamp(-1, 1), out.nfe, out.x)

    run.__doc__ = f"{SAMPLERS[name].label} from fresh noise with clipping; see :mod:`{SAMPLERS[name].__module__}`."
    return run


def method_option_defaults(method: str) -> dict[str, object]:
    """The options ``method`` takes, with their defaults (its config's fields; ``steps`` has ``None``: the
    sampler's own budget); ``{}`` for ``pinv`` and ``folder:PATH``. ``InputError`` for an unknown method."""
    get_method(method)
    if method not in SAMPLERS:
        return {}
    defaults = {f.name: f.default for f in fields(SAMPLERS[method])}
    return {name: defaults[name] for name in method_option_names(method) if name not in _FIXED}


def check_method_options(method: str, options: Mapping[str, object]) -> dict[str, object]:
    """``options`` as a dict when ``method`` takes every one of them with a value of its type, checked by building
    its config (:func:`~reguidance.guidance.method_config`); else an ``InputError`` naming the option and the
    options that exist."""
    known = method_option_defaults(method)
    for name in options:
        if name not in known:
            takes = ", ".join(sorted(known)) if known else "no options"
            raise InputError(f"method {method} has no option {name!r}; it takes {takes}")
    if method in SAMPLERS:
        method_config(method, {**options, **_FIXED})
    return dict(options)


def budget_option(method: str) -> str:
    """The option that scales ``method``'s network-evaluation budget: ``"steps"`` (the number of levels) for every
    sampler; an InputError for methods without one (``pinv``, ``folder:``)."""
    name = method.split(":", 1)[0]
    if name not in METHODS or name == "pinv":
        raise InputError(f"method {method!r} has no step budget; only {', '.join(m for m in METHODS if m != 'pinv')}")
    return "steps"


def scaled_budget(method: str, options: dict[str, object], nfe: int, extra: int) -> dict[str, object]:
    """``options`` with ``method``'s budget (:func:`budget_option`) scaled so that it spends about ``nfe + extra``
    network evaluations per image where it spent ``nfe``: ``steps * (nfe + extra) / nfe``, rounded (the ``more``
    ablation: the base method given the wrapper's extra evaluations). Its step sizes stay as tuned."""
    key = budget_option(method)
    if nfe <= 0:
        raise InputError(f"method {method!r} spent no network evaluations; its budget cannot be scaled")
    steps = options[key]
    if not isinstance(steps, int):
        raise InputError(f"method {method!r}: {key} must be an integer to be scaled, got {steps!r}")
    return {**options, key: max(steps + 1, round(steps * (nfe + extra) / nfe))}


def folder_method(path: str | Path) -> MethodFn:
    """External candidates from ``path``: ``<id>.png`` or ``<id:05d>.png`` per test image."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"folder candidates: {root} is not a directory")

    def load(
        prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int], *, progress: bool = False
    ) -> Candidates:
        from .images import load_images

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
        x = torch.stack(images).to(y.device, y.dtype)
        return Candidates(x, 0, x)

    return load


METHODS: dict[str, MethodFn] = {"pinv": pinv_method, **{name: _solver(name) for name in SAMPLERS}}


def get_method(name: str) -> MethodFn:
    """The method called ``name`` (or ``folder:PATH``); an InputError lists the known ones."""
    if name.startswith("folder:"):
        return folder_method(name.split(":", 1)[1])
    if name not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)} or folder:PATH; got {name!r}")
    return METHODS[name]
