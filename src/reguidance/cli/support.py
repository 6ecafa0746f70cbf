"""The command line's flags and checks, shared by the commands of :mod:`reguidance.cli`.

Every flag of every command is declared here once, in ``--help`` order (``<COMMAND>_OPTIONS``, applied with
:func:`flags`), with the option groups several commands share (:func:`runtime_options`, :func:`prior_options`,
``--overwrite``) and the checks that turn what a user typed into one-line errors (:func:`_options`,
:func:`_writable`, :func:`_runtime`, :func:`_user_errors`). Nothing here loads a model or writes a file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..priors.base import Prior


def flags(options: list[Callable[[Callable[..., Any]], Callable[..., Any]]]) -> Callable[..., Any]:
    """A decorator applying ``options`` (click options or groups of them) so that ``--help`` lists them in order."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


class FiniteFloat(click.FloatRange):
    """A float flag that must be a finite number (``nan``, ``inf`` and ``1e999`` are usage errors: one line, exit 2,
    naming the flag), optionally within click's ``FloatRange`` bounds. Every float flag of every command uses it."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        """No range in ``--help`` for an unbounded number (click would print ``x<=None``)."""
        return "" if self.min is None and self.max is None else super()._describe_range()


#: any finite number
FINITE = FiniteFloat()
#: a finite number > 0 (a learning rate, a duration)
POSITIVE = FiniteFloat(min=0, min_open=True)


def _click_type(hint: object) -> Any:
    """The click type of a config field's type hint: ``int``, a finite ``float``, a ``Literal``'s choices."""
    import types
    from typing import Literal, Union, get_args, get_origin

    if get_origin(hint) in (Union, types.UnionType):  # X | None: the flag is X (None is "not given")
        hint = next(a for a in get_args(hint) if a is not type(None))
    if get_origin(hint) is Literal:
        return click.Choice([str(a) for a in get_args(hint)])
    if hint is int:
        return click.INT
    if hint is float:
        return FINITE
    return click.STRING


def wrapper_params() -> list[click.Option]:
    """One flag per option of the wrapper (:meth:`reguidance.wrapper.ReGuidance.option_fields`): ``--t-end``,
    ``--dps-steps``, ``--step-size``, ..., ``--clip/--no-clip``; each defaults to None, "the config's own", whose
    value ``--help`` shows, and is checked by the config itself when it is built. The one declaration of these
    flags: a new wrapper option is a new flag of every command that takes them, with nothing written here."""
    from ..wrapper import ReGuidance

    params = []
    for name, hint, default, meaning in ReGuidance.option_fields():
        flag = "--" + name.replace("_", "-")
        text = f"{meaning[0].upper()}{meaning[1:]} (ReGuidance; default {default})."
        if hint is bool:
            params.append(click.Option([f"{flag}/--no-{name.replace('_', '-')}", name], default=None, help=text))
        else:
            params.append(click.Option([flag, name], type=_click_type(hint), default=None, help=text))
    return params


class WrapperCommand(click.Command):
    """A command that takes the wrapper's flags (:func:`wrapper_params`): they are made when the command's flags are
    first asked for (its ``--help`` or its call, not ``reguidance --help``, so the list of commands does not import
    the library), and reach the callback as one ``wrapper`` dict of the flags given."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_wrapper_made", False):
            extra = wrapper_params()
            self._wrapper_names = [str(p.name) for p in extra]
            at = next((k for k, p in enumerate(self.params) if p.name in ("json_path", "out")), len(self.params))
            self.params[at:at] = extra
            self._wrapper_made = True
        return super().get_params(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        given = {n: ctx.params.pop(n) for n in list(getattr(self, "_wrapper_names", ())) if n in ctx.params}
        ctx.params["wrapper"] = {k: v for k, v in given.items() if v is not None}
        return super().invoke(ctx)


#: precision names of ``--dtype`` (the keys of :data:`reguidance.conventions.DTYPES`; kept literal so that
#: ``--help`` and usage errors do not import torch)
DTYPE_NAMES = ("fp32", "bf16", "fp16")


#: every ``--seed`` and ``--testbed-seed``: an integer in ``[0, 2**63 - 1]`` (:data:`reguidance.conventions.SEED_MAX`,
#: kept literal so that parsing does not import torch); a click usage error names the flag, before any work
SEED = click.IntRange(min=0, max=2**63 - 1)


def _check_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """``--threads``: checked while the command line is parsed: an integer from 1 to the CPUs this process may use
    (:func:`reguidance.conventions.check_threads`); applied by :func:`_runtime`."""
    if value is None:
        return None
    from ..conventions import InputError, check_threads

    try:
        return check_threads("--threads", value)
    except InputError as err:
        raise click.BadParameter(str(err).removeprefix("--threads "), ctx=ctx, param=param) from err


def _picture_suffix(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A picture file flag (``theory --plot``): its suffix must name a format matplotlib writes, checked while the
    command line is parsed (before the work that makes the picture)."""
    if value is None:
        return None
    from matplotlib.figure import Figure

    formats = sorted(Figure().canvas.get_supported_filetypes())
    if value.suffix.lower().lstrip(".") not in formats:
        raise click.BadParameter(
            f"{str(value)!r} ends in {value.suffix or 'no suffix'}; expected one of "
            f"{', '.join('.' + f for f in formats)} (the picture's format)",
            ctx=ctx,
            param=param,
        )
    return value


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
    "--threads",
    type=int,
    default=None,
    callback=_check_threads,
    help="torch.set_num_threads for this run, at most the CPUs it may use (default: torch's choice).",
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


_FAST_PATHS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--compile",
        "use_compile",
        is_flag=True,
        help="torch.compile the network (the first evaluations compile it: minutes on a CPU).",
    ),
    click.option(
        "--compile-mode",
        type=click.Choice(["default", "reduce-overhead", "max-autotune"]),
        default="default",
        show_default=True,
        help="torch.compile mode; reduce-overhead adds CUDA graphs on GPU.",
    ),
    click.option("--channels-last", is_flag=True, help="Store the network's weights and inputs channels-last."),
]


def fast_path_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--compile``, ``--compile-mode`` and ``--channels-last``: the network's fast paths
    (:meth:`reguidance.priors.base.NetworkPrior.optimize`), one definition for ``speed``, ``bench`` and
    ``restore``; the command receives ``use_compile``, ``compile_mode`` and ``channels_last``. They change a
    result only by float rounding (as another thread count does), so they are not part of a run's identity."""
    for option in reversed(_FAST_PATHS):
        fn = option(fn)
    return fn


def fast_paths(use_compile: bool, compile_mode: str, channels_last: bool) -> dict[str, Any]:
    """The fast-path flags as :func:`reguidance.priors.load_prior`'s keyword arguments."""
    return {"compile": use_compile, "compile_mode": compile_mode, "channels_last": channels_last}


def _check_prior_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``--prior-config``: read and checked while the command line is parsed (before any work): a missing file, a
    suffix other than .json / .yaml / .yml, or a file that does not parse to a mapping is a usage error."""
    if value is None:
        return None
    from ..conventions import InputError
    from ..priors.adm_config import read_config_file

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


def _fit_batch(prior: Prior, batch_size: int, device: str, n: int | None = None) -> int:
    """The batch a guided run of ``prior`` on ``n`` images (``None``: unknown) uses: ``min(batch_size, n)``, or the
    largest that fits the free memory of ``device`` with a one-line notice (:func:`reguidance.app.memory.fit_batch`;
    an ``InputError`` when one image does not fit)."""
    from ..app.memory import fit_batch

    fitted, notice = fit_batch(prior, batch_size, device, n=n)
    if notice is not None:
        click.echo(f"note: {notice}", err=True)
    return fitted


def _runtime(device: str = "cpu", threads: int | None = None) -> str:
    """Check ``--device`` and ``--threads`` (the one place) and apply ``--threads``; returns the device. Also
    silences the library's :class:`~reguidance.conventions.ImageScaleWarning` (a hint for tensors a program passes):
    the commands read every image from a file or a data set, on the [-1, 1] scale by construction."""
    import warnings

    import torch

    from ..conventions import ImageScaleWarning, check_device, check_threads

    warnings.filterwarnings("ignore", category=ImageScaleWarning)
    check_device(device, "--device")
    if threads is not None:
        torch.set_num_threads(check_threads("--threads", threads))
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
    from ..conventions import InputError

    try:
        yield
    except ValueError as err:
        message = " ".join(str(err).split())
        raise InputError(f"{flag}: {message}" if flag else _flagged(message)) from err


def _positive(flag: str, value: int | None) -> None:
    from ..conventions import check_positive_int

    if value is not None:
        check_positive_int(flag, value)


def _writable(path: Path | None, flag: str, *, folder: bool, kind: str | None = None) -> None:
    """Refuse an output path that cannot be written, before any work: a file where a folder is wanted (or the
    reverse), or a location under a file, a read-only folder or one without permission. A folder must be new,
    empty or one a ``kind`` run made (:func:`reguidance.app.runs.check_output_folder`); a file is declared an output
    (:func:`reguidance.io.files.declare_output`: an existing file this program did not write is refused)."""
    from ..app.runs import check_output_folder
    from ..conventions import InputError
    from ..io.files import declare_output

    if path is None:
        return
    if folder and kind is not None:
        check_output_folder(path, kind, flag)
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
    if not folder:
        declare_output(path, flag)


def _apart(outputs: dict[str, Path | None], inputs: dict[str, Any]) -> None:
    """:func:`reguidance.app.runs.check_apart` of the command's outputs and its inputs, with the inputs behind the
    shared ``--prior``, ``--prior-config`` and ``--checkpoint-dir`` of the running command added."""
    from ..app.runs import check_apart, path_inputs

    ctx = click.get_current_context(silent=True)
    params = ctx.params if ctx is not None else {}
    shared = path_inputs(params.get("prior_name"), params.get("prior_config"), params.get("checkpoint_dir"))
    check_apart(outputs, {**shared, **inputs})


def _image_folder(folder: Path, flag: str) -> None:
    """Refuse (``InputError`` naming ``flag``) a folder of input images that is not a folder, holds no image, or
    holds a file that does not read through (:func:`reguidance.io.images.inspect_images`), before any write."""
    from ..conventions import InputError
    from ..io.images import image_files, inspect_images

    if not folder.is_dir():
        raise InputError(f"{flag}: {str(folder)!r} is not a folder; expected a folder of images")
    with _options(flag):
        inspect_images(image_files(folder))


def _task_list(value: str, flag: str) -> list[str]:
    """The tasks of ``--tasks`` (:func:`reguidance.tasks.split_tasks`), each parsed (an ``InputError``
    naming a malformed one) before anything loads."""
    from ..conventions import InputError
    from ..tasks import get_task, split_tasks

    names = split_tasks(value)
    if not names:
        raise InputError(f"{flag} names nothing (got {value!r}); expected task names separated by ';' or ','")
    for name in names:
        get_task(name)
    return names


def _csv(value: str, flag: str) -> list[str]:
    """The names in a comma-separated option; an empty list is an ``InputError`` naming ``flag``."""
    from ..conventions import InputError

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise InputError(f"{flag} names nothing (got {value!r}); expected comma-separated names")
    return names


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


#: the flags of ``reguidance theory``, in --help order
THEORY_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--dim", default=16, show_default=True, help="Dimension d of the mixture."),
    click.option("--modes", default=4, show_default=True, help="Number of mixture components K."),
    click.option("--rank", default=2, show_default=True, help="Rank of each component's principal subspace."),
    click.option("--measurements", default=2, show_default=True, help="Number of linear measurements m (m < d)."),
    click.option("--noise", type=FINITE, default=0.5, show_default=True, help="Measurement noise sigma_y."),
    click.option("--candidates", default=256, show_default=True, help="Number of problems (one candidate each)."),
    click.option(
        "--seed",
        type=SEED,
        default=1,
        show_default=True,
        help="Seeds the problems; theory-sweep chose the defaults on seed 0.",
    ),
    click.option(
        "--testbed-seed", type=SEED, default=0, show_default=True, help="Seeds the mixture and the measurement matrix."
    ),
    click.option(
        "--candidate",
        "candidate",
        type=click.Choice(["dps", "pinv"]),
        default="dps",
        show_default=True,
        help="Baseline producing the candidates: DPS with few steps, or the pseudo-inverse.",
    ),
    click.option("--candidate-steps", default=10, show_default=True, help="Steps of the candidate DPS."),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the report as JSON here.",
    ),
    click.option(
        "--plot",
        "plot_path",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_picture_suffix,
        default=Path("runs/theory/projection.png"),
        show_default=True,
        help="Where to save the picture.",
    ),
]


#: the flags of ``reguidance theory-sweep``, in --help order
THEORY_SWEEP_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--candidates", default=128, show_default=True, help="Problems per configuration."),
    click.option(
        "--seed", type=SEED, default=0, show_default=True, help="Seeds the problems (the reported theory table uses 1)."
    ),
    click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None),
]


#: the flags of ``reguidance train``, in --help order
TRAIN_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--dataset",
        "--data",
        "dataset",
        default=None,
        help="Training data: mnist, fashion_mnist, emoji (their train splits) or folder:DIR (every PNG/JPEG/WebP "
        "file in DIR, centre square resized to --size, alpha over --background). Default: the config's, else mnist.",
    ),
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for checkpoints, the log, the EMA weights and the sample grid.",
    ),
    click.option(
        "--size", type=int, default=None, help="Image size of the UNet (default 32; mnist and fashion_mnist: 32)."
    ),
    click.option(
        "--channels", type=click.Choice(["1", "3"]), default=None, help="1 (gray) or 3 (RGB); default 1, emoji 3."
    ),
    click.option("--hflip/--no-hflip", default=None, help="Mirror each drawn image left-right with probability 1/2."),
    click.option("--background", default=None, help="Colour that transparent pixels are composited over (white)."),
    click.option("--dropout", type=FiniteFloat(min=0, max=1, max_open=True), default=None, help="UNet dropout (0)."),
    click.option(
        "--init",
        default=None,
        help="Fine-tune this prior (an embedded name, a guided-diffusion checkpoint, a trained folder) instead of "
        "starting from random weights.",
    ),
    click.option("--sample-every", type=int, default=None, help="Write a grid of 64 samples every N steps (0: never)."),
    click.option("--steps", type=int, default=None, help="Number of optimizer steps (default 100000)."),
    click.option("--batch-size", type=int, default=None, help="Images per step (default 32)."),
    click.option("--minutes", type=POSITIVE, default=None, help="Stop cleanly (and save) after this much training."),
    click.option("--seed", type=SEED, default=None, help="Seed of data order, noise and initialisation (default 0)."),
    click.option("--lr", type=POSITIVE, default=None, help="AdamW learning rate (default 3e-4)."),
    click.option(
        "--ema-decay",
        type=FiniteFloat(min=0, max=1, max_open=True),
        default=None,
        help="EMA decay (default 0.999, with warm-up).",
    ),
    click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast (faster on CPUs with AMX / AVX512-BF16)."),
    threads_option,
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="JSON file of TrainConfig fields; flags override it.",
    ),
    click.option(
        "--resume",
        is_flag=True,
        help="Continue from the last checkpoint in --out; --steps and --minutes (counted from the run's start) "
        "apply anew, every other setting comes from the checkpoint.",
    ),
]


#: the flags of ``reguidance train-classifier``, in --help order
TRAIN_CLASSIFIER_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--dataset", type=click.Choice(["mnist", "fashion_mnist", "emoji"]), required=True),
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for <dataset>_classifier.safetensors and its .json facts.",
    ),
    click.option("--epochs", default=6, show_default=True),
    click.option("--batch-size", default=128, show_default=True),
    click.option(
        "--lr", type=POSITIVE, default=2e-3, show_default=True, help="Peak learning rate (one-cycle schedule)."
    ),
    click.option("--seed", type=SEED, default=0, show_default=True),
    threads_option,
]


#: the flags of ``reguidance sample``, in --help order
SAMPLE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--prior", "prior_name", required=True, help="A known model name (mnist, fashion_mnist) or a file."),
    click.option("--n", "n", default=1000, show_default=True, help="Number of samples."),
    click.option("--steps", default=50, show_default=True, help="DDIM steps (eta = 0)."),
    click.option(
        "--seed", type=SEED, default=0, show_default=True, help="Sample i starts from noise seeded by (seed, i)."
    ),
    click.option("--batch-size", default=250, show_default=True, help="Samples per batch (does not change results)."),
    click.option(
        "--dataset",
        type=click.Choice(["mnist", "fashion_mnist", "emoji"]),
        default=None,
        help="Reference data and metric classifier (default: the prior's name).",
    ),
    click.option(
        "--memorisation/--no-memorisation",
        default=True,
        show_default=True,
        help="Also measure memorisation: each sample's distance to its nearest training image against the same for "
        "the reference images (needs the training split on disk: make data); writes memorisation.png.",
    ),
    click.option(
        "--reference",
        type=click.Choice(["test", "subset"]),
        default="test",
        show_default=True,
        help="Compare with the full test split or the committed 256-image test subset.",
    ),
    click.option(
        "--clip/--no-clip",
        default=True,
        show_default=True,
        help="Clamp each step's x0 estimate to [-1, 1] (guided-diffusion's clip_denoised).",
    ),
    runtime_options,
    prior_options,
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for samples.png (the first 100 samples) and samples.npz (all, uint8).",
    ),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the report (fd_cls, fd_cls_floor, class_histogram, mean_confidence) here.",
    ),
]


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


#: the flags of ``reguidance bench-report``, in --help order
def _section_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A marker name: letters, digits and underscores (it becomes ``<!-- NAME:begin -->``)."""
    if not value.replace("_", "").isalnum() or not value.isascii():
        raise click.BadParameter(f"{value!r}: expected a marker name of letters, digits and underscores")
    return value


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


#: the flags of ``reguidance speed``, in --help order
SPEED_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--prior",
        "prior_name",
        default="mnist",
        show_default=True,
        help="Embedded prior, a checkpoint path, or a known configuration with random weights (ffhq_10m).",
    ),
    runtime_options,
    prior_options,
    click.option("--batch-size", default=16, show_default=True),
    click.option("--dps-steps", default=20, show_default=True, help="DPS steps timed (1000 in a real run)."),
    click.option("--inversion-steps", default=10, show_default=True),
    click.option("--daps-annealing-steps", default=4, show_default=True),
    click.option(
        "--repeats",
        default=3,
        show_default=True,
        help="Rounds of floor, method, floor, method, ...: each ratio is the median over rounds, with its range.",
    ),
    fast_path_options,
    click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None),
]


