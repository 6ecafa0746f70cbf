"""Priors: anything that predicts ``eps(x_t, t)`` on a diffusion schedule (see :mod:`reguidance.priors.base`).

- :mod:`.adm`: the guided-diffusion (ADM) UNet, reading guided-diffusion checkpoints unchanged;
- :mod:`.gmm`: exact-score Gaussian mixtures (the testbed);
- :mod:`.zoo`: the registry of known checkpoints and :func:`load_prior`.
"""

from .base import Prior, PriorOutput

__all__ = ["Prior", "PriorOutput"]
