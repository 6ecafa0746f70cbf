"""A benchmark run as a whole: data source, checks, metric networks, the run itself, its summary and pictures.

``reguidance bench`` and ``reguidance demo`` both call :func:`plan_benchmark` (every check on what the user asked,
before anything loads or is written) and then :func:`run_benchmark` (the prior, the resumable run of
:func:`.runner.run_bench`, one share of the ids per process under ``torchrun``, then on rank 0 the summary with its
notes, the grids and the trade-off plot). The command line only parses flags into a :class:`BenchRequest`, checks
that ``out`` can be written and prints what :func:`run_benchmark` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from ..app.methods import method_class
from ..app.runs import check_apart, check_output_folder, own_folder, path_inputs, prior_facts
from ..conventions import InputError, check_positive_int, check_seed
from ..io.files import Record, atomic_path, atomic_write_json, declare_output
from ..priors.base import Prior
from ..wrapper import ReGuidance
from .inputs import (
    ImageFolder,
    check_candidate_folders,
    check_images_fit,
    dataset_for,
    known_signal_shape,
    load_classifier_features,
    load_test_images,
    parse_data,
)
from .report import save_grids, save_overview, save_tradeoff_plot, write_report_html, write_summary
from .runner import BenchSpec, run_bench

if TYPE_CHECKING:
    from ..evaluation.lpips import LPIPS

__all__ = ["BenchPlan", "BenchRequest", "BenchResult", "plan_benchmark", "run_benchmark"]

#: ``(name, device, dtype) -> prior``: how the caller loads a prior (with its own checks and messages)
PriorLoader = Callable[[str, str, str], Prior]


@dataclass(frozen=True)
class BenchRequest:
    """What ``reguidance bench`` was asked (each field is the flag of the same name; ``prior`` is ``--prior``)."""

    out: Path
    tasks: Sequence[str]
    methods: Sequence[str]
    ids: Sequence[int]
    prior: str = "mnist"
    dataset: str | None = None
    data: str | None = None
    seed: int = 0
    batch_size: int = 16
    protocol: str = "reference"
    steps: int | None = None
    #: a tuned table file in place of the package's (:attr:`.runner.BenchSpec.tuned`)
    tuned: Path | None = None
    ablations: bool = False
    #: the wrapper's options that were given (``--inversion-steps``, ``--t-end``, ...) by their flat names: set on
    #: top of every (task, method)'s wrapper
    wrapper: Mapping[str, object] = field(default_factory=dict)
    lpips_alexnet: Path | None = None
    lpips_lin: Path | None = None
    json_path: Path | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    overwrite: bool = False
    prior_config: Path | None = None
    checkpoint_dir: Path | None = None
    #: write the notes (skipped metrics, LPIPS weights) into the summary (``demo`` does not)
    notes: bool = True
    #: fit the batch to the device's free memory (``demo`` keeps its own)
    fit_batch: bool = True
    #: also save ``out/demo.png``, one overview picture of every grid under this title (``demo``)
    overview: str | None = None
    #: the kind of run the output folder's marker records (``demo`` for ``reguidance demo``)
    kind: str = "bench"


@dataclass
class BenchPlan:
    """A checked request: its spec (``None`` until a checkpoint's shape is known), images and notes so far."""

    request: BenchRequest
    spec: BenchSpec | None
    images: Tensor | ImageFolder | None
    labels: Tensor | None
    data_name: str
    split: str
    folder_path: Path | None = None
    folder: ImageFolder | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BenchResult:
    """What a finished run made (rank 0): its summary, the notes, the grids, the plot and ``report.html``."""

    summary: Record
    notes: list[str]
    grids: list[Path]
    plot: Path
    page: Path | None = None


def _spec(plan: BenchPlan, n_images: int, x_shape: Sequence[int] | None, context: dict[str, object]) -> BenchSpec:
    r = plan.request
    budgets = {m: method_class(m).budget_option for m in r.methods}
    overrides: dict[str, dict[str, object]] = {
        m: {key: r.steps} for m, key in budgets.items() if r.steps is not None and key is not None
    }
    spec = BenchSpec(
        r.tasks,
        r.methods,
        r.ids,
        seed=r.seed,
        batch_size=r.batch_size,
        method_options=overrides,
        protocol=r.protocol,
        context={
            **prior_facts(r.prior, r.dtype, config=r.prior_config, checkpoint_dir=r.checkpoint_dir),
            "dataset": plan.data_name,
            **context,
        },
        split=plan.split,
        ablations=r.ablations,
        wrapper_overrides=dict(r.wrapper),
        tuned=None if r.tuned is None else str(r.tuned),
    )
    spec.check(n_images, x_shape)
    check_candidate_folders(r.methods, list(spec.ids), x_shape)  # external candidates read through before any write
    return spec


def _load_lpips(alexnet: Path, lin: Path, device: str) -> LPIPS:
    """LPIPS from the two weight files; a file that does not load is an ``InputError`` naming both flags."""
    import pickle
    import sys

    from ..evaluation.lpips import LPIPS

    errors: list[type[BaseException]] = [RuntimeError, EOFError, OSError, pickle.UnpicklingError]
    if "safetensors" in sys.modules:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    try:
        return LPIPS(alexnet, lin).to(device)
    except ValueError as err:
        message = " ".join(str(err).split())
    except tuple(errors) as err:
        message = " ".join(f"the weights do not load: {err}".split())
    raise InputError(f"--lpips-alexnet / --lpips-lin: {message}")


def _check_outputs(r: BenchRequest) -> None:
    """The output folder may be written by a ``r.kind`` run (:func:`reguidance.app.runs.check_output_folder`), lies
    apart from every input (:func:`reguidance.app.runs.check_apart`), and ``--json`` replaces no file this program did
    not write (:func:`reguidance.io.files.declare_output`): all before any work."""
    data = parse_data(r.data) if r.data is not None else None
    inputs = {
        "--data": data,
        "--lpips-alexnet": r.lpips_alexnet,
        "--lpips-lin": r.lpips_lin,
        "--tuned": r.tuned,
        **path_inputs(r.prior, r.prior_config, r.checkpoint_dir, r.tasks, r.methods),
    }
    check_apart({"--out": r.out, "--json": r.json_path}, inputs)
    check_output_folder(r.out, r.kind)
    if r.json_path is not None:
        declare_output(r.json_path, "--json")


def plan_benchmark(request: BenchRequest) -> BenchPlan:
    """Check ``request`` before anything loads or is written: step counts, the LPIPS files, the data source (the
    dataset's test images are loaded and fitted to a known prior; a folder's files are hashed), the tasks,
    methods, ids, method options and step counts (:meth:`.runner.BenchSpec.check`), the seed, and the output
    folder (:func:`_check_outputs`). ``InputError`` naming the flag."""
    r = request
    if r.steps is not None:
        check_positive_int("--steps", r.steps)
    ReGuidance().replace(**r.wrapper)  # the wrapper's own checks of what was given
    check_seed("--seed", r.seed)
    if (r.lpips_alexnet is None) != (r.lpips_lin is None):
        raise InputError("LPIPS needs both --lpips-alexnet and --lpips-lin (or neither)")
    for flag, path in (("--lpips-alexnet", r.lpips_alexnet), ("--lpips-lin", r.lpips_lin)):
        if path is not None and not path.is_file():
            raise InputError(f"{flag} {path}: no such file")
    _check_outputs(r)
    shape = known_signal_shape(r.prior)  # None for a checkpoint file: checked once it has loaded
    if r.data is not None:
        if r.dataset is not None:
            raise InputError("pass one of --dataset and --data, not both")
        folder_path = parse_data(r.data)
        if not folder_path.is_dir():
            raise InputError(f"--data {r.data}: no such folder")
        plan = BenchPlan(r, None, None, None, "folder", "folder", folder_path=folder_path)
        if shape is None:  # a checkpoint file: the folder is built once it has loaded, its files are read now
            from ..io.images import IMAGE_SUFFIXES, inspect_images

            files = sorted(p for p in folder_path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            inspect_images(files, f"--data {r.data}")
        if shape is not None:
            folder = ImageFolder(folder_path, shape)
            plan.spec = _spec(plan, len(folder), shape, {"manifest_sha256": folder.manifest_sha256()})
            plan.folder, plan.images, plan.labels = folder, folder, folder.labels
        return plan
    data_name = dataset_for(r.prior, r.dataset)
    images, labels = load_test_images(data_name, r.ids)
    if shape is not None:
        check_images_fit(images.shape[1:], shape, f"--dataset {data_name}", r.prior)
    plan = BenchPlan(r, None, images, labels, data_name, "test")
    plan.spec = _spec(plan, len(images), tuple(images.shape[1:]), {})
    return plan


def run_benchmark(
    plan: BenchPlan,
    load_prior: PriorLoader,
    *,
    fit_batch: Callable[[Prior, int, str, int], int] | None = None,
) -> BenchResult | None:
    """Run a checked request (:func:`plan_benchmark`) into ``request.out``; the result on rank 0, None elsewhere.

    Under ``torchrun`` each process takes a share of the ids (:func:`reguidance.app.shard.sharded`); rank 0 holds the
    folder's lock through the summary (``summary.json``, ``summary.md``), the grids and ``tradeoff.png`` (and
    ``request.json_path``). ``load_prior(name, device, dtype)`` loads the prior; ``fit_batch(prior, batch_size,
    device, n)`` may shrink the batch to the device's memory, ``n`` being the number of ids this process solves
    (the batch is not part of the identity)."""
    from ..app.shard import sharded

    r = plan.request
    metric = load_classifier_features(plan.data_name)
    notes = ["FID skipped: it needs an Inception network, which this build does not implement"]
    if plan.folder_path is not None:
        notes.append(f"FD-cls and class accuracy skipped: no classifier exists for the image folder {plan.folder_path}")
    elif metric is None:
        notes.append("no metric classifier in this build: FD-cls and class accuracy skipped")
    with ExitStack() as held:
        with sharded(r.device) as (rank, world, dev):  # torchrun: one share of the ids per process
            lpips = None
            if r.lpips_alexnet is not None and r.lpips_lin is not None:  # both or neither (checked in the plan)
                lpips = _load_lpips(r.lpips_alexnet, r.lpips_lin, dev)
                notes.append(
                    f"LPIPS-Alex v0.1 with AlexNet sha256 {lpips.alexnet_sha256} and heads sha256 {lpips.lin_sha256}"
                )
            else:
                notes.append("LPIPS skipped: pass --lpips-alexnet and --lpips-lin (weight files) to compute it")
            prior = load_prior(r.prior, dev, r.dtype)
            if plan.folder_path is not None and plan.folder is None:  # a checkpoint file: its shape is known now
                plan.folder = ImageFolder(plan.folder_path, prior.signal_shape, inspect=False)  # read in the plan
                plan.spec = _spec(
                    plan, len(plan.folder), plan.folder.shape, {"manifest_sha256": plan.folder.manifest_sha256()}
                )
                plan.images, plan.labels = plan.folder, plan.folder.labels
            spec, images, labels = plan.spec, plan.images, plan.labels
            assert spec is not None and images is not None and labels is not None  # set by the plan or just above
            if fit_batch is not None and r.fit_batch:
                n = len(list(spec.ids)[rank::world])  # this process's ids: no batch holds more
                spec = replace(spec, batch_size=fit_batch(prior, spec.batch_size, dev, n))  # not part of the identity
            held.enter_context(own_folder(r.out, r.kind, rank))  # rank 0 owns the folder through the summary
            run_bench(
                prior,
                images,
                labels,
                spec,
                r.out,
                classifier=metric[0] if metric else None,
                lpips=lpips,
                manifest=plan.folder.manifest() if plan.folder is not None else None,
                rank=rank,
                world_size=world,
                progress=rank == 0,
                overwrite=r.overwrite,
                kind=r.kind,
            )
        if rank != 0:
            return None
        summary = write_summary(r.out, features=metric[1] if metric else None, notes=notes if r.notes else None)
        grids = save_grids(r.out)
        plot = r.out / "tradeoff.png"
        with atomic_path(plot) as tmp:
            save_tradeoff_plot(summary, tmp)
        if r.overview is not None:
            with atomic_path(r.out / "demo.png") as tmp:
                save_overview(grids, tmp, r.overview)
        page = write_report_html(r.out, summary, r.overview)
        if r.json_path is not None:
            atomic_write_json(r.json_path, summary)
    return BenchResult(summary, notes, grids, plot, page)


def estimate_seconds(plan: BenchPlan, prior: Prior) -> float:
    """About how long ``plan``'s run takes here, in seconds: every (task, method)'s network evaluations per image
    (:meth:`reguidance.guidance.solve.Method.cost` of the candidate's config, of the wrapper and, with the ablations,
    of ``renoise`` and ``fresh``, and ``more`` at about the method's plus the wrapper's) at the network's floor on
    this machine (:func:`reguidance.app.timing.measure_floor`: one timed batch), times the number of images. What a
    method does besides the network (DAPS's Langevin steps, the operators) is not counted: a lower bound of the
    right size, printed before a run starts."""
    from ..app.timing import measure_floor

    spec = plan.spec
    if spec is None:  # a checkpoint whose shape was not known at plan time: nothing to estimate from yet
        return 0.0
    floor = measure_floor(prior, batch_size=min(spec.batch_size, 16), iters=1)
    per_image = 0.0
    for t in spec.tasks:
        for m in spec.methods:
            method, wrapper = spec.method(t, m), spec.wrapper(t, m)
            cost = method.cost() + wrapper.cost()
            variants = spec.variants(t, m, len(prior.schedule))
            for variant in ("renoise", "fresh"):
                if variant in variants:
                    cost = cost + wrapper.replace(start=variant).cost()
            if "more" in variants:
                cost = cost + method.cost() + wrapper.cost()
            per_image += cost.seconds(floor["fwd_s_per_image"], floor["fwd_grad_s_per_image"])
    return per_image * len(spec.ids)
