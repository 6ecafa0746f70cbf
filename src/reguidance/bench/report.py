"""Summaries of ``results.jsonl``: per (task, method, variant) means with 95% intervals, and ReGuidance's paired
differences against the candidate and the ablations, as ``summary.json`` and ``summary.md``; BENCHMARK.md's tables.

The statistics are :mod:`reguidance.evaluation.stats`': Student-t intervals, effect sizes, ties only by TOST within
stated margins, no test below the minimum n, and Holm's correction only within the declared primary family
(:data:`reguidance.evaluation.stats.PRIMARY_FAMILY`, printed verbatim by :func:`preregistration`); everything else is
secondary and uncorrected. Beside each t-interval the median change, the wins / ties / losses and the signed-rank
p-value. Only the family's Holm-corrected calls vote (:func:`verdict`). The fit to y votes as ``|fit_z|``
(:func:`reguidance.evaluation.metrics.fit_z`), not as the reward; beside it, per variant, the share of images whose
residual the noise law finds implausibly small or large (:func:`reguidance.evaluation.metrics.fit_p`).

SSIM. ``ssim`` is the standard SSIM; summaries written before it (no ``ssim_kind``) hold torchmetrics' padded
variant under ``ssim``: :func:`read_run` re-derives them from their rows (which :mod:`.records` reads with that value
as ``ssim_padded``) under the family as it was declared then (:data:`reguidance.evaluation.stats.LEGACY_FAMILY`), so
a report never shows it as the standard SSIM.

Tables are data (:class:`Table`): :func:`format_markdown` and ``report.html`` render the same tables, so a label can
never sit over another column's values."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..conventions import InputError
from ..evaluation import stats
from ..evaluation.metrics import SSIM_KIND, Interval, holm, jackknife_ci95, mean_ci95, proportion_ci95
from ..io.files import atomic_path, read_json_object, replace_marked
from ..io.images import read_images
from .records import Record, read_all_results, variant_of

__all__ = [
    "Table",
    "add_fd_cls",
    "benchmark_tables",
    "format_markdown",
    "preregistration",
    "read_run",
    "readme_summary",
    "replace_marked",
    "save_grids",
    "save_method_overview",
    "save_overview",
    "save_tradeoff_plot",
    "summarise",
    "summary_blocks",
    "tradeoff_figure",
    "verdict",
    "write_report_html",
    "write_summary",
]

#: a row of ``results.jsonl``, a summary, or one of its rows: JSON objects, typed as such (values of any JSON type)

#: per-image metrics of a row and whether higher is better (``ssim`` the standard SSIM, ``ssim_padded`` torchmetrics'
#: variant, see :mod:`reguidance.evaluation.metrics`; ``lpips`` only in runs given LPIPS weights;
#: ``consistency_raw`` is the output's consistency before the clamp to [-1, 1]; ``fit`` is ``|fit_z|``, the
#: noise-calibrated fit to y of :func:`reguidance.evaluation.metrics.fit_z`; ``confidence`` and ``knn_dist`` are the
#: metric classifier's per-image realism, :class:`reguidance.evaluation.classifier.RealismScorer`; ``knn_dist`` is
#: the realism score a family can test, :data:`reguidance.evaluation.stats.REALISM`)
METRICS = {
    "psnr": True,
    "ssim": True,
    "ssim_padded": True,
    "lpips": False,
    "reward": True,
    "consistency": False,
    "consistency_raw": False,
    "fit": False,
    "confidence": True,
    "knn_dist": False,
}
#: the changes whose "worse" call is a loss worth listing (the family's losses vote; the others are listed as
#: secondary). Not the raw reward ``-||y - A x||^2`` (it rewards fitting the noise: every "reward worse" case of the
#: earlier runs was a candidate with consistency below 1 moved to about 1) nor ``consistency`` as ``|c - 1|`` (it
#: rewards the clamping artefact)
QUALITY = ("psnr", "ssim", "ssim_padded", "lpips", "fit", "class_acc", "confidence", "knn_dist")
#: the significance level of every test
ALPHA = stats.ALPHA
#: the verdict rule, in words (written next to every table that uses it)
RULE = (
    "Per metric the paired per-image change is tested (two-sided Student t; beside it the median change, the wins / "
    "ties / losses and a Wilcoxon signed-rank p-value). Tests of the declared primary family (see the "
    "pre-registration) are Holm-corrected within it; all others are secondary: raw 95% intervals, uncorrected "
    f"calls. A change is *better* or *worse* when its p-value is below {ALPHA}, a *tie* only when two one-sided "
    "tests put it inside the metric's stated equivalence margin, and *inconclusive* otherwise. Only the family's "
    "calls vote: a comparison *helps* when at least one of its family tests is better and none worse, *hurts* when "
    "at least one is worse and none better, is *mixed* when both happen, *equivalent* when every family test is a "
    "tie, and shows *no clear change* otherwise; a comparison with no test in the family gets no verdict. Below "
    f"{stats.MIN_N} images: no test, no verdict. Secondary tests (PSNR, LPIPS, class accuracy, realism, the reward, "
    "|consistency - 1|) are shown and never vote."
)
#: the comparisons of the report: ReGuidance against each of these variants of the same (task, method, image)
AGAINST = ("candidate", "renoise", "fresh", "more")
#: the calls a metric's change can get (:func:`reguidance.evaluation.stats.call`)
CALLS = ("better", "tie", "inconclusive", "worse", "no test")
#: the verdicts a tested comparison can get (:func:`verdict`; below the minimum n: "no verdict (n = ...)", and
#: :data:`OUTSIDE` for a comparison without a test in the family)
VERDICTS = ("helps", "equivalent", "no clear change", "mixed", "hurts")
#: the verdict of a comparison none of whose tests is in the declared family
OUTSIDE = "no verdict (outside the family)"


@dataclass(frozen=True)
class Table:
    """A table of the report as data: ``header`` labels and ``rows`` of cell texts, all plain text (Markdown's ``|``
    is escaped only when rendered as Markdown, HTML's ``<`` only as HTML). Every row has one cell per label."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(f"a row of {len(row)} cells under {len(self.header)} labels: {row}")

    def markdown(self) -> list[str]:
        """The table as Markdown lines (header, ``|---|`` rule, rows), every ``|`` in a cell escaped."""

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        return [line(self.header), "|" + "---|" * len(self.header), *(line(r) for r in self.rows)]


#: a block of a summary: a paragraph of text (inline Markdown) or a table
Block = str | Table


def _value(row: Record, m: str) -> float | None:
    """Metric ``m`` of a results row (``fit`` is ``|fit_z|``), None when the row lacks it."""
    if m == "fit":
        return abs(float(row["fit_z"])) if "fit_z" in row else None
    return float(row[m]) if m in row else None


def _paired(after: list[Record], before: list[Record], m: str, higher: bool) -> stats.PairedComparison | None:
    """ReGuidance (``after``) minus a rival (``before``) on metric ``m`` over the same images (None if missing)."""
    a, b = [_value(r, m) for r in after], [_value(r, m) for r in before]
    if not a or any(v is None for v in (*a, *b)):
        return None
    if m == "consistency":  # shown as the change of |consistency - 1|: lower is closer to explaining y
        a, b = [abs(float(v) - 1) for v in a], [abs(float(v) - 1) for v in b]  # type: ignore[arg-type]
    return stats.paired_comparison(a, b, higher_is_better=higher, margin=stats.MARGINS.get(m))  # type: ignore[arg-type]


def _implausible(rows: list[Record], alpha: float) -> tuple[Interval | None, Interval | None]:
    """The shares (Wilson intervals) of ``rows`` whose residual the noise law finds implausibly small and
    implausibly large at level ``alpha`` (two-sided: ``fit_p < alpha``, the side by the sign of ``fit_z``); None
    when some row lacks ``fit_p`` (rows written before it)."""
    if not all("fit_p" in r and "fit_z" in r for r in rows):
        return None, None
    flagged = [float(r["fit_p"]) < alpha for r in rows]
    small = [float(f and float(r["fit_z"]) < 0) for f, r in zip(flagged, rows, strict=True)]
    large = [float(f and float(r["fit_z"]) > 0) for f, r in zip(flagged, rows, strict=True)]
    return proportion_ci95(small), proportion_ci95(large)


def summarise(rows: list[Record], family: stats.Family = stats.PRIMARY_FAMILY) -> Record:
    """The summary ``{"rows": [...], "paired": [...], "rule": RULE, "alpha": ALPHA, "correction": ...,
    "primary_family": ..., "ssim_kind": ...}`` of results rows as :func:`reguidance.bench.records.read_results`
    returns them (``ssim`` the standard SSIM, ``ssim_padded`` torchmetrics' variant).

    ``rows``: per (task, method, variant) the mean and 95% interval of each metric of :data:`METRICS` present in
    every row (and of the signed ``fit_z``), class accuracy (Wilson interval), ``fit_small`` / ``fit_large`` (the
    shares of images whose residual is implausibly small / large under the noise law at level ``family.alpha``,
    :func:`_implausible`), NFE, seconds and peak memory. ``paired``: per (task, method) and each variant of
    :data:`AGAINST` present, ReGuidance minus that variant on the same images: each metric's
    :func:`reguidance.evaluation.stats.paired_comparison` (Student-t interval, effect size, median, wins / ties /
    losses, t and signed-rank p-values, TOST p-value against :data:`reguidance.evaluation.stats.MARGINS`), ``primary``
    (in ``family``), ``p_holm`` / ``p_tost_holm`` (Holm within ``family``; for secondary tests the raw values) and
    ``call`` (:data:`CALLS`); the ``verdict`` from the family's calls alone (:func:`_vote`). Below ``family.min_n``
    images: no test, ``verdict`` says why.

    Rows are de-duplicated by (task, method, variant, id), so a resumed run summarises like an uninterrupted one.
    ``fd_cls`` is ``None`` here (it needs the classifier's features of the saved images); ``class_acc`` is ``None``
    when no classifier was given to the runner.
    """
    unique: dict[tuple[object, ...], Record] = {}
    for r in rows:
        unique[(r["task"], r["method"], variant_of(r), r["id"])] = r
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for (task, method, variant, _), r in sorted(unique.items(), key=lambda kv: str(kv[0])):
        groups.setdefault((str(task), str(method), str(variant)), []).append(r)
    order = {v: k for k, v in enumerate(("candidate", "reguidance", *AGAINST[1:]))}
    keys = sorted(groups, key=lambda k: (k[0], k[1], order.get(k[2], 99)))
    out_rows = []
    for task, method, variant in keys:
        rs = sorted(groups[(task, method, variant)], key=lambda r: int(r["id"]))
        row: Record = {
            "task": task,
            "method": method,
            "variant": variant,
            "reguidance": variant == "reguidance",
            "n": len(rs),
        }
        for m in (*METRICS, "fit_z"):
            values = [_value(r, m) for r in rs]
            row[m] = mean_ci95(values) if all(v is not None for v in values) else None  # type: ignore[arg-type]
        row["fit_small"], row["fit_large"] = _implausible(rs, family.alpha)
        row["fd_cls"] = None
        row["class_acc"] = (
            proportion_ci95([float(r["pred"] == r["label"]) for r in rs]) if all("pred" in r for r in rs) else None
        )
        row["nfe"] = int(rs[0]["nfe"])
        row["sec_per_image"] = float(torch.tensor([float(r["sec_per_image"]) for r in rs]).mean())
        row["peak_mem_mb"] = max(float(r["peak_mem_mb"]) for r in rs)
        out_rows.append(row)
    paired = []
    for task, method, variant in keys:
        if variant not in AGAINST or (task, method, "reguidance") not in groups:
            continue
        before = {int(r["id"]): r for r in groups[(task, method, variant)]}
        after = {int(r["id"]): r for r in groups[(task, method, "reguidance")]}
        ids = sorted(before.keys() & after.keys())
        entry: Record = {
            "task": task,
            "method": method,
            "against": variant,
            "n": len(ids),
            "nfe": [int(after[ids[0]]["nfe"]), int(before[ids[0]]["nfe"])] if ids else None,
        }
        for m, higher in METRICS.items():
            skip = m == "consistency_raw" or not ids
            entry[m] = None if skip else _paired([after[i] for i in ids], [before[i] for i in ids], m, higher)
        if ids and all("pred" in r for r in (*before.values(), *after.values())):
            correct = [[float(d[i]["pred"] == d[i]["label"]) for i in ids] for d in (after, before)]
            entry["class_acc"] = stats.paired_comparison(correct[0], correct[1], margin=stats.MARGINS["class_acc"])
        else:
            entry["class_acc"] = None
        paired.append(entry)
    _call_all(paired, family)
    return {
        "rows": out_rows,
        "paired": paired,
        "rule": RULE,
        "alpha": ALPHA,
        "min_n": family.min_n,
        "correction": "holm within the primary family; secondary tests uncorrected",
        "primary_family": family.declaration(),
        "ssim_kind": SSIM_KIND,
    }


def _call_all(paired: list[Record], family: stats.Family) -> None:
    """Mark each test primary or not, Holm-correct the primary family's p-values (differences and TOST separately),
    set every metric's ``call``, then every comparison's votes and verdict (:func:`_vote`)."""
    tests = [(e, m) for e in paired for m in (*METRICS, "class_acc") if e.get(m) is not None]
    primary = [(e, m) for e, m in tests if family.contains(e["task"], e["method"], e["against"], m)]
    primary = [(e, m) for e, m in primary if e[m]["p_value"] is not None]
    for key in ("p_value", "p_tost"):
        with_p = [(e, m) for e, m in primary if e[m][key] is not None]
        for (e, m), q in zip(with_p, holm([float(e[m][key]) for e, m in with_p]), strict=True):
            e[m][key.replace("p_value", "p") + "_holm"] = q
    chosen = {(id(e), m) for e, m in primary}
    for e, m in tests:
        d = e[m]
        d["primary"] = (id(e), m) in chosen
        p = d.get("p_holm", d["p_value"]) if d["primary"] else d["p_value"]
        p_tost = d.get("p_tost_holm", d["p_tost"]) if d["primary"] else d["p_tost"]
        d["call"] = stats.call(d["mean"], p, p_tost, METRICS.get(m, True), family.alpha)
    _vote(paired, family.min_n)


def _vote(paired: list[Record], min_n: int) -> None:
    """Each comparison's votes from its tests' ``primary`` flags and ``call`` s: ``voting`` (its metrics tested in
    the family), ``better`` / ``worse`` / ``ties`` (those of them with that call), ``worse_secondary`` (the
    :data:`QUALITY` metrics outside the family called worse: shown, no vote) and ``verdict`` (:func:`verdict`;
    ``"no verdict (n = ...)"`` below ``min_n`` images, :data:`OUTSIDE` with no test in the family)."""
    for e in paired:
        tested = {m: d for m in (*METRICS, "class_acc") if isinstance(d := e.get(m), dict) and "call" in d}
        family = [m for m, d in tested.items() if d.get("primary")]
        e["voting"] = family
        for key, c in (("better", "better"), ("worse", "worse"), ("ties", "tie")):
            e[key] = [m for m in family if tested[m]["call"] == c]
        e["worse_secondary"] = [m for m in QUALITY if m in tested and m not in family and tested[m]["call"] == "worse"]
        if e["n"] < min_n:
            e["verdict"] = f"no verdict (n = {e['n']} < {min_n})"
        else:
            e["verdict"] = verdict(e) if family else OUTSIDE


def _ci(v: Record | None, fmt: str) -> str:
    if v is None:
        return "—"
    return f"{v['mean']:{fmt}} [{v['ci95'][0]:{fmt}}, {v['ci95'][1]:{fmt}}]"


def _p(v: object) -> str:
    """A p-value in two significant digits, "—" for none."""
    return "—" if v is None else f"{float(v):.2g}"  # type: ignore[arg-type]


def _change(d: Record | None, fmt: str = "+.3f", robust: bool = True) -> str:
    """A paired change: mean [interval], marked ▲ / ▼ when its test calls it better / worse (Holm-corrected in the
    primary family, uncorrected elsewhere), ≈ when two one-sided tests put it inside the margin (a tie), nothing
    when inconclusive or untested (too few images); then (``robust``, where the comparison has them) the median
    change, the wins / ties / losses and the signed-rank p-value."""
    if d is None:
        return "—"
    if int(d.get("n", 2)) < 2:  # one image: no interval to show
        return f"{d['mean']:{fmt}} (one image)"
    mark = {"better": " ▲", "worse": " ▼", "tie": " ≈"}.get(str(d.get("call")), "")
    text = f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]{mark}"
    if robust and "median" in d:
        text += f"; median {d['median']:{fmt}}; {d['wins']}/{d['ties']}/{d['losses']}; W p {_p(d['p_signed_rank'])}"
    return text


