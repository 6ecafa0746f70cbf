"""Compatibility re-export: sharding over ``torchrun`` processes lives in :mod:`reguidance.shard`."""

from ..shard import barrier, sharded

__all__ = ["barrier", "sharded"]
