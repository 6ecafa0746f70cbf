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


def device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--device`` alone (a command that runs a network at its own precision)."""
    return _DEVICE(fn)


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


#: the flags of ``reguidance bench-report``, in --help order
def _section_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A marker name: letters, digits and underscores (it becomes ``<!-- NAME:begin -->``)."""
    if not value.replace("_", "").isalnum() or not value.isascii():
        raise click.BadParameter(f"{value!r}: expected a marker name of letters, digits and underscores")
    return value


def load_prior(name: str, device: str, dtype: str, flag: str = "--prior", **optimize: Any) -> Prior:
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
