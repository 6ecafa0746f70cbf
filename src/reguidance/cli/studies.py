"""``reguidance theory``, ``theory-sweep`` and ``speed``: the experiments behind the docs
(:mod:`reguidance.studies`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import support
from .base import cli
from .support import (
    FINITE,
    SEED,
    WrapperCommand,
    _apart,
    _options,
    _picture_suffix,
    _runtime,
    _writable,
    fast_path_options,
    fast_paths,
    flags,
    prior_options,
    runtime_options,
)

#: the flags of ``reguidance theory``, in --help order
THEORY_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--dim", default=16, show_default=True, help="Dimension d of the mixture."),
    click.option("--modes", default=4, show_default=True, help="Number of mixture components K."),
    click.option("--rank", default=2, show_default=True, help="Rank of each component's principal subspace."),
    click.option("--measurements", default=2, show_default=True, help="Number of linear measurements m (m < d)."),
    click.option("--noise", type=FINITE, default=0.5, show_default=True, help="Measurement noise sigma_y."),
    click.option("--candidates", default=256, show_default=True, help="Number of problems (one candidate each)."),
    click.option(
        "--seed",
        type=SEED,
        default=1,
        show_default=True,
        help="Seeds the problems; theory-sweep chose the defaults on seed 0.",
    ),
    click.option(
        "--testbed-seed", type=SEED, default=0, show_default=True, help="Seeds the mixture and the measurement matrix."
    ),
    click.option(
        "--candidate",
        "candidate",
        type=click.Choice(["dps", "pinv"]),
        default="dps",
        show_default=True,
        help="Baseline producing the candidates: DPS with few steps, or the pseudo-inverse.",
    ),
    click.option("--candidate-steps", default=10, show_default=True, help="Steps of the candidate DPS."),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the report as JSON here.",
    ),
    click.option(
        "--plot",
        "plot_path",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_picture_suffix,
        default=Path("runs/theory/projection.png"),
        show_default=True,
        help="Where to save the picture.",
    ),
]


#: the flags of ``reguidance theory-sweep``, in --help order
THEORY_SWEEP_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--candidates", default=128, show_default=True, help="Problems per configuration."),
    click.option(
        "--seed", type=SEED, default=0, show_default=True, help="Seeds the problems (the reported theory table uses 1)."
    ),
    click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None),
]


#: the flags of ``reguidance speed``, in --help order
SPEED_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--prior",
        "prior_name",
        default="mnist",
        show_default=True,
        help="Embedded prior, a checkpoint path, or a known configuration with random weights (ffhq_10m).",
    ),
    runtime_options,
    prior_options,
    click.option("--batch-size", default=16, show_default=True),
    click.option("--dps-steps", default=20, show_default=True, help="DPS steps timed (1000 in a real run)."),
    click.option("--inversion-steps", default=10, show_default=True),
    click.option("--daps-annealing-steps", default=4, show_default=True),
    click.option(
        "--repeats",
        default=3,
        show_default=True,
        help="Rounds of floor, method, floor, method, ...: each ratio is the median over rounds, with its range.",
    ),
    fast_path_options,
    click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None),
]


@cli.command(cls=WrapperCommand)
@flags(THEORY_OPTIONS)
def theory(json_path: Path | None, plot_path: Path, wrapper: dict[str, Any], **options: Any) -> None:
    """The paper's claim, measured on an exact-score Gaussian mixture."""
    from ..io.files import atomic_path, atomic_write_json
    from ..studies.theory import TheoryConfig, format_table, run_theory, save_projection_plot
    from ..wrapper import ReGuidance

    with _options():
        cfg = TheoryConfig(**options, reguidance=ReGuidance().replace(**wrapper))
    _writable(json_path, "--json", folder=False)
    _writable(plot_path, "--plot", folder=False)
    _apart({"--plot": plot_path}, {"--json": json_path})
    report, clouds = run_theory(cfg, progress=True)
    click.echo(format_table(report))
    if json_path is not None:
        atomic_write_json(json_path, report)
        click.echo(f"report: {json_path}")
    with atomic_path(plot_path) as tmp:
        save_projection_plot(clouds, tmp)
    click.echo(f"picture: {plot_path}")


@cli.command("theory-sweep")
@flags(THEORY_SWEEP_OPTIONS)
def theory_sweep(candidates: int, seed: int, json_path: Path | None) -> None:
    """The sweep over the wrapper's options (sampler, t_end, step_size) that chose its defaults."""
    from ..io.files import atomic_write_json
    from ..studies.theory import TheoryConfig, format_sweep, sweep_theory

    with _options():
        cfg = TheoryConfig(candidates=candidates, seed=seed)
    _writable(json_path, "--json", folder=False)
    rows = sweep_theory(cfg)
    click.echo(format_sweep(rows))
    if json_path is not None:
        atomic_write_json(json_path, {"rows": rows})
        click.echo(f"report: {json_path}")


@cli.command()
@flags(SPEED_OPTIONS)
def speed(
    prior_name: str,
    device: str,
    dtype: str,
    threads: int | None,
    batch_size: int,
    dps_steps: int,
    inversion_steps: int,
    daps_annealing_steps: int,
    repeats: int,
    use_compile: bool,
    compile_mode: str,
    channels_last: bool,
    json_path: Path | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """Per-image time of DPS, DAPS, the inversion and ReGuidance next to the network's floor."""
    from ..io.files import atomic_write_json
    from ..studies.speed import SpeedConfig, format_speed, measure_speed, timing_prior

    with _options():
        cfg = SpeedConfig(
            batch_size=batch_size,
            dps_steps=dps_steps,
            inversion_steps=inversion_steps,
            daps_annealing_steps=daps_annealing_steps,
            repeats=repeats,
        )
    _writable(json_path, "--json", folder=False)
    _apart({"--json": json_path}, {})
    _runtime(device, threads)
    optimize = fast_paths(use_compile, compile_mode, channels_last)
    prior = timing_prior(prior_name, device, dtype, load=support.load_prior, prior_config=prior_config, **optimize)
    report = measure_speed(prior, cfg, dtype)
    click.echo(format_speed(report))
    if json_path is not None:
        atomic_write_json(json_path, report)
