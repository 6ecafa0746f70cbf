r"""Image files to and from ``(B, C, H, W)`` float batches in ``[-1, 1]``: reading PNG/JPEG files and folders,
writing PNGs, and tiling a batch into one grid.

Scale. An 8-bit pixel ``u in {0, ..., 255}`` maps to ``x = u / 127.5 - 1``, so ``0 -> -1`` (black) and
``255 -> 1``; writing back rounds ``u = round((x + 1) * 127.5)`` after clamping to ``[-1, 1]``, so a write/read
round trip moves a pixel by at most ``1/255``.

Channels. ``C`` is 1 (gray) or 3 (RGB). Reading with ``channels=1`` converts colour to gray with ITU-R 601 luma
``0.299 R + 0.587 G + 0.114 B``; ``channels=3`` repeats gray; ``channels=None`` keeps each file's own: 1 for a
file with one colour band (modes ``1``, ``L``, ``LA``, ``I``, ``I;16``, ``F``), 3 otherwise (``RGB``, ``RGBA``,
palette, ...). 16-bit gray is rounded to 8 bits (``u16 / 257``).

Transparency. A file with an alpha channel (``RGBA``, ``LA``, a palette with a transparent colour) is composited
over a solid ``background`` colour (default :data:`DEFAULT_BACKGROUND`, white) at its own size, before any resize:
``u = a u_rgb + (1 - a) u_bg`` with ``a`` the alpha in [0, 1], so what a viewer shows on a white page is what is
read. (Dropping alpha instead would keep whatever colour the file stores under its transparent pixels.)

Orientation. A file's EXIF orientation tag (phones store photos sideways and set it) is applied when the file is
read (:func:`open_image`, Pillow's ``ImageOps.exif_transpose``), as every image viewer does: a photo tagged
"rotate 90" is read upright, and its size is the upright one (:func:`image_size`).

Limit. A file of more than :data:`MAX_PIXELS` pixels (128 megapixels, e.g. 11313 x 11313; about 366 MiB as 8-bit
RGB once decoded) is refused with an :class:`~reguidance.conventions.InputError` naming it, from its header alone;
below that no decompression-bomb warning is printed (Pillow warns from 89 megapixels).

Checked before work (:func:`inspect_images`): every reader of users' files reads each file through (header, then
the whole image decoded) before its command writes anything, so a file that is not an image, too large, truncated
or corrupt is one ``InputError`` naming it, never a traceback and never found half-way through a run.

Sizes. ``size=None`` keeps each file's own size (all files must then agree); otherwise each image is fitted to
``size x size`` by one of two rules: ``mode="center_crop"`` (the default, and the one rule of ``reguidance bench
--data folder:`` and ``reguidance restore --resize``) takes the largest central square, then resizes it, so shapes
keep their proportions and a non-square image loses the ends of its longer side; ``mode="stretch"`` resizes the
whole image, aspect ratio not kept. Resizing is Pillow's bicubic filter (antialiased when shrinking) and is
skipped when the image already has the target size.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageColor, ImageOps
from torch import Tensor

from ..conventions import InputError, check_finite, check_positive_int

__all__ = [
    "DEFAULT_BACKGROUND",
    "DEFAULT_MODE",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageFacts",
    "ResizeMode",
    "check_background",
    "check_file_names",
    "composite",
    "decode",
    "from_uint8",
    "image_files",
    "image_size",
    "inspect_images",
    "load_images",
    "make_grid",
    "open_image",
    "read_images",
    "save_grid",
    "save_images",
    "to_uint8",
    "upright",
]

ResizeMode = Literal["center_crop", "stretch"]
"""How an image is fitted to ``size x size`` (module docstring): the central square, or the whole image stretched."""

#: the fitting rule of every reader here, and of ``bench --data folder:`` and ``restore --resize``
DEFAULT_MODE: ResizeMode = "center_crop"

#: the colour transparent pixels are composited over (any colour name or ``#rrggbb`` that Pillow reads)
DEFAULT_BACKGROUND = "white"

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
"""File suffixes (any case) that :func:`load_images` reads in a folder; other files there are ignored."""

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


# --------------------------------------------------------------------------------------------------------------
# pixels: uint8 <-> [-1, 1]


def from_uint8(u: np.ndarray | Tensor) -> Tensor:
    """uint8 array of any shape -> float32 tensor in ``[-1, 1]`` (``u / 127.5 - 1``)."""
    t = torch.as_tensor(np.ascontiguousarray(u)) if isinstance(u, np.ndarray) else u
    return t.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """Float tensor in ``[-1, 1]`` (clamped) -> uint8 tensor, ``round((x + 1) * 127.5)``."""
    return ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


# --------------------------------------------------------------------------------------------------------------
# reading

#: the most pixels (width x height) an image file may have; larger ones are refused from their header
MAX_PIXELS = 128_000_000

#: EXIF orientations that swap width and height (transpose, rotate 90, transverse, rotate 270)
_SWAPPED = frozenset({5, 6, 7, 8})
_ORIENTATION = 0x0112


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, TypeError):  # a malformed EXIF block: treated as untagged
        return 1
    return value if isinstance(value, int) else 1


def _too_large(path: Path, size: str) -> str:
    return (
        f"image file {str(path)!r} is too large ({size}); at most {MAX_PIXELS / 1e6:.0f} megapixels are read: "
        "make it smaller first"
    )


@contextmanager
def open_image(file: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """Open an image file as Pillow does, lazily (the header only until pixels are asked for), for reading:
    files over :data:`MAX_PIXELS` pixels are refused and Pillow's decompression-bomb warning is not printed;
    an unreadable file is an ``InputError`` naming it. Orientation is *not* applied here: :func:`upright` does."""
    path = Path(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:  # Pillow's own limit (twice its warning's), far above MAX_PIXELS
        raise InputError(_too_large(path, f"{' '.join(str(err).split())}")) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"could not read image file {str(path)!r}: {' '.join(str(err).split())}") from err
    with img:
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise InputError(_too_large(path, f"{w}x{h}, {w * h / 1e6:.0f} megapixels"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield img


def upright(img: Image.Image) -> Image.Image:
    """The image as it is meant to be seen: its EXIF orientation applied (``ImageOps.exif_transpose``)."""
    if _orientation(img) == 1:
        return img
    return ImageOps.exif_transpose(img)


def image_size(file: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file as it is seen (EXIF orientation applied), from its header alone;
    ``InputError`` naming a file that does not read as an image or is too large (:func:`open_image`)."""
    with open_image(file) as img:
        w, h = img.size
        return (h, w) if _orientation(img) in _SWAPPED else (w, h)