#: how a change is read in every table that shows one (:func:`_change`)
CHANGE_KEY = (
    "each change: mean [95% t interval], ▲ / ▼ better / worse, ≈ a tie within the margin; then the median change, "
    "ReGuidance's wins / ties / losses over the images, and the Wilcoxon signed-rank p-value (W p)"
)

#: column labels of the metrics (plain text: the Markdown renderer escapes ``|``)
LABELS_OF = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ssim_padded": "SSIM (torchmetrics, padded)",
    "lpips": "LPIPS",
    "reward": "reward",
    "consistency": "consistency",
    "consistency_raw": "consistency before clamp",
    "fit_z": "fit_z",
    "fit": "|fit_z|",
    "fit_small": "residual implausibly small (χ², 5%)",
    "fit_large": "residual implausibly large (χ², 5%)",
    "fd_cls": "FD-cls",
    "class_acc": "class acc",
    "confidence": "confidence",
    "knn_dist": "k-NN distance",
}
#: per metric of a means table: its format
_MEAN_FORMATS = {
    "psnr": ".2f",
    "ssim": ".3f",
    "ssim_padded": ".3f",
    "lpips": ".3f",
    "reward": ".3g",
    "consistency": ".2f",
    "consistency_raw": ".2f",
    "fit_z": "+.2f",
    "fit": ".2f",
    "fit_small": ".2f",
    "fit_large": ".2f",
    "fd_cls": ".1f",
    "class_acc": ".2f",
    "confidence": ".3f",
    "knn_dist": ".2f",
}
#: the columns a means table always has (shown even when empty), the others only when some row has them
_ALWAYS = ("psnr", "reward", "consistency", "consistency_raw")


