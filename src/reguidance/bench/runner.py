"""The resumable benchmark runner: each finished image is appended to ``DIR/results.jsonl`` at once.

For every (task, method) and every batch of test ids not yet done, the runner measures the ground truths (per-image
operators and noise from :mod:`.protocol`), asks the method for candidates, wraps them with ReGuidance, and appends
one row per image and *variant* in one write: ``candidate`` (the method's output), ``reguidance`` (the wrapper on
it), and with ``ablations`` the three runs that tell where the wrapper's gains come from (:data:`ABLATIONS`):
``renoise`` (the candidate forward-noised to the wrapper's ``t_end``, then the same DPS: SDEdit + DPS), ``fresh``
(the same DPS from fresh noise at ``t_end``: no candidate at all) and ``more`` (the base method given the wrapper's
extra network evaluations, :func:`.methods.scaled_budget`). Every variant of an image shares its measurement, and
the wrapper's variants share its random stream. A rerun reads the file,
skips what is done and ignores a torn last line, so killing it at any moment loses at most the batch in flight, and
the summary of a resumed run equals an uninterrupted one (every random draw is per image, see
:func:`.protocol.stream_rng`). Restorations are saved as PNGs beside the rows, for grids and later metrics.

Every row carries ``run``, the identity hash of its (task, method) settings (:meth:`BenchSpec.identity`, see
:mod:`reguidance.runs`). A folder holds one run: starting a spec whose hash for some row in the folder differs
(another seed, prior, dtype, protocol or option) is refused with the difference named, unless ``overwrite`` clears
the folder first; a spec that only adds tasks, methods or ids resumes. One process writes a folder at a time
(:func:`reguidance.runs.hold_folder`). Everything is checked before the folder is touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conventions import InputError, check_positive_int
from ..files import append_rows, atomic_write_json, drop_torn_tail, read_rows, save_pngs
from ..metrics import psnr, ssim
from ..operators import Operator
from ..priors.base import Prior
from ..runs import clear_outputs, describe_difference, hold_folder, identity_hash
from ..wrapper import ReGuidanceConfig, Start, reguide, reward
from .defaults import is_tuned, method_options, reguidance_config
from .inputs import ImageFolder, check_images_fit
from .methods import METHODS, MethodFn, get_method, scaled_budget
from .protocol import Task, get_task, method_rng, wrapper_rng

__all__ = [
    "ABLATIONS",
    "ROW_KEYS",
    "VARIANTS",
    "BenchSpec",
    "check_folder",
    "done_keys",
    "done_variants",
    "drop_torn_tail",
    "read_all_results",
    "read_results",
    "results_path",
    "run_bench",
    "safe_name",
    "variant_of",
]

T = TypeVar("T")
#: a results row: a JSON object (values of any JSON type)
Row = dict[str, Any]

#: the keys every results row holds (a row without them is refused by the reader)
ROW_KEYS = ("task", "method", "reguidance", "id")
#: the variants a row can be (``variant``; rows without one are ``reguidance`` if ``reguidance`` else ``candidate``)
VARIANTS = ("candidate", "reguidance", "renoise", "fresh", "more")
#: the ablation variants ``ablations=True`` adds
ABLATIONS = ("renoise", "fresh", "more")
#: the wrapper's start for each variant that runs it (:class:`reguidance.wrapper.ReGuidanceConfig`)
_START: dict[str, Start] = {"reguidance": "inversion", "renoise": "renoise", "fresh": "fresh"}

Classifier = Callable[[Tensor], Tensor]  # images (B, C, H, W) in [-1, 1] -> logits (B, classes)
Distance = Callable[[Tensor, Tensor], Tensor]  # two image batches -> per-image distances (B,), e.g. LPIPS


@dataclass(frozen=True)
class BenchSpec:
    """What to run: task and method names, test ids, the run's seed and batch size, and per-method options."""

    tasks: Sequence[str]
    methods: Sequence[str]
    ids: Sequence[int]
    seed: int = 0
    batch_size: int = 16
    #: per-method overrides of the (task, method) defaults of :mod:`.defaults`
    method_options: dict[str, Row] = field(default_factory=dict)
    #: the wrapper's options for every (task, method); None takes :func:`.defaults.reguidance_config`
    reguidance: ReGuidanceConfig | None = None
    #: the budget and defaults table, ``"reference"`` or ``"cpu"`` (see :mod:`.defaults`)
    protocol: str = "reference"
    #: what else determines the rows and is not in the spec: the prior and its dtype (:func:`reguidance.runs.
    #: prior_facts`), the dataset; part of every row's identity
    context: Mapping[str, object] = field(default_factory=dict)
    #: the split the images come from (``"test"``, ``"folder"``, ...): it enters every random stream
    #: (:func:`.protocol.stream_rng`) and the identity
    split: str = "test"
    #: also run the ablations (:data:`ABLATIONS`; ``more`` only for methods with a step budget)
    ablations: bool = False

    def variants(self, method: str) -> tuple[str, ...]:
        """The variants each image of ``method`` gets under this spec."""
        if not self.ablations:
            return ("candidate", "reguidance")
        scalable = method.split(":", 1)[0] in METHODS and method != "pinv"
        return ("candidate", "reguidance", "renoise", "fresh", *(("more",) if scalable else ()))

    #: wrapper options (e.g. ``{"inversion_steps": 10}``) set on top of :meth:`wrapper_config`'s config, for
    #: every (task, method); part of the identity through the config
    wrapper_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def prior(self) -> str:
        """The prior's name (its tuned table, if any, gives the defaults)."""
        return str(self.context.get("prior", "mnist"))

    def options(self, task: str, method: str) -> dict[str, object]:
        return {
            **method_options(task, method, self.protocol, prior=self.prior),
            **self.method_options.get(method.split(":", 1)[0], {}),
        }

    def wrapper_config(self, task: str, method: str) -> ReGuidanceConfig:
        if self.reguidance is not None:
            return replace(self.reguidance, **self.wrapper_overrides)
        return replace(reguidance_config(task, method, self.protocol, prior=self.prior), **self.wrapper_overrides)

    def facts(self, task: str, method: str) -> dict[str, object]:
        """Everything that determines the rows of (``task``, ``method``) (ids aside): hashed by :meth:`identity`."""
        return {
            **self.context,
            "task": get_task(task).definition(),
            "split": self.split,
            "method": method,
            "method_options": self.options(task, method),
            "reguidance": asdict(self.wrapper_config(task, method)),
            "seed": self.seed,
            "protocol": self.protocol,
        }

    def identity(self, task: str, method: str) -> str:
        """The identity hash that rows of (``task``, ``method``) carry under this spec."""
        return identity_hash(self.facts(task, method))

    def check(self, n_images: int | None = None, x_shape: Sequence[int] | None = None) -> None:
        """Refuse (``InputError``) unknown or malformed tasks (and, given the images' ``x_shape``, tasks that do not
        fit it), unknown methods, an empty list, a bad batch size, ids outside ``[0, n_images)`` or options a
        method does not take, before anything runs."""
        if not self.tasks:
            raise InputError("tasks is empty: name at least one task")
        if not self.methods:
            raise InputError("methods is empty: name at least one method")
        for t in self.tasks:
            task = get_task(t)
            if x_shape is not None:
                task.check(x_shape)
        for m in self.methods:
            get_method(m)
        check_positive_int("batch-size", self.batch_size)
        ids = list(self.ids)
        if not ids:
            raise InputError("ids is empty: give a range A:B with A < B")
        if n_images is not None and (min(ids) < 0 or max(ids) >= n_images):
            raise InputError(
                f"ids {min(ids)}:{max(ids) + 1} go past the {n_images} images available (ids 0:{n_images})"
            )
        for m, opts in self.method_options.items():
            for key, value in opts.items():
                if key == "steps" or key.endswith("_steps"):
                    check_positive_int(f"{m} {key}", value)


