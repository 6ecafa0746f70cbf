"""Where the benchmark's images and metric networks come from.

- ``--dataset mnist`` / ``fashion_mnist``: the test split of the prior's dataset. The full test split is used when
  it is on disk (``reguidance.io.datasets.is_available``); otherwise the committed subset of its first 256 images, so
  that small runs, the demo and the tests work on a fresh clone without any download.
- ``--data folder:PATH`` (:class:`ImageFolder`): every PNG/JPEG file directly in ``PATH``, RGB or gray, with id
  ``i`` = the ``i``-th file in sorted name order. Each image is fitted to the prior's ``(C, H, W)`` by one stated
  rule (:func:`reguidance.io.images.load_images`, ``mode="center_crop"``): the largest central square, then a Pillow
  bicubic resize to ``H x W`` (antialiased when shrinking; skipped at the right size); gray files get their
  value in every channel for an RGB prior, colour files ITU-R 601 luma for a gray one. Files are read when a
  batch needs them. The folder's manifest (file name, sha256, id of every file) is written into the run folder
  and its sha256 joins the run's identity, so a folder whose files change (or gain a file, shifting ids) is
  never answered with old rows. No classifier exists for such a folder: FD-cls and class accuracy are skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..app.runs import known_signal_shape, trained_facts
from ..conventions import InputError
from ..io.datasets import DATASETS, is_available, load_dataset, load_test_subset
from ..tasks import check_ids

if TYPE_CHECKING:
    from ..evaluation.classifier import RealismScorer

__all__ = [
    "ImageFolder",
    "check_candidate_folders",
    "check_images_fit",
    "dataset_for",
    "known_signal_shape",
    "load_classifier_features",
    "load_test_images",
    "parse_data",
]


def dataset_for(prior_name: str, dataset: str | None) -> str:
    """The dataset given, else an embedded prior's, else the one a trained folder was trained on; an
    ``InputError`` when none says."""
    if dataset is not None:
        if dataset not in DATASETS:
            raise InputError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        return dataset
    if prior_name in DATASETS:
        return prior_name
    trained = trained_facts(prior_name)
    if trained is not None and trained.get("config", {}).get("dataset") in DATASETS:
        return str(trained["config"]["dataset"])  # a folder reguidance train wrote from a named data set
    raise InputError(
        f"--prior {prior_name!r} is not an embedded one: pass --dataset ({', '.join(DATASETS)}) or --data folder:PATH"
    )


def check_images_fit(images_shape: Sequence[int], prior_shape: Sequence[int], what: str, prior_name: str) -> None:
    """Refuse (``InputError``) images ``(C, H, W)`` that are not the prior's ``signal_shape``."""
    if tuple(images_shape) != tuple(prior_shape):
        raise InputError(
            f"{what} holds images of shape {tuple(images_shape)} (C, H, W) but the prior {prior_name} models "
            f"{tuple(prior_shape)}; benchmark it on its own data (e.g. --data folder:PATH, resized to the prior)"
        )


