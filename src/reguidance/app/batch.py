"""Solving one batch: a method's candidates, ReGuidance on them, and the ablations that explain its gains.

One function, :func:`solve_batch`, is what the benchmark (:mod:`reguidance.bench.runner`), the tuning
(:mod:`reguidance.bench.tune`) and ``reguidance restore`` (:mod:`reguidance.app.restore`) run on every batch. Given the
operator and measurement ``y`` of images ``ids`` (see :meth:`reguidance.tasks.Task.measure`), it returns per
*variant* an :class:`Output`:

- ``candidate``: the method's output from fresh noise (stream ``method/<method>`` of
  :func:`reguidance.tasks.method_rng`), or the candidates the caller gives;
- ``reguidance``: the wrapper (:func:`reguidance.wrapper.reguide`, ``start="inversion"``) on the candidate;
- ``renoise``: the candidate forward-noised to the wrapper's ``t_end``, then the same DPS (SDEdit + DPS);
- ``fresh``: the same DPS from fresh noise at ``t_end`` (no candidate; its cost is its own);
- ``more``: the method given the wrapper's extra network evaluations (:func:`reguidance.app.methods.scaled_budget`).

Each ablation runs with the wrapper's options (and ``more`` with the method's, its budget scaled) unless
``variant_options`` gives its own (tuned for it, :mod:`reguidance.bench.tune`): a
:class:`~reguidance.wrapper.ReGuidanceConfig` for ``renoise`` / ``fresh``, the method's options for ``more`` (without
its budget option, e.g. ``steps``, that budget is scaled from the candidate's as for an untuned ``more``).

The wrapper's variants share one random stream (``reguidance/<wrapper_stream>``, by default the method's name), so
they differ only in where DPS starts. Every draw is per image (:func:`reguidance.tasks.stream_rng`): the outputs of
an image do not depend on the batch it is solved in, nor on which of its variants are asked for.

Variants are computed in turn, and ``on_output(variant, output)`` hears of each as soon as it is done: the
benchmark writes its rows there, so a failure or a kill loses at most the variant in flight. A rerun asks only for
the variants still missing, giving the candidate it saved (an :class:`Output`, with its evaluations and time) and,
for ``more`` without ``reguidance``, the wrapper's evaluations (``wrapper_nfe``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from ..operators import Operator
from ..priors.base import Prior
from ..tasks import method_rng, wrapper_rng
from ..wrapper import ReGuidanceConfig, Start, reguide
from .methods import MethodFn, budget_option, get_method, scaled_budget

__all__ = ["START", "Output", "solve_batch"]

T = TypeVar("T")

#: the wrapper's start for each variant that runs it (:class:`reguidance.wrapper.ReGuidanceConfig`)
START: dict[str, Start] = {"reguidance": "inversion", "renoise": "renoise", "fresh": "fresh"}


class Output(NamedTuple):
    """One variant's result on a batch: ``x`` (B, C, H, W) clamped to [-1, 1], ``raw`` the same before the clamp,
    ``nfe`` the network evaluations per image (the candidate's included where the variant starts from it), and
    ``seconds`` the wall time per image (likewise)."""

    x: Tensor
    raw: Tensor
    nfe: int
    seconds: float


def solve_batch(
    prior: Prior,
    operator: Operator,
    y: Tensor,
    ids: Sequence[int],
    *,
    seed: int,
    task: str,
    split: str,
    method: str,
    method_fn: MethodFn | None = None,
    options: Mapping[str, object] | None = None,
    config: ReGuidanceConfig | None = None,
    variants: Sequence[str] = ("candidate", "reguidance"),
    candidate: Tensor | Output | None = None,
    wrapper_stream: str | None = None,
    progress: bool = False,
    variant_options: Mapping[str, ReGuidanceConfig | Mapping[str, object]] | None = None,
    wrapper_nfe: int | None = None,
    on_output: Callable[[str, Output], None] | None = None,
) -> dict[str, Output]:
    """The ``variants`` (see the module docstring; ``candidate`` is always among the outputs, ``more`` needs
    ``reguidance`` before it or ``wrapper_nfe``) of the images ``ids`` of ``split``, in the order given.

    Arguments:
        prior: the diffusion prior; ``y`` and the outputs live on its device.
        operator: the batch's forward operator; ``y`` its measurement (on the ``sigma_y`` scale of [-1, 1] images).
        seed, task, split: the run's seed, the task's name and the split: they name the random streams.
        method: the method's name (its stream and budget); ``method_fn`` the method itself (default
            :func:`reguidance.app.methods.get_method` of it), called with ``options``.
        config: the wrapper's options (default ``ReGuidanceConfig(clip=True)``); each variant sets its ``start``.
        candidate: given candidates ``(B, C, H, W)`` in [-1, 1] instead of the method's (no evaluations counted),
            or the method's own candidates computed earlier (an :class:`Output`: its ``nfe`` and ``seconds`` are
            counted in the variants that start from it, as when computed here).
        wrapper_stream: the name in the wrapper's stream ``reguidance/<name>`` (default ``method``).
        progress: per-step progress bars (steps done, elapsed time, ETA) of every loop that runs: the method's
            sampler, the wrapper's inversion and its DPS. They close when done (``leave=False``), so under a
            caller's outer bar each shows on the line below it while it runs.
        variant_options: per ablation, its own options (module docstring); absent ones take the defaults above.
        wrapper_nfe: the ``reguidance`` variant's evaluations per image (its candidate's included), for ``more``
            when ``reguidance`` is not among ``variants`` (computed earlier).
        on_output: called with each variant's name and :class:`Output` as soon as it is computed (the candidate
            only when the method ran here, not when ``candidate`` is given).
    """
    device = y.device
    opts = dict(options or {})
    cfg = config or ReGuidanceConfig(clip=True)

    def timed(fn: Callable[[], T]) -> tuple[T, float]:
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result, (time.perf_counter() - t0) / len(ids)

    def run_method(method_options: dict[str, object]) -> Output:
        fn = method_fn or get_method(method)
        rng = method_rng(seed, task, method, ids, device=device, split=split)
        out, seconds = timed(lambda: fn(prior, operator, y, rng, ids, progress=progress, **method_options))
        return Output(out.x, out.raw, out.nfe, seconds)

    def more(own: object) -> Output:
        mine = dict(own) if isinstance(own, Mapping) else {}
        if budget_option(method) in mine:
            return run_method(mine)
        wrapper = outputs["reguidance"].nfe if "reguidance" in outputs else wrapper_nfe
        if wrapper is None:
            raise ValueError(
                "the 'more' variant needs the wrapper's evaluations: ask for 'reguidance' or give wrapper_nfe"
            )
        extra = wrapper - cand.nfe  # the wrapper's own evaluations
        return run_method(scaled_budget(method, {**opts, **mine}, cand.nfe, extra, len(prior.schedule)))

    def wrapped(variant: str, own: object) -> Output:
        rng = wrapper_rng(seed, task, wrapper_stream or method, ids, device=device, split=split)
        variant_cfg = replace(own if isinstance(own, ReGuidanceConfig) else cfg, start=START[variant])
        rg, seconds = timed(
            partial(reguide, cand.x, y, operator, prior, config=variant_cfg, rng=rng, progress=progress)
        )
        with_candidate = variant != "fresh"  # fresh noise needs no candidate: its cost is its own
        return Output(
            rg.x.clamp(-1, 1),
            rg.x,
            rg.nfe + (cand.nfe if with_candidate else 0),
            seconds + (cand.seconds if with_candidate else 0.0),
        )

    if isinstance(candidate, Output):
        cand = candidate
    elif candidate is not None:
        cand = Output(candidate, candidate, 0, 0.0)
    else:
        cand = run_method(opts)
        if on_output is not None:
            on_output("candidate", cand)
    outputs = {"candidate": cand}
    for variant in variants:
        if variant == "candidate":
            continue
        own = (variant_options or {}).get(variant)
        outputs[variant] = more(own) if variant == "more" else wrapped(variant, own)
        if on_output is not None:
            on_output(variant, outputs[variant])
    return outputs
