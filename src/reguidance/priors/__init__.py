"""Priors: anything that predicts ``eps(x_t, t)`` on a diffusion schedule (see :mod:`reguidance.priors.base`)."""

from .base import Prior, PriorOutput

__all__ = ["Prior", "PriorOutput"]
