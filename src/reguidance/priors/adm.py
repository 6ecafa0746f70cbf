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

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..conventions import InputError
from ..diffusion import Schedule, Variance
from .base import COMPILE_MODES, NetworkPrior, PriorOutput

__all__ = [
    "COMPILE_MODES",
    "UNET_ARGS",
    "UNET_DEFAULTS",
    "ADMPrior",
    "ADMUNet",
    "state_dict_shapes",
    "timestep_embedding",
    "unet_kwargs",
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


class QKVAttention(nn.Module):
    """Multi-head attention over ``qkv`` (B, 3 * heads * ch, L) -> (B, heads * ch, L), in either of guided-diffusion's
    channel layouts (its ``QKVAttentionLegacy`` and ``QKVAttention``): heads split first (``new_order=False``: read
    as ``heads`` blocks of [q; k; v]) or q/k/v split first (``new_order=True``: read as [q; k; v], each ``heads``
    blocks of ``ch``). No parameters, so the layout leaves the state dict unchanged."""

    def __init__(self, n_heads: int, new_order: bool = False) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.new_order = new_order

    def forward(self, qkv: Tensor) -> Tensor:
        b, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        if self.new_order:
            q, k, v = (z.reshape(b * self.n_heads, ch, length) for z in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * self.n_heads, 3 * ch, length).split(ch, dim=1)
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
        self.attention = QKVAttention(heads, new_order=use_new_attention_order)
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
    :func:`reguidance.priors.adm_config.unet_config_from_create_model`). ``use_checkpoint`` is ignored (activations
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
                "reguidance.priors.adm_config.unet_config_from_create_model"
            )
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("set num_heads or num_head_channels (both are -1)")
        if len(channel_mult) < 1:
            raise ValueError("channel_mult must hold at least one level")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        attn_ds = tuple(int(d) for d in attention_resolutions)
        given = {k: v for k, v in locals().items() if k in UNET_ARGS}
        #: the complete keyword arguments as :func:`unet_kwargs` writes them (``num_heads_upsample`` resolved)
        self.config: dict[str, Any] = unet_kwargs(**{**given, "attention_resolutions": attn_ds})
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


#: :class:`ADMUNet`'s keyword arguments (guided-diffusion's ``UNetModel``'s), in order
UNET_ARGS: tuple[str, ...] = tuple(inspect.signature(ADMUNet.__init__).parameters)[1:]
#: their defaults (the arguments without one, ``image_size`` .. ``attention_resolutions``, are required)
UNET_DEFAULTS: dict[str, Any] = {
    p.name: p.default
    for p in inspect.signature(ADMUNet.__init__).parameters.values()
    if p.default is not inspect.Parameter.empty
}


def unet_kwargs(**given: Any) -> dict[str, Any]:
    """:class:`ADMUNet`'s complete keyword arguments: ``given`` over :data:`UNET_DEFAULTS`, in signature order.

    The one place the UNet's keyword dict is written (the network's own record ``ADMUNet.config``, the registry,
    and the translation of guided-diffusion flags all go through it). Sequences become lists
    (``attention_resolutions`` of ints); values are not otherwise checked here (see
    :func:`reguidance.priors.adm_config.check_unet_args`). Raises :class:`InputError` for an unknown or missing
    argument.
    """
    unknown = [k for k in given if k not in UNET_ARGS]
    if unknown:
        raise InputError(f"{unknown} are not ADMUNet arguments; expected some of {', '.join(UNET_ARGS)}")
    missing = [k for k in UNET_ARGS if k not in given and k not in UNET_DEFAULTS]
    if missing:
        raise InputError(f"the ADMUNet arguments {missing} are required")
    out = {k: given[k] if k in given else UNET_DEFAULTS[k] for k in UNET_ARGS}
    out["attention_resolutions"] = [int(d) for d in out["attention_resolutions"]]
    out["channel_mult"] = list(out["channel_mult"])
    return out


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
