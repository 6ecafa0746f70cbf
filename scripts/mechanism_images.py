"""The mechanism map on images (issue 19, item 1): inverted latent vs re-noised candidate vs fresh noise.

For held-out test images of an embedded prior (default MNIST ids 9800:9832, outside the benchmark's 0:50), the
benchmark's tasks (default ``sr8``, ``box20``) and candidate methods (default ``dps``, ``daps``) at the CPU
protocol's tuned options (``--protocol cpu``: starved candidates) or at their reference budgets (``--protocol
reference``: DPS 1000, DAPS 200 x 5 x 100, the primary table's candidates), the same DPS is started at level ``t_end``
from three latents
(:class:`reguidance.wrapper.ReGuidance` ``start``):

- ``inversion``: the candidate carried to ``t_end`` by the probability-flow ODE (ReGuidance);
- ``renoise``: ``sqrt(ab) x_hat + sqrt(1 - ab) n`` (SDEdit + DPS; no inversion, so run once per
  ``(t_end, sampler, dps_steps)``, with ``inversion_steps`` null in its rows);
- ``fresh``: ``n ~ N(0, I)`` at ``t_end`` (DPS over the same levels, no candidate).

Grid (``--t-ends``, ``--samplers``, ``--inversion-steps``, ``--dps-steps``; default ``t_end`` {0.3, 0.7, 1.0} x
sampler {ddpm, ddim} x inversion steps {10, 100} x DPS steps {20, 100}). Cells run in this order, so that a run
cut short has answered the decisive comparisons first: the extreme depths (smallest and largest ``t_end``) before
the middle ones; within them, first the CPU protocol's corner (fewest inversion and DPS steps, all three starts),
then the fine corner (most inversion and DPS steps; inversion and renoise), then the rest (mixed budgets, fresh
noise at the larger DPS budgets); within each, the settings where the inverted latent beat re-noising on the
exact-score mixture (DDPM at the shallowest depth, DDIM at the deepest) first; then by DPS budget, depth, sampler,
inversion budget (re-noising first), task, method and start.

The wrapper's ``step_size`` (DPS's zeta, on the measurement's scale) is the tuned CPU-protocol value of the
(task, method) (:func:`reguidance.bench.defaults.wrapper_for`, clipping on, Euler inversion,
``eta`` 0) and is recorded in every row; only ``t_end``, ``sampler``, ``inversion_steps``, ``dps_steps`` and
``start`` change across cells.

Measurements, candidates and random streams are the benchmark's (:mod:`reguidance.bench.runner`): ground truths
``images[ids]`` in [-1, 1], ``(operator, y) = task.measure(truth, ids, seed, split="test")``, candidates from
``solve(method_for(task, method, "cpu"), Problem(prior, operator, y, method_rng(seed, task, method, ids)))``, the
wrapper with ``rng = wrapper_rng(seed, task, method, ids)`` (so a ``renoise`` cell at the tuned ``t_end`` with 20
DDPM steps is the benchmark's ``renoise`` variant). Candidates are made once per (task, method, id) and cached in
``OUT/candidates/<task>/<method>/<id>.pt`` (``x``, ``raw``, ``y``, ``nfe``, ``seconds``) for every cell to reuse.
``--candidates-from BENCH`` takes them from a ``reguidance bench`` folder instead, bit for bit, when that run's
facts (prior, seed, split, protocol, task definition, method options, float32) are this map's (else it is refused,
naming the fact): reference-budget candidates cost 15-30 s per MNIST image on a CPU core, and the primary table's
folder holds them already (those images are then the primary table's, not held out).

Rows go to ``OUT/rows.jsonl``, one per (cell, image), appended and synced after each batch
(:func:`reguidance.io.files.append_rows`): ``prior, task, candidate_method, start, t_end, sampler, inversion_steps,
inversion_method, dps_steps, step_size, eta, clip, id, seed, label, ssim, psnr, reward`` (``-||y - A x||^2``),
``consistency`` (``||A x - y|| / (sigma_y sqrt(m))`` of the clamped output), ``consistency_raw`` (before the clamp),
``nfe`` and ``seconds`` (the wrapper's own network evaluations and wall seconds per image; the candidate's are in
``candidate_nfe`` and in its own row), ``load1`` (the machine's 1-minute load average as the row was written).
Each image's candidate has one row with ``start = "candidate"``. The clamped outputs of each batch are kept as
float16 in ``OUT/outputs/`` (for realism metrics later). A rerun skips every (cell, id) already in the file and
ignores a torn last line; ``OUT/config.json`` holds the facts the rows
depend on (prior, seed, options) and a rerun with other facts is refused.

Usage (one CPU thread, stopping cleanly between batches after 90 minutes; rerun the same line to resume)::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/mechanism_images.py --threads 1 --limit-minutes 90

The map at the primary table's candidates (reference budgets, ids of that table; one process per task)::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/mechanism_images.py --protocol reference --ids 0:32 \
        --candidates-from runs/study/reference/mnist --out runs/mechanism/mnist-reference --tasks sr8

``--tiny`` (2 images, 2-3 step budgets for candidates and cells) is for tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from filelock import FileLock
from torch import Tensor
from tqdm.auto import tqdm

from reguidance.app.methods import METHODS
from reguidance.bench.defaults import method_for, wrapper_for
from reguidance.bench.records import read_all_results, variant_of
from reguidance.bench.runner import load_candidates
from reguidance.conventions import InputError, check_positive_int, check_seed, check_threads
from reguidance.evaluation.metrics import psnr, ssim
from reguidance.guidance.solve import Method, Problem, solve
from reguidance.io.datasets import load_dataset
from reguidance.io.files import (
    append_rows,
    atomic_path,
    atomic_write_json,
    drop_torn_tail,
    read_json_object,
    read_rows,
)
from reguidance.priors import load_prior
from reguidance.tasks import get_task, method_rng, parse_ids, wrapper_rng
from reguidance.wrapper import ReGuidance, reguide, reward

Row = dict[str, Any]
StartName = Literal["inversion", "renoise", "fresh"]  # ReGuidance.start
SamplerName = Literal["ddpm", "ddim"]  # ReGuidance.sampler
ABLATION_STARTS: tuple[StartName, ...] = ("renoise", "fresh")
#: the budgets and options the candidates and the wrapper's step size come from (:mod:`reguidance.bench.defaults`)
PROTOCOLS = ("cpu", "reference")


@dataclass(frozen=True)
class Grid:
    """The cell grid, each tuple in priority order (first = run first)."""

    t_ends: tuple[float, ...]
    samplers: tuple[SamplerName, ...]
    inversion_steps: tuple[int, ...]
    dps_steps: tuple[int, ...]


TINY = Grid(t_ends=(0.3, 1.0), samplers=("ddpm", "ddim"), inversion_steps=(2, 3), dps_steps=(2, 3))
#: candidate budgets under --tiny (on top of the tuned options: step sizes stay)
TINY_BUDGETS: dict[str, dict[str, int]] = {
    "dps": {"steps": 3},
    "daps": {"steps": 2, "ode_steps": 1, "langevin_steps": 2},
}


@dataclass(frozen=True)
class Cell:
    """One setting of the wrapper on one (task, candidate method); ``inversion_steps`` is None unless ``start`` is
    ``inversion``."""

    task: str
    method: str
    start: StartName
    t_end: float
    sampler: SamplerName
    inversion_steps: int | None
    dps_steps: int

    def key(self) -> tuple[object, ...]:
        return (self.task, self.method, self.start, self.t_end, self.sampler, self.inversion_steps, self.dps_steps)


def row_key(row: Row) -> tuple[object, ...]:
    """The (cell, id) a row answers; candidate rows have ``start == "candidate"`` and null cell fields."""
    fields = ("task", "candidate_method", "start", "t_end", "sampler", "inversion_steps", "dps_steps", "id")
    return tuple(row.get(f) for f in fields)


def cells(tasks: Sequence[str], methods: Sequence[str], grid: Grid) -> list[Cell]:
    """Every cell of ``grid`` in run order, most informative first (see the module docstring)."""
    every = [
        Cell(task, m, "inversion", t, s, k, d)
        for d in grid.dps_steps
        for k in grid.inversion_steps
        for t in grid.t_ends
        for s in grid.samplers
        for task in tasks
        for m in methods
    ] + [
        Cell(task, m, start, t, s, None, d)
        for d in grid.dps_steps
        for t in grid.t_ends
        for s in grid.samplers
        for task in tasks
        for m in methods
        for start in ABLATION_STARTS
    ]
    lo_t, hi_t = min(grid.t_ends), max(grid.t_ends)
    lo_k, hi_k = min(grid.inversion_steps), max(grid.inversion_steps)
    lo_d, hi_d = min(grid.dps_steps), max(grid.dps_steps)

    def tier(c: Cell) -> int:
        """0: the CPU protocol's corner (fewest steps, all three starts); 1: the fine corner (most inversion and
        DPS steps: inversion and renoise); 2: the rest (mixed budgets, fresh noise at the larger budgets)."""
        if c.dps_steps == lo_d and c.inversion_steps in (None, lo_k):
            return 0
        if c.dps_steps == hi_d and c.inversion_steps in (None, hi_k) and c.start != "fresh":
            return 1
        return 2

    def favoured(c: Cell) -> int:
        """0 where the inverted latent beat re-noising on the exact-score mixture (DDPM shallow, DDIM deep)."""
        return 0 if (c.sampler == "ddpm" and c.t_end == lo_t) or (c.sampler == "ddim" and c.t_end == hi_t) else 1

    def order(c: Cell) -> tuple[object, ...]:
        return (
            c.t_end not in (lo_t, hi_t),  # middle depths last
            tier(c),
            favoured(c),
            grid.dps_steps.index(c.dps_steps),
            grid.t_ends.index(c.t_end),
            grid.samplers.index(c.sampler),
            grid.inversion_steps.index(c.inversion_steps) if c.inversion_steps is not None else -1,
            tasks.index(c.task),
            methods.index(c.method),
            ("inversion", "renoise", "fresh").index(c.start),
        )

    return sorted(every, key=order)


class Study:
    """The run folder, its rows and candidates, and the prior and images they come from."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.seed: int = args.seed
        self.prior_name: str = args.prior
        self.protocol: str = args.protocol
        self.source: Path | None = args.candidates_from
        self.rows_path = self.out / "rows.jsonl"
        drop_torn_tail(self.rows_path)
        self.done = {row_key(r) for r in read_rows(self.rows_path, ("task", "start", "id"))}
        images, labels = load_dataset(self.prior_name, "test")
        self.images, self.labels = images, labels
        self.prior = load_prior(self.prior_name)
        self.device = torch.device("cpu")

    # --------------------------------------------------------------------------------- options and facts
    def method(self, task: str, method: str) -> Method:
        """The candidate method's config, as the benchmark's (:func:`reguidance.bench.defaults.method_for`)."""
        overrides = TINY_BUDGETS.get(method, {}) if self.args.tiny else {}
        return method_for(get_task(task), method, self.protocol, prior=self.prior_name, overrides=overrides)

    def method_options(self, task: str, method: str) -> dict[str, object]:
        return self.method(task, method).options()

    def wrapper_base(self, task: str, method: str) -> ReGuidance:
        return wrapper_for(get_task(task), method, self.protocol, prior=self.prior_name)

    def facts(self) -> dict[str, Any]:
        """What the rows depend on besides their own keys."""
        return {
            "prior": self.prior_name,
            "seed": self.seed,
            "protocol": self.protocol,
            "tiny": bool(self.args.tiny),
            "candidates_from": None if self.source is None else str(self.source),
            "runs": {
                f"{t}/{m}": {
                    "task": get_task(t).definition(),
                    "method_options": self.method_options(t, m),
                    "wrapper": self.wrapper_base(t, m).options(),
                }
                for t in self.args.tasks
                for m in self.args.methods
            },
        }

    def check_and_write_config(self) -> None:
        """Refuse a folder whose rows were made with other facts; then record the union of both."""
        path = self.out / "config.json"
        new = self.facts()
        if path.is_file():
            old = json.loads(path.read_text())
            for k in ("prior", "seed", "protocol", "tiny"):
                if old.get(k) != new[k]:
                    raise InputError(
                        f"{self.out} holds rows made with {k}={old.get(k)!r}, not {new[k]!r}: use another --out"
                    )
            for name, facts in new["runs"].items():
                if name in old.get("runs", {}) and old["runs"][name] != json.loads(json.dumps(facts)):
                    raise InputError(f"{self.out} holds {name} rows made with other options: use another --out")
            new["runs"] = {**old.get("runs", {}), **new["runs"]}
        new["command"] = " ".join(sys.argv)
        atomic_write_json(path, new)

    # --------------------------------------------------------------------------------- candidates
    def _candidate_file(self, task: str, method: str, i: int) -> Path:
        return self.out / "candidates" / task / method / f"{i:05d}.pt"

    def candidates(self, task: str, method: str, ids: list[int]) -> dict[str, Any]:
        """The cached candidates of ``ids`` (made now, as the benchmark makes them, for those not cached), their
        measurement and operator; writes the candidate rows that are missing."""
        t = get_task(task)
        missing = [i for i in ids if not self._candidate_file(task, method, i).is_file()]
        if missing and self.source is not None:
            self.import_candidates(task, method, missing)
            missing = [i for i in missing if not self._candidate_file(task, method, i).is_file()]
        if missing:
            truth = self.images[missing].to(self.device)
            operator, y = t.measure(truth, missing, self.seed, split="test")
            rng = method_rng(self.seed, t.name, method, missing, device=self.device)
            t0 = time.perf_counter()
            out = solve(self.method(task, method), Problem(self.prior, operator, y, rng))
            seconds = (time.perf_counter() - t0) / len(missing)
            raw = out.x.detach()
            for k, i in enumerate(missing):
                blob = {"x": raw[k].clamp(-1, 1).clone(), "raw": raw[k].clone(), "y": y[k].clone()}
                with atomic_path(self._candidate_file(task, method, i)) as tmp:
                    torch.save({**blob, "nfe": int(out.nfe), "seconds": seconds}, tmp)
        blobs = [torch.load(self._candidate_file(task, method, i)) for i in ids]
        truth = self.images[ids].to(self.device)
        operator = t.operator(ids, self.seed, tuple(truth.shape[1:]), split="test").to(self.device)
        got: dict[str, Any] = {
            "truth": truth,
            "operator": operator,
            "y": torch.stack([b["y"] for b in blobs]),
            "x": torch.stack([b["x"] for b in blobs]),
            "raw": torch.stack([b["raw"] for b in blobs]),
            "nfe": int(blobs[0]["nfe"]),
        }
        todo = [k for k, i in enumerate(ids) if ("candidate_row", task, method, i) not in self._candidate_rows_done()]
        if todo:
            sel = torch.tensor(todo)
            rows = self._rows(
                [ids[k] for k in todo],
                {"task": task, "candidate_method": method, "start": "candidate", **self._method_fields(task, method)},
                got["x"][sel],
                got["raw"][sel],
                got["truth"][sel],
                got["y"][sel],
                t.operator([ids[k] for k in todo], self.seed, tuple(truth.shape[1:]), split="test"),
                [int(blobs[k]["nfe"]) for k in todo],
                [float(blobs[k]["seconds"]) for k in todo],
            )
            self._append(rows)
        return got

    def bench_run(self, task: str, method: str) -> dict[str, Any]:
        """The ``--candidates-from`` bench folder's record of (``task``, ``method``), checked to hold candidates made
        exactly as this map would make them (prior, seed, split, protocol, task definition, method options,
        float32); an :class:`InputError` names the first fact that differs."""
        assert self.source is not None
        path = self.source / "config.json"
        runs = read_json_object(path, ("protocol", "runs"))["runs"]
        if not isinstance(runs, list) or not all(isinstance(e, dict) for e in runs):
            raise InputError(f"--candidates-from {self.source}: {path} is not a bench run's configuration")
        name = get_task(task).name
        entries = [e for e in runs if e.get("task") == name and e.get("method") == method]
        if not entries:
            raise InputError(f"--candidates-from {self.source}: it holds no {name}/{method} candidates")
        entry = entries[0]
        want = {
            "prior": self.prior_name,
            "seed": self.seed,
            "split": "test",
            "protocol": self.protocol,
            "dtype": "fp32",
            "task": get_task(task).definition(),
            "method_options": self.method_options(task, method),
        }
        facts = entry.get("facts", {})
        for key, value in json.loads(json.dumps(want)).items():
            if facts.get(key) != value:
                raise InputError(
                    f"--candidates-from {self.source}: its {name}/{method} candidates were made with "
                    f"{key}={facts.get(key)!r}, this map makes them with {value!r}"
                )
        return dict(entry)

    def import_candidates(self, task: str, method: str, ids: list[int]) -> None:
        """Cache, as this map's own candidate files, those of ``ids`` the bench folder kept (``x`` and ``raw`` bit
        for bit; ``nfe`` and seconds per image from its candidate rows; ``y`` measured again, as the bench measured
        it: the same per-image draws). Ids the bench lacks are left for :meth:`candidates` to make."""
        assert self.source is not None
        entry = self.bench_run(task, method)
        run = str(entry["identity"])
        t = get_task(task)
        rows = {
            int(r["id"]): r
            for r in read_all_results(self.source)
            if r.get("run") == run and r.get("method") == method and variant_of(r) == "candidate"
        }
        for i in ids:
            kept = load_candidates(self.source, t.name, method, [i], run, self.device) if i in rows else None
            if kept is None:
                continue
            truth = self.images[[i]].to(self.device)
            _, y = t.measure(truth, [i], self.seed, split="test")
            blob = {"x": kept[0][0].clone(), "raw": kept[1][0].clone(), "y": y[0].clone()}
            row = rows[i]
            with atomic_path(self._candidate_file(task, method, i)) as tmp:
                torch.save({**blob, "nfe": int(row["nfe"]), "seconds": float(row["sec_per_image"])}, tmp)

    def _candidate_rows_done(self) -> set[tuple[object, ...]]:
        return {("candidate_row", k[0], k[1], k[7]) for k in self.done if k[2] == "candidate"}

    def _method_fields(self, task: str, method: str) -> Row:
        return {"method_options": self.method_options(task, method)}

    # --------------------------------------------------------------------------------- rows
    def _rows(
        self,
        ids: list[int],
        fields: Row,
        x: Tensor,
        raw: Tensor,
        truth: Tensor,
        y: Tensor,
        operator: Any,
        nfe: list[int],
        seconds: list[float],
    ) -> list[Row]:
        with torch.no_grad():
            p, s = psnr(x, truth), ssim(x, truth)
            rew = reward(operator, x, y)
            cons, cons_raw = operator.consistency(x, y), operator.consistency(raw, y)
        load = round(os.getloadavg()[0], 2)  # the machine is shared: seconds mean little without it
        rows = []
        for k, i in enumerate(ids):
            rows.append(
                {
                    "prior": self.prior_name,
                    "t_end": None,
                    "sampler": None,
                    "inversion_steps": None,
                    "dps_steps": None,
                    **fields,
                    "id": int(i),
                    "seed": self.seed,
                    "label": int(self.labels[i]),
                    "ssim": float(s[k]),
                    "psnr": float(p[k]),
                    "reward": float(rew[k]),
                    "consistency": float(cons[k]),
                    "consistency_raw": float(cons_raw[k]),
                    "nfe": nfe[k],
                    "seconds": seconds[k],
                    "load1": load,
                }
            )
        return rows

    def _append(self, rows: list[Row]) -> None:
        """Append ``rows`` under a lock on the rows file, so processes given disjoint ``--tasks`` / ``--methods``
        can share one folder (each skips only the rows it has seen; give them disjoint cells)."""
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.rows_path.with_name(self.rows_path.name + ".lock")), self.rows_path.open("a") as log:
            append_rows(log, rows)
        self.done |= {row_key(r) for r in rows}

    def todo(self, cell: Cell, ids: Sequence[int]) -> list[int]:
        return [i for i in ids if (*cell.key(), i) not in self.done]

    def run_cell(self, cell: Cell, ids: list[int]) -> float:
        """Run ``cell`` on ``ids`` (one batch), append its rows; returns the wrapper's wall seconds."""
        got = self.candidates(cell.task, cell.method, ids)
        base = self.wrapper_base(cell.task, cell.method)
        cfg = base.replace(
            start=cell.start,
            t_end=cell.t_end,
            sampler=cell.sampler,
            dps_steps=cell.dps_steps,
            inversion_steps=base.inversion_steps if cell.inversion_steps is None else cell.inversion_steps,
        )
        rng = wrapper_rng(self.seed, get_task(cell.task).name, cell.method, ids, device=self.device)
        t0 = time.perf_counter()
        rg = reguide(got["x"], got["y"], got["operator"], self.prior, config=cfg, rng=rng)
        seconds = time.perf_counter() - t0
        x = rg.x.detach().clamp(-1, 1)
        fields = {
            "task": cell.task,
            "candidate_method": cell.method,
            "start": cell.start,
            "t_end": cell.t_end,
            "sampler": cell.sampler,
            "inversion_steps": cell.inversion_steps,
            "inversion_method": cfg.inversion_method if cell.start == "inversion" else None,
            "dps_steps": cell.dps_steps,
            "step_size": cfg.step_size,
            "eta": cfg.dps.eta,
            "clip": cfg.clip,
            "candidate_nfe": got["nfe"],
        }
        n = len(ids)
        rows = self._rows(
            ids, fields, x, rg.x.detach(), got["truth"], got["y"], got["operator"], [rg.nfe] * n, [seconds / n] * n
        )
        name = "_".join(str(v) for v in cell.key()) + f"_{ids[0]}-{ids[-1]}.pt"
        with atomic_path(self.out / "outputs" / name) as tmp:
            torch.save({"ids": ids, "x": x.half()}, tmp)
        self._append(rows)
        return seconds


