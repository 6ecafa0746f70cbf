"""Run by tests/test_bench.py under torchrun: a tiny sharded benchmark into the folder given as argv[1]."""

import sys
from pathlib import Path

import torch

from reguidance.app.shard import sharded
from reguidance.bench.runner import BenchSpec, run_bench
from reguidance.wrapper import ReGuidance
from tiny_models import tiny_adm_prior


def tiny_setup():
    prior = tiny_adm_prior()
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 32, 32, generator=g) * 2 - 1, torch.arange(8) % 10
    spec = BenchSpec(
        ["box16", "sr4"],
        ["pinv"],
        range(5),
        seed=3,
        batch_size=2,
        reguidance=ReGuidance().replace(inversion_steps=3, dps_steps=3, clip=True),
    )
    return prior, images, labels, spec


if __name__ == "__main__":
    torch.set_num_threads(1)
    prior, images, labels, spec = tiny_setup()
    with sharded("cpu") as (rank, world, _):
        run_bench(prior, images, labels, spec, Path(sys.argv[1]), rank=rank, world_size=world, progress=False)
