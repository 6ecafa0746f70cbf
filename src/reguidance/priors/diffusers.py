r"""A diffusers ``UNet2DModel`` with its DDPM / DDIM scheduler config, as a prior on our diffusion chain.

Needs the optional extra ``pip install reguidance[diffusers]`` (the network's code is diffusers'); weights are read
with safetensors only, never from a pickle. A *diffusers model folder* is either a pipeline folder

    unet/config.json, unet/diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json

or a flat one (``config.json``, ``diffusion_pytorch_model.safetensors``, ``scheduler_config.json``: the layout of
e.g. ``ddpm-celebahq-256``); a ``unet/`` folder given on its own finds its scheduler in ``../scheduler/``.

The scheduler's *training* chain becomes our :class:`~reguidance.diffusion.Schedule` (``Schedule.from_betas``):
``trained_betas``, or ``beta_schedule`` over ``num_train_timesteps`` (computed in float64; diffusers computes the
same formulas in float32, a relative difference of ~1e-7):

- ``linear``: ``beta_i = beta_start + (beta_end - beta_start) i / (T - 1)``;
- ``scaled_linear``: the same between ``sqrt(beta_start)`` and ``sqrt(beta_end)``, squared;
- ``squaredcos_cap_v2``: Nichol & Dhariwal's cosine chain (``Schedule.cosine``, ``s = 0.008``, betas capped
  at 0.999);
- ``sigmoid``: ``beta_start + (beta_end - beta_start) sigmoid(u_i)``, ``u`` evenly spaced on [-6, 6].

The network's output becomes ``eps``. With ``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)`` and
``x_t = a x_0 + s eps``:

- ``prediction_type="epsilon"``: the output is ``eps``;
- ``"v_prediction"``: the output is ``v = a eps - s x_0``, so ``a v + s x_t = (a^2 + s^2) eps = eps``;
- ``"sample"``: the output is ``x_0``, so ``eps = (x_t - a x_0) / s``.

``variance_type`` maps onto our DDPM variances: ``fixed_small`` (and ``fixed_small_log``) -> ``fixed_small``,
``fixed_large`` (and ``_log``) -> ``fixed_large``, ``learned_range`` -> ``learned_range`` (the UNet outputs
``2 C`` channels; the second half interpolates the log-variance between the posterior variance and ``beta_t``
as in guided-diffusion). A DDIM config has no variance type: ``fixed_small``, or ``learned_range`` for a UNet with
``2 C`` output channels.

Refused with an :class:`InputError` naming the setting: other scheduler classes, ``variance_type="learned"``
(the network predicts the variance itself, which no sampler here uses), ``rescale_betas_zero_snr`` (the last
level has ``alpha_bar = 0``, where ``eps`` and ``x_0`` cannot be told apart), Karras / exponential / beta sigmas,
other beta schedules, and UNet classes other than ``UNet2DModel``. Ignored, because they are choices of diffusers'
sampling step rather than of the model: ``clip_sample`` / ``clip_sample_range``, ``thresholding`` and its
parameters, ``timestep_spacing``, ``steps_offset``, ``set_alpha_to_one`` (our samplers choose their own steps and
clipping).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..conventions import InputError
from ..diffusion import Schedule, Variance
from .base import NetworkPrior, PriorOutput

__all__ = [
    "PREDICTION_TYPES",
    "SCHEDULERS",
    "DiffusersPrior",
    "eps_from_prediction",
    "find_diffusers_files",
    "is_diffusers_folder",
    "load_diffusers_prior",
    "schedule_from_scheduler_config",
]

#: the scheduler classes whose configs describe a DDPM training chain we can read
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
#: diffusers' prediction types, all converted to eps
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
WEIGHTS = "diffusion_pytorch_model.safetensors"
_VARIANCES: dict[str, Variance] = {
    "fixed_small": "fixed_small",
    "fixed_small_log": "fixed_small",
    "fixed_large": "fixed_large",
    "fixed_large_log": "fixed_large",
    "learned_range": "learned_range",
}
_REFUSED_FLAGS = {
    "rescale_betas_zero_snr": "a zero-terminal-SNR chain ends at alpha_bar = 0, where eps is undefined",
    "use_karras_sigmas": "Karras sigmas are a sampling spacing of a variance-exploding sampler",
    "use_exponential_sigmas": "exponential sigmas are a sampling spacing of a variance-exploding sampler",
    "use_beta_sigmas": "beta sigmas are a sampling spacing of a variance-exploding sampler",
}


# ------------------------------------------------------------------------------------------------- conversions
def eps_from_prediction(out: Tensor, x_t: Tensor, alpha_bar: Tensor, prediction_type: str) -> Tensor:
    """``eps`` from a network output ``out`` at ``x_t`` (both (B, C, H, W)) with ``alpha_bar`` broadcastable.

    ``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)``: epsilon ``out``; v_prediction ``a out + s x_t``;
    sample ``(x_t - a out) / s``.
    """
    if prediction_type == "epsilon":
        return out
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return a * out + s * x_t
    if prediction_type == "sample":
        return (x_t - a * out) / s
    raise InputError(f"prediction_type={prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}")


def schedule_from_scheduler_config(config: dict[str, Any], source: str = "the scheduler config") -> Schedule:
    """Our :class:`Schedule` of the training chain described by a DDPM / DDIM scheduler config (see the module)."""
    for key, why in _REFUSED_FLAGS.items():
        if config.get(key):
            raise InputError(f"{source} sets {key}={config[key]!r}, which cannot be mapped onto our chain: {why}")
    if config.get("trained_betas") is not None:
        try:
            betas = torch.tensor(config["trained_betas"], dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source} has trained_betas that are not a list of numbers: {exc}") from None
        if betas.dim() != 1 or betas.numel() < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise InputError(f"{source} has trained_betas that are not a list of numbers in (0, 1)")
        return Schedule.from_betas(betas)
    T = config.get("num_train_timesteps", 1000)
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise InputError(f"{source} has num_train_timesteps={T!r}; expected an integer >= 1")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    u = torch.linspace(0, 1, T, dtype=torch.float64)
    if kind == "linear":
        betas = start + (end - start) * u
    elif kind == "scaled_linear":
        betas = (math.sqrt(start) + (math.sqrt(end) - math.sqrt(start)) * u) ** 2
    elif kind == "sigmoid":
        betas = start + (end - start) * torch.sigmoid(-6 + 12 * u)
    elif kind == "squaredcos_cap_v2":
        return Schedule.cosine(T)
    else:
        raise InputError(
            f"{source} has beta_schedule={kind!r}; expected linear, scaled_linear, squaredcos_cap_v2 or sigmoid"
        )
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise InputError(f"{source} gives betas outside (0, 1) (beta_start={start}, beta_end={end})")
    return Schedule.from_betas(betas)


# ----------------------------------------------------------------------------------------------------- folders
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"could not parse {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds {type(data).__name__}, expected a JSON object")
    return data


def find_diffusers_files(folder: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """``(unet_folder, scheduler_config)`` of a diffusers model folder, or None if ``folder`` is not one.

    The UNet folder holds ``config.json`` (``folder/unet/`` or ``folder`` itself); the scheduler config is the
    first of ``folder/scheduler/scheduler_config.json``, ``folder/scheduler_config.json``,
    ``unet_folder/../scheduler/scheduler_config.json``. A UNet folder without any scheduler config is an
    :class:`InputError` (the training chain is needed).
    """
    root = Path(folder).expanduser()
    unet_dir = next((d for d in (root / "unet", root) if (d / "config.json").is_file()), None)
    if unet_dir is None:
        return None
    candidates = (
        root / "scheduler" / "scheduler_config.json",
        root / "scheduler_config.json",
        unet_dir.parent / "scheduler" / "scheduler_config.json",
    )
    scheduler = next((p for p in candidates if p.is_file()), None)
    if scheduler is None:
        raise InputError(
            f"the diffusers folder {root} has no scheduler config (scheduler/scheduler_config.json or "
            "scheduler_config.json); it is needed for the training chain"
        )
    return unet_dir, scheduler


def is_diffusers_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a model ``config.json`` (at its top or in ``unet/``)."""
    root = Path(folder).expanduser()
    return (root / "unet" / "config.json").is_file() or (root / "config.json").is_file()