#: the flags of ``reguidance restore``, in --help order
RESTORE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--prior", "prior_name", default="mnist", show_default=True, help="Embedded prior name, or a path."),
    click.option(
        "--task",
        required=True,
        help="A name (box16, box20, box16c, box20c, sr4, sr8, deblur), a preset (paper:box128c, paper:box128, "
        "paper:sr8, paper:sr16, paper:gauss, paper:motion) or a spec (box:0.5c, sr:16, blur:gauss,std=3, mask:PATH; "
        "see reguidance.tasks).",
    ),
    click.option(
        "--image",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Clean image file or folder: the measurement is simulated. Images must have the prior's size "
        "(see --resize).",
    ),
    click.option(
        "--measurement",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Measurement image file or folder (y), of the task's measurement size (never resized).",
    ),
    click.option(
        "--candidate",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Candidate image file or folder (one per input).",
    ),
    click.option("--method", default=None, help="Make the candidates with this method instead (dps, daps, pinv, ...)."),
    click.option("--steps", type=int, default=None, help="Step count of --method."),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True),
    click.option("--seed", type=SEED, default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option(
        "--resize",
        is_flag=True,
        help="Fit --image and --candidate images of another size to the prior's (centre-cropped to a square, then "
        "resized (bicubic), the rule of bench --data folder:) and colour ones to a gray prior (ITU-R 601 luma); "
        "without it such an image is an error. Measurements are never resized or converted.",
    ),
    click.option(
        "--samples",
        default=1,
        show_default=True,
        help="K > 1: K restorations per input from one latent; their per-pixel standard deviation goes to OUT/std/ "
        "(white = 0.5 or more) and its mean to the report. The first is the restoration written.",
    ),
    runtime_options,
    prior_options,
    fast_path_options,
    _OVERWRITE,
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
        type=click.Choice(["mnist", "fashion_mnist", "emoji"]),
        default="mnist",
        show_default=True,
        help="The embedded prior (and its test images).",
    ),
    click.option("--seed", type=SEED, default=0, show_default=True),
    runtime_options,
    _OVERWRITE,
]


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
