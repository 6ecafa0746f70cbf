"""The resumable benchmark runner: each finished image is appended to ``DIR/results.jsonl`` at once.

For every (task, method) and every batch of test ids not yet done, the runner measures the ground truths (per-image
operators and noise from :mod:`.protocol`), asks the method for candidates, wraps them with ReGuidance, and appends
two rows per image — ``reguidance: false`` (the candidate) and ``true`` — in one write. A rerun reads the file,
skips what is done and ignores a torn last line, so killing it at any moment loses at most the batch in flight, and
the summary of a resumed run equals an uninterrupted one (every random draw is per image, see
:func:`.protocol.stream_rng`). Restorations are saved as PNGs beside the rows, for grids and later metrics.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..metrics import psnr, ssim
from ..priors.base import Prior
from ..wrapper import ReGuidanceConfig, reguide
from .defaults import is_tuned, method_options, reguidance_config
from .methods import get_method
from .protocol import get_task, method_rng, wrapper_rng

__all__ = ["BenchSpec", "done_keys", "drop_torn_tail", "read_all_results", "read_results", "results_path", "run_bench"]

Classifier = Callable[[Tensor], Tensor]  # images (B, C, H, W) in [-1, 1] -> logits (B, classes)
Distance = Callable[[Tensor, Tensor], Tensor]  # two image batches -> per-image distances (B,), e.g. LPIPS


@dataclass(frozen=True)
class BenchSpec:
    """What to run: task and method names, test ids, the run's seed and batch size, and per-method options."""

    tasks: Sequence[str]
    methods: Sequence[str]
    ids: Sequence[int]
    seed: int = 0
    batch_size: int = 16
    #: per-method overrides of the (task, method) defaults of :mod:`.defaults`
    method_options: dict[str, dict[str, object]] = field(default_factory=dict)
    #: the wrapper's options for every (task, method); None takes :func:`.defaults.reguidance_config`
    reguidance: ReGuidanceConfig | None = None
    #: the budget and defaults table, ``"reference"`` or ``"cpu"`` (see :mod:`.defaults`)
    protocol: str = "reference"

    def options(self, task: str, method: str) -> dict[str, object]:
        return {**method_options(task, method, self.protocol), **self.method_options.get(method.split(":", 1)[0], {})}

    def wrapper_config(self, task: str, method: str) -> ReGuidanceConfig:
        return self.reguidance if self.reguidance is not None else reguidance_config(task, method, self.protocol)


def read_results(path: Path) -> list[dict[str, object]]:
    """The rows of ``results.jsonl``; a torn last line (a run killed mid-write) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def results_path(out: Path, rank: int = 0, world_size: int = 1) -> Path:
    """``out/results.jsonl`` for a single process; ``out/results.rank<r>.jsonl`` for rank ``r`` of a sharded run."""
    return out / ("results.jsonl" if world_size == 1 else f"results.rank{rank}.jsonl")


def read_all_results(out: Path) -> list[dict[str, object]]:
    """The rows of every results file in ``out`` (a single run's, or all ranks' of sharded runs)."""
    return [row for path in sorted(out.glob("results*.jsonl")) for row in read_results(path)]


def drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a run killed mid-write) so that new rows start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def done_keys(rows: list[dict[str, object]]) -> set[tuple[str, str, int]]:
    """(task, method, id) triples with both rows (candidate and ReGuidance) written."""
    seen: dict[tuple[str, str, int], set[bool]] = {}
    for r in rows:
        seen.setdefault((str(r["task"]), str(r["method"]), int(r["id"])), set()).add(bool(r["reguidance"]))  # type: ignore[call-overload]
    return {k for k, v in seen.items() if v == {False, True}}


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _save_png(x: Tensor, path: Path) -> None:
    from ..images import save_images

    save_images(x.unsqueeze(0), [path])


def _rows_for(
    task: str,
    method: str,
    ids: Sequence[int],
    x: Tensor,
    truth: Tensor,
    y: Tensor,
    operator: object,
    labels: Tensor,
    classifier: Classifier | None,
    nfe: int,
    seconds: float,
    mem: float,
    reguidance: bool,
    lpips: Distance | None = None,
) -> list[dict[str, object]]:
    p, s = psnr(x, truth), ssim(x, truth)
    perceptual = lpips(x, truth) if lpips is not None else None
    cons = operator.consistency(x, y)  # type: ignore[attr-defined]
    pred = classifier(x).argmax(dim=1) if classifier is not None else None
    rows = []
    for k, i in enumerate(ids):
        row: dict[str, object] = {
            "task": task,
            "method": method,
            "reguidance": reguidance,
            "id": int(i),
            "psnr": float(p[k]),
            "ssim": float(s[k]),
            "consistency": float(cons[k]),
            "label": int(labels[k]),
            "nfe": int(nfe),
            "sec_per_image": seconds,
            "peak_mem_mb": mem,
        }
        if pred is not None:
            row["pred"] = int(pred[k])
        if perceptual is not None:
            row["lpips"] = float(perceptual[k])
        rows.append(row)
    return rows


def _write_config(spec: BenchSpec, out: Path) -> None:
    """``out/config.json``: the protocol, whether its table is tuned, and every (task, method)'s options."""
    config = {
        "protocol": spec.protocol,
        "tuned": is_tuned(spec.protocol),
        "seed": spec.seed,
        "runs": [
            {
                "task": t,
                "method": m,
                "method_options": spec.options(t, m),
                "reguidance": asdict(spec.wrapper_config(t, m)),
            }
            for t in spec.tasks
            for m in spec.methods
        ],
    }
    tmp = out / f"config.json.{os.getpid()}"
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(out / "config.json")


