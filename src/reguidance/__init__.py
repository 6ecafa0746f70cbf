"""reguidance: make pretrained diffusion priors solve hard inverse problems (ReGuidance, arXiv 2506.10955)."""

__version__ = "0.1.0"
