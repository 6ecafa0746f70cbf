"""Random-weight stand-ins shared by the tests: the guided-diffusion UNet (``ADMUNet``, the architecture of
``ffhq_10m.pt``) shrunk to one-channel ``image_size`` x ``image_size`` images, two resolutions, one residual block
each and no attention, on the 1000-step linear chain. Its outputs mean nothing; the tests that use it check the
machinery around a network (batching, sharding, files, options), never what a trained prior would produce."""

from typing import Any

import torch

from reguidance.diffusion import Schedule
from reguidance.priors.adm import ADMPrior, ADMUNet


def tiny_unet_config(image_size: int = 32) -> dict[str, Any]:
    """The keyword arguments of a tiny ``ADMUNet`` on ``(1, image_size, image_size)`` images."""
    return {
        "image_size": image_size,
        "in_channels": 1,
        "model_channels": 32,
        "out_channels": 1,
        "num_res_blocks": 1,
        "attention_resolutions": [],
        "channel_mult": (1, 2),
        "num_head_channels": 32,
    }


def tiny_adm_prior(image_size: int = 32, seed: int = 0) -> ADMPrior:
    """A tiny ``ADMPrior`` in eval mode whose weights are drawn after ``torch.manual_seed(seed)``: the same
    network in every test and every process that asks for the same size and seed."""
    torch.manual_seed(seed)
    return ADMPrior(ADMUNet(**tiny_unet_config(image_size)), Schedule.linear()).eval()
