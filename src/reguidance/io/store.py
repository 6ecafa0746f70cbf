"""Where the data sets live on disk, and their caches: the data root (:func:`data_root`) and ``.npz`` files whose
bytes depend only on their arrays (:func:`write_npz`, :func:`read_npz`), shared by :mod:`.datasets` and
:mod:`.emoji`."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["data_root", "read_npz", "write_npz"]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` whose bytes depend only on ``arrays`` (fixed zip timestamps, sorted keys).

    Written to a temporary file and moved into place, so a reader never sees a partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in sorted(arrays):
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(arrays[key]), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_npz(data: bytes | Path) -> dict[str, np.ndarray]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with np.load(source, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root``, else ``$REGUIDANCE_DATA``, else ``$XDG_CACHE_HOME/reguidance/data``, else
    ``~/.cache/reguidance/data``. Nothing is created here."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("REGUIDANCE_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "reguidance" / "data"
