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

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__

if TYPE_CHECKING:
    from .priors.base import Prior

#: precision names of ``--dtype`` (the keys of :data:`reguidance.conventions.DTYPES`; kept literal so that
#: ``--help`` and usage errors do not import torch)
DTYPE_NAMES = ("fp32", "bf16", "fp16")

_DEVICE = click.option(
    "--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (checked before any work starts)."
)
_DTYPE = click.option(
    "--dtype",
    type=click.Choice(DTYPE_NAMES),
    default="fp32",
    show_default=True,
    help="The network's precision (autocast); the samplers' arithmetic stays in fp32.",
)
_THREADS = click.option(
    "--threads", type=int, default=None, help="torch.set_num_threads for this run (default: torch's choice)."
)
_OVERWRITE = click.option(
    "--overwrite",
    is_flag=True,
    help="Discard what an earlier run wrote into --out (results, pictures, reports) and start afresh; without it a "
    "rerun with the same settings resumes, and one with other settings is refused.",
)


def threads_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--threads``, for commands without a network device (training)."""
    return _THREADS(fn)


def runtime_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--device``, ``--dtype`` and ``--threads``: the one definition every command that runs a network uses."""
    return _DEVICE(_DTYPE(_THREADS(fn)))


def _check_prior_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``--prior-config``: read and checked while the command line is parsed (before any work): a missing file, a
    suffix other than .json / .yaml / .yml, or a file that does not parse to a mapping is a usage error."""
    if value is None:
        return None
    from .conventions import InputError
    from .priors.adm import read_config_file

    try:
        read_config_file(value)
    except (InputError, OSError) as err:
        raise click.BadParameter(" ".join(str(err).split()), ctx=ctx, param=param) from err
    return value


_PRIOR_CONFIG = click.option(
    "--prior-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_check_prior_config,
    help="JSON or YAML file of guided-diffusion flags (as DPS's model_config.yaml) for a checkpoint whose keys do "
    "not fix its whole architecture (e.g. the number of heads); its sha256 joins the run's identity.",
)
_CHECKPOINT_DIR = click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder searched first for a known model's checkpoint file (then $REGUIDANCE_CHECKPOINTS, then "
    "~/.cache/reguidance).",
)


def prior_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--prior-config`` and ``--checkpoint-dir``: the one definition every command with ``--prior`` uses; the
    command receives them as ``prior_config`` and ``checkpoint_dir`` and passes them on explicitly."""
    return _PRIOR_CONFIG(_CHECKPOINT_DIR(fn))


def _prior_source() -> tuple[Path | None, Path | None]:
    """``(--prior-config, --checkpoint-dir)`` as parsed for the running command (``None`` where not given or not
    offered), for :func:`_load_prior`."""
    ctx = click.get_current_context(silent=True)
    params = ctx.params if ctx is not None else {}
    return params.get("prior_config"), params.get("checkpoint_dir")


def _fit_batch(prior: Prior, batch_size: int, device: str) -> int:
    """The batch a guided run of ``prior`` uses: ``batch_size``, or the largest that fits the free memory of
    ``device`` with a one-line notice (:func:`reguidance.memory.fit_batch`; an ``InputError`` when one image
    does not fit)."""
    from .memory import fit_batch

    fitted, notice = fit_batch(prior, batch_size, device)
    if notice is not None:
        click.echo(f"note: {notice}", err=True)
    return fitted


def _runtime(device: str = "cpu", threads: int | None = None) -> str:
    """Check ``--device`` and ``--threads`` (the one place) and apply ``--threads``; returns the device."""
    import torch

    from .conventions import check_device, check_positive_int

    check_device(device, "--device")
    if threads is not None:
        torch.set_num_threads(check_positive_int("--threads", threads))
    return device


