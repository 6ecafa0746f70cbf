"""Summaries of ``results.jsonl``: per (task, method, variant) means with 95% intervals, and ReGuidance's paired
differences against the candidate and the ablations, as ``summary.json`` and ``summary.md``; BENCHMARK.md's tables.

The statistics are :mod:`reguidance.evaluation.stats`': Student-t intervals, effect sizes, ties only by TOST within
stated margins, no test below the minimum n, and Holm's correction only within the declared primary family
(:data:`reguidance.evaluation.stats.PRIMARY_FAMILY`, printed verbatim by :func:`preregistration`); everything else is
secondary and uncorrected. The fit to y votes as ``|fit_z|`` (:func:`reguidance.evaluation.metrics.fit_z`), not as the
reward."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..conventions import InputError
from ..evaluation import stats
from ..evaluation.metrics import holm, jackknife_ci95, mean_ci95, proportion_ci95
from ..io.files import atomic_path, read_json_object, replace_marked
from ..io.images import read_images
from .records import Record, read_all_results, variant_of

__all__ = [
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
    "tradeoff_figure",
    "verdict",
    "write_report_html",
    "write_summary",
]

#: a row of ``results.jsonl``, a summary, or one of its rows: JSON objects, typed as such (values of any JSON type)

#: per-image metrics of a row and whether higher is better (``lpips`` only in runs given LPIPS weights;
#: ``consistency_raw`` is the output's consistency before the clamp to [-1, 1]; ``fit`` is ``|fit_z|``, the
#: noise-calibrated fit to y of :func:`reguidance.evaluation.metrics.fit_z`; ``confidence`` and ``knn_dist`` are the
#: metric classifier's per-image realism, :class:`reguidance.evaluation.classifier.RealismScorer`)
METRICS = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "reward": True,
    "consistency": False,
    "consistency_raw": False,
    "fit": False,
    "confidence": True,
    "knn_dist": False,
}
#: the paired changes that decide a verdict. The fit to y votes as ``fit`` (|fit_z|: explaining y up to the noise,
#: not fitting the noise); the raw reward ``-||y - A x||^2`` is shown but does not vote (it rewards fitting the
#: noise: every "reward worse" case of the earlier runs was a candidate with consistency below 1 moved to about 1);
#: ``consistency`` (as ``|c - 1|``) does not vote either (it rewards the clamping artefact)
VERDICT_METRICS = ("psnr", "ssim", "lpips", "fit", "class_acc")
#: the significance level of every test
ALPHA = stats.ALPHA
#: the verdict rule, in words (written next to every table that uses it)
RULE = (
    "Per metric (PSNR, SSIM, LPIPS where measured, the fit to y |fit_z|, class accuracy where a classifier exists), "
    "the paired per-image change is tested (two-sided Student t). Tests of the declared primary family (see the "
    "pre-registration) are Holm-corrected within it; all others are secondary: raw 95% intervals, uncorrected "
    f"calls. A change is *better* or *worse* when its p-value is below {ALPHA}, a *tie* only when two one-sided "
    "tests put it inside the metric's stated equivalence margin, and *inconclusive* otherwise. A comparison *helps* "
    "when at least one metric is better and none worse, *hurts* when at least one is worse and none better, is "
    "*mixed* when both happen, *equivalent* when every voting metric is a tie, and shows *no clear change* "
    f"otherwise. Below {stats.MIN_N} images: no test, no verdict. The reward -||y - Ax||^2 and |consistency - 1| "
    "are shown but do not vote (they reward fitting the noise and clamping artefacts)."
)
#: the comparisons of the report: ReGuidance against each of these variants of the same (task, method, image)
AGAINST = ("candidate", "renoise", "fresh", "more")
#: the calls a metric's change can get (:func:`reguidance.evaluation.stats.call`)
CALLS = ("better", "tie", "inconclusive", "worse", "no test")
#: the verdicts a tested comparison can get (:func:`verdict`; below the minimum n: "no verdict (...)")
VERDICTS = ("helps", "equivalent", "no clear change", "mixed", "hurts")


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


def summarise(rows: list[Record], family: stats.Family = stats.PRIMARY_FAMILY) -> Record:
    """The summary ``{"rows": [...], "paired": [...], "rule": RULE, "alpha": ALPHA, "correction": ...,
    "primary_family": ...}``.

    ``rows``: per (task, method, variant) the mean and 95% interval of each metric of :data:`METRICS` present (and
    of the signed ``fit_z``), class accuracy (Wilson interval), NFE, seconds and peak memory. ``paired``: per
    (task, method) and each variant of :data:`AGAINST` present, ReGuidance minus that variant on the same images:
    each metric's :func:`reguidance.evaluation.stats.paired_comparison` (Student-t interval, effect size, win rate,
    p-value, TOST p-value against :data:`reguidance.evaluation.stats.MARGINS`), ``primary`` (in ``family``), ``p_holm``
    / ``p_tost_holm`` (Holm within ``family``; for secondary tests the raw values) and ``call``
    (:data:`CALLS`); the ``verdict`` and the metrics ``better`` and ``worse``. Below ``family.min_n`` images: no
    test, ``verdict`` says why.

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
    }


