"""The candidate sources of the benchmark and of ``restore``, by command-line name, all of them method configs.

Every name maps to a :class:`~reguidance.guidance.solve.Method` class (:data:`METHODS`, :func:`method_class`): the
samplers of :mod:`reguidance.guidance` (``dps``, ``daps``, ``diffpir``, ``reddiff``, ``pigdm``) and three sources
without a network, defined here; ``folder:PATH`` names :class:`FolderCandidates`. A config is run like any method,
``solve(config, problem)``; its output ``x`` is the candidate *before* the final clamp to [-1, 1] (the report
measures how well the unclamped output fits ``y`` too).

- :class:`Pinv` (``pinv``): the operator's pseudo-inverse (mask fill with 0, nearest upsampling, Tikhonov), the
  classical candidate; 0 network evaluations.
- :class:`FolderCandidates` (``folder:PATH``): external candidates, one PNG per test image named ``<id>.png`` or
  ``<id:05d>.png``; the problem's rng says which ids (:func:`candidate_ids`).

**Sanity methods** (:data:`SANITY`), floors every table shows beside the solvers:

- :class:`MeanImage` (``mean``): the mean training image ``(1 / N) sum_j x_j``, whatever ``y`` says;
- :class:`Retrieval` (``retrieval``): the training image whose measurement best explains ``y``,
  ``argmin_j ||y - A(x_j)||^2`` over the whole training split (a sample from the data that fits ``y``; batched over
  the split in chunks of :data:`RETRIEVAL_CHUNK` images, any operator, linear or not).

Both read the ``train`` split (never validation or test images) of their option ``dataset`` (``mnist``,
``fashion_mnist`` or ``emoji``); the benchmark sets it from its run context (the dataset the test images come from),
so it enters the rows' identity with the other options; without it they refuse (``InputError``). The training tensor
is read once per process and cached (:func:`training_images`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from ..conventions import BatchRNG, InputError
from ..diffusion import Schedule
from ..guidance.core import Callback, SampleResult
from ..guidance.registry import METHODS as SAMPLERS
from ..guidance.solve import Method, Problem
from ..operators import Inpainting, Operator

__all__ = [
    "METHODS",
    "RETRIEVAL_CHUNK",
    "SANITY",
    "FolderCandidates",
    "MeanImage",
    "Pinv",
    "Retrieval",
    "candidate_file",
    "candidate_ids",
    "make_method",
    "method_class",
    "needs_linear",
    "retrieve",
    "scaled_budget",
    "training_images",
]


def _result(x: Tensor) -> SampleResult:
    """The output of a source without a network: ``x``, 0 evaluations, no steps."""
    return SampleResult(x=x, nfe=0, timesteps=[], residuals=x.new_zeros(0, x.shape[0]))


@dataclass(frozen=True)
class _Direct(Method):
    """A candidate source without steps: :meth:`candidate` makes the images; ``steps``, ``levels`` and ``latent``
    are refused (there is no chain)."""

    def candidate(self, problem: Problem) -> Tensor:
        raise NotImplementedError

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
    ) -> SampleResult:
        if steps is not None or levels is not None or latent is not None:
            raise InputError(f"{self.label} has no chain: it takes no steps, levels or latent")
        return _result(self.candidate(problem))


@dataclass(frozen=True)
class Pinv(_Direct):
    """The classical candidate: the operator's pseudo-inverse ``pinv(y)`` (one closed-form solve, no network)."""

    name: ClassVar[str] = "pinv"
    label: ClassVar[str] = "pinv"
    needs_linear: ClassVar[bool] = True

    def candidate(self, problem: Problem) -> Tensor:
        return problem.linear_operator(self.label).pinv(problem.measurement)


#: a run's ids, as the benchmark's per-image generators carry them (:class:`FolderCandidates` reads them)
def candidate_ids(rng: BatchRNG) -> list[int]:
    """The image ids a :class:`~reguidance.conventions.BatchRNG` was derived for (one per sample)."""
    ids = rng.ids
    if ids is None:
        raise InputError("folder candidates need the images' ids: a BatchRNG made by BatchRNG.from_seed(seed, ids)")
    return [int(i) for i in ids]


def candidate_file(root: Path, i: int) -> Path | None:
    """The external candidate of image ``i`` in ``root``: ``<i>.png``, else ``<i:05d>.png``; None if absent."""
    return next((root / n for n in (f"{i}.png", f"{i:05d}.png") if (root / n).is_file()), None)


@dataclass(frozen=True)
class FolderCandidates(_Direct):
    """External candidates from ``path``: ``<id>.png`` or ``<id:05d>.png`` per image, read with the prior's channels
    and refused when their size is not the prior's (no resizing)."""

    name: ClassVar[str] = "folder"
    label: ClassVar[str] = "folder"

    path: str = ""

    def check(self) -> None:
        if not Path(self.path).is_dir():
            raise InputError(f"folder candidates: {self.path!r} is not a directory")

    def candidate(self, problem: Problem) -> Tensor:
        from ..io.images import load_images

        root = Path(self.path)
        c, h, w = problem.operator.x_shape
        images = []
        for i in candidate_ids(problem.rng):
            file = candidate_file(root, i)
            if file is None:
                raise InputError(f"folder candidates: no {i}.png or {i:05d}.png in {root}")
            x, _ = load_images(file, None, c)
            if tuple(x.shape[-2:]) != (h, w):
                raise InputError(f"folder candidates: {file} is {x.shape[-1]}x{x.shape[-2]}, expected {w}x{h}")
            images.append(x[0])
        y = problem.measurement
        return torch.stack(images).to(y.device, y.dtype)


