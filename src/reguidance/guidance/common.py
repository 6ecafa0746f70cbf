"""Input checks and the starting state shared by the guided samplers."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..conventions import BatchRNG, check_signal_shape
from ..operators import Operator

__all__ = ["check_inputs", "starting_point"]


def check_inputs(operator: Operator, measurement: Tensor, rng: BatchRNG) -> None:
    """A measurement ``(B, *operator.y_shape)`` and one generator per sample, or a ValueError naming the problem."""
    if not isinstance(rng, BatchRNG):
        raise ValueError(f"rng must be a BatchRNG (one generator per sample), got {type(rng).__name__}")
    operator.check_measurement(measurement)
    if len(rng) != measurement.shape[0]:
        raise ValueError(f"rng holds {len(rng)} generators but measurement has {measurement.shape[0]} samples")


def starting_point(
    operator: Operator, measurement: Tensor, latent: Tensor | None, fresh: Callable[[], Tensor]
) -> Tensor:
    """``latent`` (checked against the operator's signal shape and the batch, in the measurement's dtype), or
    ``fresh()`` when no latent is given."""
    if latent is None:
        return fresh()
    check_signal_shape("latent", latent, operator.x_shape, type(operator).__name__)
    if latent.shape[0] != measurement.shape[0]:
        raise ValueError(f"latent has {latent.shape[0]} samples but measurement has {measurement.shape[0]}")
    return latent.detach().to(measurement.dtype)
