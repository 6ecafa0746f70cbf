"""Our DPS and deepinv's DPS side by side: the same network, the same physics, the same measurements.

Usage (in the deepinv environment, `make test-deepinv` builds it):
    .venv-deepinv/bin/python scripts/deepinv_side_by_side.py [--images 8] [--steps 50] [--repeats 3]
        [--keep 0.3] [--step-size 1.0] [--weight 1.0] [--seed 0] [--threads 1] [--json FILE]

The network is the embedded ``mnist`` prior's UNet: ours calls it directly, deepinv 0.5.0's ``DPS`` (a
``PosteriorDiffusion`` on the VP SDE, DDPM solver, ``"norm"`` guidance) calls it through
:class:`reguidance.operators.deepinv.PriorDenoiser`. The physics is deepinv's ``Inpainting`` (``--keep`` of the pixels
kept at random, Gaussian noise 0.05 on [0, 1]) of the first ``--images`` committed MNIST test images; deepinv draws
``y_d``, ours gets it converted by :class:`~reguidance.operators.deepinv.DeepinvOperator`. Each method runs with its own
defaults for the guidance strength (ours: ``step_size`` zeta, deepinv: ``weight``; they are not the same quantity).

Quality, from the first repeat: PSNR and SSIM against the truth (:mod:`reguidance.evaluation.metrics`) and
consistency ``||A x - y|| / (sigma_y sqrt(m))`` (about 1 for the truth). Time: ``--repeats`` runs of each, interleaved
(ours, deepinv, ours, ...), each timed whole and divided by its steps; the median per step of each and their ratio
(deepinv / ours) are printed. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import deepinv as dinv
import torch
from torch import Tensor

from reguidance.conventions import BatchRNG
from reguidance.evaluation.metrics import psnr, ssim
from reguidance.guidance import dps
from reguidance.io.datasets import load_test_subset
from reguidance.operators.deepinv import DeepinvOperator, PriorDenoiser
from reguidance.priors import load_prior

SIGMA_D = 0.05  # deepinv's noise std on [0, 1]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--images", type=int, default=8, help="the first N committed MNIST test images")
    p.add_argument("--steps", type=int, default=50, help="DPS steps, both methods")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved")
    p.add_argument("--keep", type=float, default=0.3, help="share of the pixels the inpainting mask keeps")
    p.add_argument("--step-size", type=float, default=1.0, help="our DPS's zeta (its default)")
    p.add_argument("--weight", type=float, default=1.0, help="deepinv DPS's weight (its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (timings on a shared machine)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    for name in ("images", "steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be an integer >= 1, got {getattr(args, name)}")
    if not 0 < args.keep <= 1:
        p.error(f"--keep must lie in (0, 1], got {args.keep}")
    return args


def _timed(run: Callable[[], Tensor]) -> tuple[Tensor, float]:
    start = time.perf_counter()
    x = run()
    return x, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    prior = load_prior("mnist")
    images, _, _ = load_test_subset("mnist")
    truth = images[: args.images]  # [-1, 1]
    shape = tuple(truth.shape[1:])
    physics = dinv.physics.Inpainting(
        img_size=shape,
        mask=args.keep,
        noise_model=dinv.physics.GaussianNoise(SIGMA_D),
        rng=torch.Generator().manual_seed(args.seed),
    )
    op = DeepinvOperator(physics, shape)  # deepinv's [0, 1] images, sigma_y = 2 * 0.05 on ours
    torch.manual_seed(args.seed)  # deepinv's noise model draws from the global generator
    y_d = physics(op.image_to_deepinv(truth))
    y = op.measurement_from_deepinv(y_d)
    denoiser = PriorDenoiser(prior)  # the same network, as deepinv's denoiser

    def ours() -> Tensor:
        rng = BatchRNG.from_seed(args.seed, args.images)
        return dps(prior, op, y, steps=args.steps, step_size=args.step_size, rng=rng).x

    def theirs() -> Tensor:
        sampler = dinv.sampling.DPS(
            denoiser, num_steps=args.steps, weight=args.weight, rng=torch.Generator().manual_seed(args.seed)
        )
        with torch.no_grad():  # deepinv enables the gradient it needs itself
            x01 = sampler(y_d, physics, x_init=(args.images, *shape), seed=args.seed)
        return 2 * x01.float() - 1  # deepinv's DPS returns [0, 1] images (unchecked: a short run's may be noisy)

    runs: dict[str, list[float]] = {"ours": [], "deepinv": []}
    outputs: dict[str, Tensor] = {}
    nfe: dict[str, float] = {}
    for _ in range(args.repeats):
        for label, run in (("ours", ours), ("deepinv", theirs)):
            before = denoiser.nfe
            x, seconds = _timed(run)
            runs[label].append(seconds / args.steps)
            outputs.setdefault(label, x)
            if label == "deepinv":
                nfe[label] = (denoiser.nfe - before) / args.steps
    nfe["ours"] = 1.0  # one network evaluation (with its backward pass) per DPS step

    rows: dict[str, dict[str, float]] = {}
    for label, x in (("truth", truth), *outputs.items()):
        rows[label] = {
            "psnr": float(psnr(x, truth).mean()),
            "ssim": float(ssim(x, truth).mean()),
            "consistency": float(op.consistency(x, y).mean()),
        }
        if label in runs:
            rows[label]["seconds_per_step"] = statistics.median(runs[label])
            rows[label]["network_calls_per_step"] = nfe[label]
    ratio = rows["deepinv"]["seconds_per_step"] / rows["ours"]["seconds_per_step"]
    result: dict[str, object] = {
        "setup": {
            "images": args.images,
            "steps": args.steps,
            "repeats": args.repeats,
            "keep": args.keep,
            "sigma_d": SIGMA_D,
            "step_size": args.step_size,
            "weight": args.weight,
            "seed": args.seed,
            "threads": args.threads,
            "deepinv": dinv.__version__,
            "torch": torch.__version__,
        },
        "rows": rows,
        "time_ratio_deepinv_over_ours": ratio,
    }
    print(
        f"DPS side by side: mnist prior, deepinv Inpainting (keep {args.keep}, sigma {SIGMA_D} on [0, 1]), "
        f"{args.images} images, {args.steps} steps, {args.repeats} interleaved repeats, {args.threads} thread(s)"
    )
    print(f"{'':8} {'PSNR':>7} {'SSIM':>6} {'consistency':>11} {'s/step':>8} {'net calls/step':>14}")
    for label, row in rows.items():
        timing = (
            f" {row['seconds_per_step']:8.3f} {row['network_calls_per_step']:14.2f}"
            if "seconds_per_step" in row
            else ""
        )
        print(f"{label:8} {row['psnr']:7.2f} {row['ssim']:6.3f} {row['consistency']:11.3f}{timing}")
    print(f"per-step time ratio (deepinv / ours): {ratio:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