def read_results(path: Path) -> list[Row]:
    """The rows of ``results.jsonl``; a torn last line (a run killed mid-write) is ignored, a row without the keys
    :data:`ROW_KEYS` (e.g. ``{}``) is an ``InputError`` naming the file and line."""
    return read_rows(path, ROW_KEYS)


def results_path(out: Path, rank: int = 0, world_size: int = 1) -> Path:
    """``out/results.jsonl`` for a single process; ``out/results.rank<r>.jsonl`` for rank ``r`` of a sharded run."""
    return out / ("results.jsonl" if world_size == 1 else f"results.rank{rank}.jsonl")


def read_all_results(out: Path) -> list[Row]:
    """The rows of every results file in ``out`` (a single run's, or all ranks' of sharded runs)."""
    return [row for path in sorted(out.glob("results*.jsonl")) for row in read_results(path)]


def variant_of(row: Row) -> str:
    """A row's variant (:data:`VARIANTS`); rows written before variants existed have only ``reguidance``."""
    return str(row.get("variant", "reguidance" if row["reguidance"] else "candidate"))


def done_variants(rows: list[Row], spec: BenchSpec | None = None) -> dict[tuple[str, str, int], set[str]]:
    """The variants written for each (task, method, id) (with ``spec``: only rows that carry the identity ``spec``
    gives them)."""
    seen: dict[tuple[str, str, int], set[str]] = {}
    for r in rows:
        if spec is not None and r.get("run") != spec.identity(str(r["task"]), str(r["method"])):
            continue
        seen.setdefault((str(r["task"]), str(r["method"]), int(r["id"])), set()).add(variant_of(r))
    return seen


