"""Tasks as parameters at any resolution, the benchmark's named tasks, and per-image random streams.

A task is built from a short **spec** (:func:`parse_task`) and turned into an operator for images of a given shape
``(C, H, W)`` in [-1, 1] (``sigma_y`` on that scale, default :data:`DEFAULT_SIGMA_Y` = 0.05). The grammar:

=====================================  ===========================================================================
spec                                   operator
=====================================  ===========================================================================
``box:S`` / ``box:Sc``                 a missing box, random position per image / centred. ``S`` an integer is
                                       its side in pixels (``box:128``); ``S`` with a decimal point is a fraction
                                       of the image side in (0, 1] (``box:0.5c``: side ``round(0.5 H)``)
``sr:F`` / ``sr:F,bicubic``            x``F`` super-resolution (``F`` in 2..16, dividing the size) by average
                                       pooling (default, ``avgpool``) or antialiased bicubic downsampling
``blur:gauss,std=S[,size=K]``          circular Gaussian blur of std ``S`` px, ``K x K`` kernel (odd; default
                                       ``2 ceil(3 S) + 1``)
``blur:motion,length=L[,angle=A]``     circular motion blur: a straight line ``L`` px long at ``A`` degrees
``[,size=K]``                          (counter-clockwise from the x axis; default 45), anti-aliased, normalised,
                                       the same kernel for every image (deterministic, no random draw); ``K``
                                       odd, default the smallest odd size above ``L``
``sat:gauss,std=S[,size=K][,k=G]``   a saturating sensor after a Gaussian blur, ``y = tanh(G blur(x)) + sigma_y n``
                                       (nonlinear; gain ``G`` > 0, default 2; blur as ``blur:gauss``). Only
                                       methods that differentiate through ``A`` take it: DPS, DAPS, ReGuidance
                                       (pinv, DiffPIR and PiGDM are refused by the operator's class; RED-diff is
                                       refused too, it has no start without a pseudo-inverse)
``mask:PATH``                          a mask image (PNG/JPEG): white (>= 128 after conversion to gray) =
                                       observed. It must have the images' own height and width (no resizing)
                                       and observe something (an all-black mask is refused)
=====================================  ===========================================================================

Any spec, alias or preset takes ``,sigma_y=V`` (V > 0: the consistency and every likelihood divide by it; 0 is
refused) as a last option: ``sr:8,sigma_y=0.1``. A bad spec is an
:class:`~reguidance.conventions.InputError` naming it and the grammar, raised while parsing, before anything
heavy loads; a spec that does not fit an image shape (a box larger than the image, a factor that does not divide
it, a mask of another size) is one from :meth:`Task.check`.

**Aliases** (the 32x32 benchmark protocol; its tuned defaults table keys on these names):

========  =====================================================================  =========
name      operator                                                               sigma_y
========  =====================================================================  =========
box16     16x16 box missing (25% of a 32x32 image), random position per image     0.05
box20     20x20 box missing (39%), random position per image                     0.05
box16c    16x16 box missing, centred                                             0.05
box20c    20x20 box missing, centred: nearly *unidentifiable* (the mean         0.05
          training image beats every method's PSNR), kept as that case
sr4       x4 super-resolution by average pooling (8x8 measured at 32x32)         0.05
sr8       x8 super-resolution by average pooling (4x4 measured)                  0.05
deblur    Gaussian blur, std 2 px, 13x13 kernel, circular; heavy noise          0.2
          (the high-noise deblur of the headline tasks)
satblur   ``sat:gauss,std=2,size=13,k=2``: the deblur kernel, then ``tanh(2 .)``     0.05
          (the nonlinear deblurring task)
========  =====================================================================  =========

**Presets**: the paper's hard tasks, defined at 256x256 and relative to the image elsewhere (pixel sizes of blur
kernels scale with ``H / 256``, rounded, kernel sizes kept odd; boxes are fractions of the side):

=================  ==================================================================================  =========
name               operator (at 256x256)                                                               sigma_y
=================  ==================================================================================  =========
paper:box128c      128x128 centred box missing (half the side: 16x16 at 32x32)                         0.05
paper:box128       128x128 box missing at a random position per image (half the side)                  0.05
paper:sr8          x8 super-resolution by average pooling (32x32 measured)                             0.05
paper:sr16         x16 super-resolution by average pooling (16x16 measured)                            0.05
paper:gauss        Gaussian blur, std 3 px, 61x61 kernel (DPS's kernel), high noise                    0.2
paper:motion       motion blur, a 31 px line at 45 degrees in a 61x61 kernel                           0.05
=================  ==================================================================================  =========

**Identity.** A task is its definition (:meth:`Task.definition`: every parsed parameter, a mask's sha256). Names are
resolved once, while parsing: every spelling of one definition parses to one task with one name (the alias, else
the preset, else the canonical spec: ``sr:8`` and ``paper:sr8`` are ``sr8``), so its random streams, its defaults
and its rows are the same whichever spelling was typed; a run's identity hash holds the definition.

**Random streams.** Every random choice for image ``id`` of split ``split`` under run ``seed`` (its box position,
its measurement noise, a method's draws) comes from a generator seeded by ``(seed, split, task, stream, id)``
(:func:`stream_rng`): any image of any run can be recomputed alone, in any batch, and a validation image and a test
image with the same id get different masks and noise.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .conventions import BatchRNG, InputError, derive_seed
from .operators import Blur, GaussianBlur, Inpainting, Operator, Saturation, SuperResolution

__all__ = [
    "DEFAULT_SIGMA_Y",
    "FAMILIES",
    "GRAMMAR",
    "PRESETS",
    "TASKS",
    "Task",
    "check_ids",
    "get_task",
    "id_span",
    "make_operator",
    "method_rng",
    "motion_kernel",
    "parse_ids",
    "parse_task",
    "split_tasks",
    "stream_rng",
    "wrapper_rng",
]

#: the measurement noise of a spec that does not set ``sigma_y`` ([-1, 1] scale)
DEFAULT_SIGMA_Y = 0.05

#: the grammar, as error messages state it
GRAMMAR = (
    "(box:S or box:Sc (S pixels, or a fraction like 0.5), sr:F[,bicubic], blur:gauss,std=S[,size=K], "
    "blur:motion,length=L[,angle=A][,size=K], sat:gauss,std=S[,size=K][,k=G], mask:PATH, a name (box16, box20, "
    "box16c, box20c, sr4, sr8, deblur, satblur) "
    "or a preset (paper:box128c, paper:box128, paper:sr8, paper:sr16, paper:gauss, paper:motion); any of them "
    "may end in ,sigma_y=V)"
)


def _check_split(split: str) -> str:
    if not isinstance(split, str) or not split or "/" in split:
        raise InputError(f"split must be a non-empty name without '/' such as 'val' or 'test', got {split!r}")
    return split


def stream_rng(
    seed: int,
    task: str,
    stream: str,
    ids: Sequence[int],
    device: torch.device | str = "cpu",
    *,
    split: str = "test",
) -> BatchRNG:
    """Per-image generators for one named random ``stream`` (e.g. ``"mask"``, ``"noise"``) of ``task`` on the
    images ``ids`` of ``split`` (``"test"``, ``"val"``, ``"folder"``, ...)."""
    salt = zlib.crc32(f"{_check_split(split)}/{task}/{stream}".encode())
    return BatchRNG.from_seed(derive_seed(seed, salt), list(ids), device=device)


def method_rng(
    seed: int,
    task: str,
    method: str,
    ids: Sequence[int],
    device: torch.device | str = "cpu",
    *,
    split: str = "test",
) -> BatchRNG:
    """The generators of ``method``'s candidates on ``task`` (stream ``method/<method>``)."""
    return stream_rng(seed, task, f"method/{method}", ids, device=device, split=split)


