r"""The mechanism map: where does the inverted latent do what re-noising the candidate cannot?

ReGuidance starts DPS at level ``t_end`` from the probability-flow inversion of the candidate ``x_hat`` (start
``"inversion"``). Its two ablations start the same DPS at the same level from ``sqrt(ab) x_hat + sqrt(1 - ab) n``
(``"renoise"``: SDEdit, then DPS) or from ``n ~ N(0, I)`` (``"fresh"``), ``ab`` the level's ``alpha_bar``
(:class:`reguidance.wrapper.ReGuidance`). The map runs the three starts on the same problems, seeds and
measurements over a grid of ``t_end x sampler x inversion steps x inversion method x DPS budget``; per cell it
reports the paired, per-problem differences ``inversion - renoise`` and ``inversion - fresh`` of each metric, mean
with 95% Student-t interval (:func:`reguidance.evaluation.stats.paired_comparison`). ``renoise`` and ``fresh`` spend no
inversion evaluations and do not depend on the inversion's settings: they run once per
``(t_end, sampler, DPS budget)`` and are paired with every inversion cell that shares those.

Rows (one per cell and problem) carry the keys :data:`CELL_KEYS` (``inversion_steps`` and ``inversion_method`` are
``None`` for the ablations), ``id``, ``seed``, the metrics and ``nfe`` (the wrapper's network evaluations per
sample: inversion + DPS, the candidate's own not included). Each ``(prior, task, candidate_method)`` may add one
cell with ``start = "candidate"`` (every other cell key ``None``): the candidates' own metrics. The grid runner
here is for the exact-score mixture of ``reguidance theory`` (:func:`gmm_rows`, metrics ``reward`` and
``manifold_distance``); :func:`summarise`, :func:`format_markdown` and :func:`save_heatmap` take any rows with these
keys (an image map's rows carry e.g. ``ssim``, ``psnr``, ``reward``, ``consistency_raw``).

DPS budget: ``dps_steps`` levels of the chain from ``t_end`` to the data (``Schedule.spaced``). The 1000-level
chain holds only ``round(t_end * 999) + 1`` levels up to ``t_end``; a larger budget runs every one of them (the
rows' ``dps_steps_run``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..conventions import InputError
from ..evaluation.metrics import mean_ci95
from ..evaluation.stats import paired_comparison
from ..guidance.dps import Sampler
from ..inversion import InversionMethod, invert
from ..wrapper import ReGuidance, Start, reguide, reward
from .theory import TheoryConfig, make_testbed, problem_stream

__all__ = [
    "CELL_KEYS",
    "GMM_METRICS",
    "Cell",
    "MapGrid",
    "cell_key",
    "format_markdown",
    "gmm_rows",
    "run_gmm_map",
    "save_heatmap",
    "summarise",
]

Row = dict[str, Any]

#: the keys that name a cell of the map (a row adds ``id``, ``seed``, the metrics and ``nfe``)
CELL_KEYS = (
    "prior",
    "task",
    "candidate_method",
    "t_end",
    "sampler",
    "inversion_steps",
    "inversion_method",
    "dps_steps",
    "start",
)
#: the keys an inversion cell shares with the ablation cells it is paired with
PAIR_KEYS = ("prior", "task", "candidate_method", "t_end", "sampler", "dps_steps")
#: the starts an inversion cell is compared with
AGAINST = ("renoise", "fresh")
#: the mixture map's metrics, each with whether higher is better
GMM_METRICS: dict[str, bool] = {"reward": True, "manifold_distance": False}


def cell_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The cell a row belongs to: its values of :data:`CELL_KEYS`."""
    return tuple(row.get(k) for k in CELL_KEYS)