def done_keys(rows: list[Row], spec: BenchSpec | None = None) -> set[tuple[str, str, int]]:
    """(task, method, id) triples with every variant written (candidate and ReGuidance, and the ablations when
    ``spec`` asks for them)."""
    return {
        k
        for k, v in done_variants(rows, spec).items()
        if set(spec.variants(k[1]) if spec is not None else ("candidate", "reguidance")) <= v
    }


def check_folder(spec: BenchSpec, out: Path, rows: list[Row]) -> None:
    """Refuse (``InputError``) a folder holding rows whose identity differs from what ``spec`` gives them."""
    for r in rows:
        task, method = str(r["task"]), str(r["method"])
        if r.get("run") == spec.identity(task, method):
            continue
        old = _recorded_facts(out, task, method)
        why = describe_difference(old, spec.facts(task, method)) if old else "the rows carry no matching identity"
        raise InputError(
            f"{out} holds results of {task}/{method} made with other settings ({why}); choose another --out, or "
            "pass --overwrite to discard them"
        )


def _recorded_facts(out: Path, task: str, method: str) -> dict[str, object]:
    try:
        config = json.loads((out / "config.json").read_text())
        return next(r["facts"] for r in config["runs"] if r["task"] == task and r["method"] == method)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return {}


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def safe_name(name: str) -> str:
    """A task's or method's name as one folder name (``:`` and ``/`` become ``_``), as the report reads them."""
    return name.replace(":", "_").replace("/", "_")


def _rows_for(
    task: str,
    method: str,
    variant: str,
    ids: Sequence[int],
    x: Tensor,
    raw: Tensor,
    truth: Tensor,
    y: Tensor,
    operator: Operator,
    labels: Tensor,
    classifier: Classifier | None,
    nfe: int,
    seconds: float,
    mem: float,
    lpips: Distance | None = None,
) -> list[Row]:
    """One row per image of ``variant``: PSNR, SSIM, LPIPS (if given) against the truth; ``consistency``
    ``||A x - y|| / (sigma_y sqrt(m))`` and ``reward`` ``-||y - A x||^2`` of the clamped output ``x``, and
    ``consistency_raw`` of the output before the clamp (``raw``); the classifier's prediction (if given)."""
    p, s = psnr(x, truth), ssim(x, truth)
    perceptual = lpips(x, truth) if lpips is not None else None
    cons, cons_raw = operator.consistency(x, y), operator.consistency(raw, y)
    rew = reward(operator, x, y)
    pred = classifier(x).argmax(dim=1) if classifier is not None else None
    rows = []
    for k, i in enumerate(ids):
        row: dict[str, object] = {
            "task": task,
            "method": method,
            "variant": variant,
            "reguidance": variant == "reguidance",
            "id": int(i),
            "psnr": float(p[k]),
            "ssim": float(s[k]),
            "consistency": float(cons[k]),
            "consistency_raw": float(cons_raw[k]),
            "reward": float(rew[k]),
            "label": int(labels[k]),
            "nfe": int(nfe),
            "sec_per_image": seconds,
            "peak_mem_mb": mem,
        }
        if pred is not None:
            row["pred"] = int(pred[k])
        if perceptual is not None:
            row["lpips"] = float(perceptual[k])
        rows.append(row)
    return rows


