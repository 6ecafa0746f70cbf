r"""Training an eps-prediction diffusion prior (DDPM, Ho et al. 2020) on a data set or a folder of images, from
scratch or from an existing prior (fine-tuning), on CPU or GPU.

Objective. For a clean batch ``x_0`` (B, C, H, W) in [-1, 1], a timestep ``t ~ U{0, ..., T-1}`` per sample and
``eps ~ N(0, I)``, the network sees ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` and is trained on

    L = E || eps_theta(x_t, t) - eps ||^2          (mean over pixels and the batch)

with the 1000-step linear chain of :meth:`reguidance.diffusion.Schedule.linear` and a fixed reverse variance (one
output channel). AdamW with a linear learning-rate warm-up; gradients clipped by norm. With ``hflip`` each image
is mirrored left-right with probability 1/2 at each draw.

Data (``dataset``): ``mnist``, ``fashion_mnist`` or ``emoji`` (the ``train`` split of
:func:`reguidance.io.datasets.load_dataset`), or ``folder:DIR`` (every
PNG/JPEG/WebP file directly in ``DIR``, read by :func:`reguidance.io.images.load_images` at the UNet's size and
channels: the central square, bicubic, alpha composited over ``background``). The sha256 of the training tensor
is recorded in the config (``data_sha256``) and a resumed run refuses data that changed.

Fine-tuning (``init``): the UNet starts from the weights of a prior :func:`reguidance.priors.load_prior` reads
whose network is an unconditional ADM UNet on the linear 1000-step chain (an embedded prior, a guided-diffusion
checkpoint, a folder written here); its
configuration replaces ``unet`` and its image shape must be the data's. A guided-diffusion checkpoint with a
learned variance is fine-tuned on the eps half of its output only (L_simple), its variance head left untrained.

EMA. After each step the averaged weights move as ``ema <- d ema + (1 - d) theta`` with
``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates when ``ema_warmup`` is on (so early averages are not
dominated by the random initialisation), else ``d = decay``. The EMA weights are the ones shipped and sampled.

Randomness. Data order comes from a ``torch.Generator`` seeded with ``seed``; timesteps, noise and flips from a
second one (``seed + 1``); dropout from the global generator, seeded with ``seed + 2`` at the start. All three
states are stored in each checkpoint, so resuming from step ``k`` gives the same run as one that never stopped.

Files under ``out``:

- ``checkpoint/``: ``model.safetensors`` (raw weights), ``ema.safetensors``, ``state.pt`` (optimizer state, step,
  generator states, elapsed time; read with ``torch.load(weights_only=True)``), ``config.json``; written to a
  temporary folder and swapped in, so a crash never leaves a half-written checkpoint;
- ``log.jsonl``: one line of ``{step, loss, lr, elapsed_s}`` per ``log_every`` steps;
- ``progress/step_<k>.png`` every ``sample_every`` steps (0: never): 64 DDIM samples of the EMA weights, seed 0;
- at the end: ``ema.safetensors`` (EMA weights, float32), ``model.json`` (config and run facts) and
  ``samples.png`` (64 DDIM samples, ``eta = 0``, ``sample_steps`` steps, from the EMA weights).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..conventions import BatchRNG, InputError, check_nonnegative, check_positive, check_positive_int, check_seed
from ..diffusion import Schedule
from ..guidance.unconditional import sample
from ..io.files import atomic_write_text, read_json_object, torch_load_tensors
from ..io.hashing import sha256_file
from ..io.images import DEFAULT_BACKGROUND, check_background
from ..priors.adm import ADMPrior, ADMUNet
from ..priors.base import Prior
from ..priors.zoo import EMBEDDED_UNET
from .memory import check_fits_in_memory

#: the format tag of a trained folder's ``model.json`` (what :func:`reguidance.priors.load_prior` recognises)
TRAINED_FORMAT = "reguidance-trained-prior/1"

__all__ = [
    "DATASETS",
    "SMALL_UNET",
    "TRAINED_FORMAT",
    "TrainConfig",
    "check_dataset",
    "describe_device",
    "diffusion_loss",
    "draw_samples",
    "ema_decay",
    "load_checkpoint",
    "train",
    "training_images",
    "update_ema",
    "write_card",
]

#: the embedded models' UNet (see :data:`reguidance.priors.zoo.EMBEDDED_UNET`)
SMALL_UNET: dict[str, Any] = EMBEDDED_UNET


#: the named data sets a prior can be trained on; ``folder:DIR`` names a folder of images
DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "emoji")


def check_dataset(dataset: object) -> str:
    """``dataset`` if it is a known data set name or ``folder:DIR`` with a non-empty ``DIR``, else ``InputError``."""
    if isinstance(dataset, str) and (dataset in DATASETS or (dataset.startswith("folder:") and dataset[7:])):
        return dataset
    raise InputError(f"dataset must be one of {', '.join(DATASETS)} or folder:DIR, got {dataset!r}")


@dataclass
class TrainConfig:
    """Everything that defines a training run; ``unet`` holds :class:`ADMUNet` keyword arguments."""

    dataset: str = "mnist"
    steps: int = 100_000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    lr_warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    bf16: bool = False
    seed: int = 0
    minutes: float | None = None
    checkpoint_every: int = 500
    log_every: int = 50
    sample_steps: int = 50
    num_timesteps: int = 1000
    unet: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SMALL_UNET))
    hflip: bool = False
    background: str = DEFAULT_BACKGROUND
    init: str | None = None
    sample_every: int = 0
    data_sha256: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"training config has unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**dict(d))

    def validate(self) -> TrainConfig:
        """Check every field's type and range (``InputError`` naming the field): counts are integers >= 1
        (``lr_warmup`` >= 0), ``lr`` a finite number > 0, ``weight_decay`` and ``grad_clip`` finite >= 0 (0: no
        clipping), ``ema_decay`` in [0, 1), ``minutes`` > 0 when given, flags booleans, ``seed`` in
        [0, 2**63 - 1] (``check_seed``), ``unet`` :class:`ADMUNet` arguments
        (:func:`reguidance.priors.adm_config.check_unet_args`). Returns self."""
        from ..priors.adm_config import check_unet_args

        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "sample_steps", "num_timesteps"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.lr_warmup, bool) or not isinstance(self.lr_warmup, int) or self.lr_warmup < 0:
            raise InputError(f"lr_warmup must be an integer >= 0, got {self.lr_warmup!r}")
        check_seed("seed", self.seed)
        check_positive("lr", self.lr)
        check_nonnegative("weight_decay", self.weight_decay)
        check_nonnegative("grad_clip", self.grad_clip)
        if self.minutes is not None:
            check_positive("minutes", self.minutes)
        if check_nonnegative("ema_decay", self.ema_decay) >= 1:
            raise InputError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if isinstance(self.sample_every, bool) or not isinstance(self.sample_every, int) or self.sample_every < 0:
            raise InputError(f"sample_every must be an integer >= 0, got {self.sample_every!r}")
        check_dataset(self.dataset)
        check_background(self.background)
        if self.init is not None and not isinstance(self.init, str):
            raise InputError(f"init must be the name or path of a prior, got {self.init!r}")
        for name in ("ema_warmup", "bf16", "hflip"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.unet, Mapping):
            raise InputError(f"unet must be an object of ADMUNet arguments, got {self.unet!r}")
        check_unet_args(self.unet, "unet")
        return self


# ---------------------------------------------------------------------------------------------------- the math
def diffusion_loss(unet: nn.Module, x0: Tensor, t: Tensor, eps: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """``mean || unet(x_t, t)[:, :C] - eps ||^2`` with ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``; ``x0`` (B, C,
    H, W). A learned-variance UNet (``2 C`` outputs) is trained on its ``eps`` half only (DDPM's L_simple; its
    variance head is not trained, as guided-diffusion's hybrid loss would)."""
    ab = alphas_cumprod.to(x0)[t].reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return F.mse_loss(unet(x_t, t).float()[:, : x0.shape[1]], eps)


def ema_decay(num_updates: int, decay: float, warmup: bool = True) -> float:
    """The EMA decay after ``num_updates`` updates: ``min(decay, (1 + n) / (10 + n))`` with warm-up, else ``decay``."""
    return min(decay, (1 + num_updates) / (10 + num_updates)) if warmup else decay


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay ema + (1 - decay) model`` for every parameter; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows of ``log.jsonl`` up to ``step`` (the checkpoint a run resumes from) and drop a torn last line:
    the steps after it run again and log again, so no step appears twice."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn line from a killed run
        if int(row.get("step", 0)) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def _lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.lr_warmup, 1))