def _call_all(paired: list[Record], family: stats.Family) -> None:
    """Mark each test primary or not, Holm-correct the primary family's p-values (differences and TOST separately),
    and set every metric's ``call`` and every comparison's ``better`` / ``worse`` / ``verdict``."""
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
    for e in paired:
        e["better"] = [m for m in VERDICT_METRICS if (e.get(m) or {}).get("call") == "better"]
        e["worse"] = [m for m in VERDICT_METRICS if (e.get(m) or {}).get("call") == "worse"]
        e["ties"] = [m for m in VERDICT_METRICS if (e.get(m) or {}).get("call") == "tie"]
        e["voting"] = [m for m in VERDICT_METRICS if e.get(m) is not None]
        e["verdict"] = f"no verdict (n = {e['n']} < {family.min_n})" if e["n"] < family.min_n else verdict(e)


def _ci(v: Record | None, fmt: str) -> str:
    if v is None:
        return "—"
    return f"{v['mean']:{fmt}} [{v['ci95'][0]:{fmt}}, {v['ci95'][1]:{fmt}}]"


def _change(d: Record | None, fmt: str = "+.3f") -> str:
    """A paired change: mean [interval], marked ▲ / ▼ when its test calls it better / worse (Holm-corrected in the
    primary family, uncorrected elsewhere), ≈ when two one-sided tests put it inside the margin (a tie), nothing
    when inconclusive or untested (too few images)."""
    if d is None:
        return "—"
    if int(d.get("n", 2)) < 2:  # one image: no interval to show
        return f"{d['mean']:{fmt}} (one image)"
    mark = {"better": " ▲", "worse": " ▼", "tie": " ≈"}.get(str(d.get("call")), "")
    return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]{mark}"