class ImageFacts(NamedTuple):
    """What reading an image file through found: its ``width`` and ``height`` as seen (EXIF orientation applied)
    and whether it holds ``colour`` (after compositing alpha: some pixel whose R, G and B differ)."""

    width: int
    height: int
    colour: bool


def inspect_images(files: Sequence[str | os.PathLike[str]], flag: str | None = None) -> list[ImageFacts]:
    """Read every image file through, now, before any work uses it: the facts of each (:class:`ImageFacts`).

    The one check every reader of users' files makes before the first write: the header (:func:`open_image`:
    not an image, or over :data:`MAX_PIXELS`), then the whole file decoded, which is the only way to find a
    truncated or corrupt file (its header reads fine). A failure is an ``InputError`` naming the file, prefixed
    by ``flag`` (e.g. ``--image``) when given. Files are read one at a time; nothing is kept but the facts."""
    found = []
    for file in files:
        try:
            with open_image(file) as img:
                try:
                    img.load()
                    flat = composite(upright(img))
                    colour = flat.mode not in _GRAY_MODES and _differs(np.asarray(flat.convert("RGB")))
                except (OSError, SyntaxError, ValueError) as err:
                    raise InputError(f"could not read image file {str(file)!r}: {' '.join(str(err).split())}") from err
                found.append(ImageFacts(flat.size[0], flat.size[1], colour))
        except InputError as err:
            if flag is None:
                raise
            raise InputError(f"{flag}: {err}") from err
    return found


def _differs(rgb: np.ndarray) -> bool:
    """Whether some pixel of an ``(H, W, 3)`` array has channels that differ."""
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def check_file_names(files: Sequence[str | os.PathLike[str]], flag: str) -> None:
    """Refuse (``InputError`` naming ``flag``) a file whose name is not text: bytes that do not decode in the file
    system's encoding (under ``LC_ALL=C`` or on a disk written elsewhere), which Python keeps as lone surrogates.
    Such a name cannot be written into a JSON row, a report page or a picture's label; rename the file."""
    for file in files:
        name = Path(file).name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(name)
            folder = ascii(str(Path(file).parent))
            raise InputError(
                f"{flag}: the file name {raw!r} in {folder} is not valid text in the file system's encoding "
                f"({sys.getfilesystemencoding()}); rename it (names are written into rows, reports and pictures)"
            ) from None


def check_background(background: str) -> tuple[int, int, int]:
    """The RGB triple of a colour name or ``#rrggbb`` (Pillow's ``ImageColor``); ``InputError`` naming a bad one."""
    try:
        rgb = ImageColor.getrgb(background)
    except (ValueError, AttributeError) as err:
        raise InputError(f"background must be a colour name or #rrggbb, got {background!r}") from err
    return rgb[0], rgb[1], rgb[2]


