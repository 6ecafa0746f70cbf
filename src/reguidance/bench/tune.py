"""The tuning protocol: step sizes and wrapper options per (task, method), chosen on *validation* images only.

For one (task, method) the sweep has two stages on the same validation ids, measured exactly as the benchmark
measures (per-image operators, noise and generators from :mod:`reguidance.tasks`; each batch solved by
:func:`reguidance.app.batch.solve_batch`):

1. **the method's step size** (e.g. DPS ``step_size``), if a grid is given for it: candidates for each value;
2. **the wrapper's options** (fields of :class:`reguidance.wrapper.ReGuidance`, e.g. ``step_size`` and
   ``t_end``): the candidates of the chosen step size are made *once* and wrapped with every combination.

With ``ablations`` (``--ablations``) every other variant the benchmark reports gets its own tuning too, by the same
rule on the same images, so no row borrows a setting tuned for another:

3. ``renoise`` and ``fresh``: the wrapper's grid again, with ``start`` set to the variant, on the candidates of
   stage 1 (the candidate fixed, as for ReGuidance);
4. ``more`` (methods with a step budget): the method's grid again at its *own* budget, the base method's steps
   scaled by the evaluations the chosen wrapper adds (:func:`reguidance.app.methods.scaled_budget`).

Each entry records ``settings``, the number of settings each row had *in all*: the candidate its method stage's;
ReGuidance and ``renoise`` the method stage's plus their own (the candidate was tuned first); ``fresh`` (no
candidate) and ``more`` their own stage's.

The rule (:func:`choose`, :data:`RULE`), in every stage and for every variant alike: among the settings whose mean
measurement consistency ``||A x - y|| / (sigma_y sqrt(m))`` is at most ``max_consistency`` (the output explains ``y``
about as well as the noise allows), the one with the highest mean SSIM to the ground truth; if none qualifies, the
highest SSIM overall. **Selection and votes never share images**: SSIM and consistency also vote in the report, but
there on *test* images; the rule reads *validation* images only (training images 55,000-59,999 of MNIST /
Fashion-MNIST, disjoint from the official test split, :func:`reguidance.io.datasets.load_dataset`): :func:`tune_pair`
refuses any other split, and ``reguidance tune`` / ``tune-defaults`` load ``load_dataset(name, "val")`` only.

**Equal budget.** Every method's grid (:data:`DEFAULT_METHOD_GRIDS`) has as many settings as the wrapper's
(:data:`DEFAULT_WRAPPER_GRID`: 12, with ``t_end`` up to 1.0 and both samplers, ``ddpm`` and ``ddim``) and holds the
reference code's value; widening follows one rule for every axis of every variant.

**Edges**: when a chosen value sits on the edge
of its axis, the axis is widened (:func:`widen`: one more value beyond the edge, at the ratio of the two values next
to it, or the step for ``t_end``), evaluated with the other axes at their chosen values, up to ``max_widen`` times; a
value that cannot move further (``t_end`` at 1, ``noise_mix`` at 0 or 1) is recorded as a hard limit; a categorical
axis (``sampler``) has no edge. Each entry
records, per stage and axis, the values tried, the choice and whether it is still on an edge (:func:`edges`).

Each (task, method) is saved to ``OUT/<task>_<method>.json`` as it finishes, so a sweep
resumes. One process writes into an ``OUT`` at a time (a second is refused); to split the pairs between
processes, give each its own ``OUT`` and the same other flags, then run once more with every pair, ``--from`` each
of those folders and ``--write``: pairs saved there are read, not recomputed (``scripts/study.sh equal`` does so).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..app.batch import solve_batch
from ..app.methods import make_method, method_class, scaled_budget
from ..conventions import InputError
from ..diffusion import check_levels
from ..evaluation.metrics import ssim
from ..guidance.registry import METHODS as SAMPLERS
from ..guidance.solve import Method
from ..io.files import atomic_write_text, read_json_object
from ..operators import Operator
from ..priors.base import Prior
from ..tasks import get_task
from ..wrapper import ReGuidance

if TYPE_CHECKING:
    from .records import Record

__all__ = [
    "DEFAULT_METHOD_GRIDS",
    "DEFAULT_WRAPPER_GRID",
    "GRID_SIZE",
    "MAX_WIDEN",
    "RULE",
    "STEP_SIZES",
    "check_sweep",
    "choose",
    "collect_table",
    "edges",
    "parse_grid",
    "run_sweep",
    "sweep",
    "table_header",
    "tune_pair",
    "validation_split",
    "widen",
]

#: the step-size options of each method that a method grid may sweep (each class's ``step_sizes``)
STEP_SIZES: dict[str, tuple[str, ...]] = {name: cls.step_sizes for name, cls in SAMPLERS.items()}
#: settings in every default grid, the methods' and the wrapper's alike (before widening)
GRID_SIZE = 12
#: step-size grids of the sweep per method (each class's ``tuning_grid``): :data:`GRID_SIZE` settings each (as many
#: as the wrapper's), each holding the reference code's value: DPS zeta 0.3 / 0.5 (its SR-deblur / inpainting
#: configs), DAPS lr 1e-4 with tau 0.01, DiffPIR lambda 1 with zeta (``noise_mix``) 0.1 / 0.25 / 1.0, RED-diff lr 0.1
#: with lambda 0.25, PiGDM scale 1
DEFAULT_METHOD_GRIDS: dict[str, str] = {name: cls.tuning_grid for name, cls in SAMPLERS.items()}
#: the wrapper's grid of the sweep (:data:`GRID_SIZE` settings: the inversion depth up to the whole chain, both
#: samplers; numeric axes widened at an edge like the methods'), used alike for ReGuidance, ``renoise`` and ``fresh``
DEFAULT_WRAPPER_GRID = "step_size=1,10;t_end=0.3,0.6,1.0;sampler=ddpm,ddim"
#: hard limits of axes that cannot be widened past them: (lowest, highest) allowed
LIMITS: dict[str, tuple[float, float]] = {"t_end": (0.05, 1.0), "noise_mix": (0.0, 1.0)}
#: additive axes (widened by their last step, not by a ratio)
ADDITIVE = ("t_end", "noise_mix")
#: rounds of widening at an edge (:func:`tune_pair`; recorded in the tuned table)
MAX_WIDEN = 2
#: the rule of :func:`choose`, in words (recorded in the tuned table)
RULE = (
    "highest mean SSIM among the settings with mean consistency <= 1.5, else the highest mean SSIM; on validation "
    "images only (disjoint from the test images the report votes on), the same rule for every variant"
)


def _numeric(values: Sequence[object]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def parse_grid(spec: str, fields: Sequence[str] | None = None) -> dict[str, list[object]]:
    """``"step_size=0.1,0.3;t_end=0.3,0.6"`` -> ``{"step_size": [0.1, 0.3], "t_end": [0.3, 0.6]}``.

    ``fields`` names the allowed keys (default: the fields of :class:`ReGuidance`, values parsed as the type of
    the field's default); with ``fields`` given (a method's step sizes, :data:`STEP_SIZES`) values are floats.
    """
    defaults = ReGuidance().options()
    allowed = list(fields) if fields is not None else list(defaults)
    grid: dict[str, list[object]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in allowed or not values:
            raise InputError(
                f"grid entries look like FIELD=V1,V2 with FIELD one of {', '.join(allowed) or '(none)'}; got {part!r}"
            )
        kind: Any = type(defaults[name]) if fields is None else float
        try:
            grid[name] = [kind(v.strip()) for v in values.split(",")]
        except ValueError:
            raise InputError(f"grid values of {name} must be {kind.__name__}s, got {values!r}") from None
    if not grid:
        raise InputError("grid is empty; expected e.g. 'step_size=0.1,0.3;t_end=0.3,0.6'")
    return grid


def _combos(grid: dict[str, list[object]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]


def widen(name: str, values: Sequence[float], chosen: float) -> float | None:
    """The next value of axis ``name`` beyond ``chosen`` when it is an edge of ``values``, else ``None``; ``None``
    too when the axis has one value or the next value would cross its hard limit (:data:`LIMITS`).

    Ratio axes (step sizes) go on geometrically (``[1, 3, 10]`` at 10 -> 33.3, at 1 -> 0.3); additive axes
    (:data:`ADDITIVE`) by their last step (``t_end`` ``[0.3, 0.5]`` at 0.5 -> 0.7, at 0.3 -> 0.1); a step that would
    pass a limit stops on it (``t_end`` ``[0.7, 0.9]`` at 0.9 -> 1.0).
    """
    vals = sorted(set(float(v) for v in values))
    if len(vals) < 2 or chosen not in (vals[0], vals[-1]):
        return None
    top = chosen == vals[-1]
    near = vals[-2] if top else vals[1]
    nxt = chosen + (chosen - near) if name in ADDITIVE else chosen * (chosen / near)
    nxt = float(f"{nxt:.6g}")  # six significant digits: a readable value, never rounded to 0
    lo, hi = LIMITS.get(name, (0.0, float("inf")))
    if lo < chosen < hi:  # a step past a limit stops at the limit itself (t_end 0.9 -> 1.0)
        nxt = min(max(nxt, lo), hi)
    if not lo <= nxt <= hi or nxt == chosen or (name not in LIMITS and nxt <= 0):
        return None
    return nxt


def edges(rows: Sequence[Record], chosen: Record, axes: Sequence[str]) -> dict[str, Record]:
    """Per axis: the values tried, the chosen value, whether it sits on an edge of them, and whether that edge is
    a hard limit (no value beyond it is allowed, :data:`LIMITS`, or the value beyond it diverged); an edge that is
    not a hard limit means the widening rounds ran out. Diverged settings are not among the values."""
    out: dict[str, Record] = {}
    for name in axes:
        if not _numeric([r[name] for r in rows]):  # a categorical axis (sampler): no order, so no edge
            tried = sorted({str(r[name]) for r in rows if not r.get("diverged")})
            out[name] = {"values": tried, "chosen": chosen[name], "on_edge": False, "hard_limit": False}
            continue
        vals = sorted({float(r[name]) for r in rows if not r.get("diverged")})
        value = float(chosen[name])
        on_edge = len(vals) > 1 and value in (vals[0], vals[-1])
        outward = [float(r[name]) for r in rows if r.get("diverged")]
        outward = [v for v in outward if (v > value if value == vals[-1] else v < value)]
        # nothing beyond it is allowed, or the next value out diverged
        hard = on_edge and (widen(name, vals, value) is None or bool(outward))
        out[name] = {"values": vals, "chosen": value, "on_edge": on_edge, "hard_limit": hard}
    return out


def choose(rows: list[Record], max_consistency: float = 1.5) -> Record:
    """The rule (module docstring): highest SSIM among rows with consistency <= ``max_consistency``; if no row
    qualifies, the highest SSIM overall. Settings that diverged (``"diverged": True``, no scores) never win."""
    valid = [r for r in rows if not r.get("diverged")]
    if not valid:
        raise InputError("every setting of the grid diverged (NaN or Inf); try smaller step sizes")
    ok = [r for r in valid if float(r["consistency"]) <= max_consistency] or valid
    return max(ok, key=lambda r: float(r["ssim"]))


class _Diverged(Exception):
    """A setting whose outputs hold NaN or Inf (a step size too large): recorded as diverged, not fatal."""


def _finite(x: Tensor) -> Tensor:
    if not bool(torch.isfinite(x).all()):
        raise _Diverged("the outputs hold NaN or Inf")
    return x


def _guarded(fn: Callable[[], list[Tensor]]) -> list[Tensor]:
    """``fn()``, with a divergence inside it (a non-finite state or output) raised as :class:`_Diverged`."""
    try:
        return fn()
    except FloatingPointError as err:
        raise _Diverged(str(err)) from err
    except InputError as err:
        if "NaN or Inf" in str(err):
            raise _Diverged(str(err)) from err
        raise


def _scores(x: Tensor, truth: Tensor, y: Tensor, operator: Operator) -> tuple[Tensor, Tensor]:
    return ssim(x, truth), operator.consistency(x, y)


def _summary(options: dict[str, Any], parts: list[tuple[Tensor, Tensor]]) -> Record:
    s = torch.cat([p[0] for p in parts])
    c = torch.cat([p[1] for p in parts])
    return {**options, "ssim": float(s.mean()), "consistency": float(c.mean())}


def _stage(
    grid: dict[str, list[object]],
    evaluate: Callable[[dict[str, Any]], Record],
    max_consistency: float,
    max_widen: int,
) -> tuple[list[Record], Record]:
    """One stage of the sweep: every setting of ``grid``, then up to ``max_widen`` rounds of :func:`widen` along
    each axis whose choice sits on an edge (the other axes at their chosen values). Returns (rows, chosen row)."""
    rows = [evaluate(options) for options in _combos(grid)]
    best = choose(rows, max_consistency)
    for _ in range(max_widen):
        added = False
        for name in grid:
            if not _numeric(grid[name]):
                continue
            nxt = widen(name, [float(r[name]) for r in rows], float(best[name]))
            if nxt is None:
                continue
            rows.append(evaluate({**{k: best[k] for k in grid}, name: nxt}))
            added = True
        if not added:
            break
        best = choose(rows, max_consistency)
    return rows, best


def tune_pair(
    prior: Prior,
    images: Tensor,
    task: str,
    method: str,
    ids: Sequence[int],
    *,
    start: Method | None = None,
    method_grid: dict[str, list[object]] | None = None,
    wrapper_grid: dict[str, list[object]],
    base: ReGuidance | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_consistency: float = 1.5,
    max_widen: int = MAX_WIDEN,
    split: str = "val",
    ablations: bool = False,
    progress: bool = True,
) -> Record:
    """The stages of the module docstring for one (task, method) on validation ``images[i]``, ``i`` in ``ids``
    (stages 3-4, the ablations' own tuning, with ``ablations``).

    ``split`` names the split ``images`` come from: anything but ``"val"`` is refused (tuning never reads a test
    image). ``start`` is the method's config the sweep starts from (default: its defaults with its image options),
    ``base`` the wrapper's. Returns ``{"task", "method", "method_options", "reguidance", "method_sweep",
    "wrapper_sweep", "edges", "settings"}`` and with ``ablations`` ``"variants"``: the chosen method config and
    wrapper config (serialized, :meth:`~reguidance.guidance.solve.Method.options`), each stage's rows (their options
    with mean ``ssim`` and ``consistency``; the wrapper rows also carry the candidates' means as ``candidate_ssim`` /
    ``candidate_consistency``), per stage and axis where the choice sits in the values tried (:func:`edges`), the
    settings each variant had in all, and per ablation its choice (``reguidance`` fields for ``renoise`` /
    ``fresh``, ``method_options`` for ``more``), rows and edges.
    """
    if split != "val":
        raise InputError(f"tuning reads validation images only; got split {split!r} (the test split is for the report)")
    spec_task = get_task(task)
    first = start or make_method(method, method_class(method).image_options)
    base = base or ReGuidance.from_options(ReGuidance.image_options)
    chunks = [list(ids[k : k + batch_size]) for k in range(0, len(ids), batch_size)]
    device = prior.device
    measured = []
    for chunk in chunks:
        truth = images[chunk].to(device)
        measured.append((chunk, truth, *spec_task.measure(truth, chunk, seed, split="val")))
    bar = tqdm(total=0, disable=not progress, desc=f"tune {task}/{method}", unit="img")
    nfe: dict[str, int] = {}  # network evaluations per image of each evaluated setting, by its key
    solve = partial(solve_batch, prior, seed=seed, task=task, split="val", name=method)  # every solve here

    def key_of(kind: str, options: Mapping[str, Any]) -> str:
        return kind + json.dumps(options, sort_keys=True)

    def candidates(options: dict[str, Any], start: Method, key: str) -> list[Tensor]:
        bar.total += len(ids)
        out = []
        config = start.replace(**options)
        for chunk, _, operator, y in measured:
            solved = solve(operator, y, chunk, method=config, variants=("candidate",))
            out.append(_finite(solved["candidate"].x))
            nfe[key] = solved["candidate"].nfe
            bar.update(len(chunk))
        return out

    def diverged(options: dict[str, Any]) -> Record:
        return {**options, "ssim": None, "consistency": None, "diverged": True}

    def score(xs: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        return [_scores(x, truth, y, op) for x, (_, truth, op, y) in zip(xs, measured, strict=True)]

    cached: dict[str, list[Tensor]] = {}

    def method_evaluator(start: Method, kind: str) -> Callable[[dict[str, Any]], Record]:
        def evaluate(options: dict[str, Any]) -> Record:
            key = key_of(kind, options)
            try:
                cached[key] = _guarded(lambda: candidates(options, start, key))
            except _Diverged:
                return diverged(options)
            return _summary(options, score(cached[key]))

        return evaluate

    def method_stage(start: Method, kind: str) -> tuple[list[Record], dict[str, Any], Record]:
        """(rows, chosen options, edges) of the method's grid from the options ``start`` (one row without a grid)."""
        evaluate = method_evaluator(start, kind)
        if not method_grid:
            return [evaluate({})], {}, {}
        rows, best = _stage(method_grid, evaluate, max_consistency, max_widen)
        return rows, {k: best[k] for k in method_grid}, edges(rows, best, list(method_grid))

    result_edges: dict[str, dict[str, Record]] = {}
    method_rows, chosen_method, method_edges = method_stage(first, "candidate")
    if method_grid:
        result_edges["method"] = method_edges
    cand_key = key_of("candidate", chosen_method)
    cands = cached[cand_key]
    chosen = first.replace(**chosen_method)
    cand_scores = _summary({}, score(cands))

    def wrapper_evaluator(variant: str) -> Callable[[dict[str, Any]], Record]:
        def evaluate(options: dict[str, Any]) -> Record:
            cfg = base.replace(**options)
            bar.total += len(ids)

            def restorations() -> list[Tensor]:
                outs = []
                for cand, (chunk, _, operator, y) in zip(cands, measured, strict=True):
                    solved = solve(operator, y, chunk, method=chosen, config=cfg, candidate=cand, variants=(variant,))
                    outs.append(_finite(solved[variant].x))
                    nfe[key_of(variant, options)] = solved[variant].nfe  # the wrapper's own (the candidate is given)
                    bar.update(len(chunk))
                return outs

            try:
                outs = _guarded(restorations)
            except _Diverged:
                return diverged(options)
            return {
                **_summary(options, score(outs)),
                "candidate_ssim": cand_scores["ssim"],
                "candidate_consistency": cand_scores["consistency"],
            }

        return evaluate

    rows, best = _stage(wrapper_grid, wrapper_evaluator("reguidance"), max_consistency, max_widen)
    chosen_grid = {key: best[key] for key in wrapper_grid}
    chosen_wrapper = base.replace(**{key: best[key] for key in wrapper_grid}).options()
    result_edges["reguidance"] = edges(rows, best, list(wrapper_grid))
    n_method = len(method_rows)
    entry: Record = {
        "task": task,
        "method": method,
        "method_options": chosen.options(),
        "reguidance": chosen_wrapper,
        "method_sweep": method_rows if method_grid else [],
        "wrapper_sweep": rows,
        "edges": result_edges,
        "settings": {"candidate": n_method, "reguidance": n_method + len(rows)},
    }
    if ablations:
        variants: Record = {}
        for variant in ("renoise", "fresh"):
            v_rows, v_best = _stage(wrapper_grid, wrapper_evaluator(variant), max_consistency, max_widen)
            variants[variant] = {
                "reguidance": base.replace(**{key: v_best[key] for key in wrapper_grid}).options(),
                "sweep": v_rows,
                "edges": edges(v_rows, v_best, list(wrapper_grid)),
            }
            entry["settings"][variant] = len(v_rows) + (n_method if variant == "renoise" else 0)
        if chosen.budget_option is not None:
            extra = nfe[key_of("reguidance", chosen_grid)]  # what the chosen wrapper adds per image
            more_start = scaled_budget(chosen, nfe[cand_key], extra)
            m_rows, m_chosen, m_edges = method_stage(more_start, "more")
            more = more_start.replace(**m_chosen).options()
            variants["more"] = {"method_options": more, "sweep": m_rows, "edges": m_edges}
            entry["settings"]["more"] = len(m_rows)
        entry["variants"] = variants
    bar.close()
    return entry