def wrapper_rng(
    seed: int,
    task: str,
    method: str,
    ids: Sequence[int],
    device: torch.device | str = "cpu",
    *,
    split: str = "test",
) -> BatchRNG:
    """The generators of ReGuidance on top of ``method``'s candidates on ``task`` (stream ``reguidance/<method>``)."""
    return stream_rng(seed, task, f"reguidance/{method}", ids, device=device, split=split)


def motion_kernel(length: float, angle: float, size: int) -> Tensor:
    """A ``(size, size)`` float64 motion-blur kernel: the segment of ``length`` px through the centre at ``angle``
    degrees (counter-clockwise from the x axis, rows growing downwards), sampled every 1/8 px and spread over the
    neighbouring pixels bilinearly, normalised to sum 1. ``length`` 0 gives the identity (a single 1)."""
    n = max(2, math.ceil(8 * length) + 1)
    t = torch.linspace(-length / 2, length / 2, n, dtype=torch.float64)
    theta = math.radians(angle)
    c = (size - 1) / 2
    cols, rows = c + t * math.cos(theta), c - t * math.sin(theta)
    kernel = torch.zeros(size, size, dtype=torch.float64)
    r0, c0 = rows.floor(), cols.floor()
    for dr in (0, 1):
        for dc in (0, 1):
            w = (1 - (rows - r0 - dr).abs()) * (1 - (cols - c0 - dc).abs())
            r, q = (r0 + dr).long(), (c0 + dc).long()
            inside = (r >= 0) & (r < size) & (q >= 0) & (q < size) & (w > 0)
            kernel.index_put_((r[inside], q[inside]), w[inside], accumulate=True)
    return kernel / kernel.sum()


