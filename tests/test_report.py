"""Specification of the image side of reguidance.bench.report: saved restorations are read as the run wrote them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reguidance.bench.report import add_fd_cls, save_grids

KINDS = ("measurement", "candidate", "reguidance", "truth")


def write_rgb_run(out: Path, n: int = 4) -> Path:
    """A benchmark folder whose saved images are RGB: image ``i`` of kind ``k`` is the flat colour
    (red 10 i, green 100 + k, blue 200), so gray conversion would be visible."""
    folder = out / "images" / "inpaint" / "dps"
    folder.mkdir(parents=True)
    for i in range(n):
        for k, kind in enumerate(KINDS):
            pixel = np.array([10 * i, 100 + k, 200], np.uint8)
            Image.fromarray(np.broadcast_to(pixel, (6, 6, 3)).copy()).save(folder / f"{i:05d}_{kind}.png")
    return folder


def test_grids_of_an_rgb_run_stay_rgb(tmp_path: Path) -> None:
    write_rgb_run(tmp_path)
    (grid,) = save_grids(tmp_path, n=2)
    picture = Image.open(grid)
    assert picture.mode == "RGB"
    pixels = np.asarray(picture)
    # 6-pixel images enlarged x16 to 96-pixel cells, 2 pixels apart, below a title and a column-label line
    # (2 x 17 pixels) and right of the row labels ("id 0", "id 1": 4 characters of 6 pixels plus 3 either side);
    # the first cell is id 0's measurement; row 2 is id 1, column 4 its truth
    top, left = 34, 30
    assert pixels[top, left].tolist() == [0, 100, 200]
    assert pixels[top + 98 + 95, left + 3 * 98 + 95].tolist() == [10, 103, 200]


def test_grids_skip_images_whose_batch_stopped_before_its_first_variant(tmp_path: Path) -> None:
    folder = write_rgb_run(tmp_path, n=3)
    for kind in ("candidate", "reguidance"):  # id 0 has only its truth and measurement, as a killed batch leaves it
        (folder / f"00000_{kind}.png").unlink()
    stopped = tmp_path / "images" / "satblur" / "dps"  # a task whose first batch was killed: no variant at all
    stopped.mkdir(parents=True)
    for kind in ("measurement", "truth"):
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(stopped / f"00000_{kind}.png")
    (grid,) = save_grids(tmp_path, n=2)
    assert grid.name == "inpaint_dps.png"
    pixels = np.asarray(Image.open(grid))
    assert pixels[34, 30].tolist() == [10, 100, 200]  # the first row is id 1 now (red 10 x 1)


def test_fd_cls_features_see_the_rgb_images(tmp_path: Path) -> None:
    write_rgb_run(tmp_path, n=4)
    seen: list[torch.Tensor] = []

    def features(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.mean(dim=(2, 3))  # per-channel means: (B, 3)

    rows: list[dict[str, object]] = [{"task": "inpaint", "method": "dps", "reguidance": False}]
    add_fd_cls({"rows": rows}, tmp_path, features)
    candidate, truth = seen
    assert candidate.shape == truth.shape == (4, 3, 6, 6)
    expected = torch.tensor([[10.0 * i, 101.0, 200.0] for i in range(4)]) / 127.5 - 1  # kind 1 = candidate
    assert torch.allclose(candidate.mean(dim=(2, 3)), expected, atol=1e-6)
    assert rows[0]["fd_cls"] is not None
