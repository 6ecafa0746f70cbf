"""The registry of known models: their names, where their files are, their checksums and their configurations.

A *model entry* records what is needed to rebuild a published network: its :class:`~reguidance.priors.adm.ADMUNet`
keyword arguments, the diffusion schedule it was trained on, its parameter count and, where recorded, the file's
size and sha256. Two kinds of entry exist:

- *checkpoints* (``filename`` set): large files users download themselves from ``url``; they are looked for in
  :func:`checkpoint_dirs` (``checkpoint_dir``, then ``$REGUIDANCE_CHECKPOINTS``, then ``~/.cache/reguidance``),
  and nothing is ever downloaded. Their configurations are translated from the guided-diffusion flags they were
  published with (:func:`reguidance.priors.adm_config.unet_config_from_create_model`);
- *embedded* models (``asset`` set): small safetensors files shipped inside the package under
  ``reguidance/assets/``, always with a recorded sha256. ``mnist`` and ``fashion_mnist`` (32x32, one channel,
  trained with ``reguidance train``; a model card next to each file) are the two; a build without their files
  says so when asked for them.

Loading a model (reading, checking and building it) is :func:`reguidance.priors.load_prior`'s job
(:mod:`reguidance.priors.loading`).

No sha256 or file size is recorded yet for the two public checkpoints (``sha256=None``, ``size_bytes=None``):
they are not verified on load until someone records them from the published files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conventions import ASSETS_DIR
from ..diffusion import Schedule
from .adm_config import unet_config_from_create_model

__all__ = [
    "DEFAULT_CACHE",
    "EMBEDDED_UNET",
    "ENV_CHECKPOINTS",
    "MODELS",
    "ModelEntry",
    "checkpoint_dirs",
    "find_checkpoint",
    "known_names",
    "list_models",
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


def known_names() -> str:
    """The known model names, sorted, as one comma-separated string."""
    return ", ".join(sorted(MODELS)) or "(none)"


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


def list_models(checkpoint_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every known model with its facts, whether its file is present locally (``present``, ``path``) and, for a
    checkpoint, the folders searched for it in order (``searched``: :func:`checkpoint_dirs`; empty for an embedded
    model, whose file is a package asset)."""
    searched = [str(d) for d in checkpoint_dirs(checkpoint_dir)]
    rows = []
    for entry in MODELS.values():
        path = find_checkpoint(entry, checkpoint_dir)
        row = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
        row["config"] = entry.unet_config()
        row["create_model_kwargs"] = dict(entry.create_model_kwargs)
        row["kind"] = "embedded" if entry.embedded else "checkpoint"
        row["present"] = path is not None
        row["path"] = None if path is None else str(path)
        row["searched"] = [] if entry.embedded else searched
        rows.append(row)
    return rows
