"""``reguidance restore``: ReGuidance on users' own images, measurements and candidates.

Inputs are image files or folders (every PNG/JPEG directly in a folder):

- ``images`` (clean images; their measurement is simulated with the task's operator and noise), or
  ``measurements`` (``y`` as images: the masked image for centred boxes, the low-resolution image for ``sr4`` /
  ``sr8``, the blurred image for ``deblur``; tasks with a random box per image need ``images``);
- ``candidates`` (a solver's outputs), or a ``method`` that makes them.

**Sizes and colour.** Clean images and candidates must have the prior's size, and measurements the task's
measurement size (``operator.y_shape``); a file of another size is an ``InputError`` naming it, its size and the size
expected (:func:`check_sizes`). For a gray prior a colour file (some pixel's R, G and B differ) is refused the same
way (:func:`check_gray`); a gray file for a colour prior has its gray in every channel. With ``resize`` clean images
and candidates are fitted to the prior instead, by the rule of ``bench --data folder:`` (:data:`RESIZE_RULE`: the
largest central square, then a bicubic resize; colour to gray by ITU-R 601 luma); measurements are never resized or
converted.

**Checked first.** Every input file is read and checked (:func:`read_inputs`: names that are text and give distinct
output names, the pairing, sizes, colour, every file decoded through) before anything is written, and on the command
line before the prior loads (:func:`plan_restore`; a checkpoint file's image shape is known only once it has loaded,
so its inputs are checked right then, still before the first write).

**Pairing by name.** Candidate files are matched to inputs by file name (:func:`match_candidates`): the candidate
with the input's own name, else the one with the input's stem (``a.png`` for input ``a.jpg``). An input without a
candidate, a candidate without an input, or an input that two candidates fit is an ``InputError`` naming them. A
single input file and a single candidate file are paired whatever their names.

**Names out.** Input ``a.png`` is written as ``restored/a.png`` (and ``candidate/``, ``measurement/``); any other
name gets ``.png`` appended (``a.jpg`` -> ``a.jpg.png``), so ``a.png`` and ``a.jpg`` never overwrite each other
(:func:`output_name`). The random draws of an input (its box, its noise, the samplers') come from an image id
derived from its file name (:func:`image_id`) in the random streams of split ``"restore"``
(:func:`reguidance.tasks.stream_rng`), so adding files to a folder never changes another file's result.

**Tasks** are any task name, preset or spec of :mod:`reguidance.tasks` (``paper:box128c``, ``sr:16``,
``blur:gauss,std=3``, ``mask:PATH``, ...), built at the prior's resolution; one that does not fit it is refused
before any file is read.

Each finished batch is written at once (PNGs atomically, then a row per image in ``restore.jsonl``); a rerun
skips inputs whose row carries the same identity (the run's settings, see :mod:`reguidance.app.runs`, and the sha256
of the input and candidate files) and refuses a folder whose rows were made with other settings or from files
that have since changed (``overwrite`` clears it first). :func:`write_report` then writes ``report.json``: per
input its candidate, its output and the measurement consistency ``||A x - y|| / (sigma_y sqrt(m))`` before
(candidate) and after (ReGuidance); and the pictures (:func:`save_pictures`): ``grid.png``, a labelled grid
measurement | candidate | restored | uncertainty | truth, and ``report.html``, every input with its numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..conventions import InputError, check_device, check_positive_int, check_seed
from ..guidance.solve import Method
from ..io.files import FieldKind, atomic_write_json, save_pngs
from ..io.images import DEFAULT_MODE, load_images
from ..priors.base import Prior
from ..tasks import Task, get_task, wrapper_rng
from ..wrapper import ReGuidance, spread
from .batch import solve_batch
from .methods import make_method, method_class
from .runs import RunFolder, identity_hash

__all__ = [
    "RESIZE_RULE",
    "ROW_KEYS",
    "RestoreInputs",
    "RestorePlan",
    "RestoreRequest",
    "check_gray",
    "check_sizes",
    "check_sources",
    "image_id",
    "match_candidates",
    "output_name",
    "plan_restore",
    "read_inputs",
    "restore",
    "run_restore",
    "save_pictures",
    "write_report",
]

#: the keys every ``restore*.jsonl`` row holds
ROW_KEYS = ("name", "run", "consistency_before", "consistency_after")

#: the kinds of a row's fields, checked when rows are read (a NaN consistency is refused naming file and line)
ROW_FIELDS: dict[str, FieldKind] = {
    "name": "text",
    "candidate": "text",
    "output": "text",
    "consistency_before": "number",
    "consistency_after": "number",
    "nfe": "index",
    "spread": "number",
    "run": "text",
    "input_sha256": "text",
}

#: the split name of restorations in the random streams
SPLIT = "restore"


def output_name(name: str) -> str:
    """The PNG file name an input's outputs get: ``name`` itself when it ends in ``.png``, else ``name + ".png"``."""
    return name if name.lower().endswith(".png") else f"{name}.png"


