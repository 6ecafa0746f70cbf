"""Summaries of ``results.jsonl``: per (task, method, with/without ReGuidance) means with 95% intervals, and the
paired difference with/without ReGuidance (interval and win rate), as ``summary.json`` and ``summary.md``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..files import replace_marked
from ..images import read_images, save_grid
from ..metrics import jackknife_ci95, mean_ci95, paired_difference, proportion_ci95
from .runner import read_all_results

__all__ = [
    "add_fd_cls",
    "benchmark_tables",
    "format_markdown",
    "replace_marked",
    "save_grids",
    "save_overview",
    "save_tradeoff_plot",
    "summarise",
    "verdict",
    "write_summary",
]

#: a row of ``results.jsonl``, a summary, or one of its rows: JSON objects, typed as such (values of any JSON type)
Record = dict[str, Any]

#: per-image metrics and whether higher is better (``lpips`` only in runs given LPIPS weights)
METRICS = {"psnr": True, "ssim": True, "consistency": False, "lpips": False}


def summarise(rows: list[Record]) -> Record:
    """The summary: ``{"rows": [...], "paired": [...]}`` (see the benchmark issue for the row format).

    Rows are de-duplicated by (task, method, reguidance, id), so a resumed run summarises like an uninterrupted one.
    ``fd_cls`` is ``None`` here (it needs the classifier's features of the saved images); ``class_acc`` is ``None``
    when no classifier was given to the runner.
    """
    unique: dict[tuple[object, ...], Record] = {}
    for r in rows:
        unique[(r["task"], r["method"], r["reguidance"], r["id"])] = r
    groups: dict[tuple[str, str, bool], list[Record]] = {}
    for (task, method, rg, _), r in sorted(unique.items(), key=lambda kv: str(kv[0])):
        groups.setdefault((str(task), str(method), bool(rg)), []).append(r)
    out_rows = []
    for (task, method, rg), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: int(r["id"]))
        row: Record = {"task": task, "method": method, "reguidance": rg, "n": len(rs)}
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
    for (task, method, rg), rs in sorted(groups.items()):
        if rg or (task, method, True) not in groups:
            continue
        before = {int(r["id"]): r for r in rs}
        after = {int(r["id"]): r for r in groups[(task, method, True)]}
        ids = sorted(before.keys() & after.keys())
        entry: Record = {"task": task, "method": method, "n": len(ids)}
        for m, higher in METRICS.items():
            if not all(m in r for r in (*before.values(), *after.values())):
                entry[m] = None
                continue
            a = torch.tensor([float(after[i][m]) for i in ids])
            b = torch.tensor([float(before[i][m]) for i in ids])
            if m == "consistency":  # closeness to 1 (explaining y up to the noise) is what counts
                a, b = (a - 1).abs(), (b - 1).abs()
            entry[m] = paired_difference(a, b, higher_is_better=higher)
        if all("pred" in r for r in (*before.values(), *after.values())):
            correct = [[float(d[i]["pred"] == d[i]["label"]) for i in ids] for d in (after, before)]
            entry["class_acc"] = paired_difference(torch.tensor(correct[0]), torch.tensor(correct[1]))
        else:
            entry["class_acc"] = None
        paired.append(entry)
    return {"rows": out_rows, "paired": paired}


def format_markdown(summary: Record) -> str:
    """``summary`` as Markdown tables (an LPIPS column only when the run computed LPIPS)."""
    with_lpips = any(r.get("lpips") for r in summary["rows"])
    lp_head, lp_rule = (" LPIPS |", "---|") if with_lpips else ("", "")
    lines = [
        f"| task | method | ReGuidance | n | PSNR | SSIM | consistency |{lp_head} FD-cls | class acc | NFE | s/image |",
        f"|---|---|---|---|---|---|---|{lp_rule}---|---|---|---|",
    ]

    def cell(v: Record | None, fmt: str) -> str:
        if v is None:
            return "—"
        return f"{v['mean']:{fmt}} [{v['ci95'][0]:{fmt}}, {v['ci95'][1]:{fmt}}]"

    for r in summary["rows"]:
        lines.append(
            f"| {r['task']} | {r['method']} | {'yes' if r['reguidance'] else 'no'} | {r['n']} | "
            f"{cell(r['psnr'], '.2f')} | {cell(r['ssim'], '.3f')} | {cell(r['consistency'], '.2f')} | "
            + (f"{cell(r.get('lpips'), '.3f')} | " if with_lpips else "")
            + f"{cell(r['fd_cls'], '.1f')} | {cell(r['class_acc'], '.2f')} | {r['nfe']} | {r['sec_per_image']:.2f} |"
        )
    lines += [
        "",
        "Paired, ReGuidance minus candidate (consistency: change in |consistency - 1|; lower is better):",
        "",
        "| task | method | n | ΔPSNR (win rate) | ΔSSIM (win rate) | Δ|consistency-1| (win rate) "
        "| Δclass acc |" + (" ΔLPIPS |" if with_lpips else ""),
        "|---|---|---|---|---|---|---|" + lp_rule,
    ]
    for p in summary["paired"]:
        cells = [
            f"{p[m]['mean']:+.3f} [{p[m]['ci95'][0]:+.3f}, {p[m]['ci95'][1]:+.3f}] ({p[m]['win_rate']:.2f})"
            for m in ("psnr", "ssim", "consistency")
        ]
        for m in ("class_acc", "lpips") if with_lpips else ("class_acc",):
            d = p.get(m)
            cells.append("—" if d is None else f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        lines.append(f"| {p['task']} | {p['method']} | {p['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
        kind = "reguidance" if row["reguidance"] else "candidate"
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
        kinds = ("measurement", "candidate", "reguidance", "truth")
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

    rows = {(r["task"], r["method"], r["reguidance"]): r for r in summary["rows"]}
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


def save_overview(grids: list[Path], path: Path, title: str) -> Path:
    """The per-(task, method) grids side by side in one labelled picture (columns: measurement | candidate |
    +ReGuidance | truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    pictures = [Image.open(g) for g in grids]
    aspect = max(p.height / p.width for p in pictures)
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.2 * aspect + 0.9), squeeze=False)
    for ax, grid, picture in zip(axes[0], grids, pictures, strict=True):
        ax.imshow(picture, cmap="gray")
        ax.set_title(grid.stem.replace("_", " / ", 1) + "\nmeas. | cand. | +ReG | truth", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _sign(d: Record | None, higher_is_better: bool = True) -> int:
    """+1 / -1 when the 95% interval of a paired difference lies wholly on the good / bad side of 0, else 0."""
    if d is None:
        return 0
    lo, hi = d["ci95"]
    sign = 1 if lo > 0 else -1 if hi < 0 else 0
    return sign if higher_is_better else -sign


def verdict(paired: Record) -> str:
    """``helps`` / ``hurts`` / ``mixed`` / ``no clear effect`` from the significant paired changes of SSIM,
    |consistency - 1|, class accuracy and LPIPS where measured (each counts when its 95% interval excludes 0)."""
    signs = [
        _sign(paired["ssim"]),
        _sign(paired["consistency"], higher_is_better=False),
        _sign(paired.get("class_acc")),
        _sign(paired.get("lpips"), higher_is_better=False),
    ]
    good, bad = 1 in signs, -1 in signs
    return "mixed" if good and bad else "helps" if good else "hurts" if bad else "no clear effect"


def benchmark_tables(runs: dict[str, Path]) -> str:
    """Markdown for ``BENCHMARK.md``: per prior (name -> benchmark folder with ``summary.json`` and
    ``config.json``), the options used, the full table, and a verdict with the time ReGuidance adds."""
    parts = []
    for prior, out in runs.items():
        summary = json.loads((out / "summary.json").read_text())
        config = json.loads((out / "config.json").read_text())
        rows = {(r["task"], r["method"], r["reguidance"]): r for r in summary["rows"]}
        parts += [
            f"### {prior}",
            "",
            f"Protocol `{config['protocol']}` "
            f"({'options tuned on validation images' if config['tuned'] else 'untuned reference options'}), "
            f"seed {config['seed']}.",
            "",
            format_markdown(summary),
            "Verdict per (task, method) — a change counts when its 95% interval excludes 0 — and the time "
            "ReGuidance adds per image:",
            "",
            "| task | method | verdict | candidate s/image | + ReGuidance s/image | added NFE |",
            "|---|---|---|---|---|---|",
        ]
        for p in summary["paired"]:
            before, after = rows[(p["task"], p["method"], False)], rows[(p["task"], p["method"], True)]
            parts.append(
                f"| {p['task']} | {p['method']} | {verdict(p)} | {before['sec_per_image']:.2f} | "
                f"{after['sec_per_image'] - before['sec_per_image']:.2f} | "
                f"{after['nfe'] - before['nfe']} |"
            )
        parts.append("")
    return "\n".join(parts)
