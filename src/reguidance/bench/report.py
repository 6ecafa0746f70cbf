"""Summaries of ``results.jsonl``: per (task, method, with/without ReGuidance) means with 95% intervals, and the
paired difference with/without ReGuidance (interval and win rate), as ``summary.json`` and ``summary.md``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..files import replace_marked
from ..images import read_images, save_grid
from ..metrics import holm, jackknife_ci95, mean_ci95, paired_difference, proportion_ci95
from .records import Record, read_all_results, variant_of

__all__ = [
    "add_fd_cls",
    "benchmark_tables",
    "format_markdown",
    "readme_summary",
    "replace_marked",
    "save_grids",
    "save_method_overview",
    "save_overview",
    "save_tradeoff_plot",
    "summarise",
    "verdict",
    "write_summary",
]

#: a row of ``results.jsonl``, a summary, or one of its rows: JSON objects, typed as such (values of any JSON type)

#: per-image metrics of a row and whether higher is better (``lpips`` only in runs given LPIPS weights;
#: ``consistency_raw`` is the output's consistency before the clamp to [-1, 1])
METRICS = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "reward": True,
    "consistency": False,
    "consistency_raw": False,
}
#: the paired changes that decide a verdict; ``consistency`` (as ``|c - 1|``) is shown but does not count: it
#: rewards the clamping artefact (a pseudo-inverse fits ``y`` exactly, clamping alone moves it towards 1), and the
#: reward ``-||y - A x||^2`` is the paper's own measure of fitting ``y``
VERDICT_METRICS = ("psnr", "ssim", "lpips", "reward", "class_acc")
#: the significance level after the correction
ALPHA = 0.05
#: the verdict rule, in words (written next to every table that uses it)
RULE = (
    "Per metric (PSNR, SSIM, LPIPS where measured, reward -||y - Ax||^2, class accuracy where a classifier exists), "
    "the paired per-image change is tested (two-sided, normal approximation); the p-values of all the tests of a "
    f"table are corrected together with Holm's method, and a change counts as better or worse when its corrected "
    f"p-value is below {ALPHA}. A comparison *helps* when at least one metric is better and none worse, *hurts* "
    "when at least one is worse and none better, is *mixed* when both happen, and shows *no clear change* "
    "otherwise. |consistency - 1| is shown but does not vote (it rewards clamping artefacts)."
)
#: the comparisons of the report: ReGuidance against each of these variants of the same (task, method, image)
AGAINST = ("candidate", "renoise", "fresh", "more")


def summarise(rows: list[Record]) -> Record:
    """The summary ``{"rows": [...], "paired": [...], "rule": RULE, "alpha": ALPHA, "correction": "holm"}``.

    ``rows``: per (task, method, variant) the mean and 95% interval of each metric of :data:`METRICS`, class
    accuracy (Wilson interval), NFE, seconds and peak memory. ``paired``: per (task, method) and each variant of
    :data:`AGAINST` present, ReGuidance minus that variant on the same images: each metric's paired change
    (interval, win rate, p-value, Holm-adjusted ``p_holm`` and ``call`` better / same / worse for the metrics of
    :data:`VERDICT_METRICS`), the ``verdict`` and the metrics ``better`` and ``worse``. The comparisons with the
    candidate form one family of tests for the correction, those with the ablations another.

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
        for m in METRICS:
            row[m] = mean_ci95([float(r[m]) for r in rs]) if all(m in r for r in rs) else None
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
            if m == "consistency_raw" or not ids or not all(m in r for r in (*before.values(), *after.values())):
                entry[m] = None
                continue
            a = torch.tensor([float(after[i][m]) for i in ids])
            b = torch.tensor([float(before[i][m]) for i in ids])
            if m == "consistency":  # shown as the change of |consistency - 1|: lower is closer to explaining y
                a, b = (a - 1).abs(), (b - 1).abs()
            entry[m] = paired_difference(a, b, higher_is_better=higher)
        if ids and all("pred" in r for r in (*before.values(), *after.values())):
            correct = [[float(d[i]["pred"] == d[i]["label"]) for i in ids] for d in (after, before)]
            entry["class_acc"] = paired_difference(torch.tensor(correct[0]), torch.tensor(correct[1]))
        else:
            entry["class_acc"] = None
        paired.append(entry)
    for family in ("candidate", "ablations"):
        members = [e for e in paired if (e["against"] == "candidate") == (family == "candidate")]
        tests = [(e, m) for e in members for m in VERDICT_METRICS if e.get(m) is not None]
        adjusted = holm([float(e[m]["p_value"]) for e, m in tests])
        for (e, m), q in zip(tests, adjusted, strict=True):
            higher = METRICS.get(m, True)
            good = (e[m]["mean"] > 0) == higher
            e[m]["p_holm"] = q
            e[m]["call"] = "same" if q >= ALPHA else "better" if good else "worse"
        for e in members:
            e["better"] = [m for m in VERDICT_METRICS if (e.get(m) or {}).get("call") == "better"]
            e["worse"] = [m for m in VERDICT_METRICS if (e.get(m) or {}).get("call") == "worse"]
            e["verdict"] = verdict(e)
    return {"rows": out_rows, "paired": paired, "rule": RULE, "alpha": ALPHA, "correction": "holm"}