#: images read per chunk by :func:`retrieve` (a chunk of MNIST's training split is 2048 x 1024 floats, 8 MiB)
RETRIEVAL_CHUNK = 2048


#: the data sets whose training split a sanity method reads
SANITY_DATASETS = ("mnist", "fashion_mnist", "emoji")


def _dataset_name(method: str, dataset: object) -> str:
    if dataset not in SANITY_DATASETS:
        raise InputError(
            f"the {method} sanity method reads a training split: dataset must be one of {', '.join(SANITY_DATASETS)}, "
            f"got {dataset!r} (the benchmark sets it from the dataset of its test images)"
        )
    return str(dataset)


@functools.lru_cache(maxsize=2)
def training_images(dataset: str) -> Tensor:
    """The training split of ``dataset`` (``(N, C, 32, 32)`` float32 in [-1, 1], :func:`reguidance.io.datasets.
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


@dataclass(frozen=True)
class _Sanity(_Direct):
    """A sanity floor over the training images of ``dataset`` (module docstring); 0 network evaluations."""

    dataset: str = ""

    def check(self) -> None:
        _dataset_name(self.label, self.dataset)

    def pick(self, operator: Operator, y: Tensor, train: Tensor) -> Tensor:
        raise NotImplementedError

    def candidate(self, problem: Problem) -> Tensor:
        return self.pick(problem.operator, problem.measurement, training_images(self.dataset))


@dataclass(frozen=True)
class MeanImage(_Sanity):
    """The sanity floor that ignores ``y``: the mean training image, for every measurement."""

    name: ClassVar[str] = "mean"
    label: ClassVar[str] = "mean"

    def pick(self, operator: Operator, y: Tensor, train: Tensor) -> Tensor:
        mean = train.mean(dim=0, keepdim=True, dtype=torch.float64).to(y.device, y.dtype)
        return mean.expand(y.shape[0], *train.shape[1:]).contiguous()


@dataclass(frozen=True)
class Retrieval(_Sanity):
    """The training image whose measurement best explains ``y`` (:func:`retrieve`)."""

    name: ClassVar[str] = "retrieval"
    label: ClassVar[str] = "retrieval"

    def pick(self, operator: Operator, y: Tensor, train: Tensor) -> Tensor:
        return retrieve(operator, y, train)


#: the sanity methods (module docstring): candidates from the training data, no network
SANITY: dict[str, type[_Sanity]] = {"mean": MeanImage, "retrieval": Retrieval}

#: every candidate source by its command-line name (``folder:PATH`` names :class:`FolderCandidates`)
METHODS: dict[str, type[Method]] = {"pinv": Pinv, **SAMPLERS, **SANITY}


def method_class(name: str) -> type[Method]:
    """The class of the source called ``name`` (``folder:PATH`` is :class:`FolderCandidates`); an InputError lists
    the known ones."""
    if name.startswith("folder:"):
        return FolderCandidates
    if name not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)} or folder:PATH; got {name!r}")
    return METHODS[name]


def needs_linear(name: str) -> bool:
    """Whether the source ``name``, as the benchmark and ``restore`` run it (a sampler with its defaults: RED-diff
    without ``init`` starts from the pseudo-inverse), needs a :class:`~reguidance.operators.LinearOperator`."""
    cls = method_class(name)
    return cls.needs_linear or (name in SAMPLERS and SAMPLERS[name]().linear_only())


def make_method(name: str, options: Mapping[str, object] | None = None) -> Method:
    """The config of the source ``name`` with ``options`` over its defaults (a ``folder:PATH`` name sets ``path``);
    an unknown name, an option it does not have or a value of the wrong type is an InputError naming it."""
    cls = method_class(name)
    given = dict(options or {})
    if cls is FolderCandidates:
        given.setdefault("path", name.split(":", 1)[1])
    return cls.from_options(given)


def scaled_budget(method: Method, nfe: int, extra: int, limit: int | None = None) -> Method:
    """``method`` with its budget (:attr:`~reguidance.guidance.solve.Method.budget_option`) scaled so that it spends
    about ``nfe + extra`` network evaluations per image where it spent ``nfe``: ``steps * (nfe + extra) / nfe``,
    rounded (the ``more`` ablation: the base method given the wrapper's extra evaluations), and at most ``limit``
    (the prior's number of levels: a sampler cannot take more steps than its chain has; it then spends fewer than
    ``nfe + extra``, and the table's NFE column shows it). Its step sizes stay as tuned."""
    key = method.budget_option
    if key is None:
        raise InputError(f"method {method.name!r} has no step budget; only {', '.join(SAMPLERS)}")
    if nfe <= 0:
        raise InputError(f"method {method.name!r} spent no network evaluations; its budget cannot be scaled")
    steps = method.options()[key]
    if not isinstance(steps, int):
        raise InputError(f"method {method.name!r}: {key} must be an integer to be scaled, got {steps!r}")
    scaled = max(steps + 1, round(steps * (nfe + extra) / nfe))
    return method.replace(**{key: scaled if limit is None else min(limit, scaled)})