def composite(img: Image.Image, background: str = DEFAULT_BACKGROUND) -> Image.Image:
    """``img`` over a solid ``background`` where it has transparency (alpha band or a transparent palette colour),
    else ``img`` unchanged. The result is ``RGB``, or ``L`` for a gray image (``LA``)."""
    has_alpha = img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info
    if not has_alpha:
        return img
    gray = img.mode in ("LA", "La")
    rgba = img.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (*check_background(background), 255)), rgba)
    return flat.convert("L" if gray else "RGB")


def _pil_to_uint8(img: Image.Image, channels: int | None) -> np.ndarray:
    """A Pillow image (alpha already composited) -> uint8 ``(H, W, C)``; ``channels=None`` keeps the file's own."""
    if channels is None:
        channels = 1 if img.mode in _GRAY_MODES else 3
    if img.mode.startswith("I;16"):  # 16-bit grayscale: keep the top 8 bits' worth, rounded
        arr16 = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.round(arr16 / 257.0).astype(np.uint8))
    arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _fit(img: Image.Image, size: int, mode: str) -> Image.Image:
    """Resize to ``size x size`` (``center_crop``: central square first; ``stretch``: whole image, aspect not kept)."""
    if mode == "center_crop":
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return img


def decode(
    img: Image.Image,
    size: int | None,
    channels: int | None,
    mode: str = DEFAULT_MODE,
    background: str = DEFAULT_BACKGROUND,
) -> np.ndarray:
    """An opened image as uint8 ``(H, W, C)``: upright, alpha composited over ``background``, then fitted to
    ``size x size`` by ``mode`` unless ``size`` is None; the one rule of every reader here."""
    img.load()
    img = composite(upright(img), background)
    return _pil_to_uint8(img if size is None else _fit(img, size, mode), channels)


def _read_image(file: Path, size: int | None, channels: int | None, mode: str, background: str) -> np.ndarray:
    """One image file as uint8 ``(H, W, C)``, fitted to ``size x size`` unless ``size`` is None."""
    with open_image(file) as img:
        try:
            return decode(img, size, channels, mode, background)
        except (OSError, SyntaxError, ValueError) as err:
            raise InputError(f"could not read image file {str(file)!r}: {' '.join(str(err).split())}") from err