@dataclass(frozen=True)
class Cell:
    """One setting of the wrapper: a ``start`` at depth ``t_end`` followed by ``dps_steps`` DPS steps of
    ``sampler``; ``inversion_steps`` and ``inversion_method`` only for ``start == "inversion"`` (else ``None``)."""

    t_end: float
    sampler: Sampler
    dps_steps: int
    start: Start
    inversion_steps: int | None = None
    inversion_method: InversionMethod | None = None

    def config(self, step_size: float, eta: float = 0.0) -> ReGuidance:
        """The wrapper's options of this cell (the ablations keep the wrapper's default inversion settings, which
        they do not use)."""
        inv: dict[str, Any] = {}
        if self.start == "inversion":
            inv = {"inversion_steps": self.inversion_steps, "inversion_method": self.inversion_method}
        return ReGuidance().replace(
            t_end=self.t_end,
            sampler=self.sampler,
            dps_steps=self.dps_steps,
            start=self.start,
            step_size=step_size,
            eta=eta,
            **inv,
        )

    def facts(self) -> dict[str, Any]:
        return {
            "t_end": self.t_end,
            "sampler": self.sampler,
            "inversion_steps": self.inversion_steps,
            "inversion_method": self.inversion_method,
            "dps_steps": self.dps_steps,
            "start": self.start,
        }


@dataclass(frozen=True)
class MapGrid:
    """The axes of the map; the defaults are issue 19's grid (30 ablation cells, 270 inversion cells)."""

    t_end: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 1.0)
    sampler: tuple[Sampler, ...] = ("ddpm", "ddim")
    inversion_steps: tuple[int, ...] = (10, 50, 100)
    inversion_method: tuple[InversionMethod, ...] = ("euler", "heun", "fixed_point")
    dps_steps: tuple[int, ...] = (20, 100, 1000)

    def __post_init__(self) -> None:
        for axis in ("t_end", "sampler", "inversion_steps", "inversion_method", "dps_steps"):
            values = getattr(self, axis)
            if not values:
                raise InputError(f"the map's {axis} axis is empty; give at least one value")
            for v in values:
                ReGuidance().replace(**{axis: v})  # one check of each value: the wrapper's own

    def cells(self) -> list[Cell]:
        """Per ``(t_end, sampler, dps_steps)``: ``renoise``, ``fresh``, then every inversion setting."""
        out = []
        for t, s, d in itertools.product(self.t_end, self.sampler, self.dps_steps):
            out += [Cell(t, s, d, "renoise"), Cell(t, s, d, "fresh")]
            out += [
                Cell(t, s, d, "inversion", k, m)
                for k, m in itertools.product(self.inversion_steps, self.inversion_method)
            ]
        return out


def _levels_up_to(num_levels: int, t_end: float) -> int:
    """Levels of a ``num_levels`` chain from the data to ``t_end`` (``Schedule.spaced``'s last index + 1)."""
    return round(t_end * (num_levels - 1)) + 1


