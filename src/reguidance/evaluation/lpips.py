"""LPIPS (Zhang et al. 2018, v0.1, AlexNet backbone) from user-supplied weight files.

Written by hand because the usual packages cannot run here: ``lpips`` and torchmetrics' LPIPS build their backbone
with torchvision, which does not import beside our pinned torch, and no weights can be downloaded. The network is
small, so this module builds torchvision's ``alexnet().features`` itself and loads two files the user has:

* the AlexNet ImageNet weights in torchvision's format (``alexnet-owt-7be5be79.pth``; keys ``features.{0,3,6,8,10}``;
  torchvision names its files by the first 8 hex digits of their sha256, which is checked when the name carries
  them),
* LPIPS's linear heads (``weights/v0.1/alex.pth`` of the ``lpips`` package; keys ``lin{0..4}.model.1.weight``).

Both load with ``torch.load(weights_only=True)`` (no code runs) and their sha256 is recorded on the metric.

The distance, for images in [-1, 1] (grey images are repeated to 3 channels; images smaller than ``min_size`` are
upsampled bilinearly to it, since AlexNet's stride-4 stem leaves 32x32 inputs a 1x1 feature map):
``d(x, x') = sum_l mean_hw ( w_l . (f_l(x) - f_l(x'))^2 )`` with ``f_l`` the unit-normalised (over channels) ReLU
outputs of the five conv layers after LPIPS's input scaling, ``w_l >= 0`` the linear heads. 0 for equal images.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io.files import torch_load_tensors
from ..io.hashing import sha256_file

__all__ = ["LPIPS"]

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
#: torchvision AlexNet ``features`` conv layers: (index, in, out, kernel, stride, padding); LPIPS taps each ReLU
_CONVS = (
    (0, 3, 64, 11, 4, 2),
    (3, 64, 192, 5, 1, 2),
    (6, 192, 384, 3, 1, 1),
    (8, 384, 256, 3, 1, 1),
    (10, 256, 256, 3, 1, 1),
)


def _load(path: str | os.PathLike[str], what: str) -> tuple[dict[str, Tensor], str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"LPIPS {what} weights: no file {file}")
    digest = sha256_file(file)
    prefix = re.search(r"-([0-9a-f]{8})\.pth$", file.name)
    if prefix and not digest.startswith(prefix.group(1)):
        raise ValueError(
            f"LPIPS {what} weights {file}: sha256 {digest[:8]}... does not match the {prefix.group(1)} "
            "its name promises (a corrupt or different file)"
        )
    state = torch_load_tensors(file)  # never runs pickled code; torch's warnings kept from the screen
    if not isinstance(state, dict):
        raise ValueError(f"LPIPS {what} weights {file}: expected a state dict, got {type(state).__name__}")
    return state, digest


class LPIPS(nn.Module):
    """LPIPS-Alex; ``LPIPS(alexnet_path, lin_path)(x, x')`` gives per-image distances (B,). See the module."""

    shift: Tensor
    scale: Tensor

    def __init__(self, alexnet: str | os.PathLike[str], lin: str | os.PathLike[str], min_size: int = 64) -> None:
        super().__init__()
        convs = [nn.Conv2d(i, o, k, s, p) for _, i, o, k, s, p in _CONVS]
        lins = [nn.Conv2d(out, 1, 1, bias=False) for _, _, out, *_ in _CONVS]
        features, self.alexnet_sha256 = _load(alexnet, "AlexNet")
        heads, self.lin_sha256 = _load(lin, "linear-head")
        try:
            for conv, (idx, *_) in zip(convs, _CONVS, strict=True):
                conv.load_state_dict(
                    {"weight": features[f"features.{idx}.weight"], "bias": features[f"features.{idx}.bias"]}
                )
            for k, lin_k in enumerate(lins):
                lin_k.load_state_dict({"weight": heads[f"lin{k}.model.1.weight"]})
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"LPIPS weights do not fit AlexNet / LPIPS v0.1 heads: {e}") from None
        self.convs = nn.ModuleList(convs)
        self.lins = nn.ModuleList(lins)
        self.min_size = min_size
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _features(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < self.min_size:
            x = F.interpolate(x, size=(self.min_size, self.min_size), mode="bilinear", align_corners=False)
        h = (x - self.shift) / self.scale
        out = []
        for k, conv in enumerate(self.convs):
            if k in (1, 2):  # torchvision's max-pools sit after the first and second ReLU
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(conv(h))
            out.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        """Per-image LPIPS (B,) of images (B, C, H, W) in [-1, 1], C = 1 or 3."""
        if x.shape != other.shape or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"LPIPS needs two (B, 1 or 3, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(other.shape)}"
            )
        fx, fo = self._features(x.float()), self._features(other.float())
        return sum(lin((a - b).pow(2)).mean(dim=(1, 2, 3)) for lin, a, b in zip(self.lins, fx, fo, strict=True))