def _id_ranges(ids: set[int]) -> list[str]:
    """``{0, 1, 2, 5}`` -> ``["0:3", "5:6"]`` (half-open ranges, as ``--ids`` takes them)."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and spans[-1][1] == i:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    return [f"{a}:{b}" for a, b in spans]


def _write_config(spec: BenchSpec, out: Path, rows: list[Row]) -> None:
    """``out/config.json``: the protocol, whether its table is tuned, the ids the folder covers, and every
    (task, method)'s options and identity (those of this spec and those already in the folder)."""
    ours = [(get_task(t).name, m) for t in spec.tasks for m in spec.methods]
    pairs = dict.fromkeys([(str(r["task"]), str(r["method"])) for r in rows] + ours)
    config = {
        "protocol": spec.protocol,
        "tuned": is_tuned(spec.protocol, spec.prior),
        "seed": spec.seed,
        "context": dict(spec.context),
        "ids": _id_ranges({int(r["id"]) for r in rows} | set(spec.ids)),
        "runs": [
            {
                "task": t,
                "method": m,
                "method_options": spec.options(t, m),
                "reguidance": asdict(spec.wrapper_config(t, m)),
                "identity": spec.identity(t, m),
                "facts": spec.facts(t, m),
            }
            for t, m in pairs
        ],
    }
    atomic_write_json(out / "config.json", config)


