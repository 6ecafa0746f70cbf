r"""Does a prior copy its training images? Nearest-training-image distances of samples against held-out images.

For an image ``x`` (C, H, W) in [-1, 1] and the training set ``T``, its nearest-neighbour distance is the RMS pixel
difference to the closest training image,

    d(x) = min_{t in T'} ||x - t||_2 / sqrt(C H W),

where ``T'`` is ``T`` together with each image mirrored left-right when the prior was trained with flips (a sample
may copy a mirrored training image). A prior that memorises makes samples much closer to some training image than
images it never saw are: the reference is the same distance for *held-out* images (validation or test, never
trained on), whose distances are what "close" means for images of this domain.

:func:`memorisation` reports both distributions (quantiles) and the share of *near-copies*: samples whose distance
is below the 1st percentile of the held-out images' (:data:`NEAR_COPY_QUANTILE`), i.e. closer to a training image
than 99% of real unseen images are. Without memorisation about 1% of samples fall there; a share far above it means
copies. (The rule follows the usual nearest-neighbour tests of the memorisation literature, Somepalli et al. 2023,
Carlini et al. 2023; their thresholds differ, this one is relative to the domain, so it needs no tuning.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..conventions import InputError

__all__ = ["NEAR_COPY_QUANTILE", "QUANTILES", "memorisation", "nearest_training_image"]

#: the held-out quantile below which a sample counts as a near-copy
NEAR_COPY_QUANTILE = 0.01
#: the quantiles reported for both distance distributions
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


def nearest_training_image(
    x: Tensor, train: Tensor, *, flips: bool = False, chunk: int = 2048
) -> tuple[Tensor, Tensor]:
    """``(distance, index)`` (B,) for ``x: (B, C, H, W)``: the RMS distance to the nearest of ``train: (N, C, H, W)``
    (and, with ``flips``, of the training images mirrored left-right) and its index in ``train`` (the same index
    for a mirrored match). Exact float64 squared distances, ``chunk`` training images at a time."""
    if x.dim() != 4 or train.dim() != 4 or tuple(x.shape[1:]) != tuple(train.shape[1:]):
        raise InputError(
            f"images {tuple(x.shape)} and training images {tuple(train.shape)} must be (B, C, H, W) of one shape"
        )
    d = x[0].numel()
    q = x.double().flatten(1)
    q_norm = q.pow(2).sum(1)
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    index = torch.zeros(x.shape[0], dtype=torch.long)
    for start in range(0, train.shape[0], chunk):
        block = train[start : start + chunk].double()
        for candidates in (block, block.flip(-1)) if flips else (block,):
            t = candidates.flatten(1)
            sq = q_norm[:, None] - 2 * q @ t.T + t.pow(2).sum(1)[None]  # (B, n)
            value, k = sq.min(dim=1)
            better = value < best
            best, index = torch.where(better, value, best), torch.where(better, start + k, index)
    return (best.clamp(min=0) / d).sqrt(), index


def _quantiles(values: Tensor) -> dict[str, float]:
    q = torch.quantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return {f"q{round(p * 100):02d}": float(v) for p, v in zip(QUANTILES, q, strict=True)}


def memorisation(samples: Tensor, heldout: Tensor, train: Tensor, *, flips: bool = False) -> dict[str, object]:
    """The report of the module docstring for ``samples`` and ``heldout`` images against ``train`` (all (N, C, H, W)
    in [-1, 1]): quantiles of both distance distributions, the near-copy threshold (the held-out
    :data:`NEAR_COPY_QUANTILE` quantile), the share of samples below it, and per sample its distance and nearest
    training index (for the figure)."""
    if len(heldout) < 2 or len(samples) < 1:
        raise InputError(f"need samples and at least 2 held-out images, got {len(samples)} and {len(heldout)}")
    d_s, i_s = nearest_training_image(samples, train, flips=flips)
    d_h, _ = nearest_training_image(heldout, train, flips=flips)
    threshold = float(torch.quantile(d_h, NEAR_COPY_QUANTILE))
    return {
        "n_samples": len(samples),
        "n_heldout": len(heldout),
        "n_train": len(train),
        "flips": flips,
        "samples": _quantiles(d_s),
        "heldout": _quantiles(d_h),
        "near_copy_threshold": threshold,
        "near_copy_share": float((d_s < threshold).double().mean()),
        "sample_distance": [round(float(v), 5) for v in d_s],
        "sample_nearest": [int(v) for v in i_s],
        "heldout_distance": [round(float(v), 5) for v in d_h],
    }
