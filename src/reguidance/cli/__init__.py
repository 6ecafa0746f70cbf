"""The ``reguidance`` command: wiring only (options -> checks -> library calls -> messages), one module per command
group, each owning its flags: :mod:`.bench` (bench, bench-report, demo, tune, tune-defaults), :mod:`.restore`,
:mod:`.priors` (train, train-classifier, sample, models) and :mod:`.studies` (theory, theory-sweep, speed); the
group and the error contract in :mod:`.base`, the shared flags and checks in :mod:`.support`.

The error contract (:func:`main`): a user error — :class:`reguidance.conventions.InputError`, click's usage errors,
and what a user can cause in the machine's state (``OSError``: a missing, unreadable or read-only path, a full disk;
a corrupt weights file: ``SafetensorError`` or a refused unpickle; a busy output folder) — prints ONE line on
stderr and exits with status 2. Ctrl-C prints one line and exits with 130, leaving no torn file behind. Any other
exception is a bug: it keeps its traceback (exit 1). Every command checks its options, paths, ranges, device and
output location before it loads a model or writes a file.
"""

from . import bench, priors, restore, studies  # noqa: F401  (each registers its commands on the group)
from .base import cli, main, run
from .support import DTYPE_NAMES, load_prior

__all__ = ["DTYPE_NAMES", "cli", "load_prior", "main", "run"]