def _ci(v: Record | None, fmt: str) -> str:
    if v is None:
        return "—"
    return f"{v['mean']:{fmt}} [{v['ci95'][0]:{fmt}}, {v['ci95'][1]:{fmt}}]"


def _change(d: Record | None, fmt: str = "+.3f") -> str:
    """A paired change: mean [interval], marked ▲ / ▼ when the corrected test calls it better / worse."""
    if d is None:
        return "—"
    mark = {"better": " ▲", "worse": " ▼"}.get(str(d.get("call")), "")
    return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]{mark}"


def format_markdown(summary: Record) -> str:
    """``summary`` as Markdown tables: every (task, method, variant)'s means, then ReGuidance's paired changes
    against the candidate (and against the ablations, when the run has them), with their calls and verdicts."""
    with_lpips = any(r.get("lpips") for r in summary["rows"])
    with_acc = any(r.get("class_acc") or r.get("fd_cls") for r in summary["rows"])
    lines = [
        "| task | method | variant | n | PSNR | SSIM |"
        + (" LPIPS |" if with_lpips else "")
        + " reward | consistency | consistency before clamp |"
        + (" FD-cls | class acc |" if with_acc else "")
        + " NFE | s/image |",
        "|---|---|---|---|---|---|"
        + ("---|" if with_lpips else "")
        + "---|---|---|"
        + ("---|---|" if with_acc else "")
        + "---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['task']} | {r['method']} | {r.get('variant', 'reguidance' if r['reguidance'] else 'candidate')} "
            f"| {r['n']} | {_ci(r['psnr'], '.2f')} | {_ci(r['ssim'], '.3f')} | "
            + (f"{_ci(r.get('lpips'), '.3f')} | " if with_lpips else "")
            + f"{_ci(r.get('reward'), '.3g')} | {_ci(r['consistency'], '.2f')} | "
            + f"{_ci(r.get('consistency_raw'), '.2f')} | "
            + (f"{_ci(r['fd_cls'], '.1f')} | {_ci(r['class_acc'], '.2f')} | " if with_acc else "")
            + f"{r['nfe']} | {r['sec_per_image']:.2f} |"
        )
    for against in AGAINST:
        entries = [p for p in summary["paired"] if p.get("against", "candidate") == against]
        if entries:
            lines += ["", _paired_table(entries, against, with_lpips, with_acc)]
    return "\n".join(lines) + "\n"