def _means_table(summary: Record) -> Table:
    """Every (task, method, variant)'s means with their 95% intervals (a metric's column only when some row has it,
    except :data:`_ALWAYS`; FD-cls and class accuracy together)."""
    rows = summary["rows"]

    def has(m: str) -> bool:
        return m in _ALWAYS or any(r.get(m) for r in rows)

    with_acc = any(r.get("class_acc") or r.get("fd_cls") for r in rows)
    shown = [m for m in ("psnr", "ssim", "ssim_padded", "lpips", "reward", "consistency", "consistency_raw") if has(m)]
    shown += [m for m in ("fit_z", "fit", "fit_small", "fit_large") if has(m)]
    shown += ["fd_cls", "class_acc"] if with_acc else []
    shown += [m for m in ("confidence", "knn_dist") if has(m)]
    header = ("task", "method", "variant", "n", *(LABELS_OF[m] for m in shown), "NFE", "s/image")
    body = []
    for r in rows:
        variant = r.get("variant", "reguidance" if r["reguidance"] else "candidate")
        cells = [_ci(r.get(m), _MEAN_FORMATS[m]) for m in shown]
        body.append((str(r["task"]), str(r["method"]), str(variant), str(r["n"]), *cells, str(r["nfe"])))
        body[-1] += (f"{r['sec_per_image']:.2f}",)
    return Table(header, tuple(body))


#: per metric of a paired table: its label and format
_PAIRED_COLUMNS = {
    "psnr": ("ΔPSNR", "+.2f"),
    "ssim": ("ΔSSIM", "+.3f"),
    "ssim_padded": ("ΔSSIM (torchmetrics, padded)", "+.3f"),
    "lpips": ("ΔLPIPS", "+.3f"),
    "fit": ("Δ|fit_z|", "+.2f"),
    "reward": ("Δreward (no vote)", "+.3g"),
    "consistency": ("Δ(distance of consistency from 1) (no vote)", "+.2f"),
    "class_acc": ("Δclass acc", "+.2f"),
    "confidence": ("Δconfidence", "+.3f"),
    "knn_dist": ("Δk-NN distance", "+.2f"),
}


def _paired_table(entries: list[Record]) -> Table:
    """ReGuidance minus one rival per (task, method): each metric's change (:func:`_change`), the verdict and the
    family metrics it is worse on (a metric's column only when some comparison has it)."""
    shown = [m for m in _PAIRED_COLUMNS if any(e.get(m) for e in entries)]
    header = ("task", "method", "n", "NFE", *(_PAIRED_COLUMNS[m][0] for m in shown), "verdict", "worse on")
    body = []
    for p in entries:
        nfe = f"{p['nfe'][0]} vs {p['nfe'][1]}" if p.get("nfe") else "—"
        cells = [_change(p.get(m), _PAIRED_COLUMNS[m][1]) for m in shown]
        worse = ", ".join(p.get("worse", [])) or "—"
        body.append((str(p["task"]), str(p["method"]), str(p["n"]), nfe, *cells, str(p.get("verdict", "—")), worse))
    return Table(header, tuple(body))


def summary_blocks(summary: Record) -> list[Block]:
    """``summary`` as blocks (:data:`Block`): every (task, method, variant)'s means, then per rival of
    :data:`AGAINST` present a sentence and ReGuidance's paired changes against it, with their calls and verdicts.
    :func:`format_markdown` and ``report.html`` render these same blocks (the notes are added by their writers)."""
    blocks: list[Block] = [_means_table(summary)]
    for against in AGAINST:
        entries = [p for p in summary["paired"] if p.get("against", "candidate") == against]
        if entries:
            blocks.append(
                f"ReGuidance minus {against} (same images; {CHANGE_KEY}; the family's tests Holm-corrected and the "
                "only ones that vote, the others uncorrected):"
            )
            blocks.append(_paired_table(entries))
    return blocks


def format_markdown(summary: Record) -> str:
    """``summary`` as Markdown (:func:`summary_blocks`: tables and paragraphs, separated by blank lines)."""
    return "\n\n".join("\n".join(b.markdown()) if isinstance(b, Table) else b for b in summary_blocks(summary)) + "\n"


def blocks_html(blocks: Sequence[Block]) -> list[str]:
    """HTML of ``blocks``: each table with :func:`reguidance.io.webpage.text_table` (its header and cells as data,
    escaped), each paragraph a ``<p>``."""
    from ..io.webpage import text_table

    return [text_table(b.header, b.rows) if isinstance(b, Table) else f"<p>{html.escape(b)}</p>" for b in blocks]


def _folder(out: Path, task: str, method: str) -> Path:
    return out / "images" / task.replace(":", "_").replace("/", "_") / method.replace(":", "_").replace("/", "_")


