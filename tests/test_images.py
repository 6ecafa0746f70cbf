"""Specification of reguidance.io.images: reading image files and folders, writing images and grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance.conventions import InputError
from reguidance.io.images import load_images, make_grid, read_images, save_grid, save_images

QUANTUM = 1.0 / 255.0 + 1e-6  # largest change of a [-1, 1] value after an 8-bit round trip


def random_images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


# ------------------------------------------------------------------------------------------------ image folders


@pytest.mark.parametrize("channels", [1, 3])
def test_save_then_load_round_trips_within_8_bit_quantisation(tmp_path: Path, channels: int) -> None:
    x = random_images((3, channels, 16, 16))
    names = ["b.png", "a.png", "c.png"]
    save_images(x, [tmp_path / n for n in names])
    loaded, loaded_names = load_images(tmp_path, 16, channels)
    assert loaded_names == ["a.png", "b.png", "c.png"]
    assert loaded.shape == (3, channels, 16, 16) and loaded.dtype == torch.float32
    assert (loaded - x[[1, 0, 2]]).abs().max() <= QUANTUM


def test_save_images_clamps_out_of_range_values(tmp_path: Path) -> None:
    save_images(torch.tensor([[[[-3.0, 3.0]]]]), [tmp_path / "x.png"])
    assert np.asarray(Image.open(tmp_path / "x.png")).tolist() == [[0, 255]]


def test_save_images_needs_one_path_per_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="paths holds 1 paths but x holds 2 images"):
        save_images(random_images((2, 3, 4, 4)), [tmp_path / "a.png"])


def test_rgb_to_gray_uses_itu_601_luma(tmp_path: Path) -> None:
    rgb = np.zeros((3, 3, 3), np.uint8)  # columns: pure red, pure green, pure blue
    rgb[:, 0], rgb[:, 1], rgb[:, 2] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    write_png(tmp_path / "rgb.png", rgb)
    gray, _ = load_images(tmp_path, 3, 1)
    assert gray.shape == (1, 1, 3, 3)
    levels = ((gray[0, 0, 0] + 1) * 127.5).round()
    expected = torch.tensor([0.299, 0.587, 0.114]) * 255
    assert (levels - expected).abs().max() <= 1


def test_gray_to_rgb_repeats_the_channel(tmp_path: Path) -> None:
    write_png(tmp_path / "g.png", np.arange(16, dtype=np.uint8).reshape(4, 4) * 16)
    rgb, _ = load_images(tmp_path, 4, 3)
    assert rgb.shape == (1, 3, 4, 4)
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_center_crop_keeps_the_central_square_and_stretch_keeps_everything(tmp_path: Path) -> None:
    wide = np.zeros((20, 60), np.uint8)  # height 20, width 60: left third black, middle gray, right third white
    wide[:, 20:40], wide[:, 40:] = 128, 255
    write_png(tmp_path / "wide.png", wide)
    cropped, _ = load_images(tmp_path, 20, 1, mode="center_crop")
    resized, _ = load_images(tmp_path, 20, 1, mode="stretch")
    assert cropped.shape == resized.shape == (1, 1, 20, 20)
    middle = torch.tensor(128, dtype=torch.uint8).float() / 127.5 - 1
    assert torch.equal(cropped, torch.full_like(cropped, middle.item()))  # exactly the middle, no resampling
    assert resized[0, 0, :, 0].max() < -0.9 and resized[0, 0, :, -1].min() > 0.9  # both ends survive


def test_center_crop_of_a_tall_image_is_square(tmp_path: Path) -> None:
    write_png(tmp_path / "tall.jpg", np.full((50, 30, 3), 200, np.uint8))
    images, names = load_images(tmp_path, 8, 3, mode="center_crop")
    assert images.shape == (1, 3, 8, 8) and names == ["tall.jpg"]
    assert (images - (200 / 127.5 - 1)).abs().max() < 4 / 255  # JPEG is lossy, a flat image nearly exact


def test_the_default_fit_is_the_central_square(tmp_path: Path) -> None:
    wide = np.zeros((10, 30), np.uint8)  # a gray middle third between black and white
    wide[:, 10:20], wide[:, 20:] = 128, 255
    write_png(tmp_path / "wide.png", wide)
    images, _ = load_images(tmp_path / "wide.png", 10)
    assert images.shape == (1, 1, 10, 10)
    assert (images - (128 / 127.5 - 1)).abs().max() < 1e-6  # only the gray middle square is left, not resampled


def test_a_list_of_files_is_read_in_its_own_order_with_their_names(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    write_png(tmp_path / "one" / "z.png", np.full((4, 4), 255, np.uint8))
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    images, names = load_images([tmp_path / "one" / "z.png", str(tmp_path / "a.png")])
    assert names == ["z.png", "a.png"] and images.shape == (2, 1, 4, 4)
    assert images[0].min() == 1 and images[1].max() == -1
    with pytest.raises(InputError, match="no such image file"):
        load_images([tmp_path / "absent.png"])
    (tmp_path / "notes.txt").write_text("text")
    with pytest.raises(InputError, match="is not an image"):
        load_images([tmp_path / "notes.txt"])


def test_other_files_and_subfolders_are_ignored(tmp_path: Path) -> None:
    write_png(tmp_path / "img.PNG", np.zeros((4, 4), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "inner.png", np.zeros((4, 4), np.uint8))
    _, names = load_images(tmp_path, 4, 1)
    assert names == ["img.PNG"]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"holds no image; expected files ending in \.png, \.jpg, \.jpeg"):
        load_images(tmp_path, 8, 1)


def test_corrupt_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_png(tmp_path / "a_good.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match=r"could not read image file '.*b_broken\.png'"):
        load_images(tmp_path, 4, 1)


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is neither an image file nor a folder"):
        load_images(tmp_path / "absent", 4, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0, "channels": 1}, "size must be an integer >= 1"),
        ({"size": 4, "channels": 2}, "channels must be 1 or 3, got 2"),
        ({"size": 4, "channels": 1, "mode": "resize"}, "mode must be 'center_crop' or 'stretch', got 'resize'"),
    ],
)
def test_bad_folder_arguments_are_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_images(tmp_path, **kwargs)


def test_read_images_keeps_each_files_own_channels_and_the_given_order(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51  # red 255, green 0, blue 51: x = 1, -1, -0.6
    write_png(tmp_path / "b_rgb.png", rgb)
    write_png(tmp_path / "a_rgb.png", np.full((2, 2, 3), 255, np.uint8))
    colour = read_images([tmp_path / "b_rgb.png", tmp_path / "a_rgb.png"])
    assert colour.shape == (2, 3, 2, 2)
    assert colour[0, :, 0, 0].tolist() == pytest.approx([1.0, -1.0, -0.6])  # not gray, and in the given order
    assert colour[1].eq(1.0).all()
    write_png(tmp_path / "gray.png", np.full((2, 2), 255, np.uint8))
    assert read_images([tmp_path / "gray.png"]).shape == (1, 1, 2, 2)


def test_read_images_refuses_files_of_different_channels_naming_one(tmp_path: Path) -> None:
    write_png(tmp_path / "gray.png", np.zeros((2, 2), np.uint8))
    write_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError, match=r"differ in shape \(channels x height x width: 1x2x2, 3x2x2; 'rgb\.png'"):
        read_images([tmp_path / "gray.png", tmp_path / "rgb.png"])
    assert read_images([tmp_path / "gray.png", tmp_path / "rgb.png"], channels=3).shape == (2, 3, 2, 2)


# ------------------------------------------------------------------------------------------------------- grids


def test_grid_places_images_row_major_with_padding() -> None:
    x = torch.stack([torch.full((1, 2, 3), float(v)) for v in (0.1, 0.2, 0.3)])  # three 2x3 images
    grid = make_grid(x, nrow=2, padding=1, pad_value=-1.0)
    assert grid.shape == (1, 2 * 3 + 1, 2 * 4 + 1)
    assert torch.equal(grid[:, 1:3, 1:4], x[0]) and torch.equal(grid[:, 1:3, 5:8], x[1])
    assert torch.equal(grid[:, 4:6, 1:4], x[2])
    assert bool((grid[:, 4:6, 5:8] == -1).all())  # empty cell
    assert bool((grid[:, 0] == -1).all() and (grid[:, :, 4] == -1).all())  # gaps


def test_grid_with_fewer_images_than_nrow_is_one_row() -> None:
    assert make_grid(random_images((3, 3, 5, 5)), nrow=8, padding=2).shape == (3, 9, 23)


def test_save_grid_writes_the_tiled_image(tmp_path: Path) -> None:
    x = random_images((5, 3, 8, 8))
    save_grid(x, tmp_path / "grid.png", nrow=4)
    written = torch.from_numpy(np.array(Image.open(tmp_path / "grid.png"))).permute(2, 0, 1) / 127.5 - 1
    assert written.shape == (3, 2 * 10 + 2, 4 * 10 + 2)
    assert (written - make_grid(x, nrow=4)).abs().max() <= QUANTUM


def test_transparency_is_composited_over_the_background_before_resizing(tmp_path: Path) -> None:
    # one half-transparent red pixel: over white, u = a * 255 + (1 - a) * 255 for red and (1 - a) * 255 for green/blue
    Image.new("RGBA", (2, 2), (255, 0, 0, 102)).save(tmp_path / "a.png")
    a = 102 / 255
    expected = np.array([255.0, (1 - a) * 255, (1 - a) * 255])
    x, _ = load_images(tmp_path / "a.png")
    u = (x[0, :, 0, 0].numpy() + 1) * 127.5
    assert np.abs(u - expected).max() <= 1.0
    x_black, _ = load_images(tmp_path / "a.png", background="black")
    assert np.abs((x_black[0, :, 0, 0].numpy() + 1) * 127.5 - np.array([a * 255, 0, 0])).max() <= 1.0


def test_webp_files_are_read_like_png(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.webp", lossless=True)
    x, names = load_images(tmp_path)
    assert names == ["a.webp"]
    assert torch.equal(((x[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8), torch.from_numpy(rgb))


def test_a_bad_background_colour_is_refused_by_name(tmp_path: Path) -> None:
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="'nocolour'"):
        load_images(tmp_path, background="nocolour")