def run_sweep(
    pairs: Sequence[tuple[str, str]],
    out: Path,
    run_pair: Callable[[str, str], Record],
    complete: Callable[[Record], bool] = lambda entry: True,
    sources: Sequence[Path] = (),
) -> list[Record]:
    """Run ``run_pair`` for every (task, method) not yet saved in ``out`` (or saved but not ``complete``, e.g.
    without the ablations a sweep now asks for) nor, complete, in one of the folders ``sources`` (sweeps of the
    same flags split between processes: read there, never copied or changed); returns every entry of ``pairs``."""
    out.mkdir(parents=True, exist_ok=True)
    required = ("task", "method", "method_options", "reguidance")
    entries = []
    for task, method in pairs:
        name = f"{task}_{method}.json"
        # every saved copy is read (a broken one is named, whichever folder it is in)
        saved = [read_json_object(f / name, required) for f in (out, *sources) if (f / name).is_file()]
        done = [entry for entry in saved if complete(entry)]
        if not done:
            atomic_write_text(out / name, json.dumps(run_pair(task, method), indent=2))  # never a half entry
            done = [read_json_object(out / name, required)]
        entries.append(done[0])
    return entries


def collect_table(entries: list[Record], header: Record) -> Record:
    """The defaults table written to ``assets/bench/tuned_<protocol>.json``: ``header`` plus the chosen values."""
    keep = ("task", "method", "method_options", "reguidance", "edges", "settings")
    return {**header, "entries": [{**{k: e[k] for k in keep if k in e}, **_variants(e)} for e in entries]}


