"""Metrics a reviewer accepts, each against a field-standard implementation: the standard SSIM against
scikit-image, the chi-square fit p-value against scipy.stats.chi2, the signed-rank test against scipy.stats.wilcoxon,
and the robust companions of the paired t-interval (median, wins / ties / losses) by hand."""

from __future__ import annotations

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.evaluation import stats
from reguidance.evaluation.metrics import chi2_tails, fit_p, fit_z, ssim, ssim_padded
from reguidance.io.datasets import load_test_subset
from reguidance.operators import Inpainting, SuperResolution

skimage_metrics = pytest.importorskip("skimage.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


def _skimage_ssim(x: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """scikit-image's Gaussian SSIM (Wang et al.'s settings) of images (B, C, H, W) in [-1, 1], on [0, 1]."""
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
    u, v = ((x.double() + 1) / 2).numpy(), ((truth.double() + 1) / 2).numpy()
    return [float(skimage_metrics.structural_similarity(a, b, channel_axis=0, **kw)) for a, b in zip(u, v, strict=True)]


def _fixtures() -> tuple[torch.Tensor, torch.Tensor]:
    """Restoration-like pairs from the committed MNIST and Fashion-MNIST test images: a blurred, a noisy, a shifted
    digit and the mean image against the truths, gray and (three items as channels) colour."""
    g = torch.Generator().manual_seed(0)
    digits = load_test_subset("mnist")[0][:4].double()
    items = load_test_subset("fashion_mnist")[0][:3].double()
    blurred = torch.nn.functional.avg_pool2d(digits[:1], 3, stride=1, padding=1, count_include_pad=False)
    noisy = (digits[1:2] + 0.3 * torch.randn(1, 1, 32, 32, generator=g, dtype=torch.float64)).clamp(-1, 1)
    shifted = torch.roll(digits[2:3], 1, dims=-1)
    mean = digits.mean(0, keepdim=True)
    x = torch.cat([blurred, noisy, shifted, mean, torch.roll(items, 2, dims=-2)])
    truth = torch.cat([digits[:3], digits[3:4], items])
    return x, truth


def test_ssim_is_scikit_images_gaussian_ssim_on_gray_fixtures():
    x, truth = _fixtures()
    got = ssim(x, truth)
    assert got.shape == (7,)
    assert got.tolist() == pytest.approx(_skimage_ssim(x, truth), abs=1e-10)


def test_ssim_of_a_colour_image_is_the_mean_of_its_channels_as_scikit_image_computes_it():
    x, truth = _fixtures()
    colour_x, colour_truth = x[4:7].reshape(1, 3, 32, 32), truth[4:7].reshape(1, 3, 32, 32)
    got = float(ssim(colour_x, colour_truth)[0])
    assert got == pytest.approx(_skimage_ssim(colour_x, colour_truth)[0], abs=1e-10)
    assert got == pytest.approx(float(ssim(x[4:7], truth[4:7]).mean()), abs=1e-12)


def test_ssim_uses_the_valid_region_only_on_a_non_square_image_of_window_size():
    g = torch.Generator().manual_seed(3)
    truth = torch.rand(2, 1, 11, 17, generator=g, dtype=torch.float64) * 2 - 1
    x = (truth + 0.2 * torch.randn(2, 1, 11, 17, generator=g, dtype=torch.float64)).clamp(-1, 1)
    assert ssim(x, truth).tolist() == pytest.approx(_skimage_ssim(x, truth), abs=1e-10)
    assert ssim(truth, truth).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_ssim_is_computed_on_the_unit_scale_where_it_agrees_with_the_0_255_convention():
    # SSIM is unchanged by scaling both images and the data range (0..1 with L = 1 is 0..255 with L = 255) but not
    # by shifting them: [-1, 1] with L = 2 is another number, which is why the library measures on [0, 1]
    x, truth = _fixtures()
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    u, v = ((x[1, 0] + 1) / 2).numpy(), ((truth[1, 0] + 1) / 2).numpy()
    on_255 = skimage_metrics.structural_similarity(255 * u, 255 * v, data_range=255, **kw)
    on_signed = skimage_metrics.structural_similarity(2 * u - 1, 2 * v - 1, data_range=2, **kw)
    ours = float(ssim(x[1:2], truth[1:2])[0])
    assert ours == pytest.approx(on_255, abs=1e-10)
    assert abs(ours - on_signed) > 0.01


def test_ssim_refuses_images_smaller_than_its_window_and_mismatched_shapes():
    with pytest.raises(InputError, match=r"at least 11 x 11 pixels.*\(8, 8\)"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(InputError, match=r"\(1, 1, 32, 32\) and \(1, 3, 32, 32\)"):
        ssim(torch.zeros(1, 1, 32, 32), torch.zeros(1, 3, 32, 32))


def test_the_padded_variant_is_torchmetrics_default_and_not_the_standard():
    from torchmetrics.functional.image import structural_similarity_index_measure as torchmetrics_ssim

    x, truth = _fixtures()
    u, v = (x + 1) / 2, (truth + 1) / 2
    reference = torchmetrics_ssim(u, v, reduction="none")
    assert isinstance(reference, torch.Tensor)
    assert ssim_padded(x, truth).tolist() == pytest.approx(reference.tolist())
    # the mirror-padded border (53% of the averaged positions) moves it either way, by over 0.2 on the noisy digit
    gap = ssim_padded(x, truth) - ssim(x, truth)
    assert float(gap.abs().min()) > 0.03 and float(gap.abs().max()) > 0.2


# ------------------------------------------------------------------------------------- the chi-square fit check
def test_chi2_tails_are_scipys_chi_square_cdf_and_survival_function():
    q = torch.tensor([0.5, 3.0, 16.0, 40.0, 400.0, 5000.0, 10_000.0, 12_288.0], dtype=torch.float64)
    for dof in (1, 16, 624, 12_288):
        lower, upper = chi2_tails(q, dof)
        for k, value in enumerate(q.tolist()):
            assert float(lower[k]) == pytest.approx(scipy_stats.chi2.cdf(value, dof), rel=1e-9, abs=1e-300)
            assert float(upper[k]) == pytest.approx(scipy_stats.chi2.sf(value, dof), rel=1e-9, abs=1e-300)


def test_fit_p_is_the_two_sided_chi_square_p_value_of_the_residual():
    g = torch.Generator().manual_seed(0)
    sigma = 0.1
    op = SuperResolution((1, 32, 32), 8, sigma_y=sigma)  # m = 16
    x0 = torch.rand(6, 1, 32, 32, generator=g) * 2 - 1
    y = op(x0) + sigma * torch.randn(6, 1, 4, 4, generator=g)
    x = x0.clone()
    x[1] += 0.5  # misses y: residual far too large
    x[2] = op.pinv(y[2:3])[0]  # explains y exactly: residual 0, fits all of the noise
    r = op.residual_norm(x, y)
    got = fit_p(r, sigma, op.num_measurements)
    for k in range(6):
        q = float(r[k]) ** 2 / sigma**2
        want = min(1.0, 2 * min(scipy_stats.chi2.cdf(q, 16), scipy_stats.chi2.sf(q, 16)))
        assert float(got[k]) == pytest.approx(want, rel=1e-9, abs=1e-300)
    z = fit_z(r, sigma, op.num_measurements)
    assert float(got[1]) < 0.05 and float(z[1]) > 0  # implausibly large
    assert float(got[2]) < 0.05 and float(z[2]) < 0  # implausibly small


def test_fit_p_is_uniform_at_the_truth_so_about_five_percent_are_flagged():
    g = torch.Generator().manual_seed(2)
    n, sigma = 4000, 0.2
    mask = (torch.rand(n, 1, 8, 8, generator=g) < 0.4).float()  # per-sample masks: m differs per sample
    op = Inpainting(mask, sigma)
    x0 = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    y = (x0 + sigma * torch.randn(x0.shape, generator=g)) * mask
    p = fit_p(op.residual_norm(x0, y), sigma, op.num_measurements)
    assert float((p < 0.05).double().mean()) == pytest.approx(0.05, abs=0.012)  # se sqrt(.05 .95 / 4000) = 0.0034
    assert float((p < 0.5).double().mean()) == pytest.approx(0.5, abs=0.03)


# ------------------------------------------------------------------------------------------ signed-rank test
def _draws(n: int, seed: int, shift: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64) + shift


@pytest.mark.parametrize("n", [10, 13, 25, 50])
def test_signed_rank_p_value_is_scipys_exact_test_without_ties(n: int):
    d = _draws(n, n)
    assert stats.signed_rank_p_value(d) == pytest.approx(scipy_stats.wilcoxon(d.numpy(), method="exact").pvalue)


@pytest.mark.parametrize("n", [51, 100, 400])
def test_signed_rank_p_value_is_scipys_normal_approximation_beyond_fifty(n: int):
    d = _draws(n, n, shift=0.15)
    want = scipy_stats.wilcoxon(d.numpy(), method="asymptotic", correction=False).pvalue
    assert stats.signed_rank_p_value(d) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("n", [20, 50, 100])
def test_signed_rank_p_value_corrects_for_ties_and_drops_zeros_as_scipy_does(n: int):
    d = torch.round(_draws(n, 7 + n) * 2) / 2  # many tied |d| and some exact zeros
    assert int((d == 0).sum()) > 0 and len(set(d.abs().tolist())) < n
    want = scipy_stats.wilcoxon(d.numpy(), zero_method="wilcox", method="asymptotic", correction=False).pvalue
    assert stats.signed_rank_p_value(d) == pytest.approx(want, rel=1e-10)


def test_signed_rank_p_value_of_a_small_tied_sample_is_the_exhaustive_sign_flip_test():
    d = torch.tensor([1.0, -1.0, 2.0, 2.0, 2.0, 0.0, 3.0, 3.0, -0.5, 4.0, 1.0, 2.0], dtype=torch.float64)
    # scipy's default for <= 13 tied values: a permutation test over all 2^12 sign patterns
    assert stats.signed_rank_p_value(d) == pytest.approx(scipy_stats.wilcoxon(d.numpy()).pvalue, rel=1e-12)


def test_signed_rank_p_value_by_hand_and_when_every_difference_is_zero():
    # n = 10 positive differences: T+ = 55 is the largest of 2^10 equally likely sums, so p = 2 / 1024
    assert stats.signed_rank_p_value(torch.arange(1.0, 11.0)) == pytest.approx(2 / 1024)
    assert stats.signed_rank_p_value([0.0] * 12) == 1.0


# --------------------------------------------------------------------------- beside the paired t-interval
def test_paired_comparison_gives_the_median_and_the_wins_ties_and_losses_beside_the_interval():
    after = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    before = [0.0, 2.0, 1.0, 5.0, 5.0, 0.0, 6.0, 9.0, 0.0, 10.0, 0.0, 11.0]
    # d = 1, 0, 2, -1, 0, 6, 1, -1, 9, 0, 11, 1: sorted -1 -1 0 0 0 1 1 1 2 6 9 11, median (1 + 1) / 2
    out = stats.paired_comparison(after, before)
    assert (out["median"], out["wins"], out["ties"], out["losses"]) == (1.0, 7, 3, 2)
    assert out["p_signed_rank"] == pytest.approx(scipy_stats.wilcoxon(after, before).pvalue)
    lower = stats.paired_comparison(after, before, higher_is_better=False)  # a lower-is-better metric
    assert (lower["wins"], lower["ties"], lower["losses"]) == (2, 3, 7)


def test_a_mean_carried_by_a_few_large_differences_shows_in_the_median_and_the_signed_rank_test():
    # 45 images slightly worse, 5 much better: the mean is positive, the typical image is worse
    d = [-0.01] * 45 + [1.0] * 5
    out = stats.paired_comparison(d, [0.0] * 50)
    assert out["mean"] > 0 and out["median"] == -0.01 and (out["wins"], out["losses"]) == (5, 45)
    assert out["p_signed_rank"] == pytest.approx(scipy_stats.wilcoxon(d).pvalue, rel=1e-10)


def test_below_the_minimum_n_there_is_no_signed_rank_test_either():
    out = stats.paired_comparison([1.0] * 9, [0.0] * 9)
    assert out["p_value"] is None and out["p_signed_rank"] is None and out["wins"] == 9
