"""Cost guidance at 256x256: seconds per network evaluation and peak memory of the real architectures (random
weights: no checkpoint is needed to time them), and what whole runs cost from there.

Usage: .venv/bin/python scripts/cost_table.py [--models ffhq_10m,imagenet256_uncond] [--dtypes fp32,bf16]
       [--write README.md]

Each (model, precision) is measured in a fresh process (the peak resident memory is per process), batch 1. With
``--write`` the table replaces the text between ``<!-- cost:begin -->`` and ``<!-- cost:end -->`` of that file.
Totals are the measured per-evaluation times times the evaluation counts of the default runs:
ReGuidance (100-step inversion, 100 DPS steps: 100 forward + 100 forward-with-gradient), DPS-1000 (1000
forward-with-gradient), DAPS at the reference budget (200 x 5 = 1000 forward).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from reguidance.io.files import write_section
from reguidance.studies.speed import cpu_facts

CHILD = """
import json, sys, torch
from reguidance.conventions import DTYPES
from reguidance.priors import random_prior
from reguidance.studies.speed import measure_floor
name, dtype = sys.argv[1], sys.argv[2]
prior = random_prior(name).optimize(DTYPES[dtype])
print(json.dumps({"model": name, "dtype": dtype, **measure_floor(prior, batch_size=1, iters=2)}))
"""


def measure(model: str, dtype: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD, model, dtype], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def hours(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def cpu_name() -> str:
    """The CPU's model name and whether it has bf16 units (:func:`reguidance.studies.speed.cpu_facts`)."""
    name, has_bf16 = cpu_facts()
    return f"{name}, {'with bf16 units' if has_bf16 else 'no bf16 units: bf16 is emulated and slow'}"


def table(models: list[str], dtypes: list[str]) -> str:
    lines = [
        "| model (256x256, random weights) | precision | forward s/NFE | forward+gradient s/NFE | peak memory | "
        "ReGuidance default (100 + 100) | DPS-1000 | DAPS 200x5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        for dtype in dtypes:
            m = measure(model, dtype)
            fwd, grad = float(m["fwd_s_per_image"]), float(m["fwd_grad_s_per_image"])  # type: ignore[arg-type]
            lines.append(
                f"| {model} | {dtype} | {fwd:.2f} | {grad:.2f} | {float(m['fwd_grad_peak_mb']) / 1024:.1f} GiB | "  # type: ignore[arg-type]
                f"{hours(100 * fwd + 100 * grad)} | {hours(1000 * grad)} | {hours(1000 * fwd)} |"
            )
    lines.append("")
    lines.append(
        f"Measured by `scripts/cost_table.py` on {cpu_name()} ({torch.get_num_threads()} threads, batch 1, "
        "per image; the peak is the process's resident memory during a forward pass with its input gradient)."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ffhq_10m,imagenet256_uncond")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    text = table([m for m in args.models.split(",") if m], [d for d in args.dtypes.split(",") if d])
    write_section(args.write, "cost", text)


if __name__ == "__main__":
    main()