def _paired_table(entries: list[Record], against: str, with_lpips: bool, with_acc: bool) -> str:
    metrics = [("psnr", "+.2f"), ("ssim", "+.3f")]
    metrics += [("lpips", "+.3f")] if with_lpips else []
    metrics += [("reward", "+.3g"), ("consistency", "+.2f")]
    metrics += [("class_acc", "+.2f")] if with_acc else []
    names = {
        "psnr": "ΔPSNR",
        "ssim": "ΔSSIM",
        "lpips": "ΔLPIPS",
        "reward": "Δreward",
        "consistency": "Δ(distance of consistency from 1)",
    }
    names["class_acc"] = "Δclass acc"
    lines = [
        f"ReGuidance minus {against} (same images; ▲ / ▼ better / worse after the correction):",
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
    each group left out once; :func:`reguidance.metrics.jackknife_ci95`, the lower end clipped at 0).

    Not the bootstrap: resampling with replacement repeats images, which shrinks the fitted covariances and biases
    a Frechet distance upwards, so percentile intervals of the bootstrap often miss the estimate itself.

    The saved PNGs are read by :func:`reguidance.images.read_images` with their own channels (gray or RGB, as the
    run wrote them), so ``features`` sees the images the run produced.
    """
    from ..classifier import frechet_distance, gaussian_fit

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


def save_grids(out: Path, n: int = 8) -> list[Path]:
    """Per (task, method): rows measurement | candidate | +ReGuidance | truth for the first ``n`` ids, in the
    saved images' own channels (gray or RGB)."""
    paths = []
    for folder in sorted(p for p in (out / "images").glob("*/*") if p.is_dir()):
        ids = sorted(int(f.name[:5]) for f in folder.glob("*_truth.png"))[:n]
        if not ids:
            continue
        kinds = (
            "measurement",
            "candidate",
            "reguidance",
            *[v for v in AGAINST[1:] if (folder / f"{ids[0]:05d}_{v}.png").is_file()],
            "truth",
        )
        x = read_images([folder / f"{i:05d}_{k}.png" for i in ids for k in kinds])
        path = out / "grids" / f"{folder.parent.name}_{folder.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(x, path, nrow=len(kinds))
        paths.append(path)
    return paths


def save_tradeoff_plot(summary: Record, path: Path) -> Path:
    """Measurement consistency against realism (class accuracy, else SSIM), an arrow per (task, method) from the
    candidate to ReGuidance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {
        (r["task"], r["method"], r["reguidance"]): r
        for r in summary["rows"]
        if r.get("variant") in (None, "candidate", "reguidance")
    }
    use_acc = all(r["class_acc"] is not None for r in rows.values())
    realism = "class_acc" if use_acc else "ssim"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (task, method, rg), r in rows.items():
        if rg or (task, method, True) not in rows:
            continue
        a, b = r, rows[(task, method, True)]
        xa, ya = a["consistency"]["mean"], a[realism]["mean"]
        xb, yb = b["consistency"]["mean"], b[realism]["mean"]
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), arrowprops={"arrowstyle": "->", "color": "gray"})
        ax.scatter([xa], [ya], c="tab:red", s=20)
        ax.scatter([xb], [yb], c="tab:green", s=20)
        ax.text(xb, yb, f" {task}/{method}", fontsize=7)
    ax.axvline(1.0, ls=":", c="k", lw=0.8)
    ax.set_xlabel("measurement consistency ||Ax - y|| / (sigma_y sqrt(m))  (1 = explains y up to the noise)")
    ax.set_ylabel("class accuracy of restorations" if use_acc else "SSIM")
    ax.set_title("red: candidate, green: + ReGuidance")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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


def save_overview(grids: list[Path], path: Path, title: str, columns: str = "meas. | cand. | +ReG | truth") -> Path:
    """The per-(task, method) grids side by side in one labelled picture (``columns`` names the grids' columns:
    measurement | candidate | +ReGuidance | truth, and the ablations where the run has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    pictures = [Image.open(g) for g in grids]
    aspect = max(p.height / p.width for p in pictures)
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.2 * aspect + 0.9), squeeze=False)
    for ax, grid, picture in zip(axes[0], grids, pictures, strict=True):
        ax.imshow(picture, cmap="gray")
        ax.set_title(grid.stem.replace("_", " / ", 1) + "\n" + columns, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def verdict(paired: Record) -> str:
    """The rule of :data:`RULE` from a paired entry's ``better`` and ``worse`` metrics: ``helps`` / ``hurts`` /
    ``mixed`` / ``no clear change``."""
    good, bad = bool(paired.get("better")), bool(paired.get("worse"))
    return "mixed" if good and bad else "helps" if good else "hurts" if bad else "no clear change"


_NAMES = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "reward": "reward -‖y − Ax‖²",
    "class_acc": "class accuracy",
    "consistency": "consistency's distance from 1 (does not vote)",
}


def _calls(m: str, entries: list[Record]) -> str:
    """``"better / same / worse"``: how many of ``entries`` got each corrected call on metric ``m``."""
    calls = [e[m]["call"] for e in entries if e.get(m) is not None]
    return f"{calls.count('better')} / {calls.count('same')} / {calls.count('worse')}"