def image_id(name: str) -> int:
    """The image id of the input file ``name`` for its random draws: the first 60 bits of its name's sha256."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)


def match_candidates(inputs: Sequence[str], candidates: Sequence[str], *, single_files: bool = False) -> list[int]:
    """For each input name, the index of its candidate in ``candidates`` (see the module docstring for the rule)."""
    if single_files and len(inputs) == len(candidates) == 1:
        return [0]
    by_name = {c: k for k, c in enumerate(candidates)}
    exact = {i for i in inputs if i in by_name}
    chosen, missing, ambiguous = [], [], []
    for i in inputs:
        if i in by_name:
            chosen.append(by_name[i])
            continue
        fits = [k for k, c in enumerate(candidates) if Path(c).stem == Path(i).stem and c not in exact]
        if len(fits) == 1:
            chosen.append(fits[0])
        elif fits:
            ambiguous.append(f"{i} ({', '.join(candidates[k] for k in fits)})")
        else:
            missing.append(i)
    twice = sorted({candidates[k] for k in chosen if chosen.count(k) > 1})
    extra = [c for k, c in enumerate(candidates) if k not in chosen]
    problems = []
    if missing:
        problems.append(f"no candidate for {len(missing)} inputs: {', '.join(missing[:5])}")
    if ambiguous:
        problems.append(f"more than one candidate fits {', '.join(ambiguous[:5])}")
    if twice:
        problems.append(f"one candidate fits several inputs: {', '.join(twice[:5])}")
    if extra and not problems:
        problems.append(f"{len(extra)} candidates match no input: {', '.join(extra[:5])}")
    if problems:
        raise InputError(
            "--candidate: " + "; ".join(problems) + ". A candidate is matched to the input of the same file name, "
            "or of the same name up to its suffix"
        )
    return chosen


#: how ``--resize`` fits an image to the prior's size: :func:`reguidance.io.images.load_images`' default rule
#: (:data:`reguidance.io.images.DEFAULT_MODE`), the one ``bench --data folder:`` uses too
RESIZE_RULE = "centre-cropped to a square, then resized with Pillow's bicubic filter"


def check_sizes(
    path: str | Path,
    size: tuple[int, int],
    flag: str,
    *,
    expected: str = "the prior's images are",
    hint: str = f"pass --resize to resize them ({RESIZE_RULE})",
) -> None:
    """Refuse image files under ``path`` (a file, or the images directly in a folder) whose ``(height, width)`` is
    not ``size``, naming them: an ``InputError`` that says what was ``expected`` and gives the ``hint`` (by default:
    ``--resize``). Only the files' headers are read."""
    from ..io.images import image_size

    wrong = []
    for f in _listed(path):
        try:
            w, h = image_size(f)  # as seen: EXIF orientation applied
        except InputError as err:
            raise InputError(f"{flag}: {err}") from err
        if (h, w) != tuple(size):
            wrong.append(f"{f.name} is {w}x{h}")
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise InputError(
            f"{flag}: {', '.join(wrong[:3])}{more} but {expected} {size[1]}x{size[0]} (width x height); {hint}"
        )


def check_gray(path: str | Path, flag: str, hint: str, *, expected: str = "the prior's images are gray") -> None:
    """Refuse colour image files under ``path`` (some pixel's R, G and B differ) where gray ones are ``expected``,
    naming them, with the ``hint`` of how to ask for the conversion. Each file is read through
    (:func:`reguidance.io.images.inspect_images`)."""
    from ..io.images import inspect_images

    files = _listed(path)
    colour = [f.name for f, facts in zip(files, inspect_images(files, flag), strict=True) if facts.colour]
    if colour:
        more = f" and {len(colour) - 3} more" if len(colour) > 3 else ""
        verb = "is" if len(colour) == 1 else "are"
        named = f"{', '.join(colour[:3])}{more} {verb}"
        raise InputError(f"{flag}: {named} in colour but {expected}; {hint}")


def _listed(path: str | Path) -> list[Path]:
    """The image files ``path`` stands for: itself, or the image files directly in the folder, sorted by name."""
    from ..io.images import image_files

    root = Path(path)
    return [root] if root.is_file() else image_files(root)


def _load(path: str | Path, size: int | None, channels: int, flag: str) -> tuple[torch.Tensor, list[str]]:
    """The images of a user's file or folder; a file that does not decode is an ``InputError`` naming ``flag``."""
    try:
        return load_images(path, size, channels, mode=DEFAULT_MODE)  # size None: the files' own
    except InputError as err:
        raise InputError(f"{flag}: {err}") from err