def _flagged(message: str) -> str:
    """``message`` with a leading parameter name replaced by the flag the user typed (``num_steps`` stays)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return message
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or not param.name:
            continue
        for name in dict.fromkeys((param.name, param.name.replace("_", "-"))):
            if message.startswith((f"{name} ", f"{name}:", f"{name}=")):
                return param.opts[0] + message[len(name) :]
    return message


@contextmanager
def _options(flag: str | None = None) -> Iterator[None]:
    """Around code that checks what the user typed: any ``ValueError`` there is the user's, an ``InputError`` named
    by ``flag`` or by the option its message starts with."""
    from .conventions import InputError

    try:
        yield
    except ValueError as err:
        message = " ".join(str(err).split())
        raise InputError(f"{flag}: {message}" if flag else _flagged(message)) from err


def _positive(flag: str, value: int | None) -> None:
    from .conventions import check_positive_int

    if value is not None:
        check_positive_int(flag, value)


def _writable(path: Path | None, flag: str, *, folder: bool) -> None:
    """Refuse an output path that cannot be written, before any work: a file where a folder is wanted (or the
    reverse), or a location under a file, a read-only folder or one without permission."""
    from .conventions import InputError

    if path is None:
        return
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} is a file; expected a folder")
    if not folder and path.is_dir():
        raise InputError(f"{flag} {path} is a folder; expected a file name")
    probe = path if folder and path.is_dir() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{flag} {path}: {probe} is a file, so nothing can be written under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: cannot write into {probe} (read-only or no permission)")


def _load_prior(name: str, device: str, dtype: str, flag: str = "--prior", **optimize: Any) -> Prior:
    """The prior ``name`` (a known model, a weights file or a diffusers folder) on ``device`` at ``dtype``, with
    the command's ``--prior-config`` and ``--checkpoint-dir`` (:func:`prior_options`; ``optimize``: further
    options of ``optimize``); a missing, corrupt, non-float or non-finite weights file is an ``InputError`` naming
    ``flag``."""
    import torch

    from .conventions import DTYPES, InputError
    from .priors.zoo import MODELS, load_prior

    path = Path(name).expanduser()
    if name not in MODELS and path.is_dir():
        from .priors.diffusers import is_diffusers_folder

        if not is_diffusers_folder(path):
            raise InputError(
                f"{flag} {name} is a folder but not a diffusers model folder (config.json at its top or in unet/); "
                "expected a .pt, .pth or .safetensors file, a known model or a diffusers folder"
            )
    config, checkpoint_dir = _prior_source()
    with _options(f"{flag} {name}"):
        try:
            prior = load_prior(name, config=config, device=device, checkpoint_dir=checkpoint_dir)
        except _user_errors(RuntimeError) as err:  # corrupt file, or tensors load_state_dict refuses (int32)
            if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
                raise
            raise ValueError(f"the weights do not load: {' '.join(str(err).split())[:300]}") from err
    tensors = [*prior.parameters(), *prior.buffers()]
    if any(not t.is_floating_point() for t in prior.parameters()):
        raise InputError(f"{flag} {name}: the weights are not floating-point numbers")
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors if t.is_floating_point())
    if bad:
        raise InputError(f"{flag} {name}: the weights hold {bad} NaN or Inf values (a corrupt or diverged checkpoint)")
    return prior.optimize(DTYPES[dtype], **optimize)


def _rank_from_env() -> int:
    """This process's rank under ``torchrun`` (before the process group is joined), else 0."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reguidance")
def cli() -> None:
    """ReGuidance: make diffusion posterior samplers solve hard inverse problems."""


@cli.command()
@click.option("--dim", default=16, show_default=True, help="Dimension d of the mixture.")
@click.option("--modes", default=4, show_default=True, help="Number of mixture components K.")
@click.option("--rank", default=2, show_default=True, help="Rank of each component's principal subspace.")
@click.option("--measurements", default=2, show_default=True, help="Number of linear measurements m (m < d).")
@click.option("--noise", default=0.5, show_default=True, help="Measurement noise sigma_y.")
@click.option("--candidates", default=256, show_default=True, help="Number of problems (one candidate each).")
@click.option(
    "--seed", default=1, show_default=True, help="Seeds the problems; theory-sweep chose the defaults on seed 0."
)
@click.option("--testbed-seed", default=0, show_default=True, help="Seeds the mixture and the measurement matrix.")
@click.option(
    "--candidate",
    "candidate",
    type=click.Choice(["dps", "pinv"]),
    default="dps",
    show_default=True,
    help="Baseline producing the candidates: DPS with few steps, or the pseudo-inverse.",
)
@click.option("--candidate-steps", default=10, show_default=True, help="Steps of the candidate DPS.")
@click.option("--inversion-steps", default=100, show_default=True)
@click.option(
    "--inversion-method", type=click.Choice(["euler", "heun", "fixed_point"]), default="euler", show_default=True
)
@click.option("--t-end", default=0.3, show_default=True, help="Inversion depth, fraction of the chain in (0, 1].")
@click.option("--dps-steps", default=100, show_default=True)
@click.option("--step-size", default=0.2, show_default=True, help="DPS step size (zeta).")
@click.option(
    "--sampler",
    type=click.Choice(["ddim", "ddpm"]),
    default="ddpm",
    show_default=True,
    help="DPS steps after the inversion.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report as JSON here.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("runs/theory/projection.png"),
    show_default=True,
    help="Where to save the picture.",
)
def theory(json_path: Path | None, plot_path: Path, **options: Any) -> None:
    """The paper's claim, measured on an exact-score Gaussian mixture."""
    from .files import atomic_path, atomic_write_json
    from .theory import TheoryConfig, format_table, run_theory, save_projection_plot

    with _options():
        cfg = TheoryConfig(**options)
    _writable(json_path, "--json", folder=False)
    _writable(plot_path, "--plot", folder=False)
    report, clouds = run_theory(cfg, progress=True)
    click.echo(format_table(report))
    if json_path is not None:
        atomic_write_json(json_path, report)
        click.echo(f"report: {json_path}")
    with atomic_path(plot_path) as tmp:
        save_projection_plot(clouds, tmp)
    click.echo(f"picture: {plot_path}")


