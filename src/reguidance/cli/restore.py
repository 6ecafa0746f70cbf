"""``reguidance restore``: ReGuidance on a user's own files (:mod:`reguidance.app.restore`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import support
from .base import cli
from .support import (
    _OVERWRITE,
    SEED,
    WrapperCommand,
    _fit_batch,
    _options,
    _runtime,
    _writable,
    fast_path_options,
    fast_paths,
    flags,
    prior_options,
    runtime_options,
)

#: the flags of ``reguidance restore``, in --help order
RESTORE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--prior", "prior_name", default="mnist", show_default=True, help="Embedded prior name, or a path."),
    click.option(
        "--task",
        required=True,
        help="A name (box16, box20, box16c, box20c, sr4, sr8, deblur), a preset (paper:box128c, paper:box128, "
        "paper:sr8, paper:sr16, paper:gauss, paper:motion) or a spec (box:0.5c, sr:16, blur:gauss,std=3, mask:PATH; "
        "see reguidance.tasks).",
    ),
    click.option(
        "--image",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Clean image file or folder: the measurement is simulated. Images must have the prior's size "
        "(see --resize).",
    ),
    click.option(
        "--measurement",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Measurement image file or folder (y), of the task's measurement size (never resized).",
    ),
    click.option(
        "--candidate",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Candidate image file or folder (one per input).",
    ),
    click.option("--method", default=None, help="Make the candidates with this method instead (dps, daps, pinv, ...)."),
    click.option("--steps", type=int, default=None, help="Step count of --method."),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True),
    click.option("--seed", type=SEED, default=0, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option(
        "--resize",
        is_flag=True,
        help="Fit --image and --candidate images of another size to the prior's (centre-cropped to a square, then "
        "resized (bicubic), the rule of bench --data folder:) and colour ones to a gray prior (ITU-R 601 luma); "
        "without it such an image is an error. Measurements are never resized or converted.",
    ),
    click.option(
        "--samples",
        default=1,
        show_default=True,
        help="K > 1: K restorations per input from one latent; their per-pixel standard deviation goes to OUT/std/ "
        "(white = 0.5 or more) and its mean to the report. The first is the restoration written.",
    ),
    runtime_options,
    prior_options,
    fast_path_options,
    _OVERWRITE,
]


@cli.command(cls=WrapperCommand)
@flags(RESTORE_OPTIONS)
def restore(
    prior_name: str,
    threads: int | None,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    **options: Any,
) -> None:
    """ReGuidance on your own images: writes restored PNGs and per-image consistency before and after."""
    from functools import partial

    from ..app.restore import RestoreRequest, plan_restore, run_restore

    request = RestoreRequest(prior=prior_name, **options)
    with _options():
        plan = plan_restore(request)
    out = request.out
    _writable(out, "--out", folder=True, kind="restore")
    _runtime(request.device, threads)
    loader = partial(support.load_prior, **fast_paths(use_compile, compile_mode, channels_last))
    report = run_restore(plan, loader, fit_batch=_fit_batch)
    if report is None:  # a rank > 0 under torchrun
        return
    rows = report["images"]
    before = sum(r["consistency_before"] for r in rows) / len(rows)
    after = sum(r["consistency_after"] for r in rows) / len(rows)
    click.echo(
        f"{len(rows)} images restored into {out / 'restored'}; mean consistency {before:.2f} -> {after:.2f} "
        f"(1 = explains the measurement up to its noise); report: {out / 'report.json'}; pictures: "
        f"{out / 'grid.png'}, {out / 'report.html'}"
    )
