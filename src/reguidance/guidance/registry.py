"""The methods by their CLI names, and the one place a method's options are parsed from a mapping.

``METHODS`` maps ``dps``, ``daps``, ``diffpir``, ``reddiff``, ``pigdm`` to their configs
(:class:`~reguidance.guidance.solve.Method` subclasses); :func:`method_config` builds one from ``{option: value}``
(a tuned table, a ``--method-options`` string, a benchmark's protocol), refusing an unknown method, an unknown option
or an ill-typed value with an :class:`~reguidance.conventions.InputError` that names it and lists what exists.
:func:`~reguidance.guidance.solve.options_of` is the inverse: ``method_config(m.name, options_of(m)) == m``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..conventions import InputError
from .daps import DAPS
from .diffpir import DiffPIR
from .dps import DPS
from .pigdm import PiGDM
from .reddiff import RedDiff
from .solve import ChainMethod, configure, option_names

__all__ = ["METHODS", "method_config", "method_option_names"]

#: the methods by their CLI names
METHODS: dict[str, type[ChainMethod]] = {cls.name: cls for cls in (DPS, DAPS, DiffPIR, RedDiff, PiGDM)}


def method_option_names(name: str) -> tuple[str, ...]:
    """The options of method ``name`` (its config's fields that are options, ``steps`` included)."""
    return option_names(_method_class(name))


def _method_class(name: str) -> type[ChainMethod]:
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def method_config(name: str, options: Mapping[str, object] | None = None) -> ChainMethod:
    """The config of method ``name`` with ``options`` over its reference defaults.

    Raises an InputError for an unknown method (listing the known), an unknown option (naming it and listing the
    method's options) or a value of the wrong type or out of range (naming the option and what is expected).
    """
    return configure(_method_class(name), options or {})
