"""The tuning protocol: the wrapper's options per (task, method), chosen on *validation* images only.

For every combination of a grid over :class:`reguidance.wrapper.ReGuidanceConfig` fields (e.g. ``zeta``, ``t_end``,
``dps_steps``), the benchmark runs on validation ids into its own folder (so a sweep resumes like a benchmark), and
the ReGuidance rows are summarised. The rule that picks the default: among the combinations whose mean measurement
consistency is at most ``max_consistency`` (the restoration explains ``y`` about as well as the noise allows), the
one with the highest mean SSIM to the ground truth. The test split is never touched: callers pass validation
images (``load_dataset(name, "val")``), and ``reguidance tune`` refuses anything else.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from ..priors.base import Prior
from ..wrapper import ReGuidanceConfig
from .report import summarise
from .runner import BenchSpec, read_all_results, run_bench

__all__ = ["choose", "parse_grid", "tune"]


def parse_grid(spec: str) -> dict[str, list[object]]:
    """``"zeta=0.1,0.3;t_end=0.3,0.6"`` -> ``{"zeta": [0.1, 0.3], "t_end": [0.3, 0.6]}`` (ReGuidanceConfig fields)."""
    fields = ReGuidanceConfig.__dataclass_fields__
    grid: dict[str, list[object]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in fields or not values:
            raise ValueError(f"grid entries look like FIELD=V1,V2 with FIELD one of {', '.join(fields)}; got {part!r}")
        kind = type(getattr(ReGuidanceConfig(), name))
        try:
            grid[name] = [kind(v.strip()) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"grid values of {name} must be {kind.__name__}s, got {values!r}") from None
    if not grid:
        raise ValueError("grid is empty; expected e.g. 'zeta=0.1,0.3;t_end=0.3,0.6'")
    return grid


def tune(
    prior: Prior,
    images: Tensor,
    labels: Tensor,
    task: str,
    method: str,
    ids: range,
    grid: dict[str, list[object]],
    out: Path,
    *,
    base: ReGuidanceConfig | None = None,
    method_options: dict[str, object] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    classifier: object | None = None,
    progress: bool = True,
) -> list[dict[str, object]]:
    """Run every grid combination on validation ``ids``; returns one row per combination (also ``out/tune.json``)."""
    base = base or ReGuidanceConfig(clip=True)
    rows = []
    for k, values in enumerate(itertools.product(*grid.values())):
        options = dict(zip(grid.keys(), values, strict=True))
        cfg = replace(base, **options)  # type: ignore[arg-type]
        folder = out / f"combo{k:03d}"
        spec = BenchSpec([task], [method], ids, seed=seed, batch_size=batch_size,
                         method_options={method: method_options or {}}, reguidance=cfg)
        run_bench(prior, images, labels, spec, folder, classifier=classifier, progress=progress)  # type: ignore[arg-type]
        summary = summarise(read_all_results(folder))
        after = next(r for r in summary["rows"] if r["reguidance"])  # type: ignore[attr-defined]
        rows.append({**options, "psnr": after["psnr"]["mean"], "ssim": after["ssim"]["mean"],
                     "consistency": after["consistency"]["mean"],
                     "class_acc": None if after["class_acc"] is None else after["class_acc"]["mean"]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps({"task": task, "method": method, "ids": [ids.start, ids.stop],
                                               "rows": rows, "chosen": choose(rows)}, indent=2))
    return rows


def choose(rows: list[dict[str, object]], max_consistency: float = 1.5) -> dict[str, object]:
    """The rule (module docstring): highest SSIM among rows with consistency <= ``max_consistency``; if no row
    qualifies, the highest SSIM overall."""
    ok = [r for r in rows if float(r["consistency"]) <= max_consistency] or rows  # type: ignore[arg-type]
    return max(ok, key=lambda r: float(r["ssim"]))  # type: ignore[arg-type]
