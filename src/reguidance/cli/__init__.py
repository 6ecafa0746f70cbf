"""The ``reguidance`` command: wiring only (options -> checks -> library calls -> messages).

The error contract (:func:`main`): a user error — :class:`reguidance.conventions.InputError`, click's usage errors,
and what a user can cause in the machine's state (``OSError``: a missing, unreadable or read-only path, a full disk;
a corrupt weights file: ``SafetensorError`` or a refused unpickle; a busy output folder) — prints ONE line on
stderr and exits with status 2. Ctrl-C prints one line and exits with 130, leaving no torn file behind. Any other
exception is a bug: it keeps its traceback (exit 1). Every command checks its options, paths, ranges, device and
output location before it loads a model or writes a file (:func:`_options` turns a ``ValueError`` raised while
checking what the user typed into an ``InputError`` named by the flag).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from .support import (
    BENCH_OPTIONS,
    BENCH_REPORT_OPTIONS,
    DEMO_OPTIONS,
    DTYPE_NAMES,
    RESTORE_OPTIONS,
    SAMPLE_OPTIONS,
    SPEED_OPTIONS,
    THEORY_OPTIONS,
    THEORY_SWEEP_OPTIONS,
    TRAIN_CLASSIFIER_OPTIONS,
    TRAIN_OPTIONS,
    TUNE_DEFAULTS_OPTIONS,
    TUNE_OPTIONS,
    WrapperCommand,
    _apart,
    _csv,
    _echo_sweep,
    _fit_batch,
    _image_folder,
    _one_line,
    _options,
    _positive,
    _prior_source,
    _runtime,
    _task_list,
    _user_errors,
    _writable,
    fast_paths,
    flags,
    prior_options,
    runtime_options,
    threads_option,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..priors.base import Prior

__all__ = ["DTYPE_NAMES", "cli", "main", "prior_options", "run", "runtime_options", "threads_option"]


def _load_prior(name: str, device: str, dtype: str, flag: str = "--prior", **optimize: Any) -> Prior:
    """:func:`reguidance.priors.load_prior` of ``name`` on ``device`` at ``dtype`` (a name of :data:`DTYPE_NAMES`),
    with the command's ``--prior-config`` and ``--checkpoint-dir`` (:func:`prior_options`; ``optimize``: its
    further fast-path options); its refusal becomes one ``InputError`` line naming ``flag``."""
    from ..conventions import InputError
    from ..priors import load_prior

    config, checkpoint_dir = _prior_source()
    try:
        return load_prior(name, config=config, checkpoint_dir=checkpoint_dir, device=device, dtype=dtype, **optimize)
    except InputError as err:
        raise InputError(f"{flag} {name if name.strip() else repr(name)}: {' '.join(str(err).split())}") from err


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reguidance")
def cli() -> None:
    """ReGuidance: make diffusion posterior samplers solve hard inverse problems."""


@cli.command(cls=WrapperCommand)
@flags(THEORY_OPTIONS)
def theory(json_path: Path | None, plot_path: Path, wrapper: dict[str, Any], **options: Any) -> None:
    """The paper's claim, measured on an exact-score Gaussian mixture."""
    from ..io.files import atomic_path, atomic_write_json
    from ..studies.theory import TheoryConfig, format_table, run_theory, save_projection_plot
    from ..wrapper import ReGuidance

    with _options():
        cfg = TheoryConfig(**options, reguidance=ReGuidance().replace(**wrapper))
    _writable(json_path, "--json", folder=False)
    _writable(plot_path, "--plot", folder=False)
    _apart({"--plot": plot_path}, {"--json": json_path})
    report, clouds = run_theory(cfg, progress=True)
    click.echo(format_table(report))
    if json_path is not None:
        atomic_write_json(json_path, report)
        click.echo(f"report: {json_path}")
    with atomic_path(plot_path) as tmp:
        save_projection_plot(clouds, tmp)
    click.echo(f"picture: {plot_path}")


