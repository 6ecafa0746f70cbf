"""Metrics and their uncertainty: per-sample values in, means with 95% intervals out.

Per image: PSNR, the standard SSIM (Wang et al. 2004, statistics over the valid region) and, as a labelled
secondary, torchmetrics' default SSIM (averaged over a mirror-padded border); the fit to ``y`` in units of its noise
law (``fit_z``) and the two-sided chi-square p-value of the same residual (``fit_p``).

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

from ..conventions import InputError

__all__ = [
    "SSIM_KIND",
    "Interval",
    "chi2_tails",
    "fit_p",
    "fit_z",
    "holm",
    "jackknife_ci95",
    "mean_ci95",
    "proportion_ci95",
    "psnr",
    "ssim",
    "ssim_padded",
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


def chi2_tails(statistic: Tensor, dof: int | Tensor) -> tuple[Tensor, Tensor]:
    """``(P(X <= q), P(X > q))`` for ``X`` chi-square with ``dof`` degrees of freedom, per entry of ``statistic``
    ``q`` (float64): the regularised incomplete gamma functions ``P(dof / 2, q / 2)`` and ``Q(dof / 2, q / 2)``
    (:func:`torch.special.gammainc`, :func:`torch.special.gammaincc`), each computed directly, so a tail of 1e-300
    keeps its digits instead of being ``1 - (1 - p)``."""
    q = statistic.detach().double().clamp(min=0) / 2
    k = torch.as_tensor(dof, dtype=torch.float64, device=q.device).expand_as(q) / 2
    return torch.special.gammainc(k, q), torch.special.gammaincc(k, q)


def fit_p(residual_norm: Tensor, sigma_y: float, num_measurements: int | Tensor) -> Tensor:
    r"""The two-sided chi-square p-value of the fit to ``y``, per sample (B,): with ``q = ||y - A x||^2 / sigma_y^2``
    and ``F`` the chi-square law with ``m`` degrees of freedom, ``p = min(1, 2 min(F(q), 1 - F(q)))``.

    Same inputs and law as :func:`fit_z` (``q`` follows chi-square(m) at the truth, ``y = A x0 + sigma_y n``), but
    exact in the tails where ``fit_z``'s normal reading is not: a small ``p`` says the residual is implausible under
    the noise law, either *too small* (``F(q)`` below ``p / 2``: the output fits part of the noise; then ``fit_z <
    0``) or *too large* (``1 - F(q)`` below ``p / 2``: it does not explain ``y``; then ``fit_z > 0``, since the upper
    tail starts above the law's mean ``m``). At the truth ``p`` is uniform on [0, 1], so a share of about ``a`` of
    images has ``p < a``; a share well above ``a`` flags a method. Equal tails (twice the smaller one) are the usual
    two-sided reading of an asymmetric law. Computed on the output before the clamp, as ``fit_z``.
    """
    if sigma_y <= 0:
        raise ValueError(f"sigma_y must be > 0 for the chi-square fit statistic, got {sigma_y}")
    q = residual_norm.detach().double().pow(2) / sigma_y**2
    lower, upper = chi2_tails(q, num_measurements)
    return (2 * torch.minimum(lower, upper)).clamp(max=1.0)


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


#: which SSIM a results row's (and a summary's) ``ssim`` holds, recorded beside it as ``ssim_kind``: the standard
#: one of :func:`ssim`. Rows and summaries without the field were written before it existed and hold torchmetrics'
#: padded variant (:func:`ssim_padded`) under ``ssim``; every reader maps that value to ``ssim_padded``
#: (:func:`reguidance.bench.records.read_results`), so it is never read or reported as the standard one
SSIM_KIND = "wang2004"
#: the standard SSIM's constants (Wang et al. 2004): an 11 x 11 Gaussian window of standard deviation 1.5, K1, K2
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _gaussian_window(size: int, sigma: float) -> Tensor:
    """The (size, size) float64 Gaussian window ``w(i, j) ~ exp(-(i^2 + j^2) / (2 sigma^2))``, ``i, j`` from
    ``-(size // 2)`` to ``size // 2``, summing to 1."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, truth: Tensor) -> Tensor:
    r"""The standard SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) per image (B,) of ``x, truth: (B, C, H, W)`` in
    [-1, 1], ``H, W >= 11``, computed on the displayed images ``u = (x + 1) / 2`` in [0, 1] (clamped, as
    :func:`psnr`) with data range ``L = 1``.

    At each position ``p`` where the window fits inside the image (the *valid* region, ``(H - 10) x (W - 10)``
    positions: no padding), with ``w`` the 11 x 11 Gaussian window of standard deviation 1.5 (summing to 1) and
    weighted moments ``mu_x = sum w x``, ``sigma_x^2 = sum w x^2 - mu_x^2``, ``sigma_xy = sum w x y - mu_x mu_y``
    (population moments, not the sample ``n / (n - 1)`` ones):

        SSIM(p) = (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2)),

    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``; the image's SSIM is the mean over the valid positions and the channels
    (a colour image: the mean of its channels' SSIM). It equals scikit-image's ``structural_similarity(u, v,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.

    Why [0, 1] and not [-1, 1] with ``L = 2``: SSIM is unchanged when both images and ``L`` are *scaled* together
    ([0, 1] with ``L = 1`` and [0, 255] with ``L = 255`` agree, so every published SSIM is comparable), but not when
    they are *shifted*: the luminance term ``(2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)`` changes sign when the means
    straddle 0, so SSIM on [-1, 1] is another number (about half the standard one on noisy mid-grey images) that no
    paper reports.
    """
    if x.shape != truth.shape or x.dim() != 4:
        raise InputError(
            f"ssim needs x and truth of equal shape (B, C, H, W), got {tuple(x.shape)} and {tuple(truth.shape)}"
        )
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise InputError(
            f"ssim needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels (its window), got "
            f"{tuple(x.shape[-2:])}"
        )
    b, c, h, w = x.shape
    u, v = _to_unit(x).reshape(b * c, 1, h, w), _to_unit(truth.to(x.device)).reshape(b * c, 1, h, w)
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(u.device)[None, None]
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # L = 1
    stacked = torch.cat([u, v, u * u, v * v, u * v], dim=1).reshape(-1, 1, h, w)
    moments = torch.nn.functional.conv2d(stacked, window)  # no padding: the valid positions only
    mu_x, mu_y, xx, yy, xy = moments.reshape(b * c, 5, h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1).unbind(dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.mean(dim=(-2, -1)).reshape(b, c).mean(dim=1)


def ssim_padded(x: Tensor, truth: Tensor) -> Tensor:
    """torchmetrics' default SSIM per image (B,) of ``x, truth: (B, C, H, W)`` in [-1, 1], computed on [0, 1]
    (clamped): the same Gaussian 11 x 11 window and constants, but the images mirror-padded by 5 pixels and the map
    averaged over all ``H x W`` positions, so the border positions whose window reaches into the mirror count too
    (on a 32 x 32 image 540 of the 1024, 53%, lie outside the standard's valid region of 22 x 22). Kept as a labelled
    secondary (``ssim_padded`` in the rows) because the study's records written before the standard :func:`ssim`
    hold it; never report it as SSIM."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    value = structural_similarity_index_measure(_to_unit(x), _to_unit(truth), data_range=1.0, reduction="none")
    assert isinstance(value, Tensor)  # a tuple only with return_full_image or return_contrast_sensitivity
    return value