@functools.lru_cache(maxsize=8)
def _mask_image(path: str, sha256: str) -> Tensor:
    """The mask image at ``path`` as bool ``(1, 1, H, W)``, observed = white (gray >= 128); cached by content."""
    import numpy as np

    from .io.images import open_image, upright

    try:
        with open_image(path) as img:  # EXIF orientation applied, as for every image read
            gray = np.asarray(upright(img).convert("L"), dtype=np.uint8)
    except (InputError, OSError, SyntaxError) as err:
        raise InputError(f"task mask:{path}: the mask does not read as an image ({err})") from err
    observed = gray >= 128
    if not observed.any():
        raise InputError(
            f"task mask:{path}: the mask observes nothing: every pixel is darker than 128 (black), and white marks "
            "what is observed; an all-black mask leaves no measurement to restore from"
        )
    return torch.from_numpy(observed)[None, None]


def _odd(k: float) -> int:
    """The odd integer nearest to ``k`` (rounding half up, at least 1)."""
    n = max(1, math.floor(k + 0.5))
    return n if n % 2 else n + 1


Kind = Literal["box", "box_centred", "sr", "deblur", "motion", "saturation", "mask"]

#: the family of each kind of task (:attr:`Task.family`): what per-task reference options key on
FAMILIES: dict[str, str] = {
    "box": "inpainting",
    "box_centred": "inpainting",
    "mask": "inpainting",
    "sr": "super_resolution",
    "deblur": "deblur",
    "motion": "motion_deblur",
    "saturation": "saturation",
}