def _counts_table(entries: list[Record]) -> list[str]:
    """Per metric: how many comparisons got better / no clear change / worse (after the correction)."""
    lines = ["| metric | better | no clear change | worse |", "|---|---|---|---|"]
    for m in (*VERDICT_METRICS, "consistency"):
        present = [e for e in entries if e.get(m) is not None]
        if not present:
            continue
        if m == "consistency":  # not corrected and not voting: its raw 95% interval
            calls = ["better" if e[m]["ci95"][1] < 0 else "worse" if e[m]["ci95"][0] > 0 else "same" for e in present]
        else:
            calls = [e[m]["call"] for e in present]
        lines.append(f"| {_NAMES[m]} | {calls.count('better')} | {calls.count('same')} | {calls.count('worse')} |")
    verdicts = [e["verdict"] for e in entries]
    worse_any = sum(bool(e["worse"]) for e in entries)
    lines += [
        f"| **verdict** | **{verdicts.count('helps')} helps** | {verdicts.count('no clear change')} no clear change, "
        f"{verdicts.count('mixed')} mixed | **{verdicts.count('hurts')} hurts** |",
        f"| worse on at least one metric | | | {worse_any} of {len(entries)} |",
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


def _tuned_section(protocol: str, prior: str, tasks: set[str] | None = None) -> list[str]:
    """The tuned table of ``prior``: per (task, method) the chosen options, the values tried on each axis, the axes
    whose choice is still on an edge, and the settings each row had in all (tables tuned with ``--ablations``)."""
    from .defaults import tuned_table

    table = tuned_table(protocol, prior)
    entries = [e for e in table.get("entries", []) if tasks is None or e["task"] in tasks]
    if not entries:
        return [f"No tuned table for {prior} under protocol `{protocol}`: the untuned reference options were used.", ""]
    lines = [
        f"Options chosen on validation images {table.get('ids')} of {prior} (seed {table.get('seed')}, "
        f"{table.get('dtype', '?')}) by `{table.get('command')}`; rule: {table.get('rule')}. Grids: "
        + "; ".join(f"{m} `{g}`" for m, g in table.get("method_grids", {}).items())
        + f"; the wrapper `{table.get('wrapper_grid')}`; an axis whose choice sits on an edge is widened up to "
        f"{table.get('max_widen', 0)} times.",
        "",
        "| task | method | method options chosen | values tried | wrapper chosen | values tried | still on an edge "
        "| settings in all |",
        "|---|---|---|---|---|---|---|---|",
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
        )
    return [*lines, ""]


def _latent_vs_renoise(entries: list[Record]) -> list[str]:
    """Plainly, per metric: the (task, method) pairs where the inverted latent beats re-noising the candidate to the
    same depth, where the two are not told apart, and where re-noising wins."""
    es = [e for e in entries if e["against"] == "renoise"]
    if not es:
        return []
    lines = ["Inverted latent against re-noising the candidate to the same depth (`renoise`), per metric:", ""]
    for m in ("ssim", "psnr", "reward"):
        groups: dict[str, list[str]] = {"better": [], "same": [], "worse": []}
        for e in es:
            if e.get(m) is not None:
                groups[e[m]["call"]].append(f"{e['task']}/{e['method']}")
        lines.append(
            f"- {_NAMES[m].split(' ')[0]}: the latent wins on {len(groups['better'])} "
            f"({', '.join(groups['better']) or 'none'}), no clear difference on {len(groups['same'])}, re-noising "
            f"wins on {len(groups['worse'])} ({', '.join(groups['worse']) or 'none'})."
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
                f"{_change(e.get('psnr'), '+.2f')} | {_change(e.get('ssim'))} | {_change(e.get('reward'), '+.3g')} | "
                f"{e['verdict']} |"
            )
    if not lines:
        return []
    return [
        "ReGuidance against the best ablation (highest mean SSIM) that spends at least as many network evaluations:",
        "",
        "| task | method | best at ≥ NFE | NFE | ΔPSNR | ΔSSIM | Δreward | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]


def _ablation_summary(entries: list[Record]) -> list[str]:
    """Per ablation: how often ReGuidance beats it, ties, or loses, on SSIM and on the reward, and its verdicts."""
    lines = [
        "| ReGuidance against | comparisons | SSIM better / same / worse | reward better / same / worse | verdicts |",
        "|---|---|---|---|---|",
    ]
    for against in AGAINST[1:]:
        es = [e for e in entries if e["against"] == against]
        if not es:
            continue

        verdicts = [e["verdict"] for e in es]
        lines.append(
            f"| {against} | {len(es)} | {_calls('ssim', es)} | {_calls('reward', es)} | "
            + ", ".join(f"{verdicts.count(v)} {v}" for v in ("helps", "no clear change", "mixed", "hurts"))
            + " |"
        )
    return lines


def benchmark_tables(runs: dict[str, Path]) -> str:
    """Markdown for ``BENCHMARK.md``, every figure computed here: per prior (name -> benchmark folder with
    ``summary.json`` and ``config.json``) the tuned options, the per-metric summary of ReGuidance against its
    candidate with the verdict rule, every comparison where it loses, the ablations (against re-noising, fresh
    noise and the base method given the same extra NFE, and the same-NFE view), the full tables, and the cost."""
    parts = []
    for prior, out in runs.items():
        summary = json.loads((out / "summary.json").read_text())
        config = json.loads((out / "config.json").read_text())
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
            *_tuned_section(str(config["protocol"]), prior_name, {p["task"] for p in main}),
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
                "**Ablations** (same images, measurements and random streams; one family of tests for the correction): "
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
        parts += ["", "<details><summary>Full tables</summary>", "", format_markdown(summary), "</details>", ""]
    return "\n".join(parts)


def save_method_overview(out: Path, method: str, path: Path, title: str) -> Path | None:
    """One picture of ``method``'s grids on every task of the benchmark folder ``out`` (made by
    :func:`save_grids`), its columns named after the variants the run saved; ``None`` if it has none."""
    grids = [g for g in save_grids(out) if g.stem.endswith(f"_{method}")]
    if not grids:
        return None
    folder = out / "images" / grids[0].stem.rsplit("_", 1)[0] / method
    first = sorted(folder.glob("*_truth.png"))[0].name[:5]
    present = [v for v in AGAINST[1:] if (folder / f"{first}_{v}.png").is_file()]
    columns = " | ".join(["meas.", "cand.", "+ReG", *present, "truth"])
    return save_overview(grids, path, title, columns)


def readme_summary(runs: dict[str, Path]) -> str:
    """The README's short version of the benchmark, every figure computed from the runs' ``summary.json``: per
    prior, how many (task, method) comparisons ReGuidance helps, leaves unclear, mixes or hurts against its
    candidate, on how many it is worse on some metric, and (where the run has them) how it fares against the
    ablations."""
    lines = [
        "| prior | comparisons | helps | no clear change | mixed | hurts | worse on some metric | "
        "SSIM better / same / worse | reward better / same / worse |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ablation_lines = []
    for prior, out in runs.items():
        summary = json.loads((out / "summary.json").read_text())
        main = [p for p in summary["paired"] if p.get("against", "candidate") == "candidate"]
        verdicts = [p["verdict"] for p in main]

        lines.append(
            f"| {prior} | {len(main)} | {verdicts.count('helps')} | {verdicts.count('no clear change')} | "
            f"{verdicts.count('mixed')} | {verdicts.count('hurts')} | {sum(bool(p['worse']) for p in main)} | "
            f"{_calls('ssim', main)} | {_calls('reward', main)} |"
        )
        for against in AGAINST[1:]:
            es = [p for p in summary["paired"] if p.get("against") == against]
            if es:
                ablation_lines.append(
                    f"| {prior} | {against} | {len(es)} | {_calls('ssim', es)} | {_calls('reward', es)} | "
                    f"{_calls('psnr', es)} |"
                )
    text = [*lines, ""]
    if ablation_lines:
        text += [
            "ReGuidance against its ablations (same images; Holm-corrected):",
            "",
            "| prior | against | comparisons | SSIM better / same / worse | reward better / same / worse | "
            "PSNR better / same / worse |",
            "|---|---|---|---|---|---|",
            *ablation_lines,
            "",
        ]
    return "\n".join(text)
