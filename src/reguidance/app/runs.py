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
- **Ownership.** A run writes only into a new or empty folder or one a run of the same *kind* made
  (``bench``, ``restore``, ``demo``, ``tune``, ``train``, ...): :func:`own_folder` writes the marker
  ``.reguidance-run.json`` (``{"kind": ...}``) and, while held, records every file written under the folder in
  its manifest before writing it (:class:`reguidance.io.files.Manifest`); an existing file the manifest does not
  list is never replaced. :func:`check_output_folder` is the same test without touching anything, for the
  commands' checks before any work. A folder an older version wrote (no marker) is recognised by its
  ``config.json`` (:func:`legacy_kind`) and adopted.
- **Inputs apart from outputs.** :func:`check_apart` refuses an output path that is, contains or lies inside an
  input path (symlinks and ``..`` resolved), naming both flags.
- **Start afresh.** :func:`clear_outputs` deletes the files the folder's manifest lists (and folders left empty
  by that), nothing else; the commands call it for ``--overwrite``.
- **One protocol for both commands.** :class:`RunFolder` is the folder of one run of ``bench`` (``results*.jsonl``)
  or ``restore`` (``restore*.jsonl``): it holds the lock, clears it on ``overwrite``, drops a torn last line,
  reads the rows done, refuses rows made with other settings (naming the difference) and appends new rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from ..conventions import InputError

if TYPE_CHECKING:
    from ..io.files import FieldKind

