"""Guided samplers for inverse problems: one loop (:mod:`.core`) and one file per method with its own update."""

from .core import Callback, SampleResult, StepInfo, Update, check_operator, check_problem, choose_levels, run, start
from .daps import daps
from .diffpir import diffpir
from .dps import GuidanceWarning, dps
from .pigdm import pigdm
from .reddiff import reddiff

__all__ = [
    "Callback",
    "GuidanceWarning",
    "SampleResult",
    "StepInfo",
    "Update",
    "check_operator",
    "check_problem",
    "choose_levels",
    "daps",
    "diffpir",
    "dps",
    "pigdm",
    "reddiff",
    "run",
    "start",
]
