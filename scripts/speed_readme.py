"""The README's speed table: `reguidance speed` on the embedded MNIST prior, repeated, written between
``<!-- speed:begin -->`` and ``<!-- speed:end -->``.

Each repeat times the network's floor (forward, forward + input gradient) and each method; the ratio divides a
method's time by the floor's cost of the same evaluations (1.0: the method adds nothing beside the network). The table
gives the median of the repeats and their range. bf16 is measured only where the CPU has bf16 units (elsewhere it is
emulated and many times slower than fp32).

Usage: .venv/bin/python scripts/speed_readme.py [--repeats 3] [--write README.md]   (about a minute per repeat)
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from pathlib import Path

import torch

from reguidance.conventions import DTYPES
from reguidance.files import write_section
from reguidance.priors import load_prior
from reguidance.speed import SpeedConfig, cpu_facts, measure_speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    cpu, has_bf16 = cpu_facts()
    cfg = SpeedConfig(batch_size=16)
    methods = ("dps", "daps", "inversion", "reguidance")
    lines = [
        "| dtype | floor fwd / fwd+grad (ms/image) | " + " | ".join(f"{m} ratio" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for dtype in ("fp32", "bf16") if has_bf16 else ("fp32",):
        reports = []
        for _ in range(args.repeats):
            prior = load_prior("mnist").optimize(DTYPES[dtype])
            reports.append(measure_speed(prior, cfg, dtype))
        fwd = statistics.median(r["floor"]["fwd_ms_per_image"] for r in reports)
        grad = statistics.median(r["floor"]["fwd_grad_ms_per_image"] for r in reports)
        cells = []
        for m in methods:
            ratios = [r["methods"][m]["ratio_to_floor"] for r in reports]
            cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
        lines.append(f"| {dtype} | {fwd:.2f} / {grad:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Measured by `scripts/speed_readme.py --repeats {args.repeats}` on {datetime.date.today()}, {cpu} "
        f"({'with' if has_bf16 else 'no'} bf16 units), {torch.get_num_threads()} threads, batch {cfg.batch_size}, "
        f"{cfg.dps_steps} DPS steps, {cfg.inversion_steps} inversion steps, {cfg.daps_annealing_steps} DAPS annealing "
        "steps; ratios are the median of the repeats (range in brackets).",
    ]
    text = "\n".join(lines) + "\n"
    write_section(args.write, "speed", text)


if __name__ == "__main__":
    main()
