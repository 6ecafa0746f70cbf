r"""Paired tests a reviewer accepts: Student-t intervals, equivalence by two one-sided tests, a declared primary family.

A comparison is ``n`` paired per-image differences ``d_i = after_i - before_i`` (ReGuidance minus a rival on the
same image, measurement and random stream). With ``dbar`` their mean, ``s`` their sample standard deviation and
``se = s / sqrt(n)``, ``T = (dbar - mu) / se`` follows Student's t with ``n - 1`` degrees of freedom when the ``d_i``
are independent normal draws of mean ``mu`` (and approximately otherwise, by the central limit theorem):

- the 95% interval is ``dbar +- t_{0.975, n-1} se``; the two-sided p-value of ``mu = 0`` is ``2 P(T > |dbar| / se)``;
- **equivalence** (TOST, Schuirmann 1987): with a margin ``delta`` stated in advance (:data:`MARGINS`), the two
  one-sided nulls ``mu <= -delta`` and ``mu >= delta`` are rejected when ``p_TOST = max(P(T > (dbar + delta) / se),
  P(T < (dbar - delta) / se)) < alpha``, which is the same as the ``1 - 2 alpha`` interval lying inside
  ``(-delta, delta)``; only then is a comparison called a *tie*;
- the **effect size** is ``d_z = dbar / s`` (Cohen's d for paired data: the mean change in units of its spread);
- beside the mean, what a mean can hide: the **median** difference, the **wins, ties and losses** (images where
  ``after`` is better, equal, worse), and the **Wilcoxon signed-rank** test of "the ``d_i`` are symmetric about 0"
  (:func:`signed_rank_p_value`), which a few large differences cannot carry on their own;
- below :data:`MIN_N` pairs there is no test and no verdict (the interval is still shown, wide as it is).

Which tests are confirmatory is data, :data:`PRIMARY_FAMILY`: its :meth:`Family.declaration` is printed verbatim
into BENCHMARK.md's pre-registration section and :meth:`Family.contains` selects the tests the report corrects
together with Holm's method (:func:`reguidance.evaluation.metrics.holm`), so the declaration and the analysis cannot
drift. Every other test is secondary: effect size and raw interval, no correction.

Only the family's tests vote: a comparison's verdict (``reguidance.bench.report.verdict``) is a function of its
Holm-corrected calls in the family; every other test is shown with its uncorrected call and never votes.

The t distribution is computed here from the regularised incomplete beta function (continued fraction, as in
Numerical Recipes section 6.4) and the signed-rank law by exact enumeration or its normal approximation, so the
library needs no SciPy. This module imports only :mod:`.metrics`.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import torch
from torch import Tensor

from .metrics import holm

__all__ = [
    "ALPHA",
    "LEGACY_FAMILY",
    "MARGINS",
    "MARGIN_RATIONALE",
    "MIN_N",
    "PRIMARY_FAMILY",
    "REALISM",
    "Family",
    "PairedComparison",
    "call",
    "holm",
    "paired_comparison",
    "signed_rank_p_value",
    "t_cdf",
    "t_quantile",
    "tost_p_value",
]

#: the significance level of every test (two-sided differences, each one-sided test of TOST)
ALPHA = 0.05
#: no test and no verdict with fewer pairs than this: below 10, ``t_{0.975, n-1}`` exceeds 2.26 and grows fast,
#: one image moves the mean, and whether the differences are roughly normal cannot be judged
MIN_N = 10
#: the per-image realism score a family can test (so that "no loss of realism" is a tie by TOST, not an absence of
#: evidence): ``knn_dist``, the metric classifier's mean feature distance from the restoration to its k nearest
#: training images (:class:`reguidance.evaluation.classifier.RealismScorer`; lower is closer to the data). Chosen over
#: the classifier's ``confidence`` because confidence saturates (a blurred but recognisable digit scores near 1, as a
#: sharp one does), while the distance keeps growing as an image leaves the training data; it is FD-cls's features
#: seen per image, so it agrees with the set-level realism the report already gives. Comparable only between runs
#: with the same classifier and reference set, as FD-cls
REALISM = "knn_dist"
#: equivalence margins per metric, in the metric's units (for ``fit``: |fit_z|, see
#: :func:`reguidance.evaluation.metrics. fit_z`), fixed before any run; a metric without a margin can never be called a
#: tie
MARGINS: dict[str, float] = {
    "ssim": 0.01,
    "ssim_padded": 0.01,
    "fit": 0.1,
    "psnr": 0.1,
    "lpips": 0.01,
    "class_acc": 0.02,
    REALISM: 0.5,
}
#: why each margin is what it is (printed with the declaration)
MARGIN_RATIONALE: dict[str, str] = {
    "ssim": "1% of SSIM's [0, 1] range, a quarter of the smallest gain issue 19 discusses (+0.04; the largest "
    "is +0.29)",
    "ssim_padded": "as `ssim`: the margin declared in issue 19 for the SSIM computed then, which was this variant",
    "fit": "a tenth of one null standard deviation of fit_z (fit_z ~ N(0, 1) at the truth): a shift no single "
    "image's chi-square test could detect",
    "psnr": "0.1 dB, below what a side-by-side picture shows",
    "lpips": "1% of LPIPS's usual [0, 1] range",
    "class_acc": "2 points of accuracy, one image in 50",
    REALISM: "half a unit of the classifier's feature distance, an eighth of what a restoration loses without its "
    "candidate (ReGuidance against the `fresh` ablation on box20: about -4 in the kept Fashion-MNIST records)",
}
#: how the declaration names each metric a test can be on (the secondary ones are listed by these names)
METRIC_NAMES: dict[str, str] = {
    "ssim": "SSIM",
    "ssim_padded": "torchmetrics' padded SSIM",
    "fit": "|fit_z|",
    "psnr": "PSNR",
    "lpips": "LPIPS",
    "class_acc": "class accuracy",
    "confidence": "classifier confidence",
    REALISM: "k-NN feature distance",
    "reward": "the reward",
}


# ---------------------------------------------------------------------------------------------- t distribution
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converged to 1e-15 relative."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df > 0`` degrees of freedom: ``1 - I_{df/(df+t^2)}(df/2, 1/2) / 2`` for
    ``t >= 0`` and the mirror image below 0."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf` to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    while hi - lo > 1e-12 * max(1.0, abs(hi)):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2.0


# ------------------------------------------------------------------------------------------------ paired tests
def tost_p_value(mean: float, se: float, df: float, margin: float) -> float:
    """``max(P(T > (mean + margin) / se), P(T < (mean - margin) / se))``: the p-value of "the true mean lies outside
    ``(-margin, margin)``"; with ``se = 0``, 0 when ``|mean| < margin`` and 1 otherwise."""
    if se == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = 1.0 - t_cdf((mean + margin) / se, df)
    upper = t_cdf((mean - margin) / se, df)
    return max(lower, upper)