def run_bench(
    prior: Prior,
    images: Tensor,
    labels: Tensor,
    spec: BenchSpec,
    out: Path,
    *,
    classifier: Classifier | None = None,
    lpips: Distance | None = None,
    progress: bool = True,
    stop_after_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Path:
    """Run ``spec`` on test images ``images[i]`` (indexed by id) into ``out``; returns the results file written.

    Sharded runs (``world_size > 1``, e.g. under ``torchrun``): rank ``r`` takes the ids at positions
    ``r, r + world_size, ...`` of ``spec.ids`` and writes ``results.rank<r>.jsonl``; what any file in ``out``
    already holds is skipped, so a rerun with another number of processes resumes too.
    ``stop_after_batches`` stops early (used by the resume test to simulate a kill between batches).
    """
    out.mkdir(parents=True, exist_ok=True)
    results = results_path(out, rank, world_size)
    drop_torn_tail(results)
    done = done_keys(read_all_results(out))
    mine = list(spec.ids)[rank::world_size]
    device = prior.device
    tasks = [get_task(t) for t in spec.tasks]
    methods = {m: get_method(m) for m in spec.methods}
    _write_config(spec, out)
    todo = [(t, m, [i for i in mine if (t.name, m, i) not in done]) for t in tasks for m in methods]
    total = sum(len(ids) for *_, ids in todo)
    bar = tqdm(total=total, disable=not progress, desc="bench", unit="img")
    batches = 0
    with results.open("a") as log:
        for task, name, ids in todo:
            for start in range(0, len(ids), spec.batch_size):
                if stop_after_batches is not None and batches >= stop_after_batches:
                    bar.close()
                    return results
                chunk = ids[start : start + spec.batch_size]
                truth = images[list(chunk)].to(device)
                operator, y = task.measure(truth, chunk, spec.seed)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                t0 = time.perf_counter()
                rng = method_rng(spec.seed, task.name, name, chunk, device=device)
                candidate, nfe = methods[name](prior, operator, y, rng, chunk, **spec.options(task.name, name))
                t_cand = (time.perf_counter() - t0) / len(chunk)
                rg_rng = wrapper_rng(spec.seed, task.name, name, chunk, device=device)
                rg = reguide(candidate, y, operator, prior, config=spec.wrapper_config(task.name, name), rng=rg_rng)
                restored = rg.x.clamp(-1, 1)
                t_rg = rg.seconds / len(chunk)
                mem = _peak_mem_mb(device)
                lab = labels[list(chunk)]
                rows = _rows_for(
                    task.name,
                    name,
                    chunk,
                    candidate,
                    truth,
                    y,
                    operator,
                    lab,
                    classifier,
                    nfe,
                    t_cand,
                    mem,
                    False,
                    lpips,
                )
                rows += _rows_for(
                    task.name,
                    name,
                    chunk,
                    restored,
                    truth,
                    y,
                    operator,
                    lab,
                    classifier,
                    nfe + rg.nfe,
                    t_cand + t_rg,
                    mem,
                    True,
                    lpips,
                )
                folder = out / "images" / task.name / name.replace(":", "_").replace("/", "_")
                with torch.no_grad():
                    shown = operator.pinv(y).clamp(-1, 1)  # the measurement as a full-size picture
                for k, i in enumerate(chunk):
                    _save_png(candidate[k], folder / f"{i:05d}_candidate.png")
                    _save_png(restored[k], folder / f"{i:05d}_reguidance.png")
                    _save_png(truth[k], folder / f"{i:05d}_truth.png")
                    _save_png(shown[k], folder / f"{i:05d}_measurement.png")
                log.write("".join(json.dumps(r) + "\n" for r in rows))  # both variants of the batch at once
                log.flush()
                os.fsync(log.fileno())
                bar.update(len(chunk))
                batches += 1
    bar.close()
    return results
