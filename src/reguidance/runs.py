"""A run's identity and the ownership of its output folder.

- **Identity.** :func:`identity_hash` is the sha256 (16 hex digits) of the canonical JSON of everything that
  determines a result: the prior (name and file sha256), the network's dtype, the task's definition, the method
  and its options, the wrapper's options, the seed and the protocol. Every row a run writes carries it; a rerun
  reuses a row only when the hash it would give that row is the same, so a changed seed or option is never
  answered with old numbers. Batch size, thread count and device are left out: they do not change the draws
  (see :mod:`.conventions` for the float tolerance they do change).
- **One writer per folder.** :func:`hold_folder` takes an advisory lock (``filelock``, released by the OS even
  after ``kill -9``) on ``<folder>/.reguidance.lock``; a second process is refused at once with a clear message.
  Under ``torchrun`` rank 0 holds the folder's lock and rank ``r > 0`` its own ``.reguidance.rank<r>.lock``, so a
  second sharded or single-process run into the same folder is refused through rank 0.
- **Start afresh.** :func:`clear_outputs` deletes what a run wrote into a folder (and nothing else); the
  commands call it for ``--overwrite``.
- **One protocol for both commands.** :class:`RunFolder` is the folder of one run of ``bench`` (``results*.jsonl``)
  or ``restore`` (``restore*.jsonl``): it holds the lock, clears it on ``overwrite``, drops a torn last line,
  reads the rows done, refuses rows made with other settings (naming the difference) and appends new rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from .conventions import InputError

if TYPE_CHECKING:
    from .files import FieldKind

__all__ = [
    "FolderBusyError",
    "RunFolder",
    "clear_outputs",
    "describe_difference",
    "hold_folder",
    "identity_hash",
    "known_signal_shape",
    "prior_facts",
]


class FolderBusyError(InputError):
    """Another process holds the output folder's lock."""