def gmm_rows(
    cfg: TheoryConfig,
    grid: MapGrid,
    *,
    done: set[tuple[Any, ...]] | None = None,
    progress: bool = False,
) -> Iterator[list[Row]]:
    """The mixture map, one cell at a time: yields the rows of the candidates' cell, then of every cell of
    ``grid`` whose key is not in ``done`` (:func:`cell_key`), on the problems of ``cfg``
    (:class:`reguidance.studies.theory.TheoryConfig`: testbed, candidates, ``step_size``, ``eta``, ``seed``).

    Every start of every cell draws from the same per-problem generators (stream 3 of ``cfg.seed``, as
    ``reguidance theory``'s ReGuidance row); an inversion is computed once per ``(t_end, steps, method)`` and reused
    by both samplers and every budget (the wrapper given the same ``latent`` runs the same DPS, bit for bit).
    """
    from tqdm.auto import tqdm

    done = done or set()
    tb = make_testbed(cfg)
    prior, op, y, cand = tb.prior, tb.operator, tb.y, tb.candidate
    task = f"matrix{cfg.measurements}x{cfg.dim}_sigma{cfg.noise:g}"
    method = f"{cfg.candidate}{cfg.candidate_steps}" if cfg.candidate == "dps" else cfg.candidate
    common = {"prior": f"gmm{cfg.dim}d{cfg.modes}k", "task": task, "candidate_method": method}

    def rows(facts: Mapping[str, Any], x: Tensor, nfe: int, extra: Mapping[str, Any]) -> list[Row]:
        r = reward(op, x, y)
        dist = tb.mixture.manifold_distance(x)
        out = []
        for i, pid in enumerate(tb.ids):
            row = {**common, **facts, "id": pid, "seed": cfg.seed, "reward": float(r[i])}
            row |= {"manifold_distance": float(dist[i]), "nfe": nfe}
            for k, v in extra.items():
                row[k] = float(v[i]) if isinstance(v, Tensor) else v
            out.append(row)
        return out

    cand_facts = dict.fromkeys(CELL_KEYS[3:]) | {"start": "candidate"}
    if cell_key(common | cand_facts) not in done:
        yield rows(cand_facts, cand, tb.candidate_nfe, {})
    cache: dict[tuple[Any, ...], tuple[Tensor, int]] = {}
    todo = [c for c in grid.cells() if cell_key(common | c.facts()) not in done]
    num_levels = len(prior.schedule)
    for cell in tqdm(todo, desc="mechanism map", disable=not progress):
        start = time.perf_counter()
        dps_run = min(cell.dps_steps, _levels_up_to(num_levels, cell.t_end))
        config = cell.config(cfg.reguidance.step_size, cfg.reguidance.dps.eta).replace(dps_steps=dps_run)
        latent, nfe_inv = None, 0
        if cell.start == "inversion":
            key = (cell.t_end, cell.inversion_steps, cell.inversion_method)
            if key not in cache:
                inv = invert(
                    prior, cand, prior.schedule, steps=config.inversion_steps, t_end=cell.t_end,
                    method=config.inversion_method,
                )  # fmt: skip
                cache[key] = (inv.latent.clone(), inv.nfe)
            latent, nfe_inv = cache[key]
        out = reguide(cand, y, op, prior, config=config, rng=problem_stream(cfg, 3, tb.ids), latent=latent)
        moved = (out.latent - cand).norm(dim=1) / cand.norm(dim=1)  # how far the start is from the candidate
        seconds = time.perf_counter() - start
        extra = {"dps_steps_run": dps_run, "latent_change_rel": moved, "cell_seconds": round(seconds, 4)}
        yield rows(cell.facts(), out.x, nfe_inv + out.nfe, extra)