# ------------------------------------------------------------------------------------------------- checkpoints
def _save_checkpoint(out: Path, cfg: TrainConfig, state: dict[str, Any], model: nn.Module, ema: nn.Module) -> None:
    from safetensors.torch import save_file

    final = out / "checkpoint"
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
    torch.save(state, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    old = out / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: str | os.PathLike[str]) -> tuple[TrainConfig, dict[str, Tensor], dict[str, Tensor], dict]:
    """``(config, model weights, EMA weights, state)`` of the last checkpoint under ``out``."""
    from safetensors.torch import load_file

    ckpt = Path(out) / "checkpoint"
    if not (ckpt / "state.pt").is_file():
        raise FileNotFoundError(f"no checkpoint to resume from in {ckpt} (expected state.pt there)")
    cfg = TrainConfig.from_dict(read_json_object(ckpt / "config.json"))  # a broken file is named
    state = torch_load_tensors(ckpt / "state.pt")
    return cfg, load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "ema.safetensors")), state


# -------------------------------------------------------------------------------------------------------- data
def training_images(cfg: TrainConfig) -> Tensor:
    """The training set of ``cfg.dataset`` as ``(N, C, H, W)`` float32 in [-1, 1], at the UNet's channels and size.

    ``InputError`` when a named data set's images do not have the UNet's shape (a folder is read at that shape)."""
    size, channels = int(cfg.unet["image_size"]), int(cfg.unet["in_channels"])
    if cfg.dataset.startswith("folder:"):
        from ..io.images import load_images

        images, _ = load_images(cfg.dataset[7:], size=size, channels=channels, background=cfg.background)
    else:
        from ..io.datasets import load_dataset

        images, _ = load_dataset(cfg.dataset, "train")
    shape = (channels, size, size)
    if tuple(images.shape[1:]) != shape:
        raise InputError(
            f"dataset {cfg.dataset!r} has images of shape {tuple(images.shape[1:])} but the UNet expects {shape}"
        )
    return images.float().contiguous()