@dataclass(frozen=True)
class Task:
    """An inverse problem on ``(C, H, W)`` images: how to build its operator for given image ids.

    ``name`` is the display name (an alias, a preset, or the canonical spec); everything else is the definition.
    ``size`` is the box side in pixels (0 when ``fraction`` gives it), the super-resolution factor, or the blur
    kernel size; ``reference_size`` > 0 makes pixel quantities of blurs scale with ``H / reference_size``.
    """

    name: str
    kind: Kind
    size: int  # box side (px), super-resolution factor, or blur kernel size
    sigma_y: float
    blur_sigma: float = 0.0
    fraction: float = 0.0  # box side as a fraction of the image side (when > 0)
    resize: Literal["avgpool", "bicubic"] = "avgpool"
    length: float = 0.0  # motion blur: line length (px)
    angle: float = 0.0  # motion blur: degrees
    reference_size: int = 0  # presets: the image size their pixel quantities are given at (0: absolute pixels)
    gain: float = 0.0  # saturation: the sensor's gain k in tanh(k blur(x)) (0 for every other kind)
    mask: str = ""  # mask image path
    mask_sha256: str = ""

    @property
    def family(self) -> str:
        """The kind of problem, as reference configs are organised (:data:`FAMILIES`): ``inpainting`` (boxes,
        masks), ``super_resolution``, ``deblur`` (Gaussian), ``motion_deblur`` or ``saturation``."""
        return FAMILIES[self.kind]

    @property
    def linear(self) -> bool:
        """Whether the task's operator is a :class:`~reguidance.operators.LinearOperator` (all but ``saturation``)."""
        return self.kind != "saturation"

    def definition(self) -> dict[str, object]:
        """Every parameter that determines the operator (not the display name): what a run's identity holds."""
        facts = asdict(self)
        del facts["name"]
        del facts["mask"]  # the file's content (sha256) counts, not where it lies
        if not self.gain:
            del facts["gain"]  # linear tasks keep the identity (and run hashes) they had before the field existed
        return facts

    # ------------------------------------------------------------------------------------ at a resolution
    def _scaled(self, value: float, h: int) -> float:
        return value * h / self.reference_size if self.reference_size else value

    def box_size(self, x_shape: Sequence[int]) -> tuple[int, int]:
        """The box's ``(h, w)`` in pixels for images ``(C, H, W)``."""
        _, h, w = x_shape
        if self.fraction > 0:
            return max(1, round(self.fraction * h)), max(1, round(self.fraction * w))
        return self.size, self.size

    def kernel_size(self, x_shape: Sequence[int]) -> int:
        return _odd(self._scaled(self.size, x_shape[1])) if self.reference_size else self.size

    def operator(self, ids: Sequence[int], seed: int, x_shape: Sequence[int], *, split: str = "test") -> Operator:
        """The operator for images ``(C, H, W) = x_shape`` with ids ``ids`` of ``split`` in a run seeded with
        ``seed`` (per-image random boxes); ``InputError`` naming the task when it does not fit ``x_shape``.
        :func:`make_operator` is the same with its arguments checked."""
        try:
            return self._operator(ids, seed, tuple(x_shape), split)
        except InputError:
            raise
        except ValueError as err:
            shape = "x".join(map(str, x_shape))
            raise InputError(f"task {self.name} does not fit {shape} images: {err}") from err

    def _operator(self, ids: Sequence[int], seed: int, x_shape: tuple[int, ...], split: str) -> Operator:
        if self.kind == "box":
            rng = stream_rng(seed, self.name, "mask", ids, split=split)
            return Inpainting.random_box(x_shape, self.box_size(x_shape), rng, self.sigma_y)
        if self.kind == "box_centred":
            return Inpainting.box(x_shape, self.box_size(x_shape), sigma_y=self.sigma_y)
        if self.kind == "sr":
            return SuperResolution(x_shape, self.size, kind=self.resize, sigma_y=self.sigma_y)
        if self.kind in ("deblur", "saturation"):
            std = self._scaled(self.blur_sigma, x_shape[1])
            blur = GaussianBlur(x_shape, self.kernel_size(x_shape), blur_sigma=std, sigma_y=self.sigma_y)
            return blur if self.kind == "deblur" else Saturation(blur, self.gain, self.sigma_y)
        if self.kind == "motion":
            size = self.kernel_size(x_shape)
            kernel = motion_kernel(self._scaled(self.length, x_shape[1]), self.angle, size)
            return Blur(x_shape, kernel, sigma_y=self.sigma_y)
        mask = _mask_image(self.mask, self.mask_sha256)
        if tuple(mask.shape[2:]) != tuple(x_shape[1:]):
            raise InputError(
                f"task mask:{self.mask}: the mask is {mask.shape[3]}x{mask.shape[2]} (width x height) but the images "
                f"are {x_shape[2]}x{x_shape[1]}; make a mask of the images' size (masks are never resized)"
            )
        return Inpainting(mask, self.sigma_y, x_shape=x_shape)

    def check(self, x_shape: Sequence[int]) -> Task:
        """Refuse (``InputError`` naming the task) a task that does not fit images ``(C, H, W)``; returns self."""
        self.operator([0], 0, x_shape)
        return self

    def measure(self, x: Tensor, ids: Sequence[int], seed: int, *, split: str = "test") -> tuple[Operator, Tensor]:
        """``(operator, y)`` for ground truths ``x`` (B, C, H, W) with image ids ``ids`` of ``split``."""
        if x.shape[0] != len(ids):
            raise ValueError(f"x has {x.shape[0]} images but {len(ids)} ids were given")
        operator = self.operator(ids, seed, tuple(x.shape[1:]), split=split).to(x.device)
        noise = stream_rng(seed, self.name, "noise", ids, device=x.device, split=split)
        return operator, operator.measure(x, noise)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("box16", "box", 16, 0.05),
        Task("box20", "box", 20, 0.05),
        Task("box16c", "box_centred", 16, 0.05),
        Task("box20c", "box_centred", 20, 0.05),
        Task("sr4", "sr", 4, 0.05),
        Task("sr8", "sr", 8, 0.05),
        Task("deblur", "deblur", 13, 0.2, blur_sigma=2.0),
        Task("satblur", "saturation", 13, 0.05, blur_sigma=2.0, gain=2.0),
    )
}

