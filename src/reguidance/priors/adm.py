r"""The ADM UNet of guided-diffusion (Dhariwal & Nichol 2021), reading its checkpoints unchanged, and its prior.

Conventions (the same as every prior, see :mod:`reguidance.priors.base`):

- input ``x`` (B, C, H, W) on the [-1, 1] image scale, noised on the variance-preserving chain,
  ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``;
- ``timesteps`` (B,) the *original* integer timesteps ``0 .. T-1`` the network was trained with (after
  respacing, the chain's ``timestep_map`` entries, never chain indices);
- output (B, out_channels, H, W): the predicted ``eps`` in the first ``in_channels`` channels and, when
  ``out_channels = 2 * in_channels`` ("learned range", Nichol & Dhariwal 2021), ``var_values`` in [-1, 1] in the
  rest, interpolating the reverse-step log-variance between ``log beta_tilde_t`` (-1) and ``log beta_t`` (+1).

Architecture (:class:`ADMUNet`, keyword arguments and state-dict keys those of guided-diffusion's ``UNetModel``):

    emb = MLP(sinusoidal(t)) [+ label_emb(y)]                    time_embed.{0,2}, label_emb
    input_blocks:  conv3x3, then per level ``num_res_blocks`` x [ResBlock (+ attention if the level's
                   downsample rate ``ds`` is in ``attention_resolutions``)] and, except at the last level,
                   a downsampler (strided conv, average pool, or a ResBlock with ``down=True``)
    middle_block:  ResBlock, attention, ResBlock
    output_blocks: per level (coarse to fine) ``num_res_blocks + 1`` x [ResBlock on concat(h, skip)
                   (+ attention)], the last of each level but the finest followed by an upsampler
    out:           GroupNorm, SiLU, conv3x3

A ResBlock is ``skip(x) + conv(drop(SiLU(norm'(conv(SiLU(norm(x)))))))`` where ``norm'`` adds the projected
embedding (``h + e``) or, with ``use_scale_shift_norm``, applies it FiLM-style ``norm(h) (1 + s) + b``.
Attention is multi-head self-attention over the ``H W`` positions with one 1x1 ``qkv`` projection; the *legacy*
order splits heads before q/k/v, the *new* order q/k/v before heads (they read the same weights differently).
Group normalisation (32 groups) always computes in float32, as in the reference.

Differences from the reference, none of which changes the output:

- ``use_checkpoint`` is accepted and ignored: activations are never recomputed (the reference's attention
  blocks checkpoint even when the flag is off, which costs a second forward pass in every backward pass).
  We do not trade compute for memory unless asked.
- ``use_fp16`` is accepted and recorded; as in the reference it does not convert anything by itself.
  :meth:`ADMUNet.convert_to_fp16` casts the convolutions of the three torsos to float16 (the reference's
  semantics); the forward pass runs the torso in the dtype of its convolution weights, so an unconverted
  model simply runs in float32.
- attention uses :func:`torch.nn.functional.scaled_dot_product_attention` (the same softmax attention; it
  agrees with the reference's einsum-softmax to float32 rounding, ~1e-6, and uses fused kernels on GPU).
- only ``dims=2`` (images) is supported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..conventions import InputError
from ..diffusion import Schedule, Variance
from .base import COMPILE_MODES, NetworkPrior, PriorOutput

__all__ = [
    "COMPILE_MODES",
    "DEFAULT_CHANNEL_MULT",
    "DIFFUSION_FLAGS",
    "MODEL_FLAGS",
    "ADMPrior",
    "ADMUNet",
    "CheckpointConfig",
    "checkpoint_config",
    "infer_structure",
    "read_config_file",
    "state_dict_shapes",
    "timestep_embedding",
]


# ----------------------------------------------------------------------------------------------- building blocks
class GroupNorm32(nn.GroupNorm):
    """Group normalisation computed in float32 whatever the input dtype, cast back to the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _zeroed(module: nn.Module) -> nn.Module:
    """Zero a freshly built module's parameters (the reference's initialisation of output layers)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B, dim) float32 of ``timesteps`` (B,): ``[cos(t w_k), sin(t w_k)]``.

    Frequencies ``w_k = max_period^(-k / half)`` for ``k < half = dim // 2``; an odd ``dim`` gets a zero column.
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = timesteps.reshape(-1, 1).float() * freqs.reshape(1, -1)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


class EmbeddedBlock(nn.Module):
    """A layer that also reads the (B, emb_dim) embedding: ``forward(h, emb)``."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # pragma: no cover - interface only
        raise NotImplementedError


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands the embedding to the children that take one (:class:`EmbeddedBlock`)."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            h = layer(h, emb) if isinstance(layer, EmbeddedBlock) else layer(h)
        return h


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling, optionally followed by a 3x3 conv (parameter ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """x2 downsampling: a stride-2 3x3 conv or a 2x2 average pool (parameter ``op`` either way)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            if self.out_channels != channels:
                raise ValueError("average-pool downsampling cannot change the number of channels")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(EmbeddedBlock):
    """Residual block conditioned on the embedding, optionally resampling (``up`` / ``down``).

    Submodules (state-dict names): ``in_layers`` = [norm, SiLU, conv3x3], ``emb_layers`` = [SiLU, linear],
    ``out_layers`` = [norm, SiLU, dropout, conv3x3], ``skip_connection`` (identity, 1x1 or 3x3 conv).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out = out_channels or channels
        self.channels = channels
        self.out_channels = out
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.updown = up or down
        self.h_upd: nn.Module
        self.x_upd: nn.Module
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if use_scale_shift_norm else out))
        self.out_layers = nn.Sequential(
            _norm(out), nn.SiLU(), nn.Dropout(p=dropout), _zeroed(nn.Conv2d(out, out, 3, padding=1))
        )
        if out == channels:
            self.skip_connection: nn.Module = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, out, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            # normalise and activate at the input resolution, resample, then convolve
            h = self.in_layers[1](self.in_layers[0](x))
            h = self.in_layers[2](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


def _attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention over positions: q, k, v (N, ch, L) -> (N, ch, L), logits ``q.k / sqrt(ch)``."""
    a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return a.transpose(1, 2)


class QKVAttentionLegacy(nn.Module):
    """Heads split first: ``qkv`` (B, heads * 3 * ch, L) is read as ``heads`` blocks of [q; k; v]."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: Tensor) -> Tensor:
        b, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(b * self.n_heads, 3 * ch, length).split(ch, dim=1)
        return _attention(q, k, v).reshape(b, -1, length)


class QKVAttention(nn.Module):
    """q/k/v split first: ``qkv`` (B, 3 * heads * ch, L) is read as [q; k; v], each ``heads`` blocks of ``ch``."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: Tensor) -> Tensor:
        b, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = (z.reshape(b * self.n_heads, ch, length) for z in qkv.chunk(3, dim=1))
        return _attention(q, k, v).reshape(b, -1, length)


class AttentionBlock(nn.Module):
    """Residual self-attention over spatial positions: ``x + proj_out(attn(qkv(norm(x))))``.

    The number of heads is ``num_heads``, or ``channels // num_head_channels`` when ``num_head_channels != -1``.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            heads = num_heads
        else:
            if num_head_channels < 1 or channels % num_head_channels:
                raise ValueError(
                    f"attention over {channels} channels cannot use num_head_channels={num_head_channels}: "
                    "it must divide the channel count"
                )
            heads = channels // num_head_channels
        if heads < 1 or channels % heads:
            raise ValueError(f"attention over {channels} channels cannot be split into {heads} heads")
        self.channels = channels
        self.num_heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.attention = QKVAttention(heads) if use_new_attention_order else QKVAttentionLegacy(heads)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)