def _check_read_args(size: int | None, channels: int | None, mode: str, background: str) -> int | None:
    check_background(background)
    if channels not in (None, 1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels!r} (or None to keep each file's own)")
    if mode not in ("center_crop", "stretch"):
        raise InputError(f"mode must be 'center_crop' or 'stretch', got {mode!r}")
    return None if size is None else check_positive_int("size", size)


def read_images(
    files: Sequence[str | os.PathLike[str]],
    size: int | None = None,
    channels: int | None = None,
    *,
    mode: ResizeMode = DEFAULT_MODE,
    background: str = DEFAULT_BACKGROUND,
) -> Tensor:
    """The image ``files``, in the given order, as ``images (N, C, H, W)`` float32 in ``[-1, 1]``.

    ``channels``: 1, 3, or ``None`` to keep the files' own (gray files give ``C = 1``, colour files ``C = 3``);
    ``size``: an integer to fit every image to ``size x size`` by ``mode`` (``"center_crop"``, the default, or
    ``"stretch"``; see the module docstring), or ``None`` to keep the files' own size; ``background``: the colour
    transparent pixels are composited over (the module docstring). Raises
    :class:`~reguidance.conventions.InputError` (a ``ValueError``) naming a file that cannot be decoded, and when
    the images do not agree in shape.
    """
    size = _check_read_args(size, channels, mode, background)
    if len(files) == 0:
        raise InputError("no image files given; expected at least one")
    batch = [_read_image(Path(f), size, channels, mode, background) for f in files]
    shapes = {b.shape for b in batch}
    if len(shapes) > 1:
        (h, w, c), *_ = sorted(shapes)
        odd = next(Path(f).name for f, b in zip(files, batch, strict=True) if b.shape != (h, w, c))
        sizes = sorted(f"{s[2]}x{s[0]}x{s[1]}" for s in shapes)
        raise InputError(
            f"the images differ in shape (channels x height x width: {', '.join(sizes)}; {odd!r} is one); "
            "pass a size (and channels) to make them agree"
        )
    return from_uint8(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly in ``folder`` (names ending in :data:`IMAGE_SUFFIXES`, any case; other files and
    subfolders ignored), sorted by name: what :func:`load_images` reads from a folder. ``InputError`` when there
    is none."""
    root = Path(folder)
    files = sorted(
        (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name
    )
    if not files:
        raise InputError(f"folder {str(root)!r} holds no image; expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return files


def load_images(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    size: int | None = None,
    channels: int | None = None,
    *,
    mode: ResizeMode = DEFAULT_MODE,
    background: str = DEFAULT_BACKGROUND,
) -> tuple[Tensor, list[str]]:
    """Image files as a batch: ``(images, names)``, ``images (N, C, H, W)`` float32 in ``[-1, 1]`` and the files'
    ``names`` (without their folder), image ``n`` read from file ``names[n]``.

    Arguments:
        source: a folder (every PNG/JPEG/WebP file directly in it, sorted by name; other files and subfolders are
            ignored), one image file, or a list of image files (read in the given order).
        size: fit every image to ``size x size`` by ``mode``; ``None`` (default) keeps the files' own size, which
            must then agree.
        channels: 1 (gray, ITU-R 601 luma), 3 (RGB), or ``None`` (default) to keep the files' own.
        mode: ``"center_crop"`` (default: the largest central square, then a bicubic resize) or ``"stretch"`` (the
            whole image resized, aspect ratio not kept). Rules in the module docstring.
        background: the colour transparent pixels are composited over (default white).

    Raises :class:`~reguidance.conventions.InputError` (a ``ValueError``) when ``source`` is neither an image file,
    a folder nor a list of image files, a folder holds no image, a file cannot be decoded (naming it), or the
    images do not agree in shape.
    """
    size = _check_read_args(size, channels, mode, background)
    suffixes = ", ".join(IMAGE_SUFFIXES)
    if isinstance(source, (str, os.PathLike)):
        target = Path(source)
        if target.is_dir():
            files = image_files(target)
        elif target.is_file():
            files = [target]
        else:
            raise InputError(f"path {str(target)!r} is neither an image file nor a folder")
    else:
        files = [Path(f) for f in source]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InputError(f"no such image file {missing[0]!r}; expected a list of image files")
    for f in files:
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"file {str(f)!r} is not an image; expected a name ending in {suffixes}")
    return read_images(files, size, channels, mode=mode, background=background), [p.name for p in files]


# --------------------------------------------------------------------------------------------------------------
# writing


def _check_image_batch(name: str, x: Tensor) -> Tensor:
    check_finite(name, x)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"{name} has shape {tuple(x.shape)} but (B, C, H, W) with C = 1 or 3 is expected")
    return x


def save_images(x: Tensor, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Write each image of ``x: (B, C, H, W)`` in ``[-1, 1]`` (``C`` = 1 or 3; clamped, rounded to 8 bits) to the
    matching path; the format follows the suffix (PNG is lossless). Parent folders are created."""
    _check_image_batch("x", x)
    if len(paths) != x.shape[0]:
        raise InputError(f"paths holds {len(paths)} paths but x holds {x.shape[0]} images")
    pixels = to_uint8(x).permute(0, 2, 3, 1).cpu().numpy()
    for arr, p in zip(pixels, paths, strict=True):
        out = Path(p)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(out)


def make_grid(x: Tensor, nrow: int = 8, *, padding: int = 2, pad_value: float = -1.0) -> Tensor:
    """Tile ``x: (B, C, H, W)`` into one image ``(C, rows (H + padding) + padding, cols (W + padding) + padding)``,
    ``nrow`` images per row (``cols = min(nrow, B)``, ``rows = ceil(B / cols)``), row-major, gaps and empty cells
    filled with ``pad_value`` (on the image scale: ``-1`` is black)."""
    if x.dim() != 4 or x.shape[0] == 0:
        raise InputError(f"x has shape {tuple(x.shape)} but a non-empty (B, C, H, W) batch is expected")
    nrow = check_positive_int("nrow", nrow)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise InputError(f"padding must be an integer >= 0, got {padding!r}")
    b, c, h, w = x.shape
    cols = min(nrow, b)
    rows = math.ceil(b / cols)
    cells = x.new_full((rows * cols, c, h, w), pad_value)
    cells[:b] = x
    cells = F.pad(cells, (0, padding, 0, padding), value=pad_value)  # gap right of and below each image
    grid = cells.reshape(rows, cols, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(c, rows * (h + padding), cols * (w + padding))
    return F.pad(grid, (padding, 0, padding, 0), value=pad_value)


def save_grid(
    x: Tensor, path: str | os.PathLike[str], nrow: int = 8, *, padding: int = 2, pad_value: float = -1.0
) -> None:
    """Write ``x: (B, C, H, W)`` in ``[-1, 1]`` (``C`` = 1 or 3) as one image tiled by :func:`make_grid`."""
    _check_image_batch("x", x)
    save_images(make_grid(x, nrow, padding=padding, pad_value=pad_value)[None], [path])
