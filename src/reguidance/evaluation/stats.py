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
- below :data:`MIN_N` pairs there is no test and no verdict (the interval is still shown, wide as it is).

Which tests are confirmatory is data, :data:`PRIMARY_FAMILY`: its :meth:`Family.declaration` is printed verbatim
into BENCHMARK.md's pre-registration section and :meth:`Family.contains` selects the tests the report corrects
together with Holm's method (:func:`reguidance.evaluation.metrics.holm`), so the declaration and the analysis cannot
drift. Every other test is secondary: effect size and raw interval, no correction.

The t distribution is computed here from the regularised incomplete beta function (continued fraction, as in
Numerical Recipes section 6.4), so the library needs no SciPy. This module imports only :mod:`.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch
from torch import Tensor

from .metrics import holm

__all__ = [
    "ALPHA",
    "MARGINS",
    "MARGIN_RATIONALE",
    "MIN_N",
    "PRIMARY_FAMILY",
    "Family",
    "PairedComparison",
    "call",
    "holm",
    "paired_comparison",
    "t_cdf",
    "t_quantile",
    "tost_p_value",
]

#: the significance level of every test (two-sided differences, each one-sided test of TOST)
ALPHA = 0.05
#: no test and no verdict with fewer pairs than this: below 10, ``t_{0.975, n-1}`` exceeds 2.26 and grows fast,
#: one image moves the mean, and whether the differences are roughly normal cannot be judged
MIN_N = 10
#: equivalence margins per metric, in the metric's units (for ``fit``: |fit_z|, see
#: :func:`reguidance.evaluation.metrics. fit_z`), fixed before any run; a metric without a margin can never be called a
#: tie
MARGINS: dict[str, float] = {"ssim": 0.01, "fit": 0.1, "psnr": 0.1, "lpips": 0.01, "class_acc": 0.02}
#: why each margin is what it is (printed with the declaration)
MARGIN_RATIONALE: dict[str, str] = {
    "ssim": "1% of SSIM's [0, 1] range, a quarter of the smallest gain issue 19 discusses (+0.04; the largest "
    "is +0.29)",
    "fit": "a tenth of one null standard deviation of fit_z (fit_z ~ N(0, 1) at the truth): a shift no single "
    "image's chi-square test could detect",
    "psnr": "0.1 dB, below what a side-by-side picture shows",
    "lpips": "1% of LPIPS's usual [0, 1] range",
    "class_acc": "2 points of accuracy, one image in 50",
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
    and non-zero), ``margin`` and ``p_tost`` (:func:`tost_p_value`; None without a margin). Below :data:`MIN_N`
    the p-values are None: no test.
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
    p_value: float | None = None
    p_tost: float | None = None
    if n >= MIN_N:
        if se > 0:
            p_value = 2.0 * (1.0 - t_cdf(abs(mean) / se, df))
        else:
            p_value = 1.0 if mean == 0 else 0.0
        p_tost = tost_p_value(mean, se, df, margin) if margin is not None else None
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

    def declaration(self) -> str:
        """The family in words (Markdown), as BENCHMARK.md's pre-registration section prints it."""
        margins = "; ".join(f"`{m}` ±{MARGINS[m]:g}: {MARGIN_RATIONALE[m]}" for m in self.metrics if m in MARGINS)
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
                f"- **Ties** only by two one-sided tests (TOST, each at {self.alpha:g}, Holm-corrected within the "
                f"family) against margins stated in advance: {margins}.",
                f"- **Minimum n**: no test and no verdict below {self.min_n} images per comparison; the table says so.",
                "- **Secondary** (everything else: other methods and tasks, `fresh`, PSNR, LPIPS, class accuracy, "
                "classifier confidence, k-NN feature distance, the reward): effect sizes (d_z) and raw 95% "
                "intervals, calls from uncorrected tests, labelled as such.",
            ]
        )


#: the confirmatory family of the study (issue 19): declared here, printed into BENCHMARK.md, used by the report
PRIMARY_FAMILY = Family(
    methods=("dps", "daps"),
    against=("candidate", "renoise", "more"),
    metrics=("ssim", "fit"),
    exclude_tasks=("box20c",),
)