__all__ = [
    "MARKER",
    "FolderBusyError",
    "RunFolder",
    "check_apart",
    "check_output_folder",
    "clear_outputs",
    "describe_difference",
    "hold_folder",
    "identity_hash",
    "known_signal_shape",
    "legacy_kind",
    "marked_kind",
    "own_folder",
    "path_inputs",
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
    from ..io.hashing import sha256_file
    from ..priors.zoo import MODELS, find_checkpoint

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
            from ..priors.diffusers import WEIGHTS, find_diffusers_files

            files = find_diffusers_files(path)
            weights = files[0] / WEIGHTS if files is not None else None
            digest = sha256_file(weights) if weights is not None and weights.is_file() else None
        elif path.is_file():
            digest = sha256_file(path)
    facts: dict[str, object] = {"prior": name, "prior_sha256": digest, "dtype": dtype}
    if config is not None:
        facts["prior_config_sha256"] = sha256_file(Path(config).expanduser())
    return facts


def trained_facts(prior_name: str) -> dict[str, Any] | None:
    """The ``model.json`` of a folder ``reguidance train`` wrote (a prior :func:`reguidance.priors.load_prior`
    reads), or None when ``prior_name`` is not such a folder."""
    from ..io.files import read_json_object

    path = Path(prior_name).expanduser() / "model.json"
    if not path.is_file():
        return None
    facts = read_json_object(path)
    return facts if str(facts.get("format", "")).startswith("reguidance-trained-prior/") else None


def known_signal_shape(prior_name: str) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a known model or a trained folder, read from its configuration without loading it; None
    for a checkpoint file (its shape is known once it loads)."""
    from ..priors.zoo import MODELS

    entry = MODELS.get(prior_name)
    trained = trained_facts(prior_name) if entry is None else None
    if entry is None and trained is None:
        return None
    config = entry.unet_config() if entry is not None else dict(trained["unet"])  # type: ignore[index]
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


#: the marker of a folder a run owns: ``{"program": "reguidance", "kind": KIND}``
MARKER = ".reguidance-run.json"

#: what older versions (before the marker) wrote, by kind: adopted into the manifest of such a folder
LEGACY_OUTPUTS: Mapping[str, Sequence[str]] = {
    "bench": (
        "results*.jsonl", "config.json", "manifest.json", "summary.json", "summary.md", "tradeoff.png", "demo.png",
        "images/**/*.png", "grids/**/*.png",
    ),
    "restore": ("restore*.jsonl", "config.json", "report.json", "restored/*.png", "candidate/*.png",
                "measurement/*.png", "std/*.png"),
}  # fmt: skip


def _bookkeeping(name: str) -> bool:
    """The run's own files (marker, manifest, locks): never the user's, never listed as outputs."""
    return name.startswith(".reguidance")


def legacy_kind(path: Path) -> str | None:
    """The kind of a folder an older version wrote (no marker), told by its ``config.json``: ``"bench"`` when it is
    a JSON object with ``"protocol"`` and a list ``"runs"`` beside a ``results*.jsonl``; ``"restore"`` when it holds
    ``"identity"`` and ``"facts"`` beside a ``restore*.jsonl``; else None."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    if "protocol" in config and isinstance(config.get("runs"), list) and any(path.glob("results*.jsonl")):
        return "bench"
    if "identity" in config and "facts" in config and any(path.glob("restore*.jsonl")):
        return "restore"
    return None


def marked_kind(path: Path) -> str | None:
    """The kind of run (``"bench"``, ``"tune"``, ...) whose marker ``path`` holds; None without a readable one."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    kind = marker.get("kind") if isinstance(marker, dict) else None
    return str(kind) if kind is not None else "unknown"


def check_output_folder(path: Path, kind: str, flag: str = "--out") -> None:
    """Refuse, before any work and without touching anything, an output folder a ``kind`` run may not write into:
    one a run of another kind made (its marker, or an older version's ``config.json``), or one that holds files
    while no run made it. A new or empty folder, or one of ``kind``'s own runs, passes."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{flag} {path} is a file; expected a folder")
    found = marked_kind(path) if (path / MARKER).exists() else legacy_kind(path)
    if found == kind:
        return
    if found is not None:
        raise InputError(
            f"{flag} {path} holds the output of `reguidance {found}`; `reguidance {kind}` writes only into a new or "
            f"empty folder or one of its own runs: choose another {flag}"
        )
    others = sorted(p.name for p in path.iterdir() if not _bookkeeping(p.name))
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise InputError(
            f"{flag} {path} holds files no reguidance run wrote ({', '.join(others[:3])}{more}); a run writes only "
            f"into a new or empty folder or one of its own, and never replaces a file it did not write: choose "
            f"another {flag}"
        )


_OWN_COUNT: dict[Path, int] = {}


@contextmanager
def own_folder(path: Path, kind: str, rank: int = 0, flag: str = "--out") -> Iterator[None]:
    """Hold ``path``'s lock (:func:`hold_folder`) and own it for the block: rank 0 checks it
    (:func:`check_output_folder`), adopts an older version's outputs into the manifest and writes the marker;
    every rank records the files it writes under ``path`` in the manifest (:func:`reguidance.io.files.claim`).
    Re-entrant in a process."""
    from ..io.files import _OWNED, Manifest

    path = Path(path)
    if rank == 0 and path.resolve() not in _OWN_COUNT:
        check_output_folder(path, kind, flag)  # before the lock file is made in a folder that is not ours
    with hold_folder(path, rank):
        root = path.resolve()
        if root not in _OWN_COUNT:
            manifest = Manifest(path)
            if rank == 0:
                check_output_folder(path, kind, flag)
                if not (path / MARKER).exists():
                    for pattern in LEGACY_OUTPUTS.get(kind, ()) if legacy_kind(path) == kind else ():
                        for p in sorted(path.glob(pattern)):
                            if p.is_file():
                                manifest.record(p)
                    text = json.dumps({"program": "reguidance", "kind": kind}) + "\n"
                    (path / MARKER).write_text(text)
            _OWNED[root] = manifest
        _OWN_COUNT[root] = _OWN_COUNT.get(root, 0) + 1
        try:
            yield
        finally:
            _OWN_COUNT[root] -= 1
            if _OWN_COUNT[root] == 0:
                del _OWN_COUNT[root]
                _OWNED.pop(root, None)


def clear_outputs(out: Path) -> list[Path]:
    """Delete the files ``out``'s manifest lists (and the folders that leaves empty); nothing else, whoever wrote
    it. Returns what went."""
    from ..io.files import Manifest

    manifest = Manifest(out)
    gone: list[Path] = []
    for rel in sorted(manifest.paths):
        p = out / rel
        if manifest.relative(p) != rel:  # a folder on its way became a link elsewhere: not ours to delete
            continue
        if p.is_symlink() or p.is_file():
            p.unlink()
            gone.append(p)
    root = out.resolve()
    for folder in sorted({p.parent for p in gone}, key=lambda q: len(q.parts), reverse=True):
        while folder.resolve() != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    manifest.forget_all()
    from ..io.files import _OWNED

    if root in _OWNED:  # the run that owns the folder now records afresh what it writes
        _OWNED[root].paths.clear()
    return gone


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def check_apart(outputs: Mapping[str, Path | None], inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Refuse, before any work, an output path that is, contains or lies inside an input path (symlinks and ``..``
    resolved): an ``InputError`` naming both flags and paths. Keys are the flags the user typed."""
    for out_flag, out in outputs.items():
        if out is None:
            continue
        o = _real(out)
        for in_flag, given in inputs.items():
            if given is None:
                continue
            i = _real(given)
            how = "is" if o == i else "contains" if o in i.parents else "lies inside" if i in o.parents else None
            if how is not None:
                raise InputError(
                    f"{out_flag} {out} {how} the input {in_flag} {given}; a run never writes over its inputs: choose "
                    f"an {out_flag} apart from them"
                )


def path_inputs(
    prior: str | None = None,
    prior_config: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    tasks: Sequence[str] = (),
    methods: Sequence[str] = (),
) -> dict[str, str | os.PathLike[str] | None]:
    """The file inputs behind the shared flags, by flag: ``--prior`` (when it names a path, not a known model),
    ``--prior-config``, ``--checkpoint-dir``, each ``mask:PATH`` task and each ``folder:PATH`` method."""
    from ..priors.zoo import MODELS

    found: dict[str, str | os.PathLike[str] | None] = {
        "--prior": prior if prior is not None and prior not in MODELS and prior.strip() else None,
        "--prior-config": prior_config,
        "--checkpoint-dir": checkpoint_dir,
    }
    for t in tasks:
        if t.strip().startswith("mask:"):
            found[f"--task {t.strip()}"] = t.strip()[len("mask:") :]
    for m in methods:
        if m.strip().startswith("folder:"):
            found[f"--methods {m.strip()}"] = m.strip()[len("folder:") :]
    return found


class RunFolder:
    """The output folder of one run: its lock, its rows (``<stem>.jsonl``, or ``<stem>.rank<r>.jsonl`` for rank
    ``r`` of ``world_size`` processes), its ``config.json``.

    Use :meth:`open` around the whole run; rows are refused with :meth:`refuse_other_settings` and added with
    :meth:`append` (one ``write`` per call: the benchmark appends each variant of a batch as it is done).
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
        kind: str | None = None,
    ) -> None:
        self.path, self.stem, self.row_keys = Path(path), stem, tuple(row_keys)
        self.rank, self.world_size = rank, world_size
        #: the kinds of the rows' fields (:func:`reguidance.io.files.read_rows`): a row with another is refused
        self.fields = dict(fields or {})
        #: the marker's kind (``bench`` for ``results`` rows, ``restore`` for ``restore`` rows by default)
        self.kind = kind or {"results": "bench"}.get(stem, stem)

    @property
    def log(self) -> Path:
        """This process's rows file."""
        name = f"{self.stem}.jsonl" if self.world_size == 1 else f"{self.stem}.rank{self.rank}.jsonl"
        return self.path / name

    @contextmanager
    def open(self, overwrite: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Own the folder for the block (:func:`own_folder`: its lock, its marker, the manifest of what it writes);
        with ``overwrite`` rank 0 first deletes what the manifest lists (:func:`clear_outputs`); after a barrier
        (every rank, under ``torchrun``) this rank's torn last line is dropped.
        Yields the rows of every process's file."""
        from ..io.files import claim, drop_torn_tail
        from .shard import barrier

        with own_folder(self.path, self.kind, self.rank):
            if overwrite and self.rank == 0:
                clear_outputs(self.path)
            barrier()  # under torchrun: no rank reads the folder before rank 0 has cleared it
            if self.rank != 0 and overwrite:  # rank 0 emptied the manifest: this rank reads it afresh
                from ..io.files import _OWNED, Manifest

                _OWNED[self.path.resolve()] = Manifest(self.path)
            claim(self.log)
            drop_torn_tail(self.log)  # a run killed mid-write: new rows must start on a fresh line
            yield self.rows()

    def rows(self) -> list[dict[str, Any]]:
        """The rows of every process's file (a torn last line ignored; a row without ``row_keys``, or with a field
        not of its kind in ``fields``, refused naming the file and line)."""
        from ..io.files import read_rows

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
        """Write ``config.json`` atomically (recorded in the manifest while the folder is owned)."""
        from ..io.files import atomic_write_json

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
        from ..io.files import append_rows

        append_rows(log, rows)