def _sha256(path: Path) -> str:
    from ..io.hashing import sha256_file

    return sha256_file(path)


@dataclass(frozen=True)
class RestoreInputs:
    """A restore's input files, read and checked (:func:`read_inputs`), in input order: ``names`` (file names),
    ``outputs`` (:func:`output_name` of each), the clean ``truth`` ``(N, C, H, W)`` or the ``measured`` ``y``
    ``(N, *y_shape)`` (one of them, in [-1, 1]), the ``candidates`` ``(N, C, H, W)`` paired by name (None when a
    method makes them) with the file name each came from (``paired``; ``method:NAME`` otherwise), and the sha256
    of every input and candidate file (part of each row's identity)."""

    names: list[str]
    outputs: list[str]
    truth: torch.Tensor | None
    measured: torch.Tensor | None
    candidates: torch.Tensor | None
    paired: list[str]
    input_sha256: list[str]
    candidate_sha256: list[str | None]


def check_sources(
    images: str | Path | None, measurements: str | Path | None, candidates: str | Path | None, method: object
) -> None:
    """Exactly one of ``images`` and ``measurements``, and exactly one of ``candidates`` and ``method``."""
    if (images is None) == (measurements is None):
        raise InputError("pass exactly one of --image (simulate the measurement) or --measurement")
    if (candidates is None) == (method is None):
        raise InputError("pass exactly one of --candidate (files or a folder) or --method")


def read_inputs(
    task: Task,
    shape: tuple[int, int, int],
    *,
    images: str | Path | None = None,
    measurements: str | Path | None = None,
    candidates: str | Path | None = None,
    method: str | None = None,
    resize: bool = False,
    seed: int = 0,
) -> RestoreInputs:
    """Read and check every input file of a restore for a prior of images ``shape = (C, H, W)``, before anything is
    written (sources checked by :func:`check_sources`): file names that are text (:func:`reguidance.io.images.
    check_file_names`) and give distinct, writable output names; candidates paired by name
    (:func:`match_candidates`); sizes (:func:`check_sizes`, unless ``resize``); colour files for a gray prior refused
    unless ``resize`` converts them (:func:`check_gray`); every file decoded. ``InputError`` naming the flag."""
    source = images if images is not None else measurements
    assert source is not None  # check_sources
    if images is not None:
        names, files, truth = _read_images(images, shape, resize, "--image")
        measured = None
    else:
        names, files, measured = _read_measurements(source, task, shape, seed)
        truth = None
    outputs = _output_names(names)
    input_sha = [_sha256(f) for f in files]
    if candidates is None:
        n = len(names)
        return RestoreInputs(names, outputs, truth, measured, None, [f"method:{method}"] * n, input_sha, [None] * n)
    single = Path(candidates).is_file() and Path(source).is_file()
    order = match_candidates(names, [f.name for f in _listed(candidates)], single_files=single)
    cand_names, cand_files, cand_all = _read_images(candidates, shape, resize, "--candidate")
    paired = [cand_names[k] for k in order]
    cand_sha: list[str | None] = [_sha256(cand_files[k]) for k in order]
    return RestoreInputs(names, outputs, truth, measured, cand_all[order], paired, input_sha, cand_sha)


def _read_images(
    path: str | Path, shape: tuple[int, int, int], resize: bool, flag: str
) -> tuple[list[str], list[Path], torch.Tensor]:
    """Clean images or candidates as ``(names, files, x)``, ``x (N, C, H, W)`` at the prior's size and channels:
    another size or colour for a gray prior is refused unless ``resize`` fits them (:data:`RESIZE_RULE`; colour to
    ITU-R 601 luma); a gray file for a colour prior has its gray in every channel."""
    from ..io.images import check_file_names

    c, h, w = shape
    files = _listed(path)
    check_file_names(files, flag)
    if not resize:
        check_sizes(path, (h, w), flag)
        if c == 1:
            check_gray(path, flag, "pass --resize to convert them to gray (ITU-R 601 luma)")
    x, names = _load(path, h, c, flag)
    return names, files, x


