"""What a prior is to the rest of the library: a noise predictor ``eps(x_t, t)`` on a diffusion schedule.

``x_t`` (B, *signal_shape) is a noised signal ``sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` with ``x_0``
on the library's [-1, 1] scale; ``t`` (B,) int64 holds the schedule's *original* integer timesteps (0 .. T-1), the
ones the network was trained with. Nothing outside ``reguidance.priors`` depends on which kind of prior it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..diffusion import Schedule, Variance


class PriorOutput(NamedTuple):
    """``eps`` (B, *signal_shape) and, for learned-variance models, ``var_values`` in [-1, 1] of the same shape."""

    eps: Tensor
    var_values: Tensor | None = None


class Prior(nn.Module, ABC):
    """Base class: subclasses set ``schedule`` and ``signal_shape`` and implement :meth:`predict`."""

    schedule: Schedule
    signal_shape: tuple[int, ...]
    #: the DDPM variance this prior was trained for: ``learned_range`` when it outputs ``var_values``
    variance: Variance = "fixed_small"

    @abstractmethod
    def predict(self, x_t: Tensor, t: Tensor) -> PriorOutput:
        """The model's prediction at ``(x_t, t)``."""

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """``eps(x_t, t)`` (B, *signal_shape)."""
        return self.predict(x_t, t).eps

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")