def format_markdown(summary: Record) -> str:
    """``summary`` as Markdown tables: every (task, method, variant)'s means, then ReGuidance's paired changes
    against the candidate (and against the ablations, when the run has them), with their calls and verdicts."""
    with_lpips = any(r.get("lpips") for r in summary["rows"])
    with_acc = any(r.get("class_acc") or r.get("fd_cls") for r in summary["rows"])
    with_fit = any(r.get("fit") for r in summary["rows"])
    with_realism = any(r.get("confidence") for r in summary["rows"])
    with_knn = any(r.get("knn_dist") for r in summary["rows"])
    lines = [
        "| task | method | variant | n | PSNR | SSIM |"
        + (" LPIPS |" if with_lpips else "")
        + " reward | consistency | consistency before clamp |"
        + (" fit_z | \\|fit_z\\| |" if with_fit else "")
        + (" FD-cls | class acc |" if with_acc else "")
        + (" confidence |" if with_realism else "")
        + (" k-NN distance |" if with_knn else "")
        + " NFE | s/image |",
        "|---|---|---|---|---|---|"
        + ("---|" if with_lpips else "")
        + "---|---|---|"
        + ("---|---|" if with_fit else "")
        + ("---|---|" if with_acc else "")
        + ("---|" if with_realism else "")
        + ("---|" if with_knn else "")
        + "---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['task']} | {r['method']} | {r.get('variant', 'reguidance' if r['reguidance'] else 'candidate')} "
            f"| {r['n']} | {_ci(r['psnr'], '.2f')} | {_ci(r['ssim'], '.3f')} | "
            + (f"{_ci(r.get('lpips'), '.3f')} | " if with_lpips else "")
            + f"{_ci(r.get('reward'), '.3g')} | {_ci(r['consistency'], '.2f')} | "
            + f"{_ci(r.get('consistency_raw'), '.2f')} | "
            + (f"{_ci(r.get('fit_z'), '+.2f')} | {_ci(r.get('fit'), '.2f')} | " if with_fit else "")
            + (f"{_ci(r['fd_cls'], '.1f')} | {_ci(r['class_acc'], '.2f')} | " if with_acc else "")
            + (f"{_ci(r.get('confidence'), '.3f')} | " if with_realism else "")
            + (f"{_ci(r.get('knn_dist'), '.2f')} | " if with_knn else "")
            + f"{r['nfe']} | {r['sec_per_image']:.2f} |"
        )
    for against in AGAINST:
        entries = [p for p in summary["paired"] if p.get("against", "candidate") == against]
        if entries:
            lines += ["", _paired_table(entries, against, with_lpips, with_acc, with_fit, with_realism)]
    return "\n".join(lines) + "\n"


def _paired_table(
    entries: list[Record],
    against: str,
    with_lpips: bool,
    with_acc: bool,
    with_fit: bool = False,
    with_realism: bool = False,
) -> str:
    metrics = [("psnr", "+.2f"), ("ssim", "+.3f")]
    metrics += [("lpips", "+.3f")] if with_lpips else []
    metrics += [("fit", "+.2f")] if with_fit else []
    metrics += [("reward", "+.3g"), ("consistency", "+.2f")]
    metrics += [("class_acc", "+.2f")] if with_acc else []
    metrics += [("confidence", "+.3f"), ("knn_dist", "+.2f")] if with_realism else []
    names = {
        "psnr": "ΔPSNR",
        "ssim": "ΔSSIM",
        "lpips": "ΔLPIPS",
        "fit": "Δ\\|fit_z\\|",
        "reward": "Δreward (no vote)",
        "consistency": "Δ(distance of consistency from 1) (no vote)",
        "class_acc": "Δclass acc",
        "confidence": "Δconfidence (no vote)",
        "knn_dist": "Δk-NN distance (no vote)",
    }
    lines = [
        f"ReGuidance minus {against} (same images; ▲ / ▼ better / worse, ≈ a tie within the margin; primary tests "
        "Holm-corrected, the others uncorrected):",
        "",
        "| task | method | n | NFE | " + " | ".join(names[m] for m, _ in metrics) + " | verdict | worse on |",
        "|---|---|---|---|" + "---|" * len(metrics) + "---|---|",
    ]
    for p in entries:
        nfe = f"{p['nfe'][0]} vs {p['nfe'][1]}" if p.get("nfe") else "—"
        cells = [_change(p.get(m), fmt) for m, fmt in metrics]
        lines.append(
            f"| {p['task']} | {p['method']} | {p['n']} | {nfe} | "
            + " | ".join(cells)
            + f" | {p.get('verdict', '—')} | {', '.join(p.get('worse', [])) or '—'} |"
        )
    return "\n".join(lines)


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
    realism = "class_acc" if use_acc else "ssim"
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
    ax.set_ylabel("class accuracy of restorations" if use_acc else "SSIM")
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
    shown = [("psnr", "PSNR {:.2f} dB"), ("ssim", "SSIM {:.3f}"), ("lpips", "LPIPS {:.3f}")]
    shown += [("consistency", "consistency {:.2f}"), ("reward", "reward {:.3g}")]
    lines = [fmt.format(row[k]) for k, fmt in shown if isinstance(row.get(k), (int, float))]
    if row.get("pred") is not None:
        lines.append(f"class {row['pred']}")
    return lines