@cli.command("theory-sweep")
@click.option("--candidates", default=128, show_default=True, help="Problems per configuration.")
@click.option("--seed", default=0, show_default=True, help="Seeds the problems (the reported theory table uses 1).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def theory_sweep(candidates: int, seed: int, json_path: Path | None) -> None:
    """The sweep over the wrapper's options (sampler, t_end, step_size) that chose its defaults."""
    from .files import atomic_write_json
    from .theory import TheoryConfig, format_sweep, sweep_theory

    with _options():
        cfg = TheoryConfig(candidates=candidates, seed=seed)
    _writable(json_path, "--json", folder=False)
    rows = sweep_theory(cfg)
    click.echo(format_sweep(rows))
    if json_path is not None:
        atomic_write_json(json_path, {"rows": rows})
        click.echo(f"report: {json_path}")


@cli.command()
@click.option(
    "--dataset",
    type=click.Choice(["mnist", "fashion_mnist"]),
    default=None,
    help="Training data (train split). Default: the config file's, else mnist.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for checkpoints, the log, the EMA weights and the sample grid.",
)
@click.option("--steps", type=int, default=None, help="Number of optimizer steps (default 100000).")
@click.option("--batch-size", type=int, default=None, help="Images per step (default 32).")
@click.option("--minutes", type=float, default=None, help="Stop cleanly (and save) after this much training.")
@click.option("--seed", type=int, default=None, help="Seed of data order, noise and initialisation (default 0).")
@click.option("--lr", type=float, default=None, help="AdamW learning rate (default 3e-4).")
@click.option("--ema-decay", type=float, default=None, help="EMA decay (default 0.999, with warm-up).")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast (faster on CPUs with AMX / AVX512-BF16).")
@threads_option
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSON file of TrainConfig fields; flags override it.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the last checkpoint in --out; --steps and --minutes (counted from the run's start) "
    "apply anew, every other setting comes from the checkpoint.",
)
def train(out: Path, config_path: Path | None, resume: bool, threads: int | None, **flags: Any) -> None:
    """Train an eps-prediction ADM UNet (DDPM, linear 1000-step chain) on MNIST or Fashion-MNIST."""
    import json

    from .conventions import InputError
    from .train import TrainConfig
    from .train import train as run_training

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
    base.update({k: v for k, v in flags.items() if v is not None})
    for flag in ("steps", "batch_size"):
        _positive(f"--{flag.replace('_', '-')}", flags.get(flag))
    with _options(f"--config {config_path}" if config_path is not None else None):
        cfg = TrainConfig.from_dict(base).validate()
    _writable(out, "--out", folder=True)
    _runtime(threads=threads)
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

    from .priors.zoo import list_models

    rows = list_models(checkpoint_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'name':<20}{'kind':<12}{'params':>12}  {'present':<8} where / how to get it")
    for r in rows:
        where = r["path"] if r["present"] else (r.get("url") or "embedded asset missing from this build")
        click.echo(f"{r['name']:<20}{r['kind']:<12}{r['n_params']:>12,}  {'yes' if r['present'] else 'no':<8} {where}")


@cli.command("train-classifier")
@click.option("--dataset", type=click.Choice(["mnist", "fashion_mnist"]), required=True)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for <dataset>_classifier.safetensors and its .json facts.",
)
@click.option("--epochs", default=6, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=2e-3, show_default=True, help="Peak learning rate (one-cycle schedule).")
@click.option("--seed", default=0, show_default=True)
@threads_option
def train_classifier_cmd(
    dataset: str, out: Path, epochs: int, batch_size: int, lr: float, seed: int, threads: int | None
) -> None:
    """Train the metric CNN (features for FD-cls) on a dataset's train split; report val and test accuracy."""
    from .classifier import train_classifier

    _positive("--epochs", epochs)
    _positive("--batch-size", batch_size)
    _writable(out, "--out", folder=True)
    _runtime(threads=threads)
    facts = train_classifier(dataset, out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    click.echo(
        f"{dataset}: best epoch {facts['epoch']}, val accuracy {facts['val_accuracy']:.4f}, "
        f"test accuracy {facts['test_accuracy']:.4f}; {facts['file']} sha256 {facts['sha256']}"
    )


@cli.command()
@click.option("--prior", "prior_name", required=True, help="A known model name (mnist, fashion_mnist) or a file.")
@click.option("--n", "n", default=1000, show_default=True, help="Number of samples.")
@click.option("--steps", default=50, show_default=True, help="DDIM steps (eta = 0).")
@click.option("--seed", default=0, show_default=True, help="Sample i starts from noise seeded by (seed, i).")
@click.option("--batch-size", default=250, show_default=True, help="Samples per batch (does not change results).")
@click.option(
    "--dataset",
    type=click.Choice(["mnist", "fashion_mnist"]),
    default=None,
    help="Reference data and metric classifier (default: the prior's name).",
)
@click.option(
    "--reference",
    type=click.Choice(["test", "subset"]),
    default="test",
    show_default=True,
    help="Compare with the full test split or the committed 256-image test subset.",
)
@click.option(
    "--clip/--no-clip",
    default=True,
    show_default=True,
    help="Clamp each step's x0 estimate to [-1, 1] (guided-diffusion's clip_denoised).",
)
@runtime_options
@prior_options
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for samples.png (the first 100 samples) and samples.npz (all, uint8).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report (fd_cls, fd_cls_floor, class_histogram, mean_confidence) here.",
)
def sample(
    prior_name: str,
    n: int,
    steps: int,
    seed: int,
    batch_size: int,
    dataset: str | None,
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
    """Draw unconditional samples from a prior and score them with the metric classifier (FD-cls, not FID)."""
    import json
    import time

    from .classifier import evaluate_samples, load_classifier
    from .data import load_dataset, load_test_subset
    from .sampling_report import sample_report, save_samples, write_report
    from .train import draw_samples

    for flag, value in (("--n", n), ("--steps", steps), ("--batch-size", batch_size)):
        _positive(flag, value)
    dataset = dataset or prior_name
    if dataset not in ("mnist", "fashion_mnist"):
        raise click.BadParameter(f"cannot tell the dataset of prior {prior_name!r}; pass it", param_hint="--dataset")
    _writable(out, "--out", folder=True)
    _writable(json_path, "--json", folder=False)
    _runtime(device, threads)
    prior = _load_prior(prior_name, device, dtype)
    t0 = time.perf_counter()
    x = draw_samples(prior, n, steps=steps, seed=seed, batch_size=batch_size, clip=clip, progress=True).cpu()  # type: ignore[arg-type]  # annotated ADMPrior; uses only the Prior interface
    wall = time.perf_counter() - t0
    save_samples(x, out)
    ref = load_test_subset(dataset)[0] if reference == "subset" else load_dataset(dataset, "test")[0]
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
    click.echo(json.dumps(report, indent=2))
    if json_path is not None:
        write_report(report, json_path)
        click.echo(f"report: {json_path}")


def _task_list(value: str, flag: str) -> list[str]:
    """The tasks of ``--tasks`` (:func:`reguidance.bench.protocol.split_tasks`), each parsed (an ``InputError``
    naming a malformed one) before anything loads."""
    from .bench.protocol import get_task, split_tasks
    from .conventions import InputError

    names = split_tasks(value)
    if not names:
        raise InputError(f"{flag} names nothing (got {value!r}); expected task names separated by ';' or ','")
    for name in names:
        get_task(name)
    return names


def _csv(value: str, flag: str) -> list[str]:
    """The names in a comma-separated option; an empty list is an ``InputError`` naming ``flag``."""
    from .conventions import InputError

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise InputError(f"{flag} names nothing (got {value!r}); expected comma-separated names")
    return names


@cli.command()
@click.option("--prior", "prior_name", default="mnist", show_default=True, help="Embedded prior name, or a path.")
@click.option("--dataset", default=None, help="Test images' dataset (default: the embedded prior's).")
@click.option(
    "--data",
    default=None,
    help="folder:PATH: benchmark on a folder of PNG/JPEG images instead (centre-cropped, resized to the prior).",
)
@click.option(
    "--tasks",
    default="box20c,sr8",
    show_default=True,
    help="Comma-separated tasks: names (box16, box20, box16c, box20c, sr4, sr8, deblur), presets (paper:box128c, "
    "paper:box128, paper:sr8, paper:sr16, paper:gauss, paper:motion) or specs (box:0.5c, sr:16,bicubic, "
    "blur:gauss,std=3; a spec's own options follow it).",
)
@click.option(
    "--methods",
    default="pinv,dps",
    show_default=True,
    help="Comma-separated: dps, daps, diffpir, reddiff, pigdm, pinv, folder:PATH.",
)
@click.option("--ids", default="0:16", show_default=True, help="Test-split indices A:B (A to B-1).")
@click.option("--seed", default=0, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option(
    "--protocol",
    type=click.Choice(["reference", "cpu"]),
    default="reference",
    show_default=True,
    help="Budgets and defaults table: the papers' budgets, or the reduced, validation-tuned CPU ones.",
)
@click.option("--steps", type=int, default=None, help="Override every method's step count (quick runs).")
@click.option(
    "--ablations",
    is_flag=True,
    help="Also run the ablations that tell where ReGuidance's gains come from: the candidate re-noised to t_end "
    "then the same DPS (renoise), the same DPS from fresh noise (fresh), the base method given the same extra "
    "network evaluations (more).",
)
@click.option(
    "--inversion-steps",
    type=int,
    default=None,
    help="Override the wrapper's inversion steps (default: the protocol's).",
)
@click.option("--dps-steps", type=int, default=None, help="Override the wrapper's DPS steps (default: the protocol's).")
@click.option(
    "--lpips-alexnet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth): with --lpips-lin, adds LPIPS.",
)
@click.option(
    "--lpips-lin",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="LPIPS v0.1 linear heads (the lpips package's weights/v0.1/alex.pth).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench"), show_default=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write summary.json here.",
)
@runtime_options
@prior_options
@_OVERWRITE
def bench(
    prior_name: str,
    dataset: str | None,
    data: str | None,
    tasks: str,
    methods: str,
    ids: str,
    seed: int,
    batch_size: int,
    protocol: str,
    steps: int | None,
    ablations: bool,
    inversion_steps: int | None,
    dps_steps: int | None,
    lpips_alexnet: Path | None,
    lpips_lin: Path | None,
    out: Path,
    json_path: Path | None,
    device: str,
    dtype: str,
    threads: int | None,
    overwrite: bool,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """Each method with and without ReGuidance on test images; resumable (rerun to continue)."""
    from .bench.report import format_markdown
    from .bench.session import BenchRequest, plan_benchmark, run_benchmark
    from .tasks import parse_ids

    request = BenchRequest(
        out,
        _task_list(tasks, "--tasks"),
        _csv(methods, "--methods"),
        parse_ids(ids),
        prior=prior_name,
        dataset=dataset,
        data=data,
        seed=seed,
        batch_size=batch_size,
        protocol=protocol,
        steps=steps,
        ablations=ablations,
        inversion_steps=inversion_steps,
        dps_steps=dps_steps,
        lpips_alexnet=lpips_alexnet,
        lpips_lin=lpips_lin,
        json_path=json_path,
        device=device,
        dtype=dtype,
        overwrite=overwrite,
        prior_config=prior_config,
        checkpoint_dir=checkpoint_dir,
    )
    with _options():
        plan = plan_benchmark(request)
    _writable(out, "--out", folder=True)
    _writable(json_path, "--json", folder=False)
    _runtime(device, threads)
    result = run_benchmark(plan, _load_prior, fit_batch=_fit_batch)
    if result is None:  # a rank > 0 under torchrun
        return
    click.echo(format_markdown(result.summary))
    for note in result.notes:
        click.echo(f"note: {note}")
    for g in result.grids:
        click.echo(f"grid: {g}")
    click.echo(f"plot: {result.plot}")


@cli.command("bench-report")
@click.option(
    "--run",
    "runs",
    multiple=True,
    required=True,
    help="NAME=DIR: a finished benchmark folder (with summary.json and config.json); repeatable.",
)
@click.option(
    "--into",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="Markdown file whose '<!-- tables:begin -->' ... '<!-- tables:end -->' section is replaced.",
)
@click.option(
    "--pictures",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also save one overview picture per run here (benchmark_NAME.png): one method's grids on every task.",
)
@click.option("--picture-method", default="dps", show_default=True, help="The method the overview pictures show.")
@click.option(
    "--summary-into",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Also write the short summary between '<!-- summary:begin -->' and '<!-- summary:end -->' of this file.",
)
def bench_report(
    runs: tuple[str, ...], into: Path, pictures: Path | None, picture_method: str, summary_into: Path | None
) -> None:
    """Write the tables of finished benchmark runs into a Markdown file (e.g. BENCHMARK.md)."""
    from .bench.report import benchmark_tables, readme_summary, replace_marked, save_method_overview
    from .conventions import InputError

    folders = {}
    for run in runs:
        name, sep, folder = run.partition("=")
        path = Path(folder)
        if not sep or not name:
            raise InputError(f"--run looks like NAME=DIR, got {run!r}")
        if not (path / "summary.json").is_file() or not (path / "config.json").is_file():
            raise InputError(f"--run {run}: {path} has no summary.json and config.json (run `reguidance bench` there)")
        folders[name] = path
    with _options("--into"):
        replace_marked(into, benchmark_tables(folders))
    click.echo(f"tables written into {into}")
    if summary_into is not None:
        with _options("--summary-into"):
            replace_marked(summary_into, readme_summary(folders), "<!-- summary:begin -->", "<!-- summary:end -->")
        click.echo(f"summary written into {summary_into}")
    if pictures is not None:
        for run_name, run_folder in folders.items():
            made = save_method_overview(
                run_folder, picture_method, pictures / f"benchmark_{run_name}.png", f"{run_name}: {picture_method}"
            )
            click.echo(f"picture: {made}" if made else f"no {picture_method} grids in {run_folder}")


@cli.command()
@click.option(
    "--prior",
    "prior_name",
    default="mnist",
    show_default=True,
    help="Embedded prior, a checkpoint path, or a known configuration with random weights (ffhq_10m).",
)
@runtime_options
@prior_options
@click.option("--batch-size", default=16, show_default=True)
@click.option("--dps-steps", default=20, show_default=True, help="DPS steps timed (1000 in a real run).")
@click.option("--inversion-steps", default=10, show_default=True)
@click.option("--daps-annealing-steps", default=4, show_default=True)
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the network.")
@click.option(
    "--compile-mode",
    type=click.Choice(["default", "reduce-overhead", "max-autotune"]),
    default="default",
    show_default=True,
    help="torch.compile mode; reduce-overhead adds CUDA graphs on GPU.",
)
@click.option("--channels-last", is_flag=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def speed(
    prior_name: str,
    device: str,
    dtype: str,
    threads: int | None,
    batch_size: int,
    dps_steps: int,
    inversion_steps: int,
    daps_annealing_steps: int,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    json_path: Path | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """Per-image time of DPS, DAPS, the inversion and ReGuidance next to the network's floor."""
    from .files import atomic_write_json
    from .speed import SpeedConfig, format_speed, measure_speed, timing_prior

    with _options():
        cfg = SpeedConfig(
            batch_size=batch_size,
            dps_steps=dps_steps,
            inversion_steps=inversion_steps,
            daps_annealing_steps=daps_annealing_steps,
        )
    _writable(json_path, "--json", folder=False)
    _runtime(device, threads)
    optimize: dict[str, Any] = {"compile": use_compile, "channels_last": channels_last, "compile_mode": compile_mode}
    prior = timing_prior(prior_name, device, dtype, load=_load_prior, prior_config=prior_config, **optimize)
    report = measure_speed(prior, cfg, dtype)
    click.echo(format_speed(report))
    if json_path is not None:
        atomic_write_json(json_path, report)


@cli.command()
@click.option("--prior", "prior_name", default="mnist", show_default=True, help="Embedded prior name, or a path.")
@click.option(
    "--task",
    required=True,
    help="A name (box16, box20, box16c, box20c, sr4, sr8, deblur), a preset (paper:box128c, paper:box128, "
    "paper:sr8, paper:sr16, paper:gauss, paper:motion) or a spec (box:0.5c, sr:16, blur:gauss,std=3, mask:PATH; "
    "see reguidance.bench.protocol).",
)
@click.option(
    "--image",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Clean image file or folder: the measurement is simulated. Images must have the prior's size (see --resize).",
)
@click.option(
    "--measurement",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Measurement image file or folder (y), of the task's measurement size (never resized).",
)
@click.option(
    "--candidate",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Candidate image file or folder (one per input).",
)
@click.option("--method", default=None, help="Make the candidates with this method instead (dps, daps, pinv, ...).")
@click.option("--steps", type=int, default=None, help="Step count of --method.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--t-end", type=float, default=None, help="Inversion depth (default: the wrapper's).")
@click.option("--inversion-steps", type=int, default=None)
@click.option("--dps-steps", type=int, default=None)
@click.option("--step-size", type=float, default=None, help="The wrapper's DPS step size (zeta).")
@click.option(
    "--resize",
    is_flag=True,
    help="Resize --image and --candidate images of another size to the prior's (Pillow bicubic, antialiased when "
    "shrinking; aspect ratio not kept); without it such an image is an error. Measurements are never resized.",
)
@click.option(
    "--samples",
    default=1,
    show_default=True,
    help="K > 1: K restorations per input from one latent; their per-pixel standard deviation goes to OUT/std/ "
    "(white = 0.5 or more) and its mean to the report. The first is the restoration written.",
)
@runtime_options
@prior_options
@_OVERWRITE
def restore(
    prior_name: str,
    task: str,
    image: Path | None,
    measurement: Path | None,
    candidate: Path | None,
    method: str | None,
    steps: int | None,
    out: Path,
    seed: int,
    batch_size: int,
    t_end: float | None,
    inversion_steps: int | None,
    dps_steps: int | None,
    step_size: float | None,
    resize: bool,
    samples: int,
    device: str,
    dtype: str,
    threads: int | None,
    overwrite: bool,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """ReGuidance on your own images: writes restored PNGs and per-image consistency before and after."""
    from .restore import RestoreRequest, plan_restore, run_restore

    request = RestoreRequest(
        task,
        out,
        prior=prior_name,
        image=image,
        measurement=measurement,
        candidate=candidate,
        method=method,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        t_end=t_end,
        inversion_steps=inversion_steps,
        dps_steps=dps_steps,
        step_size=step_size,
        resize=resize,
        samples=samples,
        device=device,
        dtype=dtype,
        overwrite=overwrite,
        prior_config=prior_config,
        checkpoint_dir=checkpoint_dir,
    )
    with _options():
        plan = plan_restore(request)
    _writable(out, "--out", folder=True)
    _runtime(device, threads)
    report = run_restore(plan, _load_prior, fit_batch=_fit_batch)
    if report is None:  # a rank > 0 under torchrun
        return
    rows = report["images"]
    before = sum(r["consistency_before"] for r in rows) / len(rows)
    after = sum(r["consistency_after"] for r in rows) / len(rows)
    click.echo(
        f"{len(rows)} images restored into {out / 'restored'}; mean consistency {before:.2f} -> {after:.2f} "
        f"(1 = explains the measurement up to its noise); report: {out / 'report.json'}"
    )


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--n", "n_images", default=32, show_default=True, help="Test images per task.")
@click.option("--seed", default=0, show_default=True)
@runtime_options
@_OVERWRITE
def demo(out: Path, n_images: int, seed: int, device: str, dtype: str, threads: int | None, overwrite: bool) -> None:
    """The main job: the pseudo-inverse, DPS and DAPS on hard MNIST tasks (20x20 centred box, x8 super-resolution),
    each with and without ReGuidance, under the benchmark's CPU protocol (reduced budgets, validation-tuned options)."""
    import time

    from .bench.report import format_markdown
    from .bench.session import BenchRequest, plan_benchmark, run_benchmark

    _positive("--n", n_images)
    start = time.perf_counter()
    request = BenchRequest(
        out,
        ["box20c", "sr8"],
        ["pinv", "dps", "daps"],
        range(n_images),
        seed=seed,
        batch_size=min(n_images, 16),
        protocol="cpu",
        device=device,
        dtype=dtype,
        overwrite=overwrite,
        notes=False,
        fit_batch=False,
        overview=f"MNIST, embedded prior; {n_images} test images per task",
    )
    plan = plan_benchmark(request)
    _writable(out, "--out", folder=True)
    _runtime(device, threads)
    result = run_benchmark(plan, _load_prior)
    assert result is not None  # demo runs in one process
    click.echo(format_markdown(result.summary))
    click.echo(f"{time.perf_counter() - start:.0f} s; picture: {out / 'demo.png'}")


def _echo_sweep(entry: dict[str, Any]) -> None:
    for stage in ("method_sweep", "wrapper_sweep"):
        for r in entry[stage]:
            click.echo(
                f"  {stage.split('_')[0]:>7}  "
                + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
            )
    click.echo(f"{entry['task']}/{entry['method']}: method {entry['method_options']}, reguidance {entry['reguidance']}")


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
    click.option("--seed", default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
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


def _sweep(
    prior_name: str,
    dataset: str | None,
    ids: str,
    protocol: str,
    seed: int,
    batch_size: int,
    runtime: dict[str, Any],
    out: Path,
    pairs: list[tuple[str, str]],
    method_grids: dict[str, str],
    wrapper_grid: str,
) -> list[dict[str, Any]]:
    from .bench.tune import check_sweep, sweep, validation_split

    _positive("--batch-size", batch_size)
    with _options():
        grids, wgrid = check_sweep(pairs, method_grids, wrapper_grid)
    images, id_range = validation_split(prior_name, dataset, ids)
    _writable(out, "--out", folder=True)
    _runtime(runtime["device"], runtime["threads"])
    prior = _load_prior(prior_name, runtime["device"], runtime["dtype"])
    batch_size = _fit_batch(prior, batch_size, runtime["device"])
    entries = sweep(
        prior,
        images,
        id_range,
        pairs,
        out,
        protocol=protocol,
        method_grids=grids,
        wrapper_grid=wgrid,
        seed=seed,
        batch_size=batch_size,
    )
    for e in entries:
        _echo_sweep(e)
    return entries


@cli.command()
@click.option("--task", required=True)
@click.option("--method", required=True)
@click.option(
    "--grid",
    default=None,
    help="ReGuidanceConfig fields and values: 'FIELD=V1,V2;FIELD=...' (default: the grid of tune-defaults).",
)
@click.option("--method-grid", default="", help="The method's step size, e.g. 'step_size=1,3,10' for dps.")
@_tune_options
def tune(
    task: str,
    method: str,
    grid: str | None,
    method_grid: str,
    prior_name: str,
    dataset: str | None,
    ids: str,
    protocol: str,
    seed: int,
    batch_size: int,
    device: str,
    dtype: str,
    threads: int | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
    out: Path,
) -> None:
    """Choose one (task, method)'s step size and wrapper options on validation images (never the test split)."""
    from .bench.tune import DEFAULT_WRAPPER_GRID

    _sweep(
        prior_name,
        dataset,
        ids,
        protocol,
        seed,
        batch_size,
        {"device": device, "dtype": dtype, "threads": threads},
        out,
        [(task, method)],
        {method: method_grid} if method_grid else {},
        grid or DEFAULT_WRAPPER_GRID,
    )
    click.echo(f"saved: {out / f'{task}_{method}.json'}")


@cli.command("tune-defaults")
@click.option("--tasks", default="box20,box20c,sr4,sr8,deblur", show_default=True)
@click.option("--methods", default="pinv,dps,daps,diffpir,reddiff,pigdm", show_default=True)
@click.option(
    "--write",
    "write_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the defaults table here (the package reads assets/bench/tuned_<protocol>_<prior>.json).",
)
@_tune_options
def tune_defaults(
    tasks: str,
    methods: str,
    write_path: Path | None,
    prior_name: str,
    dataset: str | None,
    ids: str,
    protocol: str,
    seed: int,
    batch_size: int,
    device: str,
    dtype: str,
    threads: int | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
    out: Path,
) -> None:
    """The whole sweep behind the benchmark's defaults table: every (task, method), resumable in --out."""
    from .bench.tune import DEFAULT_METHOD_GRIDS, DEFAULT_WRAPPER_GRID, collect_table, table_header
    from .files import atomic_write_json

    pairs = [(t, m) for t in _task_list(tasks, "--tasks") for m in _csv(methods, "--methods")]
    _writable(write_path, "--write", folder=False)
    entries = _sweep(
        prior_name,
        dataset,
        ids,
        protocol,
        seed,
        batch_size,
        {"device": device, "dtype": dtype, "threads": threads},
        out,
        pairs,
        DEFAULT_METHOD_GRIDS,
        DEFAULT_WRAPPER_GRID,
    )
    if write_path is not None:
        header = table_header(
            prior=prior_name,
            protocol=protocol,
            ids=ids,
            seed=seed,
            batch_size=batch_size,
            dtype=dtype,
            tasks=tasks,
            methods=methods,
        )
        atomic_write_json(write_path, collect_table(entries, header))
        click.echo(f"table: {write_path}")


def _user_errors(*also: type[BaseException]) -> tuple[type[BaseException], ...]:
    """The exception types a user causes through the machine's state or the files they name (besides
    ``InputError``): I/O errors (missing or unreadable paths, read-only folders, a full disk) and corrupt weights;
    ``also`` first (what the caller's step also counts as the user's; one typed tuple for ``except``)."""
    import pickle

    errors: list[type[BaseException]] = [*also, OSError, pickle.UnpicklingError]
    if "safetensors" in sys.modules:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    return tuple(errors)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


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
        from .conventions import InputError

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