# ----------------------------------------------------------------------------------------------------- the UNet
class ADMUNet(nn.Module):
    """guided-diffusion's ``UNetModel``: same keyword arguments, defaults and state-dict keys.

    ``forward(x, timesteps, y=None)``: ``x`` (B, in_channels, H, W) in [-1, 1] noised at ``timesteps`` (B,)
    (original integer timesteps; fractional values are accepted), ``y`` (B,) int64 class labels if and only if
    ``num_classes`` is set. Returns (B, out_channels, H, W): ``eps`` then, for ``out_channels = 2 * in_channels``,
    the ``var_values`` in [-1, 1].

    ``attention_resolutions`` holds downsample *rates* (1, 2, 4, ...), not image sizes: guided-diffusion's
    ``create_model`` turns its ``"32,16,8"`` string into ``image_size // 32, ...`` (see
    :func:`reguidance.priors.zoo.unet_config_from_create_model`). ``use_checkpoint`` is ignored (activations
    are never recomputed); ``use_fp16`` only records the intent, see :meth:`convert_to_fp16`.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Iterable[int],
        dropout: float = 0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError(f"ADMUNet supports dims=2 (images) only, got dims={dims!r}")
        if isinstance(attention_resolutions, str):
            raise ValueError(
                "attention_resolutions must be a collection of downsample rates such as (16,), not the string "
                f"{attention_resolutions!r} of guided-diffusion's create_model; convert it with "
                "reguidance.priors.zoo.unet_config_from_create_model"
            )
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("set num_heads or num_head_channels (both are -1)")
        if len(channel_mult) < 1:
            raise ValueError("channel_mult must hold at least one level")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        attn_ds = tuple(int(d) for d in attention_resolutions)
        self.config: dict[str, Any] = {
            "image_size": image_size,
            "in_channels": in_channels,
            "model_channels": model_channels,
            "out_channels": out_channels,
            "num_res_blocks": num_res_blocks,
            "attention_resolutions": list(attn_ds),
            "dropout": dropout,
            "channel_mult": list(channel_mult),
            "conv_resample": conv_resample,
            "dims": dims,
            "num_classes": num_classes,
            "use_checkpoint": use_checkpoint,
            "use_fp16": use_fp16,
            "num_heads": num_heads,
            "num_head_channels": num_head_channels,
            "num_heads_upsample": num_heads_upsample,
            "use_scale_shift_norm": use_scale_shift_norm,
            "resblock_updown": resblock_updown,
            "use_new_attention_order": use_new_attention_order,
        }
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.use_fp16 = use_fp16

        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(c_in: int, c_out: int | None = None, up: bool = False, down: bool = False) -> ResBlock:
            return ResBlock(c_in, emb_dim, dropout, c_out, use_scale_shift_norm=use_scale_shift_norm, up=up, down=down)

        def attn(c: int, heads: int) -> AttentionBlock:
            return AttentionBlock(c, heads, num_head_channels, use_new_attention_order)

        ch = first_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        last_level = len(channel_mult) - 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attn_ds:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != last_level:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(EmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(res(ch), attn(ch, num_heads), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attn_ds:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(_norm(ch), nn.SiLU(), _zeroed(nn.Conv2d(first_ch, out_channels, 3, padding=1)))

    # ------------------------------------------------------------------------------------------------ precision
    def _torsos(self) -> tuple[nn.Module, ...]:
        return (self.input_blocks, self.middle_block, self.output_blocks)

    def _convert_torso(self, dtype: torch.dtype) -> ADMUNet:
        for torso in self._torsos():
            for m in torso.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.weight.data = m.weight.data.to(dtype)
                    if m.bias is not None:
                        m.bias.data = m.bias.data.to(dtype)
        return self

    def convert_to_fp16(self) -> ADMUNet:
        """Cast the torso's convolutions to float16 (norms, embeddings and ``out`` stay float32); returns self."""
        return self._convert_torso(torch.float16)

    def convert_to_fp32(self) -> ADMUNet:
        """Undo :meth:`convert_to_fp16`; returns self."""
        return self._convert_torso(torch.float32)

    @property
    def torso_dtype(self) -> torch.dtype:
        """The dtype the torso computes in: that of its first convolution's weight."""
        block = self.input_blocks[0]
        assert isinstance(block, nn.Sequential)  # the torso's first block, by construction
        conv = block[0]
        assert isinstance(conv, nn.Conv2d)
        return conv.weight.dtype

    # -------------------------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, out_channels, H, W) prediction for ``x`` (B, in_channels, H, W) at ``timesteps`` (B,)."""
        if (y is None) != (self.num_classes is None):
            raise ValueError(
                "pass class labels y (B,) if and only if the model is class-conditional "
                f"(num_classes={self.num_classes}, y {'given' if y is not None else 'missing'})"
            )
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x.shape[0])
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps has shape {tuple(timesteps.shape)} but x holds {x.shape[0]} samples")
        t_emb = timestep_embedding(timesteps, self.model_channels)
        first = self.time_embed[0]
        assert isinstance(first, nn.Linear)  # by construction
        emb = self.time_embed(t_emb.to(first.weight.dtype))
        if y is not None:
            if y.shape != (x.shape[0],):
                raise ValueError(f"y has shape {tuple(y.shape)} but x holds {x.shape[0]} samples")
            emb = emb + self.label_emb(y)

        h = x.to(self.torso_dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(self.out[2].weight.dtype)).to(x.dtype)