def add_fd_cls(summary: Record, out: Path, features: Callable[[torch.Tensor], torch.Tensor], groups: int = 20) -> None:
    """Fill each row's ``fd_cls``: FD-cls between the saved restorations and the same ids' ground truths, with a
    95% delete-a-group jackknife interval (images and their truths in ``groups`` groups by position, ``k % groups``;
    each group left out once; :func:`reguidance.evaluation.metrics.jackknife_ci95`, the lower end clipped at 0).

    Not the bootstrap: resampling with replacement repeats images, which shrinks the fitted covariances and biases
    a Frechet distance upwards, so percentile intervals of the bootstrap often miss the estimate itself.

    The saved PNGs are read by :func:`reguidance.io.images.read_images` with their own channels (gray or RGB, as the
    run wrote them), so ``features`` sees the images the run produced.
    """
    from ..evaluation.classifier import frechet_distance, gaussian_fit

    for row in summary["rows"]:
        folder = _folder(out, row["task"], row["method"])
        kind = row.get("variant", "reguidance" if row["reguidance"] else "candidate")
        ids = sorted(int(f.name[:5]) for f in folder.glob("*_truth.png"))
        if len(ids) < 3:
            continue
        fx = features(read_images([folder / f"{i:05d}_{kind}.png" for i in ids])).double()
        ft = features(read_images([folder / f"{i:05d}_truth.png" for i in ids])).double()
        value = frechet_distance(*gaussian_fit(fx), *gaussian_fit(ft))
        group = torch.arange(len(ids)) % min(groups, len(ids))
        loo = [
            frechet_distance(*gaussian_fit(fx[group != g]), *gaussian_fit(ft[group != g]))
            for g in range(int(group.max()) + 1)
        ]
        row["fd_cls"] = jackknife_ci95(value, loo, lower=0.0)


#: the column label of each kind of saved image (grids and ``report.html``)
LABELS = {
    "measurement": "measurement",
    "candidate": "candidate",
    "reguidance": "+ReGuidance",
    "renoise": "renoise+DPS",
    "fresh": "fresh DPS",
    "more": "more budget",
    "truth": "truth",
}


def _kinds(folder: Path, first: int) -> tuple[str, ...]:
    """The kinds of image a (task, method) folder holds, in column order: measurement, candidate, +ReGuidance,
    the ablations the run saved, truth."""
    present = [v for v in AGAINST[1:] if (folder / f"{first:05d}_{v}.png").is_file()]
    return ("measurement", "candidate", "reguidance", *present, "truth")


def _ids(folder: Path) -> list[int]:
    """The ids of ``folder`` whose candidate and ReGuidance pictures are saved (a batch stopped before its first
    variant finished leaves only the truth and the measurement)."""
    done = ("candidate", "reguidance")
    return sorted(
        int(f.name[:5])
        for f in folder.glob("*_truth.png")
        if all((folder / f"{f.name[:5]}_{k}.png").is_file() for k in done)
    )


def save_grids(out: Path, n: int = 8) -> list[Path]:
    """Per (task, method): ``out/grids/<task>_<method>.png``, a labelled grid
    (:func:`reguidance.io.pictures.labelled_grid`) with columns measurement | candidate | +ReGuidance | the ablations
    the run saved | truth and one row per id (the first ``n``, labelled ``id <i>``), titled ``<task> / <method>``,
    in the saved images' own channels (gray or RGB)."""
    from ..io.pictures import save_labelled_grid

    paths = []
    for folder in sorted(p for p in (out / "images").glob("*/*") if p.is_dir()):
        ids = _ids(folder)[:n]
        if not ids:
            continue
        kinds = _kinds(folder, ids[0])
        x = read_images([folder / f"{i:05d}_{k}.png" for i in ids for k in kinds])
        path = out / "grids" / f"{folder.parent.name}_{folder.name}.png"
        title = f"{folder.parent.name} / {folder.name}"
        save_labelled_grid(x, path, [LABELS[k] for k in kinds], [f"id {i}" for i in ids], title)
        paths.append(path)
    return paths