def identity_hash(facts: Mapping[str, object]) -> str:
    """16 hex digits of the sha256 of ``facts`` as canonical JSON (sorted keys; tuples as lists)."""
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_difference(old: Mapping[str, object], new: Mapping[str, object], limit: int = 4) -> str:
    """``"seed: 0 in the folder, 1 now; ..."`` for the top-level keys where two fact sets differ."""
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {old.get(k)!r} in the folder, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def prior_facts(
    name: str,
    dtype: str,
    *,
    config: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> dict[str, object]:
    """What identifies a prior in a run: ``{"prior", "prior_sha256", "dtype"}``, plus ``"prior_config_sha256"``
    when a config file is given (``--prior-config``: it can change the network built from the same weights).

    ``prior_sha256`` is the recorded sha256 of a known model (checked when it loads), else the sha256 of the file
    that holds the weights: the checkpoint file itself, or for a diffusers folder its
    ``diffusion_pytorch_model.safetensors`` (a missing file gives ``None``; loading it then fails). For a known
    checkpoint without a recorded sha256, the file found in ``checkpoint_dir`` (then the usual folders) is hashed.
    """
    from .hashing import sha256_file
    from .priors.zoo import MODELS, find_checkpoint

    digest: str | None = None
    entry = MODELS.get(name)
    if entry is not None:
        digest = entry.sha256
        if digest is None:
            found = find_checkpoint(entry, checkpoint_dir)
            digest = sha256_file(found) if found is not None else None
    else:
        path = Path(name).expanduser()
        if path.is_dir():
            from .priors.diffusers import WEIGHTS, find_diffusers_files

            files = find_diffusers_files(path)
            weights = files[0] / WEIGHTS if files is not None else None
            digest = sha256_file(weights) if weights is not None and weights.is_file() else None
        elif path.is_file():
            digest = sha256_file(path)
    facts: dict[str, object] = {"prior": name, "prior_sha256": digest, "dtype": dtype}
    if config is not None:
        facts["prior_config_sha256"] = sha256_file(Path(config).expanduser())
    return facts


def known_signal_shape(prior_name: str) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a known model, read from its configuration without loading it; None for a file."""
    from .priors.zoo import MODELS

    entry = MODELS.get(prior_name)
    if entry is None:
        return None
    config = entry.unet_config()
    size = int(config["image_size"])
    return int(config["in_channels"]), size, size


_HELD: dict[Path, tuple[FileLock, int]] = {}


@contextmanager
def hold_folder(out: Path, rank: int = 0) -> Iterator[None]:
    """Hold ``out``'s writer lock (rank 0) or rank ``rank``'s own lock for the block; re-entrant in a process.

    Raises :class:`FolderBusyError` at once when another process holds it. Creates ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = (out / (".reguidance.lock" if rank == 0 else f".reguidance.rank{rank}.lock")).resolve()
    if path in _HELD:
        lock, count = _HELD[path]
        _HELD[path] = (lock, count + 1)
    else:
        lock = FileLock(path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise FolderBusyError(
                f"another reguidance process is writing into {out} (it holds {path.name}); wait for it to finish "
                "or choose another --out"
            ) from None
        _HELD[path] = (lock, 1)
    try:
        yield
    finally:
        lock, count = _HELD[path]
        if count == 1:
            del _HELD[path]
            lock.release()
        else:
            _HELD[path] = (lock, count - 1)


#: what the commands write into an output folder (``--overwrite`` deletes exactly these)
OUTPUTS: Sequence[str] = (
    "results*.jsonl",
    "restore*.jsonl",
    "config.json",
    "report.json",
    "summary.json",
    "summary.md",
    "tradeoff.png",
    "demo.png",
    "report.html",
    "grid.png",
    "images",
    "grids",
    "restored",
    "candidate",
    "measurement",
    "truth",
    "std",
)


def clear_outputs(out: Path) -> list[Path]:
    """Delete what the commands wrote into ``out`` (:data:`OUTPUTS`; other files stay); returns what went."""
    gone = []
    for pattern in OUTPUTS:
        for p in sorted(out.glob(pattern)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                os.unlink(p)
            gone.append(p)
    return gone


class RunFolder:
    """The output folder of one run: its lock, its rows (``<stem>.jsonl``, or ``<stem>.rank<r>.jsonl`` for rank
    ``r`` of ``world_size`` processes), its ``config.json``.

    Use :meth:`open` around the whole run; rows are refused with :meth:`refuse_other_settings` and added with
    :meth:`append` (one ``write`` per batch, so a kill loses at most the batch in flight).
    """

    def __init__(
        self,
        path: Path,
        stem: str,
        row_keys: Sequence[str],
        *,
        rank: int = 0,
        world_size: int = 1,
        fields: Mapping[str, FieldKind] | None = None,
    ) -> None:
        self.path, self.stem, self.row_keys = Path(path), stem, tuple(row_keys)
        self.rank, self.world_size = rank, world_size
        #: the kinds of the rows' fields (:func:`reguidance.files.read_rows`): a row with another is refused
        self.fields = dict(fields or {})

    @property
    def log(self) -> Path:
        """This process's rows file."""
        name = f"{self.stem}.jsonl" if self.world_size == 1 else f"{self.stem}.rank{self.rank}.jsonl"
        return self.path / name

    @contextmanager
    def open(self, overwrite: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Hold the folder's lock (:func:`hold_folder`) for the block; with ``overwrite`` rank 0 first deletes what
        a run wrote there (:func:`clear_outputs`); after a barrier (every rank, under ``torchrun``) this rank's
        torn last line is dropped. Yields the rows of every process's file."""
        from .files import drop_torn_tail
        from .shard import barrier

        with hold_folder(self.path, self.rank):
            if overwrite and self.rank == 0:
                clear_outputs(self.path)
            barrier()  # under torchrun: no rank reads the folder before rank 0 has cleared it
            drop_torn_tail(self.log)  # a run killed mid-write: new rows must start on a fresh line
            yield self.rows()

    def rows(self) -> list[dict[str, Any]]:
        """The rows of every process's file (a torn last line ignored; a row without ``row_keys``, or with a field
        not of its kind in ``fields``, refused naming the file and line)."""
        from .files import read_rows

        paths = sorted(self.path.glob(f"{self.stem}*.jsonl"))
        return [row for p in paths for row in read_rows(p, self.row_keys, self.fields)]

    def config(self) -> dict[str, Any] | None:
        """``config.json`` as written by the run, or None if missing or unreadable."""
        try:
            config = json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return config if isinstance(config, dict) else None

    def write_config(self, config: Mapping[str, object]) -> None:
        """Write ``config.json`` atomically."""
        from .files import atomic_write_json

        atomic_write_json(self.path / "config.json", config)

    def refuse_other_settings(
        self,
        rows: Sequence[Mapping[str, Any]],
        identity: Callable[[Mapping[str, Any]], str],
        facts: Callable[[Mapping[str, Any]], Mapping[str, object]],
        recorded: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, object]],
        subject: Callable[[Mapping[str, Any]], str],
        fallback: str,
    ) -> None:
        """``InputError`` for the first row whose ``run`` is not ``identity(row)``: it names ``subject(row)`` and
        the difference between the facts ``recorded(config, row)`` read from ``config.json`` and ``facts(row)``
        now (``fallback`` when they cannot be read or do not differ)."""
        for row in rows:
            if row.get("run") == identity(row):
                continue
            config = self.config()
            try:
                old = recorded(config, row) if config is not None else {}
            except (KeyError, TypeError, StopIteration):
                old = {}
            why = (describe_difference(old, facts(row)) if old else "") or (
                f"{fallback}: a row carries identity {row.get('run')!r} but these settings give "
                f"{identity(row)!r}, and config.json does not say what made it"
            )
            raise InputError(
                f"{self.path} holds {subject(row)} made with other settings ({why}); choose another --out, or pass "
                "--overwrite to discard them"
            )

    def append(self, log: IO[str], rows: Sequence[Mapping[str, object]]) -> None:
        """Append ``rows`` to the open rows file ``log`` in one write."""
        from .files import append_rows

        append_rows(log, rows)
