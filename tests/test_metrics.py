"""Metrics: intervals, paired win rates, PSNR and SSIM per image."""

import math

import pytest
import torch

from reguidance.evaluation.metrics import mean_ci95, proportion_ci95, psnr, ssim
from reguidance.evaluation.stats import paired_comparison


def test_mean_interval_contains_the_mean_and_shrinks_with_n():
    g = torch.Generator().manual_seed(0)
    small = mean_ci95(torch.randn(20, generator=g))
    large = mean_ci95(torch.randn(2000, generator=g))
    assert small["ci95"][0] <= small["mean"] <= small["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < small["ci95"][1] - small["ci95"][0]


def test_proportion_interval_stays_inside_zero_one():
    ci = proportion_ci95([1, 1, 1, 1])["ci95"]
    assert 0 <= ci[0] <= 1 and ci[1] == 1.0
    assert proportion_ci95([0, 1])["mean"] == 0.5


def test_paired_comparison_counts_wins_in_the_better_direction():
    after, before = torch.tensor([2.0, 1.0, 3.0]), torch.tensor([1.0, 2.0, 1.0])
    assert paired_comparison(after, before)["win_rate"] == pytest.approx(2 / 3)
    assert paired_comparison(after, before, higher_is_better=False)["win_rate"] == pytest.approx(1 / 3)


def test_psnr_and_ssim_are_per_image():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    x = truth.clone()
    x[1] += 0.2 * torch.randn(1, 32, 32, generator=g)
    p, s = psnr(x, truth), ssim(x, truth)
    assert p.shape == (3,) and s.shape == (3,)
    assert p[1] < p[0] and s[1] < s[0] == pytest.approx(1.0)
    assert psnr(x[1:2], truth[1:2])[0] == pytest.approx(float(p[1]))
    # by hand: 10 log10(1 / MSE) on [0, 1], the noisy image clipped to the range first
    mse = float(((x[1].clamp(-1, 1) - truth[1]) / 2).pow(2).mean())
    assert float(p[1]) == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    assert float(p[0]) == 100.0  # an exact restoration: the ceiling, a finite number every summary can average


def test_jackknife_interval_of_the_mean_is_the_usual_standard_error():
    from reguidance.evaluation.metrics import jackknife_ci95

    x = torch.tensor([1.0, 4.0, 2.0, 8.0, 5.0], dtype=torch.float64)
    loo = [float(torch.cat([x[:i], x[i + 1 :]]).mean()) for i in range(5)]  # the jackknife of the mean ...
    got = jackknife_ci95(float(x.mean()), loo)
    want = mean_ci95(x)  # ... reproduces s / sqrt(n)
    assert got["mean"] == pytest.approx(want["mean"])
    assert got["ci95"] == pytest.approx(want["ci95"])
    assert jackknife_ci95(0.1, [0.0, 1.0, 2.0], lower=0.0)["ci95"][0] == 0.0
    with pytest.raises(ValueError, match="at least two"):
        jackknife_ci95(1.0, [1.0])