def tradeoff_figure(summary: Record) -> Any:
    """The figure of :func:`save_tradeoff_plot` (a ``matplotlib.figure.Figure``, constrained layout: every label
    and the legend inside it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = {
        (r["task"], r["method"], r["reguidance"]): r
        for r in summary["rows"]
        if r.get("variant") in (None, "candidate", "reguidance")
    }
    use_acc = bool(rows) and all(r.get("class_acc") is not None for r in rows.values())
    realism = "class_acc" if use_acc else _ssim_key(list(rows.values()))
    pairs = [(t, m) for (t, m, rg) in rows if not rg and (t, m, True) in rows]
    methods = sorted({m for _, m in pairs})
    tasks = sorted({t for t, _ in pairs})
    colours = {m: f"C{k % 10}" for k, m in enumerate(methods)}
    markers = {t: "osD^vP*Xph"[k % 10] for k, t in enumerate(tasks)}
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for task, method in pairs:
        a, b = rows[(task, method, False)], rows[(task, method, True)]
        xa, ya = a["consistency"]["mean"], a[realism]["mean"]
        xb, yb = b["consistency"]["mean"], b[realism]["mean"]
        c, mk = colours[method], markers[task]
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), arrowprops={"arrowstyle": "->", "color": c, "lw": 1.2})
        ax.scatter([xa], [ya], marker=mk, s=40, facecolors="white", edgecolors=c, zorder=3)
        ax.scatter([xb], [yb], marker=mk, s=40, c=c, zorder=3)
    ax.axvline(1.0, ls=":", c="k", lw=0.8)
    ax.set_xlabel("measurement consistency ||Ax - y|| / (sigma_y sqrt(m))\n(1 = explains y up to the noise)")
    ax.set_ylabel("class accuracy of restorations" if use_acc else LABELS_OF[realism])
    ax.set_title("each arrow: candidate (hollow) -> + ReGuidance (filled)", fontsize=10)
    handles = [Line2D([], [], color=colours[m], lw=2, label=f"method {m}") for m in methods]
    handles += [Line2D([], [], ls="", marker=markers[t], color="gray", label=f"task {t}", markersize=7) for t in tasks]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="white", mec="gray", label="candidate"),
        Line2D([], [], ls="", marker="o", color="gray", label="+ ReGuidance"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return fig


def save_tradeoff_plot(summary: Record, path: Path) -> Path:
    """Measurement consistency against realism (class accuracy, else SSIM): an arrow per (task, method) from the
    candidate (hollow marker) to ReGuidance (filled), colour by method, marker by task, named in a legend beside
    the axes (no text on the points, so nothing overlaps)."""
    fig = tradeoff_figure(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


def _metric_lines(row: Record | None) -> list[str]:
    """The metrics of one row as short lines (those the row holds; none for no row)."""
    if row is None:
        return []
    ssim = ("ssim", "SSIM {:.3f}") if "ssim" in row else ("ssim_padded", "SSIM (torchmetrics, padded) {:.3f}")
    shown = [("psnr", "PSNR {:.2f} dB"), ssim, ("lpips", "LPIPS {:.3f}")]
    shown += [("consistency", "consistency {:.2f}"), ("reward", "reward {:.3g}")]
    lines = [fmt.format(row[k]) for k, fmt in shown if isinstance(row.get(k), (int, float))]
    if row.get("pred") is not None:
        lines.append(f"class {row['pred']}")
    return lines


def write_report_html(out: Path, summary: Record, title: str | None = None) -> Path:
    """``out/report.html``, written atomically: per (task, method) a table with one row per image id and the
    columns measurement | candidate | +ReGuidance | the ablations the run saved | truth, each picture (the PNGs
    under ``out/images``, by relative path) with the metrics its row in ``results*.jsonl`` holds (PSNR, SSIM,
    LPIPS, consistency, reward, predicted class); then the run's summary: the tables of :func:`summary_blocks`
    rendered from their data (not from Markdown) and the notes. Opens in any browser without a server
    (:mod:`reguidance.io.webpage`)."""
    from PIL import Image

    from ..io.pictures import MIN_CELL, cell_scale
    from ..io.webpage import Cell, image_table, relative_src, write_page

    by_key: dict[tuple[str, str], dict[tuple[int, str], Record]] = {}
    for row in read_all_results(out):
        by_key.setdefault((str(row["task"]), str(row["method"])), {})[(int(row["id"]), variant_of(row))] = row
    parts = []
    for (task, method), rows in sorted(by_key.items()):
        folder = _folder(out, task, method)
        ids = sorted({i for i, _ in rows})
        kinds = _kinds(folder, ids[0])
        width = MIN_CELL
        if (folder / f"{ids[0]:05d}_truth.png").is_file():
            with Image.open(folder / f"{ids[0]:05d}_truth.png") as first:
                width = first.width * cell_scale(first.width)
        table = []
        for i in ids:
            labels = [r["label"] for (j, _), r in rows.items() if j == i and r.get("label") is not None]
            cells = []
            for k in kinds:
                png = folder / f"{i:05d}_{k}.png"
                lines = _metric_lines(rows.get((i, k)))
                if k == "truth" and labels:
                    lines = [f"class {labels[0]}"]
                cells.append(Cell(relative_src(png, out) if png.is_file() else None, lines))
            table.append((f"id {i}", cells))
        parts.append(f"<h2>{html.escape(task)} / {html.escape(method)}</h2>")
        parts.append(image_table([LABELS[k] for k in kinds], table, width))
    notes = [f"Note: {n}" for n in summary.get("notes", [])]
    parts += ["<h2>Summary</h2>", *blocks_html([*summary_blocks(summary), *notes])]
    return write_page(out / "report.html", title or f"benchmark {out.name}", parts)


def write_summary(
    out: Path, features: Callable[[torch.Tensor], torch.Tensor] | None = None, notes: list[str] | None = None
) -> Record:
    """Summarise ``out/results.jsonl`` into ``out/summary.json`` and ``out/summary.md`` (with FD-cls when
    ``features`` is given; ``notes``, e.g. which metrics were skipped, go into both); returns the summary."""
    summary = summarise(read_all_results(out))
    if features is not None:
        add_fd_cls(summary, out, features)
    summary["notes"] = list(notes or [])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(format_markdown(summary) + "".join(f"\nNote: {n}\n" for n in summary["notes"]))
    return summary


def save_overview(grids: list[Path], path: Path, title: str, per_row: int | None = None) -> Path:
    """The per-(task, method) grids (:func:`save_grids`, each with its own title and labels) in one picture under
    ``title``, ``per_row`` to a row (:func:`reguidance.io.pictures.overview`; pixels as in the grids, nothing
    resampled). By default a row per task: ``per_row`` is the number of methods among the grids (the method
    folders of the run that name a grid ``<task>_<method>``), 3 when that cannot be told."""
    from PIL import Image

    from ..io.pictures import overview

    if per_row is None:
        out = grids[0].parent.parent if grids else path.parent
        method_names = {p.name for p in (out / "images").glob("*/*") if p.is_dir()}
        used = {m for g in grids for m in method_names if g.stem.endswith(f"_{m}")}
        per_row = len(used) or 3
    pictures = []
    for g in grids:
        with Image.open(g) as picture:
            pictures.append(picture.copy())
    with atomic_path(path) as tmp:  # recorded in the manifest of a folder a run owns, so a rerun may replace it
        overview(pictures, title, per_row).save(tmp, format="PNG")
    return path


def verdict(paired: Record) -> str:
    """The rule of :data:`RULE` from a paired entry's ``better``, ``worse`` and ``ties`` metrics among ``voting``,
    its metrics tested in the declared family (secondary tests are not in these lists: they never vote):
    ``helps`` / ``hurts`` / ``mixed`` / ``equivalent`` (every family test a tie) / ``no clear change``."""
    good, bad = bool(paired.get("better")), bool(paired.get("worse"))
    voting = paired.get("voting") or []
    if not good and not bad and voting and set(voting) <= set(paired.get("ties") or []):
        return "equivalent"
    return "mixed" if good and bad else "helps" if good else "hurts" if bad else "no clear change"


_NAMES = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ssim_padded": "SSIM (torchmetrics' padded variant)",
    "lpips": "LPIPS",
    "reward": "reward -‖y − Ax‖² (does not vote)",
    "fit": "fit to y |fit_z|",
    "class_acc": "class accuracy",
    "consistency": "consistency's distance from 1 (does not vote)",
    "confidence": "classifier confidence",
    "knn_dist": "k-NN feature distance",
}
#: the short name of a metric in a sentence (the padded SSIM keeps its label)
_SHORT = {"ssim_padded": "SSIM (padded)", "fit": "|fit_z|", "reward": "reward", "consistency": "|consistency - 1|"}
#: the short label of a metric's change in the BENCHMARK.md tables
_DELTA = {"ssim": "ΔSSIM", "ssim_padded": "ΔSSIM (padded)", "fit": "Δ\\|fit_z\\|", "psnr": "ΔPSNR"}


def _ssim_key(entries: Sequence[Record]) -> str:
    """The SSIM that ``entries`` (paired entries or summary rows of one run) hold: ``ssim`` (the standard one) when
    any holds it, else ``ssim_padded`` (records written before it). One table never shows both under one label."""
    return "ssim" if any(e.get("ssim") for e in entries) else "ssim_padded"


def _calls(m: str, entries: list[Record]) -> str:
    """``"better / tie / inconclusive / worse"``: how many of ``entries`` got each call on metric ``m`` (untested
    comparisons, below the minimum n, are in none)."""
    calls = [e[m]["call"] for e in entries if e.get(m) is not None]
    return " / ".join(str(calls.count(c)) for c in ("better", "tie", "inconclusive", "worse"))


def _verdict_counts(verdicts: list[str]) -> tuple[int, int]:
    """``(too few images, outside the family)``: how many ``verdicts`` are no verdict, for each reason."""
    outside = verdicts.count(OUTSIDE)
    return sum(v.startswith("no verdict") for v in verdicts) - outside, outside


def _counts_table(entries: list[Record]) -> list[str]:
    """Per metric: how many comparisons got each call (primary tests Holm-corrected, the rest uncorrected); then the
    verdicts, which count the family's calls only."""
    lines = ["| metric | better | tie | inconclusive | worse | no test (n too small) |", "|---|---|---|---|---|---|"]
    for m in (*QUALITY, "reward", "consistency"):
        calls = [e[m]["call"] for e in entries if e.get(m) is not None]
        if calls:
            lines.append(f"| {_NAMES[m]} | " + " | ".join(str(calls.count(c)) for c in CALLS) + " |")
    verdicts = [e["verdict"] for e in entries]
    worse_any = sum(bool(e["worse"]) for e in entries)
    untested, outside = _verdict_counts(verdicts)
    lines += [
        f"| **verdict** (family tests only) | **{verdicts.count('helps')} helps** | "
        f"{verdicts.count('equivalent')} equivalent | {verdicts.count('no clear change')} no clear change, "
        f"{verdicts.count('mixed')} mixed | **{verdicts.count('hurts')} hurts** | {untested} no verdict, "
        f"{outside} outside the family |",
        f"| worse on at least one family test | | | | {worse_any} of {len(entries)} | |",
    ]
    return lines


def _losses(entries: list[Record], against: str) -> list[str]:
    """One sentence per comparison where ReGuidance is worse than ``against`` on a family test (a vote), then one
    per comparison worse only on secondary tests (uncorrected; shown, no vote)."""
    out, secondary = [], []
    for e in entries:
        rival = e.get("against", against)
        if e["worse"]:
            changes = ", ".join(f"{_SHORT.get(m, _NAMES[m])} {e[m]['mean']:+.3g}" for m in e["worse"])
            out.append(f"- {e['task']} / {e['method']}: worse than `{rival}` on {changes} ({e['verdict']}).")
        worse = e.get("worse_secondary") or []
        if worse:
            changes = ", ".join(f"{_SHORT.get(m, _NAMES[m])} {e[m]['mean']:+.3g}" for m in worse)
            secondary.append(f"{e['task']} / {e['method']} against `{rival}` ({changes})")
    out = out or [f"- none: no comparison with the {against} is worse on a family test after the correction."]
    if secondary:
        out.append("- secondary, uncorrected, no vote: worse on " + "; ".join(secondary) + ".")
    return out