def data_digest(images: Tensor) -> str:
    """sha256 of the training tensor's float32 bytes (recorded as ``data_sha256``)."""
    from ..io.hashing import sha256_bytes

    return sha256_bytes(images.float().contiguous().numpy().tobytes())


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    """Index batches forever: a fresh permutation of ``range(n)`` per epoch, the incomplete tail dropped."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for k in range(0, n - batch_size + 1, batch_size):
            yield perm[k : k + batch_size]


# ------------------------------------------------------------------------------------------------------ sampling
def draw_samples(
    prior: Prior,
    n: int,
    *,
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 250,
    clip: bool = True,
    progress: bool = False,
) -> Tensor:
    """``n`` unconditional DDIM samples (``eta = 0``, ``steps`` steps) in [-1, 1], shape (n, *signal_shape).

    Sample ``i``'s starting noise comes from ``BatchRNG.from_seed(seed, [i])``, so it does not depend on the
    batch size. ``clip`` clamps each step's ``x0_hat`` to [-1, 1] (guided-diffusion's ``clip_denoised``; on the
    short-trained embedded models it removes most speckled and saturated samples). Values are clamped to [-1, 1]
    at the end.
    """
    from tqdm.auto import tqdm

    n = check_positive_int("n", n)
    check_fits_in_memory("n", n, prior.signal_shape)
    schedule = prior.schedule.spaced(check_positive_int("steps", steps))
    out = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="sampling batches"):
        ids = list(range(start, min(start + batch_size, n)))
        x_T = BatchRNG.from_seed(seed, ids).randn(*prior.signal_shape).to(prior.device)
        out.append(sample(prior, x_T, schedule, clip=clip).clamp(-1, 1).cpu())
    return torch.cat(out)


def _progress_grid(ema: ADMUNet, cfg: TrainConfig, path: Path) -> None:
    """64 DDIM samples of the EMA weights (seed ``cfg.seed``, clipped) as an 8x8 grid at ``path``; the training
    generators are not touched, so a run with grids is the same run as one without."""
    from ..io.images import save_grid

    was_training = ema.training
    prior = ADMPrior(copy.deepcopy(ema).eval(), Schedule.linear(cfg.num_timesteps))
    grid = draw_samples(prior, 64, steps=cfg.sample_steps, seed=cfg.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_grid(grid, path, nrow=8)
    ema.train(was_training)


def init_unet(init: str, num_timesteps: int) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The UNet configuration and weights of the prior ``init`` (:func:`reguidance.priors.load_prior`), for
    fine-tuning; ``InputError`` unless it is an unconditional ADM UNet on the linear ``num_timesteps``-step chain."""
    from ..priors import load_prior

    prior = load_prior(init)
    if not isinstance(prior, ADMPrior) or prior.unet.num_classes is not None:
        raise InputError(
            f"--init {init!r} is a {type(prior).__name__}; fine-tuning takes an unconditional ADM UNet (an embedded "
            "prior, a guided-diffusion checkpoint or a folder written by `reguidance train`)"
        )
    linear = Schedule.linear(num_timesteps).alphas_cumprod
    ab = prior.schedule.alphas_cumprod
    if ab.shape != linear.shape or not torch.allclose(ab.double(), linear.double()):
        raise InputError(f"--init {init!r} was trained on another chain; fine-tuning uses the linear {num_timesteps}")
    return dict(prior.unet.config), {k: v.detach().float().clone() for k, v in prior.unet.state_dict().items()}