def write_report_html(out: Path, summary: Record, title: str | None = None) -> Path:
    """``out/report.html``, written atomically: per (task, method) a table with one row per image id and the
    columns measurement | candidate | +ReGuidance | the ablations the run saved | truth, each picture (the PNGs
    under ``out/images``, by relative path) with the metrics its row in ``results*.jsonl`` holds (PSNR, SSIM,
    LPIPS, consistency, reward, predicted class); then the run's summary (:func:`format_markdown` and the notes).
    Opens in any browser without a server (:mod:`reguidance.io.webpage`)."""
    from PIL import Image

    from ..io.pictures import MIN_CELL, cell_scale
    from ..io.webpage import Cell, image_table, markdown_html, relative_src, write_page

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
    notes = "".join(f"\nNote: {n}\n" for n in summary.get("notes", []))
    parts += ["<h2>Summary</h2>", markdown_html(format_markdown(summary) + notes)]
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
    """The rule of :data:`RULE` from a paired entry's ``better``, ``worse`` and ``ties`` metrics (and ``voting``,
    the voting metrics it has): ``helps`` / ``hurts`` / ``mixed`` / ``equivalent`` (every voting metric a tie) /
    ``no clear change``."""
    good, bad = bool(paired.get("better")), bool(paired.get("worse"))
    voting = paired.get("voting") or []
    if not good and not bad and voting and set(voting) <= set(paired.get("ties") or []):
        return "equivalent"
    return "mixed" if good and bad else "helps" if good else "hurts" if bad else "no clear change"


_NAMES = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "reward": "reward -‖y − Ax‖² (does not vote)",
    "fit": "fit to y |fit_z|",
    "class_acc": "class accuracy",
    "consistency": "consistency's distance from 1 (does not vote)",
}


def _calls(m: str, entries: list[Record]) -> str:
    """``"better / tie / inconclusive / worse"``: how many of ``entries`` got each call on metric ``m`` (untested
    comparisons, below the minimum n, are in none)."""
    calls = [e[m]["call"] for e in entries if e.get(m) is not None]
    return " / ".join(str(calls.count(c)) for c in ("better", "tie", "inconclusive", "worse"))


def _counts_table(entries: list[Record]) -> list[str]:
    """Per metric: how many comparisons got each call (primary tests Holm-corrected, the rest uncorrected)."""
    lines = ["| metric | better | tie | inconclusive | worse | no test (n too small) |", "|---|---|---|---|---|---|"]
    for m in (*VERDICT_METRICS, "reward", "consistency"):
        calls = [e[m]["call"] for e in entries if e.get(m) is not None]
        if calls:
            lines.append(f"| {_NAMES[m]} | " + " | ".join(str(calls.count(c)) for c in CALLS) + " |")
    verdicts = [e["verdict"] for e in entries]
    worse_any = sum(bool(e["worse"]) for e in entries)
    untested = sum(v.startswith("no verdict") for v in verdicts)
    lines += [
        f"| **verdict** | **{verdicts.count('helps')} helps** | {verdicts.count('equivalent')} equivalent | "
        f"{verdicts.count('no clear change')} no clear change, {verdicts.count('mixed')} mixed | "
        f"**{verdicts.count('hurts')} hurts** | {untested} no verdict |",
        f"| worse on at least one voting metric | | | | {worse_any} of {len(entries)} | |",
    ]
    return lines


