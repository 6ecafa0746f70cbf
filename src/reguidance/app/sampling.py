"""What ``reguidance sample`` writes: the first samples as a grid, all samples as uint8 ``samples.npz``, and the
report (FD-cls against the reference images, class histogram, mean confidence, the settings). Every file is
written atomically (:mod:`reguidance.io.files`)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io.files import atomic_path, atomic_write_bytes, atomic_write_json

__all__ = ["sample_report", "save_samples", "write_report"]


def save_samples(x: Tensor, out: Path, grid: int = 100) -> tuple[Path, Path]:
    """``out/samples.png`` (the first ``grid`` samples, 10 per row) and ``out/samples.npz`` (``images``: every
    sample of ``x: (N, C, H, W)`` in [-1, 1] as uint8 ``(N, C, H, W)``, ``round((x + 1) * 127.5)``)."""
    from ..io.images import save_grid

    png, npz = out / "samples.png", out / "samples.npz"
    with atomic_path(png) as tmp:
        save_grid(x[:grid], tmp, nrow=10)
    pixels = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    np.savez(buffer, images=pixels)
    atomic_write_bytes(npz, buffer.getvalue())
    return png, npz


def sample_report(settings: Mapping[str, object], scores: Mapping[str, object], wall_s: float) -> dict[str, object]:
    """The report: the sampling ``settings``, its wall time (s, one decimal) and the classifier's ``scores``."""
    return {**settings, "sampling_wall_s": round(wall_s, 1), **scores}


def write_report(report: Mapping[str, object], path: Path) -> Path:
    """Write ``report`` as JSON to ``path`` atomically; returns the path."""
    return atomic_write_json(path, report)
