"""The reference-parity table of docs/parity.md: the largest gap per fixture and quantity.

Usage: .venv/bin/python scripts/parity_table.py [--write docs/parity.md]   (a minute or two on 2 cores)

With ``--write`` the table replaces everything after the "## Measured gaps" heading of that file.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_parity as parity
from reguidance.diffusion import Schedule
from reguidance.guidance.daps import annealing_levels, poly_sigmas
from reguidance.priors import load_prior

HEADING = "## Measured gaps"


def snapping() -> float:
    """Largest relative change of a DAPS annealing sigma when snapped to the 1000-level chain (default grid)."""
    wanted = poly_sigmas(100.0, 0.1, 201)[:-1]
    got = annealing_levels(Schedule.linear(), 200).sigmas().flip(0).tolist()
    return max(abs(g / w - 1) for g, w in zip(got, wanted, strict=True))


def table() -> str:
    prior = load_prior("mnist").eval()
    lines = ["| fixture | quantity | max gap | tolerance |", "|---|---|---|---|"]
    for name in parity.FILES:
        method = name.split("_")[0]
        for quantity, value in parity.MEASURE[method](prior, name).items():
            lines.append(f"| {name} | {quantity} | {value:.1e} | {parity.TOLERANCE[method]:.0e} |")
    lines += [
        "",
        f"DAPS annealing sigmas snapped to the chain: largest relative change {snapping():.1%} (200 levels).",
        "",
        f"Measured with torch {torch.__version__} on {platform.machine()}, {torch.get_num_threads()} threads, "
        "float32 network, by `.venv/bin/python scripts/parity_table.py --write docs/parity.md`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, default=None, help="replace the Measured gaps section of this file")
    args = parser.parse_args()
    text = table()
    if args.write is None:
        print(text, end="")
        return
    doc = args.write.read_text()
    head = doc[: doc.index(HEADING) + len(HEADING)]
    args.write.write_text(f"{head}\n\n{text}")
    print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
