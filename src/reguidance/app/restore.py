"""``reguidance restore``: ReGuidance on users' own images, measurements and candidates.

Inputs are image files or folders (every PNG/JPEG directly in a folder):

- ``images`` (clean images; their measurement is simulated with the task's operator and noise), or
  ``measurements`` (``y`` as images: the masked image for centred boxes, the low-resolution image for ``sr4`` /
  ``sr8``, the blurred image for ``deblur``; tasks with a random box per image need ``images``);
- ``candidates`` (a solver's outputs), or a ``method`` that makes them.

**Sizes.** Clean images and candidates must have the prior's size, and measurements the task's measurement size
(``operator.y_shape``); a file of another size is an ``InputError`` naming it, its size and the size expected
(:func:`check_sizes`). With ``resize`` clean images and candidates are fitted to the prior's size instead, by the
rule of ``bench --data folder:`` (:data:`RESIZE_RULE`: the largest central square, then a bicubic resize);
measurements are never resized.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..conventions import InputError, check_positive_int
from ..guidance.solve import Method
from ..io.files import FieldKind, atomic_write_json, save_pngs
from ..io.images import DEFAULT_MODE, load_images
from ..priors.base import Prior
from ..tasks import get_task, wrapper_rng
from ..wrapper import ReGuidance, spread
from .batch import solve_batch
from .methods import make_method, method_class
from .runs import RunFolder, identity_hash

__all__ = [
    "RESIZE_RULE",
    "ROW_KEYS",
    "RestorePlan",
    "RestoreRequest",
    "check_sizes",
    "count_inputs",
    "image_id",
    "match_candidates",
    "output_name",
    "plan_restore",
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


def _load(path: str | Path, size: int | None, channels: int, flag: str) -> tuple[torch.Tensor, list[str]]:
    """The images of a user's file or folder; a file that does not decode is an ``InputError`` naming ``flag``."""
    try:
        return load_images(path, size, channels, mode=DEFAULT_MODE)  # size None: the files' own
    except InputError:
        raise
    except ValueError as err:
        raise InputError(f"{flag}: {err}") from err


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
    from ..io.images import IMAGE_SUFFIXES, image_size

    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    wrong = []
    for f in files:
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


