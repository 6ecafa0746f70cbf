"""The ``reguidance`` command. Errors in user input print one line and exit with status 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reguidance")
def cli() -> None:
    """ReGuidance: make diffusion posterior samplers solve hard inverse problems."""


@cli.command()
@click.option("--dim", default=16, show_default=True, help="Dimension d of the mixture.")
@click.option("--modes", default=4, show_default=True, help="Number of mixture components K.")
@click.option("--rank", default=2, show_default=True, help="Rank of each component's principal subspace.")
@click.option("--measurements", default=2, show_default=True, help="Number of linear measurements m (m < d).")
@click.option("--noise", default=0.5, show_default=True, help="Measurement noise sigma_y.")
@click.option("--candidates", default=256, show_default=True, help="Number of problems (one candidate each).")
@click.option("--seed", default=0, show_default=True)
@click.option("--candidate", "candidate", type=click.Choice(["dps", "pinv"]), default="dps", show_default=True,
              help="Baseline producing the candidates: DPS with few steps, or the pseudo-inverse.")
@click.option("--candidate-steps", default=10, show_default=True, help="Steps of the candidate DPS.")
@click.option("--inversion-steps", default=100, show_default=True)
@click.option("--inversion-method", type=click.Choice(["euler", "heun", "fixed_point"]), default="euler",
              show_default=True)
@click.option("--t-end", default=0.3, show_default=True, help="Inversion depth, fraction of the chain in (0, 1].")
@click.option("--dps-steps", default=100, show_default=True)
@click.option("--zeta", default=0.2, show_default=True, help="DPS step size.")
@click.option("--sampler", type=click.Choice(["ddim", "ddpm"]), default="ddpm", show_default=True,
              help="DPS steps after the inversion.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report as JSON here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("runs/theory/projection.png"), show_default=True, help="Where to save the picture.")
def theory(json_path: Path | None, plot_path: Path, **options: object) -> None:
    """The paper's claim, measured on an exact-score Gaussian mixture."""
    from .theory import TheoryConfig, format_table, run_theory, save_projection_plot, write_json

    cfg = TheoryConfig(**{k: v for k, v in options.items()})  # type: ignore[arg-type]
    report, clouds = run_theory(cfg, progress=True)
    click.echo(format_table(report))
    if json_path is not None:
        write_json(report, json_path)
        click.echo(f"report: {json_path}")
    click.echo(f"picture: {save_projection_plot(clouds, plot_path)}")


@cli.command("theory-sweep")
@click.option("--candidates", default=128, show_default=True, help="Problems per configuration.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def theory_sweep(candidates: int, seed: int, json_path: Path | None) -> None:
    """The sweep over the wrapper's options (sampler, t_end, zeta) that chose its defaults."""
    from .theory import TheoryConfig, format_sweep, sweep_theory, write_json

    rows = sweep_theory(TheoryConfig(candidates=candidates, seed=seed))
    click.echo(format_sweep(rows))
    if json_path is not None:
        write_json({"rows": rows}, json_path)  # type: ignore[dict-item]
        click.echo(f"report: {json_path}")


@cli.command()
@click.option("--dataset", type=click.Choice(["mnist", "fashion_mnist"]), default=None,
              help="Training data (train split). Default: the config file's, else mnist.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for checkpoints, the log, the EMA weights and the sample grid.")
@click.option("--steps", type=int, default=None, help="Number of optimizer steps (default 100000).")
@click.option("--batch-size", type=int, default=None, help="Images per step (default 32).")
@click.option("--minutes", type=float, default=None, help="Stop cleanly (and save) after this much training.")
@click.option("--seed", type=int, default=None, help="Seed of data order, noise and initialisation (default 0).")
@click.option("--lr", type=float, default=None, help="AdamW learning rate (default 3e-4).")
@click.option("--ema-decay", type=float, default=None, help="EMA decay (default 0.999, with warm-up).")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast (faster on CPUs with AMX / AVX512-BF16).")
@click.option("--threads", type=int, default=None, help="torch.set_num_threads for this run.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="JSON file of TrainConfig fields; flags override it.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
def train(out: Path, config_path: Path | None, resume: bool, threads: int | None, **flags: object) -> None:
    """Train an eps-prediction ADM UNet (DDPM, linear 1000-step chain) on MNIST or Fashion-MNIST."""
    import json

    import torch

    from .train import TrainConfig
    from .train import train as run_training

    if threads is not None:
        torch.set_num_threads(threads)
    base = json.loads(config_path.read_text()) if config_path is not None else {}
    base.update({k: v for k, v in flags.items() if v is not None})
    facts = run_training(TrainConfig.from_dict(base), out, resume=resume)
    click.echo(
        f"steps {facts['steps_done']}, wall {facts['train_wall_s']} s, last loss {facts['last_loss']:.4f}; "
        f"EMA weights: {out / 'ema.safetensors'}"
    )


@cli.command()
@click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to look for checkpoint files (default: $REGUIDANCE_CHECKPOINTS, then ~/.cache/reguidance).")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(checkpoint_dir: Path | None, as_json: bool) -> None:
    """List the known priors and whether each is present locally."""
    import json

    from .priors.zoo import list_models

    rows = list_models(checkpoint_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'name':<20}{'kind':<12}{'params':>12}  {'present':<8} where / how to get it")
    for r in rows:
        where = r["path"] if r["present"] else (r.get("url") or "embedded asset missing from this build")
        click.echo(f"{r['name']:<20}{r['kind']:<12}{r['n_params']:>12,}  {'yes' if r['present'] else 'no':<8} {where}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group, turning bad input into one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="reguidance", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return 2
    except (ValueError, FileNotFoundError) as e:
        message = " ".join(str(e).split())
        click.echo(f"error: {message}", err=True)
        return 2
    return 0


def run() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())


if __name__ == "__main__":
    run()
