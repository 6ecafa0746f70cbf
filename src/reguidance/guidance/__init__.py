"""Guided samplers for inverse problems, one file per method."""

from .daps import DAPSResult, daps
from .diffpir import DiffPIRResult, diffpir
from .dps import DPSResult, dps
from .linalg import conjugate_gradient, solve_proximal
from .pigdm import PiGDMResult, pigdm
from .reddiff import REDDiffResult, reddiff

__all__ = [
    "DAPSResult",
    "DPSResult",
    "DiffPIRResult",
    "PiGDMResult",
    "REDDiffResult",
    "conjugate_gradient",
    "daps",
    "diffpir",
    "dps",
    "pigdm",
    "reddiff",
    "solve_proximal",
]
