"""Run by tests/test_reliability.py: the ``reguidance`` command with a small random network standing in for every
prior, so that kill -9 and Ctrl-C can be tried on a real process in seconds."""

import sys

import torch

import reguidance.cli as cli
from reguidance.cli import support
from reguidance.diffusion import Schedule
from reguidance.priors.adm import ADMPrior, ADMUNet


def tiny_prior(name, device, dtype, flag="--prior", **optimize):
    torch.manual_seed(0)
    unet = ADMUNet(32, 1, 32, 1, num_res_blocks=1, attention_resolutions=[], channel_mult=(1,), num_head_channels=32)
    return ADMPrior(unet, Schedule.linear()).eval().requires_grad_(False)


if __name__ == "__main__":
    support.load_prior = tiny_prior
    sys.exit(cli.main(sys.argv[1:]))
