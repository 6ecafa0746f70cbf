r"""Pictures people can read: image grids with a label over every column and beside every row, and overviews of
several such grids under their titles. Pillow only, with its built-in bitmap font (no font files).

Layout of :func:`labelled_grid` for ``R`` rows and ``K`` columns of ``(C, H, W)`` images (all sizes in pixels):

- every image is enlarged by the integer factor ``s = max(1, ceil(MIN_CELL / W))`` (nearest neighbour, so a
  28-pixel MNIST digit is shown 112 pixels wide and a pixel of the image stays a block of ``s x s`` equal pixels);
  a cell is ``(s H) x (s W)``;
- a label strip of ``LINE`` pixels on top (one per text line: the optional title, then the column labels), and a
  strip of ``row_label_width(rows)`` pixels on the left holding the row labels;
- a gap of ``GAP`` pixels right of and below every cell; the image of row ``r``, column ``k`` has its top-left
  corner at ``(left + k (s W + GAP), top + r (s H + GAP))``, ``left`` and ``top`` the two label strips;
- so the picture is ``left + K (s W + GAP)`` wide and ``top + R (s H + GAP)`` high, white (255) outside the
  cells, text black (0). Gray images give a gray (``L``) picture, RGB ones an ``RGB`` picture.

Text is drawn in Pillow's bitmap font (``CHAR_WIDTH x 11`` pixels per character, Latin-1; other characters are
drawn as ``?``); a label longer than its space is cut and ends in ``..``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..conventions import InputError
from .images import to_uint8

__all__ = [
    "CHAR_WIDTH",
    "GAP",
    "LINE",
    "MAX_ROW_LABEL",
    "MIN_CELL",
    "cell_scale",
    "fit_text",
    "labelled_grid",
    "overview",
    "row_label_width",
    "save_labelled_grid",
    "save_memorisation_figure",
]

#: images narrower than this many pixels are enlarged by an integer factor (labels need the room)
MIN_CELL = 96
#: pixels between cells (right of and below each)
GAP = 2
#: width of one character of the bitmap font
CHAR_WIDTH = 6
#: height of one line of text with its margins (11-pixel font, 3 above and 3 below)
LINE = 17
#: margin left of a label
MARGIN = 3
#: row labels longer than this many characters are cut
MAX_ROW_LABEL = 24
WHITE, BLACK = 255, 0


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def fit_text(text: str, width: int) -> str:
    """``text`` as drawn in ``width`` pixels: characters outside Latin-1 (and control characters) replaced by
    ``?``, cut to ``width // CHAR_WIDTH`` characters with a final ``..`` when it was longer."""
    clean = "".join(c if c.isprintable() and ord(c) < 256 else "?" for c in text)
    room = max(width // CHAR_WIDTH, 0)
    if len(clean) <= room:
        return clean
    return clean[: max(room - 2, 0)] + ".." if room >= 3 else clean[:room]


def cell_scale(width: int) -> int:
    """The integer enlargement of an image ``width`` pixels wide: ``max(1, ceil(MIN_CELL / width))``."""
    return max(1, math.ceil(MIN_CELL / width))


def row_label_width(rows: Sequence[str]) -> int:
    """Width of the row-label strip: the longest label (at most :data:`MAX_ROW_LABEL` characters) and a margin
    either side; 0 without row labels."""
    if not rows:
        return 0
    longest = max(len(fit_text(r, MAX_ROW_LABEL * CHAR_WIDTH)) for r in rows)
    return longest * CHAR_WIDTH + 2 * MARGIN


def labelled_grid(x: Tensor, columns: Sequence[str], rows: Sequence[str] = (), title: str | None = None) -> Image.Image:
    """One picture of ``x: (R K, C, H, W)`` in ``[-1, 1]`` (``C`` = 1 or 3), row-major: row ``r`` holds images
    ``r K ... r K + K - 1``, under the ``K`` labels ``columns``; ``rows`` (``R`` labels, or none) are written left
    of the rows, ``title`` (optional) above the column labels. The layout is the module's."""
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise InputError(f"x has shape {tuple(x.shape)} but a non-empty (B, C, H, W) batch with C = 1 or 3 is expected")
    k = len(columns)
    if k == 0 or x.shape[0] % k:
        raise InputError(f"x holds {x.shape[0]} images, which is not a whole number of rows of {k} columns")
    n_rows = x.shape[0] // k
    if rows and len(rows) != n_rows:
        raise InputError(f"{len(rows)} row labels for {n_rows} rows")
    _, c, h, w = x.shape
    s = cell_scale(w)
    cw, ch = s * w, s * h
    left = row_label_width(rows)
    top = LINE * (2 if title else 1)
    mode = "L" if c == 1 else "RGB"
    white = WHITE if c == 1 else (WHITE,) * 3
    black = BLACK if c == 1 else (BLACK,) * 3
    picture = Image.new(mode, (left + k * (cw + GAP), top + n_rows * (ch + GAP)), white)
    pixels = to_uint8(x).permute(0, 2, 3, 1).cpu().numpy()
    for j, arr in enumerate(pixels):
        cell = Image.fromarray(arr[:, :, 0] if c == 1 else arr).resize((cw, ch), Image.Resampling.NEAREST)
        r, col = divmod(j, k)
        picture.paste(cell, (left + col * (cw + GAP), top + r * (ch + GAP)))
    draw, font = ImageDraw.Draw(picture), _font()
    if title:
        draw.text((MARGIN, 3), fit_text(title, picture.width - MARGIN), fill=black, font=font)
    for col, label in enumerate(columns):
        at = (left + col * (cw + GAP) + MARGIN, top - LINE + 3)
        draw.text(at, fit_text(label, cw - MARGIN), fill=black, font=font)
    for r, label in enumerate(rows):
        y = top + r * (ch + GAP) + max((ch - 11) // 2, 0)
        draw.text((MARGIN, y), fit_text(label, MAX_ROW_LABEL * CHAR_WIDTH), fill=black, font=font)
    return picture


def save_labelled_grid(
    x: Tensor,
    path: str | os.PathLike[str],
    columns: Sequence[str],
    rows: Sequence[str] = (),
    title: str | None = None,
) -> None:
    """Write :func:`labelled_grid` of the same arguments to ``path`` (PNG by its suffix; parent folders made)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(x, columns, rows, title).save(path)


def overview(
    pictures: Sequence[Image.Image], title: str, per_row: int = 3, titles: Sequence[str] | None = None
) -> Image.Image:
    """``pictures`` (e.g. labelled grids, which carry their own titles) tiled ``per_row`` to a row, in order, under
    ``title`` (one line of text, :data:`LINE` pixels) and, when ``titles`` are given, each under its own line;
    ``4 GAP`` pixels between pictures, a column as wide as its widest picture, a row as high as its highest.
    RGB when any picture is, else gray; white around the pictures."""
    if not pictures or (titles is not None and len(titles) != len(pictures)):
        raise InputError(
            f"{len(pictures)} pictures and {len(titles or ())} titles: at least one picture, one title each"
        )
    per_row = max(1, min(per_row, len(pictures)))
    space = 4 * GAP
    head = LINE if titles is not None else 0
    lines = [list(pictures[i : i + per_row]) for i in range(0, len(pictures), per_row)]
    widths = [max(p.width for p in (line[j] for line in lines if j < len(line))) for j in range(per_row)]
    heights = [head + max(p.height for p in line) for line in lines]
    mode = "RGB" if any(p.mode != "L" for p in pictures) else "L"
    white = WHITE if mode == "L" else (WHITE,) * 3
    black = BLACK if mode == "L" else (BLACK,) * 3
    width = sum(widths) + space * (per_row - 1)
    sheet = Image.new(mode, (width, LINE + sum(heights) + space * (len(lines) - 1)), white)
    draw, font = ImageDraw.Draw(sheet), _font()
    draw.text((MARGIN, 3), fit_text(title, width - MARGIN), fill=black, font=font)
    y = LINE
    for r, line in enumerate(lines):
        x0 = 0
        for j, p in enumerate(line):
            if titles is not None:
                name = titles[r * per_row + j]
                draw.text((x0 + MARGIN, y + 3), fit_text(name, widths[j] - MARGIN), fill=black, font=font)
            sheet.paste(p.convert(mode), (x0, y + head))
            x0 += widths[j] + space
        y += heights[r] + space
    return sheet


def save_memorisation_figure(
    report: dict[str, object],
    samples: Tensor,
    train: Tensor,
    path: str | os.PathLike[str],
    *,
    title: str,
    pairs: int = 8,
) -> None:
    """The memorisation figure of :func:`reguidance.evaluation.memorisation.memorisation`'s ``report``: on the left
    the histograms of the samples' and the held-out images' nearest-training-image distances with the near-copy
    threshold, on the right the ``pairs`` samples closest to a training image beside that image (shown unmirrored,
    also where the match was its mirror image). ``samples (N, C, H, W)`` and ``train`` in [-1, 1], as the report was
    computed on them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    d_s = torch.tensor(report["sample_distance"], dtype=torch.float64)
    d_h = torch.tensor(report["heldout_distance"], dtype=torch.float64)
    nearest: list[int] = list(report["sample_nearest"])  # type: ignore[call-overload]
    order = d_s.argsort()[:pairs].tolist()
    pictures = torch.stack([t for k in order for t in (samples[k], train[nearest[k]])])  # row-major: 2 columns
    grid = labelled_grid(pictures, ["sample", "nearest training image"], [f"d = {float(d_s[k]):.3f}" for k in order])
    fig, (ax, ay) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1.2, 1]})
    bins = np.linspace(0, float(max(d_s.max(), d_h.max())) * 1.02, 40)
    ax.hist(d_h.numpy(), bins=bins, alpha=0.6, density=True, label=f"held-out images (n={len(d_h)})")
    ax.hist(d_s.numpy(), bins=bins, alpha=0.6, density=True, label=f"samples (n={len(d_s)})")
    threshold = float(report["near_copy_threshold"])  # type: ignore[arg-type]
    share = float(report["near_copy_share"])  # type: ignore[arg-type]
    ax.axvline(threshold, color="black", linestyle="--", label=f"held-out 1% quantile: {share:.1%} of samples below")
    ax.set_xlabel("RMS distance to the nearest training image ([-1, 1] scale)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ay.imshow(np.asarray(grid), cmap="gray" if grid.mode == "L" else None, vmin=0, vmax=255)
    ay.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
