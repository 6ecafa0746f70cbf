"""The benchmark's records: the row type, the results files and a row's variant (the leaf of :mod:`reguidance.bench`).

A results row is one JSON object per image and *variant* in ``results.jsonl`` (``results.rank<r>.jsonl`` for rank
``r`` of a sharded run); every row holds :data:`ROW_KEYS`. Every other module of the benchmark reads rows through
this one, which imports nothing of the benchmark.

Which SSIM a row holds. Rows written since the standard SSIM carry ``ssim`` (the standard,
:func:`reguidance.evaluation.metrics.ssim`), ``ssim_padded`` (torchmetrics' variant) and ``ssim_kind`` (=
:data:`reguidance.evaluation.metrics.SSIM_KIND`). A row without ``ssim_kind`` was written before: its ``ssim`` is the
padded variant, and :func:`read_results` returns it as ``ssim_padded`` with no ``ssim``, so no reader can mix it with
the standard one or report it as such; a row naming another kind is refused.
"""

from __future__ import annotations

from pathlib import Path

from ..conventions import InputError
from ..evaluation.metrics import SSIM_KIND
from ..io.files import FieldKind, Record, read_rows

__all__ = [
    "ABLATIONS",
    "ROW_FIELDS",
    "ROW_KEYS",
    "VARIANTS",
    "Record",
    "Row",
    "read_all_results",
    "read_results",
    "results_path",
    "safe_name",
    "upgrade_row",
    "variant_of",
]

#: a results row: a JSON object (:data:`reguidance.io.files.Record`, the type of every record the benchmark reads)
Row = Record

#: the keys every results row holds (a row without them is refused by the reader)
ROW_KEYS = ("task", "method", "reguidance", "id")
#: the kinds of a row's fields, checked when rows are read (:func:`reguidance.io.files.read_rows`): an id that is not
#: an integer, or a metric that is NaN or infinite, is refused naming the file and line, never summarised
ROW_FIELDS: dict[str, FieldKind] = {
    "task": "text",
    "method": "text",
    "variant": "text",
    "reguidance": "flag",
    "id": "index",
    "psnr": "number",
    "ssim": "number",
    "ssim_padded": "number",
    "ssim_kind": "text",
    "lpips": "number",
    "consistency": "number",
    "consistency_raw": "number",
    "reward": "number",
    "fit_z": "number",
    "fit_p": "number",
    "fit_dof": "index",
    "confidence": "number",
    "knn_dist": "number",
    "label": "integer",
    "pred": "integer",
    "nfe": "index",
    "sec_per_image": "number",
    "peak_mem_mb": "number",
    "run": "text",
}
#: the variants a row can be (``variant``; rows without one are ``reguidance`` if ``reguidance`` else ``candidate``)
VARIANTS = ("candidate", "reguidance", "renoise", "fresh", "more")
#: the ablation variants ``ablations=True`` adds
ABLATIONS = ("renoise", "fresh", "more")


def upgrade_row(row: Row, where: str = "a results row") -> Row:
    """``row`` as this version reads it: a row without ``ssim_kind`` (written before the standard SSIM) has its
    ``ssim`` moved to ``ssim_padded``, the variant it holds; a row whose ``ssim_kind`` is not
    :data:`reguidance.evaluation.metrics.SSIM_KIND` is an ``InputError`` naming ``where``."""
    kind = row.get("ssim_kind")
    if kind is None:
        if "ssim" not in row:
            return row
        legacy = {k: v for k, v in row.items() if k != "ssim"}
        legacy["ssim_padded"] = row["ssim"]
        return legacy
    if kind != SSIM_KIND:
        raise InputError(f"{where} holds an SSIM of kind {kind!r}, but this version knows only {SSIM_KIND!r}")
    return row


def read_results(path: Path) -> list[Row]:
    """The rows of ``results.jsonl``, each as :func:`upgrade_row` returns it; a torn last line (a run killed
    mid-write) is ignored, a row without the keys :data:`ROW_KEYS` (e.g. ``{}``) or with a field not of its kind
    (:data:`ROW_FIELDS`: an id ``"zero"``, a metric ``NaN``) is an ``InputError`` naming the file and line."""
    rows = read_rows(path, ROW_KEYS, ROW_FIELDS)
    return [upgrade_row(r, f"{path}, row {k + 1}") for k, r in enumerate(rows)]


def results_path(out: Path, rank: int = 0, world_size: int = 1) -> Path:
    """``out/results.jsonl`` for a single process; ``out/results.rank<r>.jsonl`` for rank ``r`` of a sharded run."""
    return out / ("results.jsonl" if world_size == 1 else f"results.rank{rank}.jsonl")


def read_all_results(out: Path) -> list[Row]:
    """The rows of every results file in ``out`` (a single run's, or all ranks' of sharded runs)."""
    return [row for path in sorted(out.glob("results*.jsonl")) for row in read_results(path)]


def variant_of(row: Row) -> str:
    """A row's variant (:data:`VARIANTS`); rows written before variants existed have only ``reguidance``."""
    return str(row.get("variant", "reguidance" if row["reguidance"] else "candidate"))


def safe_name(name: str) -> str:
    """A task's or method's name as one folder name (``:`` and ``/`` become ``_``), as the report reads them."""
    return name.replace(":", "_").replace("/", "_")
