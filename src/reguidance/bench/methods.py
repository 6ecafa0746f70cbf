"""Compatibility re-export: the candidate-producing methods live in :mod:`reguidance.methods`."""

from ..methods import (
    METHODS,
    Candidates,
    MethodFn,
    budget_option,
    folder_method,
    get_method,
    pinv_method,
    scaled_budget,
)

__all__ = [
    "METHODS",
    "Candidates",
    "MethodFn",
    "budget_option",
    "folder_method",
    "get_method",
    "pinv_method",
    "scaled_budget",
]
