"""Memorisation: nearest-training-image distances, checked one image at a time by hand, and planted copies found."""

from __future__ import annotations

import math

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.evaluation.memorisation import memorisation, nearest_training_image


def images(n: int, seed: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, 6, 5, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def by_hand(x: torch.Tensor, train: torch.Tensor, flips: bool) -> tuple[list[float], list[int]]:
    # one query and one training image at a time: min over j of sqrt(mean((x - t_j)^2)), mirrors included
    distances, indices = [], []
    for q in x:
        best, at = math.inf, -1
        for j, t in enumerate(train):
            for cand in (t, t.flip(-1)) if flips else (t,):
                d = math.sqrt(float(((q.double() - cand.double()) ** 2).mean()))
                if d < best:
                    best, at = d, j
        distances.append(best)
        indices.append(at)
    return distances, indices


@pytest.mark.parametrize("flips", [False, True])
def test_the_nearest_training_image_is_the_one_a_search_by_hand_finds(flips: bool) -> None:
    train, x = images(13, 0), images(4, 1)
    distance, index = nearest_training_image(x, train, flips=flips, chunk=5)
    expected, at = by_hand(x, train, flips)
    assert distance.tolist() == pytest.approx(expected, abs=1e-9)
    assert index.tolist() == at


def test_a_mirrored_copy_is_a_copy_only_when_flips_are_counted() -> None:
    train = images(10, 2)
    x = train[[3]].flip(-1)
    assert float(nearest_training_image(x, train, flips=True)[0][0]) == pytest.approx(0.0, abs=1e-6)
    assert float(nearest_training_image(x, train, flips=False)[0][0]) > 0.1


def test_planted_copies_are_counted_as_near_copies_and_fresh_images_are_not() -> None:
    train, heldout = images(200, 3), images(100, 4)
    fresh = images(40, 5)
    copies = train[:10] + 0.001 * images(10, 6)  # ten samples that are training images up to a whisper of noise
    report = memorisation(torch.cat([fresh, copies]), heldout, train)
    # fresh samples fall below the held-out 1% quantile about 1% of the time; the ten copies always do
    assert 10 / 50 <= float(report["near_copy_share"]) <= 12 / 50  # type: ignore[arg-type]
    assert report["samples"]["q01"] < 0.01  # type: ignore[index]


def test_too_few_held_out_images_are_refused() -> None:
    with pytest.raises(InputError, match="at least 2 held-out"):
        memorisation(images(3, 0), images(1, 1), images(5, 2))
