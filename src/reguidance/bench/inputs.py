"""Where the benchmark's images and metric networks come from: the test split of the prior's dataset.

The full test split is used when it is on disk (``reguidance.data.is_available``); otherwise the committed subset
of its first 256 images, so that small runs, the demo and the tests work on a fresh clone without any download.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ..conventions import InputError
from ..data import DATASETS, is_available, load_dataset, load_test_subset

__all__ = ["load_classifier_features", "load_test_images"]


def dataset_for(prior_name: str, dataset: str | None) -> str:
    """The dataset of an embedded prior, or the one given; a ValueError when neither says."""
    if dataset is not None:
        if dataset not in DATASETS:
            raise InputError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        return dataset
    if prior_name in DATASETS:
        return prior_name
    raise InputError(f"--prior {prior_name!r} is not an embedded one: pass --dataset ({', '.join(DATASETS)})")


def load_test_images(dataset: str, ids: Sequence[int]) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` indexable by test id, covering ``ids`` (full test split, or the committed subset);
    ids past the images available are an ``InputError`` naming the range there is."""
    if is_available(dataset):
        images, labels = load_dataset(dataset, "test")
        hint = ""
    else:
        images, labels, _ = load_test_subset(dataset)
        hint = " (the committed subset; run `make data` for the full test split)"
    if max(ids) >= len(images):
        raise InputError(
            f"--ids {min(ids)}:{max(ids) + 1} go past the {len(images)} test images of {dataset} here{hint}: "
            f"ids 0:{len(images)} are available"
        )
    return images, labels


def load_classifier_features(dataset: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
    """``(logits_fn, features_fn)`` of the committed metric classifier of ``dataset``, or None if absent."""
    try:
        from ..classifier import load_classifier
    except ImportError:
        return None
    try:
        model = load_classifier(dataset)
    except (FileNotFoundError, ValueError, KeyError):
        return None

    def logits(x: Tensor) -> Tensor:
        import torch

        with torch.no_grad():
            return model(x.to(next(model.parameters()).device, torch.float32)).cpu()

    def features(x: Tensor) -> Tensor:
        import torch

        with torch.no_grad():
            return model.features(x.to(next(model.parameters()).device, torch.float32)).cpu()

    return logits, features
