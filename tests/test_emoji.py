"""The emoji data sets: which emoji, the split by base emoji, the committed subset and the pixel rule."""

from __future__ import annotations

import hashlib

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.io import emoji


def test_skin_tone_variants_have_the_base_emojis_split() -> None:
    waving = emoji.code_points("1f44b")
    for tone in range(0x1F3FB, 0x1F400):
        variant = emoji.code_points(f"1f44b-{tone:x}")
        assert emoji.base_of(variant) == emoji.base_of(waving) == "1f44b"
    # two people holding hands with two different tones: both modifiers go
    assert emoji.base_of(emoji.code_points("1f9d1-1f3fb-200d-1f91d-200d-1f9d1-1f3ff")) == "1f9d1-200d-1f91d-200d-1f9d1"


def test_duplicate_file_names_read_as_the_same_code_points() -> None:
    assert emoji.canonical(emoji.code_points("23-fe0f-20e3")) == emoji.canonical(emoji.code_points("0023-fe0f-20e3"))
    assert emoji.code_points("1f3f4-e0067_e0062") == (0x1F3F4, 0xE0067, 0xE0062)


@pytest.mark.parametrize("base", ["1f600", "1f44b", "2764-fe0f", "1f9d1-200d-1f4bb"])
def test_the_split_is_the_documented_hash_rule(base: str) -> None:
    digit = int(hashlib.sha256(base.encode()).hexdigest()[:8], 16) % 10
    assert emoji.split_of(base) == {0: "test", 1: "val"}.get(digit, "train")


def test_the_committed_subset_is_white_backed_colour_test_images() -> None:
    images, labels, names = emoji.load_emoji_test_subset()
    assert images.shape == (emoji.SUBSET_SIZE, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert labels.min() >= 0 and labels.max() < len(emoji.CATEGORIES)
    assert len(set(names)) == len(names)
    assert all(emoji.split_of(emoji.base_of(emoji.code_points(n))) == "test" for n in names)
    corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners > 0.95).float().mean() > 0.9  # the background is white (+1) nearly everywhere at the corners
    assert (images.std(dim=(1, 2, 3)) > 0.05).all()  # no blank image


def test_an_unknown_set_or_split_is_refused() -> None:
    with pytest.raises(InputError, match="'apple'"):
        emoji.load_emoji("train", name="apple")
    with pytest.raises(InputError, match="'training'"):
        emoji.load_emoji("training")


needs_packages = pytest.mark.skipif(not emoji.is_available(), reason="the emoji packages are not fetched (make data)")


@needs_packages
def test_every_base_emoji_lies_in_one_split_and_no_flag_or_keycap_is_kept() -> None:
    where: dict[str, set[str]] = {}
    for split in emoji.SPLITS:
        _, _, names = emoji.load_emoji(split)
        for n in names:
            points = emoji.code_points(n)
            assert 0x20E3 not in points and not any(0x1F1E6 <= p <= 0x1F1FF for p in points)
            where.setdefault(emoji.base_of(points), set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    sizes = {s: sum(1 for v in where.values() if s in v) for s in emoji.SPLITS}
    assert 0.05 < sizes["test"] / len(where) < 0.15 and 0.05 < sizes["val"] / len(where) < 0.15


@needs_packages
def test_the_committed_subset_is_the_full_sets_first_test_images() -> None:
    full, labels, names = emoji.load_emoji("test")
    sub, sub_labels, sub_names = emoji.load_emoji_test_subset()
    n = len(sub_names)
    assert names[:n] == sub_names and torch.equal(labels[:n], sub_labels)
    assert (full[:n] - sub).abs().max() <= 2 / 255  # the same pixels, up to a decoder's rounding