@cli.command("theory-sweep")
@flags(THEORY_SWEEP_OPTIONS)
def theory_sweep(candidates: int, seed: int, json_path: Path | None) -> None:
    """The sweep over the wrapper's options (sampler, t_end, step_size) that chose its defaults."""
    from ..io.files import atomic_write_json
    from ..studies.theory import TheoryConfig, format_sweep, sweep_theory

    with _options():
        cfg = TheoryConfig(candidates=candidates, seed=seed)
    _writable(json_path, "--json", folder=False)
    rows = sweep_theory(cfg)
    click.echo(format_sweep(rows))
    if json_path is not None:
        atomic_write_json(json_path, {"rows": rows})
        click.echo(f"report: {json_path}")


#: what ``reguidance train`` writes into ``--out`` (:mod:`reguidance.app.train`)
TRAIN_OUTPUTS = (
    "log.jsonl", "ema.safetensors", "model.json", "samples.png",
    *(f"checkpoint/{f}" for f in ("model.safetensors", "ema.safetensors", "state.pt", "config.json")),
)  # fmt: skip


@cli.command()
@flags(TRAIN_OPTIONS)
def train(out: Path, config_path: Path | None, resume: bool, threads: int | None, **flags: Any) -> None:
    """Train (or fine-tune) an eps-prediction ADM UNet (DDPM, linear 1000-step chain) on a data set or a folder."""
    import json

    from ..app.runs import own_folder
    from ..app.train import SMALL_UNET, TrainConfig
    from ..app.train import train as run_training
    from ..conventions import InputError
    from ..io.files import claim

    base: dict[str, object] = {}
    if config_path is not None:
        try:
            base = json.loads(config_path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"--config {config_path} is not valid JSON: {err}") from err
        if not isinstance(base, dict):
            raise InputError(
                f"--config {config_path} holds a JSON {type(base).__name__}; expected an object of TrainConfig fields"
            )
    given = {k: v for k, v in flags.items() if v is not None}
    for flag in ("steps", "batch_size", "size"):
        _positive(f"--{flag.replace('_', '-')}", given.get(flag))
    if given.get("sample_every", 0) < 0:
        raise InputError(f"--sample-every must be an integer >= 0, got {given['sample_every']}")
    unet_given = {
        key: given.pop(flag) for flag, key in (("size", "image_size"), ("dropout", "dropout")) if flag in given
    }
    channels = given.pop("channels", None)
    if channels is None and given.get("dataset", base.get("dataset")) == "emoji" and "unet" not in base:
        channels = "3"  # the colour set's default; a config's own UNet is left as it is
    if channels is not None:
        unet_given.update(in_channels=int(channels), out_channels=int(channels))
    base.update(given)
    if unet_given:
        unet = base.get("unet", SMALL_UNET)
        if not isinstance(unet, dict):
            raise InputError(f"--config {config_path}: unet must be an object of ADMUNet arguments, got {unet!r}")
        base["unet"] = {**unet, **unet_given}
    with _options(f"--config {config_path}" if config_path is not None else None):
        cfg = TrainConfig.from_dict(base).validate()
    if cfg.dataset.startswith("folder:"):
        _image_folder(Path(cfg.dataset[7:]), f"--data {cfg.dataset}")  # every file read through before any write
    _writable(out, "--out", folder=True, kind="train")
    _apart({"--out": out}, {"--config": config_path})
    _runtime(threads=threads)
    with own_folder(out, "train"):
        for made in TRAIN_OUTPUTS:  # train writes these itself: recorded first, a user's file of that name refused
            claim(out / made)
        facts = run_training(cfg, out, resume=resume)
    click.echo(
        f"steps {facts['steps_done']}, wall {facts['train_wall_s']} s, last loss {facts['last_loss']:.4f}; "
        f"EMA weights: {out / 'ema.safetensors'}"
    )


@cli.command()
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to look for checkpoint files (default: $REGUIDANCE_CHECKPOINTS, then ~/.cache/reguidance).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(checkpoint_dir: Path | None, as_json: bool) -> None:
    """List the known priors and whether each is present locally."""
    import json

    from ..priors.zoo import list_models

    rows = list_models(checkpoint_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'name':<20}{'kind':<12}{'params':>12}  {'present':<8} where / how to get it")
    for r in rows:
        if r["present"]:
            where = r["path"]
        elif r["kind"] == "embedded":
            where = "embedded asset missing from this build"
        else:
            where = f"download {r['url']}"
        click.echo(f"{r['name']:<20}{r['kind']:<12}{r['n_params']:>12,}  {'yes' if r['present'] else 'no':<8} {where}")
        if not r["present"] and r["searched"]:
            click.echo(f"{'':<55}as {r['filename']} into one of (searched in this order): {', '.join(r['searched'])}")