PRESETS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("paper:box128c", "box_centred", 0, DEFAULT_SIGMA_Y, fraction=0.5),
        Task("paper:box128", "box", 0, DEFAULT_SIGMA_Y, fraction=0.5),
        Task("paper:sr8", "sr", 8, DEFAULT_SIGMA_Y),
        Task("paper:sr16", "sr", 16, DEFAULT_SIGMA_Y),
        Task("paper:gauss", "deblur", 61, 0.2, blur_sigma=3.0, reference_size=256),
        Task("paper:motion", "motion", 61, DEFAULT_SIGMA_Y, length=31.0, angle=45.0, reference_size=256),
    )
}

_NUMBER = re.compile(r"^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$")

#: the largest number a spec takes (pixels, degrees, sigma_y): no image is larger, and every number of a spec is
#: finite and at most this, so ``std=1e999`` is refused while parsing, not overflowed later
SPEC_NUMBER_MAX = 10_000


def _number(spec: str, key: str, text: str, *, integer: bool = False, positive: bool = True) -> float:
    """The number ``text`` of option ``key``: finite, in ``(0, SPEC_NUMBER_MAX]`` (``[0, ...]`` unless
    ``positive``), an integer when ``integer``; otherwise an ``InputError`` naming the spec and the key."""
    if not _NUMBER.match(text) or (integer and not text.isdigit()):
        what = "an integer" if integer else "a number" if positive else "a number >= 0"
        raise _bad(spec, f"{key} must be {what}, got {text!r}")
    value = float(text)
    if not math.isfinite(value) or value > SPEC_NUMBER_MAX:
        raise _bad(spec, f"{key} must be at most {SPEC_NUMBER_MAX}, got {text}")
    if positive and value <= 0:
        raise _bad(spec, f"{key} must be > 0, got {text}")
    return value


def _bad(spec: str, why: str) -> InputError:
    return InputError(f"task {spec!r}: {why}. Expected {GRAMMAR}")


