"""The tuning protocol: step sizes and wrapper options per (task, method), chosen on *validation* images only.

For one (task, method) the sweep has two stages on the same validation ids, measured exactly as the benchmark
measures (per-image operators, noise and generators from :mod:`.protocol`):

1. **the method's step size** (e.g. DPS ``step_size``), if a grid is given for it: candidates for each value;
2. **the wrapper's options** (fields of :class:`reguidance.wrapper.ReGuidanceConfig`, e.g. ``step_size`` and
   ``t_end``): the candidates of the chosen step size are made *once* and wrapped with every combination.

The rule (:func:`choose`), in both stages: among the settings whose mean measurement consistency
``||A x - y|| / (sigma_y sqrt(m))`` is at most ``max_consistency`` (the output explains ``y`` about as well as the
noise allows), the one with the highest mean SSIM to the ground truth; if none qualifies, the highest SSIM overall.
Callers pass validation images (``load_dataset(name, "val")``); ``reguidance tune`` and ``reguidance tune-defaults``
refuse anything else. Each (task, method) is saved to ``OUT/<task>_<method>.json`` as it finishes, so a sweep
resumes, and several processes may share ``OUT`` when they take disjoint pairs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import InputError
from ..metrics import ssim
from ..operators import Operator
from ..priors.base import Prior
from ..wrapper import ReGuidanceConfig, reguide
from .methods import get_method
from .protocol import get_task, method_rng, wrapper_rng

if TYPE_CHECKING:
    from .report import Record

__all__ = [
    "DEFAULT_METHOD_GRIDS",
    "DEFAULT_WRAPPER_GRID",
    "RULE",
    "STEP_SIZES",
    "choose",
    "collect_table",
    "parse_grid",
    "run_sweep",
    "tune_pair",
]

#: the step-size options of each method that a method grid may sweep
STEP_SIZES: dict[str, tuple[str, ...]] = {
    "dps": ("step_size",),
    "daps": ("step_size", "tau"),
    "diffpir": ("lambda_", "noise_mix"),
    "reddiff": ("step_size", "lambda_"),
    "pigdm": ("scale",),
}
#: step-size grids of the sweep per method (the reference value is inside each)
DEFAULT_METHOD_GRIDS: dict[str, str] = {"dps": "step_size=3,10,30"}
#: the wrapper's grid of the sweep
DEFAULT_WRAPPER_GRID = "step_size=1,3,10;t_end=0.3,0.5"
#: the rule of :func:`choose`, in words (recorded in the tuned table)
RULE = "highest mean SSIM among the settings with mean consistency <= 1.5, else the highest mean SSIM"


def parse_grid(spec: str, fields: Sequence[str] | None = None) -> dict[str, list[object]]:
    """``"step_size=0.1,0.3;t_end=0.3,0.6"`` -> ``{"step_size": [0.1, 0.3], "t_end": [0.3, 0.6]}``.

    ``fields`` names the allowed keys (default: the fields of :class:`ReGuidanceConfig`, values parsed as the type of
    the field's default); with ``fields`` given (a method's step sizes, :data:`STEP_SIZES`) values are floats.
    """
    defaults = asdict(ReGuidanceConfig())
    allowed = list(fields) if fields is not None else list(defaults)
    grid: dict[str, list[object]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in allowed or not values:
            raise InputError(
                f"grid entries look like FIELD=V1,V2 with FIELD one of {', '.join(allowed) or '(none)'}; got {part!r}"
            )
        kind = type(defaults[name]) if fields is None else float
        try:
            grid[name] = [kind(v.strip()) for v in values.split(",")]
        except ValueError:
            raise InputError(f"grid values of {name} must be {kind.__name__}s, got {values!r}") from None
    if not grid:
        raise InputError("grid is empty; expected e.g. 'step_size=0.1,0.3;t_end=0.3,0.6'")
    return grid


def _combos(grid: dict[str, list[object]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]


def choose(rows: list[Record], max_consistency: float = 1.5) -> Record:
    """The rule (module docstring): highest SSIM among rows with consistency <= ``max_consistency``; if no row
    qualifies, the highest SSIM overall."""
    ok = [r for r in rows if float(r["consistency"]) <= max_consistency] or rows
    return max(ok, key=lambda r: float(r["ssim"]))


def _scores(x: Tensor, truth: Tensor, y: Tensor, operator: Operator) -> tuple[Tensor, Tensor]:
    return ssim(x, truth), operator.consistency(x, y)


def _summary(options: dict[str, Any], parts: list[tuple[Tensor, Tensor]]) -> Record:
    s = torch.cat([p[0] for p in parts])
    c = torch.cat([p[1] for p in parts])
    return {**options, "ssim": float(s.mean()), "consistency": float(c.mean())}


def tune_pair(
    prior: Prior,
    images: Tensor,
    task: str,
    method: str,
    ids: Sequence[int],
    *,
    method_options: dict[str, object] | None = None,
    method_grid: dict[str, list[object]] | None = None,
    wrapper_grid: dict[str, list[object]],
    base: ReGuidanceConfig | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_consistency: float = 1.5,
    progress: bool = True,
) -> Record:
    """Both stages of the module docstring for one (task, method) on validation ``images[i]``, ``i`` in ``ids``.

    Returns ``{"task", "method", "method_options", "reguidance", "method_sweep", "wrapper_sweep"}``: the chosen
    method options (``method_options`` updated with the chosen step size), the chosen wrapper fields, and each
    stage's rows (their options with mean ``ssim`` and ``consistency``; the wrapper rows also carry the candidates'
    means as ``candidate_ssim`` / ``candidate_consistency``).
    """
    spec_task, fn = get_task(task), get_method(method)
    base = base or ReGuidanceConfig(clip=True)
    fixed = dict(method_options or {})
    chunks = [list(ids[k : k + batch_size]) for k in range(0, len(ids), batch_size)]
    device = prior.device
    measured = []
    for chunk in chunks:
        truth = images[chunk].to(device)
        measured.append((chunk, truth, *spec_task.measure(truth, chunk, seed, split="val")))
    method_rows = _combos(method_grid or {})
    wrapper_rows = _combos(wrapper_grid)
    bar = tqdm(
        total=len(ids) * (len(method_rows) + len(wrapper_rows)),
        disable=not progress,
        desc=f"tune {task}/{method}",
        unit="img",
    )

    def candidates(options: dict[str, Any]) -> list[Tensor]:
        out = []
        for chunk, _, operator, y in measured:
            rng = method_rng(seed, task, method, chunk, device=device, split="val")
            out.append(fn(prior, operator, y, rng, chunk, **{**fixed, **options})[0])
            bar.update(len(chunk))
        return out

    def score(xs: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        return [_scores(x, truth, y, op) for x, (_, truth, op, y) in zip(xs, measured, strict=True)]

    cached: dict[int, list[Tensor]] = {}
    if method_grid:
        for k, options in enumerate(method_rows):
            cached[k] = candidates(options)
            method_rows[k] = _summary(options, score(cached[k]))
        best = choose(method_rows, max_consistency)
        pick = method_rows.index(best)
        chosen_method = {key: best[key] for key in method_grid}
    else:
        pick, chosen_method = 0, {}
        cached[0] = candidates({})
        method_rows = []
    cands = cached[pick]
    cand_scores = _summary({}, score(cands))
    rows = []
    for options in wrapper_rows:
        cfg = replace(base, **options)
        outs = []
        for cand, (chunk, _, operator, y) in zip(cands, measured, strict=True):
            rng = wrapper_rng(seed, task, method, chunk, device=device, split="val")
            outs.append(reguide(cand, y, operator, prior, config=cfg, rng=rng).x.clamp(-1, 1))
            bar.update(len(chunk))
        rows.append(
            {
                **_summary(options, score(outs)),
                "candidate_ssim": cand_scores["ssim"],
                "candidate_consistency": cand_scores["consistency"],
            }
        )
    bar.close()
    best = choose(rows, max_consistency)
    return {
        "task": task,
        "method": method,
        "method_options": {**fixed, **chosen_method},
        "reguidance": {key: best[key] for key in wrapper_grid},
        "method_sweep": method_rows,
        "wrapper_sweep": rows,
    }


def run_sweep(
    pairs: Sequence[tuple[str, str]],
    out: Path,
    run_pair: Callable[[str, str], Record],
) -> list[Record]:
    """Run ``run_pair`` for every (task, method) not yet saved in ``out``; returns every saved entry of ``pairs``."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for task, method in pairs:
        path = out / f"{task}_{method}.json"
        if not path.is_file():
            entry = run_pair(task, method)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entry, indent=2))
            tmp.replace(path)  # atomic: a killed sweep never leaves a half-written entry
        entries.append(json.loads(path.read_text()))
    return entries


def collect_table(entries: list[Record], header: Record) -> Record:
    """The defaults table written to ``assets/bench/tuned_<protocol>.json``: ``header`` plus the chosen values."""
    keep = ("task", "method", "method_options", "reguidance")
    return {**header, "entries": [{k: e[k] for k in keep} for e in entries]}