def _losses(entries: list[Record], against: str) -> list[str]:
    """One sentence per comparison where ReGuidance is worse on some metric than ``against``."""
    out = []
    for e in entries:
        if e["worse"]:
            changes = ", ".join(f"{_NAMES[m].split(' ')[0]} {e[m]['mean']:+.3g}" for m in e["worse"])
            rival = e.get("against", against)
            out.append(f"- {e['task']} / {e['method']}: worse than `{rival}` on {changes} ({e['verdict']}).")
    return out or [f"- none: no comparison with the {against} is worse on any metric after the correction."]


def _tuned_section(protocol: str, prior: str, tasks: set[str] | None = None, table: Record | None = None) -> list[str]:
    """The tuned table of ``prior``: per (task, method) the chosen options, the values tried on each axis, the axes
    whose choice is still on an edge, and the settings each row had in all (tables tuned with ``--ablations``).
    ``table``: the one a run recorded in its ``config.json`` (``bench --tuned``), else the package's."""
    from .defaults import tuned_table

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
        f"{table.get('max_widen', 0)} times.",
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
    for m in ("ssim", "fit", "psnr"):
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
        best = max(rivals, key=lambda p: rows[(p["task"], p["method"], p["against"])]["ssim"]["mean"])
        if best is e:
            lines.append(
                f"| {e['task']} | {e['method']} | {e['against']} | {e['nfe'][0]} vs {e['nfe'][1]} | "
                f"{_change(e.get('psnr'), '+.2f')} | {_change(e.get('ssim'))} | {_change(e.get('fit'), '+.2f')} | "
                f"{e['verdict']} |"
            )
    if not lines:
        return []
    return [
        "ReGuidance against the best ablation (highest mean SSIM) that spends at least as many network evaluations:",
        "",
        "| task | method | best at ≥ NFE | NFE | ΔPSNR | ΔSSIM | Δ\\|fit_z\\| | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]


def _ablation_summary(entries: list[Record]) -> list[str]:
    """Per ablation: how often ReGuidance beats it, ties, or loses, on SSIM and on the fit to y, and its verdicts."""
    lines = [
        "| ReGuidance against | comparisons | SSIM better / tie / inconclusive / worse | "
        "\\|fit_z\\| better / tie / inconclusive / worse | verdicts |",
        "|---|---|---|---|---|",
    ]
    for against in AGAINST[1:]:
        es = [e for e in entries if e["against"] == against]
        if not es:
            continue

        verdicts = [e["verdict"] for e in es]
        lines.append(
            f"| {against} | {len(es)} | {_calls('ssim', es)} | {_calls('fit', es)} | "
            + ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS)
            + f", {sum(v.startswith('no verdict') for v in verdicts)} no verdict"
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
    p-values, the Holm-adjusted TOST p-value and the call."""
    tests = [
        (e, m)
        for e in summary["paired"]
        for m in (*METRICS, "class_acc")
        if e.get(m) is not None and e[m].get("primary")
    ]
    untested = [e for e in summary["paired"] if str(e.get("verdict", "")).startswith("no verdict")]
    if not tests:
        note = (
            f" ({len(untested)} comparisons have fewer than {summary.get('min_n')} images: no test)" if untested else ""
        )
        return [f"**Primary family**: no test of the declared family in this run{note}.", ""]

    def p(v: object) -> str:
        return "—" if v is None else f"{float(v):.2g}"  # type: ignore[arg-type]

    lines = [
        f"**Primary family** ({len(tests)} tests, Holm-corrected together; ≈ = tie by TOST within the margin):",
        "",
        "| task | method | against | metric | n | change [95% CI] | d_z | p | p Holm | p TOST Holm (margin) | call |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e, m in tests:
        d = e[m]
        dz = "—" if d.get("effect_size") is None else f"{d['effect_size']:+.2f}"
        lines.append(
            f"| {e['task']} | {e['method']} | {e['against']} | {_NAMES.get(m, m)} | {d['n']} | "
            f"{_change(d, '+.3f')} | {dz} | {p(d['p_value'])} | {p(d.get('p_holm'))} | "
            f"{p(d.get('p_tost_holm'))} ({d.get('margin')}) | {d['call']} |"
        )
    return [*lines, ""]


def primary_answer(runs: dict[str, Path]) -> str:
    """BENCHMARK.md's computed answer (its ``primary_answer`` section): per run, how the declared primary family's
    tests came out (better / tie / inconclusive / worse, Holm-corrected within the family), then one line per
    (task, method, against) with the change of SSIM and of ``|fit_z|`` (lower is better) and their calls."""
    parts = []
    for name, out in runs.items():
        summary, config = read_run(out)
        tests = [(e, m) for e in summary["paired"] for m in ("ssim", "fit") if (e.get(m) or {}).get("primary")]
        n = sorted({int(e[m]["n"]) for e, m in tests})
        if not tests:
            parts += [f"**{name}**: no test of the primary family in this run.", ""]
            continue
        tally = ", ".join(f"{c} in {sum(e[m]['call'] == c for e, m in tests)}" for c in CALLS[:4])
        parts += [
            f"**{name}** (protocol `{config['protocol']}`, test ids {', '.join(config['ids'])}, "
            f"{'/'.join(map(str, n))} images per comparison): of {len(tests)} primary tests ReGuidance comes out "
            f"{tally} (Holm within the family; a tie is TOST within the stated margin).",
            "",
            "| task | candidate | ReGuidance against | NFE | ΔSSIM [95% CI] | Δ\\|fit_z\\| [95% CI] | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in summary["paired"]:
            if any(x is e for x, _ in tests):
                nfe = e.get("nfe")
                nfe_text = f"{nfe[0]} vs {nfe[1]}" if isinstance(nfe, list) and len(nfe) == 2 else "—"
                parts.append(
                    f"| {e['task']} | {e['method']} | {e['against']} | {nfe_text} | {_change(e.get('ssim'))} | "
                    f"{_change(e.get('fit'), '+.2f')} | {e['verdict']} |"
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
    return summary, config


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
        parts += [
            f"### {prior}",
            "",
            f"Protocol `{config['protocol']}` "
            f"({'options tuned on validation images' if config['tuned'] else 'untuned reference options'}), "
            f"seed {config['seed']}, test ids {', '.join(config['ids'])} ({'/'.join(map(str, n_images))} images per "
            f"comparison), network in {config.get('context', {}).get('dtype', '?')}.",
            "",
            *_tuned_section(str(config["protocol"]), prior_name, {p["task"] for p in main}, config.get("tuned_table")),
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
                "**Ablations** (same images, measurements and random streams; `renoise` and `more` on SSIM and the "
                "fit to y are in the primary family, everything else is secondary): "
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
        f"| worse on some metric | SSIM {counts} | \\|fit_z\\| {counts} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ablation_lines = []
    for prior, out in runs.items():
        summary, _ = read_run(out)
        main = [p for p in summary["paired"] if p.get("against", "candidate") == "candidate"]
        verdicts = [p["verdict"] for p in main]
        lines.append(
            f"| {prior} | {len(main)} | "
            + " | ".join(str(verdicts.count(v)) for v in VERDICTS)
            + f" | {sum(v.startswith('no verdict') for v in verdicts)} | {sum(bool(p['worse']) for p in main)} | "
            f"{_calls('ssim', main)} | {_calls('fit', main)} |"
        )
        for against in AGAINST[1:]:
            es = [p for p in summary["paired"] if p.get("against") == against]
            if es:
                ablation_lines.append(
                    f"| {prior} | {against} | {len(es)} | {_calls('ssim', es)} | {_calls('fit', es)} | "
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
        lines.append(
            f"| {r['task']} | {r['method']} | {label} | {r['psnr']['mean']:.2f} | {r['ssim']['mean']:.3f} | "
            f"{r['consistency']['mean']:.2f} | {r['sec_per_image']:.2f} |"
        )
    return "\n".join(lines)