def _variants(entry: Record) -> Record:
    """An entry's ablation choices for the table (their sweeps stay in the sweep's own files)."""
    if "variants" not in entry:
        return {}
    return {"variants": {v: {k: x for k, x in c.items() if k != "sweep"} for v, c in entry["variants"].items()}}


def validation_split(prior_name: str, dataset: str | None, ids: str) -> tuple[Tensor, range]:
    """The VALIDATION images the sweeps run on (never the test split) and the ids ``A:B``, checked against its
    size; ``InputError`` when the split is not on disk."""
    from ..io.datasets import is_available, load_dataset
    from ..tasks import parse_ids
    from .inputs import dataset_for

    name = dataset_for(prior_name, dataset)
    if not is_available(name):
        raise InputError(f"tuning needs the {name} validation split on disk: run `make data` first")
    images, _ = load_dataset(name, "val")
    return images, parse_ids(ids, limit=len(images))


def check_sweep(
    pairs: Sequence[tuple[str, str]], method_grids: dict[str, str], wrapper_grid: str
) -> tuple[dict[str, dict[str, list[object]]], dict[str, list[object]]]:
    """Refuse a mask task (the table keys on task names) or an unknown method; returns the parsed method grids and
    wrapper grid (:func:`parse_grid`)."""
    for task, method in pairs:
        if "/" in get_task(task).name:
            raise InputError(f"--task {task}: a mask file cannot be tuned (the table keys on task names)")
        method_class(method)
    grids = {m: parse_grid(g, fields=method_class(m).step_sizes) for m, g in method_grids.items()}
    wrapper = parse_grid(wrapper_grid)
    for m, grid in grids.items():
        _check_values("--method-grid", grid, partial(_method_values, m.split(":", 1)[0]))
    _check_values("--grid", wrapper, _wrapper_levels)
    return grids, wrapper


