"""The pinned benchmark protocol: hard tasks at 32x32, per-image operators and seeds derived from image ids.

Tasks (images ``(1, 32, 32)`` in [-1, 1]; ``sigma_y`` on that scale; chosen to be as hard relative to the image as
the paper's 256x256 tasks — a 128x128 box there is a 16x16 box here):

========  =====================================================================  =========
name      operator                                                               sigma_y
========  =====================================================================  =========
box16     16x16 box missing (25% of the image), random position per image         0.05
box20     20x20 box missing (39%), random position per image                     0.05
box16c    16x16 box missing, centred                                             0.05
box20c    20x20 box missing, centred                                             0.05
sr4       x4 super-resolution by average pooling (8x8 measured)                  0.05
sr8       x8 super-resolution by average pooling (4x4 measured)                  0.05
deblur    Gaussian blur, std 2 px, 13x13 kernel, circular; heavy noise          0.2
========  =====================================================================  =========

Every random choice of image ``id`` under run ``seed`` (its box position, its measurement noise) comes from a
generator seeded by ``(seed, task, stream, id)``: any image of any run can be recomputed alone, in any batch.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..conventions import BatchRNG, InputError, derive_seed
from ..operators import GaussianBlur, Inpainting, Operator, SuperResolution

__all__ = ["TASKS", "Task", "method_rng", "parse_ids", "stream_rng", "wrapper_rng"]


def stream_rng(seed: int, task: str, stream: str, ids: Sequence[int], device: torch.device | str = "cpu") -> BatchRNG:
    """Per-image generators for one named random ``stream`` (e.g. ``"mask"``, ``"noise"``) of ``task``."""
    salt = zlib.crc32(f"{task}/{stream}".encode())
    return BatchRNG.from_seed(derive_seed(seed, salt), list(ids), device=device)


def method_rng(seed: int, task: str, method: str, ids: Sequence[int], device: torch.device | str = "cpu") -> BatchRNG:
    """The generators of ``method``'s candidates on ``task`` (stream ``method/<method>``)."""
    return stream_rng(seed, task, f"method/{method}", ids, device=device)


def wrapper_rng(seed: int, task: str, method: str, ids: Sequence[int], device: torch.device | str = "cpu") -> BatchRNG:
    """The generators of ReGuidance on top of ``method``'s candidates on ``task`` (stream ``reguidance/<method>``)."""
    return stream_rng(seed, task, f"reguidance/{method}", ids, device=device)


@dataclass(frozen=True)
class Task:
    """A hard inverse problem on ``(C, H, W)`` images: how to build its operator for given image ids."""

    name: str
    kind: Literal["box", "box_centred", "sr", "deblur"]
    size: int  # box side, super-resolution factor, or blur kernel size
    sigma_y: float
    blur_sigma: float = 0.0

    def operator(self, ids: Sequence[int], seed: int, x_shape: Sequence[int] = (1, 32, 32)) -> Operator:
        """The operator for images ``ids`` of a run seeded with ``seed`` (per-image masks for random boxes)."""
        if self.kind == "box":
            return Inpainting.random_box(x_shape, self.size, stream_rng(seed, self.name, "mask", ids), self.sigma_y)
        if self.kind == "box_centred":
            return Inpainting.box(x_shape, self.size, sigma_y=self.sigma_y)
        if self.kind == "sr":
            return SuperResolution(x_shape, self.size, kind="avgpool", sigma_y=self.sigma_y)
        return GaussianBlur(x_shape, kernel_size=self.size, blur_sigma=self.blur_sigma, sigma_y=self.sigma_y)

    def measure(self, x: Tensor, ids: Sequence[int], seed: int) -> tuple[Operator, Tensor]:
        """``(operator, y)`` for ground truths ``x`` (B, C, H, W) with image ids ``ids``."""
        if x.shape[0] != len(ids):
            raise ValueError(f"x has {x.shape[0]} images but {len(ids)} ids were given")
        operator = self.operator(ids, seed, tuple(x.shape[1:])).to(x.device)
        return operator, operator.measure(x, stream_rng(seed, self.name, "noise", ids, device=x.device))


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("box16", "box", 16, 0.05),
        Task("box20", "box", 20, 0.05),
        Task("box16c", "box_centred", 16, 0.05),
        Task("box20c", "box_centred", 20, 0.05),
        Task("sr4", "sr", 4, 0.05),
        Task("sr8", "sr", 8, 0.05),
        Task("deblur", "deblur", 13, 0.2, blur_sigma=2.0),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; a ValueError lists the known ones."""
    if name not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}; got {name!r}")
    return TASKS[name]


def parse_ids(spec: str, limit: int | None = None) -> range:
    """``"A:B"`` -> ``range(A, B)`` (test-split indices A to B-1); ``limit`` is the split's size."""
    parts = spec.split(":")
    try:
        start, stop = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (None, None)
    except ValueError:
        start = stop = None
    if start is None or stop is None:
        raise InputError(f"--ids must look like A:B with integers A < B, got {spec!r}")
    if start < 0 or stop <= start:
        raise InputError(f"--ids must satisfy 0 <= A < B, got {spec!r}")
    if limit is not None and stop > limit:
        raise InputError(f"--ids {spec!r} go past the split's {limit} images (ids 0:{limit} are available)")
    return range(start, stop)
