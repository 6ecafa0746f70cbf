"""Metrics and their uncertainty: per-sample values in, means with 95% intervals out.

Intervals are normal-approximation intervals ``mean +- 1.96 s / sqrt(n)`` (``s`` the sample standard deviation),
adequate for the n >= 30 samples our reports use. Paired differences are Student-t comparisons
(:func:`reguidance.evaluation.stats.paired_comparison`).
This module imports nothing of ours but the conventions module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor

__all__ = [
    "Interval",
    "fit_z",
    "holm",
    "jackknife_ci95",
    "mean_ci95",
    "proportion_ci95",
    "psnr",
    "ssim",
]

Z95 = 1.959963984540054


class Interval(TypedDict):
    """A mean (or set-level estimate) with its 95% interval ``[lo, hi]``."""

    mean: float
    ci95: list[float]


def mean_ci95(values: Tensor | Sequence[float]) -> Interval:
    """``{"mean": m, "ci95": [lo, hi]}`` of per-sample values (NaN-free); a single value gives a zero-width interval."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("values must hold at least one number")
    mean = float(v.mean())
    half = Z95 * float(v.std()) / math.sqrt(v.numel()) if v.numel() > 1 else 0.0
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def proportion_ci95(successes: Tensor | Sequence[float]) -> Interval:
    """``{"mean": p, "ci95": [lo, hi]}`` of 0/1 outcomes, with the Wilson score interval (stays inside [0, 1] and
    is sensible for small n, unlike the normal approximation)."""
    v = torch.as_tensor(successes, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("successes must hold at least one outcome")
    n, p = v.numel(), float(v.mean())
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"mean": p, "ci95": [max(0.0, centre - half), min(1.0, centre + half)]}


def jackknife_ci95(estimate: float, leave_one_out: Tensor | Sequence[float], lower: float | None = None) -> Interval:
    """``{"mean": estimate, "ci95": [lo, hi]}`` for a set-level statistic (e.g. a Frechet distance) from its
    leave-one-out values ``v_i`` (one per left-out sample, or per left-out group of equal size for the
    delete-a-group jackknife): ``estimate +- 1.96 se`` with ``se^2 = (n-1)/n sum_i (v_i - mean v)^2``, ``n`` the
    number of values; ``lower`` clips the low end (0 for distances)."""
    v = torch.as_tensor(leave_one_out, dtype=torch.float64).flatten()
    if v.numel() < 2:
        raise ValueError("leave_one_out must hold at least two values")
    n = v.numel()
    half = Z95 * math.sqrt((n - 1) / n * float((v - v.mean()).pow(2).sum()))
    lo = estimate - half if lower is None else max(lower, estimate - half)
    return {"mean": float(estimate), "ci95": [lo, estimate + half]}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``m`` p-values (family-wise error control, any dependence): with the
    p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted ``q_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``;
    returned in the input's order. A test is significant at level ``a`` when its adjusted value is below ``a``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def fit_z(residual_norm: Tensor, sigma_y: float, num_measurements: int | Tensor) -> Tensor:
    r"""The noise-calibrated fit to ``y``, per sample (B,): ``(||y - A x||^2 / sigma_y^2 - m) / sqrt(2 m)``.

    ``residual_norm`` is ``||y - A(x)||_2`` (B,) (:meth:`reguidance.operators.Operator.residual_norm`), ``sigma_y``
    the measurement noise's standard deviation on the images' [-1, 1] scale (> 0), ``m`` the number of observed
    entries per sample (an int, or (B,) for per-sample masks).

    Law. With ``y = A(x0) + sigma_y n``, ``n ~ N(0, I_m)``, at ``x = x0`` the statistic ``||y - A x0||^2 / sigma_y^2
    = ||n||^2`` is chi-square with ``m`` degrees of freedom (mean ``m``, variance ``2 m``), so ``fit_z`` has mean 0
    and variance 1, and is close to N(0, 1) for the m >= 16 of our tasks. A restoration that explains ``y`` up to the
    noise has ``|fit_z|`` of order 1; one that fits the noise (a pseudo-inverse: residual 0) has ``fit_z =
    -sqrt(m / 2)``, and one that misses ``y`` has ``fit_z`` far above 0. Hence ``|fit_z|`` (closer to 0 is better)
    votes, where the raw reward ``-||y - A x||^2`` rewards fitting the noise.

    Why this and not ``|consistency - 1|``: ``consistency^2 = 1 + fit_z sqrt(2 / m)``, so both are 0 at the same
    place, but ``consistency`` has null spread ``1 / sqrt(2 m)``, which depends on the task (0.18 for sr8's 16
    measurements, 0.03 for a 624-pixel inpainting), while ``fit_z`` is in units of its null standard deviation on
    every task, so one equivalence margin and one reading ("|fit_z| < 2: consistent with the noise") serve them all.
    It is computed on the output *before* the clamp to [-1, 1]: clamping alone moves an over-fitted output towards
    ``fit_z = 0``, which is the artefact this metric must not reward.
    """
    if sigma_y <= 0:
        raise ValueError(f"sigma_y must be > 0 for the chi-square fit statistic, got {sigma_y}")
    r2 = residual_norm.detach().double().pow(2) / sigma_y**2
    m = torch.as_tensor(num_measurements, dtype=torch.float64, device=r2.device)
    return (r2 - m) / torch.sqrt(2 * m)


def _to_unit(x: Tensor) -> Tensor:
    return ((x.detach().double() + 1) / 2).clamp(0, 1)


#: the PSNR recorded for an exact restoration (MSE 0, infinite PSNR): 100 dB, an MSE of 1e-10 on [0, 1], far above
#: any real restoration's, so that every row holds a finite number a summary can average and a resumed run can read
PSNR_CEILING = 100.0


def psnr(x: Tensor, truth: Tensor) -> Tensor:
    """Per-image PSNR in dB (B,) of images in [-1, 1], computed on [0, 1] (data range 1) with torchmetrics,
    ``10 log10(1 / MSE)``, at most :data:`PSNR_CEILING` (an exact restoration)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    dims = tuple(range(1, x.dim()))
    value = peak_signal_noise_ratio(_to_unit(x), _to_unit(truth), data_range=1.0, reduction="none", dim=dims)
    return value.clamp(max=PSNR_CEILING)


def ssim(x: Tensor, truth: Tensor) -> Tensor:
    """Per-image SSIM (B,) of images (B, C, H, W) in [-1, 1] on [0, 1], torchmetrics' Gaussian 11x11 window."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    value = structural_similarity_index_measure(_to_unit(x), _to_unit(truth), data_range=1.0, reduction="none")
    assert isinstance(value, Tensor)  # a tuple only with return_full_image or return_contrast_sensitivity
    return value