def _read_measurements(
    path: str | Path, task: Task, shape: tuple[int, int, int], seed: int
) -> tuple[list[str], list[Path], torch.Tensor]:
    """Measurements as ``(names, files, y)``, ``y (N, *y_shape)``: of the task's measurement size and channels,
    never resized or converted (that would change what they measure, and their noise)."""
    from ..io.images import check_file_names

    if task.kind == "box":  # a random box per image
        raise InputError(f"task {task.name} draws a random box per image: pass --image, or use a centred box task")
    want = tuple(task.operator([0], seed, shape, split=SPLIT).y_shape)
    files = _listed(path)
    check_file_names(files, "--measurement")
    if len(want) == 3:
        never = "check --task and --prior; a measurement is never resized (that would change what it measures)"
        check_sizes(path, (want[1], want[2]), "--measurement", expected=f"task {task.name} measures", hint=never)
        if want[0] == 1:
            never = "check --task and --prior; a measurement is never converted (that would change what it measures)"
            check_gray(path, "--measurement", never, expected=f"task {task.name} measures gray images")
    y, names = _load(path, None, shape[0], "--measurement")
    if tuple(y.shape[1:]) != want:
        raise InputError(
            f"--measurement images are {tuple(y.shape[1:])} but task {task.name} measures {want} (C, H, W)"
        )
    return names, files, y


def _output_names(names: Sequence[str]) -> list[str]:
    """The output name of each input (:func:`output_name`); ``InputError`` for one longer than a file name may be,
    or two inputs that would be written under one name."""
    outputs = [output_name(nm) for nm in names]
    too_long = [o for o in outputs if len(o.encode(errors="surrogateescape")) > 255]
    if too_long:
        raise InputError(
            f"input {too_long[0][:40]}... would be written as a name of {len(too_long[0].encode())} bytes, more than "
            "the 255 a file name may have; rename it (a .png input keeps its name)"
        )
    clash = sorted({o for o in outputs if outputs.count(o) > 1})
    if clash:
        raise InputError(
            f"inputs {', '.join(n for n in names if output_name(n) in clash)} would all be written as "
            f"{clash[0]}; rename one"
        )
    return outputs


def restore(
    prior: Prior,
    task_name: str,
    out: Path,
    *,
    images: str | Path | None = None,
    measurements: str | Path | None = None,
    candidates: str | Path | None = None,
    method: Method | None = None,
    config: ReGuidance | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    context: Mapping[str, object] | None = None,
    overwrite: bool = False,
    resize: bool = False,
    samples: int = 1,
) -> list[str]:
    """Restore every input under ``out``; returns the inputs' names, for :func:`write_report`.

    ``context`` (e.g. :func:`reguidance.app.runs.prior_facts`) joins the run's identity. Everything (options, files,
    pairing, output names) is checked before ``out`` is touched. Sharded (``world_size > 1``, under ``torchrun``):
    rank ``r`` restores inputs ``r, r + world_size, ...`` into ``restore.rank<r>.jsonl``; after a barrier,
    :func:`write_report` merges every rank's rows. A clean image or candidate file of another size than the prior's
    images, or in colour for a gray prior, is an ``InputError`` naming it (:func:`check_sizes`, :func:`check_gray`)
    unless ``resize`` (then it is fitted by :func:`reguidance.io.images.load_images`' default rule,
    :data:`RESIZE_RULE`, colour to gray by ITU-R 601 luma; the rule joins the run's identity). A measurement file
    must have the task's measurement size and channels (``operator.y_shape``); it is never resized or converted.

    ``samples = K > 1`` draws K restorations per input from one latent (:func:`reguidance.wrapper.spread`): the
    first is the restoration written as without it, and the per-pixel standard deviation of the K is written to
    ``std/`` as a picture (black = 0, white = a standard deviation of 0.5 or more, a quarter of the [-1, 1] range)
    and its mean to each row as ``spread``; K draws of a batch that do not fit the memory of the prior's device
    are refused before any work (:func:`reguidance.app.memory.check_draws_fit`).

    The command line plans the same checks before the prior loads (:func:`plan_restore`, :func:`run_restore`);
    this entry point makes them here, once, for a prior already loaded.
    """
    from .runs import check_apart

    check_sources(images, measurements, candidates, method)
    check_apart({"out": out}, {"images": images, "measurements": measurements, "candidates": candidates})
    task = get_task(task_name)
    check_positive_int("batch-size", batch_size)
    check_positive_int("samples", samples)
    check_seed("seed", seed)
    shape = _shape(prior)
    task.check(shape)
    request = RestoreRequest(
        task_name, Path(out), image=_path(images), measurement=_path(measurements), candidate=_path(candidates),
        method=None if method is None else method.name, seed=seed, batch_size=batch_size, resize=resize,
        samples=samples, overwrite=overwrite,
    )  # fmt: skip
    plan = RestorePlan(request, config or ReGuidance.from_options(ReGuidance.image_options), method, task)
    inputs = _checked_inputs(plan, shape, prior.device)
    return _restore_planned(prior, plan, inputs, batch_size, rank, world_size, context, progress)


def _path(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path)


def _shape(prior: Prior) -> tuple[int, int, int]:
    c, h, w = prior.signal_shape
    return int(c), int(h), int(w)


