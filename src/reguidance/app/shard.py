"""Sharding a benchmark (or ``restore`` over a folder) over processes started by ``torchrun``.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`sharded` joins the process group — NCCL when the
device is CUDA (one GPU per local rank), gloo on CPU — and yields ``(rank, world_size, device)``; each rank then
takes a disjoint, deterministic share of the ids (:func:`reguidance.bench.runner.run_bench`), and after the closing
barrier rank 0 merges the summary. Outside ``torchrun`` it yields ``(0, 1, device)`` and does nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

__all__ = ["barrier", "sharded"]


@contextmanager
def sharded(device: str = "cpu") -> Iterator[tuple[int, int, str]]:
    """``(rank, world_size, device)`` for this process; a barrier on leaving, so rank 0 can merge after it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1, device
        return
    use_cuda = device.startswith("cuda")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device
        dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (under ``torchrun``); a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
