"""Guided samplers for inverse problems: one loop (:mod:`.core`), methods as typed configs run by one
:func:`~.solve.solve` (:mod:`.solve`), and one file per method with its own update."""

from .core import (
    Callback,
    Cost,
    SampleResult,
    StepInfo,
    Update,
    check_operator,
    check_problem,
    choose_levels,
    run,
    start,
)
from .daps import DAPS, daps
from .diffpir import DiffPIR, diffpir
from .dps import DPS, GuidanceWarning, dps
from .pigdm import PiGDM, pigdm
from .reddiff import RedDiff, reddiff
from .registry import METHODS, method_config, method_option_names
from .solve import ChainMethod, Method, Problem, options_of, solve

__all__ = [
    "DAPS",
    "DPS",
    "METHODS",
    "Callback",
    "ChainMethod",
    "Cost",
    "DiffPIR",
    "GuidanceWarning",
    "Method",
    "PiGDM",
    "Problem",
    "RedDiff",
    "SampleResult",
    "StepInfo",
    "Update",
    "check_operator",
    "check_problem",
    "choose_levels",
    "daps",
    "diffpir",
    "dps",
    "method_config",
    "method_option_names",
    "options_of",
    "pigdm",
    "reddiff",
    "run",
    "solve",
    "start",
]