def _identity(plan: RestorePlan, context: Mapping[str, object] | None) -> tuple[str, dict[str, object]]:
    """``(run, facts)``: what determines a restore's rows (the settings, the task's definition, ``context``) and
    its hash, the ``run`` every row carries."""
    r = plan.request
    facts = {
        **(context or {}),
        "task": plan.task.definition(),
        "split": SPLIT,
        "inputs": "images" if r.image is not None else "measurements",
        "method": plan.method.name if plan.method is not None else "candidate files",
        "method_options": plan.method.options() if plan.method is not None else {},
        "reguidance": plan.config.options(),
        "seed": r.seed,
        **({"samples": r.samples} if r.samples > 1 else {}),
        **({"resize": DEFAULT_MODE} if r.resize else {}),
    }
    return identity_hash(facts), facts


def _restore_planned(
    prior: Prior,
    plan: RestorePlan,
    inputs: RestoreInputs,
    batch_size: int,
    rank: int,
    world_size: int,
    context: Mapping[str, object] | None,
    progress: bool,
) -> list[str]:
    """Restore the checked ``inputs`` of ``plan`` that this rank owns and the folder lacks, a batch at a time, each
    batch written at once (pictures, then its rows); returns the inputs' names."""
    r = plan.request
    run, facts = _identity(plan, context)
    names = inputs.names
    folder = RunFolder(r.out, "restore", ROW_KEYS, rank=rank, world_size=world_size, fields=ROW_FIELDS)
    with folder.open(r.overwrite) as found:
        done = _check_rows(folder, found, run, facts, names, inputs.input_sha256, inputs.candidate_sha256)
        if rank == 0:
            folder.write_config({"identity": run, "facts": facts})
        todo = [k for k in range(len(names)) if k % world_size == rank and names[k] not in done]
        with (
            folder.log.open("a") as log,
            tqdm(total=len(todo), disable=not progress, desc="restore", unit="img") as bar,
        ):
            for start in range(0, len(todo), batch_size):
                picks = todo[start : start + batch_size]
                solved = _solve(prior, plan, inputs, picks, progress)
                _save_batch(r.out, inputs, picks, solved)
                folder.append(log, _rows(inputs, picks, solved, run))
                bar.update(len(picks))
    return names


@dataclass(frozen=True)
class _Solved:
    """One batch restored: the ``candidate`` and ``restored`` images, the ``measurement`` as a picture, the network
    evaluations per image, the per-pixel standard deviation of the samples (``None`` for one sample) and the
    consistency of the candidate (``before``) and of the restoration (``after``), per image."""

    candidate: torch.Tensor
    restored: torch.Tensor
    measurement: torch.Tensor
    nfe: int
    std: torch.Tensor | None
    before: torch.Tensor
    after: torch.Tensor


def _solve(prior: Prior, plan: RestorePlan, inputs: RestoreInputs, picks: Sequence[int], progress: bool) -> _Solved:
    """The inputs ``picks``: their measurement (simulated from the truth, or as given), their candidates (given, or
    the method's), then ReGuidance once, or ``samples`` times from one latent."""
    r, task, device = plan.request, plan.task, prior.device
    ids = [image_id(inputs.names[k]) for k in picks]
    operator = task.operator(ids, r.seed, _shape(prior), split=SPLIT).to(device)
    if inputs.truth is not None:
        _, y = task.measure(inputs.truth[picks].to(device), ids, r.seed, split=SPLIT)
    else:
        y = inputs.measured[picks].to(device)  # type: ignore[index]  # read when there is no truth
    solved = solve_batch(
        prior,
        operator,
        y,
        ids,
        seed=r.seed,
        task=task.name,
        split=SPLIT,
        name=plan.method.name if plan.method is not None else "candidate files",
        method=plan.method,
        config=plan.config,
        variants=("candidate",) if r.samples > 1 else ("candidate", "reguidance"),
        candidate=inputs.candidates[picks].to(device) if inputs.candidates is not None else None,
        wrapper_stream="restore",
        progress=progress,  # per-step bars
    )
    cand = solved["candidate"].x
    std = None
    if r.samples > 1:  # the first draw's stream is the one a single restoration uses
        streams = ["restore" if j == 0 else f"restore/sample{j}" for j in range(r.samples)]
        rngs = [wrapper_rng(r.seed, task.name, s, ids, device=device, split=SPLIT) for s in streams]
        draws = spread(cand, y, operator, prior, k=r.samples, config=plan.config, rngs=rngs)
        restored, nfe, std = draws.samples[0].clamp(-1, 1), solved["candidate"].nfe + draws.nfe, draws.std
    else:
        restored, nfe = solved["reguidance"].x, solved["reguidance"].nfe
    with torch.no_grad():
        shown = operator.picture(y).clamp(-1, 1)  # y itself, the size of an image
    before, after = operator.consistency(cand, y), operator.consistency(restored, y)
    return _Solved(cand, restored, shown, int(nfe), std, before, after)


