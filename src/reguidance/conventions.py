"""Conventions shared by every module, and the checks that enforce them.

Scales and names used throughout the library:

- An image batch ``x`` has shape ``(B, C, H, W)`` with values in ``[-1, 1]``; a flat batch (the Gaussian-mixture
  testbed) has shape ``(B, d)``. The per-sample shape ``x.shape[1:]`` is the *signal shape*.
- Measurement noise ``sigma_y`` is a standard deviation on that same ``[-1, 1]`` scale: ``y = A(x) + sigma_y n``
  with ``n ~ N(0, I)``.
- Diffusion time is the discrete variance-preserving chain of guided-diffusion: an integer timestep ``t`` in
  ``[0, T)`` (``T = 1000`` for the published checkpoints) with ``alpha_bar_t`` decreasing from about 1 to about 0,
  and ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``.
- Randomness: every draw comes from a :class:`BatchRNG`, one ``torch.Generator`` per sample, seeded from the
  user's seed and the sample's index (both 64-bit, see :func:`derive_seed`), so a sample's random draws never
  depend on the batch it was computed in.
- Reproducibility, as it is: a sample's output is *bitwise* equal across runs with the same batch composition,
  device, dtype and thread count. Across batch sizes and thread counts the random draws are identical but the
  arithmetic is not (the network's and BLAS's reductions are blocked differently), so outputs agree only to float32
  rounding carried through the sampler: measured on the embedded MNIST prior (sr4; DPS 10 steps, DAPS 4 annealing
  steps, then ReGuidance with 5 + 5 steps; batch 4 vs 2 vs 1, 2 threads vs 1) up to 1e-5 for candidates and
  1e-4 after ReGuidance on the [-1, 1] scale, and tested within ``REPRODUCIBILITY_ATOL`` (1e-3). Saved 8-bit
  pictures can therefore differ by one level in a pixel that sits on a rounding edge.

- Bounds on what a user may ask for: a seed is an integer in ``[0, SEED_MAX]`` (``2**63 - 1``: a seed plus a small
  offset, e.g. ``seed + 1`` for a second generator, stays inside the ``[0, 2**64)`` that :func:`derive_seed` and
  ``torch.Generator.manual_seed`` take); a thread count is an integer in ``[1, usable_cpus()]`` (the CPUs this
  process may run on: asking for more only oversubscribes them, and a million threads exhausts the machine).

Errors in user input raise :class:`InputError` (a :class:`ValueError` subclass) whose message names the argument
and what was expected; the command line turns exactly these (and the I/O errors a user can cause) into one line
and exit status 2, while any other exception is a bug and keeps its traceback. Where an input is only *probably*
wrong (an image batch with no value below 0 may be on the ``[0, 1]`` scale, or may be a bright picture), an
:class:`ImageScaleWarning` says so instead.
This module imports nothing else from the package.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ASSETS_DIR",
    "DTYPES",
    "IMAGE_SCALE_LIMIT",
    "REPRODUCIBILITY_ATOL",
    "SEED_MAX",
    "BatchRNG",
    "ImageScaleWarning",
    "InputError",
    "check_device",
    "check_dtype_name",
    "check_finite",
    "check_float",
    "check_image_scale",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_seed",
    "check_signal_shape",
    "check_threads",
    "check_unit_interval",
    "derive_seed",
    "usable_cpus",
]


#: the package's own data files: embedded models and their cards (``models/``), committed data subsets
#: (``data/``) and tuned tables (``bench/``); inside the wheel, beside the code
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


class InputError(ValueError):
    """Bad input from a user: the message names the argument (or command-line flag) and what was expected."""


class ImageScaleWarning(UserWarning):
    """An image batch that is probably not on the ``[-1, 1]`` scale (no value below 0: ``[0, 1]`` data?); see
    :func:`check_image_scale`. Silence it with ``warnings.filterwarnings("ignore", category=ImageScaleWarning)``
    where bright pictures are expected."""


#: the largest seed a user may give (see the module docstring)
SEED_MAX = 2**63 - 1


#: the names of the network precisions on the command line (fp32 is the default and the exact reference)
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: how far (max abs, [-1, 1] scale) one sample's fp32 output may move when only the batch size or the thread count
#: changes (see the module docstring); same batch, device, dtype and threads: bitwise equal
REPRODUCIBILITY_ATOL = 1e-3


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """The device ``device`` names, refused (``InputError``) when it is malformed or not present on this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"{name} must name a device such as cpu, cuda or cuda:1, got {device!r}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{name} is {str(device)!r} but CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"{name} is {str(device)!r} but this machine has {torch.cuda.device_count()} CUDA devices")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{name} is {str(device)!r} but MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise InputError(f"{name} must be cpu, cuda or cuda:N (or mps), got {str(device)!r}")
    return dev


