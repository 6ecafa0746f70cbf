"""Candidate-producing methods for the benchmark, by command-line name.

A method maps ``(prior, operator, measurement, rng, ids, *, progress=False, **options)`` to :class:`Candidates`
``(x, nfe, raw)``: candidates ``x (B, C, H, W)`` in [-1, 1], the network evaluations it spent per image, and
``raw``, the output before the final clamp to [-1, 1] (the report measures how well the unclamped output fits ``y``
too). ``progress=True`` shows a sampler's per-step bar with its ETA (:func:`reguidance.guidance.core.run`; methods
without steps ignore it). ``folder:PATH`` reads external candidates, one PNG per test image named ``<id>.png`` or
``<id:05d>.png``.

**Sanity methods** (:data:`SANITY`), floors every table shows beside the solvers:

- ``mean``: the mean training image ``(1 / N) sum_j x_j``, whatever ``y`` says (0 network evaluations);
- ``retrieval``: the training image whose measurement best explains ``y``, ``argmin_j ||y - A(x_j)||^2`` over the
  whole training split (a sample from the data that fits ``y``; 0 network evaluations, batched over the split in
  chunks of :data:`RETRIEVAL_CHUNK` images, any operator, linear or not).

Both take one option, ``dataset``: the name of the training split they read (``mnist`` or ``fashion_mnist``,
:func:`reguidance.io.datasets.load_dataset`, split ``train``: never the validation or test images). The benchmark sets
it from its run context (the dataset the test images come from, ``BenchSpec.context["dataset"]``), so it enters the
rows' identity with the other options; without it they refuse (``InputError``). The training tensor is read once
per process and cached (:func:`training_images`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..conventions import BatchRNG, InputError
from ..guidance.registry import METHODS as SAMPLERS
from ..guidance.registry import method_config, method_option_names
from ..guidance.solve import Problem, solve
from ..operators import Inpainting, LinearOperator, Operator
from ..priors.base import Prior

__all__ = [
    "METHODS",
    "RETRIEVAL_CHUNK",
    "SANITY",
    "Candidates",
    "MethodFn",
    "budget_option",
    "check_method_options",
    "get_method",
    "has_budget",
    "method_option_defaults",
    "needs_linear",
    "retrieve",
    "scaled_budget",
    "training_images",
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
    if method in SANITY:
        return {"dataset": ""}
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
    if method in SANITY and "dataset" in options:
        _dataset_name(method, options["dataset"])
    return dict(options)


def needs_linear(method: str) -> bool:
    """Whether ``method`` refuses a nonlinear operator: ``pinv`` (a pseudo-inverse), DiffPIR and PiGDM (they solve
    with ``A`` and its adjoint) and RED-diff (its start is ``pinv(y)``; the benchmark gives it no ``init``)."""
    return method in ("pinv", "reddiff") or (method in SAMPLERS and SAMPLERS[method].needs_linear)


def has_budget(method: str) -> bool:
    """Whether ``method`` has a network-evaluation budget to scale (every sampler; not ``pinv``, the sanity
    methods or ``folder:``): the ``more`` ablation exists only for these."""
    return method in SAMPLERS


def budget_option(method: str) -> str:
    """The option that scales ``method``'s network-evaluation budget: ``"steps"`` (the number of levels) for every
    sampler; an InputError for methods without one (``pinv``, ``folder:``)."""
    if not has_budget(method):
        raise InputError(f"method {method!r} has no step budget; only {', '.join(SAMPLERS)}")
    return "steps"


def scaled_budget(
    method: str, options: dict[str, object], nfe: int, extra: int, limit: int | None = None
) -> dict[str, object]:
    """``options`` with ``method``'s budget (:func:`budget_option`) scaled so that it spends about ``nfe + extra``
    network evaluations per image where it spent ``nfe``: ``steps * (nfe + extra) / nfe``, rounded (the ``more``
    ablation: the base method given the wrapper's extra evaluations), and at most ``limit`` (the prior's number of
    levels: a sampler cannot take more steps than its chain has; it then spends fewer than ``nfe + extra``, and
    the table's NFE column shows it). Its step sizes stay as tuned."""
    key = budget_option(method)
    if nfe <= 0:
        raise InputError(f"method {method!r} spent no network evaluations; its budget cannot be scaled")
    steps = options[key]
    if not isinstance(steps, int):
        raise InputError(f"method {method!r}: {key} must be an integer to be scaled, got {steps!r}")
    scaled = max(steps + 1, round(steps * (nfe + extra) / nfe))
    return {**options, key: scaled if limit is None else min(limit, scaled)}


def candidate_file(root: Path, i: int) -> Path | None:
    """The external candidate of test image ``i`` in ``root``: ``<i>.png``, else ``<i:05d>.png``; None if absent."""
    return next((root / n for n in (f"{i}.png", f"{i:05d}.png") if (root / n).is_file()), None)


def folder_method(path: str | Path) -> MethodFn:
    """External candidates from ``path``: ``<id>.png`` or ``<id:05d>.png`` per test image (:func:`candidate_file`)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"folder candidates: {root} is not a directory")

    def load(
        prior: Prior, operator: Operator, y: Tensor, rng: BatchRNG, ids: Sequence[int], *, progress: bool = False
    ) -> Candidates:
        from ..io.images import load_images

        c, h, w = prior.signal_shape
        images = []
        for i in ids:
            file = candidate_file(root, i)
            if file is None:
                raise InputError(f"folder candidates: no {i}.png or {i:05d}.png in {root}")
            x, _ = load_images(file, None, c)
            if tuple(x.shape[-2:]) != (h, w):
                raise InputError(f"folder candidates: {file} is {x.shape[-1]}x{x.shape[-2]}, expected {w}x{h}")
            images.append(x[0])
        x = torch.stack(images).to(y.device, y.dtype)
        return Candidates(x, 0, x)

    return load


#: images read per chunk by :func:`retrieve` (a chunk of MNIST's training split is 2048 x 1024 floats, 8 MiB)
RETRIEVAL_CHUNK = 2048


def _dataset_name(method: str, dataset: object) -> str:
    from ..io.datasets import DATASETS

    if dataset not in DATASETS:
        raise InputError(
            f"the {method} sanity method reads a training split: dataset must be one of {', '.join(DATASETS)}, "
            f"got {dataset!r} (the benchmark sets it from the dataset of its test images)"
        )
    return str(dataset)


@functools.lru_cache(maxsize=2)
def training_images(dataset: str) -> Tensor:
    """The training split of ``dataset`` (``(N, 1, 32, 32)`` float32 in [-1, 1], :func:`reguidance.io.datasets.
    load_dataset`), read once per process."""
    from ..io.datasets import load_dataset

    return load_dataset(dataset, "train")[0]


def retrieve(operator: Operator, y: Tensor, train: Tensor, chunk: int = RETRIEVAL_CHUNK) -> Tensor:
    """``train[j*(i)]`` for each measurement ``y_i`` with ``j*(i) = argmin_j ||y_i - A_i(x_j)||^2`` (the first on a
    tie): ``y (B, *y_shape)``, ``train (N, *x_shape)`` on any device; the images come back ``(B, *x_shape)`` in
    ``y``'s dtype and device. ``A_i`` is sample ``i``'s operator (``operator.select(i)`` when it holds per-sample
    parameters, such as random boxes). Exact squared distances, computed ``chunk`` training images at a time."""
    operator.check_measurement(y)
    if isinstance(operator, Inpainting) and operator.batch_size is not None:
        return _retrieve_masked(operator, y, train, chunk)
    per_sample = operator.batch_size is not None
    best = torch.full((y.shape[0],), float("inf"), dtype=torch.float64, device=y.device)
    index = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    with torch.no_grad():
        for start in range(0, train.shape[0], chunk):
            xs = train[start : start + chunk].to(y.device, y.dtype)
            shared = None if per_sample else operator(xs).flatten(1)
            if shared is not None:  # all measurements against the chunk at once, in float64
                yy, ax = y.double().flatten(1), shared.double()
                d = yy.pow(2).sum(dim=1)[:, None] - 2 * yy @ ax.T + ax.pow(2).sum(dim=1)[None]  # (B, n)
                value, k = d.min(dim=1)
                better = value < best
                best, index = torch.where(better, value, best), torch.where(better, start + k, index)
                continue
            for i in range(y.shape[0]):
                d = (operator.select([i])(xs).flatten(1) - y[i].flatten()).double().pow(2).sum(dim=1)
                j = int(d.argmin())
                if d[j] < best[i]:
                    best[i], index[i] = d[j], start + j
    return train[index.cpu()].to(y.device, y.dtype)


def _retrieve_masked(operator: Inpainting, y: Tensor, train: Tensor, chunk: int) -> Tensor:
    """:func:`retrieve` for per-image masks ``m_i`` without a loop over images: ``||y_i - m_i x_j||^2 =
    ||y_i||^2 - 2 <y_i, m_i x_j> + <m_i, x_j^2>``, two float64 matrix products per chunk."""
    b = y.shape[0]
    m = operator.mask.to(y.device, torch.float64).expand(b, *operator.x_shape).flatten(1)  # (B, d)
    yy = y.double().flatten(1)
    my = m * yy
    norm_y = yy.pow(2).sum(dim=1)
    best = torch.full((b,), float("inf"), dtype=torch.float64, device=y.device)
    index = torch.zeros(b, dtype=torch.long, device=y.device)
    for start in range(0, train.shape[0], chunk):
        xs = train[start : start + chunk].to(y.device, torch.float64).flatten(1)  # (n, d)
        d = norm_y[:, None] - 2 * my @ xs.T + m @ xs.pow(2).T  # (B, n)
        value, k = d.min(dim=1)
        better = value < best
        best, index = torch.where(better, value, best), torch.where(better, start + k, index)
    return train[index.cpu()].to(y.device, y.dtype)


def _mean_image(operator: Operator, y: Tensor, train: Tensor) -> Tensor:
    """The sanity floor that ignores ``y``: the mean training image, for every measurement."""
    mean = train.mean(dim=0, keepdim=True, dtype=torch.float64).to(y.device, y.dtype)
    return mean.expand(y.shape[0], *train.shape[1:]).contiguous()


def _sanity(name: str, pick: Callable[[Operator, Tensor, Tensor], Tensor]) -> MethodFn:
    """A sanity method: ``pick(operator, y, train)`` over the training images of its ``dataset`` option
    (0 network evaluations; the module docstring)."""

    def run(
        prior: Prior,
        operator: Operator,
        y: Tensor,
        rng: BatchRNG,
        ids: Sequence[int],
        *,
        progress: bool = False,
        dataset: str = "",
    ) -> Candidates:
        x = pick(operator, y, training_images(_dataset_name(name, dataset)))
        return Candidates(x, 0, x)

    run.__doc__ = pick.__doc__
    return run


#: the sanity methods (module docstring): candidates from the training data, no network
SANITY: dict[str, MethodFn] = {"mean": _sanity("mean", _mean_image), "retrieval": _sanity("retrieval", retrieve)}

METHODS: dict[str, MethodFn] = {"pinv": pinv_method, **{name: _solver(name) for name in SAMPLERS}, **SANITY}


def get_method(name: str) -> MethodFn:
    """The method called ``name`` (or ``folder:PATH``); an InputError lists the known ones."""
    if name.startswith("folder:"):
        return folder_method(name.split(":", 1)[1])
    if name not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)} or folder:PATH; got {name!r}")
    return METHODS[name]