class Estimate:
    """Wall seconds of a batch as ``n * (a * inversion_steps + b * dps_steps)`` (``a``: one forward pass per
    image, ``b``: one DPS step, a forward and a backward pass), fitted by least squares on the batches done."""

    def __init__(self) -> None:
        self.obs: list[tuple[float, float, float]] = []  # (n * inversion steps, n * dps steps, seconds)

    def add(self, n: int, cell: Cell, seconds: float) -> None:
        self.obs.append((n * (cell.inversion_steps or 0), n * cell.dps_steps, seconds))

    def ready(self) -> bool:
        return any(o[0] > 0 for o in self.obs) and any(o[0] == 0 for o in self.obs)

    def rates(self) -> tuple[float, float]:
        a = torch.tensor([[o[0], o[1]] for o in self.obs], dtype=torch.float64)
        s = torch.tensor([o[2] for o in self.obs], dtype=torch.float64)
        sol = torch.linalg.lstsq(a, s[:, None]).solution[:, 0].clamp(min=0)
        return float(sol[0]), float(sol[1])

    def seconds(self, n: int, cell: Cell) -> float:
        fwd, step = self.rates()
        return n * (fwd * (cell.inversion_steps or 0) + step * cell.dps_steps)


def batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mnist", help="an embedded prior; its dataset's test split gives the images")
    parser.add_argument("--ids", default="9800:9832", help="test ids A:B (the benchmark uses 0:50)")
    parser.add_argument("--tasks", default="sr8,box20")
    parser.add_argument("--methods", default="dps,daps")
    parser.add_argument("--seed", type=int, default=0, help="the run seed (the benchmark's default is 0)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/mechanism/<prior>")
    parser.add_argument("--t-ends", default="0.3,0.7,1.0", help="inversion depths in (0, 1]")
    parser.add_argument("--samplers", default="ddpm,ddim")
    parser.add_argument("--inversion-steps", default="10,100")
    parser.add_argument("--dps-steps", default="20,100")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="cpu",
        help="the budgets and options of the candidates and the wrapper's step size: the CPU protocol's tuned ones "
        "(starved candidates) or the reference budgets of the primary table (DPS 1000, DAPS 200 x 5 x 100)",
    )
    parser.add_argument(
        "--candidates-from",
        type=Path,
        default=None,
        help="a bench run folder (reguidance bench --out) whose kept candidates of the same prior, seed, protocol, "
        "tasks and methods are reused instead of made again (ids it lacks are made here)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-minutes", type=float, default=None, help="stop cleanly between batches")
    parser.add_argument("--tiny", action="store_true", help="2 images, 2-3 step budgets (for tests)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _numbers(flag: str, text: str, kind: type) -> tuple[Any, ...]:
    try:
        values = tuple(dict.fromkeys(kind(v) for v in text.split(",") if v.strip()))
    except ValueError:
        values = ()
    if not values:
        raise InputError(f"--{flag} must be a comma-separated list of numbers, got {text!r}")
    return values


def _grid(args: argparse.Namespace) -> Grid:
    """The grid the flags give (each validated by building a config with it)."""
    grid = Grid(
        t_ends=_numbers("t-ends", args.t_ends, float),
        samplers=tuple(dict.fromkeys(cast(SamplerName, s) for s in args.samplers.split(",") if s)),
        inversion_steps=_numbers("inversion-steps", args.inversion_steps, int),
        dps_steps=_numbers("dps-steps", args.dps_steps, int),
    )
    for t in grid.t_ends:
        ReGuidance(t_end=t)
    for s in grid.samplers:
        ReGuidance().replace(sampler=s)
    for k in grid.inversion_steps + grid.dps_steps:
        ReGuidance(inversion_steps=k)
    return grid


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_positive_int("--batch-size", args.batch_size)
    check_seed("--seed", args.seed)
    torch.set_num_threads(check_threads("--threads", args.threads))
    ids = list(parse_ids(args.ids, limit=10_000))
    args.tasks = [get_task(t).name for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS or m == "pinv":
            raise InputError(f"--methods: {m!r} is not a candidate method with a budget ({', '.join(METHODS)})")
    if args.tiny:
        ids = ids[:2]
    args.out = args.out or Path("runs/mechanism") / args.prior
    grid = TINY if args.tiny else _grid(args)
    study = Study(args)
    if args.candidates_from is not None:  # every source checked before the first file is written
        for t in args.tasks:
            for m in args.methods:
                study.bench_run(t, m)
    study.check_and_write_config()
    units = [
        (c, chunk)
        for c in cells(args.tasks, args.methods, grid)
        for chunk in batches(study.todo(c, ids), args.batch_size)
    ]
    print(f"{len(units)} batches to run ({len(study.done)} rows already in {study.rows_path})", flush=True)
    est = Estimate()
    printed = False
    first_block = 3 * len(args.tasks) * len(args.methods)  # every candidate is made within it
    limit = args.limit_minutes * 60 if args.limit_minutes is not None else math.inf
    with tqdm(units, desc="mechanism", unit="batch", disable=args.no_progress, file=sys.stdout) as bar:
        for n_done, (cell, chunk) in enumerate(bar):
            elapsed = time.perf_counter() - started
            next_cost = est.seconds(len(chunk), cell) if est.ready() else 0.0
            if elapsed + next_cost > limit:
                print(f"\nstopping: {_fmt(elapsed)} spent, the next batch (~{_fmt(next_cost)}) would pass the limit")
                return 0
            seconds = study.run_cell(cell, chunk)
            est.add(len(chunk), cell, seconds)
            if est.ready():
                left = sum(est.seconds(len(ch), c) for c, ch in units[n_done + 1 :])
                bar.set_postfix_str(f"left~{_fmt(left)}")
                if not printed and n_done + 1 >= min(len(units), first_block):
                    fwd, step = est.rates()
                    total = time.perf_counter() - started + left
                    print(
                        f"\nestimate: {fwd:.4f} s per image per inversion step, {step:.4f} s per image per DPS step; "
                        f"total wall time ~{_fmt(total)} ({_fmt(left)} left)",
                        flush=True,
                    )
                    printed = True
    print(f"done: {len(study.done)} rows in {study.rows_path} after {_fmt(time.perf_counter() - started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
