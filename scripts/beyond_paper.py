"""Two additions beyond the paper, measured on test images of the CPU protocol, written into BENCHMARK.md between
``<!-- beyond:begin -->`` and ``<!-- beyond:end -->`` (and ``docs/uncertainty.png``):

1. **Uncertainty** (:func:`reguidance.wrapper.spread`): ``K`` restorations per candidate from one latent; their
   per-pixel standard deviation as a map, and its calibration: how often the truth lies within 1 and 1.96 standard
   deviations of the mean (68% and 95% if the spread were a calibrated Gaussian posterior).
2. **Adaptive depth** (:func:`reguidance.wrapper.adaptive_depth`): ``t_end`` per image from a few depths, chosen by
   the measurement consistency (no truth), against the tuned fixed ``t_end`` at about the same NFE.

Candidates come from ``--method`` with its tuned options; the wrapper's options are the tuned ones (the fixed-depth
restoration is the spread's first draw). Usage (about 6 minutes on one core):

    .venv/bin/python scripts/beyond_paper.py --prior mnist --ids 0:16 --write BENCHMARK.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from reguidance.bench.defaults import method_for, wrapper_for
from reguidance.bench.inputs import dataset_for, load_test_images
from reguidance.evaluation.metrics import Interval, psnr, ssim
from reguidance.evaluation.stats import paired_comparison
from reguidance.guidance.solve import Problem, solve
from reguidance.io.files import write_section
from reguidance.io.images import save_grid
from reguidance.priors import load_prior
from reguidance.tasks import get_task, method_rng, parse_ids
from reguidance.wrapper import adaptive_depth, reward, spread


def _cell(d: Interval) -> str:
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="mnist")
    parser.add_argument("--ids", default="0:16")
    parser.add_argument("--tasks", default="box20,box20c,sr4,sr8,deblur")
    parser.add_argument("--method", default="dps")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--depths", default="0.1,0.3,0.5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--picture", type=Path, default=Path("docs/uncertainty.png"))
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    id_range = parse_ids(args.ids)
    images, _ = load_test_images(dataset_for(args.prior, None), id_range)  # checks the range before it is listed
    ids = list(id_range)
    depths = [float(d) for d in args.depths.split(",")]
    prior = load_prior(args.prior)
    spread_rows, depth_rows, pictures = [], [], []
    for name in args.tasks.split(","):
        task = get_task(name)
        truth = images[ids]
        operator, y = task.measure(truth, ids, args.seed, split="test")
        method = method_for(task, args.method, "cpu", prior=args.prior)
        cfg = wrapper_for(task, args.method, "cpu", prior=args.prior)
        rng = method_rng(args.seed, task.name, args.method, ids, split="test")
        cand = solve(method, Problem(prior, operator, y, rng)).x.clamp(-1, 1)
        s = spread(cand, y, operator, prior, k=args.k, config=cfg, seed=args.seed, ids=ids)
        err = (truth - s.mean.clamp(-1, 1)).abs()
        within1 = float((err <= s.std).double().mean())
        within2 = float((err <= 1.96 * s.std).double().mean())
        spread_rows.append(
            f"| {name} | {args.k} | {float(s.std.mean()):.3f} | {float(err.mean()):.3f} | {within1:.2f} | "
            f"{within2:.2f} | {float(torch.corrcoef(torch.stack([s.std.flatten(), err.flatten()]))[0, 1]):.2f} |"
        )
        std_picture = (s.std / s.std.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)) * 2 - 1
        pictures += [
            torch.stack([truth[i], cand[i], s.mean[i].clamp(-1, 1), std_picture[i], err[i] - 1]) for i in range(4)
        ]
        fixed = s.samples[0].clamp(-1, 1)
        adaptive, chosen = adaptive_depth(cand, y, operator, prior, depths=depths, config=cfg, seed=args.seed, ids=ids)
        x = adaptive.x.clamp(-1, 1)
        nfe_fixed = s.nfe - (args.k - 1) * cfg.dps_steps  # the spread's first draw: inversion + one DPS run
        with torch.no_grad():
            d_ssim = paired_comparison(ssim(x, truth), ssim(fixed, truth))
            d_psnr = paired_comparison(psnr(x, truth), psnr(fixed, truth))
            d_reward = paired_comparison(reward(operator, x, y), reward(operator, fixed, y))
            c_fixed = float(operator.consistency(fixed, y).mean())
            c_adapt = float(operator.consistency(x, y).mean())
        picks = ", ".join(f"{d:g}: {int((chosen == d).sum())}" for d in depths)
        depth_rows.append(
            f"| {name} | {cfg.t_end:g} | {nfe_fixed} vs {adaptive.nfe} | {picks} | {_cell(d_ssim)} | "
            f"{_cell(d_psnr)} | {_cell(d_reward)} | {c_fixed:.2f} → {c_adapt:.2f} |"
        )
        print(spread_rows[-1], depth_rows[-1], sep="\n", flush=True)
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    save_grid(torch.cat(pictures), args.picture, nrow=5)
    text = "\n".join(
        [
            f"Made by `scripts/beyond_paper.py --prior {args.prior} --ids {args.ids} --method {args.method} "
            f"--k {args.k} --depths {args.depths}` on test images, {args.method} candidates with their tuned options.",
            "",
            f"**Uncertainty**: {args.k} restorations per candidate from one latent. Mean per-pixel standard deviation, "
            "mean absolute error of the mean restoration, how often the truth lies within 1 and 1.96 standard "
            "deviations of the mean (0.68 and 0.95 if the spread were a calibrated Gaussian posterior), and the "
            "per-pixel correlation between the spread and the error:",
            "",
            "| task | K | mean std | mean abs error | within 1 std | within 1.96 std | corr(std, error) |",
            "|---|---|---|---|---|---|---|",
            *spread_rows,
            "",
            f"![uncertainty]({args.picture}) (rows: four images per task; columns: truth | candidate | mean of the "
            "restorations | standard deviation (scaled per image) | absolute error)",
            "",
            f"**Adaptive depth**: `t_end` per image from {{{args.depths}}} by the consistency closest to 1, each depth "
            "with a third of the budget, against the tuned fixed `t_end` (paired, adaptive minus fixed):",
            "",
            "| task | fixed t_end | NFE fixed vs adaptive | depths chosen | ΔSSIM | ΔPSNR | Δreward | consistency |",
            "|---|---|---|---|---|---|---|---|",
            *depth_rows,
        ]
    )
    write_section(args.write, "beyond", text)


if __name__ == "__main__":
    main()
