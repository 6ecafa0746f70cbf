"""The README's speed table: `reguidance speed` on the embedded MNIST prior, repeated, written between
``<!-- speed:begin -->`` and ``<!-- speed:end -->``.

One `measure_speed` per dtype runs ``--repeats`` interleaved rounds (floor, method, floor, method, ...: the network's
floor, forward and forward + input gradient, timed right before each method); a round's ratio divides the method's
time by the floor's cost of the same evaluations (1.0: the method adds nothing beside the network). The table gives the
median of the rounds' ratios and their range. bf16 is measured only where the CPU has bf16 units (elsewhere it is
emulated and many times slower than fp32). The budget options exist for a quick check of the script itself.

Usage: .venv/bin/python scripts/speed_readme.py [--repeats 3] [--write README.md]   (about a minute per repeat)
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch

from reguidance.conventions import DTYPES
from reguidance.io.files import write_section
from reguidance.priors import load_prior
from reguidance.studies.speed import SpeedConfig, cpu_facts, measure_speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SpeedConfig()
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--dps-steps", type=int, default=defaults.dps_steps)
    parser.add_argument("--inversion-steps", type=int, default=defaults.inversion_steps)
    parser.add_argument("--daps-annealing-steps", type=int, default=defaults.daps_annealing_steps)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    cpu, has_bf16 = cpu_facts()
    cfg = SpeedConfig(
        batch_size=args.batch_size,
        dps_steps=args.dps_steps,
        inversion_steps=args.inversion_steps,
        daps_annealing_steps=args.daps_annealing_steps,
        repeats=args.repeats,
    )
    methods = ("dps", "daps", "inversion", "reguidance")
    lines = [
        "| dtype | floor fwd / fwd+grad (ms/image) | " + " | ".join(f"{m} ratio" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for dtype in ("fp32", "bf16") if has_bf16 else ("fp32",):
        report = measure_speed(load_prior("mnist").optimize(DTYPES[dtype]), cfg, dtype)
        floor = report["floor"]
        cells = [
            f"{r['ratio_to_floor']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"
            for r in (report["methods"][m] for m in methods)
        ]
        lines.append(
            f"| {dtype} | {floor['fwd_ms_per_image']:.2f} / {floor['fwd_grad_ms_per_image']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        f"Measured by `scripts/speed_readme.py --repeats {args.repeats}` on {datetime.date.today()}, {cpu} "
        f"({'with' if has_bf16 else 'no'} bf16 units), {torch.get_num_threads()} threads, batch {cfg.batch_size}, "
        f"{cfg.dps_steps} DPS steps, {cfg.inversion_steps} inversion steps, {cfg.daps_annealing_steps} DAPS annealing "
        "steps; ratios are the median of the interleaved repeats, the floor timed right before each method (range "
        "in brackets).",
    ]
    text = "\n".join(lines) + "\n"
    write_section(args.write, "speed", text)


if __name__ == "__main__":
    main()