# ---------------------------------------------------------------------------------------- signed-rank test
#: the signed-rank test is exact (enumerated) up to this many pairs when no |d| is tied and none is 0, as SciPy's
#: ``wilcoxon(method="auto")``; with ties or zeros only up to :data:`EXACT_TIED_MAX` (2^13 sign patterns)
EXACT_MAX, EXACT_TIED_MAX = 50, 13


def _ranks(values: Sequence[float]) -> list[float]:
    """The ranks 1..n of ``values``, ties sharing their average rank (``[5, 1, 5]`` -> ``[2.5, 1, 2.5]``)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


@functools.lru_cache(maxsize=256)
def _sign_flip_counts(doubled_ranks: tuple[int, ...]) -> tuple[int, ...]:
    """``counts[s]``: how many of the ``2^n`` sign patterns give ``2 T+ = s``, where ``T+`` sums the ranks given a
    plus sign (the ranks doubled so that shared half ranks stay integers); a subset-sum count, ``n x sum`` steps."""
    counts = [1] + [0] * sum(doubled_ranks)
    for r in doubled_ranks:
        for total in range(len(counts) - 1, r - 1, -1):
            counts[total] += counts[total - r]
    return tuple(counts)


def signed_rank_p_value(differences: Tensor | Sequence[float]) -> float:
    r"""The two-sided p-value of Wilcoxon's signed-rank test that the paired differences ``d_i`` are symmetric about
    0 (1.0 when every ``d_i`` is 0).

    Zeros are dropped (Wilcoxon's treatment; ``n`` below counts the rest), the ``|d_i|`` are ranked 1..n with tied
    values sharing their average rank, and ``T+`` is the sum of the ranks of the positive ``d_i``. Under the null
    every sign pattern of the ranks is equally likely, so

    - **exact** (``n <= 50`` with no ties and no zeros, or at most 13 differences with ties or zeros): ``p = min(1,
      2 min(P(T+ <= t), P(T+ >= t)))`` with the law of ``T+`` counted over all ``2^n`` sign patterns of the actual
      (possibly shared) ranks;
    - otherwise the **normal approximation** with the tie correction: ``E T+ = n (n + 1) / 4``, ``Var T+ = n (n + 1)
      (2 n + 1) / 24 - sum_j (t_j^3 - t_j) / 48`` over groups of ``t_j`` tied ``|d|``, ``z = (T+ - E T+) / sqrt(Var
      T+)``, ``p = 2 P(Z > |z|) = erfc(|z| / sqrt 2)`` (no continuity correction).

    The same choices as SciPy's ``wilcoxon(d)`` defaults (``zero_method="wilcox"``, ``correction=False``,
    ``method="auto"``, whose small tied case is an exhaustive permutation test).
    """
    d = [float(v) for v in torch.as_tensor(differences, dtype=torch.float64).flatten()]
    nonzero = [v for v in d if v != 0.0]
    n = len(nonzero)
    if n == 0:
        return 1.0
    ranks = _ranks([abs(v) for v in nonzero])
    t_plus = sum(r for r, v in zip(ranks, nonzero, strict=True) if v > 0)
    tied = len(set(ranks)) < n
    if (n == len(d) and not tied and n <= EXACT_MAX) or len(d) <= EXACT_TIED_MAX:
        doubled = tuple(sorted(round(2 * r) for r in ranks))
        counts = _sign_flip_counts(doubled)
        observed = round(2 * t_plus)
        below, above = sum(counts[: observed + 1]), sum(counts[observed:])
        return min(1.0, 2 * min(below, above) / 2**n)
    groups: dict[float, int] = {}
    for r in ranks:
        groups[r] = groups.get(r, 0) + 1
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in groups.values()) / 48
    z = (t_plus - n * (n + 1) / 4) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2))


class PairedComparison(TypedDict):
    """What :func:`paired_comparison` returns (its docstring says what each entry is)."""

    n: int
    mean: float
    ci95: list[float]
    sd: float
    effect_size: float | None
    win_rate: float
    p_value: float | None
    margin: float | None
    p_tost: float | None
    median: float
    wins: int
    ties: int
    losses: int
    p_signed_rank: float | None


def paired_comparison(
    after: Tensor | Sequence[float],
    before: Tensor | Sequence[float],
    higher_is_better: bool = True,
    margin: float | None = None,
) -> PairedComparison:
    """The paired comparison of ``after`` and ``before`` (equal length ``n``), from ``d = after - before``.

    Returns ``n``, ``mean``, ``sd``, ``ci95`` (Student t, ``[mean, mean]`` when ``n = 1``), ``effect_size``
    ``d_z = mean / sd`` (None when ``sd = 0``), ``win_rate`` (fraction of images where ``after`` is better, by
    ``higher_is_better``), ``p_value`` (two-sided t test of mean 0; 1 when every ``d`` is 0, 0 when all are equal
    and non-zero), ``margin`` and ``p_tost`` (:func:`tost_p_value`; None without a margin); and beside the
    t-interval: ``median`` (of ``d``; the mean of the two middle values when ``n`` is even), ``wins`` / ``ties`` /
    ``losses`` (how many images have ``after`` better than, equal to, worse than ``before``) and ``p_signed_rank``
    (:func:`signed_rank_p_value`). Below :data:`MIN_N` the p-values are None: no test.
    """
    a = torch.as_tensor(after, dtype=torch.float64).flatten()
    b = torch.as_tensor(before, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"paired values must have equal length, got {a.numel()} and {b.numel()}")
    if a.numel() == 0:
        raise ValueError("a paired comparison needs at least one pair")
    d = a - b
    n = d.numel()
    mean = float(d.mean())
    sd = float(d.std()) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    df = float(n - 1)
    half = t_quantile(0.975, df) * se if n > 1 else 0.0
    wins = (d > 0) if higher_is_better else (d < 0)
    ties = int((d == 0).sum())
    p_value: float | None = None
    p_tost: float | None = None
    p_signed_rank: float | None = None
    if n >= MIN_N:
        if se > 0:
            p_value = 2.0 * (1.0 - t_cdf(abs(mean) / se, df))
        else:
            p_value = 1.0 if mean == 0 else 0.0
        p_tost = tost_p_value(mean, se, df, margin) if margin is not None else None
        p_signed_rank = signed_rank_p_value(d)
    return {
        "n": n,
        "mean": mean,
        "ci95": [mean - half, mean + half],
        "sd": sd,
        "effect_size": mean / sd if sd > 0 else None,
        "win_rate": float(wins.double().mean()),
        "p_value": p_value,
        "margin": margin,
        "p_tost": p_tost,
        "median": statistics.median(d.tolist()),
        "wins": int(wins.sum()),
        "ties": ties,
        "losses": n - int(wins.sum()) - ties,
        "p_signed_rank": p_signed_rank,
    }


def call(mean: float, p_value: float | None, p_tost: float | None, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """The call on one comparison: ``"better"`` / ``"worse"`` when ``p_value < alpha`` (by the sign of ``mean`` and
    ``higher_is_better``), else ``"tie"`` when ``p_tost < alpha`` (equivalent within the margin), else
    ``"inconclusive"``; ``"no test"`` when ``p_value`` is None (fewer than :data:`MIN_N` pairs)."""
    if p_value is None:
        return "no test"
    if p_value < alpha:
        return "better" if (mean > 0) == higher_is_better else "worse"
    if p_tost is not None and p_tost < alpha:
        return "tie"
    return "inconclusive"


# ------------------------------------------------------------------------------------------ the primary family
@dataclass(frozen=True)
class Family:
    """A family of confirmatory tests, Holm-corrected together: ReGuidance against each of ``against`` on each of
    ``metrics``, for every (task, method) of a run with ``method`` in ``methods`` and ``task`` not in
    ``exclude_tasks``; one family per run (prior)."""

    methods: tuple[str, ...]
    against: tuple[str, ...]
    metrics: tuple[str, ...]
    exclude_tasks: tuple[str, ...]
    alpha: float = ALPHA
    min_n: int = MIN_N

    def contains(self, task: str, method: str, against: str, metric: str) -> bool:
        """Whether the test (``task``, ``method``, ReGuidance against ``against``, ``metric``) is in the family."""
        return (
            method in self.methods
            and against in self.against
            and metric in self.metrics
            and task not in self.exclude_tasks
        )

    def renamed(self, old: str, new: str) -> Family:
        """The same family with metric ``old`` tested as ``new`` (e.g. on records that hold it under another name)."""
        return replace(self, metrics=tuple(new if m == old else m for m in self.metrics))

    def declaration(self) -> str:
        """The family in words (Markdown), as BENCHMARK.md's pre-registration section prints it."""
        margins = "; ".join(f"`{m}` ±{MARGINS[m]:g}: {MARGIN_RATIONALE[m]}" for m in self.metrics if m in MARGINS)
        secondary = ", ".join(name for m, name in METRIC_NAMES.items() if m not in self.metrics)
        return "\n".join(
            [
                "- **Primary family** (confirmatory; Holm's correction within it, one family per prior): for every "
                f"task except {', '.join(f'`{t}`' for t in self.exclude_tasks) or 'none'} and for the candidate "
                f"methods {', '.join(f'`{m}`' for m in self.methods)}, ReGuidance against "
                f"{', '.join(f'`{a}`' for a in self.against)} (`more`: the base method given the wrapper's extra "
                f"network evaluations, equal NFE), on {', '.join(f'`{m}`' for m in self.metrics)}; paired "
                f"two-sided t tests at level {self.alpha:g}.",
                "- `fit` is |fit_z|, `fit_z = (||y - A x||^2 / sigma_y^2 - m) / sqrt(2 m)` of the output before the "
                "clamp: about N(0, 1) when x explains y up to the noise, so closer to 0 is better and fitting the "
                "noise (fit_z far below 0) is penalised. The raw reward -||y - A x||^2 is shown but does not vote.",
                "- `ssim` is the standard SSIM (Wang et al. 2004: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, "
                "statistics over the valid region only, on the images' [0, 1] scale). Records written before it "
                "existed (the issue-19 study's) hold torchmetrics' padded variant, which averages the SSIM map over a "
                "mirror-padded border; their reports name it `ssim_padded` and test it in the place of `ssim`, as "
                "it is the SSIM this family was declared on then.",
                "- **Verdicts** count this family's Holm-corrected calls only; every other test is shown and never "
                "votes.",
                f"- **Ties** only by two one-sided tests (TOST, each at {self.alpha:g}, Holm-corrected within the "
                f"family) against margins stated in advance: {margins}.",
                f"- **Minimum n**: no test and no verdict below {self.min_n} images per comparison; the table says so.",
                f"- **Secondary** (everything else: other methods and tasks, `fresh`, {secondary}): effect sizes "
                "(d_z) and raw 95% intervals, calls from uncorrected tests, labelled as such.",
            ]
        )


#: the confirmatory family of the study (issue 19): declared here, printed into BENCHMARK.md, used by the report
PRIMARY_FAMILY = Family(
    methods=("dps", "daps"),
    against=("candidate", "renoise", "more"),
    metrics=("ssim", "fit"),
    exclude_tasks=("box20c",),
)
#: the same family as the issue-19 study's records hold it: they were written before the standard SSIM, with
#: torchmetrics' padded variant under ``ssim`` (read back as ``ssim_padded``, see
#: :data:`reguidance.evaluation.metrics.SSIM_KIND`), and that variant is the SSIM the family was declared on
LEGACY_FAMILY = PRIMARY_FAMILY.renamed("ssim", "ssim_padded")