def state_dict_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``ADMUNet(**config)`` with its shape, computed without allocating weights."""
    with torch.device("meta"):
        model = ADMUNet(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------- the prior
class ADMPrior(NetworkPrior):
    """An :class:`ADMUNet` as a prior: ``eps`` (and ``var_values``) at ``(x_t, t)`` on a diffusion schedule.

    ``schedule`` defaults to guided-diffusion's 1000-step linear chain. ``variance`` defaults to
    ``"learned_range"`` when the network outputs ``2 * in_channels`` channels, else ``"fixed_small"``
    (guided-diffusion itself samples non-learned-sigma models with ``fixed_large`` unless ``sigma_small``;
    pass ``variance`` to choose). ``signal_shape = (in_channels, image_size, image_size)``. Fast paths:
    :meth:`NetworkPrior.optimize`.
    """

    def __init__(self, unet: ADMUNet, schedule: Schedule | None = None, variance: Variance | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.schedule = Schedule.linear() if schedule is None else schedule
        self.signal_shape = (unet.in_channels, unet.image_size, unet.image_size)
        self.learned_sigma = unet.out_channels == 2 * unet.in_channels
        if not self.learned_sigma and unet.out_channels != unet.in_channels:
            raise ValueError(
                f"the UNet outputs {unet.out_channels} channels for {unet.in_channels} input channels; "
                f"expected {unet.in_channels} (eps) or {2 * unet.in_channels} (eps and var_values)"
            )
        if variance is None:
            variance = "learned_range" if self.learned_sigma else "fixed_small"
        if variance == "learned_range" and not self.learned_sigma:
            raise ValueError("variance='learned_range' needs a UNet with out_channels = 2 * in_channels")
        self.variance = variance
        self._set_net(unet)

    def predict(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> PriorOutput:
        """``eps`` (B, *signal_shape) and ``var_values`` (learned-range models, else None) at ``(x_t, t)``.

        ``x_t`` (B, C, H, W) on the [-1, 1] scale noised to ``t`` (B,) original integer timesteps (a scalar is
        broadcast); ``y`` (B,) class labels for class-conditional UNets.
        """
        self.check_input(x_t)
        out = self.run_net(x_t, t, y).to(x_t.dtype)
        c = self.signal_shape[0]
        if self.learned_sigma:
            return PriorOutput(out[:, :c], out[:, c:])
        return PriorOutput(out, None)


# ------------------------------------------------------------------------------------ configurations of checkpoints
#: guided-diffusion's default ``channel_mult`` per image size (``create_model`` with ``channel_mult=""``)
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}
#: guided-diffusion's model flags (``create_model``'s arguments; ``in_channels`` of its later forks)
MODEL_FLAGS = (
    "image_size",
    "num_channels",
    "num_res_blocks",
    "channel_mult",
    "learn_sigma",
    "class_cond",
    "use_checkpoint",
    "attention_resolutions",
    "num_heads",
    "num_head_channels",
    "num_heads_upsample",
    "use_scale_shift_norm",
    "dropout",
    "resblock_updown",
    "use_fp16",
    "use_new_attention_order",
    "in_channels",
)
#: guided-diffusion's diffusion flags (``create_gaussian_diffusion``), and ``model_path`` of DPS's yaml files
DIFFUSION_FLAGS = (
    "diffusion_steps",
    "noise_schedule",
    "sigma_small",
    "predict_xstart",
    "rescale_timesteps",
    "timestep_respacing",
    "use_kl",
    "rescale_learned_sigmas",
    "model_path",
)
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class CheckpointConfig:
    """How to rebuild a checkpoint: :class:`ADMUNet` keyword arguments, the training chain and the variance.

    ``schedule`` / ``num_timesteps`` name the chain (:meth:`Schedule.named`); ``variance`` is None where the
    config does not say (then :class:`ADMPrior`'s default applies).
    """

    unet: dict[str, Any]
    schedule: str = "linear"
    num_timesteps: int = 1000
    variance: Variance | None = None

    def make_schedule(self) -> Schedule:
        return Schedule.named(self.schedule, self.num_timesteps)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a ``.json``, ``.yaml`` or ``.yml`` file (guided-diffusion flag names, as DPS's
    ``configs/model_config.yaml``); YAML is read with PyYAML's ``safe_load`` (no code runs)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise InputError(f"config file {p} has suffix {p.suffix!r}; expected .json, .yaml or .yml")
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # the parsers' own errors name the line
        raise InputError(f"could not parse config file {p}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise InputError(f"config file {p} holds {type(data).__name__}, expected a mapping of flag names to values")
    return dict(data)


def _sub_keys(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> set[str]:
    """The key suffixes under ``prefix`` (which ends with a dot)."""
    return {k[len(prefix) :] for k in shapes if k.startswith(prefix)}


def _indices(shapes: Mapping[str, tuple[int, ...]], torso: str) -> set[int]:
    return {int(k.split(".")[1]) for k in shapes if k.startswith(torso + ".") and k.split(".")[1].isdigit()}


def _as_number(x: float) -> float:
    return int(x) if float(x).is_integer() else float(x)


def infer_structure(shapes: Mapping[str, tuple[int, ...]], source: str = "the state dict") -> dict[str, Any]:
    """The :class:`ADMUNet` arguments that a guided-diffusion state dict's keys and shapes determine.

    ``shapes`` maps every key to its shape. Read from the keys (``C`` = ``model_channels``):

    - ``time_embed.0.weight`` (4C, C): ``model_channels``; ``input_blocks.0.0.weight`` (c0, in, 3, 3):
      ``in_channels``; ``out.2.weight`` (out, c0, 3, 3): ``out_channels`` (``2 in`` = learned sigma);
      ``label_emb.weight`` (classes, 4C): ``num_classes``;
    - ``num_res_blocks`` from where the first resampler sits: an upsampler in an output block (``conv`` of an
      ``Upsample``, or a second ResBlock), else a downsampler among the input blocks (``op`` of a strided conv,
      or a block without parameters: average pooling); ``L = len(output_blocks) / (num_res_blocks + 1)`` levels;
    - ``channel_mult`` from the first ResBlock of each level (output channels / C);
    - attention downsample rates ``2^level`` where the level's input ResBlocks have an attention block (``qkv``);
    - ``use_scale_shift_norm`` when a ResBlock's embedding projection is twice its width;
      ``resblock_updown`` when the downsampler is a ResBlock, else ``conv_resample`` when it has a conv.

    Not stored in a state dict, so not returned: ``image_size``, the heads (``num_heads``, ``num_head_channels``,
    ``num_heads_upsample``), ``use_new_attention_order``, ``dropout``, ``use_fp16``, ``use_checkpoint``.
    Raises :class:`InputError` when the keys do not form a guided-diffusion UNet; the result is verified by
    rebuilding every key and shape.
    """

    def need(key: str) -> tuple[int, ...]:
        if key not in shapes:
            first = ", ".join(list(shapes)[:4])
            raise InputError(
                f"{source} is not a guided-diffusion UNet state dict: it has no key {key!r} (its keys begin "
                f"{first}, ...)"
            )
        return tuple(shapes[key])

    emb_dim, model_channels = need("time_embed.0.weight")
    in_channels = need("input_blocks.0.0.weight")[1]
    out_channels = need("out.2.weight")[0]
    num_classes = shapes["label_emb.weight"][0] if "label_emb.weight" in shapes else None
    n_in = max(_indices(shapes, "input_blocks")) + 1
    n_out = max(_indices(shapes, "output_blocks"), default=-1) + 1

    def is_resblock(prefix: str) -> bool:
        return "in_layers.0.weight" in _sub_keys(shapes, prefix)

    def has_upsampler(j: int) -> bool:
        return any(
            "conv.weight" in _sub_keys(shapes, f"output_blocks.{j}.{k}.") or is_resblock(f"output_blocks.{j}.{k}.")
            for k in (1, 2)
        )

    def down_kind(i: int) -> str:
        keys = _sub_keys(shapes, f"input_blocks.{i}.")
        if not keys:
            return "pool"
        if "0.op.weight" in keys:
            return "conv"
        return "res" if is_resblock(f"input_blocks.{i}.0.") else "other"

    ups = [j for j in range(n_out) if has_upsampler(j)]
    downs = [i for i in range(1, n_in) if down_kind(i) in ("pool", "conv")]
    num_res_blocks = ups[0] if ups else downs[0] - 1 if downs else n_out - 1
    levels = n_out // (num_res_blocks + 1) if num_res_blocks >= 1 else 0
    if num_res_blocks < 1 or levels * (num_res_blocks + 1) != n_out or n_in != n_out:
        raise InputError(
            f"{source} is not a guided-diffusion UNet state dict: its {n_in} input and {n_out} output blocks fit "
            f"no number of levels with {num_res_blocks} ResBlocks each"
        )
    first_res = [1 + level * (num_res_blocks + 1) for level in range(levels)]
    channel_mult = [_as_number(need(f"input_blocks.{i}.0.out_layers.3.weight")[0] / model_channels) for i in first_res]
    attention = [2**level for level, i in enumerate(first_res) if f"input_blocks.{i}.1.qkv.weight" in shapes]
    width = need("input_blocks.1.0.out_layers.3.weight")[0]
    use_scale_shift_norm = need("input_blocks.1.0.emb_layers.1.weight")[0] == 2 * width
    down = down_kind(1 + num_res_blocks) if levels > 1 else "none"
    structure: dict[str, Any] = {
        "in_channels": in_channels,
        "model_channels": model_channels,
        "out_channels": out_channels,
        "num_res_blocks": num_res_blocks,
        "attention_resolutions": attention,
        "channel_mult": channel_mult,
        "conv_resample": down != "pool",
        "num_classes": num_classes,
        "use_scale_shift_norm": use_scale_shift_norm,
        "resblock_updown": down == "res",
    }
    if emb_dim != 4 * model_channels:
        raise InputError(
            f"{source} is not a guided-diffusion UNet state dict: time_embed.0.weight has shape "
            f"{(emb_dim, model_channels)}, expected (4 C, C)"
        )
    want = state_dict_shapes({**structure, "image_size": 2 ** (levels - 1)})
    if want != {k: tuple(v) for k, v in shapes.items()}:
        missing = [k for k in want if k not in shapes][:3]
        unexpected = [k for k in shapes if k not in want][:3]
        wrong = [
            f"{k}: {tuple(shapes[k])} (expected {want[k]})" for k in want if k in shapes and tuple(shapes[k]) != want[k]
        ][:3]
        raise InputError(
            f"{source} does not form a guided-diffusion UNet: the structure read from its keys ({structure}) "
            f"rebuilds other keys; missing {missing}, unexpected {unexpected}, wrong shapes {wrong}"
        )
    return structure


def _flag_bool(flags: Mapping[str, Any], key: str) -> bool:
    value = flags[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(f"config {key}={value!r} must be true or false")


def _flag_int(flags: Mapping[str, Any], key: str, minimum: int | None = 1) -> int:
    value = flags[key]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise InputError(f"config {key}={flags[key]!r} must be an integer{at_least}")
    return value


def _flag_numbers(flags: Mapping[str, Any], key: str) -> list[float]:
    """A comma-separated string, a number or a list of numbers, as a list."""
    value = flags[key]
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        return [_as_number(float(v)) for v in items if not (isinstance(v, str) and not v.strip())]
    except (TypeError, ValueError):
        raise InputError(f"config {key}={value!r} must be numbers, e.g. '32,16,8' or [32, 16, 8]") from None


def checkpoint_config(
    shapes: Mapping[str, tuple[int, ...]], flags: Mapping[str, Any] | None = None, source: str = "the state dict"
) -> CheckpointConfig:
    """The full configuration of a guided-diffusion checkpoint: its keys and shapes, completed by ``flags``.

    ``flags`` uses guided-diffusion's flag names (:data:`MODEL_FLAGS`, :data:`DIFFUSION_FLAGS`; DPS's
    ``model_config.yaml`` files are such flags); every key is optional. What the state dict determines
    (:func:`infer_structure`) is taken from it, and a flag that contradicts it (``num_channels``,
    ``num_res_blocks``, ``channel_mult``, ``learn_sigma``, ``class_cond``, ``attention_resolutions``,
    ``use_scale_shift_norm``, ``resblock_updown``, ``in_channels``) is an :class:`InputError` naming both. The rest:

    - heads: ``num_head_channels`` (channels per head) or ``num_heads`` must be given (a state dict does not
      store them, and guided-diffusion's own defaults disagree: 1 head in ``create_model``, 4 in its scripts);
      ``num_heads_upsample`` defaults to ``num_heads``;
    - ``image_size``: the flag, else the size whose guided-diffusion default ``channel_mult`` is the inferred one
      (64, 128, 256 or 512), else an error asking for it. ``attention_resolutions`` are feature-map sizes, read
      as downsample rates ``image_size // size`` (rates beyond the deepest level are ignored, as there);
    - ``use_new_attention_order`` (False), ``dropout`` (0), ``use_fp16`` (False), ``use_checkpoint`` (False):
      guided-diffusion's defaults;
    - the chain: ``noise_schedule`` (linear or cosine) over ``diffusion_steps`` (1000); ``sigma_small`` picks
      ``fixed_small`` over ``fixed_large`` for models without learned sigma (unset: the prior's default);
      ``predict_xstart`` and ``rescale_timesteps`` with other than 1000 steps are refused (the prior feeds the
      network eps-model inputs at integer timesteps); ``timestep_respacing``, ``use_kl``,
      ``rescale_learned_sigmas`` (sampling and training choices) and ``model_path`` are ignored.

    ``flags=None`` means no config was given (the error messages say so). Raises :class:`InputError` naming every
    value still ambiguous with the flag that resolves it.
    """
    given = dict(flags or {})
    unknown = sorted(k for k in given if k not in MODEL_FLAGS + DIFFUSION_FLAGS)
    if unknown:
        raise InputError(
            f"config has keys {unknown} that are not guided-diffusion flags; expected some of "
            f"{', '.join(MODEL_FLAGS + DIFFUSION_FLAGS)}"
        )
    s = infer_structure(shapes, source)
    levels = len(s["channel_mult"])
    in_ch, out_ch = s["in_channels"], s["out_channels"]
    learned = out_ch == 2 * in_ch

    def contradiction(key: str, has: str) -> InputError:
        return InputError(f"config {key}={given[key]!r} contradicts {source}, which has {has}")

    # (flag, what the flag says in the structure's terms, what the state dict has, how to say it)
    checks: list[tuple[str, Any, Any, str]] = []
    for flag, key in (
        ("num_channels", "model_channels"),
        ("num_res_blocks", "num_res_blocks"),
        ("in_channels", "in_channels"),
    ):
        if flag in given:
            checks.append((flag, _flag_int(given, flag), s[key], f"{key}={s[key]}"))
    for flag in ("use_scale_shift_norm", "resblock_updown"):
        if flag in given and (flag == "use_scale_shift_norm" or levels > 1):  # one level: no resampling at all
            checks.append((flag, _flag_bool(given, flag), s[flag], f"{flag}={s[flag]}"))
    if "learn_sigma" in given:
        has = f"{out_ch} output channels for {in_ch} input channels"
        checks.append(("learn_sigma", _flag_bool(given, "learn_sigma"), learned, has))
    if "class_cond" in given:
        has = f"num_classes={s['num_classes']}"
        checks.append(("class_cond", _flag_bool(given, "class_cond"), s["num_classes"] is not None, has))
    for flag, says, got, has in checks:
        if says != got:
            raise contradiction(flag, has)

    ambiguous: list[str] = []
    image_size: int | None = None
    if "image_size" in given:
        image_size = _flag_int(given, "image_size")
    else:
        fits = [size for size, mult in DEFAULT_CHANNEL_MULT.items() if list(mult) == s["channel_mult"]]
        if fits:
            image_size = fits[0]
        else:
            ambiguous.append(
                f"the image size (pass image_size; channel_mult {s['channel_mult']} is none of guided-diffusion's "
                "defaults, which would fix it)"
            )
    if image_size is not None and image_size % 2 ** (levels - 1):
        raise InputError(f"config image_size={image_size} is not divisible by 2^{levels - 1} ({levels} levels)")
    if "channel_mult" in given:
        raw = given["channel_mult"]
        if isinstance(raw, str) and not raw.strip():
            default = DEFAULT_CHANNEL_MULT.get(image_size) if image_size is not None else None
            mult = None if default is None else [_as_number(m) for m in default]
        else:
            mult = _flag_numbers(given, "channel_mult")
        if mult is not None and mult != s["channel_mult"]:
            raise contradiction("channel_mult", f"channel_mult={s['channel_mult']}")
    if "attention_resolutions" in given and image_size is not None:
        sizes = _flag_numbers(given, "attention_resolutions")
        rates = sorted({int(image_size // r) for r in sizes if r > 0} & {2**level for level in range(levels)})
        if rates != sorted(s["attention_resolutions"]):
            have = [image_size // d for d in s["attention_resolutions"]]
            raise contradiction(
                "attention_resolutions",
                f"attention at feature-map sizes {have} of image_size {image_size} (downsample rates "
                f"{s['attention_resolutions']})",
            )
    heads = {k: _flag_int(given, k, minimum=None) for k in ("num_heads", "num_head_channels") if k in given}
    if not heads:
        ambiguous.append(
            "the attention heads (pass num_head_channels, e.g. 64, or num_heads: a checkpoint does not store them)"
        )
    if ambiguous:
        how = "no config was given" if flags is None else "the config does not say"
        raise InputError(
            f"cannot infer the UNet configuration of {source} completely ({how}): "
            + "; ".join(ambiguous)
            + "; pass config= (a dict or a .json/.yaml file in guided-diffusion's flag names)"
        )
    assert image_size is not None
    num_heads = heads.get("num_heads", 1)
    num_head_channels = heads.get("num_head_channels", -1)
    num_heads_upsample = _flag_int(given, "num_heads_upsample", minimum=None) if "num_heads_upsample" in given else -1
    if num_head_channels == -1 and num_heads < 1:
        raise InputError(f"config num_heads={num_heads} must be >= 1 when num_head_channels is -1")
    attn_widths = {
        int(s["channel_mult"][level] * s["model_channels"])
        for level in range(levels)
        if 2**level in s["attention_resolutions"]
    } | {int(s["channel_mult"][-1] * s["model_channels"])}
    for key, n, per_head in (
        ("num_head_channels", num_head_channels, True),
        ("num_heads", num_heads, False),
        ("num_heads_upsample", num_heads_upsample, False),
    ):
        if n == -1 or (not per_head and num_head_channels != -1):
            continue
        bad = sorted(w for w in attn_widths if n < 1 or w % n)
        if bad:
            what = "channels per head" if per_head else "heads"
            raise InputError(
                f"config {key}={n} does not divide the attention widths {sorted(attn_widths)} of {source} "
                f"(not {bad}); {what} must divide every attention block's channel count"
            )
    steps = _flag_int(given, "diffusion_steps") if "diffusion_steps" in given else 1000
    schedule = str(given.get("noise_schedule", "linear"))
    if schedule not in ("linear", "cosine"):
        raise InputError(f"config noise_schedule={schedule!r}: expected 'linear' or 'cosine'")
    if "predict_xstart" in given and _flag_bool(given, "predict_xstart"):
        raise InputError("config predict_xstart=True: the network predicts x0, but ADM priors here predict eps")
    if "rescale_timesteps" in given and _flag_bool(given, "rescale_timesteps") and steps != 1000:
        raise InputError(
            f"config rescale_timesteps=True with diffusion_steps={steps}: the network was trained on timesteps "
            f"scaled by 1000/{steps}, and the prior feeds it integer timesteps"
        )
    variance: Variance | None = "learned_range" if learned else None
    if not learned and "sigma_small" in given:
        variance = "fixed_small" if _flag_bool(given, "sigma_small") else "fixed_large"
    unet = {
        "image_size": image_size,
        "in_channels": in_ch,
        "model_channels": s["model_channels"],
        "out_channels": out_ch,
        "num_res_blocks": s["num_res_blocks"],
        "attention_resolutions": s["attention_resolutions"],
        "dropout": float(given.get("dropout", 0.0)),
        "channel_mult": s["channel_mult"],
        "conv_resample": s["conv_resample"],
        "dims": 2,
        "num_classes": s["num_classes"],
        "use_checkpoint": _flag_bool(given, "use_checkpoint") if "use_checkpoint" in given else False,
        "use_fp16": _flag_bool(given, "use_fp16") if "use_fp16" in given else False,
        "num_heads": num_heads,
        "num_head_channels": num_head_channels,
        "num_heads_upsample": num_heads_upsample,
        "use_scale_shift_norm": s["use_scale_shift_norm"],
        "resblock_updown": s["resblock_updown"],
        "use_new_attention_order": (
            _flag_bool(given, "use_new_attention_order") if "use_new_attention_order" in given else False
        ),
    }
    return CheckpointConfig(unet, schedule, steps, variance)
