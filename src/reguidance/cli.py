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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__

if TYPE_CHECKING:
    from torch import Tensor

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


def _keep_prior_source(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    ctx.meta[f"reguidance.{param.name}"] = value
    return value


_PRIOR_CONFIG = click.option(
    "--prior-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    expose_value=False,
    callback=lambda ctx, param, value: _keep_prior_source(ctx, param, _check_prior_config(ctx, param, value)),
    help="JSON or YAML file of guided-diffusion flags (as DPS's model_config.yaml) for a checkpoint whose keys do "
    "not fix its whole architecture (e.g. the number of heads); its sha256 joins the run's identity.",
)
_CHECKPOINT_DIR = click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    expose_value=False,
    callback=_keep_prior_source,
    help="Folder searched first for a known model's checkpoint file (then $REGUIDANCE_CHECKPOINTS, then "
    "~/.cache/reguidance).",
)


def prior_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--prior-config`` and ``--checkpoint-dir``: the one definition every command with ``--prior`` uses.

    Their values are kept on the click context (not passed to the command function), and :func:`_load_prior`
    and :func:`_prior_facts` read them from there, so a command only needs the decorator."""
    return _PRIOR_CONFIG(_CHECKPOINT_DIR(fn))


def _prior_source() -> tuple[Path | None, Path | None]:
    """``(--prior-config, --checkpoint-dir)`` of the running command (``None`` where not given or not offered)."""
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    return meta.get("reguidance.prior_config"), meta.get("reguidance.checkpoint_dir")


def _prior_facts(name: str, dtype: str) -> dict[str, object]:
    """:func:`reguidance.runs.prior_facts` of ``--prior`` with this command's ``--prior-config`` and
    ``--checkpoint-dir``."""
    from .runs import prior_facts

    config, checkpoint_dir = _prior_source()
    return prior_facts(name, dtype, config=config, checkpoint_dir=checkpoint_dir)


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
) -> None:
    """Each method with and without ReGuidance on test images; resumable (rerun to continue)."""
    from dataclasses import replace

    from .bench.inputs import (
        ImageFolder,
        check_images_fit,
        dataset_for,
        known_signal_shape,
        load_classifier_features,
        load_test_images,
        parse_data,
    )
    from .bench.methods import budget_option
    from .bench.protocol import parse_ids
    from .bench.report import format_markdown, save_grids, save_tradeoff_plot, write_summary
    from .bench.runner import BenchSpec, run_bench
    from .bench.shard import barrier, sharded
    from .conventions import InputError
    from .files import atomic_path, atomic_write_json
    from .runs import clear_outputs, hold_folder

    _positive("--steps", steps)
    _positive("--inversion-steps", inversion_steps)
    _positive("--dps-steps", dps_steps)
    wrapper_steps = {"inversion_steps": inversion_steps, "dps_steps": dps_steps}
    if (lpips_alexnet is None) != (lpips_lin is None):
        raise InputError("LPIPS needs both --lpips-alexnet and --lpips-lin (or neither)")
    for flag, path in (("--lpips-alexnet", lpips_alexnet), ("--lpips-lin", lpips_lin)):
        if path is not None and not path.is_file():
            raise InputError(f"{flag} {path}: no such file")
    task_list = _task_list(tasks, "--tasks")
    id_range = parse_ids(ids)
    shape = known_signal_shape(prior_name)  # None for a checkpoint file: checked once it has loaded
    folder_path = None
    images: Tensor | ImageFolder
    if data is not None:
        if dataset is not None:
            raise InputError("pass one of --dataset and --data, not both")
        folder_path = parse_data(data)
        if not folder_path.is_dir():
            raise InputError(f"--data {data}: no such folder")
        data_name, split = "folder", "folder"
    else:
        data_name, split = dataset_for(prior_name, dataset), "test"
        images, labels = load_test_images(data_name, id_range)
        if shape is not None:
            check_images_fit(images.shape[1:], shape, f"--dataset {data_name}", prior_name)
    method_list = _csv(methods, "--methods")
    with _options():
        overrides: dict[str, dict[str, object]] = {
            m: {budget_option(m): steps} for m in method_list if steps is not None and m != "pinv" and ":" not in m
        }

    def make_spec(n_images: int, x_shape: tuple[int, ...] | None, context: dict[str, object]) -> BenchSpec:
        spec = BenchSpec(
            task_list,
            method_list,
            id_range,
            seed=seed,
            batch_size=batch_size,
            method_options=overrides,
            protocol=protocol,
            context={**_prior_facts(prior_name, dtype), "dataset": data_name, **context},
            split=split,
            ablations=ablations,
            wrapper_overrides={k: v for k, v in wrapper_steps.items() if v is not None},
        )
        with _options():
            spec.check(n_images, x_shape)
        return spec

    folder = None
    if folder_path is None:
        spec = make_spec(len(images), tuple(images.shape[1:]), {})
    elif shape is not None:
        folder = ImageFolder(folder_path, shape)
        spec = make_spec(len(folder), shape, {"manifest_sha256": folder.manifest_sha256()})
        images, labels = folder, folder.labels
    _writable(out, "--out", folder=True)
    _writable(json_path, "--json", folder=False)
    _runtime(device, threads)
    metric = load_classifier_features(data_name)
    notes = ["FID skipped: it needs an Inception network, which this build does not implement"]
    if folder_path is not None:
        notes.append(f"FD-cls and class accuracy skipped: no classifier exists for the image folder {folder_path}")
    elif metric is None:
        notes.append("no metric classifier in this build: FD-cls and class accuracy skipped")
    with ExitStack() as held:
        with sharded(device) as (rank, world, dev):  # torchrun: one share of the ids per process
            lpips = None
            if lpips_alexnet is not None and lpips_lin is not None:  # both or neither (checked above)
                from .lpips import LPIPS

                with _options("--lpips-alexnet / --lpips-lin"):
                    try:
                        lpips = LPIPS(lpips_alexnet, lpips_lin).to(dev)
                    except _user_errors(RuntimeError, EOFError) as err:  # unreadable weight files
                        raise ValueError(f"the weights do not load: {err}") from err
                notes.append(
                    f"LPIPS-Alex v0.1 with AlexNet sha256 {lpips.alexnet_sha256} and heads sha256 {lpips.lin_sha256}"
                )
            else:
                notes.append("LPIPS skipped: pass --lpips-alexnet and --lpips-lin (weight files) to compute it")
            prior = _load_prior(prior_name, dev, dtype)
            if folder_path is not None and folder is None:  # a checkpoint file: its shape is known now
                folder = ImageFolder(folder_path, prior.signal_shape)
                spec = make_spec(len(folder), folder.shape, {"manifest_sha256": folder.manifest_sha256()})
                images, labels = folder, folder.labels
            spec = replace(spec, batch_size=_fit_batch(prior, spec.batch_size, dev))  # not part of the identity
            held.enter_context(hold_folder(out, rank))  # rank 0 keeps the folder's lock through the summary
            if overwrite and rank == 0:
                clear_outputs(out)
            barrier()  # under torchrun: no rank reads the folder before rank 0 has cleared it
            run_bench(
                prior,
                images,
                labels,
                spec,
                out,
                classifier=metric[0] if metric else None,
                lpips=lpips,
                manifest=folder.manifest() if folder is not None else None,
                rank=rank,
                world_size=world,
                progress=rank == 0,
            )
        if rank != 0:
            return
        summary = write_summary(out, features=metric[1] if metric else None, notes=notes)
        click.echo(format_markdown(summary))
        for note in notes:
            click.echo(f"note: {note}")
        for g in save_grids(out):
            click.echo(f"grid: {g}")
        with atomic_path(out / "tradeoff.png") as tmp:
            save_tradeoff_plot(summary, tmp)
        click.echo(f"plot: {out / 'tradeoff.png'}")
        if json_path is not None:
            atomic_write_json(json_path, summary)


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
@click.option(
    "--repeats",
    default=3,
    show_default=True,
    help="Rounds of floor, method, floor, method, ...: each ratio is the median over rounds, with its range.",
)
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
    repeats: int,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    json_path: Path | None,
) -> None:
    """Per-image time of DPS, DAPS, the inversion and ReGuidance next to the network's floor."""
    from .conventions import DTYPES, InputError
    from .files import atomic_write_json
    from .priors.zoo import MODELS, random_prior
    from .speed import SpeedConfig, format_speed, measure_speed

    with _options():
        cfg = SpeedConfig(
            batch_size=batch_size,
            dps_steps=dps_steps,
            inversion_steps=inversion_steps,
            daps_annealing_steps=daps_annealing_steps,
            repeats=repeats,
        )
    _writable(json_path, "--json", folder=False)
    _runtime(device, threads)
    optimize: dict[str, Any] = {"compile": use_compile, "channels_last": channels_last, "compile_mode": compile_mode}
    prior: Prior
    entry = MODELS.get(prior_name)
    if entry is not None and not entry.embedded:
        if _prior_source()[0] is not None:
            raise InputError(
                f"--prior-config is for checkpoint files; speed times {prior_name} with random weights of its "
                "registered architecture"
            )
        prior = random_prior(prior_name, device=device)  # same cost as the real checkpoint, no file needed
        prior.optimize(DTYPES[dtype], **optimize)
    else:
        prior = _load_prior(prior_name, device, dtype, **optimize)
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
) -> None:
    """ReGuidance on your own images: writes restored PNGs and per-image consistency before and after."""
    from dataclasses import replace

    from .bench.inputs import known_signal_shape
    from .bench.methods import budget_option, get_method
    from .bench.protocol import get_task
    from .bench.shard import sharded
    from .conventions import check_positive_int
    from .restore import restore as run_restore
    from .restore import write_report
    from .runs import hold_folder
    from .wrapper import ReGuidanceConfig

    check_positive_int("--batch-size", batch_size)
    check_positive_int("--samples", samples)
    _positive("--steps", steps)
    with _options("--task"):
        parsed_task = get_task(task)  # a malformed spec is refused before the prior loads
        shape = known_signal_shape(prior_name)
        if shape is not None:
            parsed_task.check(shape)
    given: dict[str, Any] = {
        "t_end": t_end,
        "inversion_steps": inversion_steps,
        "dps_steps": dps_steps,
        "step_size": step_size,
    }
    with _options():
        cfg = replace(ReGuidanceConfig(clip=True), **{k: v for k, v in given.items() if v is not None})
        if method is not None:
            get_method(method)
        options: dict[str, object] = {}
        if steps is not None and method is not None and method != "pinv":
            options[budget_option(method)] = steps
    _writable(out, "--out", folder=True)
    _runtime(device, threads)
    with sharded(device) as (rank, world, dev):  # torchrun: one share of the inputs per process
        prior = _load_prior(prior_name, dev, dtype)
        batch_size = _fit_batch(prior, batch_size, dev)
        # restore checks its inputs and pairing before it takes the folder's lock and writes anything
        names = run_restore(
            prior,
            task,
            out,
            images=image,
            measurements=measurement,
            candidates=candidate,
            method=method,
            method_options=options,
            config=cfg,
            seed=seed,
            batch_size=batch_size,
            rank=rank,
            world_size=world,
            progress=rank == 0,
            context=_prior_facts(prior_name, dtype),
            overwrite=overwrite,
            resize=resize,
            samples=samples,
        )
    if rank != 0:
        return
    with hold_folder(out):
        report = write_report(out, task, cfg, names)
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

    from .bench.inputs import load_classifier_features, load_test_images
    from .bench.report import format_markdown, save_grids, save_overview, save_tradeoff_plot, write_summary
    from .bench.runner import BenchSpec, run_bench
    from .conventions import check_positive_int
    from .files import atomic_path
    from .runs import hold_folder, prior_facts

    check_positive_int("--n", n_images)
    start = time.perf_counter()
    ids = range(n_images)
    images, labels = load_test_images("mnist", ids)
    spec = BenchSpec(
        ["box20c", "sr8"],
        ["pinv", "dps", "daps"],
        ids,
        seed=seed,
        batch_size=min(n_images, 16),
        protocol="cpu",
        context={**prior_facts("mnist", dtype), "dataset": "mnist"},
    )
    spec.check(len(images))
    _writable(out, "--out", folder=True)
    _runtime(device, threads)
    prior = _load_prior("mnist", device, dtype)
    metric = load_classifier_features("mnist")
    with hold_folder(out):
        run_bench(prior, images, labels, spec, out, classifier=metric[0] if metric else None, overwrite=overwrite)
        summary = write_summary(out, features=metric[1] if metric else None)
        click.echo(format_markdown(summary))
        grids = save_grids(out)
        with atomic_path(out / "demo.png") as tmp:
            save_overview(grids, tmp, f"MNIST, embedded prior; {n_images} test images per task")
        with atomic_path(out / "tradeoff.png") as tmp:
            save_tradeoff_plot(summary, tmp)
    click.echo(f"{time.perf_counter() - start:.0f} s; picture: {out / 'demo.png'}")