def load_test_images(dataset: str, ids: Sequence[int]) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` indexable by test id, covering ``ids`` (full test split, or the committed subset);
    ids past the images available are an ``InputError`` naming the range there is."""
    if is_available(dataset):
        images, labels = load_dataset(dataset, "test")
        hint = ""
    else:
        images, labels, _ = load_test_subset(dataset)
        hint = " (the committed subset; run `make data` for the full test split)"
    check_ids(ids, len(images), where=f"the {len(images)} test images of {dataset} here{hint}")
    return images, labels


class ImageFolder:
    """The images of a folder as a benchmark dataset, read on demand (see the module docstring for the rule),
    each file read through once when the folder is made (:func:`reguidance.io.images.inspect_images`: a file that
    is not an image, too large, truncated or corrupt is an ``InputError`` before the run writes anything).

    ``folder[ids]`` is ``(len(ids), C, H, W)`` float32 in [-1, 1]; ``len(folder)`` the number of files;
    :attr:`labels` is ``-1`` per image (no classes); :meth:`manifest` the file names, sha256 and ids.
    """

    def __init__(self, path: str | Path, signal_shape: Sequence[int], *, inspect: bool = True) -> None:
        from ..io.hashing import sha256_file
        from ..io.images import IMAGE_SUFFIXES, inspect_images

        root = Path(path).expanduser()
        if not root.is_dir():
            raise InputError(f"--data folder:{path}: no such folder")
        self.root = root
        self.files = sorted(
            (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name
        )
        if not self.files:
            suffixes = ", ".join(IMAGE_SUFFIXES)
            raise InputError(f"--data folder:{path} holds no image; expected files ending in {suffixes}")
        c, h, w = (int(s) for s in signal_shape)
        if h != w:
            raise InputError(f"--data folder:{path}: the prior's images are {h}x{w}; folders need a square prior")
        self.shape = (c, h, w)
        if inspect:  # every file read through now, before the run writes anything (False: the caller has)
            inspect_images(self.files, f"--data folder:{path}")
        self.sha256 = [sha256_file(p) for p in self.files]
        self.labels = torch.full((len(self.files),), -1, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, ids: Sequence[int]) -> Tensor:
        from ..io.images import read_images

        c, h, _ = self.shape
        images = read_images([self.files[int(i)] for i in ids], h, c, mode="center_crop")
        return images

    def manifest(self) -> list[dict[str, object]]:
        """``[{"file", "sha256", "id"}, ...]`` for every file, in id order."""
        pairs = zip(self.files, self.sha256, strict=True)
        return [{"file": p.name, "sha256": s, "id": i} for i, (p, s) in enumerate(pairs)]

    def manifest_sha256(self) -> str:
        """The sha256 of the manifest as canonical JSON: what the run's identity holds."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.manifest(), sort_keys=True).encode()).hexdigest()


def check_candidate_folders(methods: Sequence[str], ids: Sequence[int], shape: Sequence[int] | None) -> None:
    """Before anything is written: every ``folder:PATH`` method holds the candidate of each id
    (:func:`reguidance.app.methods.candidate_file`), each file reads through
    (:func:`reguidance.io.images.inspect_images`) and, where the prior's ``shape`` ``(C, H, W)`` is known, has its
    size; an ``InputError`` naming the method and the file."""
    from ..app.methods import candidate_file
    from ..io.images import inspect_images

    for method in methods:
        if not method.startswith("folder:"):
            continue
        root = Path(method[len("folder:") :])
        files = []
        for i in ids:
            file = candidate_file(root, int(i))
            if file is None:
                raise InputError(f"--methods {method}: no {i}.png or {int(i):05d}.png in {root} (one per test id)")
            files.append(file)
        for file, facts in zip(files, inspect_images(files, f"--methods {method}"), strict=True):
            if shape is not None and (facts.height, facts.width) != tuple(shape[1:]):
                raise InputError(
                    f"--methods {method}: {file.name} is {facts.width}x{facts.height}, expected {shape[2]}x{shape[1]}"
                )


def parse_data(spec: str) -> Path:
    """``folder:PATH`` -> ``PATH``; ``InputError`` for any other form."""
    kind, sep, path = spec.partition(":")
    if kind != "folder" or not sep or not path:
        raise InputError(f"--data must look like folder:PATH (a folder of PNG/JPEG images), got {spec!r}")
    return Path(path)


def load_classifier_features(dataset: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
    """``(logits_fn, features_fn)`` of the committed metric classifier of ``dataset``, or None if absent.

    ``logits_fn`` is a :class:`reguidance.evaluation.classifier.RealismScorer`: the runner also takes each image's
    confidence and k-NN distance from it, against the reference training images
    (:func:`reguidance.evaluation.classifier.reference_ids`) when the training split is on disk (read at the first
    batch, never downloaded; without it, no k-NN distance). One scorer per dataset and process, so the reference
    features are computed once per process."""
    scorer = _realism_scorer(dataset)
    return None if scorer is None else (scorer, scorer.features)


@functools.cache
def _realism_scorer(dataset: str) -> RealismScorer | None:
    if dataset not in DATASETS:
        return None
    try:
        from ..evaluation.classifier import RealismScorer, load_classifier, reference_ids
    except ImportError:
        return None
    try:
        model = load_classifier(dataset)
    except (FileNotFoundError, ValueError, KeyError):
        return None

    def reference() -> Tensor | None:
        if not is_available(dataset):
            return None
        images, _ = load_dataset(dataset, "train", download=False)
        return images[reference_ids(len(images))]

    return RealismScorer(model, reference)
