"""Solving one batch: a method's candidates, ReGuidance on them, and the ablations that explain its gains.

One function, :func:`solve_batch`, is what the benchmark (:mod:`reguidance.bench.runner`), the tuning
(:mod:`reguidance.bench.tune`) and ``reguidance restore`` (:mod:`reguidance.app.restore`) run on every batch. Given the
operator and measurement ``y`` of images ``ids`` (see :meth:`reguidance.tasks.Task.measure`), it returns per
*variant* an :class:`Output`:

- ``candidate``: the method's output from fresh noise (stream ``method/<name>`` of
  :func:`reguidance.tasks.method_rng`), or the candidates the caller gives;
- ``reguidance``: the wrapper (:func:`reguidance.wrapper.reguide`, ``start="inversion"``) on the candidate;
- ``renoise``: the candidate forward-noised to the wrapper's ``t_end``, then the same DPS (SDEdit + DPS);
- ``fresh``: the same DPS from fresh noise at ``t_end`` (no candidate; its cost is its own);
- ``more``: the method given the wrapper's extra network evaluations (:func:`reguidance.app.methods.scaled_budget`).

Each ablation runs with the wrapper's config (and ``more`` with the method's, its budget scaled) unless
``variant_options`` gives its own (tuned for it, :mod:`reguidance.bench.tune`): a
:class:`~reguidance.wrapper.ReGuidance` for ``renoise`` / ``fresh``, the method's config for ``more`` (with its
budget option None, e.g. ``steps=None``, that budget is scaled from the candidate's as for an untuned ``more``).

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
from functools import partial
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from ..guidance.solve import Method, Problem, solve
from ..operators import Operator
from ..priors.base import Prior
from ..tasks import method_rng, wrapper_rng
from ..wrapper import ReGuidance, Start
from .methods import scaled_budget

__all__ = ["START", "Output", "solve_batch"]

T = TypeVar("T")

#: the wrapper's start for each variant that runs it (:attr:`reguidance.wrapper.ReGuidance.start`)
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
    name: str,
    method: Method | None = None,
    config: ReGuidance | None = None,
    variants: Sequence[str] = ("candidate", "reguidance"),
    candidate: Tensor | Output | None = None,
    wrapper_stream: str | None = None,
    progress: bool = False,
    variant_options: Mapping[str, Method] | None = None,
    wrapper_nfe: int | None = None,
    on_output: Callable[[str, Output], None] | None = None,
) -> dict[str, Output]:
    """The ``variants`` (see the module docstring; ``candidate`` is always among the outputs, ``more`` needs
    ``reguidance`` before it or ``wrapper_nfe``) of the images ``ids`` of ``split``, in the order given.

    Arguments:
        prior: the diffusion prior; ``y`` and the outputs live on its device.
        operator: the batch's forward operator; ``y`` its measurement (on the ``sigma_y`` scale of [-1, 1] images).
        seed, task, split: the run's seed, the task's name and the split: they name the random streams.
        name: the candidate source's name (its random stream ``method/<name>``, e.g. ``dps``).
        method: the candidate source's config (:mod:`reguidance.app.methods`), solved from fresh noise (None when
            ``candidate`` is given and ``more`` is not asked for).
        config: the wrapper (default ``ReGuidance`` with its image options); each variant sets its ``start``.
        candidate: given candidates ``(B, C, H, W)`` in [-1, 1] instead of the method's (no evaluations counted),
            or the method's own candidates computed earlier (an :class:`Output`: its ``nfe`` and ``seconds`` are
            counted in the variants that start from it, as when computed here).
        wrapper_stream: the name in the wrapper's stream ``reguidance/<name>`` (default ``name``).
        progress: per-step progress bars (steps done, elapsed time, ETA) of every loop that runs: the method's
            sampler, the wrapper's inversion and its DPS. They close when done (``leave=False``), so under a
            caller's outer bar each shows on the line below it while it runs.
        variant_options: per ablation, its own config (module docstring): a :class:`ReGuidance` for ``renoise`` /
            ``fresh``; for ``more`` the method's config, whose budget is used as is, or, when its budget option is
            None, is the candidate's scaled by the wrapper's extra evaluations (its step sizes kept). Absent
            ablations take the defaults above.
        wrapper_nfe: the ``reguidance`` variant's evaluations per image (its candidate's included), for ``more``
            when ``reguidance`` is not among ``variants`` (computed earlier).
        on_output: called with each variant's name and :class:`Output` as soon as it is computed (the candidate
            only when the method ran here, not when ``candidate`` is given).
    """
    device = y.device
    cfg = config or ReGuidance.from_options(ReGuidance.image_options)

    def timed(fn: Callable[[], T]) -> tuple[T, float]:
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result, (time.perf_counter() - t0) / len(ids)

    def run_method(config: Method) -> Output:
        problem = Problem(prior, operator, y, method_rng(seed, task, name, ids, device=device, split=split))
        out, seconds = timed(lambda: solve(config, problem, progress=progress))
        return Output(out.x.clamp(-1, 1), out.x, out.nfe, seconds)

    def more(own: Method | None) -> Output:
        if method is None:
            raise ValueError("the 'more' variant needs the method's config")
        key = method.budget_option
        if key is None:
            raise ValueError(f"the 'more' variant needs a method with a step budget; {method.name} has none")
        if own is not None and own.options().get(key) is not None:
            return run_method(own)
        wrapper = outputs["reguidance"].nfe if "reguidance" in outputs else wrapper_nfe
        if wrapper is None:
            raise ValueError(
                "the 'more' variant needs the wrapper's evaluations: ask for 'reguidance' or give wrapper_nfe"
            )
        extra = wrapper - cand.nfe  # the wrapper's own evaluations
        base = method if own is None else own.replace(**{key: method.options()[key]})  # own step sizes
        return run_method(scaled_budget(base, cand.nfe, extra, len(prior.schedule)))

    def wrapped(variant: str, own: Method | None) -> Output:
        rng = wrapper_rng(seed, task, wrapper_stream or name, ids, device=device, split=split)
        variant_cfg = (own if isinstance(own, ReGuidance) else cfg).replace(start=START[variant])
        rg, seconds = timed(
            partial(solve, variant_cfg, Problem(prior, operator, y, rng), candidate=cand.x, progress=progress)
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
    elif method is None:
        raise ValueError("solve_batch needs the method's config or given candidates")
    else:
        cand = run_method(method)
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
