"""What a prior is to the rest of the library: a noise predictor ``eps(x_t, t)`` on a diffusion schedule.

``x_t`` (B, *signal_shape) is a noised signal ``sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` with ``x_0``
on the library's [-1, 1] scale; ``t`` (B,) int64 holds the schedule's *original* integer timesteps (0 .. T-1 of the
chain the network was trained on, T = 1000 for the published checkpoints), the ones the network was trained with.
Nothing outside ``reguidance.priors`` depends on which kind of prior it is.

:class:`NetworkPrior` is the shared base of the priors that evaluate one neural network (``self.unet``): the ADM
UNet of guided-diffusion (:mod:`.adm`) and a diffusers ``UNet2DModel`` (:mod:`.diffusers`). It owns their fast
paths (:meth:`NetworkPrior.optimize`): low-precision autocast, ``torch.compile`` and channels-last storage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..diffusion import Schedule, Variance

__all__ = ["COMPILE_MODES", "NetworkPrior", "Prior", "PriorOutput"]

#: torch.compile modes accepted by :meth:`NetworkPrior.optimize`
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


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

    def check_input(self, x_t: Tensor) -> None:
        """Raise ``ValueError`` unless ``x_t`` has shape (B, *signal_shape)."""
        if x_t.dim() != 1 + len(self.signal_shape) or tuple(x_t.shape[1:]) != tuple(self.signal_shape):
            want = ", ".join(["*", *map(str, self.signal_shape)])
            raise ValueError(f"x_t has shape {tuple(x_t.shape)} but the prior expects ({want})")


class NetworkPrior(Prior):
    """A prior that evaluates one network, stored as ``self.unet``; subclasses call :meth:`_set_net` once it is.

    :meth:`run_net` evaluates the network (or its compiled wrapper) under the fast paths :meth:`optimize` chose.
    """

    unet: nn.Module

    def __init__(self) -> None:
        super().__init__()
        #: low-precision autocast for the network (``torch.bfloat16`` / ``torch.float16``); None = exact fp32
        self.autocast: torch.dtype | None = None
        self._channels_last = False

    _net: Callable[..., Any]

    def _set_net(self, net: Callable[..., Any]) -> None:
        # the module that runs (the network, or its compiled wrapper); kept out of the module tree so the state
        # dict holds the network's keys once
        object.__setattr__(self, "_net", net)

    def optimize(
        self,
        dtype: torch.dtype | None = None,
        compile: bool = False,
        channels_last: bool = False,
        compile_mode: str = "default",
    ) -> NetworkPrior:
        """Fast paths, all off by default (fp32 eager is the exact reference): ``dtype`` runs the network under
        autocast (outputs are returned in the input's dtype, so samplers keep their precision), ``compile`` wraps
        it in ``torch.compile`` with ``compile_mode`` (``"reduce-overhead"`` adds CUDA graphs on GPU, which pay off
        when the network's kernels are small, e.g. at batch 1), ``channels_last`` stores its weights and inputs
        NHWC. Returns ``self``."""
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
        self.autocast = None if dtype in (None, torch.float32) else dtype
        self._channels_last = channels_last
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
        self._set_net(torch.compile(self.unet, mode=compile_mode) if compile else self.unet)
        return self

    def run_net(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        """The network's raw output at ``x`` (and the other arguments), under the chosen autocast / memory format.

        Tensors in the output are *not* cast back: callers cast what they use to ``x``'s dtype.
        """
        x_in = x.contiguous(memory_format=torch.channels_last) if self._channels_last else x
        if self.autocast is None:
            return self._net(x_in, *args, **kwargs)
        with torch.autocast(x.device.type, dtype=self.autocast):
            return self._net(x_in, *args, **kwargs)
