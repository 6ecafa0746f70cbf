"""Files a run writes, written so that a crash, a full disk or Ctrl-C never leaves a torn or empty one behind.

- :func:`atomic_write_text`, :func:`atomic_write_bytes` and :func:`atomic_path` write a temporary file in the
  target's own folder and ``os.replace`` it over the target: a reader sees the old file or the new one, never a
  part. A failed write (``OSError``: a full disk, a read-only folder) removes the temporary file and re-raises.
  :func:`atomic_path` serves libraries that write a file themselves (Pillow, matplotlib, numpy): it yields the
  temporary path, which keeps the target's suffix so the library picks the same format.
- :func:`save_pngs` writes image batches as PNG files through :func:`atomic_path`.
- Row logs (``*.jsonl``): :func:`append_rows` appends whole lines in one write and syncs them to disk;
  :func:`read_rows` reads them back, ignoring a torn last line (a run killed mid-write) but refusing a row that
  lacks a required key (a file that is not a log of ours, or was edited by hand); :func:`drop_torn_tail` cuts a
  torn last line before new rows are appended.
- **Ownership.** Every file a run writes into a folder it owns (:func:`reguidance.app.runs.own_folder`) or into a
  single-file output the command declared (:func:`declare_output`) is first recorded in that folder's manifest
  ``.reguidance-manifest.jsonl`` (one JSON line per relative path, appended and synced *before* the file is
  written, so a crash never leaves a file of ours unrecorded). :func:`claim` refuses to replace an existing file
  the manifest does not list: nothing this program did not write is ever replaced, and ``--overwrite``
  (:func:`reguidance.app.runs.clear_outputs`) deletes only what the manifest lists. Temporary files are named by a
  hash of the target's name (:func:`atomic_path`), so any name the filesystem accepts can be written.

This module imports nothing from the package but :mod:`.conventions` (and :mod:`.data` for the PNG encoder).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

from torch import Tensor

from ..conventions import InputError

__all__ = [
    "MANIFEST",
    "FieldKind",
    "Manifest",
    "Record",
    "append_rows",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "claim",
    "declare_output",
    "drop_torn_tail",
    "ill_typed",
    "load_error_reason",
    "read_json_object",
    "read_rows",
    "replace_marked",
    "save_pngs",
    "torch_load_tensors",
]

#: a JSON object as read from or written to a file (a results row, a report, a summary)
Record = dict[str, Any]


#: the manifest of the files this program wrote into a folder (one ``{"path": RELATIVE}`` JSON line each)
MANIFEST = ".reguidance-manifest.jsonl"


class Manifest:
    """The files this program wrote under ``root`` (paths relative to it), read from and appended to
    ``root/.reguidance-manifest.jsonl``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.file = self.root / MANIFEST
        self.paths: set[str] = set()
        if self.file.is_file():
            for line in self.file.read_bytes().split(b"\n"):
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a torn last line (a kill mid-append): its file was never written
                if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                    self.paths.add(entry["path"])

    def relative(self, path: Path) -> str | None:
        """``path`` relative to the root (symlinks and ``..`` resolved), None when it lies outside."""
        try:
            return (path.parent.resolve() / path.name).relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None

    def __contains__(self, path: Path) -> bool:
        return self.relative(path) in self.paths

    def record(self, path: Path) -> None:
        """Append ``path`` to the manifest (synced to disk) unless it is listed already."""
        rel = self.relative(path)
        if rel is None or rel in self.paths:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(self.file)
        with self.file.open("a") as f:
            f.write(json.dumps({"path": rel}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.paths.add(rel)

    def forget_all(self) -> None:
        """Empty the manifest (after :func:`reguidance.app.runs.clear_outputs` deleted what it listed)."""
        self.paths.clear()
        if self.file.exists():
            with self.file.open("r+b") as f:
                f.truncate(0)
                os.fsync(f.fileno())


#: folders a run owns now (resolved root -> its manifest; :func:`reguidance.app.runs.own_folder`)
_OWNED: dict[Path, Manifest] = {}
#: single files a command declared as its outputs (:func:`declare_output`)
_DECLARED: set[Path] = set()


def _resolved(path: Path) -> Path:
    return path.parent.resolve() / path.name


def _owner(path: Path) -> Manifest | None:
    """The manifest that records ``path``: that of the innermost folder a run owns, else that of the folder of a
    declared single-file output; None for any other path (a temporary or internal file)."""
    target = _resolved(path)
    for parent in target.parents:
        if parent in _OWNED:
            return _OWNED[parent]
    if target in _DECLARED:
        return Manifest(target.parent)
    return None


def refuse_foreign(path: Path, flag: str | None = None) -> None:
    """``InputError`` when ``path`` exists and the manifest of its folder does not list it (a file this program
    did not write, which it must never replace)."""
    if not os.path.lexists(path):
        return
    owner = _owner(path)
    if owner is None:
        owner = Manifest(path.parent)
    if path in owner:
        return
    what = f"{flag} {path}" if flag else str(path)
    raise InputError(
        f"{what} exists and this program did not write it (it replaces only files its own manifest "
        f"{owner.file} lists); move it away or choose another name"
    )


def declare_output(path: str | os.PathLike[str], flag: str) -> None:
    """Declare the single file ``path`` an output of this command (``--json``, ``--plot``, ...), checked now,
    before any work: an existing file this program did not write is refused naming ``flag``
    (:func:`refuse_foreign`); the write then records it in its folder's manifest."""
    target = Path(path)
    refuse_foreign(target, flag)
    _DECLARED.add(_resolved(target))


def claim(path: str | os.PathLike[str]) -> None:
    """Record ``path`` in the manifest that owns it before it is written (nothing for a path no run owns);
    ``InputError`` when it exists but the manifest does not list it."""
    target = Path(path)
    owner = _owner(target)
    if owner is None or target.name.startswith(".reguidance"):  # no run owns it, or the run's own bookkeeping
        return
    if target not in owner:
        refuse_foreign(target)
        owner.record(target)


def _temporary(target: Path) -> Path:
    """A temporary name beside ``target``: a hash of its name (so it is short whatever the target's length), the
    process id, and the target's suffix (libraries pick the format from it; kept only when short)."""
    import hashlib

    digest = hashlib.sha256(target.name.encode(errors="surrogateescape")).hexdigest()[:16]
    suffix = target.suffix if len(target.suffix.encode(errors="surrogateescape")) <= 16 else ""
    return target.with_name(f".tmp-{digest}-{os.getpid()}{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on a clean exit it replaces ``path``, else it is
    removed. The parent folder is created; in a folder a run owns, ``path`` is first recorded in its manifest
    (:func:`claim`)."""
    target = Path(path)
    claim(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename); returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], obj: object) -> Path:
    """Write ``obj`` as indented JSON (with a final newline) to ``path`` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def save_pngs(x: Tensor, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Write image ``k`` of ``x: (B, C, H, W)`` in [-1, 1] to ``paths[k]`` (8-bit PNG), each file atomically."""
    from .images import save_images

    if len(paths) != x.shape[0]:
        raise ValueError(f"{len(paths)} paths for {x.shape[0]} images")
    for k, p in enumerate(paths):
        with atomic_path(p) as tmp:
            save_images(x[k : k + 1], [tmp])


def load_error_reason(exc: BaseException) -> str:
    """The part of a torch.load error that says what was wrong: for a refused pickle, the global it would have
    called (torch's long message otherwise, colour codes removed, cut to 300 characters)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    for pattern in (r"WeightsUnpickler error: (.*?\.)(\s|$)", r"(Trying to load unsupported GLOBAL \S+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    return " ".join(text.split())[:300]


def torch_load_tensors(path: str | os.PathLike[str]) -> Any:
    """What the ``.pt`` / ``.pth`` file ``path`` holds, read with ``torch.load(weights_only=True)`` on the CPU: only
    tensors and plain containers, never pickled code. Torch's warnings are kept from the user's screen; a file
    that does not read (corrupt, truncated, or a pickle that would run code) is one ``InputError`` naming it and
    saying how to re-save it."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # the refusal below says it all, in one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a corrupt, truncated or code-carrying file makes the reader raise
        raise InputError(
            f"could not read {path} with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{load_error_reason(exc)}). Only tensors and plain containers are read, never pickled code; re-save the "
            "state dict (torch.save(model.state_dict(), path) or safetensors' save_file)"
        ) from exc


def drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a run killed mid-write) so that new rows start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


#: the kinds of value a row's field may hold (:func:`read_rows`' ``fields``): ``text`` a string, ``flag`` a
#: boolean, ``integer`` an integer, ``index`` an integer >= 0, ``number`` a *finite* real number (NaN and
#: Infinity, which Python's json reads, are refused: a metric that is not a number must never be averaged)
FieldKind = Literal["text", "flag", "integer", "index", "number"]

_KIND_WORDS: dict[str, str] = {
    "text": "a string",
    "flag": "true or false",
    "integer": "an integer",
    "index": "an integer >= 0",
    "number": "a finite number",
}


def _fits(value: object, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "flag":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind in ("integer", "index"):
        return isinstance(value, int) and (kind == "integer" or value >= 0)
    return isinstance(value, (int, float)) and math.isfinite(value)


def ill_typed(row: Mapping[str, object], fields: Mapping[str, FieldKind]) -> str | None:
    """What is wrong with ``row``'s fields (``'"id" is 'zero', expected an integer >= 0'``), or None when every
    field of ``fields`` it holds is of its kind (fields it lacks are not checked here)."""
    for key, kind in fields.items():
        if key in row and not _fits(row[key], kind):
            return f"{key!r} is {row[key]!r}, expected {_KIND_WORDS[kind]}"
    return None


def read_rows(
    path: Path, required: Sequence[str] = (), fields: Mapping[str, FieldKind] | None = None
) -> list[dict[str, object]]:
    """The JSON rows of the log ``path`` ([] if it does not exist). A torn *last* line is ignored; any other line
    that is not a JSON object holding every key of ``required``, or whose fields are not of the kinds ``fields``
    gives them (:func:`ill_typed`: an id ``"zero"``, a metric ``NaN``), is an ``InputError`` naming the file and
    line."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    lines.pop()  # b"" after a final newline, else a line a kill cut short: not written yet
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            row = None
        missing = [k for k in required if k not in row] if isinstance(row, dict) else list(required)
        wrong = ill_typed(row, fields or {}) if isinstance(row, dict) and not missing else None
        if not isinstance(row, dict) or missing or wrong:
            what = f"lacks {', '.join(missing)}" if isinstance(row, dict) else "is not a JSON object"
            what = wrong or what
            raise InputError(
                f"{path}, line {number}, {what}: the file is not a complete log of this program (edited or "
                "corrupt); move it away, or rerun with --overwrite"
            )
        rows.append(row)
    return rows


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json_object(path: str | os.PathLike[str], required: Sequence[str] = ()) -> Record:
    """The JSON object in the file ``path``, holding every key of ``required``; anything else (a missing or
    unreadable file, invalid JSON, ``NaN`` or ``Infinity``, another JSON type, a missing key) is an ``InputError``
    naming the file, so that a command blames the file that is broken, not the flag it was reached through."""
    file = Path(path)
    try:
        obj = json.loads(file.read_text(), parse_constant=_no_constant)
    except OSError as err:
        raise InputError(f"{file}: cannot be read ({err.strerror or err})") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{file} is not valid JSON ({' '.join(str(err).split())}); was it edited by hand?") from err
    if not isinstance(obj, dict):
        raise InputError(f"{file} holds a JSON {type(obj).__name__}; expected an object")
    missing = [k for k in required if k not in obj]
    if missing:
        raise InputError(f"{file} lacks {', '.join(missing)}: it was not written by this program, or was edited")
    return obj


def append_rows(log: IO[str], rows: Sequence[Mapping[str, object]]) -> None:
    """Append ``rows`` to the open log ``log`` as JSON lines in one write, flushed and synced to disk."""
    log.write("".join(json.dumps(r) + "\n" for r in rows))
    log.flush()
    os.fsync(log.fileno())


def replace_marked(
    path: str | os.PathLike[str], text: str, begin: str = "<!-- tables:begin -->", end: str = "<!-- tables:end -->"
) -> None:
    """Replace what lies between the ``begin`` and ``end`` markers of the file ``path`` (the prose around generated
    tables stays), atomically; an InputError if the markers are missing or out of order."""
    doc = check_marked(path, begin, end)
    head, rest = doc.split(begin, 1)
    _write_edit(Path(path), head + begin + "\n" + text.rstrip("\n") + "\n" + end + rest.split(end, 1)[1])


def check_marked(
    path: str | os.PathLike[str], begin: str = "<!-- tables:begin -->", end: str = "<!-- tables:end -->"
) -> str:
    """The text of ``path``, which holds ``begin`` before ``end`` (an ``InputError`` naming both otherwise): checked
    for every file a command edits before it edits the first."""
    doc = Path(path).read_text()
    if begin not in doc or end not in doc or doc.index(begin) > doc.index(end):
        raise InputError(f"{path} needs the markers {begin} and {end}, in that order")
    return doc


def _write_edit(path: Path, text: str) -> None:
    """Replace the user's own file ``path`` by ``text`` atomically without recording it in a manifest (an edit of
    a file that stays the user's: only :func:`replace_marked` calls it)."""
    tmp = _temporary(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_section(path: str | os.PathLike[str] | None, name: str, text: str) -> None:
    """A script's generated table: printed when ``path`` is None, else written between ``<!-- NAME:begin -->`` and
    ``<!-- NAME:end -->`` of that file (:func:`replace_marked`)."""
    if path is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    replace_marked(path, text, f"<!-- {name}:begin -->", f"<!-- {name}:end -->")
    print(f"wrote {name} into {path}")
