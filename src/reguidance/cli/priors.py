"""``reguidance train``, ``train-classifier``, ``sample`` and ``models``: the priors, their training and their
quality."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import support
from .base import cli
from .support import (
    POSITIVE,
    SEED,
    FiniteFloat,
    _apart,
    _image_folder,
    _options,
    _positive,
    _runtime,
    _writable,
    device_option,
    flags,
    prior_options,
    runtime_options,
    threads_option,
)

#: the flags of ``reguidance train``, in --help order
TRAIN_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--dataset",
        "--data",
        "dataset",
        default=None,
        help="Training data: mnist, fashion_mnist, emoji (their train splits) or folder:DIR (every PNG/JPEG/WebP "
        "file in DIR, centre square resized to --size, alpha over --background). Default: the config's, else mnist.",
    ),
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for checkpoints, the log, the EMA weights and the sample grid.",
    ),
    click.option(
        "--size", type=int, default=None, help="Image size of the UNet (default 32; mnist and fashion_mnist: 32)."
    ),
    click.option(
        "--channels", type=click.Choice(["1", "3"]), default=None, help="1 (gray) or 3 (RGB); default 1, emoji 3."
    ),
    click.option("--hflip/--no-hflip", default=None, help="Mirror each drawn image left-right with probability 1/2."),
    click.option("--background", default=None, help="Colour that transparent pixels are composited over (white)."),
    click.option("--dropout", type=FiniteFloat(min=0, max=1, max_open=True), default=None, help="UNet dropout (0)."),
    click.option(
        "--init",
        default=None,
        help="Fine-tune this prior (an embedded name, a guided-diffusion checkpoint, a trained folder) instead of "
        "starting from random weights.",
    ),
    click.option("--sample-every", type=int, default=None, help="Write a grid of 64 samples every N steps (0: never)."),
    click.option("--steps", type=int, default=None, help="Number of optimizer steps (default 100000)."),
    click.option("--batch-size", type=int, default=None, help="Images per step (default 32)."),
    click.option("--minutes", type=POSITIVE, default=None, help="Stop cleanly (and save) after this much training."),
    click.option("--seed", type=SEED, default=None, help="Seed of data order, noise and initialisation (default 0)."),
    click.option("--lr", type=POSITIVE, default=None, help="AdamW learning rate (default 3e-4)."),
    click.option(
        "--ema-decay",
        type=FiniteFloat(min=0, max=1, max_open=True),
        default=None,
        help="EMA decay (default 0.999, with warm-up).",
    ),
    click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast (faster on CPUs with AMX / AVX512-BF16)."),
    device_option,
    threads_option,
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="JSON file of TrainConfig fields; flags override it.",
    ),
    click.option(
        "--resume",
        is_flag=True,
        help="Continue from the last checkpoint in --out; --steps and --minutes (counted from the run's start) "
        "apply anew, every other setting comes from the checkpoint.",
    ),
]


#: the flags of ``reguidance train-classifier``, in --help order
TRAIN_CLASSIFIER_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--dataset", type=click.Choice(["mnist", "fashion_mnist", "emoji"]), required=True),
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for <dataset>_classifier.safetensors and its .json facts.",
    ),
    click.option("--epochs", default=6, show_default=True),
    click.option("--batch-size", default=128, show_default=True),
    click.option(
        "--lr", type=POSITIVE, default=2e-3, show_default=True, help="Peak learning rate (one-cycle schedule)."
    ),
    click.option("--seed", type=SEED, default=0, show_default=True),
    threads_option,
]


#: the flags of ``reguidance sample``, in --help order
SAMPLE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--prior", "prior_name", required=True, help="A known model name (mnist, fashion_mnist) or a file."),
    click.option("--n", "n", default=1000, show_default=True, help="Number of samples."),
    click.option("--steps", default=50, show_default=True, help="DDIM steps (eta = 0)."),
    click.option(
        "--seed", type=SEED, default=0, show_default=True, help="Sample i starts from noise seeded by (seed, i)."
    ),
    click.option("--batch-size", default=250, show_default=True, help="Samples per batch (does not change results)."),
    click.option(
        "--dataset",
        type=click.Choice(["mnist", "fashion_mnist", "emoji"]),
        default=None,
        help="Reference data and metric classifier (default: the prior's name).",
    ),
    click.option(
        "--memorisation/--no-memorisation",
        default=True,
        show_default=True,
        help="Also measure memorisation: each sample's distance to its nearest training image against the same for "
        "the reference images (needs the training split on disk: make data); writes memorisation.png.",
    ),
    click.option(
        "--reference",
        type=click.Choice(["test", "subset"]),
        default="test",
        show_default=True,
        help="Compare with the full test split or the committed 256-image test subset.",
    ),
    click.option(
        "--clip/--no-clip",
        default=True,
        show_default=True,
        help="Clamp each step's x0 estimate to [-1, 1] (guided-diffusion's clip_denoised).",
    ),
    runtime_options,
    prior_options,
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for samples.png (the first 100 samples) and samples.npz (all, uint8).",
    ),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the report (fd_cls, fd_cls_floor, class_histogram, mean_confidence) here.",
    ),
]


#: what ``reguidance train`` writes into ``--out`` (:mod:`reguidance.app.train`)
TRAIN_OUTPUTS = (
    "log.jsonl", "ema.safetensors", "model.json", "samples.png", "README.md",
    *(f"checkpoint/{f}" for f in ("model.safetensors", "ema.safetensors", "state.pt", "config.json")),
)  # fmt: skip


@cli.command()
@flags(TRAIN_OPTIONS)
def train(out: Path, config_path: Path | None, resume: bool, threads: int | None, device: str, **flags: Any) -> None:
    """Train (or fine-tune) an eps-prediction ADM UNet (DDPM, linear 1000-step chain) on a data set or a folder."""
    import json
    import shlex
    import sys

    from ..app.runs import own_folder
    from ..app.train import SMALL_UNET, TrainConfig
    from ..app.train import train as run_training
    from ..conventions import InputError
    from ..io.files import claim

    base: dict[str, object] = {}
    if config_path is not None:
        try:
            base = json.loads(config_path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"--config {config_path} is not valid JSON: {err}") from err
        if not isinstance(base, dict):
            raise InputError(
                f"--config {config_path} holds a JSON {type(base).__name__}; expected an object of TrainConfig fields"
            )
    given = {k: v for k, v in flags.items() if v is not None}
    for flag in ("steps", "batch_size", "size"):
        _positive(f"--{flag.replace('_', '-')}", given.get(flag))
    if given.get("sample_every", 0) < 0:
        raise InputError(f"--sample-every must be an integer >= 0, got {given['sample_every']}")
    unet_given = {
        key: given.pop(flag) for flag, key in (("size", "image_size"), ("dropout", "dropout")) if flag in given
    }
    channels = given.pop("channels", None)
    if channels is None and given.get("dataset", base.get("dataset")) == "emoji" and "unet" not in base:
        channels = "3"  # the colour set's default; a config's own UNet is left as it is
    if channels is not None:
        unet_given.update(in_channels=int(channels), out_channels=int(channels))
    base.update(given)
    if unet_given:
        unet = base.get("unet", SMALL_UNET)
        if not isinstance(unet, dict):
            raise InputError(f"--config {config_path}: unet must be an object of ADMUNet arguments, got {unet!r}")
        base["unet"] = {**unet, **unet_given}
    with _options(f"--config {config_path}" if config_path is not None else None):
        cfg = TrainConfig.from_dict(base).validate()
    if cfg.dataset.startswith("folder:"):
        _image_folder(Path(cfg.dataset[7:]), f"--data {cfg.dataset}")  # every file read through before any write
    _writable(out, "--out", folder=True, kind="train")
    _apart({"--out": out}, {"--config": config_path})
    device = _runtime(device, threads)
    with own_folder(out, "train"):
        for made in TRAIN_OUTPUTS:  # train writes these itself: recorded first, a user's file of that name refused
            claim(out / made)
        command = "reguidance " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        facts = run_training(cfg, out, resume=resume, device=device, command=command)
    click.echo(
        f"steps {facts['steps_done']}, wall {facts['train_wall_s']} s, last loss {facts['last_loss']:.4f}; "
        f"EMA weights: {out / 'ema.safetensors'}"
    )


@cli.command()
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to look for checkpoint files (default: $REGUIDANCE_CHECKPOINTS, then ~/.cache/reguidance).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(checkpoint_dir: Path | None, as_json: bool) -> None:
    """List the known priors and whether each is present locally."""
    import json

    from ..priors.zoo import list_models

    rows = list_models(checkpoint_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'name':<20}{'kind':<12}{'params':>12}  {'present':<8} where / how to get it")
    for r in rows:
        if r["present"]:
            where = r["path"]
        elif r["kind"] == "embedded":
            where = "embedded asset missing from this build"
        else:
            where = f"download {r['url']}"
        click.echo(f"{r['name']:<20}{r['kind']:<12}{r['n_params']:>12,}  {'yes' if r['present'] else 'no':<8} {where}")
        if not r["present"] and r["searched"]:
            click.echo(f"{'':<55}as {r['filename']} into one of (searched in this order): {', '.join(r['searched'])}")


@cli.command("train-classifier")
@flags(TRAIN_CLASSIFIER_OPTIONS)
def train_classifier_cmd(
    dataset: str, out: Path, epochs: int, batch_size: int, lr: float, seed: int, threads: int | None
) -> None:
    """Train the metric CNN (features for FD-cls) on a dataset's train split; report val and test accuracy."""
    from ..evaluation.classifier import train_classifier
    from ..io.files import claim

    _positive("--epochs", epochs)
    _positive("--batch-size", batch_size)
    _writable(out, "--out", folder=True)
    made = [out / f"{dataset}_classifier.safetensors", out / f"{dataset}_classifier.json"]
    for path in made:
        _writable(path, "--out", folder=False)  # replaces only files it wrote
    _runtime(threads=threads)
    for path in made:  # train_classifier writes them itself: recorded in the folder's manifest first
        claim(path)
    facts = train_classifier(dataset, out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    click.echo(
        f"{dataset}: best epoch {facts['epoch']}, val accuracy {facts['val_accuracy']:.4f}, "
        f"test accuracy {facts['test_accuracy']:.4f}; {facts['file']} sha256 {facts['sha256']}"
    )


@cli.command()
@flags(SAMPLE_OPTIONS)
def sample(
    prior_name: str,
    n: int,
    steps: int,
    seed: int,
    batch_size: int,
    dataset: str | None,
    memorisation: bool,
    reference: str,
    clip: bool,
    threads: int | None,
    device: str,
    dtype: str,
    out: Path,
    json_path: Path | None,
    prior_config: Path | None,
    checkpoint_dir: Path | None,
) -> None:
    """Draw unconditional samples from a prior and score them: FD-cls with the metric classifier (not FID) against
    its real-data floor, and memorisation against the training split."""
    import json
    import time

    from ..app.memory import check_fits_in_memory
    from ..app.runs import known_signal_shape, own_folder
    from ..app.sampling import (
        reference_images,
        sample_report,
        save_memorisation,
        save_samples,
        training_split,
        write_report,
    )
    from ..app.train import draw_samples
    from ..evaluation.classifier import evaluate_samples, load_classifier

    for flag, value in (("--n", n), ("--steps", steps), ("--batch-size", batch_size)):
        _positive(flag, value)
    dataset = dataset or prior_name
    if dataset not in ("mnist", "fashion_mnist", "emoji"):
        raise click.BadParameter(f"cannot tell the dataset of prior {prior_name!r}; pass it", param_hint="--dataset")
    _writable(out, "--out", folder=True, kind="sample")
    _writable(json_path, "--json", folder=False)
    _apart({"--out": out, "--json": json_path}, {})
    _runtime(device, threads)
    shape = known_signal_shape(prior_name)
    if shape is not None:  # a file's shape is known once it loads: draw_samples checks it then
        check_fits_in_memory("--n", n, shape)
    classifier = load_classifier(dataset)  # before the prior loads: a data set without one says so now
    ref = reference_images(dataset, reference)
    train = training_split(dataset) if memorisation else None  # before the prior loads: a missing split says so now
    prior = support.load_prior(prior_name, device, dtype)
    t0 = time.perf_counter()
    x = draw_samples(prior, n, steps=steps, seed=seed, batch_size=batch_size, clip=clip, progress=True).cpu()
    wall = time.perf_counter() - t0
    settings = {
        "prior": prior_name,
        "dataset": dataset,
        "reference": reference,
        "n": n,
        "steps": steps,
        "seed": seed,
        "sampler": "ddim eta=0" + (", x0 clipped" if clip else ""),
        "dtype": dtype,
    }
    report = sample_report(settings, evaluate_samples(classifier, x, ref), wall)
    memorised: dict[str, Any] | None = None
    with own_folder(out, "sample"):
        save_samples(x, out)
        if train is not None:
            memorised = save_memorisation(x, ref, train, out, prior_name, dataset)
    click.echo(json.dumps(report, indent=2))
    if memorised is not None:
        report["memorisation"] = m = memorised
        click.echo(
            f"memorisation: {m['near_copy_share']:.1%} of samples closer to a training image than 99% of the "
            f"reference images are (about 1% without copies); picture: {out / 'memorisation.png'}"
        )
    if json_path is not None:
        write_report(report, json_path)
        click.echo(f"report: {json_path}")
