"""Super-resolution: average pooling or antialiased bicubic downsampling by an integer factor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from .base import (
    LinearOperator,
    _image_shape,
)

__all__ = ["SuperResolution"]


class SuperResolution(LinearOperator):
    """Downsampling of images ``x_shape = (C, H, W)`` by an integer ``factor`` to ``(C, H / f, W / f)``.

    ``kind="avgpool"``: mean over ``f x f`` blocks. Its adjoint is nearest upsampling divided by ``f^2`` and its
    Moore-Penrose pseudo-inverse is nearest upsampling (``A A^T = I / f^2``), an exact right inverse.

    ``kind="bicubic"``: ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)`` to the low
    resolution (the PIL-style resize). The adjoint is the exact vector-Jacobian product; ``pinv`` is bicubic
    upsampling, only an approximate right inverse (``A pinv(y) ~ y``).
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        factor: int,
        kind: Literal["avgpool", "bicubic"] = "avgpool",
        sigma_y: float = 0.0,
    ) -> None:
        c, h, w = _image_shape(x_shape)
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or not 2 <= factor <= 16:
            raise ValueError(f"factor must be an integer in [2, 16], got {factor!r}")
        if h % factor or w % factor:
            raise ValueError(f"factor {factor} does not divide the image size ({h}, {w})")
        if kind not in ("avgpool", "bicubic"):
            raise ValueError(f"kind must be 'avgpool' or 'bicubic', got {kind!r}")
        super().__init__((c, h, w), (c, h // factor, w // factor), sigma_y)
        self.factor = int(factor)
        self.kind = kind

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, kind={self.kind!r}"

    def _forward(self, x: Tensor) -> Tensor:
        if self.kind == "avgpool":
            return F.avg_pool2d(x, self.factor)
        return F.interpolate(x, size=self.y_shape[1:], mode="bicubic", antialias=True, align_corners=False)

    def _upsample_nearest(self, y: Tensor) -> Tensor:
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def _adjoint(self, y: Tensor) -> Tensor:
        if self.kind == "avgpool":
            return self._upsample_nearest(y) / self.factor**2
        return super()._adjoint(y)

    def _pinv(self, y: Tensor) -> Tensor:
        if self.kind == "avgpool":
            return self._upsample_nearest(y)
        return F.interpolate(y, size=self.x_shape[1:], mode="bicubic", align_corners=False)

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        if self.kind != "avgpool":
            return super()._prox_l2(z, y, gamma)
        # A A^T = I / f^2, so (I + g A^T A)^{-1} = I - g / (1 + g / f^2) A^T A  (Woodbury)
        r = gamma * self._adjoint(y.double()) + z.double()
        return r - gamma / (1 + gamma / self.factor**2) * self._adjoint(self._forward(r))

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        if self.kind != "avgpool":
            return super()._solve_gram(v, a, b)
        return v.double() / (a / self.factor**2 + b)


# ---------------------------------------------------------------------------------------------------- blur