@cli.command("train-classifier")
@flags(TRAIN_CLASSIFIER_OPTIONS)
def train_classifier_cmd(
    dataset: str, out: Path, epochs: int, batch_size: int, lr: float, seed: int, threads: int | None
) -> None:
    """Train the metric CNN (features for FD-cls) on a dataset's train split; report val and test accuracy."""
    from ..evaluation.classifier import train_classifier
    from ..io.files import claim

    _positive("--epochs", epochs)
    _positive("--batch-size", batch_size)
    _writable(out, "--out", folder=True)
    made = [out / f"{dataset}_classifier.safetensors", out / f"{dataset}_classifier.json"]
    for path in made:
        _writable(path, "--out", folder=False)  # replaces only files it wrote
    _runtime(threads=threads)
    for path in made:  # train_classifier writes them itself: recorded in the folder's manifest first
        claim(path)
    facts = train_classifier(dataset, out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    click.echo(
        f"{dataset}: best epoch {facts['epoch']}, val accuracy {facts['val_accuracy']:.4f}, "
        f"test accuracy {facts['test_accuracy']:.4f}; {facts['file']} sha256 {facts['sha256']}"
    )


@cli.command()
@flags(SAMPLE_OPTIONS)
def sample(
    prior_name: str,
    n: int,
    steps: int,
    seed: int,
    batch_size: int,
    dataset: str | None,
    memorisation: bool,
    reference: str,
    clip: bool,
    threads: int | None,
    device: str,
    dtype: str,
    out: Path,
    json_path: Path | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """Draw unconditional samples from a prior and score them: FD-cls with the metric classifier (not FID) against
    its real-data floor, and memorisation against the training split."""
    import json
    import time

    from ..app.memory import check_fits_in_memory
    from ..app.runs import known_signal_shape, own_folder
    from ..app.sampling import (
        reference_images,
        sample_report,
        save_memorisation,
        save_samples,
        training_split,
        write_report,
    )
    from ..app.train import draw_samples
    from ..evaluation.classifier import evaluate_samples, load_classifier

    for flag, value in (("--n", n), ("--steps", steps), ("--batch-size", batch_size)):
        _positive(flag, value)
    dataset = dataset or prior_name
    if dataset not in ("mnist", "fashion_mnist", "emoji"):
        raise click.BadParameter(f"cannot tell the dataset of prior {prior_name!r}; pass it", param_hint="--dataset")
    _writable(out, "--out", folder=True, kind="sample")
    _writable(json_path, "--json", folder=False)
    _apart({"--out": out, "--json": json_path}, {})
    _runtime(device, threads)
    shape = known_signal_shape(prior_name)
    if shape is not None:  # a file's shape is known once it loads: draw_samples checks it then
        check_fits_in_memory("--n", n, shape)
    ref = reference_images(dataset, reference)
    train = training_split(dataset) if memorisation else None  # before the prior loads: a missing split says so now
    prior = _load_prior(prior_name, device, dtype)
    t0 = time.perf_counter()
    x = draw_samples(prior, n, steps=steps, seed=seed, batch_size=batch_size, clip=clip, progress=True).cpu()
    wall = time.perf_counter() - t0
    settings = {
        "prior": prior_name,
        "dataset": dataset,
        "reference": reference,
        "n": n,
        "steps": steps,
        "seed": seed,
        "sampler": "ddim eta=0" + (", x0 clipped" if clip else ""),
        "dtype": dtype,
    }
    report = sample_report(settings, evaluate_samples(load_classifier(dataset), x, ref), wall)
    memorised: dict[str, Any] | None = None
    with own_folder(out, "sample"):
        save_samples(x, out)
        if train is not None:
            memorised = save_memorisation(x, ref, train, out, prior_name, dataset)
    click.echo(json.dumps(report, indent=2))
    if memorised is not None:
        report["memorisation"] = m = memorised
        click.echo(
            f"memorisation: {m['near_copy_share']:.1%} of samples closer to a training image than 99% of the "
            f"reference images are (about 1% without copies); picture: {out / 'memorisation.png'}"
        )
    if json_path is not None:
        write_report(report, json_path)
        click.echo(f"report: {json_path}")


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
    loader = partial(_load_prior, **fast_paths(use_compile, compile_mode, channels_last))
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


@cli.command()
@flags(SPEED_OPTIONS)
def speed(
    prior_name: str,
    device: str,
    dtype: str,
    threads: int | None,
    batch_size: int,
    dps_steps: int,
    inversion_steps: int,
    daps_annealing_steps: int,
    repeats: int,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    json_path: Path | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """Per-image time of DPS, DAPS, the inversion and ReGuidance next to the network's floor."""
    from ..io.files import atomic_write_json
    from ..studies.speed import SpeedConfig, format_speed, measure_speed, timing_prior

    with _options():
        cfg = SpeedConfig(
            batch_size=batch_size,
            dps_steps=dps_steps,
            inversion_steps=inversion_steps,
            daps_annealing_steps=daps_annealing_steps,
            repeats=repeats,
        )
    _writable(json_path, "--json", folder=False)
    _apart({"--json": json_path}, {})
    _runtime(device, threads)
    optimize = fast_paths(use_compile, compile_mode, channels_last)
    prior = timing_prior(prior_name, device, dtype, load=_load_prior, prior_config=prior_config, **optimize)
    report = measure_speed(prior, cfg, dtype)
    click.echo(format_speed(report))
    if json_path is not None:
        atomic_write_json(json_path, report)


@cli.command(cls=WrapperCommand)
@flags(RESTORE_OPTIONS)
def restore(
    prior_name: str,
    threads: int | None,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    **options: Any,
) -> None:
    """ReGuidance on your own images: writes restored PNGs and per-image consistency before and after."""
    from functools import partial

    from ..app.restore import RestoreRequest, plan_restore, run_restore

    request = RestoreRequest(prior=prior_name, **options)
    with _options():
        plan = plan_restore(request)
    out = request.out
    _writable(out, "--out", folder=True, kind="restore")
    _runtime(request.device, threads)
    loader = partial(_load_prior, **fast_paths(use_compile, compile_mode, channels_last))
    report = run_restore(plan, loader, fit_batch=_fit_batch)
    if report is None:  # a rank > 0 under torchrun
        return
    rows = report["images"]
    before = sum(r["consistency_before"] for r in rows) / len(rows)
    after = sum(r["consistency_after"] for r in rows) / len(rows)
    click.echo(
        f"{len(rows)} images restored into {out / 'restored'}; mean consistency {before:.2f} -> {after:.2f} "
        f"(1 = explains the measurement up to its noise); report: {out / 'report.json'}; pictures: "
        f"{out / 'grid.png'}, {out / 'report.html'}"
    )


#: the demo's tasks: identifiable ones (a box at a random position, x4 and x8 super-resolution), so its pictures show
#: what the measurement allows; its methods: the pseudo-inverse, DPS and DAPS under the benchmark's CPU protocol
DEMO_TASKS = ("box20", "sr4", "sr8")
DEMO_METHODS = ("pinv", "dps", "daps")


@cli.command()
@flags(DEMO_OPTIONS)
def demo(
    out: Path, n_images: int, prior_name: str, seed: int, device: str, dtype: str, threads: int | None, overwrite: bool
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
    prior = _load_prior(prior_name, device, dtype)
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
    prior = _load_prior(f["prior_name"], f["device"], f["dtype"])
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group under the error contract of this module's docstring; returns the exit
    status (0 done, 2 user error, 130 interrupted; a bug raises with its traceback)."""
    try:
        cli.main(args=argv, prog_name="reguidance", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        click.echo("error: interrupted; finished work is kept, rerun the command to resume", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        return 2
    except Exception as e:
        from ..conventions import InputError

        if isinstance(e, (InputError, *_user_errors())):
            click.echo(f"error: {_one_line(e)}", err=True)
            return 2
        raise
    return 0


def run() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())


if __name__ == "__main__":
    run()