# ------------------------------------------------------------------------------------------------------ prior
class DiffusersPrior(NetworkPrior):
    """A diffusers ``UNet2DModel`` as a prior: ``eps`` (and ``var_values``) at ``(x_t, t)``.

    ``schedule`` is the full training chain (chain index = timestep), ``prediction_type`` one of
    :data:`PREDICTION_TYPES` (converted by :func:`eps_from_prediction`), ``variance`` the DDPM variance.
    ``signal_shape = (in_channels, H, W)`` from the UNet's ``sample_size``. Fast paths:
    :meth:`NetworkPrior.optimize`.
    """

    def __init__(self, unet: nn.Module, schedule: Schedule, prediction_type: str, variance: Variance) -> None:
        super().__init__()
        cfg: Any = getattr(unet, "config")  # noqa: B009  (diffusers' FrozenDict, untyped here)
        size = cfg.sample_size
        if size is None:
            raise InputError("the UNet's config has no sample_size; the prior needs its image size")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        self.unet = unet
        self.schedule = schedule
        self.signal_shape = (int(cfg.in_channels), int(h), int(w))
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(f"prediction_type={prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}")
        self.prediction_type = prediction_type
        c, out = int(cfg.in_channels), int(cfg.out_channels)
        self.learned_sigma = out == 2 * c
        if out not in (c, 2 * c):
            raise InputError(f"the UNet outputs {out} channels for {c} input channels; expected {c} or {2 * c}")
        if (variance == "learned_range") != self.learned_sigma:
            raise InputError(
                f"variance {variance!r} does not fit a UNet with {out} output channels for {c} input channels "
                f"(learned_range needs {2 * c}, the fixed variances {c})"
            )
        self.variance = variance
        self._set_net(unet)

    def predict(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> PriorOutput:
        """``eps`` (B, *signal_shape) and ``var_values`` (learned-range models, else None) at ``(x_t, t)``.

        ``x_t`` (B, C, H, W) on the [-1, 1] scale noised to ``t`` (B,) integer timesteps of the training chain
        (a scalar is broadcast); ``y`` (B,) class labels for a class-conditional UNet.
        """
        self.check_input(x_t)
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t has shape {tuple(t.shape)} but x_t holds {x_t.shape[0]} samples")
        out = self.run_net(x_t, t, class_labels=y).sample.to(x_t.dtype)
        c = self.signal_shape[0]
        pred, var_values = (out[:, :c], out[:, c:]) if self.learned_sigma else (out, None)
        if self.prediction_type != "epsilon":
            if t.is_floating_point() and not bool((t == t.round()).all()):
                raise ValueError(f"t must hold integer timesteps for prediction_type={self.prediction_type!r}")
            alpha_bar = self.schedule.gather(self.schedule.alphas_cumprod, t.long(), x_t)
            pred = eps_from_prediction(pred, x_t, alpha_bar, self.prediction_type)
        return PriorOutput(pred, var_values)


def _variance(scheduler: dict[str, Any], learned_sigma: bool, source: str) -> Variance:
    kind = scheduler.get("variance_type")
    if kind is None:  # DDIM configs: no variance of their own
        return "learned_range" if learned_sigma else "fixed_small"
    if kind not in _VARIANCES:
        raise InputError(
            f"{source} has variance_type={kind!r}, which cannot be mapped; expected one of {', '.join(_VARIANCES)} "
            "('learned' predicts the variance itself, which no sampler here uses)"
        )
    return _VARIANCES[kind]


def load_diffusers_prior(folder: str | os.PathLike[str], device: torch.device | str = "cpu") -> DiffusersPrior:
    """A :class:`DiffusersPrior` (eval mode, parameters frozen, float32) from a diffusers model folder.

    Raises :class:`InputError` for a folder that is not one, a config that cannot be mapped (see the module),
    weights that are not in ``diffusion_pytorch_model.safetensors``, or keys that do not fit the config; and
    ``ImportError`` naming the extra when diffusers is not installed.
    """
    files = find_diffusers_files(folder)
    if files is None:
        raise InputError(f"{folder} is not a diffusers model folder: no config.json at its top or in unet/")
    unet_dir, scheduler_path = files
    unet_cfg, sched_cfg = _read_json(unet_dir / "config.json"), _read_json(scheduler_path)
    if unet_cfg.get("_class_name") != "UNet2DModel":
        raise InputError(
            f"{unet_dir / 'config.json'} describes a {unet_cfg.get('_class_name')!r}; only UNet2DModel "
            "(an unconditional or class-conditional image UNet) can be a prior"
        )
    if sched_cfg.get("_class_name") not in SCHEDULERS:
        raise InputError(
            f"{scheduler_path} describes a {sched_cfg.get('_class_name')!r}; expected one of {', '.join(SCHEDULERS)}"
        )
    if unet_cfg.get("time_embedding_type", "positional") != "positional":
        raise InputError(
            f"{unet_dir / 'config.json'} has time_embedding_type={unet_cfg['time_embedding_type']!r}: a "
            "variance-exploding (score SDE) model, not a DDPM eps / v / x0 model"
        )
    weights = unet_dir / WEIGHTS
    if not weights.is_file():
        pickles = sorted(p.name for p in unet_dir.glob("*.bin"))
        if pickles:
            raise InputError(
                f"{unet_dir} has no {WEIGHTS} (it holds {', '.join(pickles)}: pickles are not read, as they can run "
                "code). If you trust the file, convert it once to safetensors in Python: from diffusers import "
                f"UNet2DModel; UNet2DModel.from_pretrained({str(unet_dir)!r}, use_safetensors=False)"
                f".save_pretrained({str(unet_dir)!r}, safe_serialization=True)"
            )
        raise InputError(f"{unet_dir} has no {WEIGHTS}")
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:
        raise ImportError(
            f"loading the diffusers folder {folder} needs diffusers: pip install 'reguidance[diffusers]' ({exc})"
        ) from exc
    from safetensors.torch import load_file

    source = str(scheduler_path)
    schedule = schedule_from_scheduler_config(sched_cfg, source)
    prediction_type = sched_cfg.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise InputError(f"{source} has prediction_type={prediction_type!r}; expected one of {PREDICTION_TYPES}")
    learned_sigma = unet_cfg.get("out_channels", 3) == 2 * unet_cfg.get("in_channels", 3)
    variance = _variance(sched_cfg, learned_sigma, source)
    unet = UNet2DModel.from_config(unet_cfg)
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors' own error names the fault (a truncated or lying header)
        raise InputError(f"could not read {weights}: {' '.join(str(exc).split())[:300]}") from exc
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    want = unet.state_dict()
    missing = sorted(set(want) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(want))
    wrong = [k for k in want if k in state_dict and want[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        raise InputError(
            f"{weights} does not fit {unet_dir / 'config.json'}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shapes {wrong[:5]}"
        )
    unet.load_state_dict(state_dict, strict=True)
    prior = DiffusersPrior(unet, schedule, prediction_type, variance).to(device)
    prior.eval().requires_grad_(False)
    return prior
