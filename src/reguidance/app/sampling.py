"""What ``reguidance sample`` reads and writes: the reference and training images of a data set; the first samples
as a grid, all samples as uint8 ``samples.npz``, the memorisation figure, and the report (FD-cls against the
reference images beside its real-data floor, class histogram, mean confidence, memorisation, the settings). Every
file is written atomically (:mod:`reguidance.io.files`)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io.files import atomic_path, atomic_write_bytes, atomic_write_json

__all__ = [
    "reference_images",
    "sample_report",
    "save_memorisation",
    "save_samples",
    "training_split",
    "write_report",
]

#: the embedded priors trained with horizontal flips (their memorisation counts mirrored training images too)
FLIPPED = ("emoji",)


def reference_images(dataset: str, reference: str) -> Tensor:
    """The real images samples are compared with: the test split of ``dataset`` (``reference="test"``) or its
    committed subset (``"subset"``), ``(M, C, 32, 32)`` in [-1, 1]."""
    from ..io.datasets import load_dataset, load_test_subset

    return load_test_subset(dataset)[0] if reference == "subset" else load_dataset(dataset, "test")[0]


def training_split(dataset: str) -> Tensor:
    """The training split a prior of ``dataset`` was trained on, ``(N, C, 32, 32)`` in [-1, 1]; an ``InputError``
    saying how to get it when it is not on disk."""
    from ..app.methods import training_images
    from ..conventions import InputError

    try:
        return training_images(dataset)
    except FileNotFoundError as err:
        raise InputError(
            f"--memorisation needs the {dataset} training split: {err} (or pass --no-memorisation)"
        ) from err


def save_memorisation(
    x: Tensor, reference: Tensor, train: Tensor, out: Path, prior: str, dataset: str
) -> dict[str, object]:
    """Memorisation of samples ``x`` against ``train`` with ``reference`` as the held-out images
    (:func:`reguidance.evaluation.memorisation.memorisation`); writes ``out/memorisation.png``; returns the report
    without its per-image lists."""
    from ..evaluation.memorisation import memorisation
    from ..io.pictures import save_memorisation_figure

    report = memorisation(x, reference, train, flips=prior in FLIPPED)
    with atomic_path(out / "memorisation.png") as tmp:
        title = f"{prior}: nearest training image of {len(x)} samples and {len(reference)} {dataset} test images"
        save_memorisation_figure(report, x, train, tmp, title=title)
    return {k: v for k, v in report.items() if k not in ("sample_distance", "sample_nearest", "heldout_distance")}


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
