"""Priors: anything that predicts ``eps(x_t, t)`` on a diffusion schedule (see :mod:`reguidance.priors.base`).

Conventions: ``x_t`` (B, C, H, W) on the [-1, 1] image scale, ``t`` (B,) the integer timesteps of the chain the
network was trained on (0 .. T-1, T = 1000 for the published checkpoints).

- :mod:`.adm`: the guided-diffusion (ADM) UNet, reading guided-diffusion checkpoints unchanged, and its prior;
- :mod:`.adm_config`: the one translator of guided-diffusion's flags (and of a checkpoint's keys and shapes) into
  the UNet's keyword arguments;
- :mod:`.diffusers`: a diffusers ``UNet2DModel`` folder with its DDPM / DDIM scheduler (optional extra);
- :mod:`.gmm`: exact-score Gaussian mixtures (the testbed);
- :mod:`.zoo`: the registry of known models (names, files, checksums, configurations);
- :mod:`.loading`: :func:`load_prior`, the one entry point that loads a prior from a name, a checkpoint file
  (with an optional config) or a diffusers folder, with every check on the way.
"""

from .adm import ADMPrior, ADMUNet
from .base import NetworkPrior, Prior, PriorOutput
from .diffusers import DiffusersPrior
from .loading import PriorNotFoundError, load_prior, random_prior
from .zoo import list_models

__all__ = [
    "ADMPrior",
    "ADMUNet",
    "DiffusersPrior",
    "NetworkPrior",
    "Prior",
    "PriorNotFoundError",
    "PriorOutput",
    "list_models",
    "load_prior",
    "random_prior",
]