def check_dtype_name(dtype: str, name: str = "dtype") -> torch.dtype:
    """The torch dtype of a precision name (``fp32``, ``bf16``, ``fp16``); ``InputError`` for any other."""
    if dtype not in DTYPES:
        raise InputError(f"{name} must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _check_has_values(name: str, x: Tensor) -> None:
    """Refuse a tensor on PyTorch's ``meta`` device: it has a shape and a dtype but no values to compute with."""
    if x.device.type == "meta":
        raise InputError(
            f"{name} is on the meta device: a shape {tuple(x.shape)} without values; give a tensor with values "
            "(e.g. on cpu or cuda, where the prior is)"
        )


def check_float(name: str, x: Tensor) -> Tensor:
    """Raise ``InputError`` unless ``x`` is a floating-point tensor (images and signals are floats in [-1, 1];
    a uint8, bool or integer tensor is refused rather than silently reinterpreted)."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _check_has_values(name, x)
    if not x.is_floating_point():
        raise InputError(
            f"{name} has dtype {x.dtype} but a floating-point tensor is expected (images in [-1, 1]: convert "
            "uint8 pixels with x / 127.5 - 1)"
        )
    return x


def check_finite(name: str, x: Tensor) -> Tensor:
    """Raise ``InputError`` if ``x`` holds NaN or Inf; return ``x`` unchanged."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _check_has_values(name, x)
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"{name} contains {bad} NaN or Inf values; expected finite numbers")
    return x


#: the fewest pixels per image (``H W``) for which a batch in ``[0, 1]`` is called probably on the wrong scale (a tiny
#: test tensor says nothing about a picture)
SCALE_HINT_PIXELS = 64

#: the largest ``|value|`` an image on the ``[-1, 1]`` scale may hold; room beyond 1 for unclamped estimates
#: (a pseudo-inverse's overshoot, a sampler's output before clipping); a larger value means another scale
IMAGE_SCALE_LIMIT = 4.0


