"""Compatibility re-export: tasks, their spec grammar and the per-image random streams live in
:mod:`reguidance.tasks` (the library, not the benchmark, owns them)."""

from ..tasks import (
    DEFAULT_SIGMA_Y,
    GRAMMAR,
    PRESETS,
    TASKS,
    Task,
    get_task,
    method_rng,
    motion_kernel,
    parse_ids,
    parse_task,
    split_tasks,
    stream_rng,
    wrapper_rng,
)

__all__ = [
    "DEFAULT_SIGMA_Y",
    "GRAMMAR",
    "PRESETS",
    "TASKS",
    "Task",
    "get_task",
    "method_rng",
    "motion_kernel",
    "parse_ids",
    "parse_task",
    "split_tasks",
    "stream_rng",
    "wrapper_rng",
]