def run_gmm_map(out: str | Path, cfg: TheoryConfig, grid: MapGrid, progress: bool = False) -> list[Row]:
    """Run the mixture map into the folder ``out``, resumably, and return all its rows.

    ``out/config.json`` holds the configuration (``cfg`` and ``grid``); a folder made with another is refused
    (:class:`reguidance.conventions.InputError`, before anything is written). ``out/rows.jsonl`` gets the rows of
    each cell in one write as the cell finishes; a rerun skips every cell that holds a row for each problem (a torn
    last line, from a kill, is dropped). One process at a time (:func:`reguidance.app.runs.hold_folder`).
    """
    from dataclasses import asdict

    from ..app.runs import describe_difference, hold_folder
    from ..io.files import append_rows, atomic_write_json, drop_torn_tail, read_rows

    out = Path(out)
    facts = json.loads(json.dumps({"theory": cfg.facts(), "grid": asdict(grid)}))
    facts_path, log_path = out / "config.json", out / "rows.jsonl"
    if facts_path.exists():
        old = json.loads(facts_path.read_text())
        if old != facts:
            raise InputError(f"{out} holds another map ({describe_difference(old, facts)}); choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    with hold_folder(out):
        if not facts_path.exists():
            atomic_write_json(facts_path, facts)
        drop_torn_tail(log_path)
        counts: dict[tuple[Any, ...], int] = defaultdict(int)
        for r in read_rows(log_path, required=(*CELL_KEYS, "id", "seed")):
            counts[cell_key(r)] += 1
        done = {k for k, c in counts.items() if c >= cfg.candidates}
        with log_path.open("a") as log:
            for rows in gmm_rows(cfg, grid, done=done, progress=progress):
                append_rows(log, rows)
        return read_rows(log_path)


def summarise(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, bool]) -> dict[str, Any]:
    """Per inversion cell: ``n`` (problems paired), the mean of each metric (95% interval) for each start, and
    ``minus_<against>``: the paired difference of each metric, inversion minus ``renoise`` / ``fresh`` of the same
    ``(prior, task, candidate_method, t_end, sampler, dps_steps)``, on the problems ``(id, seed)`` all of them hold.
    A cell needs its ``renoise`` twin; one whose ``fresh`` twin is not run yet (a map cut short: the map runs fresh
    noise last at the larger budgets) has no ``minus_fresh`` and no ``fresh`` means.
    ``metrics`` maps each metric to whether higher is better (for the win rates). A row repeated (a cell rerun
    after a torn write) counts once, the last copy. Returns ``{"cells": [...], "candidates": [...]}``.
    """
    by_cell: dict[tuple[Any, ...], dict[tuple[Any, Any], Mapping[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_cell[cell_key(r)][(r["id"], r["seed"])] = r
    start_at = CELL_KEYS.index("start")
    pair_at = [CELL_KEYS.index(k) for k in PAIR_KEYS]
    ablation = {(tuple(key[i] for i in pair_at), key[start_at]): probs for key, probs in by_cell.items()}

    def means(probs: Mapping[Any, Mapping[str, Any]], ids: Sequence[Any]) -> dict[str, Any]:
        return {m: mean_ci95([float(probs[i][m]) for i in ids]) for m in metrics}

    cells, candidates = [], []
    for key, probs in by_cell.items():
        facts = dict(zip(CELL_KEYS, key, strict=True))
        if facts["start"] == "candidate":
            ids = sorted(probs, key=str)
            candidates.append({k: facts[k] for k in CELL_KEYS[:3]} | {"n": len(ids), "means": means(probs, ids)})
            continue
        if facts["start"] != "inversion":
            continue
        entry: dict[str, Any] = {k: facts[k] for k in CELL_KEYS if k != "start"}
        found = {a: ablation.get((tuple(key[i] for i in pair_at), a)) for a in AGAINST}
        if found[AGAINST[0]] is None:  # no cell without its re-noised twin; fresh noise may still be to come
            continue
        others = {a: o for a, o in found.items() if o is not None}
        ids = [i for i in sorted(probs, key=str) if all(i in o for o in others.values())]
        if not ids:
            continue
        entry["n"] = len(ids)
        entry["nfe"] = {"inversion": probs[ids[0]]["nfe"]}
        entry["means"] = {"inversion": means(probs, ids)}
        for a, o in others.items():
            entry["nfe"][a] = o[ids[0]]["nfe"]
            entry["means"][a] = means(o, ids)
            entry[f"minus_{a}"] = {
                m: paired_comparison(
                    torch.tensor([float(probs[i][m]) for i in ids]), torch.tensor([float(o[i][m]) for i in ids]), h
                )
                for m, h in metrics.items()
            }
        cells.append(entry)
    order = (
        "prior",
        "task",
        "candidate_method",
        "sampler",
        "dps_steps",
        "t_end",
        "inversion_steps",
        "inversion_method",
    )
    cells.sort(key=lambda e: tuple(str(e[k]) if isinstance(e[k], str) else e[k] for k in order))
    return {"cells": cells, "candidates": candidates}


def _sign(d: Mapping[str, Any]) -> str:
    lo, hi = d["ci95"]
    return "▲" if lo > 0 else "▼" if hi < 0 else ""


def _ci(d: Mapping[str, Any], fmt: str) -> str:
    return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]"


def counts(entries: Sequence[Mapping[str, Any]], metrics: Mapping[str, bool], against: str) -> dict[str, Any]:
    """How many cells call the inversion better / worse than ``against`` on each metric (95% interval clear of 0 in
    the better / worse direction), and the cells better on the first metric and not worse on any other."""
    entries = [e for e in entries if f"minus_{against}" in e]  # cells whose ``against`` twin has run
    out: dict[str, Any] = {"cells": len(entries)}
    first = next(iter(metrics))

    def call(e: Mapping[str, Any], m: str) -> int:
        lo, hi = e[f"minus_{against}"][m]["ci95"]
        sign = 1 if lo > 0 else -1 if hi < 0 else 0
        return sign if metrics[m] else -sign

    for m in metrics:
        out[m] = {"better": sum(call(e, m) > 0 for e in entries), "worse": sum(call(e, m) < 0 for e in entries)}
    out["wins"] = [e for e in entries if call(e, first) > 0 and all(call(e, m) >= 0 for m in metrics)]
    return out


def format_markdown(summary: Mapping[str, Any], metrics: Mapping[str, bool], fmt: str = "+.3f") -> str:
    """``summary`` (:func:`summarise`) as Markdown: per ``(prior, task, candidate_method)`` and metric, a compact
    table (rows ``sampler, DPS budget, t_end``; columns the inversion settings; each cell the paired mean of
    inversion minus renoise, ▲ / ▼ when its 95% interval lies above / below 0), the same against fresh, and the
    ablations' own means; then every cell in full (means and both paired differences with intervals)."""
    lines: list[str] = []
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for e in summary["cells"]:
        groups[(e["prior"], e["task"], e["candidate_method"])].append(e)
    for (prior, task, cm), entries in groups.items():
        invs = sorted({(e["inversion_steps"], e["inversion_method"]) for e in entries}, key=str)
        invs.sort(key=lambda v: v[0])
        rows = sorted({(e["sampler"], e["dps_steps"], e["t_end"]) for e in entries})
        at = {
            (e["sampler"], e["dps_steps"], e["t_end"], e["inversion_steps"], e["inversion_method"]): e for e in entries
        }
        n = sorted({e["n"] for e in entries})
        lines += [f"### {prior}, {task}, candidate {cm} (n = {', '.join(map(str, n))} problems per cell)", ""]
        for c in summary.get("candidates", []):
            if (c["prior"], c["task"], c["candidate_method"]) == (prior, task, cm):
                lines += ["Candidates: " + "; ".join(f"{m} {_ci(v, '.3g')}" for m, v in c["means"].items()) + ".", ""]
        for against in AGAINST:
            tally = counts(entries, metrics, against)
            calls = "; ".join(f"{m} better in {tally[m]['better']}, worse in {tally[m]['worse']}" for m in metrics)
            first = next(iter(metrics))
            lines += [
                f"Inversion vs {against}, of {tally['cells']} cells: {calls}; {first} better and nothing worse in "
                f"{len(tally['wins'])}.",
                "",
            ]
        for m, higher in metrics.items():
            for against in AGAINST:
                better = "higher" if higher else "lower"
                lines += [
                    f"**{m}, inversion − {against}** (paired mean; ▲ / ▼ interval above / below 0; {better} is better)",
                    "",
                    "| sampler | DPS budget | t_end | " + " | ".join(f"{k} {meth}" for k, meth in invs) + " |",
                    "|---|---|---|" + "---|" * len(invs),
                ]
                for s, d, t in rows:
                    cells = []
                    for k, meth in invs:
                        diff = (at.get((s, d, t, k, meth)) or {}).get(f"minus_{against}")
                        cells.append("—" if diff is None else f"{diff[m]['mean']:{fmt}}{_sign(diff[m])}")
                    lines.append(f"| {s} | {d} | {t:g} | " + " | ".join(cells) + " |")
                lines.append("")
        lines += [
            "**The ablations' own means** (they do not depend on the inversion settings)",
            "",
            "| sampler | DPS budget | t_end | "
            + " | ".join(f"{m}: {a}" for m in metrics for a in AGAINST)
            + " | NFE |",
            "|---|---|---|" + "---|" * (len(metrics) * len(AGAINST) + 1),
        ]
        for s, d, t in rows:
            e = next(e for e in entries if (e["sampler"], e["dps_steps"], e["t_end"]) == (s, d, t))
            cells = [_ci(e["means"][a][m], ".3g") if a in e["means"] else "—" for m in metrics for a in AGAINST]
            lines.append(f"| {s} | {d} | {t:g} | " + " | ".join(cells) + f" | {e['nfe'][AGAINST[0]]} |")
        lines += ["", "<details><summary>Every cell, with intervals</summary>", ""]
        head = ["sampler", "DPS", "t_end", "inv. steps", "inv. method", "NFE"]
        for m in metrics:
            head += [f"{m}: inversion", f"{m}: inv − renoise", f"{m}: inv − fresh"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for e in entries:
            cells = [e["sampler"], str(e["dps_steps"]), f"{e['t_end']:g}", str(e["inversion_steps"])]
            cells += [str(e["inversion_method"]), str(e["nfe"]["inversion"])]
            for m in metrics:
                cells += [_ci(e["means"]["inversion"][m], ".3g")]
                cells += [
                    _ci(e[f"minus_{a}"][m], fmt) + _sign(e[f"minus_{a}"][m]) if f"minus_{a}" in e else "—"
                    for a in AGAINST
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def save_heatmap(
    summary: Mapping[str, Any],
    path: str | Path,
    metrics: Mapping[str, bool],
    against: str = "renoise",
    title: str | None = None,
) -> Path:
    """A heat map of inversion minus ``against`` for each metric: one panel per ``(metric, sampler)`` (rows) and
    DPS budget (columns), ``t_end`` down, the inversion settings across; colour = the paired mean, green where the
    inversion is better (higher for a metric with ``metrics[m] = True``, lower otherwise), one symmetric scale per
    metric; hatched where the 95% interval contains 0. Cells of every ``(prior, task, candidate_method)`` in
    ``summary`` are drawn together, so pass one such group at a time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    entries = [e for e in summary["cells"] if f"minus_{against}" in e]
    if not entries:
        raise InputError(f"the summary holds no inversion cell with its {against} twin to draw")
    samplers = sorted({e["sampler"] for e in entries})
    budgets = sorted({e["dps_steps"] for e in entries})
    depths = sorted({e["t_end"] for e in entries})
    invs = sorted({(e["inversion_steps"], e["inversion_method"]) for e in entries}, key=lambda v: (v[0], str(v[1])))
    at = {(e["sampler"], e["dps_steps"], e["t_end"], e["inversion_steps"], e["inversion_method"]): e for e in entries}
    panel_rows = [(m, s) for m in metrics for s in samplers]
    fig, axes = plt.subplots(
        len(panel_rows),
        len(budgets),
        figsize=(
            max(7.0, 1.0 + 0.55 * len(invs) * len(budgets)),
            max(1.6 * len(panel_rows), 0.5 + 0.42 * len(depths) * len(panel_rows)),
        ),
        squeeze=False,
        constrained_layout=True,
    )
    for m, higher in metrics.items():
        vals = [e[f"minus_{against}"][m]["mean"] for e in entries]
        vmax = max(abs(v) for v in vals) or 1.0
        cmap = "PiYG" if higher else "PiYG_r"
        image = None
        for r, (mm, s) in enumerate(panel_rows):
            if mm != m:
                continue
            for c, d in enumerate(budgets):
                ax = axes[r][c]
                grid = torch.full((len(depths), len(invs)), float("nan"))
                for i, t in enumerate(depths):
                    for j, (k, meth) in enumerate(invs):
                        e = at.get((s, d, t, k, meth))
                        if e is None:
                            continue
                        diff = e[f"minus_{against}"][m]
                        grid[i, j] = diff["mean"]
                        lo, hi = diff["ci95"]
                        if lo <= 0 <= hi:
                            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0))
                        ax.text(j, i, f"{diff['mean']:+.2g}", ha="center", va="center", fontsize=5.5)
                image = ax.imshow(grid.numpy(), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
                ax.set_xticks(range(len(invs)), [f"{k} {str(meth)[:5]}" for k, meth in invs], rotation=90, fontsize=6)
                ax.set_yticks(range(len(depths)), [f"{t:g}" for t in depths], fontsize=7)
                ax.set_title(f"{m}, {s}, DPS {d}", fontsize=8)
                if c == 0:
                    ax.set_ylabel("t_end", fontsize=7)
        if image is not None:
            rows_of_m = [axes[r][c] for r, (mm, _) in enumerate(panel_rows) if mm == m for c in range(len(budgets))]
            bar = fig.colorbar(image, ax=rows_of_m, shrink=0.8)
            bar.set_label(f"{m}: inversion − {against}", fontsize=7)
    fig.suptitle(
        title or f"inverted latent minus {against} (paired means; hatched: 95% interval contains 0)", fontsize=9
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
