"""The statistics of the report: Student t, TOST, Holm, the minimum n and the declared primary family, each against
an independent derivation (t tables, hand-computed bounds, the textbook Holm example)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from reguidance.evaluation import stats

ROOT = Path(__file__).resolve().parents[1]


def test_t_distribution_matches_printed_tables_and_closed_forms():
    # two-sided 5% critical values from any t table
    for df, crit in ((1, 12.706), (3, 3.182), (9, 2.262), (29, 2.045), (120, 1.980)):
        assert stats.t_quantile(0.975, df) == pytest.approx(crit, abs=1e-3)
    # df = 1 is the Cauchy law: P(T <= t) = 1/2 + atan(t) / pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-7.0, -1.0, 0.3, 2.5):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_distribution_agrees_with_scipy():
    from scipy.stats import t as student

    for df in (1.0, 4.0, 9.0, 49.0, 999.0):
        for x in (-12.0, -2.0, -0.1, 0.0, 0.7, 3.0, 40.0):
            assert stats.t_cdf(x, df) == pytest.approx(student.cdf(x, df), abs=1e-10)
        assert stats.t_quantile(0.95, df) == pytest.approx(student.ppf(0.95, df), abs=1e-8)


def _vector(mean: float, sd: float, n: int) -> torch.Tensor:
    """n values with exactly this sample mean and sample sd (a centred, rescaled ramp)."""
    ramp = torch.arange(n, dtype=torch.float64)
    ramp = ramp - ramp.mean()
    return mean + sd * ramp / ramp.std()


def test_tost_p_value_is_the_larger_one_sided_p_computed_by_hand():
    # n = 16 differences with mean 0.004 and sd 0.02: se = 0.02 / 4 = 0.005, df = 15, margin 0.01.
    # lower test: t = (0.004 + 0.01) / 0.005 = 2.8;  upper test: t = (0.004 - 0.01) / 0.005 = -1.2
    d = _vector(0.004, 0.02, 16)
    out = stats.paired_comparison(d, torch.zeros(16), margin=0.01)
    from scipy.stats import t as student

    by_hand = max(student.sf(2.8, 15), student.cdf(-1.2, 15))  # = P(T15 < -1.2) = 0.1243
    assert out["p_tost"] == pytest.approx(by_hand, rel=1e-8)
    assert out["p_tost"] == pytest.approx(0.1243, abs=5e-4)
    assert stats.call(out["mean"], out["p_value"], out["p_tost"], True) == "inconclusive"
    # tighter: sd 0.01 -> se 0.0025, t = 5.6 and -2.4: both one-sided nulls rejected at 5% (t_{0.95, 15} = 1.753)
    tight = stats.paired_comparison(_vector(0.004, 0.01, 16), torch.zeros(16), margin=0.01)
    assert tight["p_tost"] is not None and tight["p_tost"] < 0.05
    assert stats.call(tight["mean"], tight["p_value"], tight["p_tost"], True) == "tie"


def test_tost_agrees_with_the_ninety_percent_interval_inside_the_margin():
    # equivalence at 5% by TOST <=> the 90% t interval lies inside (-margin, margin)
    for mean, sd in ((0.0, 0.02), (0.003, 0.015), (0.006, 0.01), (-0.007, 0.004)):
        out = stats.paired_comparison(_vector(mean, sd, 25), torch.zeros(25), margin=0.01)
        half90 = stats.t_quantile(0.95, 24) * sd / 5
        inside = -0.01 < mean - half90 and mean + half90 < 0.01
        assert out["p_tost"] is not None and (out["p_tost"] < 0.05) == inside


def test_paired_comparison_interval_p_value_and_effect_size_by_hand():
    # mean 0.5, sd 1, n 16: se 0.25, t = 2, df 15; t_{0.975, 15} = 2.131 (tables); d_z = 0.5
    out = stats.paired_comparison(_vector(0.5, 1.0, 16), torch.zeros(16))
    assert out["ci95"] == pytest.approx([0.5 - 2.1314 * 0.25, 0.5 + 2.1314 * 0.25], abs=1e-4)
    assert out["p_value"] == pytest.approx(0.0639, abs=5e-4)  # 2 P(T15 > 2), tables: 0.0639
    assert out["effect_size"] == pytest.approx(0.5)
    assert out["p_tost"] is None  # no margin, no tie possible
    assert stats.call(out["mean"], out["p_value"], None, True) == "inconclusive"
    worse = stats.paired_comparison(_vector(-0.5, 0.5, 16), torch.zeros(16))  # t = -4: significant, lower
    assert stats.call(worse["mean"], worse["p_value"], None, True) == "worse"
    assert stats.call(worse["mean"], worse["p_value"], None, False) == "better"  # lower is better (e.g. LPIPS)


def test_below_the_minimum_n_there_is_no_test_and_no_call():
    one = stats.paired_comparison([0.9], [0.1], margin=0.01)  # n = 1: the old table said "helps ▲" here
    assert one["p_value"] is None and one["p_tost"] is None
    assert one["ci95"] == [pytest.approx(0.8), pytest.approx(0.8)]
    assert stats.call(one["mean"], one["p_value"], one["p_tost"], True) == "no test"
    nine = stats.paired_comparison(_vector(5.0, 0.1, 9), torch.zeros(9))  # an obvious effect, but n = 9 < 10
    assert nine["p_value"] is None
    ten = stats.paired_comparison(_vector(5.0, 0.1, 10), torch.zeros(10))
    assert ten["p_value"] is not None and ten["p_value"] < 1e-10


def test_holm_on_the_textbook_example():
    # Holm (1979) as taught (e.g. Wikipedia's worked example): p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05.
    # sorted 0.005, 0.01, 0.03, 0.04 against 0.05/4, 0.05/3, 0.05/2, 0.05/1: the first two are rejected, then
    # 0.03 > 0.025 stops. Adjusted: 4 * 0.005 = 0.02, 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 0.04) = 0.06.
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = stats.holm(p)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [q < 0.05 for q in adjusted] == [True, False, False, True]


def test_primary_family_selects_exactly_the_declared_tests():
    f = stats.PRIMARY_FAMILY
    assert f.contains("sr8", "dps", "renoise", "ssim")
    assert f.contains("box20", "daps", "more", "fit")
    assert not f.contains("box20c", "dps", "candidate", "ssim")  # the unidentifiable task is secondary
    assert not f.contains("sr8", "dps", "fresh", "ssim")
    assert not f.contains("sr8", "dps", "candidate", "psnr")
    assert not f.contains("sr8", "pinv", "candidate", "ssim")
    assert all(m in stats.MARGINS and m in stats.MARGIN_RATIONALE for m in f.metrics)


def test_benchmark_md_declares_the_family_the_code_tests():
    from reguidance.bench.report import PREREGISTRATION_MARKERS, preregistration

    doc = (ROOT / "BENCHMARK.md").read_text()
    begin, end = (re.escape(m) for m in PREREGISTRATION_MARKERS)
    found = re.search(f"{begin}\n(.*?){end}", doc, re.S)
    assert found is not None, "BENCHMARK.md has no pre-registration section"
    assert found.group(1).rstrip("\n") == preregistration().rstrip("\n")


def _rows(task: str, method: str, n: int, shift: float, spread: float, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        base = {"task": task, "method": method, "id": i, "psnr": 20.0, "consistency": 1.0, "label": 0, "nfe": 1}
        base |= {"sec_per_image": 0.0, "peak_mem_mb": 0.0, "reward": -1.0, "fit_z": 0.5}
        change = shift + spread * float(torch.randn((), generator=g))
        rows.append({**base, "variant": "candidate", "reguidance": False, "ssim": 0.5})
        rows.append({**base, "variant": "reguidance", "reguidance": True, "ssim": 0.5 + change})
    return rows


def test_a_single_image_gets_no_test_no_mark_and_says_why():
    from reguidance.bench.report import format_markdown, summarise

    summary = summarise(_rows("sr8", "dps", 1, 0.3, 0.0))  # the old table printed "helps" and ▲ here
    entry = summary["paired"][0]
    assert entry["verdict"] == "no verdict (n = 1 < 10)" and entry["better"] == []
    row = next(line for line in format_markdown(summary).splitlines() if line.startswith("| sr8 | dps | 1 |"))
    assert "▲" not in row and "helps" not in row and "no verdict (n = 1 < 10)" in row
    assert "+0.300 (one image)" in row  # no zero-width interval either


def test_equivalent_only_when_every_voting_metric_is_inside_its_margin():
    from reguidance.bench.report import summarise

    # SSIM changes of sd 0.002 around 0 (margin 0.01), |fit_z| and PSNR unchanged (their sd is 0: |mean| < margin)
    tie = summarise(_rows("sr8", "dps", 30, 0.0, 0.002))["paired"][0]
    assert tie["ssim"]["call"] == "tie" and tie["ssim"]["primary"] and tie["verdict"] == "equivalent"
    # same spread, mean 0.008: the 90% interval crosses the margin, so no tie is claimed
    near = summarise(_rows("sr8", "dps", 30, 0.008, 0.01, seed=1))["paired"][0]
    assert near["ssim"]["call"] in ("inconclusive", "better") and near["verdict"] != "equivalent"
