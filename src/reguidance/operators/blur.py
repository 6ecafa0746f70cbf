"""Blur: circular convolution with any kernel (motion blur), and the Gaussian blur."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..conventions import (
    check_finite,
    check_nonnegative,
    check_positive_int,
)
from .base import (
    LinearOperator,
    _image_shape,
)

__all__ = ["Blur", "GaussianBlur"]


class Blur(LinearOperator):
    r"""Circular (periodic) convolution of each channel of images ``(C, H, W)`` with ``kernel (kh, kw)``.

    ``(A x)[i, j] = sum_{a, b} kernel[a, b] x[(i - a + kh // 2) mod H, (j - b + kw // 2) mod W]``: a true
    convolution centred on the kernel's middle entry (odd ``kh <= H``, ``kw <= W``). In Fourier space
    ``A x = F^{-1}(K F x)`` with ``K`` the transfer function of the zero-padded, centred kernel; the adjoint is the
    circular correlation ``F^{-1}(conj(K) F y)``.

    ``pinv`` is Tikhonov-regularised deconvolution ``F^{-1}(conj(K) Y / (|K|^2 + reg))``, an approximate inverse
    that is accurate at frequencies where ``|K|^2 >> reg`` (``reg > 0``; ``|K| <= 1`` for a normalised kernel).
    """

    kernel: Tensor

    def __init__(self, x_shape: Sequence[int], kernel: Tensor, sigma_y: float = 0.0, reg: float = 1e-3) -> None:
        c, h, w = _image_shape(x_shape)
        if not isinstance(kernel, Tensor) or kernel.dim() != 2:
            raise ValueError(f"kernel must be a 2-D tensor (kh, kw), got {getattr(kernel, 'shape', kernel)!r}")
        kh, kw = kernel.shape
        if kh % 2 == 0 or kw % 2 == 0 or kh > h or kw > w:
            raise ValueError(f"kernel must have odd sizes at most the image size ({h}, {w}), got ({kh}, {kw})")
        check_finite("kernel", kernel)
        if check_nonnegative("reg", reg) == 0:
            raise ValueError("reg must be > 0, got 0")
        super().__init__((c, h, w), (c, h, w), sigma_y)
        self.register_buffer("kernel", kernel.detach().to(torch.float64).clone())
        self.reg = float(reg)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={tuple(self.kernel.shape)}, reg={self.reg}"

    def transfer(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``K = rfft2`` of the kernel zero-padded to ``(H, W)`` with its centre at ``(0, 0)``: ``(H, W // 2 + 1)``."""
        h, w = self.x_shape[1:]
        kh, kw = self.kernel.shape
        padded = self.kernel.new_zeros(h, w)
        padded[:kh, :kw] = self.kernel
        padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        return torch.fft.rfft2(padded.to(dtype))

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=self.x_shape[1:])

    def _forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self.transfer(x.dtype))

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self.transfer(y.dtype).conj())

    def _pinv(self, y: Tensor) -> Tensor:
        k = self.transfer(y.dtype)
        return self._filter(y, k.conj() / (k.abs() ** 2 + self.reg))

    def _prox_l2(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
        # (g |K|^2 + 1) X = g conj(K) Y + Z, frequency by frequency, in float64
        k = self.transfer(torch.float64)
        g = gamma.reshape(-1, *([1] * (z.dim() - 1)))
        rhs = g * torch.fft.rfft2(y.double()) * k.conj() + torch.fft.rfft2(z.double())
        return torch.fft.irfft2(rhs / (g * k.abs() ** 2 + 1), s=self.x_shape[1:])

    def _solve_gram(self, v: Tensor, a: float, b: float) -> Tensor:
        power = a * self.transfer(torch.float64).abs() ** 2 + b
        keep = power > 1e-12 * a  # frequencies the blur removes get 0 when b = 0 (the minimum-norm solution)
        gain = torch.where(keep, 1 / torch.where(keep, power, torch.ones_like(power)), torch.zeros_like(power))
        return self._filter(v.double(), gain)


class GaussianBlur(Blur):
    """:class:`Blur` with a normalised Gaussian kernel of std ``blur_sigma`` pixels, ``kernel_size`` pixels wide.

    ``kernel_size=None`` takes ``2 ceil(3 blur_sigma) + 1`` (the kernel truncated at 3 standard deviations).
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        kernel_size: int | None = None,
        blur_sigma: float = 3.0,
        sigma_y: float = 0.0,
        reg: float = 1e-3,
    ) -> None:
        if check_nonnegative("blur_sigma", blur_sigma) == 0:
            raise ValueError("blur_sigma must be > 0, got 0")
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * blur_sigma) + 1
        size = check_positive_int("kernel_size", kernel_size)
        _, h, w = _image_shape(x_shape)
        if size % 2 == 0 or size > min(h, w):
            raise ValueError(f"kernel_size must be odd and at most {min(h, w)}, got {size}")
        u = torch.arange(size, dtype=torch.float64) - size // 2
        g = torch.exp(-0.5 * (u / blur_sigma) ** 2)
        kernel = torch.outer(g, g)
        super().__init__(x_shape, kernel / kernel.sum(), sigma_y, reg)
        self.blur_sigma = float(blur_sigma)