def _save_batch(out: Path, inputs: RestoreInputs, picks: Sequence[int], solved: _Solved) -> None:
    """The batch's pictures, each under its kind's folder by the input's output name: the standard deviation of
    the samples (``std/``, when drawn), the restoration, the candidate, the measurement and the clean input as the
    prior saw it (``truth/``, resized with ``resize``; when the inputs are clean images)."""
    paths = [inputs.outputs[k] for k in picks]
    saved = [("restored", solved.restored), ("candidate", solved.candidate), ("measurement", solved.measurement)]
    if solved.std is not None:
        saved.insert(0, ("std", (solved.std / 0.5).clamp(0, 1) * 2 - 1))
    if inputs.truth is not None:
        saved.append(("truth", inputs.truth[picks]))
    for kind, pictures in saved:
        save_pngs(pictures, [out / kind / p for p in paths])


def _rows(inputs: RestoreInputs, picks: Sequence[int], solved: _Solved, run: str) -> list[dict[str, object]]:
    """One row per input of the batch (:data:`ROW_FIELDS`)."""
    return [
        {
            "name": inputs.names[k],
            "candidate": inputs.paired[k],
            "output": f"restored/{inputs.outputs[k]}",
            "consistency_before": float(solved.before[j]),
            "consistency_after": float(solved.after[j]),
            "nfe": solved.nfe,
            **({"spread": float(solved.std[j].mean())} if solved.std is not None else {}),
            "run": run,
            "input_sha256": inputs.input_sha256[k],
            "candidate_sha256": inputs.candidate_sha256[k],
        }
        for j, k in enumerate(picks)
    ]


def _read_rows(out: Path) -> dict[str, dict[str, object]]:
    """Rows of every ``restore*.jsonl`` in ``out`` by input name (a torn last line is ignored)."""
    return {str(row["name"]): row for row in RunFolder(out, "restore", ROW_KEYS, fields=ROW_FIELDS).rows()}


def _check_rows(
    folder: RunFolder,
    found: list[dict[str, Any]],
    run: str,
    facts: Mapping[str, object],
    names: Sequence[str],
    input_sha: Sequence[str],
    cand_sha: Sequence[str | None],
) -> set[str]:
    """The names already restored under this identity; ``InputError`` for rows of other settings or old files."""
    rows = {str(row["name"]): row for row in found}
    folder.refuse_other_settings(
        list(rows.values()),
        identity=lambda r: run,
        facts=lambda r: facts,
        recorded=lambda config, r: config["facts"],
        subject=lambda r: "restorations",
        fallback="its rows carry another identity",
    )
    sha = dict(zip(names, zip(input_sha, cand_sha, strict=True), strict=True))
    for name, row in rows.items():
        if name in sha and (row.get("input_sha256"), row.get("candidate_sha256")) != sha[name]:
            raise InputError(
                f"{folder.path} holds a restoration of {name} made from another version of that file (or its "
                "candidate); choose another --out, or pass --overwrite to redo it"
            )
    return {name for name in rows if name in sha}


def write_report(out: Path, task_name: str, cfg: ReGuidance, names: Sequence[str]) -> dict[str, Any]:
    """Merge the rows of every process into ``out/report.json`` (in input order: each input's candidate, output
    and consistency before and after); returns the report."""
    rows = _read_rows(out)
    missing = [nm for nm in names if nm not in rows]
    if missing:
        raise InputError(f"{len(missing)} inputs have no result yet (first: {missing[0]}); rerun to finish them")
    report: dict[str, Any] = {"task": task_name, "config": cfg.options(), "images": [rows[nm] for nm in names]}
    atomic_write_json(out / "report.json", report)
    save_pictures(out, report)
    return report


#: the columns of the restore pictures: folder under ``out`` and label
COLUMNS = (
    ("measurement", "measurement"),
    ("candidate", "candidate"),
    ("restored", "restored"),
    ("std", "uncertainty"),
    ("truth", "truth"),
)
#: how many inputs ``grid.png`` shows (``report.html`` shows all)
GRID_ROWS = 16


