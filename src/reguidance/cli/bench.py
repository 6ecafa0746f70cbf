"""``reguidance bench``, ``bench-report``, ``demo``, ``tune`` and ``tune-defaults``: the benchmark
(:mod:`reguidance.bench`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from . import support
from .base import cli
from .support import (
    _OVERWRITE,
    SEED,
    WrapperCommand,
    _apart,
    _csv,
    _fit_batch,
    _options,
    _positive,
    _runtime,
    _section_name,
    _task_list,
    _writable,
    fast_path_options,
    fast_paths,
    flags,
    prior_options,
    runtime_options,
)

#: the flags of ``reguidance bench``, in --help order
BENCH_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--prior", "prior_name", default="mnist", show_default=True, help="Embedded prior name, or a path."),
    click.option("--dataset", default=None, help="Test images' dataset (default: the embedded prior's)."),
    click.option(
        "--data",
        default=None,
        help="folder:PATH: benchmark on a folder of PNG/JPEG images instead; each is centre-cropped to a square, "
        "then resized (bicubic) to the prior's size, the rule of restore --resize.",
    ),
    click.option(
        "--tasks",
        default="box20c,sr8",
        show_default=True,
        help="Comma-separated tasks: names (box16, box20, box16c, box20c, sr4, sr8, deblur), presets (paper:box128c, "
        "paper:box128, paper:sr8, paper:sr16, paper:gauss, paper:motion) or specs (box:0.5c, sr:16,bicubic, "
        "blur:gauss,std=3; a spec's own options follow it).",
    ),
    click.option(
        "--methods",
        default="pinv,dps",
        show_default=True,
        help="Comma-separated: dps, daps, diffpir, reddiff, pigdm, pinv, folder:PATH.",
    ),
    click.option("--ids", default="0:16", show_default=True, help="Test-split indices A:B (A to B-1)."),
    click.option("--seed", type=SEED, default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option(
        "--protocol",
        type=click.Choice(["reference", "cpu"]),
        default="reference",
        show_default=True,
        help="Budgets and defaults table: the papers' budgets, or the reduced, validation-tuned CPU ones.",
    ),
    click.option("--steps", type=int, default=None, help="Override every method's step count (quick runs)."),
    click.option(
        "--tuned",
        type=click.Path(path_type=Path),
        default=None,
        help="A tuned table (reguidance tune-defaults --write) in place of the package's for --protocol and --prior; "
        "it must hold every (task, method) of the run.",
    ),
    click.option(
        "--ablations",
        is_flag=True,
        help="Also run the ablations that tell where ReGuidance's gains come from: the candidate re-noised to t_end "
        "then the same DPS (renoise), the same DPS from fresh noise (fresh), the base method given the same extra "
        "network evaluations (more).",
    ),
    click.option(
        "--lpips-alexnet",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth): with --lpips-lin, adds LPIPS.",
    ),
    click.option(
        "--lpips-lin",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="LPIPS v0.1 linear heads (the lpips package's weights/v0.1/alex.pth).",
    ),
    click.option(
        "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench"), show_default=True
    ),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write summary.json here.",
    ),
    runtime_options,
    prior_options,
    fast_path_options,
    _OVERWRITE,
]


BENCH_REPORT_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--run",
        "runs",
        multiple=True,
        required=True,
        help="NAME=DIR: a finished benchmark folder (with summary.json and config.json); repeatable.",
    ),
    click.option(
        "--into",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        required=True,
        help="Markdown file whose '<!-- SECTION:begin -->' ... '<!-- SECTION:end -->' section is replaced.",
    ),
    click.option(
        "--section",
        default="tables",
        show_default=True,
        callback=_section_name,
        help="The marked section of --into that gets the tables (e.g. 'primary' for the reference-budget table).",
    ),
    click.option(
        "--pictures",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also save one overview picture per run here (benchmark_NAME.png): one method's grids on every task.",
    ),
    click.option("--picture-method", default="dps", show_default=True, help="The method the overview pictures show."),
    click.option(
        "--summary-into",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="Also write the short summary between '<!-- summary:begin -->' and '<!-- summary:end -->' of this file.",
    ),
    click.option(
        "--answer-into",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="Also write the primary family's outcome between '<!-- primary_answer:begin -->' and "
        "'<!-- primary_answer:end -->' of this file.",
    ),
    click.option(
        "--keep",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also copy each run's records (config.json, summary.json, results*.jsonl, walltime.jsonl) into "
        "KEEP/NAME, byte for byte: a folder small enough to commit that --run NAME=KEEP/NAME reads like the run's.",
    ),
]


#: the flags of ``reguidance demo``, in --help order
DEMO_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True
    ),
    click.option("--n", "n_images", default=16, show_default=True, help="Test images per task."),
    click.option(
        "--prior",
        "prior_name",
        default="mnist",
        show_default=True,
        help="The prior: an embedded name (mnist, fashion_mnist, emoji; their test images) or a path.",
    ),
    click.option("--seed", type=SEED, default=0, show_default=True),
    runtime_options,
    _OVERWRITE,
    prior_options,
]


_TUNE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--prior", "prior_name", default="mnist", show_default=True),
    click.option("--dataset", default=None, help="Validation images' dataset (default: the embedded prior's)."),
    click.option("--ids", default="0:16", show_default=True, help="VALIDATION-split indices A:B."),
    click.option(
        "--protocol",
        type=click.Choice(["reference", "cpu"]),
        default="cpu",
        show_default=True,
        help="Budgets the sweep runs under (see reguidance.bench.defaults).",
    ),
    click.option("--seed", type=SEED, default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option(
        "--ablations",
        is_flag=True,
        help="Tune every variant too: renoise and fresh (the wrapper's grid), more (the method's grid at its budget).",
    ),
    runtime_options,
    prior_options,
    click.option(
        "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/tune"), show_default=True
    ),
]


def _tune_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_TUNE_OPTIONS):
        fn = option(fn)
    return fn


def _echo_sweep(entry: dict[str, Any]) -> None:
    for stage in ("method_sweep", "wrapper_sweep"):
        for r in entry[stage]:
            click.echo(
                f"  {stage.split('_')[0]:>7}  "
                + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
            )
    click.echo(f"{entry['task']}/{entry['method']}: method {entry['method_options']}, reguidance {entry['reguidance']}")
    if "settings" in entry:
        click.echo(f"  settings in all: {entry['settings']}")


#: the flags of ``reguidance tune``, in --help order
TUNE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--task", required=True),
    click.option("--method", required=True),
    click.option(
        "--grid",
        default=None,
        help="ReGuidance fields and values: 'FIELD=V1,V2;FIELD=...' (default: the grid of tune-defaults).",
    ),
    click.option("--method-grid", default="", help="The method's step size, e.g. 'step_size=1,3,10' for dps."),
    _tune_options,
]


#: the flags of ``reguidance tune-defaults``, in --help order
TUNE_DEFAULTS_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--tasks", default="box20,box20c,sr4,sr8,deblur", show_default=True),
    click.option("--methods", default="pinv,dps,daps,diffpir,reddiff,pigdm", show_default=True),
    click.option(
        "--write",
        "write_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the defaults table here (the package reads assets/bench/tuned_<protocol>_<prior>.json).",
    ),
    click.option(
        "--from",
        "sources",
        multiple=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="A sweep folder of the same flags (another process's --out) whose saved pairs are read, not recomputed; "
        "repeatable.",
    ),
    _tune_options,
]


@cli.command(cls=WrapperCommand)
@flags(BENCH_OPTIONS)
def bench(
    prior_name: str,
    tasks: str,
    methods: str,
    ids: str,
    threads: int | None,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    **options: Any,
) -> None:
    """Each method with and without ReGuidance on test images; resumable (rerun to continue)."""
    from functools import partial

    from ..bench.report import format_markdown
    from ..bench.session import BenchRequest, plan_benchmark, run_benchmark
    from ..tasks import parse_ids

    tasks_, methods_ = _task_list(tasks, "--tasks"), _csv(methods, "--methods")
    request = BenchRequest(tasks=tasks_, methods=methods_, ids=parse_ids(ids), prior=prior_name, **options)
    with _options():
        plan = plan_benchmark(request)
    _writable(request.out, "--out", folder=True, kind="bench")
    _writable(request.json_path, "--json", folder=False)
    _runtime(request.device, threads)
    loader = partial(support.load_prior, **fast_paths(use_compile, compile_mode, channels_last))
    result = run_benchmark(plan, loader, fit_batch=_fit_batch)
    if result is None:  # a rank > 0 under torchrun
        return
    click.echo(format_markdown(result.summary))
    for note in result.notes:
        click.echo(f"note: {note}")
    for g in result.grids:
        click.echo(f"grid: {g}")
    click.echo(f"plot: {result.plot}")
    click.echo(f"report: {result.page}")


#: the files of a benchmark folder that ``bench-report --keep`` copies: what its tables and a new summary need (the
#: results files by the pattern :func:`reguidance.bench.records.read_all_results` reads)
KEPT_RECORDS = ("config.json", "summary.json", "walltime.jsonl", "results*.jsonl")


def _records(folder: Path) -> list[Path]:
    """The paths in ``folder`` that match :data:`KEPT_RECORDS`, sorted."""
    return sorted({p for pattern in KEPT_RECORDS for p in folder.glob(pattern)})


def _kept_records(folders: dict[str, Path], keep: Path | None) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """``(copies, stale)``: ``(source, copy)`` for each record of each run (:data:`KEPT_RECORDS`) that ``--keep``
    copies to ``keep/NAME/``, every copy checked as an output first (a file this program did not write there is
    refused), and the records an earlier ``--keep`` left there that this run lacks (e.g. ``results.jsonl`` beside
    new ``results.rank*.jsonl``), to delete so that no copy mixes two runs. ``InputError`` when a run's folder is
    its own copy's folder or NAME would leave ``keep``."""
    from ..conventions import InputError
    from ..io.files import refuse_foreign

    if keep is None:
        return [], []
    _writable(keep, "--keep", folder=True)
    pairs, stale = [], []
    for name, folder in folders.items():
        if name in (".", "..") or Path(name).name != name:
            raise InputError(f"--run {name}={folder}: with --keep, NAME is a folder name (no '/', not . or ..)")
        if (keep / name).resolve() == folder.resolve():
            raise InputError(f"--keep {keep}: {keep / name} is the folder of --run {name} itself")
        sources = [p for p in _records(folder) if p.is_file()]
        for source in sources:
            target = keep / name / source.name
            _writable(target, "--keep", folder=False)
            pairs.append((source, target))
        names = {p.name for p in sources}
        for old in _records(keep / name):
            if old.name not in names:
                refuse_foreign(old, "--keep")  # only a record this program copied there is ever deleted
                stale.append(old)
    return pairs, stale


