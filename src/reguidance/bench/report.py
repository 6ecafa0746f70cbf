"""Summaries of ``results.jsonl``: per (task, method, with/without ReGuidance) means with 95% intervals, and the
paired difference with/without ReGuidance (interval and win rate), as ``summary.json`` and ``summary.md``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..metrics import mean_ci95, paired_difference
from .runner import read_results

__all__ = ["format_markdown", "summarise", "write_summary"]

METRICS = ("psnr", "ssim", "consistency")


def summarise(rows: list[dict[str, object]]) -> dict[str, object]:
    """The summary: ``{"rows": [...], "paired": [...]}`` (see the benchmark issue for the row format).

    Rows are de-duplicated by (task, method, reguidance, id), so a resumed run summarises like an uninterrupted one.
    ``fd_cls`` is ``None`` here (it needs the classifier's features of the saved images); ``class_acc`` is ``None``
    when no classifier was given to the runner.
    """
    unique: dict[tuple[object, ...], dict[str, object]] = {}
    for r in rows:
        unique[(r["task"], r["method"], r["reguidance"], r["id"])] = r
    groups: dict[tuple[str, str, bool], list[dict[str, object]]] = {}
    for (task, method, rg, _), r in sorted(unique.items(), key=lambda kv: str(kv[0])):
        groups.setdefault((str(task), str(method), bool(rg)), []).append(r)
    out_rows = []
    for (task, method, rg), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: int(r["id"]))  # type: ignore[call-overload]
        row: dict[str, object] = {"task": task, "method": method, "reguidance": rg, "n": len(rs)}
        for m in METRICS:
            row[m] = mean_ci95([float(r[m]) for r in rs])  # type: ignore[arg-type]
        row["fd_cls"] = None
        row["class_acc"] = (
            mean_ci95([float(r["pred"] == r["label"]) for r in rs]) if all("pred" in r for r in rs) else None
        )
        row["nfe"] = int(rs[0]["nfe"])  # type: ignore[call-overload]
        row["sec_per_image"] = float(torch.tensor([float(r["sec_per_image"]) for r in rs]).mean())  # type: ignore[arg-type]
        row["peak_mem_mb"] = max(float(r["peak_mem_mb"]) for r in rs)  # type: ignore[arg-type]
        out_rows.append(row)
    paired = []
    for (task, method, rg), rs in sorted(groups.items()):
        if rg or (task, method, True) not in groups:
            continue
        before = {int(r["id"]): r for r in rs}  # type: ignore[call-overload]
        after = {int(r["id"]): r for r in groups[(task, method, True)]}  # type: ignore[call-overload]
        ids = sorted(before.keys() & after.keys())
        entry: dict[str, object] = {"task": task, "method": method, "n": len(ids)}
        for m, higher in (("psnr", True), ("ssim", True), ("consistency", False)):
            a = torch.tensor([float(after[i][m]) for i in ids])  # type: ignore[arg-type]
            b = torch.tensor([float(before[i][m]) for i in ids])  # type: ignore[arg-type]
            if m == "consistency":  # closeness to 1 (explaining y up to the noise) is what counts
                a, b = (a - 1).abs(), (b - 1).abs()
            entry[m] = paired_difference(a, b, higher_is_better=higher)
        paired.append(entry)
    return {"rows": out_rows, "paired": paired}


def format_markdown(summary: dict[str, object]) -> str:
    """``summary`` as Markdown tables."""
    lines = ["| task | method | ReGuidance | n | PSNR | SSIM | consistency | class acc | NFE | s/image |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(v: object, fmt: str) -> str:
        if v is None:
            return "—"
        d = v  # type: ignore[assignment]
        return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]"  # type: ignore[index]

    for r in summary["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {r['task']} | {r['method']} | {'yes' if r['reguidance'] else 'no'} | {r['n']} | "
            f"{cell(r['psnr'], '.2f')} | {cell(r['ssim'], '.3f')} | {cell(r['consistency'], '.2f')} | "
            f"{cell(r['class_acc'], '.2f')} | {r['nfe']} | {r['sec_per_image']:.2f} |"
        )
    lines += ["", "Paired, ReGuidance minus candidate (consistency: change in |consistency - 1|; lower is better):", "",
              "| task | method | n | ΔPSNR (win rate) | ΔSSIM (win rate) | Δ|consistency-1| (win rate) |",
              "|---|---|---|---|---|---|"]
    for p in summary["paired"]:  # type: ignore[attr-defined]
        cells = [f"{p[m]['mean']:+.3f} [{p[m]['ci95'][0]:+.3f}, {p[m]['ci95'][1]:+.3f}] ({p[m]['win_rate']:.2f})"
                 for m in ("psnr", "ssim", "consistency")]
        lines.append(f"| {p['task']} | {p['method']} | {p['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(out: Path) -> dict[str, object]:
    """Summarise ``out/results.jsonl`` into ``out/summary.json`` and ``out/summary.md``; returns the summary."""
    summary = summarise(read_results(out / "results.jsonl"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(format_markdown(summary))
    return summary
