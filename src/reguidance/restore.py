"""``reguidance restore``: ReGuidance on users' own images, measurements and candidates.

Inputs are image files or folders (sorted by name; the k-th file is image id k for its random draws):

- ``images`` (clean images; their measurement is simulated with the task's operator and noise), or
  ``measurements`` (``y`` as images: the masked image for centred boxes, the low-resolution image for ``sr4`` /
  ``sr8``, the blurred image for ``deblur``; tasks with a random box per image need ``images``);
- ``candidates`` (a solver's outputs, one per input, same names or same order), or a ``method`` that makes them.

Each finished batch is written at once (``restored/``, ``candidate/``, ``measurement/`` PNGs and a row per image in
``restore.jsonl``); a rerun skips images whose row exists. :func:`write_report` then writes ``report.json``: per
image the measurement consistency ``||A x - y|| / (sigma_y sqrt(m))`` before (candidate) and after (ReGuidance).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .bench.methods import get_method
from .bench.protocol import get_task, method_rng, wrapper_rng
from .bench.runner import drop_torn_tail, read_results
from .images import load_images, save_images
from .priors.base import Prior
from .wrapper import ReGuidanceConfig, reguide

__all__ = ["restore", "write_report"]


def _stem(name: str) -> str:
    return Path(name).stem


def restore(
    prior: Prior,
    task_name: str,
    out: Path,
    *,
    images: str | Path | None = None,
    measurements: str | Path | None = None,
    candidates: str | Path | None = None,
    method: str | None = None,
    method_options: dict[str, object] | None = None,
    config: ReGuidanceConfig | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> list[str]:
    """Restore every input under ``out``; returns the inputs' names, for :func:`write_report`.

    Sharded (``world_size > 1``, under ``torchrun``): rank ``r`` restores inputs ``r, r + world_size, ...`` into
    ``restore.rank<r>.jsonl``; after a barrier, :func:`write_report` merges every rank's rows.
    """
    if (images is None) == (measurements is None):
        raise ValueError("pass exactly one of --image (simulate the measurement) or --measurement")
    if (candidates is None) == (method is None):
        raise ValueError("pass exactly one of --candidate (files or a folder) or --method")
    task = get_task(task_name)
    c, h, w = prior.signal_shape
    device = prior.device
    if images is not None:
        x, names = load_images(images, h, c)
        y_all = None
    else:
        if task.kind == "box":
            raise ValueError(f"task {task_name} draws a random box per image: pass --image, or use a centred box task")
        y_all, names = load_images(measurements, None, c)  # type: ignore[arg-type]
        x = None
    n = len(names)
    if candidates is not None:
        cand_all, cand_names = load_images(candidates, h, c)
        if len(cand_names) != n:
            raise ValueError(f"{len(cand_names)} candidates for {n} inputs; expected one candidate per input")
    else:
        cand_all = None
    cfg = config or ReGuidanceConfig(clip=True)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / ("restore.jsonl" if world_size == 1 else f"restore.rank{rank}.jsonl")
    drop_torn_tail(log_path)  # a run killed mid-write: new rows must start on a fresh line
    done = _read_rows(out)
    todo = [k for k in range(n) if k % world_size == rank and names[k] not in done]
    fn = get_method(method) if method is not None else None
    with log_path.open("a") as log, tqdm(total=len(todo), disable=not progress, desc="restore", unit="img") as bar:
        for start in range(0, len(todo), batch_size):
            ids: Sequence[int] = todo[start : start + batch_size]
            operator = task.operator(ids, seed, (c, h, w)).to(device)
            if x is not None:
                _, y = task.measure(x[list(ids)].to(device), ids, seed)
            else:
                y = y_all[list(ids)].to(device)  # type: ignore[index]
                if tuple(y.shape[1:]) != tuple(operator.y_shape):
                    raise ValueError(
                        f"measurement images are {tuple(y.shape[1:])} but task {task_name} measures "
                        f"{tuple(operator.y_shape)}"
                    )
            if fn is not None:
                rng = method_rng(seed, task.name, method, ids, device=device)
                cand, nfe = fn(prior, operator, y, rng, ids, **(method_options or {}))
            else:
                cand, nfe = cand_all[list(ids)].to(device), 0  # type: ignore[index]
            rg = reguide(
                cand, y, operator, prior, config=cfg, rng=wrapper_rng(seed, task.name, "restore", ids, device=device)
            )
            restored = rg.x.clamp(-1, 1)
            before, after = operator.consistency(cand, y), operator.consistency(restored, y)
            with torch.no_grad():
                shown = operator.pinv(y).clamp(-1, 1)  # the measurement as a full-size picture
            for k, i in enumerate(ids):
                stem = _stem(names[i])
                save_images(restored[k : k + 1], [out / "restored" / f"{stem}.png"])
                save_images(cand[k : k + 1], [out / "candidate" / f"{stem}.png"])
                save_images(shown[k : k + 1], [out / "measurement" / f"{stem}.png"])
                row = {
                    "name": names[i],
                    "consistency_before": float(before[k]),
                    "consistency_after": float(after[k]),
                    "nfe": int(nfe + rg.nfe),
                }
                log.write(json.dumps(row) + "\n")
                done[names[i]] = row
            log.flush()
            bar.update(len(ids))
    return names


def _read_rows(out: Path) -> dict[str, dict[str, object]]:
    """Rows of every ``restore*.jsonl`` in ``out`` by input name (a torn last line is ignored)."""
    return {str(row["name"]): row for path in sorted(out.glob("restore*.jsonl")) for row in read_results(path)}


def write_report(out: Path, task_name: str, cfg: ReGuidanceConfig, names: Sequence[str]) -> dict[str, object]:
    """Merge the rows of every process into ``out/report.json`` (in input order); returns the report."""
    rows = _read_rows(out)
    missing = [nm for nm in names if nm not in rows]
    if missing:
        raise ValueError(f"{len(missing)} inputs have no result yet (first: {missing[0]}); rerun to finish them")
    report = {"task": task_name, "config": {**cfg.__dict__}, "images": [rows[nm] for nm in names]}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