def check_image_scale(name: str, x: Tensor) -> Tensor:
    """Refuse (``InputError``) an image batch ``(B, C, H, W)`` that is not on the ``[-1, 1]`` scale.

    The rule: a 4-D floating-point tensor is an image batch and must satisfy ``max |x| <= IMAGE_SCALE_LIMIT`` (4);
    ``[0, 255]`` pixels or unnormalised data are refused naming the scale found. A batch of one- or three-channel
    images of at least :data:`SCALE_HINT_PIXELS` pixels whose values all lie in ``[0, 1]`` (none below 0, so no
    pixel darker than mid-grey) is probably ``[0, 1]`` data and gets an :class:`ImageScaleWarning`: it cannot be
    refused, as a bright picture looks the same. Tensors of any other rank (the flat
    ``(B, d)`` signals of the Gaussian-mixture testbed, whose scale is the mixture's own) are not checked. Where it
    is called: a truth measured by an operator (``Operator.measure``) and a candidate handed to ReGuidance; never on
    a sampler's intermediate states. Returns ``x`` unchanged.
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point() or x.numel() == 0:
        return x
    _check_has_values(name, x)
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return x
    if 0 <= lo and hi <= 1 and hi > lo and x.shape[1] in (1, 3) and x[0, 0].numel() >= SCALE_HINT_PIXELS:
        warnings.warn(
            f"{name} holds values in [{lo:.4g}, {hi:.4g}], none below 0: is it on the [0, 1] scale? Images are on "
            "the [-1, 1] scale (convert with 2 x - 1; black is -1). If these are bright pictures, ignore this "
            "(warnings.filterwarnings('ignore', category=ImageScaleWarning))",
            ImageScaleWarning,
            stacklevel=3,
        )
    if max(-lo, hi) <= IMAGE_SCALE_LIMIT:
        return x
    found = f"{name} holds values in [{lo:.4g}, {hi:.4g}]"
    if lo >= 0 and hi <= 255.5:
        raise InputError(f"{found}: [0, 255] pixels, but images are on the [-1, 1] scale (convert with x / 127.5 - 1)")
    raise InputError(
        f"{found}, far outside the [-1, 1] scale of images (|x| <= {IMAGE_SCALE_LIMIT:g} is accepted): rescale it"
    )


def check_positive_int(name: str, value: object) -> int:
    """Raise ``InputError`` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _is_real(value: object) -> bool:
    """A finite real number (not a bool, not a string)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.floating, np.integer))
        and math.isfinite(float(value))
    )


def check_seed(name: str, value: int) -> int:
    """Raise ``InputError`` (naming ``name``, e.g. ``--seed``) unless ``value`` is a seed: an integer in
    ``[0, SEED_MAX]`` (the module docstring says why the bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= SEED_MAX:
        raise InputError(f"{name} must be an integer in [0, 2**63 - 1 = {SEED_MAX}], got {value!r}")
    return int(value)


def usable_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask where the system has one, else
    ``os.cpu_count()``; at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(name: str, value: int) -> int:
    """Raise ``InputError`` (naming ``name``, e.g. ``--threads``) unless ``value`` is a thread count this machine
    has: an integer in ``[1, usable_cpus()]``."""
    cpus = usable_cpus()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= cpus:
        raise InputError(
            f"{name} must be an integer >= 1 and at most {cpus} (the CPUs this process may use), got {value!r}"
        )
    return int(value)


def check_nonnegative(name: str, value: float) -> float:
    """Raise ``InputError`` unless ``value`` is a finite real number >= 0."""
    if not _is_real(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """Raise ``InputError`` unless ``value`` is a finite real number > 0 (a learning rate, a step size)."""
    if not _is_real(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_unit_interval(name: str, value: float, *, open_left: bool = True) -> float:
    """Raise ``InputError`` unless ``value`` lies in ``(0, 1]`` (or ``[0, 1]`` with ``open_left=False``)."""
    ok = isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value <= 1
    ok = ok and (value > 0 if open_left else value >= 0)
    if not ok:
        interval = "(0, 1]" if open_left else "[0, 1]"
        raise InputError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def check_signal_shape(name: str, x: Tensor, expected: Sequence[int], what: str = "the operator") -> Tensor:
    """Check that ``x`` is a finite floating-point batch ``(B, *expected)`` with values (not on the meta device); the
    message names ``name`` and ``what`` expects it, and for an image batch ``expected = (C, H, W)`` also what the
    given shape probably is: one image without its batch dimension, channels-last images, colour images for a gray
    prior (or the reverse), images of another size, each with the conversion to ask for."""
    check_float(name, x)
    check_finite(name, x)
    expected = tuple(expected)
    if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        want = ", ".join(["*", *map(str, expected)])
        raise InputError(f"{name} has shape {tuple(x.shape)} but {what} expects ({want}){_shape_hint(x, expected)}")
    return x


def _shape_hint(x: Tensor, expected: tuple[int, ...]) -> str:
    """What a batch of the wrong shape probably is, when it is an image batch off by a known mistake: ``""`` else."""
    if len(expected) != 3 or expected[0] not in (1, 3):
        return ""
    c, h, w = expected
    shape = tuple(x.shape)
    if shape == expected:
        return ": one image without its batch dimension (use x[None])"
    if x.dim() == 4 and shape[1:] == (h, w, c):
        return ": images stored channels-last (B, H, W, C); use x.permute(0, 3, 1, 2)"
    if x.dim() == 4 and shape[1] in (1, 3) and shape[1] != c and shape[2:] == (h, w):
        kind = "gray images (1 channel)" if c == 1 else "colour images (3 channels)"
        how = "ITU-R 601 luma" if c == 1 else "the gray value in every channel"
        return (
            f": {'colour' if shape[1] == 3 else 'gray'} images where {kind} are expected; convert them on purpose, "
            f"e.g. reguidance.load_images(..., channels={c}) ({how})"
        )
    if x.dim() == 4 and shape[1] == c and h == w:
        return f": images of another size; fit them on purpose, e.g. reguidance.load_images(..., size={h}) (bicubic)"
    return ""


_U32 = 0xFFFFFFFF
_TAG = 0x5EED_0064  # marks the 64-bit entropy layout (five words), which no two-word layout can equal


def derive_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded with ``seed`` (numpy's SeedSequence mixing).

    ``seed`` and ``index`` are integers in ``[0, 2**64)``; distinct pairs never share their entropy (no aliasing
    modulo 2**32). When both are below 2**32 the entropy is ``[seed, index]``, as it always was, so every result
    made with such seeds is unchanged; otherwise it is ``[seed_lo, index_lo, seed_hi, index_hi, tag]``.
    """
    for what, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < 1 << 64:
            raise InputError(f"{what} must be an integer in [0, 2**64), got {v!r}")
    seed, index = int(seed), int(index)
    words = [seed & _U32, index & _U32]
    if seed > _U32 or index > _U32:
        words += [seed >> 32, index >> 32, _TAG]
    state = np.random.SeedSequence(words).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF


class BatchRNG:
    """One ``torch.Generator`` per sample, so that sample ``i``'s random draws depend only on its own seed.

    ``BatchRNG.from_seed(seed, ids)`` derives the generator of sample ``ids[k]`` from ``(seed, ids[k])``; running
    the same ids in batches of any size, in any order, gives the same draws per sample. ``ids`` keeps the samples'
    ids when they are known (made by :meth:`from_seed`), else None.
    """

    def __init__(
        self, seeds: Sequence[int], device: torch.device | str = "cpu", ids: Sequence[int] | None = None
    ) -> None:
        if len(seeds) == 0:
            raise InputError("seeds must hold at least one seed")
        if ids is not None and len(ids) != len(seeds):
            raise InputError(f"ids has {len(ids)} entries but there are {len(seeds)} seeds")
        self.device = torch.device(device)
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < 1 << 64:
                raise InputError(f"seeds must be integers in [0, 2**64), got {s!r}")
        self.ids = None if ids is None else [int(i) for i in ids]
        self.seeds = [int(s) for s in seeds]
        self.generators = []
        for s in self.seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(s)
            self.generators.append(g)

    @classmethod
    def from_seed(cls, seed: int, ids: int | Sequence[int], device: torch.device | str = "cpu") -> BatchRNG:
        """Generators for samples ``ids`` (or ``range(ids)`` when an int) of a run seeded with ``seed``."""
        if isinstance(ids, (int, np.integer)):
            ids = range(check_positive_int("batch size", int(ids)))
        return cls([derive_seed(seed, i) for i in ids], device, ids=list(ids))

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal draws of shape ``(B, *shape)``, row ``i`` from generator ``i``."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype) for g in self.generators])

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Uniform ``[0, 1)`` draws of shape ``(B, *shape)``, row ``i`` from generator ``i``."""
        return torch.stack([torch.rand(shape, generator=g, device=self.device, dtype=dtype) for g in self.generators])

    def randn_like(self, x: Tensor) -> Tensor:
        """Standard normal draws shaped like ``x`` (``x.shape[0]`` must equal the number of generators)."""
        if x.shape[0] != len(self):
            raise InputError(f"batch has {x.shape[0]} samples but the BatchRNG holds {len(self)} generators")
        return self.randn(*x.shape[1:], dtype=x.dtype).to(x.device)