def _tuned_section(
    protocol: str, prior: str, tasks: set[str] | None = None, table: Record | None = None, padded: bool = False
) -> list[str]:
    """The tuned table of ``prior``: per (task, method) the chosen options, the values tried on each axis, the axes
    whose choice is still on an edge, and the settings each row had in all (tables tuned with ``--ablations``).
    ``table``: the one a run recorded in its ``config.json`` (``bench --tuned``), else the package's. ``padded``: the
    run's records hold torchmetrics' padded SSIM, so the recorded table, tuned with them, selected on that SSIM."""
    from .defaults import tuned_table

    recorded = table is not None
    if table is None:
        table = tuned_table(protocol, prior)
    entries = [e for e in table.get("entries", []) if tasks is None or e["task"] in tasks]
    if not entries:
        return [f"No tuned table for {prior} under protocol `{protocol}`: the untuned reference options were used.", ""]
    own = any("variants" in e for e in entries)  # tuned with --ablations: each ablation's own choice is shown
    lines = [
        f"Options chosen on validation images {table.get('ids')} of {prior} (seed {table.get('seed')}, "
        f"{table.get('dtype', '?')}) by `{table.get('command')}`; rule: {table.get('rule')}. Grids: "
        + "; ".join(f"{m} `{g}`" for m, g in table.get("method_grids", {}).items())
        + f"; the wrapper `{table.get('wrapper_grid')}`; an axis whose choice sits on an edge is widened up to "
        f"{table.get('max_widen', 0)} times."
        + (
            " The rule's SSIM is torchmetrics' padded variant, the one computed when it was tuned."
            if padded and recorded
            else ""
        ),
        "",
        "| task | method | method options chosen | values tried | wrapper chosen | values tried | still on an edge "
        "| settings in all |" + (" ablations' own choices |" if own else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if own else ""),
    ]

    def g(v: object) -> str:  # numbers short, a categorical value (sampler) as it is
        return f"{v:g}" if isinstance(v, (int, float)) else str(v)

    for e in entries:
        edges = e.get("edges", {})

        def tried(stage: str, edges: Record = edges) -> str:
            return "; ".join(f"{k}: {', '.join(g(v) for v in a['values'])}" for k, a in edges.get(stage, {}).items())

        chosen = {k: v for k, v in e["method_options"].items() if k in edges.get("method", {})}
        on_edge = [
            f"{stage} {k}" + (" (hard limit)" if a["hard_limit"] else "")
            for stage, axes in edges.items()
            for k, a in axes.items()
            if a["on_edge"]
        ]
        settings = ", ".join(f"{v} {n}" for v, n in e.get("settings", {}).items()) or "—"
        lines.append(
            f"| {e['task']} | {e['method']} | {', '.join(f'{k}={g(v)}' for k, v in chosen.items()) or '—'} | "
            f"{tried('method') or '—'} | {', '.join(f'{k}={g(v)}' for k, v in e['reguidance'].items())} | "
            f"{tried('reguidance')} | {', '.join(on_edge) or 'no'} | {settings} |"
            + (f" {_variant_choices(e.get('variants', {}), g)} |" if own else "")
        )
    return [*lines, ""]


def _variant_choices(variants: Record, g: Callable[[object], str]) -> str:
    """Each ablation's own tuned choice (``renoise: step_size=10, t_end=0.6, sampler=ddpm; ...; more: step_size=1``),
    the axes still on an edge of its own grid named after it."""
    parts = []
    for name, chosen in variants.items():
        options = chosen["reguidance"] if "reguidance" in chosen else chosen["method_options"]
        axes: Record = chosen.get("edges", {})  # per axis of its own grid
        shown = {k: v for k, v in options.items() if k in axes or not axes}
        edge = [k + (" (hard limit)" if a["hard_limit"] else "") for k, a in axes.items() if a["on_edge"]]
        parts.append(
            f"{name}: {', '.join(f'{k}={g(v)}' for k, v in shown.items()) or '—'}"
            + (f" (on an edge: {', '.join(edge)})" if edge else "")
        )
    return "; ".join(parts) or "—"


def _latent_vs_renoise(entries: list[Record]) -> list[str]:
    """Plainly, per metric: the (task, method) pairs where the inverted latent beats re-noising the candidate to the
    same depth, where the two are not told apart, and where re-noising wins."""
    es = [e for e in entries if e["against"] == "renoise"]
    if not es:
        return []
    lines = ["Inverted latent against re-noising the candidate to the same depth (`renoise`), per metric:", ""]
    for m in (_ssim_key(es), "fit", "psnr"):
        groups: dict[str, list[str]] = {c: [] for c in CALLS}
        for e in es:
            if e.get(m) is not None:
                groups[e[m]["call"]].append(f"{e['task']}/{e['method']}")
        lines.append(
            f"- {_NAMES[m]}: the latent wins on {len(groups['better'])} "
            f"({', '.join(groups['better']) or 'none'}), ties within the margin on {len(groups['tie'])}, no "
            f"conclusion on {len(groups['inconclusive'])}, re-noising wins on {len(groups['worse'])} "
            f"({', '.join(groups['worse']) or 'none'})"
            + (f", untested (too few images) on {len(groups['no test'])}." if groups["no test"] else ".")
        )
    return [*lines, ""]


def _same_nfe(summary: Record) -> list[str]:
    """ReGuidance against the best ablation (highest mean SSIM) that spends at least its NFE, per (task, method)."""
    rows = {(r["task"], r["method"], r["variant"]): r for r in summary["rows"]}
    ssim = _ssim_key(summary["rows"])
    lines = []
    for e in summary["paired"]:
        if e["against"] == "candidate":
            continue
        rg = rows[(e["task"], e["method"], "reguidance")]
        if rows[(e["task"], e["method"], e["against"])]["nfe"] < rg["nfe"]:
            continue
        rivals = [
            p
            for p in summary["paired"]
            if (p["task"], p["method"]) == (e["task"], e["method"])
            and p["against"] != "candidate"
            and rows[(p["task"], p["method"], p["against"])]["nfe"] >= rg["nfe"]
        ]
        best = max(rivals, key=lambda p: rows[(p["task"], p["method"], p["against"])][ssim]["mean"])
        if best is e:
            lines.append(
                f"| {e['task']} | {e['method']} | {e['against']} | {e['nfe'][0]} vs {e['nfe'][1]} | "
                f"{_change(e.get('psnr'), '+.2f')} | {_change(e.get(ssim))} | {_change(e.get('fit'), '+.2f')} | "
                f"{e['verdict']} |"
            )
    if not lines:
        return []
    return [
        f"ReGuidance against the best ablation (highest mean {_NAMES[ssim]}) that spends at least as many network "
        f"evaluations ({CHANGE_KEY}):",
        "",
        f"| task | method | best at ≥ NFE | NFE | ΔPSNR | {_DELTA[ssim]} | Δ\\|fit_z\\| | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]


def _ablation_summary(entries: list[Record]) -> list[str]:
    """Per ablation: how often ReGuidance beats it, ties, or loses, on SSIM and on the fit to y, and its verdicts."""
    ssim = _ssim_key(entries)
    lines = [
        f"| ReGuidance against | comparisons | {_NAMES[ssim]} better / tie / inconclusive / worse | "
        "\\|fit_z\\| better / tie / inconclusive / worse | verdicts |",
        "|---|---|---|---|---|",
    ]
    for against in AGAINST[1:]:
        es = [e for e in entries if e["against"] == against]
        if not es:
            continue

        verdicts = [e["verdict"] for e in es]
        untested, outside = _verdict_counts(verdicts)
        lines.append(
            f"| {against} | {len(es)} | {_calls(ssim, es)} | {_calls('fit', es)} | "
            + ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS)
            + f", {untested} no verdict, {outside} outside the family"
            + " |"
        )
    return lines


#: the markers of BENCHMARK.md's pre-registration section, which :func:`preregistration` fills
PREREGISTRATION_MARKERS = ("<!-- preregistration:begin -->", "<!-- preregistration:end -->")


