r"""How much memory a guided step needs, how much the machine has, and the largest batch that fits.

**What is estimated.** A DPS-type step evaluates the network and differentiates it with respect to its input:
its peak memory is the network's weights (already resident once the prior is loaded) plus, per image, the
activations autograd saves for the backward pass, plus the transient gradient buffers of that backward pass.

**How.** The activations are *counted, not guessed*: the prior's own forward runs once at batch 1 and once at
batch 2 on PyTorch's ``meta`` device (shapes only: no arithmetic, no memory, well under a second even for a
256x256 ADM), with its parameters swapped for meta tensors (:func:`torch.func.functional_call`) and a
:func:`torch.autograd.graph.saved_tensors_hooks` hook adding up the bytes of every tensor saved for backward
(each tensor once). The difference of the two is the per-image activation memory; what does not grow with the
batch (saved weights) is left out, as the weights are resident already. The estimate is

    need(B) = B * per_image * (1 + MARGIN),   MARGIN = 0.25

where the margin stands for the backward pass's transient gradient buffers and the sampler's own tensors (a few
images' worth). Activations are counted in float32 whatever ``--dtype`` is: under bf16/fp16 autocast some saved
tensors are half size, so the estimate is then an upper bound. A prior that cannot run on the meta device (an
exotic layer) gets no estimate (``None``) and the batch is left as asked.

**Available memory.** On CUDA ``torch.cuda.mem_get_info`` (free bytes on that device); on CPU ``MemAvailable``
of ``/proc/meminfo`` (Linux: memory the kernel can hand out without swapping); elsewhere unknown (``None``: no
check). Both are read after the prior has loaded, so the weights are already accounted for.

**The rule** (:func:`fit_batch`): when ``need(B)`` exceeds what is available, the batch is lowered to the
largest ``B' >= 1`` that fits, and a one-line notice says so; results do not change (every sample has its own
generators and norms, and the batch size is not part of a run's identity). When even one image does not fit,
:class:`~reguidance.conventions.InputError` says how much is needed and how much is available.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..conventions import InputError
from ..priors.base import NetworkPrior, Prior

__all__ = [
    "GENERATOR_BYTES",
    "MARGIN",
    "StepMemory",
    "available_bytes",
    "check_draws_fit",
    "check_fits_in_memory",
    "estimate_step",
    "fit_batch",
    "format_bytes",
]

#: the share added to the counted activations for backward's transient buffers and the sampler's tensors
MARGIN = 0.25
#: where Linux reports the memory available to a new process
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class StepMemory:
    """The counted activation bytes of one image (``per_image``, float32, saved for backward) and the estimate
    ``need(B) = B * per_image * (1 + MARGIN)`` of a guided step at batch ``B``."""

    per_image: int

    def need(self, batch_size: int) -> int:
        return int(batch_size * self.per_image * (1.0 + MARGIN))


def format_bytes(n: float) -> str:
    """``n`` bytes as GiB with one decimal (MiB below 1 GiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _saved_bytes(prior: Prior, batch_size: int) -> int:
    """Bytes of the tensors a forward of ``prior`` at ``batch_size`` saves for an input gradient, on meta."""
    meta = {
        name: torch.empty(t.shape, dtype=torch.float32 if t.is_floating_point() else t.dtype, device="meta")
        for name, t in [*prior.named_parameters(), *prior.named_buffers()]
    }
    seen: dict[int, Tensor] = {}  # keeps each saved tensor alive, so ids are not reused

    def pack(t: Tensor) -> Tensor:
        seen.setdefault(id(t), t)
        return t

    x = torch.zeros(batch_size, *prior.signal_shape, device="meta", requires_grad=True)
    t = torch.zeros(batch_size, dtype=torch.long, device="meta")
    network = prior if isinstance(prior, NetworkPrior) else None
    autocast = network.autocast if network is not None else None
    net = getattr(network, "_net", None)
    try:  # the plain network, without autocast or a compiled wrapper (neither runs on meta)
        if network is not None:
            network.autocast = None
            if net is not None:
                network._set_net(network.unet)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved):
            torch.func.functional_call(prior, meta, (x, t), strict=False)
    finally:
        if network is not None:
            network.autocast = autocast
            if net is not None:
                network._set_net(net)
    return sum(s.numel() * s.element_size() for s in seen.values() if s.device.type == "meta")


