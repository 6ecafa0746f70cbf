"""Known ADM checkpoints, and loading a prior from a name or a file.

A *model entry* records what is needed to rebuild a published network: its :class:`~reguidance.priors.adm.ADMUNet`
keyword arguments, the diffusion schedule it was trained on, its parameter count and, where recorded, the file's
size and sha256. Two kinds of entry exist:

- *checkpoints* (``filename`` set): large files users download themselves from ``url``; :func:`load_prior` looks
  for ``filename`` in ``checkpoint_dir``, then in ``$REGUIDANCE_CHECKPOINTS``, then in ``~/.cache/reguidance``,
  and never downloads anything;
- *embedded* models (``asset`` set): small safetensors files shipped inside the package under
  ``reguidance/assets/``, always with a recorded sha256. ``mnist`` and ``fashion_mnist`` (32x32, one channel,
  trained with ``reguidance train``; a model card next to each file) are the two; a build without their files
  says so when asked for them.

Files are read without executing code: ``.pt`` / ``.pth`` with ``torch.load(..., weights_only=True)`` (a raw
state dict, or a dict holding it under ``ema``, ``state_dict`` or ``model``, first found in that order), and
``.safetensors`` with ``safetensors.torch.load_file``. A state dict that does not fit its configuration is
refused with the first missing / unexpected keys and wrong shapes, and the known configuration that would fit.

No sha256 or file size is recorded yet for the two public checkpoints (``sha256=None``, ``size_bytes=None``):
they are not verified on load until someone records them from the published files.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..conventions import InputError, check_device
from ..diffusion import Schedule, Variance
from ..hashing import check_sha256, sha256_file
from .adm import (
    ADMPrior,
    ADMUNet,
    AttentionBlock,
    ResBlock,
    checkpoint_config,
    read_config_file,
    state_dict_shapes,
)
from .base import NetworkPrior

__all__ = [
    "EMBEDDED_UNET",
    "MODELS",
    "ModelEntry",
    "checkpoint_dirs",
    "find_checkpoint",
    "infer_config",
    "list_models",
    "load_prior",
    "random_prior",
    "read_state_dict",
    "resolve_config",
    "unet_config_from_create_model",
]

#: environment variable naming a folder that holds downloaded checkpoints
ENV_CHECKPOINTS = "REGUIDANCE_CHECKPOINTS"
#: the default folder for downloaded checkpoints
DEFAULT_CACHE = Path("~/.cache/reguidance")
#: the UNet of the embedded 32x32 one-channel models: levels 32, 16, 8 with attention at 8x8 (~1.4 M parameters)
EMBEDDED_UNET: dict[str, Any] = {
    "image_size": 32,
    "in_channels": 1,
    "model_channels": 32,
    "out_channels": 1,
    "num_res_blocks": 1,
    "attention_resolutions": [4],
    "dropout": 0.0,
    "channel_mult": [1, 2, 2],
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
}
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")

_UNET_ARGS = tuple(p for p in inspect.signature(ADMUNet.__init__).parameters if p != "self")


# ----------------------------------------------------------------------------------------------- configurations
def unet_config_from_create_model(
    image_size: int,
    num_channels: int,
    num_res_blocks: int,
    channel_mult: str = "",
    learn_sigma: bool = False,
    class_cond: bool = False,
    use_checkpoint: bool = False,
    attention_resolutions: str = "16",
    num_heads: int = 1,
    num_head_channels: int = -1,
    num_heads_upsample: int = -1,
    use_scale_shift_norm: bool = False,
    dropout: float = 0.0,
    resblock_updown: bool = False,
    use_fp16: bool = False,
    use_new_attention_order: bool = False,
) -> dict[str, Any]:
    """:class:`ADMUNet` keyword arguments from guided-diffusion's ``create_model`` arguments, converted as it does.

    An empty ``channel_mult`` is chosen from ``image_size`` (64, 128, 256 or 512); ``attention_resolutions`` is a
    comma-separated string of feature-map sizes, turned into downsample rates ``image_size // size``;
    ``learn_sigma`` doubles the 3 output channels; ``class_cond`` means 1000 ImageNet classes.
    """
    if channel_mult == "":
        defaults = {
            512: (0.5, 1, 1, 2, 2, 4, 4),
            256: (1, 1, 2, 2, 4, 4),
            128: (1, 1, 2, 3, 4),
            64: (1, 2, 3, 4),
        }
        if image_size not in defaults:
            raise ValueError(
                f"no default channel_mult for image_size={image_size}; expected one of {sorted(defaults)} "
                "or an explicit channel_mult such as '1,2,2'"
            )
        mult: tuple[float, ...] = defaults[image_size]
    else:
        mult = tuple(int(m) for m in str(channel_mult).split(","))
    attention_ds = [image_size // int(r) for r in str(attention_resolutions).split(",")]
    return {
        "image_size": image_size,
        "in_channels": 3,
        "model_channels": num_channels,
        "out_channels": 6 if learn_sigma else 3,
        "num_res_blocks": num_res_blocks,
        "attention_resolutions": attention_ds,
        "dropout": dropout,
        "channel_mult": list(mult),
        "conv_resample": True,
        "dims": 2,
        "num_classes": 1000 if class_cond else None,
        "use_checkpoint": use_checkpoint,
        "use_fp16": use_fp16,
        "num_heads": num_heads,
        "num_head_channels": num_head_channels,
        "num_heads_upsample": num_heads_upsample,
        "use_scale_shift_norm": use_scale_shift_norm,
        "resblock_updown": resblock_updown,
        "use_new_attention_order": use_new_attention_order,
    }


# --------------------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True, eq=False)
class ModelEntry:
    """A known model: exactly one of ``filename`` (a downloadable checkpoint) or ``asset`` (an embedded file).

    ``config`` holds :class:`ADMUNet` keyword arguments; ``schedule`` / ``num_timesteps`` name the training chain
    (:meth:`Schedule.named`); ``sha256`` / ``size_bytes`` are ``None`` where not recorded (embedded models always
    record a sha256); ``asset`` is a path relative to ``reguidance/assets/``.
    """

    name: str
    description: str
    config: Mapping[str, Any]
    n_params: int
    schedule: str = "linear"
    num_timesteps: int = 1000
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    asset: str | None = None
    create_model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.filename is None) == (self.asset is None):
            raise ValueError(f"model entry {self.name!r} needs exactly one of filename or asset")
        if self.asset is not None and self.sha256 is None:
            raise ValueError(f"embedded model {self.name!r} must record the sha256 of its asset")

    @property
    def embedded(self) -> bool:
        return self.asset is not None

    def unet_config(self) -> dict[str, Any]:
        """A fresh copy of the UNet keyword arguments."""
        return json.loads(json.dumps(dict(self.config)))

    def make_schedule(self) -> Schedule:
        return Schedule.named(self.schedule, self.num_timesteps)


def _checkpoint_entry(
    name: str, description: str, n_params: int, filename: str, url: str, create_model_kwargs: dict[str, Any]
) -> ModelEntry:
    return ModelEntry(
        name=name,
        description=description,
        config=unet_config_from_create_model(**create_model_kwargs),
        n_params=n_params,
        filename=filename,
        url=url,
        create_model_kwargs=create_model_kwargs,
    )


_ADM_256_COMMON: dict[str, Any] = {
    "image_size": 256,
    "channel_mult": "",
    "learn_sigma": True,
    "class_cond": False,
    "use_checkpoint": False,
    "num_heads": 4,
    "num_head_channels": 64,
    "num_heads_upsample": -1,
    "use_scale_shift_norm": True,
    "dropout": 0.0,
    "resblock_updown": True,
    "use_fp16": False,
    "use_new_attention_order": False,
}

#: the known models by name. No sha256 or file size has been recorded for the public checkpoints yet (None):
#: they are not verified on load.
MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        _checkpoint_entry(
            "ffhq_10m",
            "FFHQ 256x256 unconditional ADM, learned-range variance (the prior of DPS and DAPS)",
            n_params=93_563_910,
            filename="ffhq_10m.pt",
            url="https://drive.google.com/drive/folders/1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh?usp=sharing",
            create_model_kwargs={
                **_ADM_256_COMMON,
                "num_channels": 128,
                "num_res_blocks": 1,
                "attention_resolutions": "16",
            },
        ),
        _checkpoint_entry(
            "imagenet256_uncond",
            "ImageNet 256x256 unconditional ADM of OpenAI guided-diffusion, learned-range variance",
            n_params=552_814_086,
            filename="256x256_diffusion_uncond.pt",
            url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
            create_model_kwargs={
                **_ADM_256_COMMON,
                "num_channels": 256,
                "num_res_blocks": 2,
                "attention_resolutions": "32,16,8",
            },
        ),
    )
}


def _embedded_entry(name: str, description: str, n_params: int, sha256: str, size_bytes: int) -> ModelEntry:
    return ModelEntry(
        name=name,
        description=description,
        config=EMBEDDED_UNET,
        n_params=n_params,
        asset=f"models/{name}.safetensors",
        sha256=sha256,
        size_bytes=size_bytes,
    )


#: the embedded models (EMA weights, float32), trained by ``reguidance train``; see their cards
#: ``reguidance/assets/models/<name>.md`` for data, steps, wall time and sample quality
for _entry in (
    _embedded_entry(
        "mnist",
        "MNIST 32x32 one-channel eps-prediction ADM, fixed variance, linear 1000-step chain (embedded)",
        n_params=1_369_953,
        sha256="233dc21e85071df399caa94b85e0e1f67445d6d37f62f3a00bec52e16b32d64e",
        size_bytes=5_499_588,
    ),
    _embedded_entry(
        "fashion_mnist",
        "Fashion-MNIST 32x32 one-channel eps-prediction ADM, fixed variance, linear 1000-step chain (embedded)",
        n_params=1_369_953,
        sha256="db0efdff09c2aa35b509570fc55ba6408a17a83c53fdaa151224532f1a91c76f",
        size_bytes=5_499_588,
    ),
):
    MODELS[_entry.name] = _entry


def _known_names() -> str:
    return ", ".join(sorted(MODELS)) or "(none)"


def resolve_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """UNet keyword arguments from a known model name or a dict.

    A dict holds either :class:`ADMUNet` arguments (it has ``model_channels``) or guided-diffusion
    ``create_model`` arguments (it has ``num_channels``; a ``model_path`` key, as in DPS's yaml files, is ignored).
    """
    if isinstance(config, str):
        if config not in MODELS:
            raise ValueError(f"unknown model config {config!r}; known: {_known_names()}")
        return MODELS[config].unet_config()
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a known model name or a dict of UNet arguments, got {type(config)}")
    cfg = dict(config)
    if "model_channels" not in cfg and "num_channels" in cfg:
        cfg.pop("model_path", None)
        allowed = set(inspect.signature(unet_config_from_create_model).parameters)
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise ValueError(f"config has keys {unknown} that guided-diffusion's create_model does not take")
        return unet_config_from_create_model(**cfg)
    unknown = sorted(set(cfg) - set(_UNET_ARGS))
    if unknown:
        raise ValueError(f"config has keys {unknown} that ADMUNet does not take; expected a subset of {_UNET_ARGS}")
    required = [
        p.name
        for p in inspect.signature(ADMUNet.__init__).parameters.values()
        if p.default is inspect.Parameter.empty and p.name != "self"
    ]
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(f"config lacks the required UNet arguments {missing}")
    return cfg


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

    Raises ``ValueError`` when several known models with different configurations fit (shapes alone do not
    fix, e.g., the number of heads).
    """
    found = _matching_entries(_shapes_of(state_dict))
    if not found:
        return None
    configs = {json.dumps(dict(e.config), sort_keys=True) for e in found}
    if len(configs) > 1:
        names = ", ".join(e.name for e in found)
        raise ValueError(f"the state dict fits several known configurations ({names}); pass config=<name>")
    return found[0].name


# ------------------------------------------------------------------------------------------------------- files
def checkpoint_dirs(checkpoint_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for checkpoints, in order: ``checkpoint_dir``, ``$REGUIDANCE_CHECKPOINTS``, the cache."""
    dirs: list[Path] = []
    if checkpoint_dir is not None:
        dirs.append(Path(checkpoint_dir).expanduser())
    env = os.environ.get(ENV_CHECKPOINTS)
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    dirs.append(DEFAULT_CACHE.expanduser())
    return dirs


def find_checkpoint(entry: ModelEntry, checkpoint_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The file that holds ``entry``'s weights: its embedded asset, else the first ``entry.filename`` found in
    :func:`checkpoint_dirs` (``checkpoint_dir``, then ``$REGUIDANCE_CHECKPOINTS``, then the cache); ``None`` if
    there is none."""
    if entry.asset is not None:
        path = ASSETS_DIR / entry.asset
        return path if path.is_file() else None
    assert entry.filename is not None
    for d in checkpoint_dirs(checkpoint_dir):
        if (d / entry.filename).is_file():
            return d / entry.filename
    return None


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
        raise ValueError(
            f"{path} holds {what}, not a state dict; expected a dict of tensors or one stored under "
            "'ema', 'state_dict' or 'model'"
        )
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in a ``.pt`` / ``.pth`` (``weights_only`` torch.load) or ``.safetensors`` file, on CPU."""
    path = Path(path).expanduser()
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{path} has suffix {path.suffix!r}; expected one of {CHECKPOINT_SUFFIXES}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, expected a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _unwrap_state_dict(load_file(str(path), device="cpu"), path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors name the offending global
        raise ValueError(
            f"could not read {path} with torch.load(weights_only=True): {exc}. Only tensors and plain "
            "containers are read; re-save the state dict (torch.save(model.state_dict(), path))"
        ) from exc
    return _unwrap_state_dict(obj, path)


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
    with torch.device("meta"):
        unet = ADMUNet(**cfg)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    unet.load_state_dict(sd, strict=True, assign=True)
    return unet


def _as_prior(
    unet: ADMUNet, schedule: Schedule, device: torch.device | str, variance: Variance | None = None
) -> ADMPrior:
    if unet.use_fp16:
        unet.convert_to_fp16()
    prior = ADMPrior(unet, schedule, variance).to(device)
    prior.eval().requires_grad_(False)
    return prior


ConfigArg = str | os.PathLike[str] | Mapping[str, Any] | None


def _resolve_checkpoint_config(
    state_dict: Mapping[str, Tensor], config: ConfigArg, source: str, entry: ModelEntry | None
) -> tuple[dict[str, Any], Schedule, Variance | None, str]:
    """UNet arguments, schedule, variance (None: the prior's default) and a description of the config."""
    if config is None and entry is not None:
        return entry.unet_config(), entry.make_schedule(), None, f"the configuration of {entry.name!r}"
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
                f"config {text!r} is neither a known model name ({_known_names()}) nor a .json / .yaml / .yml file"
            )
        config = read_config_file(text)
    if not isinstance(config, Mapping):
        raise InputError(f"config must be a model name, a .json / .yaml file or a dict, got {type(config).__name__}")
    if "model_channels" in config:  # ADMUNet's own keyword arguments: all given, checked key by key
        schedule = entry.make_schedule() if entry is not None else Schedule.linear()
        return resolve_config(config), schedule, None, "the given config"
    found = checkpoint_config(_shapes_of(state_dict), config, source)
    return found.unet, found.make_schedule(), found.variance, "the given config"


def load_prior(
    name_or_path: str | os.PathLike[str],
    *,
    config: ConfigArg = None,
    device: torch.device | str = "cpu",
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> NetworkPrior:
    """A prior (eval mode, parameters frozen) from a known model name, a checkpoint file or a diffusers folder.

    The one entry point for loading priors (the command line's ``--prior``, ``--prior-config`` and
    ``--checkpoint-dir`` map onto ``name_or_path``, ``config`` and ``checkpoint_dir``):

    - a known name (:data:`MODELS`): its file is looked up in :func:`checkpoint_dirs` (or the package assets for
      embedded models) and checked against the recorded sha256, if any; nothing is downloaded;
    - a path to a guided-diffusion ``.pt`` / ``.pth`` / ``.safetensors`` state dict: an :class:`ADMPrior`. With
      ``config=None`` a known model whose keys and shapes it has exactly gives the configuration; otherwise what
      the keys and shapes determine is read from them (:func:`reguidance.priors.adm.checkpoint_config`) and the
      rest (the heads, the image size where the channel multipliers do not fix it) must come from ``config``: a
      dict or a ``.json`` / ``.yaml`` file in guided-diffusion's flag names (as DPS's ``model_config.yaml``),
      checked against the state dict. ``config`` may also be a known model name, or a dict of
      :class:`ADMUNet` keyword arguments (it has ``model_channels``). The schedule is the named model's, the
      flags' (``noise_schedule``, ``diffusion_steps``), else the 1000-step linear chain;
    - a diffusers model folder (:mod:`reguidance.priors.diffusers`; needs ``pip install reguidance[diffusers]``):
      a :class:`~reguidance.priors.diffusers.DiffusersPrior` on the scheduler's training chain.

    Raises ``FileNotFoundError`` for a missing file and :class:`InputError` (a ``ValueError``) for an unknown
    name, a directory that is no diffusers folder, a sha256 mismatch, a state dict that does not fit the
    configuration, or a configuration that is ambiguous or contradicts the state dict. A config with
    ``use_fp16=True`` converts the torso to float16 (:meth:`ADMUNet.convert_to_fp16`), as guided-diffusion's
    scripts do.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputError(
            f"prior must be a model name ({', '.join(MODELS)}), a checkpoint path or a diffusers folder; "
            f"got {name_or_path!r}"
        )
    check_device(device)
    name = os.fspath(name_or_path)
    entry = MODELS.get(name)
    if entry is not None:
        path = find_checkpoint(entry, checkpoint_dir)
        if path is None:
            if entry.embedded:
                raise FileNotFoundError(
                    f"the embedded model {name!r} is not available in this build "
                    f"(missing package asset {ASSETS_DIR / str(entry.asset)})"
                )
            searched = ", ".join(str(d) for d in checkpoint_dirs(checkpoint_dir))
            raise FileNotFoundError(
                f"checkpoint {entry.filename!r} of model {name!r} not found in {searched}. Download it from "
                f"{entry.url} into one of those folders (or set ${ENV_CHECKPOINTS}), or pass its path"
            )
        if entry.sha256 is not None:
            remedy = "the file is corrupt, truncated or a different checkpoint"
            check_sha256(str(path), sha256_file(path), entry.sha256, remedy)
        state_dict = read_state_dict(path)
        cfg, schedule, variance, what = _resolve_checkpoint_config(state_dict, config, str(path), entry)
        return _as_prior(_build_unet(cfg, state_dict, what), schedule, device, variance)

    path = Path(name).expanduser()
    if path.is_dir():
        from .diffusers import is_diffusers_folder, load_diffusers_prior

        if not is_diffusers_folder(path):
            raise InputError(
                f"{path} is a directory, expected a checkpoint file or a diffusers model folder (config.json and "
                "diffusion_pytorch_model.safetensors, at its top or in unet/, with a scheduler config)"
            )
        if config is not None:
            raise InputError(f"config= is for guided-diffusion checkpoints; the diffusers folder {path} has its own")
        return load_diffusers_prior(path, device=device)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        if path.suffix == "" and os.sep not in name and not path.exists():
            raise ValueError(
                f"unknown model name {name!r}; known: {_known_names()}; or give a path to a "
                f"{'/'.join(CHECKPOINT_SUFFIXES)} file or a diffusers model folder"
            )
        raise ValueError(f"{name} has suffix {path.suffix!r}; expected one of {CHECKPOINT_SUFFIXES}")
    state_dict = read_state_dict(path)
    cfg, schedule, variance, what = _resolve_checkpoint_config(state_dict, config, str(path), None)
    return _as_prior(_build_unet(cfg, state_dict, what), schedule, device, variance)


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
        raise ValueError(f"unknown model name {name!r}; known: {_known_names()}")
    entry = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _build_unet(entry.unet_config(), None, name)
        _reset_zero_initialised(unet)
    return _as_prior(unet, entry.make_schedule(), device)


def list_models(checkpoint_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every known model with its facts and whether its file is present locally (``present``, ``path``)."""
    rows = []
    for entry in MODELS.values():
        path = find_checkpoint(entry, checkpoint_dir)
        row = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
        row["config"] = entry.unet_config()
        row["create_model_kwargs"] = dict(entry.create_model_kwargs)
        row["kind"] = "embedded" if entry.embedded else "checkpoint"
        row["present"] = path is not None
        row["path"] = None if path is None else str(path)
        rows.append(row)
    return rows