def preregistration(family: stats.Family = stats.PRIMARY_FAMILY) -> str:
    """The pre-registered analysis (Markdown), written into BENCHMARK.md's pre-registration section before the run
    (``reguidance bench-report`` rewrites it; a test checks that the committed section equals this text): the
    primary family of :data:`reguidance.evaluation.stats.PRIMARY_FAMILY` verbatim, the margins and the minimum n."""
    return "\n".join(
        [
            "Declared in code (`reguidance.evaluation.stats.PRIMARY_FAMILY`, `MARGINS`, `MIN_N`) before the run; "
            "the report tests exactly this family:",
            "",
            family.declaration(),
            "",
        ]
    )


def _primary_table(summary: Record) -> list[str]:
    """Every test of the primary family: the change with its Student-t 95% interval, d_z, the raw and Holm-adjusted
    p-values, the Holm-adjusted TOST p-value and the call; beside them the median change, the wins / ties / losses
    and the signed-rank p-value (uncorrected, shown beside the t test: it does not vote)."""
    tests = [
        (e, m)
        for e in summary["paired"]
        for m in (*METRICS, "class_acc")
        if e.get(m) is not None and e[m].get("primary")
    ]
    untested = [e for e in summary["paired"] if str(e.get("verdict", "")).startswith("no verdict (n")]
    if not tests:
        note = (
            f" ({len(untested)} comparisons have fewer than {summary.get('min_n')} images: no test)" if untested else ""
        )
        return [f"**Primary family**: no test of the declared family in this run{note}.", ""]

    table = Table(
        (
            "task",
            "method",
            "against",
            "metric",
            "n",
            "change [95% CI]",
            "d_z",
            "p",
            "p Holm",
            "p TOST Holm (margin)",
            "call",
            "median",
            "wins / ties / losses",
            "signed-rank p",
        ),
        tuple(
            (
                str(e["task"]),
                str(e["method"]),
                str(e["against"]),
                _NAMES.get(m, m),
                str(e[m]["n"]),
                _change(e[m], "+.3f", robust=False),
                "—" if e[m].get("effect_size") is None else f"{e[m]['effect_size']:+.2f}",
                _p(e[m]["p_value"]),
                _p(e[m].get("p_holm")),
                f"{_p(e[m].get('p_tost_holm'))} ({e[m].get('margin')})",
                str(e[m]["call"]),
                "—" if "median" not in e[m] else f"{e[m]['median']:+.3f}",
                "—" if "wins" not in e[m] else f"{e[m]['wins']} / {e[m]['ties']} / {e[m]['losses']}",
                _p(e[m].get("p_signed_rank")),
            )
            for e, m in tests
        ),
    )
    return [
        f"**Primary family** ({len(tests)} tests, Holm-corrected together; ≈ = tie by TOST within the margin; the "
        "verdicts count these calls only):",
        "",
        *table.markdown(),
        "",
    ]


def primary_answer(runs: dict[str, Path]) -> str:
    """BENCHMARK.md's computed answer (its ``primary_answer`` section): per run, how the declared primary family's
    tests came out (better / tie / inconclusive / worse, Holm-corrected within the family), then one line per
    (task, method, against) with the change of each family metric (SSIM, ``|fit_z|``: lower is better) and their
    calls (:func:`_change`: with the median, the wins / ties / losses and the signed-rank p-value)."""
    parts = []
    for name, out in runs.items():
        summary, config = read_run(out)
        metrics = [
            m for m in (*METRICS, "class_acc") if any((e.get(m) or {}).get("primary") for e in summary["paired"])
        ]
        tests = [(e, m) for e in summary["paired"] for m in metrics if (e.get(m) or {}).get("primary")]
        n = sorted({int(e[m]["n"]) for e, m in tests})
        if not tests:
            parts += [f"**{name}**: no test of the primary family in this run.", ""]
            continue
        tally = ", ".join(f"{c} in {sum(e[m]['call'] == c for e, m in tests)}" for c in CALLS[:4])
        formats = {m: "+.2f" if m in ("fit", "psnr", "knn_dist") else "+.3f" for m in metrics}
        parts += [
            f"**{name}** (protocol `{config['protocol']}`, test ids {', '.join(config['ids'])}, "
            f"{'/'.join(map(str, n))} images per comparison): of {len(tests)} primary tests ReGuidance comes out "
            f"{tally} (Holm within the family; a tie is TOST within the stated margin; {CHANGE_KEY}).",
            "",
            "| task | candidate | ReGuidance against | NFE | "
            + " | ".join(f"{_DELTA.get(m, 'Δ' + m)} [95% CI]" for m in metrics)
            + " | verdict |",
            "|---|---|---|---|" + "---|" * len(metrics) + "---|",
        ]
        for e in summary["paired"]:
            if any(x is e for x, _ in tests):
                nfe = e.get("nfe")
                nfe_text = f"{nfe[0]} vs {nfe[1]}" if isinstance(nfe, list) and len(nfe) == 2 else "—"
                parts.append(
                    f"| {e['task']} | {e['method']} | {e['against']} | {nfe_text} | "
                    + " | ".join(_change(e.get(m), formats[m]) for m in metrics)
                    + f" | {e['verdict']} |"
                )
        parts.append("")
    return "\n".join(parts)


def read_run(out: Path) -> tuple[Record, Record]:
    """``(summary, config)`` of the finished benchmark folder ``out``: ``summary.json`` and ``config.json``, each
    checked (:func:`reguidance.io.files.read_json_object`): a broken or edited file is an ``InputError`` naming it."""
    summary = read_json_object(out / "summary.json", ("rows", "paired", "rule"))
    config = read_json_object(out / "config.json", ("protocol", "tuned", "seed", "ids"))
    for key in ("rows", "paired"):
        if not isinstance(summary[key], list) or not all(isinstance(r, dict) for r in summary[key]):
            raise InputError(f"{out / 'summary.json'}: {key} is not a list of objects; rerun `reguidance bench` there")
    if not isinstance(config["ids"], list) or not isinstance(config.get("context", {}), dict):
        raise InputError(f"{out / 'config.json'}: ids or context is not what `reguidance bench` writes")
    kind = summary.get("ssim_kind")
    if kind is None:
        return _from_legacy(summary, out), config
    if kind != SSIM_KIND:
        raise InputError(
            f"{out / 'summary.json'} holds an SSIM of kind {kind!r}, but this version knows only {SSIM_KIND!r}"
        )
    return summary, config


def _from_legacy(stored: Record, out: Path) -> Record:
    """The summary of a folder whose ``summary.json`` was written before the standard SSIM (no ``ssim_kind``): its
    ``ssim`` is torchmetrics' padded variant and its verdicts counted secondary tests.

    With the folder's results rows (which :func:`reguidance.bench.records.read_results` reads with that value as
    ``ssim_padded``), the summary is re-derived from them by :func:`summarise` under the family as declared then
    (:data:`reguidance.evaluation.stats.LEGACY_FAMILY`: the same tests, so the same Holm correction, t statistics and
    calls as stored), which adds the median, wins and signed-rank p-values and the family-only verdicts; FD-cls (it
    needs the saved pictures) and the notes are carried over. Without rows, the stored summary itself, its ``ssim``
    renamed ``ssim_padded`` and its verdicts recounted from the stored family calls (:func:`_vote`)."""
    rows = read_all_results(out)
    if rows:
        summary = summarise(rows, stats.LEGACY_FAMILY)
        fd = {(r["task"], r["method"], r.get("variant")): r.get("fd_cls") for r in stored["rows"]}
        for r in summary["rows"]:
            r["fd_cls"] = fd.get((r["task"], r["method"], r["variant"]))
        summary["notes"] = list(stored.get("notes", []))
        return summary
    summary = json.loads(json.dumps(stored))  # a copy: the stored one stays as read
    for record in (*summary["rows"], *summary["paired"]):
        if "ssim" in record:
            record["ssim_padded"] = record.pop("ssim")
    _vote(summary["paired"], int(summary.get("min_n", stats.MIN_N)))
    summary["ssim_kind"] = SSIM_KIND  # its `ssim` (none) is the standard one from here on
    return summary


