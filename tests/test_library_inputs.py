"""Library input checks (issue 17): images on another scale and objects that are not operators are refused with an
InputError naming what was wrong, before any work."""

from __future__ import annotations

from typing import cast

import pytest
import torch

from reguidance.conventions import IMAGE_SCALE_LIMIT, BatchRNG, InputError, check_image_scale
from reguidance.operators import SuperResolution
from reguidance.priors.base import Prior
from reguidance.wrapper import reguide


class NoPrior:
    """A prior that must never be used: the input is refused first."""

    signal_shape = (1, 8, 8)

    def __getattr__(self, name: str):
        raise AssertionError(f"the prior was used ({name}) before the input was refused")


def no_prior() -> Prior:
    """A :class:`NoPrior` where a :class:`Prior` is expected (it has only ``signal_shape``, on purpose)."""
    return cast(Prior, NoPrior())


def _problem() -> tuple[SuperResolution, torch.Tensor, torch.Tensor]:
    op = SuperResolution((1, 8, 8), 2, sigma_y=0.1)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return op, x, op.measure(x, BatchRNG.from_seed(1, 2))


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (lambda x: (x + 1) * 127.5, r"candidate holds values in \[.*\]: \[0, 255\] pixels"),
        (lambda x: x * 1e6, r"candidate holds values in .* far outside the \[-1, 1\] scale"),
    ],
)
def test_a_candidate_on_another_scale_is_refused_naming_it(scale, message) -> None:
    op, x, y = _problem()
    with pytest.raises(InputError, match=message):
        reguide(scale(x), y, op, no_prior(), inversion_steps=2, dps_steps=2)


def test_the_scale_limit_is_the_documented_one() -> None:
    image = torch.zeros(1, 1, 2, 2)
    image[0, 0, 0, 0] = IMAGE_SCALE_LIMIT
    check_image_scale("x", image)  # the limit itself is accepted
    image[0, 0, 0, 0] = -IMAGE_SCALE_LIMIT * 1.01
    with pytest.raises(InputError, match=r"x holds values in \[-4.04, 0\]"):
        check_image_scale("x", image)


@pytest.mark.parametrize("operator", [object(), "sr4", torch.nn.Identity()])
def test_an_object_that_is_not_an_operator_is_an_input_error_not_an_attribute_error(operator) -> None:
    _, x, y = _problem()
    with pytest.raises(InputError, match=r"ReGuidance needs a reguidance.operators.Operator, got \w+: subclass"):
        reguide(x, y, operator, no_prior(), inversion_steps=2, dps_steps=2)
