"""Loading a prior: :func:`load_prior`, the one entry point, from a known name, a checkpoint file or a diffusers folder.

Files are read without executing code: ``.pt`` / ``.pth`` with ``torch.load(..., weights_only=True)`` (a raw
state dict, or a dict holding it under ``ema``, ``state_dict`` or ``model``, first found in that order), and
``.safetensors`` with ``safetensors.torch.load_file``. A state dict that does not fit its configuration is
refused with the first missing / unexpected keys and wrong shapes, and the known configuration that would fit.
Before a prior is returned its weights are checked: floating-point and finite everywhere.

Every refusal is an :class:`~reguidance.conventions.InputError` (a ``ValueError``) naming what the user gave and
what was expected; a file or folder that does not exist is a :class:`PriorNotFoundError`, which is both an
``InputError`` and a ``FileNotFoundError``. The command line prints any of them as one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..conventions import ASSETS_DIR, DTYPES, InputError, check_device
from ..diffusion import Schedule, Variance
from ..io.files import load_error_reason, torch_load_tensors
from ..io.hashing import ChecksumError, check_sha256, sha256_file
from .adm import ADMPrior, ADMUNet, AttentionBlock, ResBlock, state_dict_shapes
from .adm_config import check_unet_args, checkpoint_config, read_config_file
from .base import NetworkPrior
from .zoo import ENV_CHECKPOINTS, MODELS, ModelEntry, checkpoint_dirs, find_checkpoint, known_names

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "PriorNotFoundError",
    "infer_config",
    "load_prior",
    "random_prior",
    "read_state_dict",
]

#: the suffixes of guided-diffusion checkpoint files
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")

ConfigArg = str | os.PathLike[str] | Mapping[str, Any] | None


class PriorNotFoundError(InputError, FileNotFoundError):
    """The prior's file or folder does not exist (an :class:`InputError` and a ``FileNotFoundError``)."""