def _tune_setup(prior_name: str, dataset: str | None, ids: str) -> tuple[Any, range]:
    """The VALIDATION split the sweeps run on (never the test split) and the ids, checked against its size."""
    from .bench.inputs import dataset_for
    from .bench.protocol import parse_ids
    from .conventions import InputError
    from .data import is_available, load_dataset

    name = dataset_for(prior_name, dataset)
    if not is_available(name):
        raise InputError(f"tuning needs the {name} validation split on disk: run `make data` first")
    images, _ = load_dataset(name, "val")
    return images, parse_ids(ids, limit=len(images))


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
):
    from .bench.defaults import method_options, reguidance_config
    from .bench.methods import get_method
    from .bench.protocol import get_task
    from .bench.tune import STEP_SIZES, parse_grid, run_sweep, tune_pair
    from .conventions import check_positive_int

    check_positive_int("--batch-size", batch_size)
    with _options():
        for task, method in pairs:
            if "/" in get_task(task).name:
                raise ValueError(f"--task {task}: a mask file cannot be tuned (the table keys on task names)")
            get_method(method)
        grids = {m: parse_grid(g, fields=STEP_SIZES.get(m, ())) for m, g in method_grids.items()}
        wgrid = parse_grid(wrapper_grid)
    images, id_range = _tune_setup(prior_name, dataset, ids)
    _writable(out, "--out", folder=True)
    _runtime(runtime["device"], runtime["threads"])
    prior = _load_prior(prior_name, runtime["device"], runtime["dtype"])
    batch_size = _fit_batch(prior, batch_size, runtime["device"])

    def run_pair(task: str, method: str) -> dict[str, object]:
        return tune_pair(
            prior,
            images,
            task,
            method,
            id_range,
            method_options=method_options(task, method, protocol, tuned=False),
            method_grid=grids.get(method),
            wrapper_grid=wgrid,
            base=reguidance_config(task, method, protocol, tuned=False),
            seed=seed,
            batch_size=batch_size,
        )

    entries = run_sweep(pairs, out, run_pair)
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
    out: Path,
) -> None:
    """The whole sweep behind the benchmark's defaults table: every (task, method), resumable in --out."""
    from .bench.tune import DEFAULT_METHOD_GRIDS, DEFAULT_WRAPPER_GRID, RULE, collect_table
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
        command = (
            f"reguidance tune-defaults --prior {prior_name} --protocol {protocol} --ids {ids} --seed {seed} "
            f"--batch-size {batch_size} --dtype {dtype} --tasks {tasks} --methods {methods}"
        )
        header = {
            "protocol": protocol,
            "prior": prior_name,
            "split": "val",
            "ids": ids,
            "seed": seed,
            "rule": RULE,
            "dtype": dtype,
            "method_grids": {m: g for m, g in DEFAULT_METHOD_GRIDS.items() if m in _csv(methods, "--methods")},
            "wrapper_grid": DEFAULT_WRAPPER_GRID,
            "max_widen": 2,
            "command": command,
        }
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