@cli.command("bench-report")
@flags(BENCH_REPORT_OPTIONS)
def bench_report(
    runs: tuple[str, ...],
    into: Path,
    section: str,
    pictures: Path | None,
    picture_method: str,
    summary_into: Path | None,
    answer_into: Path | None,
    keep: Path | None,
) -> None:
    """Write the tables of finished benchmark runs into a Markdown file (e.g. BENCHMARK.md)."""
    from ..bench.report import (
        PREREGISTRATION_MARKERS,
        benchmark_tables,
        preregistration,
        primary_answer,
        readme_summary,
        replace_marked,
        save_method_overview,
    )
    from ..conventions import InputError
    from ..io.files import atomic_write_bytes, check_marked

    folders = {}
    for run in runs:
        name, sep, folder = run.partition("=")
        path = Path(folder)
        if not sep or not name:
            raise InputError(f"--run looks like NAME=DIR, got {run!r}")
        if not (path / "summary.json").is_file() or not (path / "config.json").is_file():
            raise InputError(f"--run {run}: {path} has no summary.json and config.json (run `reguidance bench` there)")
        folders[name] = path
    if pictures is not None:
        _writable(pictures, "--pictures", folder=True)
        for run_name in folders:
            _writable(pictures / f"benchmark_{run_name}.png", "--pictures", folder=False)
    kept, stale = _kept_records(folders, keep)  # every copy checked before the first file is written
    tables = benchmark_tables(folders)  # a run's broken file is named by its own path, not blamed on --into
    summary_text = readme_summary(folders) if summary_into is not None else ""
    answer_text = primary_answer(folders) if answer_into is not None else ""
    edits: list[tuple[str, Path | None, str]] = [("--into", into, section), ("--summary-into", summary_into, "summary")]
    edits.append(("--answer-into", answer_into, "primary_answer"))
    for flag, target, name in edits:  # every file's markers before the first is edited
        if target is not None:
            with _options(flag):
                check_marked(target, f"<!-- {name}:begin -->", f"<!-- {name}:end -->")
    with _options("--into"):
        replace_marked(into, tables, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
        if PREREGISTRATION_MARKERS[0] in into.read_text():
            replace_marked(into, preregistration(), *PREREGISTRATION_MARKERS)
    click.echo(f"tables written into {into}")
    if summary_into is not None:
        with _options("--summary-into"):
            replace_marked(summary_into, summary_text, "<!-- summary:begin -->", "<!-- summary:end -->")
        click.echo(f"summary written into {summary_into}")
    if answer_into is not None:
        with _options("--answer-into"):
            replace_marked(answer_into, answer_text, "<!-- primary_answer:begin -->", "<!-- primary_answer:end -->")
        click.echo(f"primary family's outcome written into {answer_into}")
    for source, target in kept:
        atomic_write_bytes(target, source.read_bytes())
    for old in stale:
        old.unlink()
    if keep is not None:
        click.echo(f"records kept in {keep}: {len(kept)} files")
    if pictures is not None:
        for run_name, run_folder in folders.items():
            made = save_method_overview(
                run_folder, picture_method, pictures / f"benchmark_{run_name}.png", f"{run_name}: {picture_method}"
            )
            click.echo(f"picture: {made}" if made else f"no {picture_method} grids in {run_folder}")


#: the demo's tasks: identifiable ones (a box at a random position, x4 and x8 super-resolution), so its pictures show
#: what the measurement allows; its methods: the pseudo-inverse, DPS and DAPS under the benchmark's CPU protocol
DEMO_TASKS = ("box20", "sr4", "sr8")
DEMO_METHODS = ("pinv", "dps", "daps")


@cli.command()
@flags(DEMO_OPTIONS)
def demo(
    out: Path,
    n_images: int,
    prior_name: str,
    seed: int,
    device: str,
    dtype: str,
    threads: int | None,
    overwrite: bool,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """The main job: the pseudo-inverse, DPS and DAPS on three hard tasks (a 20x20 box at a random position, x4 and
    x8 super-resolution), each with and without ReGuidance, under the benchmark's CPU protocol (reduced budgets,
    validation-tuned options); the embedded MNIST prior unless --prior says otherwise."""
    import time

    from ..bench.report import format_compact
    from ..bench.session import BenchRequest, estimate_seconds, plan_benchmark, run_benchmark

    _positive("--n", n_images)
    request = BenchRequest(
        out,
        list(DEMO_TASKS),
        list(DEMO_METHODS),
        range(n_images),
        prior=prior_name,
        prior_config=prior_config,
        checkpoint_dir=checkpoint_dir,
        seed=seed,
        batch_size=min(n_images, 16),
        protocol="cpu",
        device=device,
        dtype=dtype,
        overwrite=overwrite,
        notes=False,
        fit_batch=False,
        overview=f"{prior_name}, embedded prior; {n_images} test images per task",
        kind="demo",
    )
    plan = plan_benchmark(request)
    _writable(out, "--out", folder=True, kind="demo")
    _runtime(device, threads)
    prior = support.load_prior(prior_name, device, dtype)
    seconds = estimate_seconds(plan, prior)
    click.echo(
        f"demo: {len(DEMO_TASKS)} tasks x {len(DEMO_METHODS)} methods x {n_images} images, with and without "
        f"ReGuidance; expected about {seconds / 60:.1f} min here ({torch_threads()} threads; resumable: rerun to go on)"
    )
    start = time.perf_counter()
    result = run_benchmark(plan, lambda *_: prior)
    assert result is not None  # demo runs in one process
    click.echo(format_compact(result.summary))
    click.echo(f"{time.perf_counter() - start:.0f} s; picture: {out / 'demo.png'}; every number: {result.page}")


def torch_threads() -> int:
    """The number of threads torch computes with here."""
    import torch

    return torch.get_num_threads()


def _sweep(
    pairs: list[tuple[str, str]],
    method_grids: dict[str, str],
    wrapper_grid: str,
    sources: Sequence[Path] = (),
    **f: Any,
) -> list[dict[str, Any]]:
    """The sweep of ``tune`` and ``tune-defaults`` over ``pairs``; ``f``: the flags both commands share."""
    from ..app.runs import own_folder
    from ..bench.tune import check_sweep, sweep, validation_split

    _positive("--batch-size", f["batch_size"])
    with _options():
        grids, wgrid = check_sweep(pairs, method_grids, wrapper_grid)
    _writable(f["out"], "--out", folder=True, kind="tune")
    _apart({"--out": f["out"]}, {})
    for folder in sources:  # the sweep folders it reads lie apart from the one it writes
        _apart({"--out": f["out"]}, {"--from": folder})
    images, id_range = validation_split(f["prior_name"], f["dataset"], f["ids"])
    _runtime(f["device"], f["threads"])
    prior = support.load_prior(f["prior_name"], f["device"], f["dtype"])
    batch_size = _fit_batch(prior, f["batch_size"], f["device"])
    with own_folder(f["out"], "tune"):
        entries = sweep(
            prior, images, id_range, pairs, f["out"], protocol=f["protocol"], method_grids=grids, wrapper_grid=wgrid,
            seed=f["seed"], batch_size=batch_size, ablations=f["ablations"], sources=sources,
        )  # fmt: skip
    for e in entries:
        _echo_sweep(e)
    return entries


@cli.command()
@flags(TUNE_OPTIONS)
def tune(task: str, method: str, grid: str | None, method_grid: str, out: Path, **f: Any) -> None:
    """Choose one (task, method)'s step size and wrapper options on validation images (never the test split)."""
    from ..bench.tune import DEFAULT_WRAPPER_GRID

    _sweep([(task, method)], {method: method_grid} if method_grid else {}, grid or DEFAULT_WRAPPER_GRID, out=out, **f)
    click.echo(f"saved: {out / f'{task}_{method}.json'}")


@cli.command("tune-defaults")
@flags(TUNE_DEFAULTS_OPTIONS)
def tune_defaults(tasks: str, methods: str, write_path: Path | None, sources: tuple[Path, ...], **f: Any) -> None:
    """The whole sweep behind the benchmark's defaults table: every (task, method), resumable in --out."""
    from ..app.methods import needs_linear
    from ..bench.tune import DEFAULT_METHOD_GRIDS, DEFAULT_WRAPPER_GRID, collect_table, table_header
    from ..io.files import atomic_write_json
    from ..tasks import get_task

    pairs = [(t, m) for t in _task_list(tasks, "--tasks") for m in _csv(methods, "--methods")]
    for t, m in [(t, m) for t, m in pairs if needs_linear(m) and not get_task(t).linear]:
        click.echo(f"skipped {t}/{m}: {m} needs a linear operator and {t} is nonlinear")
    pairs = [(t, m) for t, m in pairs if not (needs_linear(m) and not get_task(t).linear)]
    _writable(write_path, "--write", folder=False)
    from ..app.runs import MARKER, marked_kind

    for folder in sources:  # another process's sweep folder: a tune run's own, read only
        if marked_kind(folder) != "tune":
            raise click.UsageError(
                f"--from {folder}: not the folder of a reguidance tune run (its {MARKER} is missing)"
            )
    entries = _sweep(pairs, DEFAULT_METHOD_GRIDS, DEFAULT_WRAPPER_GRID, sources=sources, **f)
    if write_path is not None:
        keys = ("protocol", "ids", "seed", "batch_size", "dtype", "ablations")
        header = table_header(prior=f["prior_name"], tasks=tasks, methods=methods, **{k: f[k] for k in keys})
        atomic_write_json(write_path, collect_table(entries, header))
        click.echo(f"table: {write_path}")