def count_inputs(path: str | Path | None) -> int:
    """How many inputs ``path`` holds: 1 for a file, the image files directly in a folder, 0 for ``None``."""
    from ..io.images import IMAGE_SUFFIXES

    if path is None:
        return 0
    root = Path(path)
    if root.is_file():
        return 1
    return sum(1 for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _files(path: str | Path, names: Sequence[str]) -> list[Path]:
    root = Path(path)
    return [root] if root.is_file() else [root / n for n in names]


def _sha256(path: Path) -> str:
    from ..io.hashing import sha256_file

    return sha256_file(path)


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
    images is an ``InputError`` naming it, its size and the prior's (:func:`check_sizes`) unless ``resize`` (then
    it is fitted by :func:`reguidance.io.images.load_images`' default rule, :data:`RESIZE_RULE`; the rule joins the
    run's identity). A measurement file must have the task's measurement size (``operator.y_shape``); it is
    never resized, ``resize`` or not.

    ``samples = K > 1`` draws K restorations per input from one latent (:func:`reguidance.wrapper.spread`): the
    first is the restoration written as without it, and the per-pixel standard deviation of the K is written to
    ``std/`` as a picture (black = 0, white = a standard deviation of 0.5 or more, a quarter of the [-1, 1] range)
    and its mean to each row as ``spread``.
    """
    if (images is None) == (measurements is None):
        raise InputError("pass exactly one of --image (simulate the measurement) or --measurement")
    if (candidates is None) == (method is None):
        raise InputError("pass exactly one of --candidate (files or a folder) or --method")
    from .runs import check_apart

    check_apart({"out": out}, {"images": images, "measurements": measurements, "candidates": candidates})
    task = get_task(task_name)
    check_positive_int("batch-size", batch_size)
    check_positive_int("samples", samples)
    c, h, w = prior.signal_shape
    task.check((c, h, w))
    device = prior.device
    source = images if images is not None else measurements
    if images is not None:
        if not resize:
            check_sizes(images, (h, w), "--image")
        x, names = _load(images, h, c, "--image")
        y_all = None
    else:
        if task.kind == "box":  # a random box per image
            raise InputError(f"task {task_name} draws a random box per image: pass --image, or use a centred box task")
        want = tuple(task.operator([0], seed, (c, h, w), split=SPLIT).y_shape)
        if len(want) == 3:  # never resized: that would change what the measurement measures, and its noise
            check_sizes(
                measurements,  # type: ignore[arg-type]  # given: checked above
                (want[1], want[2]),
                "--measurement",
                expected=f"task {task_name} measures",
                hint="check --task and --prior; a measurement is never resized (that would change what it measures)",
            )
        y_all, names = _load(measurements, None, c, "--measurement")  # type: ignore[arg-type]  # given: checked above
        x = None
        if tuple(y_all.shape[1:]) != want:
            raise InputError(
                f"--measurement images are {tuple(y_all.shape[1:])} but task {task_name} measures {want} (C, H, W)"
            )
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
    input_sha = [_sha256(f) for f in _files(source, names)]  # type: ignore[arg-type]  # one of two is given
    cand_sha: list[str | None]
    if candidates is not None:
        if not resize:
            check_sizes(candidates, (h, w), "--candidate")
        cand_files, cand_names = _load(candidates, h, c, "--candidate")
        order = match_candidates(names, cand_names, single_files=Path(candidates).is_file() and Path(source).is_file())  # type: ignore[arg-type]  # source given
        cand_all = cand_files[order]
        paired = [cand_names[k] for k in order]
        cand_sha = [_sha256(f) for f in _files(candidates, paired)]
    else:
        assert method is not None  # exactly one of candidates and method, checked above
        cand_all, paired, cand_sha = None, [f"method:{method.name}"] * len(names), [None] * len(names)
    cfg = config or ReGuidance.from_options(ReGuidance.image_options)
    facts = {
        **(context or {}),
        "task": task.definition(),
        "split": SPLIT,
        "inputs": "images" if images is not None else "measurements",
        "method": method.name if method is not None else "candidate files",
        "method_options": method.options() if method is not None else {},
        "reguidance": cfg.options(),
        "seed": seed,
        **({"samples": samples} if samples > 1 else {}),
        **({"resize": DEFAULT_MODE} if resize else {}),
    }
    run = identity_hash(facts)

    folder = RunFolder(out, "restore", ROW_KEYS, rank=rank, world_size=world_size, fields=ROW_FIELDS)
    with folder.open(overwrite) as found:
        done = _check_rows(folder, found, run, facts, names, input_sha, cand_sha)
        if rank == 0:
            folder.write_config({"identity": run, "facts": facts})
        todo = [k for k in range(len(names)) if k % world_size == rank and names[k] not in done]
        with (
            folder.log.open("a") as log,
            tqdm(total=len(todo), disable=not progress, desc="restore", unit="img") as bar,
        ):
            for start in range(0, len(todo), batch_size):
                picks = todo[start : start + batch_size]
                ids = [image_id(names[k]) for k in picks]
                operator = task.operator(ids, seed, (c, h, w), split=SPLIT).to(device)
                if x is not None:
                    _, y = task.measure(x[picks].to(device), ids, seed, split=SPLIT)
                else:
                    y = y_all[picks].to(device)  # type: ignore[index]  # loaded when x is None
                given = cand_all[picks].to(device) if cand_all is not None else None
                solved = solve_batch(
                    prior,
                    operator,
                    y,
                    ids,
                    seed=seed,
                    task=task.name,
                    split=SPLIT,
                    name=method.name if method is not None else "candidate files",
                    method=method,
                    config=cfg,
                    variants=("candidate",) if samples > 1 else ("candidate", "reguidance"),
                    candidate=given,
                    wrapper_stream="restore",
                    progress=progress,  # per-step bars
                )
                cand = solved["candidate"].x
                spread_map = None
                if samples > 1:  # the first draw's stream is the one a single restoration uses
                    rngs = [
                        wrapper_rng(
                            seed,
                            task.name,
                            "restore" if j == 0 else f"restore/sample{j}",
                            ids,
                            device=device,
                            split=SPLIT,
                        )
                        for j in range(samples)
                    ]
                    draws = spread(cand, y, operator, prior, k=samples, config=cfg, rngs=rngs)
                    restored, nfe = draws.samples[0].clamp(-1, 1), solved["candidate"].nfe + draws.nfe
                    spread_map = draws.std
                    save_pngs((spread_map / 0.5).clamp(0, 1) * 2 - 1, [out / "std" / outputs[k] for k in picks])
                else:
                    restored, nfe = solved["reguidance"].x, solved["reguidance"].nfe
                before, after = operator.consistency(cand, y), operator.consistency(restored, y)
                with torch.no_grad():
                    shown = operator.picture(y).clamp(-1, 1)  # y itself, the size of an image
                saved = [("restored", restored), ("candidate", cand), ("measurement", shown)]
                if x is not None:  # the clean input, as the prior saw it (resized with --resize)
                    saved.append(("truth", x[picks]))
                for kind, pictures in saved:
                    save_pngs(pictures, [out / kind / outputs[k] for k in picks])
                rows = [
                    {
                        "name": names[k],
                        "candidate": paired[k],
                        "output": f"restored/{outputs[k]}",
                        "consistency_before": float(before[j]),
                        "consistency_after": float(after[j]),
                        "nfe": int(nfe),
                        **({"spread": float(spread_map[j].mean())} if spread_map is not None else {}),
                        "run": run,
                        "input_sha256": input_sha[k],
                        "candidate_sha256": cand_sha[k],
                    }
                    for j, k in enumerate(picks)
                ]
                folder.append(log, rows)
                bar.update(len(picks))
    return names


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
    """A checked request: the wrapper's config and the method's options."""

    request: RestoreRequest
    config: ReGuidance
    method: Method | None


def plan_restore(request: RestoreRequest) -> RestorePlan:
    """Check ``request`` before any model loads: counts, the seed, the output folder (new, empty or a restore run's;
    apart from every input), the task (and that it fits a known prior), the wrapper's options and step counts
    (within the chain), the method and its options. ``InputError`` naming the flag (the task's is prefixed
    ``--task:``)."""
    from ..conventions import check_seed
    from ..diffusion import check_levels
    from .runs import check_apart, check_output_folder, known_signal_shape, path_inputs

    r = request
    check_positive_int("--batch-size", r.batch_size)
    check_seed("--seed", r.seed)
    inputs = {"--image": r.image, "--measurement": r.measurement, "--candidate": r.candidate}
    check_apart({"--out": r.out}, {**inputs, **path_inputs(r.prior, r.prior_config, r.checkpoint_dir, [r.task])})
    check_output_folder(r.out, "restore")
    check_positive_int("--samples", r.samples)
    if r.steps is not None:
        check_positive_int("--steps", r.steps)
    try:
        task = get_task(r.task)  # a malformed spec is refused before the prior loads
        shape = known_signal_shape(r.prior)
        if shape is not None:
            task.check(shape)
    except ValueError as err:
        raise InputError(f"--task: {' '.join(str(err).split())}") from err
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
    return RestorePlan(r, cfg, method)


def run_restore(
    plan: RestorePlan,
    load_prior: Callable[[str, str, str], Prior],
    *,
    fit_batch: Callable[[Prior, int, str, int], int] | None = None,
) -> dict[str, Any] | None:
    """Run a checked request (:func:`plan_restore`): the prior (``load_prior(name, device, dtype)``), one share of
    the inputs per process under ``torchrun`` (:func:`restore`), then on rank 0 ``report.json``
    (:func:`write_report`), which it returns (None on other ranks)."""
    from .runs import own_folder, prior_facts
    from .shard import sharded

    r = plan.request
    with sharded(r.device) as (rank, world, dev):  # torchrun: one share of the inputs per process
        prior = load_prior(r.prior, dev, r.dtype)
        n = len(range(rank, count_inputs(r.image if r.image is not None else r.measurement), world))
        batch_size = fit_batch(prior, r.batch_size, dev, n) if fit_batch is not None else r.batch_size
        # restore checks its inputs and pairing before it takes the folder's lock and writes anything
        names = restore(
            prior,
            r.task,
            r.out,
            images=r.image,
            measurements=r.measurement,
            candidates=r.candidate,
            method=plan.method,
            config=plan.config,
            seed=r.seed,
            batch_size=batch_size,
            rank=rank,
            world_size=world,
            progress=rank == 0,
            context=prior_facts(r.prior, r.dtype, config=r.prior_config, checkpoint_dir=r.checkpoint_dir),
            overwrite=r.overwrite,
            resize=r.resize,
            samples=r.samples,
        )
    if rank != 0:
        return None
    with own_folder(r.out, "restore"):
        return write_report(r.out, r.task, plan.config, names)
