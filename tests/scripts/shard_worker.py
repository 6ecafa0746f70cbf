"""Run by tests/test_bench.py under torchrun: a tiny sharded benchmark into the folder given as argv[1]."""

import sys
from pathlib import Path
from typing import Any

import torch

from reguidance.bench.runner import BenchSpec, run_bench
from reguidance.diffusion import Schedule
from reguidance.priors.adm import ADMPrior, ADMUNet
from reguidance.shard import sharded
from reguidance.wrapper import ReGuidanceConfig

TINY_UNET: dict[str, Any] = {
    "image_size": 32,
    "in_channels": 1,
    "model_channels": 32,
    "out_channels": 1,
    "num_res_blocks": 1,
    "attention_resolutions": [],
    "channel_mult": (1, 2),
    "num_head_channels": 32,
}


def tiny_setup():
    torch.manual_seed(0)
    prior = ADMPrior(ADMUNet(**TINY_UNET), Schedule.linear()).eval()
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 32, 32, generator=g) * 2 - 1, torch.arange(8) % 10
    spec = BenchSpec(
        ["box16", "sr4"],
        ["pinv"],
        range(5),
        seed=3,
        batch_size=2,
        reguidance=ReGuidanceConfig(inversion_steps=3, dps_steps=3, clip=True),
    )
    return prior, images, labels, spec


if __name__ == "__main__":
    torch.set_num_threads(1)
    prior, images, labels, spec = tiny_setup()
    with sharded("cpu") as (rank, world, _):
        run_bench(prior, images, labels, spec, Path(sys.argv[1]), rank=rank, world_size=world, progress=False)