def estimate_step(prior: Prior) -> StepMemory | None:
    """The per-image memory of a guided step of ``prior`` (module docstring), or ``None`` where the prior's
    forward does not run on the meta device."""
    try:
        one, two = _saved_bytes(prior, 1), _saved_bytes(prior, 2)
    except Exception:  # an op without a meta kernel, or a prior that needs real values: the estimate is advisory
        return None
    return StepMemory(per_image=max(two - one, 0))


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory on ``device`` in bytes (CUDA: ``mem_get_info``; CPU: ``MemAvailable``), or ``None`` if unknown."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type != "cpu":
        return None
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits_in_memory(
    name: str, n: int, shape: tuple[int, ...] | torch.Size, *, available: int | None = None
) -> int:
    """Refuse (``InputError`` naming ``name``) a count ``n`` of float32 samples of ``shape`` that a command holds
    in memory at once (``sample --n``: every sample, then its uint8 copy: ``5 n prod(shape)`` bytes) when that
    exceeds the memory available on the CPU (:func:`available_bytes`; ``available`` overrides it). Checked by
    arithmetic before any work, so ``--n 10**15`` is refused at once instead of running for ever; returns ``n``."""
    numel = 1
    for s in shape:
        numel *= int(s)
    need = 5 * n * numel
    free = available_bytes("cpu") if available is None else available
    if free is not None and need > free:
        raise InputError(
            f"{name} {n} samples of shape {tuple(shape)} need about {format_bytes(need)} held in memory but "
            f"{format_bytes(free)} is available; ask for at most {free // (5 * numel)}"
        )
    return n


#: bytes one ``torch.Generator`` holds on the CPU (its Mersenne Twister state, 2.5 KiB, and the object), rounded up
GENERATOR_BYTES = 5 * 2**10


def check_draws_fit(
    name: str,
    k: int,
    shape: tuple[int, ...] | torch.Size,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    available: int | None = None,
) -> int:
    """Refuse (``InputError`` naming ``name``) ``k`` restorations per image (``restore --samples``,
    :func:`reguidance.wrapper.spread`) that a batch of ``batch_size`` images of ``shape`` cannot hold in the memory
    available on ``device`` (:func:`available_bytes`; ``available`` overrides it). The draws of a batch are held at
    once, twice (the K results and their stack, float32), each with its own generator per image:

        need = k * batch_size * (8 prod(shape) + GENERATOR_BYTES)

    Checked by arithmetic before any work, so ``--samples 10**9`` is refused at once instead of hanging; the
    network's own activations come on top (:func:`fit_batch`). Returns ``k``."""
    numel = 1
    for s in shape:
        numel *= int(s)
    per_draw = batch_size * (8 * numel + GENERATOR_BYTES)
    free = available_bytes(device) if available is None else available
    if free is not None and k * per_draw > free:
        most = free // per_draw
        ask = f"ask for at most {most}" if most >= 2 else "ask for fewer"
        raise InputError(
            f"{name} {k}: {k} restorations of each of {batch_size} images of shape {tuple(shape)} need about "
            f"{format_bytes(k * per_draw)} held at once but {format_bytes(free)} is available on {device}; {ask}, "
            "or a smaller --batch-size"
        )
    return k


def fit_batch(
    prior: Prior,
    batch_size: int,
    device: torch.device | str,
    *,
    available: int | None = None,
    n: int | None = None,
) -> tuple[int, str | None]:
    """The largest batch ``<= batch_size`` whose guided step fits the memory available on ``device`` (the rule in
    the module docstring), and a one-line notice when it is smaller than asked (else ``None``).

    ``n``, the number of images the run will solve (``None``: unknown), caps the batch first: a run never holds
    more than ``min(batch_size, n)`` images at once, so that is what must fit and what the notice names.
    ``available`` overrides the measured free bytes. Raises :class:`InputError` when one image does not fit.
    """
    asked = f"--batch-size {batch_size}"
    if n is not None and 1 <= n < batch_size:
        batch_size = n
        asked += f" with {n} images (one batch of {n})"
    free = available_bytes(device) if available is None else available
    step = estimate_step(prior)
    if free is None or step is None or step.need(batch_size) <= free:
        return batch_size, None
    fits = int(free // max(step.need(1), 1))
    if fits < 1:
        raise InputError(
            f"one image needs about {format_bytes(step.need(1))} for a guided step of this prior (activations "
            f"saved for the input gradient, +{MARGIN:.0%}) but only {format_bytes(free)} is available on {device}; "
            "free memory or use a machine with more of it"
        )
    return fits, (
        f"{asked} needs about {format_bytes(step.need(batch_size))} per guided step but "
        f"{format_bytes(free)} is available on {device}: running batches of {fits} instead (results do not change)"
    )