def _options(spec: str, parts: Sequence[str], allowed: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key not in allowed or key in out:
            want = ", ".join(f"{k}=" for k in allowed) or "nothing more"
            raise _bad(spec, f"{part!r} is not an option here (allowed: {want})")
        out[key] = value
    return out


def _fmt(v: float) -> str:
    return f"{v:g}"


def _parse_body(spec: str, head: str, rest: list[str]) -> Task:
    kind, _, arg = head.partition(":")
    if kind == "box":
        centred = arg.endswith("c")
        size_text = arg[:-1] if centred else arg
        if rest or not size_text:
            raise _bad(spec, "a box takes one size: box:128, box:0.5, box:128c or box:0.5c")
        k: Kind = "box_centred" if centred else "box"
        if "." in size_text or "e" in size_text.lower():
            f = _number(spec, "the box's fraction", size_text)
            if f > 1:
                raise _bad(spec, f"a box fraction must lie in (0, 1], got {size_text}")
            return Task(f"box:{_fmt(f)}{'c' if centred else ''}", k, 0, DEFAULT_SIGMA_Y, fraction=f)
        n = int(_number(spec, "the box's side", size_text, integer=True))
        return Task(f"box:{n}{'c' if centred else ''}", k, n, DEFAULT_SIGMA_Y)
    if kind == "sr":
        factor = int(_number(spec, "the factor", arg, integer=True))
        if not 2 <= factor <= 16:
            raise _bad(spec, f"the factor must be an integer in [2, 16], got {arg}")
        if len(rest) > 1 or (rest and rest[0] not in ("avgpool", "bicubic")):
            raise _bad(spec, f"sr takes at most one of avgpool, bicubic after the factor, got {','.join(rest)!r}")
        resize: Literal["avgpool", "bicubic"] = "bicubic" if rest and rest[0] == "bicubic" else "avgpool"
        name = f"sr:{factor}" + (",bicubic" if resize == "bicubic" else "")
        return Task(name, "sr", factor, DEFAULT_SIGMA_Y, resize=resize)
    if kind == "sat":
        if arg != "gauss":
            raise _bad(
                spec, f"a saturating sensor follows a Gaussian blur: sat:gauss,std=S[,size=K][,k=G], got sat:{arg}"
            )
        opts = _options(spec, rest, ("std", "size", "k"))
        gain = _number(spec, "k", opts.pop("k")) if "k" in opts else 2.0
        blur = _parse_body(spec, "blur:gauss", [f"{key}={value}" for key, value in opts.items()])
        name = f"sat:gauss,std={_fmt(blur.blur_sigma)},size={blur.size},k={_fmt(gain)}"
        return replace(blur, name=name, kind="saturation", gain=gain)
    if kind == "blur":
        if arg == "gauss":
            opts = _options(spec, rest, ("std", "size"))
            if "std" not in opts:
                raise _bad(spec, "a Gaussian blur needs std=S (pixels)")
            std = _number(spec, "std", opts["std"])
            if "size" in opts:
                size = int(_number(spec, "size", opts["size"], integer=True))
            else:
                size = 2 * math.ceil(3 * std) + 1  # the kernel truncated at 3 standard deviations
            if size % 2 == 0:
                raise _bad(spec, f"size must be odd, got {size}")
            return Task(f"blur:gauss,std={_fmt(std)},size={size}", "deblur", size, DEFAULT_SIGMA_Y, blur_sigma=std)
        if arg == "motion":
            opts = _options(spec, rest, ("length", "angle", "size"))
            if "length" not in opts:
                raise _bad(spec, "a motion blur needs length=L (pixels)")
            length = _number(spec, "length", opts["length"])
            angle_text = opts.get("angle", "45")
            if not _NUMBER.match(angle_text.removeprefix("-")):
                raise _bad(spec, f"angle must be a number of degrees, got {angle_text!r}")
            angle = float(angle_text)
            if not abs(angle) <= SPEC_NUMBER_MAX:
                limit = SPEC_NUMBER_MAX
                raise _bad(spec, f"angle must be a number of degrees in [-{limit}, {limit}], got {angle_text}")
            size = int(_number(spec, "size", opts["size"], integer=True)) if "size" in opts else _odd(length + 1)
            if size % 2 == 0:
                raise _bad(spec, f"size must be odd, got {size}")
            name = f"blur:motion,length={_fmt(length)},angle={_fmt(angle)},size={size}"
            return Task(name, "motion", size, DEFAULT_SIGMA_Y, length=length, angle=angle)
        raise _bad(spec, f"blur must be blur:gauss,... or blur:motion,..., got blur:{arg}")
    if kind == "mask":
        path = ",".join([arg, *rest])  # a path may hold commas
        if not arg:
            raise _bad(spec, "mask needs a path: mask:PATH")
        file = Path(path).expanduser()
        if not file.is_file():
            raise _bad(spec, f"no such mask file {path!r}")
        from .io.hashing import sha256_file

        task = Task(f"mask:{path}", "mask", 0, DEFAULT_SIGMA_Y, mask=str(file), mask_sha256=sha256_file(file))
        _mask_image(task.mask, task.mask_sha256)  # it must read as an image now, before anything heavy loads
        return task
    raise InputError(f"task must be one of the names, presets or specs {GRAMMAR}; got {spec!r}")


def parse_task(spec: str) -> Task:
    """The task a spec names (grammar in the module docstring); ``InputError`` naming the spec and the grammar."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(str(spec), "the task is empty")
    text = spec.strip()
    parts = [p.strip() for p in text.split(",")]
    sigma: float | None = None
    if parts[-1].startswith("sigma_y="):
        value = parts.pop()[len("sigma_y=") :]
        sigma = _number(text, "sigma_y", value, positive=False)
        if sigma == 0:  # the consistency ||Ax - y|| / (sigma_y sqrt(m)) and every likelihood divide by it
            raise _bad(text, "sigma_y must be > 0 (the consistency and the likelihoods divide by it), got 0")
        if not parts or not parts[0]:
            raise _bad(text, "sigma_y=V must follow a task")
    head, rest = parts[0], parts[1:]
    if head in TASKS or head in PRESETS:
        if rest:
            raise _bad(text, f"{head} takes no options but sigma_y=V")
        task = TASKS.get(head) or PRESETS[head]
    elif head.startswith(("box:", "sr:", "blur:", "sat:", "mask:")):
        task = _parse_body(text, head, rest)
    else:
        raise InputError(f"task must be one of the names, presets or specs {GRAMMAR}; got {text!r}")
    if sigma is not None and sigma != task.sigma_y:
        task = replace(task, name=f"{task.name},sigma_y={_fmt(sigma)}", sigma_y=sigma)
    return _canonical(task)


def _canonical(task: Task) -> Task:
    """One name per operator: the alias, else the preset, whose definition is the task's (``sr:8`` is ``sr8``,
    ``box:20c`` is ``box20c``; with another ``sigma_y``, that name followed by ``,sigma_y=V``), else the task as
    parsed (its canonical spec). Streams, defaults and records all key on this name, so every spelling of one
    operator gives the same rows."""
    definition = task.definition()
    known = (*TASKS.values(), *PRESETS.values())
    for named in known:
        if named.definition() == definition:
            return named
    for named in known:
        if replace(named, sigma_y=task.sigma_y).definition() == definition:
            return replace(named, name=f"{named.name},sigma_y={_fmt(task.sigma_y)}", sigma_y=task.sigma_y)
    return task


def split_tasks(text: str) -> list[str]:
    """A list of tasks as typed on the command line -> the specs: separated by ``;``, or by commas, where a piece
    that is an option (``key=value``, ``bicubic``, ``avgpool``) belongs to the task before it.
    ``"paper:sr16,sr:8,bicubic,sigma_y=0.1"`` -> ``["paper:sr16", "sr:8,bicubic,sigma_y=0.1"]``; a mask path
    holding commas needs ``;`` around it."""
    specs: list[str] = []
    for group in text.split(";"):
        for piece in (p.strip() for p in group.split(",")):
            if not piece:
                continue
            option = "=" in piece or piece in ("bicubic", "avgpool")
            if not option or not specs or specs[-1] == ";":
                specs.append(piece)
            else:
                specs[-1] += f",{piece}"
        specs.append(";")
    return [s for s in specs if s != ";"]


def make_operator(
    task: str | Task,
    image_shape: Sequence[int],
    *,
    ids: Sequence[int] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    split: str = "test",
) -> Operator:
    """The forward operator of ``task`` for images of shape ``image_shape = (C, H, W)`` (pass ``x.shape[1:]`` of a
    batch ``x: (B, C, H, W)`` in [-1, 1]).

    Arguments:
        task: a name, preset or spec of the grammar in the module docstring (``"sr:8"``, ``"paper:box128c"``,
            ``"blur:gauss,std=3"``, ...) or a parsed :class:`Task`.
        image_shape: ``(C, H, W)``; required (there is no default size). Sizes given relative to the image (a box
            fraction, a preset) are resolved at this size.
        ids: one id per image of the batch, for the task's per-image random draws (a random box's position):
            image ``ids[b]`` gets the draw of stream ``(seed, split, task, "mask", ids[b])``. ``None``: one draw,
            of id 0, shared by every image of any batch (the operator's mask has batch size 1 and broadcasts).
            Tasks without random draws (centred boxes, super-resolution, blurs, masks) ignore them.
        seed, split: the run's seed and the split's name in those streams (:func:`stream_rng`).
        device: where the operator's tensors (masks, kernels) live; default CPU.

    Returns an :class:`~reguidance.operators.Operator` (every task's is a
    :class:`~reguidance.operators.LinearOperator`) with ``x_shape = image_shape``, ``y_shape`` its measurement's
    shape and ``sigma_y`` the task's noise on the [-1, 1] scale. Raises :class:`InputError` for a malformed task,
    a shape that is not three positive integers, or a task that does not fit the shape (a box larger than the
    image, a factor that does not divide it).
    """
    parsed = task if isinstance(task, Task) else parse_task(task)
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        hint = "; for a batch x of shape (B, C, H, W) pass x.shape[1:]" if len(shape) == 4 else ""
        raise InputError(f"image_shape must be (C, H, W), three positive integers; got {shape!r}{hint}")
    chosen = [0] if ids is None else [int(i) for i in ids]
    if not chosen:
        raise InputError("ids is empty; give one id per image of the batch, or None for one shared draw")
    operator = parsed.operator(chosen, seed, shape, split=split)
    return operator if device is None else operator.to(device)


def get_task(name: str) -> Task:
    """The task ``name`` names: an alias, a preset or a spec (:func:`parse_task`)."""
    return parse_task(name)


def id_span(ids: Sequence[int]) -> tuple[int, int]:
    """``(lowest, highest + 1)`` of a non-empty sequence of image ids, at once for a ``range`` (its start, stop and
    step: ``range(0, 10**12)`` is never walked), by one pass otherwise; ``InputError`` when ``ids`` is empty."""
    if len(ids) == 0:
        raise InputError("ids is empty: give a range A:B with A < B")
    if isinstance(ids, range):
        first, last = ids[0], ids[-1]
        return min(first, last), max(first, last) + 1
    return int(min(ids)), int(max(ids)) + 1


def check_ids(ids: Sequence[int], available: int, flag: str = "--ids", where: str = "") -> None:
    """Refuse (``InputError`` naming ``flag``) ids outside ``[0, available)``, checked arithmetically for a range
    (:func:`id_span`); ``where`` says what the images are (``"the 256 test images of mnist here"``)."""
    lo, hi = id_span(ids)
    if lo < 0 or hi > available:
        there = where or f"the {available} images available"
        raise InputError(f"{flag} {lo}:{hi} go past {there}: ids 0:{available} are available")


def parse_ids(spec: str, limit: int | None = None) -> range:
    """``"A:B"`` -> ``range(A, B)`` (test-split indices A to B-1); ``limit`` is the split's size."""
    parts = spec.split(":")
    try:
        start, stop = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (None, None)
    except ValueError:
        start = stop = None
    if start is None or stop is None:
        raise InputError(f"--ids must look like A:B with integers A < B, got {spec!r}")
    if start < 0 or stop <= start:
        raise InputError(f"--ids must satisfy 0 <= A < B, got {spec!r}")
    if limit is not None and stop > limit:
        raise InputError(f"--ids {spec!r} go past the split's {limit} images (ids 0:{limit} are available)")
    return range(start, stop)