def save_pictures(out: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """``out/grid.png`` and ``out/report.html`` of a finished restore ``report`` (:func:`write_report`), both
    written atomically. Columns measurement | candidate | restored | uncertainty (``std/``, where ``samples > 1``
    made it) | truth (``truth/``, where the inputs were clean images), one row per input named by its file name:
    ``grid.png`` is a labelled grid (:func:`reguidance.io.pictures.labelled_grid`) of the first :data:`GRID_ROWS`
    inputs; ``report.html`` shows every input, each picture with its numbers from the rows (consistency before
    and after, the mean standard deviation of the samples), and the run's summary. Returns both paths."""
    from ..io.files import atomic_path
    from ..io.images import read_images
    from ..io.pictures import cell_scale, labelled_grid
    from ..io.webpage import Cell, image_table, relative_src, text_table, write_page

    rows = list(report["images"])
    files = [Path(str(r["output"])).name for r in rows]
    kinds = [(k, label) for k, label in COLUMNS if all((out / k / f).is_file() for f in files)]
    channels = read_images([out / "restored" / files[0]]).shape[1]
    shown = files[:GRID_ROWS]
    x = read_images([out / k / f for f in shown for k, _ in kinds], channels=channels)
    with atomic_path(out / "grid.png") as tmp:
        columns, names = [label for _, label in kinds], [str(r["name"]) for r in rows[:GRID_ROWS]]
        more = f" (first {GRID_ROWS} of {len(rows)})" if len(rows) > GRID_ROWS else ""
        title = f"restore, task {report['task']}{more}"
        labelled_grid(x, columns, names, title).save(tmp, format="PNG")

    def lines(kind: str, row: Mapping[str, Any]) -> list[str]:
        if kind == "candidate":
            return [f"consistency {row['consistency_before']:.2f}", f"from {row['candidate']}"]
        if kind == "restored":
            return [f"consistency {row['consistency_after']:.2f}", *([f"NFE {row['nfe']}"] if "nfe" in row else [])]
        if kind == "std" and row.get("spread") is not None:
            return [f"mean std {row['spread']:.3f}"]
        return []

    width = x.shape[-1] * cell_scale(x.shape[-1])
    table = [
        (str(r["name"]), [Cell(relative_src(out / k / f, out), lines(k, r)) for k, _ in kinds])
        for r, f in zip(rows, files, strict=True)
    ]
    before = sum(float(r["consistency_before"]) for r in rows) / len(rows)
    after = sum(float(r["consistency_after"]) for r in rows) / len(rows)
    facts = [
        ["task", str(report["task"])],
        ["inputs", str(len(rows))],
        ["mean consistency, candidate -> restored", f"{before:.3f} -> {after:.3f} (1 = explains y up to its noise)"],
        *[[f"wrapper {k}", str(v)] for k, v in dict(report.get("config", {})).items()],
    ]
    spreads = [float(r["spread"]) for r in rows if r.get("spread") is not None]
    if spreads:
        facts.insert(3, ["mean std of the samples", f"{sum(spreads) / len(spreads):.4f}"])
    parts = [
        image_table([label for _, label in kinds], table, width),
        "<h2>Summary</h2>",
        text_table([], facts),
        "<p>consistency = ||A x - y|| / (sigma_y sqrt(m)); uncertainty: the per-pixel standard deviation of the "
        "samples (black = 0, white = 0.5 or more on the [-1, 1] scale).</p>",
    ]
    page = write_page(out / "report.html", f"restore {out.name}: {report['task']}", parts)
    return out / "grid.png", page


@dataclass(frozen=True)
class RestoreRequest:
    """What ``reguidance restore`` was asked (each field is the flag of the same name; ``prior`` is ``--prior``;
    ``wrapper``: the wrapper's options that were given, by their flat names, over its defaults)."""

    task: str
    out: Path
    prior: str = "mnist"
    image: Path | None = None
    measurement: Path | None = None
    candidate: Path | None = None
    method: str | None = None
    steps: int | None = None
    seed: int = 0
    batch_size: int = 16
    wrapper: Mapping[str, object] = field(default_factory=dict)
    resize: bool = False
    samples: int = 1
    device: str = "cpu"
    dtype: str = "fp32"
    overwrite: bool = False
    prior_config: Path | None = None
    checkpoint_dir: Path | None = None


@dataclass(frozen=True)
class RestorePlan:
    """A checked request: the wrapper's config, the method's config, the task, and the input files read and
    checked (:class:`RestoreInputs`; ``None`` until the prior's image shape is known: a known model's at planning,
    a checkpoint file's once it has loaded)."""

    request: RestoreRequest
    config: ReGuidance
    method: Method | None
    task: Task
    inputs: RestoreInputs | None = None


def plan_restore(request: RestoreRequest) -> RestorePlan:
    """Check ``request`` before any model loads: the device, counts, the seed, the inputs given (one of ``--image`` and
    ``--measurement``, one of ``--candidate`` and ``--method``), the output folder (new, empty or a restore run's;
    apart from every input), the task (and that it fits a known prior), the wrapper's options and step counts
    (within the chain), the method and its options; and, for a known prior (whose image shape its configuration
    gives), every input file (:func:`read_inputs`: names, pairing, sizes, colour, every file decoded) and the
    memory of ``--samples`` draws (:func:`_checked_inputs`). ``InputError`` naming the flag (the task's is prefixed
    ``--task:``). A checkpoint file's inputs are checked by :func:`run_restore` once it has loaded, still before
    anything is written."""
    from ..diffusion import check_levels
    from .runs import check_apart, check_output_folder, known_signal_shape, path_inputs

    r = request
    device = check_device(r.device, "--device")
    check_positive_int("--batch-size", r.batch_size)
    check_seed("--seed", r.seed)
    check_sources(r.image, r.measurement, r.candidate, r.method)
    inputs = {"--image": r.image, "--measurement": r.measurement, "--candidate": r.candidate}
    check_apart({"--out": r.out}, {**inputs, **path_inputs(r.prior, r.prior_config, r.checkpoint_dir, [r.task])})
    check_output_folder(r.out, "restore")
    check_positive_int("--samples", r.samples)
    if r.steps is not None:
        check_positive_int("--steps", r.steps)
    shape = known_signal_shape(r.prior)
    task = _task(r.task, shape)  # a malformed spec is refused before the prior loads
    cfg = ReGuidance.from_options({**ReGuidance.image_options, **r.wrapper})
    check_levels("--inversion-steps", cfg.inversion_steps, t_end=cfg.t_end)
    check_levels("--dps-steps", cfg.dps_steps, t_end=cfg.t_end)
    method = None
    if r.method is not None:
        cls = method_class(r.method)
        options: dict[str, object] = dict(cls.image_options)
        if r.steps is not None and cls.budget_option is not None:
            options[cls.budget_option] = check_levels("--steps", r.steps)
        method = make_method(r.method, options)
    plan = RestorePlan(r, cfg, method, task)
    if shape is None:  # a checkpoint file: its image shape is known once it has loaded
        return plan
    return replace(plan, inputs=_checked_inputs(plan, shape, device))


def _task(name: str, shape: tuple[int, int, int] | None) -> Task:
    """The task ``name``, checked against images of ``shape`` when known; ``InputError`` prefixed ``--task:``."""
    try:
        task = get_task(name)
        if shape is not None:
            task.check(shape)
    except ValueError as err:
        raise InputError(f"--task: {' '.join(str(err).split())}") from err
    return task


def _checked_inputs(plan: RestorePlan, shape: tuple[int, int, int], device: torch.device | str) -> RestoreInputs:
    """The plan's input files read and checked for a prior of images ``shape`` (:func:`read_inputs`), and ``samples``
    draws of a batch that fit the memory of ``device`` (:func:`reguidance.app.memory.check_draws_fit`)."""
    from .memory import check_draws_fit

    r = plan.request
    inputs = read_inputs(
        plan.task, shape, images=r.image, measurements=r.measurement, candidates=r.candidate, method=r.method,
        resize=r.resize, seed=r.seed,
    )  # fmt: skip
    if r.samples > 1:
        check_draws_fit("--samples", r.samples, shape, min(r.batch_size, len(inputs.names)), device=device)
    return inputs


def run_restore(
    plan: RestorePlan,
    load_prior: Callable[[str, str, str], Prior],
    *,
    fit_batch: Callable[[Prior, int, str, int], int] | None = None,
) -> dict[str, Any] | None:
    """Run a checked request (:func:`plan_restore`): the prior (``load_prior(name, device, dtype)``), the inputs
    checked against it if the plan could not (a checkpoint file), one share of the inputs per process under
    ``torchrun``, then on rank 0 ``report.json`` (:func:`write_report`), which it returns (None on other ranks)."""
    from .runs import own_folder, prior_facts
    from .shard import sharded

    r = plan.request
    with sharded(r.device) as (rank, world, dev):  # torchrun: one share of the inputs per process
        prior = load_prior(r.prior, dev, r.dtype)
        inputs = plan.inputs
        if inputs is None:  # a checkpoint file: checked now, before anything is written
            _task(r.task, _shape(prior))
            inputs = _checked_inputs(plan, _shape(prior), dev)
        n = len(range(rank, len(inputs.names), world))
        batch_size = fit_batch(prior, r.batch_size, dev, n) if fit_batch is not None else r.batch_size
        context = prior_facts(r.prior, r.dtype, config=r.prior_config, checkpoint_dir=r.checkpoint_dir)
        names = _restore_planned(prior, plan, inputs, batch_size, rank, world, context, progress=rank == 0)
    if rank != 0:
        return None
    with own_folder(r.out, "restore"):
        return write_report(r.out, r.task, plan.config, names)