def _run_batch(
    prior: Prior,
    images: Tensor | ImageFolder,
    labels: Tensor,
    spec: BenchSpec,
    task: Task,
    name: str,
    method: MethodFn,
    chunk: list[int],
    out: Path,
    classifier: Classifier | None,
    lpips: Distance | None,
) -> list[Row]:
    """Every variant of ``spec.variants(name)`` for the images ``chunk``: their rows, pictures saved beside."""
    device = prior.device
    truth = images[list(chunk)].to(device)
    operator, y = task.measure(truth, chunk, spec.seed, split=spec.split)
    lab = labels[list(chunk)]
    options = spec.options(task.name, name)
    cfg = spec.wrapper_config(task.name, name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed(fn: Callable[[], T]) -> tuple[T, float]:
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result, (time.perf_counter() - t0) / len(chunk)

    def method_rng_() -> Any:
        return method_rng(spec.seed, task.name, name, chunk, device=device, split=spec.split)

    def wrapper_rng_() -> Any:
        return wrapper_rng(spec.seed, task.name, name, chunk, device=device, split=spec.split)

    cand, t_cand = timed(partial(method, prior, operator, y, method_rng_(), chunk, **options))
    outputs: dict[str, tuple[Tensor, Tensor, int, float]] = {"candidate": (cand.x, cand.raw, cand.nfe, t_cand)}
    for variant in spec.variants(name)[1:]:
        if variant == "more":
            extra = outputs["reguidance"][2] - cand.nfe  # the wrapper's own evaluations
            more_options = scaled_budget(name, options, cand.nfe, extra)
            more, t = timed(partial(method, prior, operator, y, method_rng_(), chunk, **more_options))
            outputs[variant] = (more.x, more.raw, more.nfe, t)
            continue
        start = _START[variant]
        rg, t = timed(
            partial(reguide, cand.x, y, operator, prior, config=replace(cfg, start=start), rng=wrapper_rng_())
        )
        with_candidate = variant != "fresh"  # fresh noise needs no candidate: its cost is its own
        outputs[variant] = (
            rg.x.clamp(-1, 1),
            rg.x,
            rg.nfe + (cand.nfe if with_candidate else 0),
            t + (t_cand if with_candidate else 0.0),
        )
    mem = _peak_mem_mb(device)
    rows: list[Row] = []
    for variant, (x, raw, nfe, seconds) in outputs.items():
        rows += _rows_for(
            task.name, name, variant, chunk, x, raw, truth, y, operator, lab, classifier, nfe, seconds, mem, lpips
        )
    folder = out / "images" / safe_name(task.name) / safe_name(name)
    with torch.no_grad():
        shown = operator.pinv(y).clamp(-1, 1)  # the measurement as a full-size picture
    pictures = {**{v: o[0] for v, o in outputs.items()}, "truth": truth, "measurement": shown}
    for kind, xs in pictures.items():
        save_pngs(xs, [folder / f"{i:05d}_{kind}.png" for i in chunk])
    return rows


def run_bench(
    prior: Prior,
    images: Tensor | ImageFolder,
    labels: Tensor,
    spec: BenchSpec,
    out: Path,
    *,
    manifest: list[Row] | None = None,
    classifier: Classifier | None = None,
    lpips: Distance | None = None,
    progress: bool = True,
    stop_after_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    overwrite: bool = False,
) -> Path:
    """Run ``spec`` on test images ``images[i]`` (indexed by id) into ``out``; returns the results file written.

    Sharded runs (``world_size > 1``, e.g. under ``torchrun``): rank ``r`` takes the ids at positions
    ``r, r + world_size, ...`` of ``spec.ids`` and writes ``results.rank<r>.jsonl``; what any file in ``out``
    already holds is skipped, so a rerun with another number of processes resumes too.
    ``stop_after_batches`` stops early (used by the resume test to simulate a kill between batches).
    ``overwrite`` (rank 0) first deletes what an earlier run wrote into ``out``
    (:func:`reguidance.runs.clear_outputs`); otherwise a folder holding another run's rows is refused.
    ``images`` is a tensor ``(N, C, H, W)`` indexed by id or an :class:`.inputs.ImageFolder`; ``(C, H, W)`` must
    be the prior's ``signal_shape``. ``manifest`` (a folder's files, see :meth:`.inputs.ImageFolder.manifest`) is
    written to ``out/manifest.json``.
    """
    shape = images.shape if isinstance(images, ImageFolder) else tuple(images.shape[1:])
    check_images_fit(shape, prior.signal_shape, "the dataset", str(spec.context.get("prior", "given")))
    spec.check(len(images), shape)
    tasks = [get_task(t) for t in spec.tasks]
    methods = {m: get_method(m) for m in spec.methods}
    with hold_folder(out, rank):
        if overwrite and rank == 0:
            clear_outputs(out)
        results = results_path(out, rank, world_size)
        drop_torn_tail(results)
        rows = read_all_results(out)
        check_folder(spec, out, rows)
        if rank == 0:
            _write_config(spec, out, rows)
            if manifest is not None:
                atomic_write_json(out / "manifest.json", manifest)
        done = done_variants(rows, spec)
        mine = list(spec.ids)[rank::world_size]

        def missing(task: str, method: str, i: int) -> bool:
            return not set(spec.variants(method)) <= done.get((task, method, i), set())

        todo = [(t, m, [i for i in mine if missing(t.name, m, i)]) for t in tasks for m in methods]
        total = sum(len(ids) for *_, ids in todo)
        batches = 0
        with results.open("a") as log, tqdm(total=total, disable=not progress, desc="bench", unit="img") as bar:
            for task, name, ids in todo:
                for start in range(0, len(ids), spec.batch_size):
                    if stop_after_batches is not None and batches >= stop_after_batches:
                        return results
                    chunk = ids[start : start + spec.batch_size]
                    batch_rows = _run_batch(
                        prior, images, labels, spec, task, name, methods[name], chunk, out, classifier, lpips
                    )
                    run = spec.identity(task.name, name)
                    new = [r for r in batch_rows if variant_of(r) not in done.get((task.name, name, int(r["id"])), ())]
                    append_rows(log, [{**r, "run": run} for r in new])  # every variant of the batch at once
                    bar.update(len(chunk))
                    batches += 1
            return results
