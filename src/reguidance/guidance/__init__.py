"""Guided samplers for inverse problems, one file per method."""

from .dps import DPSResult, dps

__all__ = ["DPSResult", "dps"]
