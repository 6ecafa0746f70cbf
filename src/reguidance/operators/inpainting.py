"""Inpainting: a mask per image (or shared), ``A x = m * x`` observed where ``m = 1``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..conventions import (
    BatchRNG,
    check_finite,
    check_image_scale,
    check_positive_int,
    check_unit_interval,
)
from .base import (
    Index,
    LinearOperator,
    _as_index,
    _check_shape,
    _image_shape,
)

__all__ = ["Inpainting"]


class Inpainting(LinearOperator):
    """``A x = x * mask``: keep the observed entries, zero the others; ``y`` has ``x``'s shape.

    ``mask`` is 0/1 with shape ``(B or 1, 1 or C, *spatial)`` for images (a one-channel mask is shared by all
    channels) or ``(B or 1, d)`` for flat signals; a leading 1 means one mask for every sample. Each sample's mask
    must observe at least one entry (a mask of zeros measures nothing: refused). ``x_shape``
    defaults to ``mask.shape[1:]``; pass it to apply a one-channel mask to ``C``-channel images.

    The operator is its own adjoint and pseudo-inverse (an orthogonal projection): ``adjoint = pinv = y * mask``.
    :meth:`measure` adds noise on the observed entries only, ``y = mask (x + sigma_y n)``, so unobserved entries
    stay 0 and ``consistency`` is about 1 for the true signal. ``num_measurements`` counts the observed entries
    over all channels. ``top_left`` (B, 2) optionally records the box positions the mask was built from.
    """

    mask: Tensor
    top_left: Tensor | None

    def __init__(
        self,
        mask: Tensor,
        sigma_y: float = 0.0,
        *,
        x_shape: Sequence[int] | None = None,
        top_left: Tensor | None = None,
    ) -> None:
        if not isinstance(mask, Tensor) or mask.dim() < 2:
            got = getattr(mask, "shape", mask)
            raise ValueError(f"mask must be a tensor (B or 1, 1 or C, *spatial) or (B or 1, d), got {got!r}")
        check_finite("mask", mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1 (observed = 1)")
        blind = (~mask.flatten(1).to(torch.bool).any(dim=1)).nonzero().flatten().tolist()
        if blind:
            raise ValueError(
                f"mask observes nothing in sample(s) {blind[:5]} (every entry 0): there is no measurement to fit "
                "(and its consistency would divide by 0); observed entries are 1"
            )
        shape = tuple(mask.shape[1:]) if x_shape is None else _check_shape("x_shape", x_shape)
        compatible = len(shape) == mask.dim() - 1 and (
            tuple(mask.shape[1:]) == shape
            or (len(shape) >= 2 and mask.shape[1] == 1 and tuple(mask.shape[2:]) == shape[1:])
        )
        if not compatible:
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but x_shape is {shape}; expected (B or 1, {shape[0]} or 1, "
                f"{', '.join(map(str, shape[1:]))}) for images or (B or 1, d) for flat signals"
            )
        super().__init__(shape, shape, sigma_y)
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())
        if top_left is not None:
            top_left = torch.as_tensor(top_left, dtype=torch.int64)
            if top_left.dim() != 2 or top_left.shape != (mask.shape[0], 2):
                raise ValueError(
                    f"top_left has shape {tuple(top_left.shape)}; expected ({mask.shape[0]}, 2) matching the mask"
                )
            top_left = top_left.to(mask.device)
        self.register_buffer("top_left", top_left)

    # ------------------------------------------------------------------------------------------- factories
    @classmethod
    def box(
        cls,
        x_shape: Sequence[int],
        size: int | Sequence[int],
        top_left: Tensor | Sequence[int] | None = None,
        sigma_y: float = 0.0,
    ) -> Inpainting:
        """A missing ``size = (h, w)`` (or ``h = w = size``) box in images ``x_shape = (C, H, W)``.

        ``top_left`` (B, 2) int holds each image's box corner ``(row, col)``; ``None`` centres one box shared
        by all images at ``((H - h) // 2, (W - w) // 2)``. The mask is ``(B or 1, 1, H, W)``, shared by channels.
        """
        c, h_img, w_img = _image_shape(x_shape)
        h, w = cls._box_size(size, h_img, w_img)
        if top_left is None:
            corners = torch.tensor([[(h_img - h) // 2, (w_img - w) // 2]], dtype=torch.int64)
        else:
            corners = torch.as_tensor(top_left)
            if corners.dim() == 1:
                corners = corners.unsqueeze(0)
            if corners.dim() != 2 or corners.shape[1] != 2 or corners.shape[0] < 1:
                raise ValueError(f"top_left must have shape (B, 2), got {tuple(corners.shape)}")
            if corners.is_floating_point() or corners.is_complex() or corners.dtype == torch.bool:
                raise ValueError(f"top_left must hold integers, got dtype {corners.dtype}")
            corners = corners.to(torch.int64).cpu()
            rows, cols = corners[:, 0], corners[:, 1]
            if bool((rows < 0).any() | (rows > h_img - h).any() | (cols < 0).any() | (cols > w_img - w).any()):
                raise ValueError(
                    f"top_left puts a ({h}, {w}) box outside a ({h_img}, {w_img}) image; rows must lie in "
                    f"[0, {h_img - h}] and columns in [0, {w_img - w}], got {corners.tolist()}"
                )
        r = torch.arange(h_img)
        q = torch.arange(w_img)
        in_rows = (r >= corners[:, :1]) & (r < corners[:, :1] + h)  # (B, H)
        in_cols = (q >= corners[:, 1:]) & (q < corners[:, 1:] + w)  # (B, W)
        mask = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return cls(mask.unsqueeze(1), sigma_y, x_shape=(c, h_img, w_img), top_left=corners)

    @classmethod
    def random_box(
        cls, x_shape: Sequence[int], size: int | Sequence[int], rng: BatchRNG, sigma_y: float = 0.0
    ) -> Inpainting:
        """A missing box per image at a uniformly random position, drawn from that image's generator in ``rng``."""
        _, h_img, w_img = _image_shape(x_shape)
        h, w = cls._box_size(size, h_img, w_img)
        corners = torch.stack(
            [
                torch.cat(
                    [
                        torch.randint(h_img - h + 1, (1,), generator=g, device=rng.device),
                        torch.randint(w_img - w + 1, (1,), generator=g, device=rng.device),
                    ]
                )
                for g in rng.generators
            ]
        )
        return cls.box(x_shape, (h, w), top_left=corners.cpu(), sigma_y=sigma_y)

    @classmethod
    def random_pixels(
        cls, x_shape: Sequence[int], fraction_observed: float, rng: BatchRNG, sigma_y: float = 0.0
    ) -> Inpainting:
        """Per-sample random masks observing ``max(1, round(fraction_observed * n))`` of ``n`` positions.

        Images ``(C, *spatial)``: the positions are pixels, shared by the channels. Flat ``(d,)``: entries.
        ``fraction_observed`` lies in (0, 1]; sample ``i``'s mask comes from generator ``i`` of ``rng``.
        """
        fraction = check_unit_interval("fraction_observed", fraction_observed)
        shape = _check_shape("x_shape", x_shape)
        positions = shape if len(shape) == 1 else (1, *shape[1:])
        n = math.prod(positions)
        k = max(1, round(fraction * n))
        u = rng.rand(n, dtype=torch.float64).cpu()
        observed = torch.zeros(len(rng), n, dtype=torch.bool)
        observed.scatter_(1, u.argsort(dim=1)[:, :k], True)
        return cls(observed.reshape(len(rng), *positions), sigma_y, x_shape=shape)

    @staticmethod
    def _box_size(size: int | Sequence[int], h_img: int, w_img: int) -> tuple[int, int]:
        hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if len(hw) != 2:
            raise ValueError(f"size must be an int or a pair (h, w), got {size!r}")
        h, w = (check_positive_int("size", s) for s in hw)
        if h > h_img or w > w_img:
            raise ValueError(f"size ({h}, {w}) is larger than the ({h_img}, {w_img}) image")
        return h, w

    # ------------------------------------------------------------------------------------------- operator
    @property
    def batch_size(self) -> int | None:
        return None if self.mask.shape[0] == 1 else self.mask.shape[0]

    @property
    def num_measurements(self) -> int | Tensor:
        per_mask = self.mask.flatten(1).sum(dim=1) * (math.prod(self.x_shape) // math.prod(self.mask.shape[1:]))
        return int(per_mask[0]) if self.batch_size is None else per_mask

    def _forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.dtype)

    def _adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask.to(y.dtype)

    def _pinv(self, y: Tensor) -> Tensor:
        return y * self.mask.to(y.dtype)

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        mask = self.mask.double()
        return (gamma * mask * y.double() + z.double()) / (gamma * mask + 1)

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        mask = self.mask.double()  # A A^T is the mask itself on the measurement space
        return mask * v.double() / (a * mask + b + (1 - mask))  # unobserved entries: 0 (the minimum-norm solution)

    def measure(self, x: Tensor, rng: BatchRNG) -> Tensor:
        """``mask (x + sigma_y n)``: noise on the observed entries only (unobserved entries stay 0)."""
        check_image_scale("x", x)
        ax = self(x)
        return ax + self.sigma_y * self._forward(rng.randn_like(ax))

    def select(self, index: Index) -> Inpainting:
        if self.batch_size is None:
            return self
        idx = _as_index(index)
        top_left = None if self.top_left is None else self.top_left[idx]
        return Inpainting(self.mask[idx], self.sigma_y, x_shape=self.x_shape, top_left=top_left)


# -------------------------------------------------------------------------------------- super-resolution