# ------------------------------------------------------------------------------------------------ state dicts
def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    def is_state_dict(d: Any) -> bool:
        return isinstance(d, Mapping) and len(d) > 0 and all(isinstance(v, Tensor) for v in d.values())

    if not is_state_dict(obj) and isinstance(obj, Mapping):
        for key in ("ema", "state_dict", "model"):
            if is_state_dict(obj.get(key)):
                obj = obj[key]
                break
    if not is_state_dict(obj):
        what = f"a dict with keys {list(obj)[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise InputError(
            f"{path} holds {what}, not a state dict; expected a dict of tensors or one stored under "
            "'ema', 'state_dict' or 'model'"
        )
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _reason(exc: BaseException) -> str:
    """The part of a read error that says what was wrong: for a refused pickle, the global it would have called
    (torch's long message, colour codes and all, otherwise)."""
    return load_error_reason(exc)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in a ``.pt`` / ``.pth`` (``weights_only`` torch.load) or ``.safetensors`` file, on CPU.

    Raises :class:`PriorNotFoundError` for a missing file and :class:`InputError` for another suffix, a folder, or
    a file that does not read as tensors (corrupt, truncated, or a pickle that would run code: refused by
    ``weights_only``, with torch's warnings kept from the user's screen; the message says how to re-save it).
    """
    path = Path(path).expanduser()
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{path} has suffix {path.suffix!r}; expected one of {', '.join(CHECKPOINT_SUFFIXES)}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, expected a checkpoint file")
    if not path.is_file():
        raise PriorNotFoundError(f"checkpoint file {path} does not exist")
    if path.suffix != ".safetensors":
        return _unwrap_state_dict(torch_load_tensors(path), path)
    try:
        from safetensors.torch import load_file

        obj: Any = load_file(str(path), device="cpu")
    except Exception as exc:  # whatever a corrupt or truncated file makes the reader raise
        raise InputError(
            f"could not read {path} as safetensors ({type(exc).__name__}: {_reason(exc)}). Only tensors and plain "
            "containers are read, never pickled code; re-save the state dict "
            "(torch.save(model.state_dict(), path) or safetensors' save_file)"
        ) from exc
    return _unwrap_state_dict(obj, path)


# ----------------------------------------------------------------------------------------- known configurations
@lru_cache(maxsize=32)
def _shapes_cached(config_json: str) -> dict[str, tuple[int, ...]]:
    return state_dict_shapes(json.loads(config_json))


def _expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return dict(_shapes_cached(json.dumps(dict(config), sort_keys=True)))


def _shapes_of(state_dict: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _matching_entries(shapes: Mapping[str, tuple[int, ...]]) -> list[ModelEntry]:
    return [e for e in MODELS.values() if _expected_shapes(e.config) == dict(shapes)]


def infer_config(state_dict: Mapping[str, Tensor]) -> str | None:
    """The name of the known model whose keys and shapes ``state_dict`` has exactly, or ``None``.

    Raises :class:`InputError` when several known models with different configurations fit (shapes alone do not
    fix, e.g., the number of heads).
    """
    found = _matching_entries(_shapes_of(state_dict))
    if not found:
        return None
    configs = {json.dumps(dict(e.config), sort_keys=True) for e in found}
    if len(configs) > 1:
        names = ", ".join(e.name for e in found)
        raise InputError(f"the state dict fits several known configurations ({names}); pass config=<name>")
    return found[0].name


def _resolve_checkpoint_config(
    state_dict: Mapping[str, Tensor], config: ConfigArg, source: str, entry: ModelEntry | None
) -> tuple[dict[str, Any], Schedule, Variance | None, str]:
    """UNet arguments, schedule, variance (None: the prior's default) and a description of the config."""
    if config is None and entry is not None:
        return entry.unet_config(), entry.make_schedule(), None, f"the configuration of {entry.name!r}"
    config_source: str | None = None
    if config is None:
        config = infer_config(state_dict)
        if config is None:  # no known model fits: what the keys determine, and a clear error for the rest
            found = checkpoint_config(_shapes_of(state_dict), None, source)
            return found.unet, found.make_schedule(), found.variance, "the configuration read from its keys"
    if isinstance(config, (str, os.PathLike)):
        text = os.fspath(config)
        if text in MODELS:
            schedule = (entry or MODELS[text]).make_schedule()
            return MODELS[text].unet_config(), schedule, None, f"the configuration of {text!r}"
        if Path(text).suffix.lower() not in (".json", ".yaml", ".yml"):
            raise InputError(
                f"config {text!r} is neither a known model name ({known_names()}) nor a .json / .yaml / .yml file"
            )
        try:
            config = read_config_file(text)
        except FileNotFoundError as exc:
            raise PriorNotFoundError(str(exc)) from None
        config_source = str(Path(text).expanduser())
    if not isinstance(config, Mapping):
        raise InputError(f"config must be a model name, a .json / .yaml file or a dict, got {type(config).__name__}")
    what = f"the config in {config_source}" if config_source else "the given config"
    if "model_channels" in config:  # ADMUNet's own keyword arguments: all given, checked key by key
        schedule = entry.make_schedule() if entry is not None else Schedule.linear()
        return check_unet_args(config, config_source), schedule, None, what
    found = checkpoint_config(_shapes_of(state_dict), config, source, config_source)
    return found.unet, found.make_schedule(), found.variance, what


# ----------------------------------------------------------------------------------------------------- building
def _mismatch_message(
    shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], what: str, limit: int = 5
) -> str | None:
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [
        f"{k}: {shapes[k]} (expected {expected[k]})"
        for k in expected
        if k in shapes and tuple(shapes[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return None

    def part(label: str, items: list[str]) -> str:
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return f"{len(items)} {label}: {', '.join(items[:limit])}{more}"

    parts = [
        part(lbl, items)
        for lbl, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if items
    ]
    fits = [e.name for e in _matching_entries(shapes)]
    hint = (
        f"the keys and shapes fit the known config(s) {', '.join(fits)}; pass config={fits[0]!r}"
        if fits
        else "no known config fits these keys and shapes"
    )
    return f"the state dict does not fit {what}: " + "; ".join(parts) + f". {hint}"


def _build_unet(config: Mapping[str, Any], state_dict: Mapping[str, Tensor] | None, what: str) -> ADMUNet:
    cfg = dict(config)
    if state_dict is None:
        return ADMUNet(**cfg)
    msg = _mismatch_message(_shapes_of(state_dict), _expected_shapes(cfg), what)
    if msg is not None:
        raise InputError(msg)
    bad = sorted(k for k, v in state_dict.items() if not v.is_floating_point())
    if bad:
        raise InputError(f"the weights do not load: they are not floating-point numbers ({', '.join(bad[:3])}, ...)")
    with torch.device("meta"):
        unet = ADMUNet(**cfg)
    unet.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True, assign=True)
    return unet


def _as_prior(
    unet: ADMUNet, schedule: Schedule, device: torch.device | str, variance: Variance | None = None
) -> ADMPrior:
    if unet.use_fp16:
        unet.convert_to_fp16()
    prior = ADMPrior(unet, schedule, variance).to(device)
    prior.eval().requires_grad_(False)
    return prior


def _check_weights(prior: nn.Module, name: str) -> None:
    """Refuse weights that are not floating-point, or that hold NaN or Inf (a corrupt or diverged checkpoint)."""
    if any(not p.is_floating_point() for p in prior.parameters()):
        raise InputError(f"{name}: the weights are not floating-point numbers")
    tensors = [t for t in (*prior.parameters(), *prior.buffers()) if t.is_floating_point()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors)
    if bad:
        raise InputError(f"{name}: the weights hold {bad} NaN or Inf values (a corrupt or diverged checkpoint)")


def _load_checkpoint(path: Path, config: ConfigArg, device: torch.device | str, entry: ModelEntry | None) -> ADMPrior:
    state_dict = read_state_dict(path)
    cfg, schedule, variance, what = _resolve_checkpoint_config(state_dict, config, str(path), entry)
    return _as_prior(_build_unet(cfg, state_dict, what), schedule, device, variance)


#: what a trained folder's ``model.json`` must hold to be loaded (:func:`reguidance.app.train.train` writes it)
_TRAINED_KEYS = ("format", "unet", "schedule", "num_timesteps", "weights", "sha256")


def _load_trained(folder: Path, device: torch.device | str) -> ADMPrior:
    """The prior a ``reguidance train`` run wrote into ``folder``: its ``model.json`` gives the UNet's arguments, the
    chain and the weights file, checked against the sha256 recorded there."""
    from ..io.files import read_json_object

    facts = read_json_object(folder / "model.json", _TRAINED_KEYS)
    if not str(facts["format"]).startswith("reguidance-trained-prior/"):
        raise InputError(f"{folder / 'model.json'} is not a trained prior's (format {facts['format']!r})")
    weights = folder / str(facts["weights"])
    if not weights.is_file() or weights.parent.resolve() != folder.resolve():
        raise InputError(f"{folder}: the weights {facts['weights']!r} named by model.json are not a file in the folder")
    try:
        check_sha256(str(weights), sha256_file(weights), str(facts["sha256"]), "the weights changed since training")
    except ChecksumError as exc:
        raise InputError(str(exc)) from None
    config = facts["unet"]
    if not isinstance(config, Mapping):
        raise InputError(f"{folder / 'model.json'}: unet must be an object of ADMUNet arguments")
    check_unet_args(config, f"{folder / 'model.json'} unet")
    schedule = Schedule.named(str(facts["schedule"]), int(facts["num_timesteps"]))
    return _as_prior(_build_unet(config, read_state_dict(weights), str(weights)), schedule, device, None)


def _find_known(entry: ModelEntry, checkpoint_dir: str | os.PathLike[str] | None) -> Path:
    path = find_checkpoint(entry, checkpoint_dir)
    if path is None:
        if entry.embedded:
            raise PriorNotFoundError(
                f"the embedded model {entry.name!r} is not available in this build "
                f"(missing package asset {ASSETS_DIR / str(entry.asset)})"
            )
        searched = ", ".join(str(d) for d in checkpoint_dirs(checkpoint_dir))
        raise PriorNotFoundError(
            f"checkpoint {entry.filename!r} of model {entry.name!r} not found in {searched}. Download it from "
            f"{entry.url} into one of those folders (or set ${ENV_CHECKPOINTS}), or pass its path"
        )
    if entry.sha256 is not None:
        try:
            check_sha256(str(path), sha256_file(path), entry.sha256, "the file is corrupt, truncated or another one")
        except ChecksumError as exc:
            raise InputError(str(exc)) from None
    return path


def _load(
    name: str, config: ConfigArg, device: torch.device | str, checkpoint_dir: str | os.PathLike[str] | None
) -> NetworkPrior:
    entry = MODELS.get(name)
    if entry is not None:
        return _load_checkpoint(_find_known(entry, checkpoint_dir), config, device, entry)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "model.json").is_file():
        if config is not None:
            raise InputError(f"config= is for guided-diffusion checkpoints; the trained folder {path} has its own")
        return _load_trained(path, device)
    if path.is_dir():
        from .diffusers import is_diffusers_folder, load_diffusers_prior

        if not is_diffusers_folder(path):
            raise InputError(
                f"{path} is a folder but not a diffusers model folder (config.json and "
                "diffusion_pytorch_model.safetensors, at its top or in unet/, with a scheduler config); expected "
                "a known model name, a checkpoint file or a diffusers model folder"
            )
        if config is not None:
            raise InputError(f"config= is for guided-diffusion checkpoints; the diffusers folder {path} has its own")
        return load_diffusers_prior(path, device=device)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        if path.suffix == "" and os.sep not in name and not path.exists():
            raise InputError(
                f"unknown model name {name!r}; known: {known_names()}; or give a path to a "
                f"{'/'.join(CHECKPOINT_SUFFIXES)} file or a diffusers model folder"
            )
        expected = (
            f"expected a known model name, a checkpoint file with one of the suffixes "
            f"{', '.join(CHECKPOINT_SUFFIXES)}, or a diffusers model folder"
        )
        if not path.exists():
            raise PriorNotFoundError(f"{name} does not exist; {expected}")
        has = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise InputError(f"{name} (a file) has {has}; {expected}")
    return _load_checkpoint(path, config, device, None)


# -------------------------------------------------------------------------------------------------- entry point
def load_prior(
    name_or_path: str | os.PathLike[str],
    *,
    config: ConfigArg = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    compile: bool = False,
    channels_last: bool = False,
    compile_mode: str = "default",
) -> NetworkPrior:
    """A prior (eval mode, parameters frozen, weights checked) from a known model name, a checkpoint file or a
    diffusers folder.

    The one entry point for loading priors (the command line's ``--prior``, ``--prior-config``,
    ``--checkpoint-dir``, ``--device`` and ``--dtype`` map onto its arguments and it does all their checks):

    - a known name (:data:`~reguidance.priors.zoo.MODELS`): its file is looked up in
      :func:`~reguidance.priors.zoo.checkpoint_dirs` (or the package assets for embedded models) and checked
      against the recorded sha256, if any; nothing is downloaded;
    - a path to a guided-diffusion ``.pt`` / ``.pth`` / ``.safetensors`` state dict: an :class:`ADMPrior`. With
      ``config=None`` a known model whose keys and shapes it has exactly gives the configuration; otherwise what
      the keys and shapes determine is read from them (:func:`reguidance.priors.adm_config.infer_structure`) and
      the rest (the heads, the image size where the channel multipliers do not fix it) must come from ``config``:
      a dict or a ``.json`` / ``.yaml`` file in guided-diffusion's flag names (as DPS's ``model_config.yaml``),
      checked against the state dict (:func:`reguidance.priors.adm_config.translate_flags`). ``config`` may also
      be a known model name, or a dict / file of :class:`ADMUNet` keyword arguments (it has ``model_channels``).
      The schedule is the named model's, the flags' (``noise_schedule``, ``diffusion_steps``), else the
      1000-step linear chain;
    - a diffusers model folder (:mod:`reguidance.priors.diffusers`; needs ``pip install reguidance[diffusers]``):
      a :class:`~reguidance.priors.diffusers.DiffusersPrior` on the scheduler's training chain.

    ``dtype`` (``torch.float32`` / ``bfloat16`` / ``float16`` or ``"fp32"`` / ``"bf16"`` / ``"fp16"``; None:
    exact fp32), ``compile``, ``channels_last`` and ``compile_mode`` are the fast paths of
    :meth:`~reguidance.priors.base.NetworkPrior.optimize`, all off by default. A config with ``use_fp16=True``
    converts the torso to float16 (:meth:`ADMUNet.convert_to_fp16`), as guided-diffusion's scripts do.

    Raises :class:`PriorNotFoundError` (an ``InputError`` and a ``FileNotFoundError``) for a file or folder that
    does not exist, and :class:`InputError` for an empty or unknown name, a path of another kind, a directory that
    is no diffusers folder, a sha256 mismatch, a file that does not read as tensors (pickled code is never run),
    a state dict that does not fit the configuration, a configuration that is ambiguous, ill-typed or
    contradicts the state dict, weights that are not floating-point or not finite, and an absent device.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputError(
            f"prior must be a model name ({known_names()}), a checkpoint path or a diffusers folder; "
            f"got {name_or_path!r}"
        )
    name = os.fspath(name_or_path)
    if not name.strip():
        raise InputError(
            f"prior {name!r} is empty; expected a model name ({known_names()}), a checkpoint file or a diffusers "
            "model folder"
        )
    check_device(device)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    try:
        prior = _load(name, config, device, checkpoint_dir)
    except RuntimeError as exc:  # tensors that load_state_dict refuses
        raise InputError(f"{name}: the weights do not load: {' '.join(str(exc).split())[:300]}") from exc
    _check_weights(prior, name)
    try:
        return prior.optimize(dtype, compile=compile, channels_last=channels_last, compile_mode=compile_mode)
    except ValueError as exc:
        raise InputError(str(exc)) from None


# ------------------------------------------------------------------------------------------------ random weights
def _reset_zero_initialised(unet: ADMUNet) -> None:
    """Give the layers the reference initialises to zero default random weights, so every weight matters."""

    def reset(layer: nn.Module) -> None:
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            raise TypeError(f"expected a convolution or linear layer to re-initialise, got {type(layer).__name__}")
        layer.reset_parameters()

    for m in unet.modules():
        if isinstance(m, ResBlock):
            reset(m.out_layers[-1])
        elif isinstance(m, AttentionBlock):
            reset(m.proj_out)
    reset(unet.out[-1])


def random_prior(name: str, device: torch.device | str = "cpu", seed: int = 0) -> ADMPrior:
    """A prior of the known configuration ``name`` with random weights (for timing without a checkpoint).

    Weights are PyTorch's default initialisation drawn on CPU from ``seed`` (the global RNG is left untouched);
    the layers guided-diffusion zero-initialises get random weights too, so the output is not identically zero.
    """
    if name not in MODELS:
        raise InputError(f"unknown model name {name!r}; known: {known_names()}")
    entry = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _build_unet(entry.unet_config(), None, name)
        _reset_zero_initialised(unet)
    return _as_prior(unet, entry.make_schedule(), device)
