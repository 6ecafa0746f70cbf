r"""Two colour emoji data sets from npm packages, as ``(N, 3, size, size)`` float batches in ``[-1, 1]``.

``emoji`` (the in-domain set; the embedded ``emoji`` prior is trained on its ``train`` split): the 3-D rendered
Microsoft Fluent emoji as packaged by ``@lobehub/fluent-emoji-3d@1.1.0`` (MIT licence; 3,391 WebP files, 256x256
RGBA, shaded: faces, people in five skin tones, animals, food, objects). ``emoji_google`` (an out-of-domain set, for
tests only): the Noto emoji PNGs of ``emoji-datasource-google@16.0.0`` (images Apache-2.0; 64x64 RGBA). Never the
Apple set of emoji-datasource (its images are not licensed for reuse).

Pixels. Each file is decoded by :func:`reguidance.io.images.decode`, the one rule of every image reader here:
composited over white at its own size (``u = a u_rgb + (1 - a) 255``), then resized to ``size x size`` with
Pillow's antialiased bicubic filter, then ``x = u / 127.5 - 1``: white, the background, is ``+1``.

Which emoji. File names are code points (``1f600.webp``; the package holds a few twice, ``23-fe0f-20e3`` beside
``0023-fe0f-20e3``, and tag sequences joined by ``_``); each is read as its sequence of code points, duplicates
kept once (the first file name in sorted order). Left out: flags (``Flags`` in emoji-datasource's
``emoji.json``: regional-indicator pairs, tag sequences, the chequered, pirate, rainbow and triangular flags) and
keycaps (``U+20E3``), whose pictures are mostly a flat rectangle with a glyph on it, and the ``Component``
swatches (skin tones, hair styles).

Splits. Skin-tone variants of one emoji must never straddle splits, so the split is a function of the *base*
emoji, the sequence with its skin-tone modifiers (``U+1F3FB .. U+1F3FF``) removed: with ``h`` the first 8 hex
digits of ``sha256(base)`` read as an integer, ``h mod 10 == 0`` is ``test``, ``== 1`` is ``val``, else ``train``
(about 10 / 10 / 80 %). Labels are emoji-datasource's eight categories other than ``Flags``
(:data:`CATEGORIES`), used by the feature network of the colour prior's Fréchet distance.

Files. ``make data`` (or :func:`fetch`) runs ``npm pack`` for both packages into ``<root>/emoji/`` (the data
root of :func:`reguidance.io.store.data_root`); their sha256 are recorded here and checked before any byte is read.
The first load converts the package to ``<root>/emoji/emoji_<size>.npz`` (uint8 images, names, labels, splits)
and later loads read that; the cache records the package's sha256 and the conversion's version and is rebuilt
when either differs. The committed subset ``assets/data/emoji_test_subset.npz`` (the first
:data:`SUBSET_SIZE` test images at 32x32, sha256 recorded) serves tests and the demo without npm.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..conventions import ASSETS_DIR, InputError, check_positive_int
from .hashing import check_sha256, sha256_bytes, sha256_file
from .images import decode, from_uint8
from .store import data_root, read_npz, write_npz

__all__ = [
    "CATEGORIES",
    "EMOJI_SETS",
    "SUBSET_SIZE",
    "EmojiSet",
    "build_test_subset",
    "fetch",
    "is_available",
    "load_emoji",
    "load_emoji_test_subset",
]


@dataclass(frozen=True)
class EmojiSet:
    """An npm package of emoji images: its spec for ``npm pack``, the tarball's name and sha256, and where its
    images lie inside (``prefix``, files ending in ``suffix``)."""

    name: str
    package: str
    tarball: str
    sha256: str
    prefix: str
    suffix: str
    licence: str


FLUENT = EmojiSet(
    name="emoji",
    package="@lobehub/fluent-emoji-3d@1.1.0",
    tarball="lobehub-fluent-emoji-3d-1.1.0.tgz",
    sha256="c1bb7eee7de090205a232518a9ab4adb3df458bfbe8a1f78232991194c8b2e58",
    prefix="package/assets/",
    suffix=".webp",
    licence="MIT",
)
GOOGLE = EmojiSet(
    name="emoji_google",
    package="emoji-datasource-google@16.0.0",
    tarball="emoji-datasource-google-16.0.0.tgz",
    sha256="fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
    prefix="package/img/google/64/",
    suffix=".png",
    licence="Apache-2.0 (images), MIT (metadata)",
)
#: the sets by name
EMOJI_SETS: dict[str, EmojiSet] = {s.name: s for s in (FLUENT, GOOGLE)}
#: emoji-datasource's ``emoji.json`` (categories), inside the Google package
_METADATA = "package/emoji.json"

#: emoji-datasource's categories, flags left out; a label is an index into this tuple
CATEGORIES: tuple[str, ...] = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
    "Travel & Places", "Activities", "Objects", "Symbols",
)  # fmt: skip
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
_KEYCAP = 0x20E3
#: regional indicators and tag characters: only flags use them (the package names some flags without their
#: cancel tag, so they are not all found in emoji.json)
_FLAG_POINTS = frozenset(range(0x1F1E6, 0x1F200)) | frozenset(range(0xE0020, 0xE0080))
#: bumped whenever the conversion below changes; a cache of another version is rebuilt
_CONVERSION = 1
SUBSET_SIZE = 256
_SUBSET_FILE = "emoji_test_subset.npz"
_SUBSET_SHA256 = "73edb650ff6a6c8b0b892938b81bd20520bd94afd683460bca2fe6e9e1c045ce"


# --------------------------------------------------------------------------------------------------------------
# names, splits, labels


def code_points(stem: str) -> tuple[int, ...]:
    """A file stem such as ``1f3f4-e0067_e0062`` or ``23-fe0f-20e3`` as its code points."""
    return tuple(int(part, 16) for part in stem.replace("_", "-").split("-"))


def canonical(points: tuple[int, ...]) -> str:
    """Code points as emoji-datasource writes them, lower case: ``0023-fe0f-20e3``."""
    return "-".join(f"{p:04x}" for p in points)


def base_of(points: tuple[int, ...]) -> str:
    """The base emoji: the sequence without skin-tone modifiers, canonical."""
    return canonical(tuple(p for p in points if p not in _SKIN_TONES))


def split_of(base: str) -> str:
    """``test`` / ``val`` / ``train`` from ``sha256(base)`` (the module docstring's rule)."""
    h = int(hashlib.sha256(base.encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "val" if h == 1 else "train"


def _categories(metadata: bytes) -> dict[str, str]:
    """Canonical name -> category, for every emoji and skin-tone variant in emoji-datasource's ``emoji.json``."""
    table: dict[str, str] = {}
    for entry in json.loads(metadata):
        variants = [entry, *(entry.get("skin_variations") or {}).values()]
        for v in variants:
            for key in (v.get("unified"), v.get("non_qualified")):
                if key:
                    table[canonical(code_points(key.lower()))] = entry["category"]
    return table


# --------------------------------------------------------------------------------------------------------------
# files


def _dir(root: str | os.PathLike[str] | None) -> Path:
    return data_root(root) / "emoji"


def is_available(name: str = "emoji", root: str | os.PathLike[str] | None = None) -> bool:
    """Whether the packages ``name`` needs (its own and the Google one, for ``emoji.json``) are on disk."""
    needed = {EMOJI_SETS[_check_name(name)].tarball, GOOGLE.tarball}
    return all((_dir(root) / t).is_file() for t in needed)


def fetch(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """``npm pack`` both packages into ``<root>/emoji/`` unless there already; check their sha256; return the paths."""
    directory = _dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in (FLUENT, GOOGLE):
        target = directory / spec.tarball
        if not target.is_file():
            npm = shutil.which("npm")
            manual = f"run `npm pack {spec.package}` in {directory}"
            if npm is None:
                raise RuntimeError(
                    f"npm is not on PATH, so {spec.package} cannot be fetched; install Node.js, or {manual}"
                )
            with tempfile.TemporaryDirectory(dir=directory) as tmp:
                done = subprocess.run(
                    [npm, "pack", spec.package, "--silent"], cwd=tmp, capture_output=True, text=True, check=False
                )
                made = Path(tmp) / spec.tarball
                if done.returncode != 0 or not made.is_file():
                    tail = (done.stderr or done.stdout).strip()[-800:]
                    raise RuntimeError(f"`npm pack {spec.package}` failed (exit {done.returncode}): {tail}; {manual}")
                check_sha256(f"npm pack {spec.package}", sha256_file(made), spec.sha256, "the package changed on npm")
                shutil.move(str(made), target)
        check_sha256(str(target), sha256_file(target), spec.sha256, "delete it and run `make data` again")
        paths.append(target)
    return paths


def _tarball(spec: EmojiSet, root: str | os.PathLike[str] | None) -> bytes:
    path = _dir(root) / spec.tarball
    if not path.is_file():
        raise FileNotFoundError(
            f"{spec.package} is not at {path}; run `make data` (it calls `npm pack {spec.package}` there)"
        )
    data = path.read_bytes()
    check_sha256(str(path), sha256_bytes(data), spec.sha256, "delete it and run `make data` again")
    return data


def _members(data: bytes, spec: EmojiSet) -> Iterator[tuple[str, bytes]]:
    """``(stem, file bytes)`` of every image of the package, in sorted name order."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        files = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(spec.prefix)]
        for m in sorted(files, key=lambda m: m.name):
            name = m.name[len(spec.prefix) :]
            if "/" in name or not name.endswith(spec.suffix):
                continue
            fileobj = tar.extractfile(m)
            if fileobj is not None:
                yield name[: -len(spec.suffix)], fileobj.read()


def _convert(spec: EmojiSet, size: int, root: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """Decode the package's images (flags and keycaps left out, duplicates once) at ``size x size``."""
    from tqdm.auto import tqdm

    category = _categories(_read_member(_tarball(GOOGLE, root), _METADATA))
    data = _tarball(spec, root)
    images, names, labels, splits = [], [], [], []
    seen: set[str] = set()
    for stem, raw in tqdm(list(_members(data, spec)), desc=f"converting {spec.name}", leave=False):
        points = code_points(stem)
        name = canonical(points)
        cat = category.get(name)
        if name in seen or cat in ("Flags", "Component") or _KEYCAP in points or any(p in _FLAG_POINTS for p in points):
            continue
        if cat is None:
            raise ValueError(f"{spec.name}: {stem} is not in emoji-datasource's emoji.json; expected every emoji there")
        seen.add(name)
        with Image.open(io.BytesIO(raw)) as img:
            images.append(decode(img, size, 3))
        names.append(name)
        labels.append(CATEGORIES.index(cat))
        splits.append(SPLITS.index(split_of(base_of(points))))
    return {
        "images": np.stack(images),
        "names": np.array(names),
        "labels": np.array(labels, dtype=np.int64),
        "splits": np.array(splits, dtype=np.int64),
    }


def _read_member(data: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        fileobj = tar.extractfile(member)
        if fileobj is None:
            raise ValueError(f"{member} is not a file in the package")
        return fileobj.read()


def _cached(spec: EmojiSet, size: int, root: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """The converted set, from ``<root>/emoji/<name>_<size>.npz`` when it was made from this package by this
    conversion, else converted now and cached."""
    path = _dir(root) / f"{spec.name}_{size}.npz"
    stamp = np.array([spec.sha256, str(_CONVERSION)])
    if path.is_file():
        arrays = read_npz(path)
        if "stamp" in arrays and np.array_equal(arrays["stamp"], stamp):
            return arrays
    arrays = {**_convert(spec, size, root), "stamp": stamp}
    try:
        write_npz(path, arrays)
    except OSError as err:
        warnings.warn(f"could not write the {spec.name} cache {path}: {err}", stacklevel=3)
    return arrays


def _check_name(name: str) -> str:
    if name not in EMOJI_SETS:
        raise InputError(f"emoji set must be one of {', '.join(map(repr, EMOJI_SETS))}, got {name!r}")
    return name


def load_emoji(
    split: str,
    *,
    name: str = "emoji",
    size: int = 32,
    root: str | os.PathLike[str] | None = None,
) -> tuple[Tensor, Tensor, list[str]]:
    """One split of an emoji set: ``images (N, 3, size, size)`` float32 in ``[-1, 1]`` (white background = 1),
    ``labels (N,)`` int64 (indices into :data:`CATEGORIES`) and the emoji's canonical code-point ``names``.

    ``split`` is ``train``, ``val``, ``test`` (the module docstring's rule) or ``all``. ``FileNotFoundError`` says
    how to fetch a package that is not on disk; :class:`~reguidance.io.hashing.ChecksumError` names a package whose
    sha256 is not the recorded one.
    """
    spec = EMOJI_SETS[_check_name(name)]
    size = check_positive_int("size", size)
    if split not in (*SPLITS, "all"):
        raise InputError(f"split must be one of 'train', 'val', 'test', 'all', got {split!r}")
    arrays = _cached(spec, size, root)
    keep = np.ones(len(arrays["names"]), bool) if split == "all" else arrays["splits"] == SPLITS.index(split)
    images = from_uint8(arrays["images"][keep]).permute(0, 3, 1, 2).contiguous()
    names = [str(n) for n in arrays["names"][keep]]
    return images, torch.from_numpy(arrays["labels"][keep].copy()), names


# --------------------------------------------------------------------------------------------------------------
# the committed subset


def load_emoji_test_subset() -> tuple[Tensor, Tensor, list[str]]:
    """The committed first :data:`SUBSET_SIZE` images of ``emoji``'s ``test`` split at 32x32 (no npm needed):
    ``images (256, 3, 32, 32)`` in ``[-1, 1]``, ``labels (256,)`` and names, as :func:`load_emoji` gives them."""
    resource = ASSETS_DIR / "data" / _SUBSET_FILE
    try:
        data = resource.read_bytes()
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the package file assets/data/{_SUBSET_FILE} is missing; rebuild it with `python -m reguidance.io.emoji`"
        ) from err
    if _SUBSET_SHA256 is not None:
        check_sha256(f"assets/data/{_SUBSET_FILE}", sha256_bytes(data), _SUBSET_SHA256, "rebuild it")
    arrays = read_npz(data)
    images = from_uint8(arrays["images"]).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(arrays["labels"].copy()), [str(n) for n in arrays["names"]]


def build_test_subset(
    root: str | os.PathLike[str] | None = None, out_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``assets/data/emoji_test_subset.npz`` from the full set (first :data:`SUBSET_SIZE` test images)."""
    arrays = _cached(FLUENT, 32, root)
    ids = np.flatnonzero(arrays["splits"] == SPLITS.index("test"))[:SUBSET_SIZE]
    directory = Path(out_dir) if out_dir is not None else ASSETS_DIR / "data"
    path = directory / _SUBSET_FILE
    write_npz(path, {k: arrays[k][ids] for k in ("images", "names", "labels")})
    return path


def main() -> None:
    """``python -m reguidance.io.emoji``: fetch the packages, convert them, rebuild the subset, print sizes and
    sha256."""
    fetch()
    for spec in (FLUENT, GOOGLE):
        for split in (*SPLITS, "all"):
            images, _, _ = load_emoji(split, name=spec.name)
            print(f"{spec.name} {split}: {len(images)} images")
    path = build_test_subset()
    print(f"{path} sha256 {sha256_file(path)}")


if __name__ == "__main__":
    main()