def benchmark_tables(runs: dict[str, Path]) -> str:
    """Markdown for ``BENCHMARK.md``, every figure computed here: per prior (name -> benchmark folder with
    ``summary.json`` and ``config.json``) the tuned options, the per-metric summary of ReGuidance against its
    candidate with the verdict rule, every comparison where it loses, the ablations (against re-noising, fresh
    noise and the base method given the same extra NFE, and the same-NFE view), the full tables, and the cost."""
    parts = []
    for prior, out in runs.items():
        summary, config = read_run(out)
        rows = {
            (r["task"], r["method"], r.get("variant", "reguidance" if r["reguidance"] else "candidate")): r
            for r in summary["rows"]
        }
        main = [p for p in summary["paired"] if p.get("against", "candidate") == "candidate"]
        ablations = [p for p in summary["paired"] if p.get("against", "candidate") != "candidate"]
        n_images = sorted({p["n"] for p in main})
        prior_name = str(config.get("context", {}).get("prior", prior))
        ssim = _ssim_key(summary["rows"])
        parts += [
            f"### {prior}",
            "",
            f"Protocol `{config['protocol']}` "
            f"({'options tuned on validation images' if config['tuned'] else 'untuned reference options'}), "
            f"seed {config['seed']}, test ids {', '.join(config['ids'])} ({'/'.join(map(str, n_images))} images per "
            f"comparison), network in {config.get('context', {}).get('dtype', '?')}.",
            "",
            *_tuned_section(
                str(config["protocol"]),
                prior_name,
                {p["task"] for p in main},
                config.get("tuned_table"),
                padded=ssim == "ssim_padded",
            ),
            *_primary_table(summary),
            f"**ReGuidance against its candidate**, {len(main)} comparisons (task x method). {summary['rule']}",
            "",
            *_counts_table(main),
            "",
            "Where ReGuidance loses to its candidate:",
            "",
            *_losses(main, "candidate"),
            "",
        ]
        if ablations:
            parts += [
                "**Ablations** (same images, measurements and random streams; `renoise` and `more` on "
                f"{_SHORT.get(ssim, 'SSIM')} and the fit to y are in the primary family, everything else is "
                "secondary): "
                "`renoise` forward-noises the candidate to the wrapper's `t_end` and runs the same DPS (SDEdit + DPS); "
                "`fresh` runs the same DPS from fresh noise at `t_end` (no candidate); `more` gives the base method "
                "the wrapper's extra network evaluations (its step budget scaled, its tuned step size kept).",
                "",
                *_ablation_summary(ablations),
                "",
                "Where the inverted latent loses to an ablation:",
                "",
                *_losses(ablations, "ablation"),
                "",
                *_latent_vs_renoise(ablations),
                *_same_nfe(summary),
            ]
        parts += [
            "Cost per image (one thread; NFE = network evaluations):",
            "",
            "| task | method | candidate NFE | candidate s/image | + ReGuidance NFE | + ReGuidance s/image |",
            "|---|---|---|---|---|---|",
        ]
        for p in main:
            before, after = rows[(p["task"], p["method"], "candidate")], rows[(p["task"], p["method"], "reguidance")]
            parts.append(
                f"| {p['task']} | {p['method']} | {before['nfe']} | {before['sec_per_image']:.2f} | "
                f"{after['nfe'] - before['nfe']} | {after['sec_per_image'] - before['sec_per_image']:.2f} |"
            )
        parts += ["", *_walltime(out)]
        parts += ["<details><summary>Full tables</summary>", "", format_markdown(summary), "</details>", ""]
    return "\n".join(parts)


def _walltime(out: Path) -> list[str]:
    """The commands that made the folder ``out`` with the wall time each took, from the ``walltime.jsonl`` that
    ``scripts/study.sh`` appends to (one JSON object a line); nothing when the folder has none."""
    path = out / "walltime.jsonl"
    if not path.is_file():
        return []
    lines = [
        f"Wall time of each command that wrote this folder ({path.name}: one record per command, as `scripts/study.sh` "
        "writes them):",
        "",
        "| started (UTC) | seconds | processes | device | exit | command |",
        "|---|---|---|---|---|---|",
    ]
    for number, text in enumerate(path.read_text().splitlines(), 1):
        try:
            r = json.loads(text)
            lines.append(
                f"| {r['started']} | {int(r['seconds'])} | {int(r['nproc'])} | {r['device']} | {int(r['rc'])} | "
                f"`{' '.join(str(r['command']).split())}` |"
            )
        except (ValueError, KeyError, TypeError):
            lines.append(f"| line {number} of {path} is not a wall-time record | | | | | |")
    return [*lines, ""]


def save_method_overview(out: Path, method: str, path: Path, title: str) -> Path | None:
    """One picture of ``method``'s grids on every task of the benchmark folder ``out`` (made by
    :func:`save_grids`, so labelled with the variants the run saved); ``None`` if it has none."""
    grids = [g for g in save_grids(out) if g.stem.endswith(f"_{method}")]
    if not grids:
        return None
    return save_overview(grids, path, title, per_row=len(grids))  # the tasks side by side


def readme_summary(runs: dict[str, Path]) -> str:
    """The README's short version of the benchmark, every figure computed from the runs' ``summary.json``: per
    prior, how many (task, method) comparisons ReGuidance helps, ties, leaves unclear, mixes or hurts against its
    candidate (and how many had too few images for a verdict), on how many it is worse on some voting metric, and
    (where the run has them) how it fares against the ablations."""
    counts = "better / tie / inconclusive / worse"
    lines = [
        "| prior | comparisons | helps | equivalent | no clear change | mixed | hurts | no verdict (too few images) "
        f"| outside the family | worse on some family test | SSIM {counts} | \\|fit_z\\| {counts} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ablation_lines = []
    for prior, out in runs.items():
        summary, _ = read_run(out)
        main = [p for p in summary["paired"] if p.get("against", "candidate") == "candidate"]
        verdicts = [p["verdict"] for p in main]
        ssim = _ssim_key(summary["paired"])
        padded = " (torchmetrics' padded SSIM)" if ssim == "ssim_padded" else ""
        lines.append(
            f"| {prior} | {len(main)} | "
            + " | ".join(str(verdicts.count(v)) for v in VERDICTS)
            + " | {} | {} | ".format(*_verdict_counts(verdicts))
            + f"{sum(bool(p['worse']) for p in main)} | {_calls(ssim, main)}{padded} | {_calls('fit', main)} |"
        )
        for against in AGAINST[1:]:
            es = [p for p in summary["paired"] if p.get("against") == against]
            if es:
                ablation_lines.append(
                    f"| {prior} | {against} | {len(es)} | {_calls(ssim, es)}{padded} | {_calls('fit', es)} | "
                    f"{_calls('psnr', es)} |"
                )
    text = [*lines, ""]
    if ablation_lines:
        text += [
            "ReGuidance against its ablations (same images; primary tests Holm-corrected, the rest uncorrected):",
            "",
            f"| prior | against | comparisons | SSIM {counts} | \\|fit_z\\| {counts} | PSNR {counts} |",
            "|---|---|---|---|---|---|",
            *ablation_lines,
            "",
        ]
    return "\n".join(text)


def format_compact(summary: Record) -> str:
    """A terminal-width table of ``summary``: per task, method and variant (candidate, ReGuidance), the mean PSNR,
    SSIM and measurement consistency and the seconds per image (seven columns; every interval, paired test and the
    other metrics are in ``summary.md`` and ``report.html``)."""
    lines = ["| task | method | variant | PSNR | SSIM | consistency | s/image |", "|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        variant = r.get("variant", "reguidance" if r["reguidance"] else "candidate")
        label = "+ReGuidance" if variant == "reguidance" else variant
        ssim = f"{r['ssim']['mean']:.3f}" if r.get("ssim") else "—"
        lines.append(
            f"| {r['task']} | {r['method']} | {label} | {r['psnr']['mean']:.2f} | {ssim} | "
            f"{r['consistency']['mean']:.2f} | {r['sec_per_image']:.2f} |"
        )
    return "\n".join(lines)