def _method_values(method: str, options: dict[str, Any]) -> None:
    """The method's config with ``options`` (its own checks)."""
    make_method(method, options)


def _wrapper_levels(options: dict[str, Any]) -> None:
    """The wrapper's config with ``options`` (its own checks) and its step counts within the chain."""
    cfg = ReGuidance().replace(**options)
    check_levels("inversion_steps", cfg.inversion_steps, t_end=cfg.t_end)
    check_levels("dps_steps", cfg.dps_steps, t_end=cfg.t_end)


def _check_values(flag: str, grid: dict[str, list[object]], build: Callable[[dict[str, Any]], object]) -> None:
    """Each value of ``grid`` on its own through ``build`` (a config's checks), before any work: a refused one is an
    ``InputError`` naming ``flag`` and ``FIELD=VALUE``."""
    for name, values in grid.items():
        for v in values:
            try:
                build({name: v})
            except (InputError, ValueError, TypeError) as err:
                raise InputError(f"{flag} {name}={v}: {' '.join(str(err).split())}") from err


def sweep(
    prior: Prior,
    images: Tensor,
    ids: Sequence[int],
    pairs: Sequence[tuple[str, str]],
    out: Path,
    *,
    protocol: str,
    method_grids: dict[str, dict[str, list[object]]],
    wrapper_grid: dict[str, list[object]],
    seed: int = 0,
    batch_size: int = 16,
    ablations: bool = False,
    sources: Sequence[Path] = (),
) -> list[Record]:
    """:func:`tune_pair` for every (task, method) of ``pairs`` not yet saved in ``out`` or ``sources``
    (:func:`run_sweep`), each from ``protocol``'s untuned defaults (with ``ablations``, every variant tuned); returns
    every entry of ``pairs``."""
    from .defaults import method_for, wrapper_for

    def run_pair(task: str, method: str) -> Record:
        return tune_pair(
            prior,
            images,
            task,
            method,
            ids,
            start=method_for(get_task(task), method, protocol, tuned=False),
            method_grid=method_grids.get(method),
            wrapper_grid=wrapper_grid,
            base=wrapper_for(get_task(task), method, protocol, tuned=False),
            seed=seed,
            batch_size=batch_size,
            ablations=ablations,
        )

    return run_sweep(pairs, out, run_pair, lambda entry: not ablations or "variants" in entry, sources)


def table_header(
    *,
    prior: str,
    protocol: str,
    ids: str,
    seed: int,
    batch_size: int,
    dtype: str,
    tasks: str,
    methods: str,
    ablations: bool = False,
) -> Record:
    """The header of a tuned table made by ``reguidance tune-defaults`` with these flags (``tasks`` and
    ``methods`` as typed): the command that remakes it, the rule, the grids and :data:`MAX_WIDEN`."""
    command = (
        f"reguidance tune-defaults --prior {prior} --protocol {protocol} --ids {ids} --seed {seed} "
        f"--batch-size {batch_size} --dtype {dtype} --tasks {tasks} --methods {methods}"
        + (" --ablations" if ablations else "")
    )
    names = [m.strip() for m in methods.split(",") if m.strip()]
    return {
        "protocol": protocol,
        "prior": prior,
        "split": "val",
        "ids": ids,
        "seed": seed,
        "rule": RULE,
        "dtype": dtype,
        "method_grids": {m: g for m, g in DEFAULT_METHOD_GRIDS.items() if m in names},
        "wrapper_grid": DEFAULT_WRAPPER_GRID,
        "max_widen": MAX_WIDEN,
        "grid_size": GRID_SIZE,
        "ablations": ablations,
        "command": command,
    }