# ---------------------------------------------------------------------------------------------------- training
def train(
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    images: Tensor | None = None,
    progress: bool = True,
    final_samples: bool = True,
    device: torch.device | str = "cpu",
    command: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) a UNet as :class:`TrainConfig` says, writing checkpoints and results under ``out``, on
    ``device`` (the random draws are made on the CPU and moved, so they do not depend on the device; the arithmetic
    does, so a run resumed on another device goes on from the same state but not bit for bit).

    ``images`` (N, C, H, W) in [-1, 1] replaces the data set's train split (for tests). Stops after
    ``cfg.steps`` steps or ``cfg.minutes`` of training (counted across resumes), whichever comes first, and
    always saves a checkpoint then. Returns the run's facts (also written to ``model.json``, which makes ``out`` a
    prior :func:`reguidance.priors.load_prior` reads: the UNet's arguments, its chain, its weights file and their
    sha256), and writes the model card ``README.md`` beside them (:func:`write_card`; ``command`` is the command
    line that made the run, recorded there). A resumed run refuses training data whose sha256 is not the one the
    run started with.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        saved_cfg, model_sd, ema_sd, state = load_checkpoint(out)
        saved_cfg.steps, saved_cfg.minutes = cfg.steps, cfg.minutes  # a resumed run may be extended
        cfg = saved_cfg
    cfg.validate()
    init_weights = None
    if cfg.init is not None and not resume:
        cfg.unet, init_weights = init_unet(cfg.init, cfg.num_timesteps)
    images = training_images(cfg) if images is None else images.float().contiguous()
    digest = data_digest(images)
    if cfg.data_sha256 is not None and digest != cfg.data_sha256:
        raise InputError(
            f"the training data of {cfg.dataset!r} changed since the run started (sha256 {digest}, the run's "
            f"{cfg.data_sha256}); resume with the same images, or start a new run in another --out"
        )
    cfg.data_sha256 = digest

    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 2)
    dev = torch.device(device)
    model = ADMUNet(**cfg.unet)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    model.to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed, loss_sum, loss_n = 0, 0.0, 0.0, 0
    if resume:
        model.load_state_dict(model_sd)
        ema.load_state_dict(ema_sd)
        ema.to(dev)
        opt.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        noise_gen.set_state(state["noise_rng"])
        torch.set_rng_state(state["global_rng"])
        data_gen.set_state(state["epoch_rng"])  # replay this epoch's order up to where the run stopped
    batches = _batches(len(images), cfg.batch_size, data_gen)
    if resume:
        for _ in range(int(state["batch_in_epoch"])):
            next(batches)
    per_epoch = len(images) // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(images)} training images")
    alphas_cumprod = Schedule.linear(cfg.num_timesteps).alphas_cumprod.float().to(dev)
    budget = None if cfg.minutes is None else cfg.minutes * 60.0
    epoch_rng = data_gen.get_state() if not resume else state["epoch_rng"]
    batch_in_epoch = 0 if not resume else int(state["batch_in_epoch"])

    def make_state() -> dict[str, Any]:
        return {
            "optimizer": opt.state_dict(),
            "step": step,
            "elapsed_s": elapsed,
            "epoch_rng": epoch_rng,
            "batch_in_epoch": batch_in_epoch,
            "noise_rng": noise_gen.get_state(),
            "global_rng": torch.get_rng_state(),
        }

    if resume:
        _truncate_log(out / "log.jsonl", step)  # rows logged after the checkpoint are logged again from it
    log = open(out / "log.jsonl", "a")  # closed in the finally below
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"train {cfg.dataset}", dynamic_ncols=True)
    last_loss = math.nan
    model.train()
    try:
        t_start = time.perf_counter() - elapsed
        while step < cfg.steps and (budget is None or elapsed < budget):
            if batch_in_epoch == per_epoch:  # the generator is about to draw the next epoch's permutation
                epoch_rng, batch_in_epoch = data_gen.get_state(), 0
            idx = next(batches)
            batch_in_epoch += 1
            x0 = images[idx]
            t = torch.randint(0, cfg.num_timesteps, (len(idx),), generator=noise_gen)
            eps = torch.randn(x0.shape, generator=noise_gen)
            if cfg.hflip:
                flip = torch.rand(len(idx), generator=noise_gen) < 0.5
                x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            x0, t, eps = x0.to(dev), t.to(dev), eps.to(dev)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = diffusion_loss(model, x0, t, eps, alphas_cumprod)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            update_ema(ema, model, ema_decay(step, cfg.ema_decay, cfg.ema_warmup))
            step += 1
            elapsed = time.perf_counter() - t_start
            loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                last_loss = loss_sum / loss_n
                bar.set_postfix(loss=f"{last_loss:.4f}")
                row = {"step": step, "loss": last_loss, "lr": _lr_at(step - 1, cfg), "elapsed_s": round(elapsed, 1)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                loss_sum, loss_n = 0.0, 0
            if step % cfg.checkpoint_every == 0:
                _save_checkpoint(out, cfg, make_state(), model, ema)
            if cfg.sample_every and step % cfg.sample_every == 0:
                t_grid = time.perf_counter()
                _progress_grid(ema, cfg, out / "progress" / f"step_{step:07d}.png")
                t_start += time.perf_counter() - t_grid  # the training clock does not count the grid
        if loss_n:
            last_loss = loss_sum / loss_n
        _save_checkpoint(out, cfg, make_state(), model, ema)
    finally:
        bar.close()
        log.close()

    save_file({k: v.contiguous().float().cpu() for k, v in ema.state_dict().items()}, str(out / "ema.safetensors"))
    facts = {
        "format": TRAINED_FORMAT,
        "unet": dict(cfg.unet),
        "schedule": "linear",
        "num_timesteps": cfg.num_timesteps,
        "weights": "ema.safetensors",
        "sha256": sha256_file(out / "ema.safetensors"),
        "config": asdict(cfg),
        "steps_done": step,
        "images_seen": step * cfg.batch_size,
        "train_wall_s": round(elapsed, 1),
        "last_loss": last_loss,
        "n_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "device": describe_device(dev),
        **({"command": command} if command else {}),
    }
    if final_samples:
        _progress_grid(ema, cfg, out / "samples.png")
        facts["samples"] = "samples.png"
    atomic_write_text(out / "model.json", json.dumps(facts, indent=2))
    write_card(out, facts)
    return facts


def describe_device(device: torch.device) -> str:
    """The hardware a run used, in words: the GPU's name, or the CPU's model (Linux) and the thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    model = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} thread(s)"


def write_card(out: Path, facts: Mapping[str, Any]) -> Path:
    """``out/README.md``, the model card of a trained folder: what it is, how to load it, the data, the UNet, the
    training settings and what the run spent (steps, images, wall time, hardware), the command, the samples."""
    cfg = facts["config"]
    lines = [
        f"# A diffusion prior trained by `reguidance train` on {cfg['dataset']}",
        "",
        "An eps-prediction ADM UNet (guided-diffusion's `UNetModel`) trained with the DDPM loss on the 1000-step "
        'linear chain. Load it with `reguidance.priors.load_prior("<this folder>")` or `--prior <this folder>`; the '
        f"weights `{facts['weights']}` are checked against sha256 `{facts['sha256']}` on load.",
        "",
        "## Data",
        "",
        f"- `{cfg['dataset']}`, training images' sha256 `{cfg['data_sha256']}`; "
        + ("mirrored left-right with probability 1/2" if cfg["hflip"] else "no augmentation")
        + (f"; alpha composited over {cfg['background']}" if cfg["dataset"].startswith("folder:") else ""),
        *([f"- fine-tuned from `{cfg['init']}`"] if cfg.get("init") else []),
        "",
        "## Training",
        "",
        f"- parameters: {facts['n_params']:,}; UNet: `{json.dumps(facts['unet'])}`",
        f"- batch {cfg['batch_size']}, AdamW lr {cfg['lr']:g} (warm-up {cfg['lr_warmup']} steps), gradient norm "
        f"clipped at {cfg['grad_clip']:g}, EMA decay {cfg['ema_decay']:g}, seed {cfg['seed']}, bf16: {cfg['bf16']}",
        f"- steps: {facts['steps_done']:,} ({facts['images_seen']:,} images), training wall time "
        f"{facts['train_wall_s'] / 60:.1f} min on {facts['device']}; last mean loss {facts['last_loss']:.4f}",
        *([f"- command: `{facts['command']}`"] if facts.get("command") else []),
        "",
        *(
            [
                "## Samples",
                "",
                f"64 DDIM samples (50 steps, x0 clipped, seed {cfg['seed']}):",
                "",
                "![samples](samples.png)",
            ]
            if facts.get("samples")
            else []
        ),
        "",
    ]
    path = out / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path
