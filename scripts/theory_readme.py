"""The README's `reguidance theory` table: the default experiment on held-out problems (seed 1; the sweep that chose
the defaults used seed 0), written between ``<!-- theory:begin -->`` and ``<!-- theory:end -->``; with ``--sweep``
also the sweep that chose the defaults (``reguidance theory-sweep``, seed 0), between ``<!-- sweep:begin -->`` and
``<!-- sweep:end -->``.

Usage: .venv/bin/python scripts/theory_readme.py [--sweep] [--write README.md]   (seconds; a minute with --sweep)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reguidance.io.files import write_section
from reguidance.studies.theory import TheoryConfig, format_markdown, format_sweep_markdown, run_theory, sweep_theory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--sweep", action="store_true", help="also the sweep that chose the defaults (seed 0)")
    args = parser.parse_args()
    report, _ = run_theory(TheoryConfig())
    text = format_markdown(report)
    sweep = format_sweep_markdown(sweep_theory(TheoryConfig(candidates=128, seed=0))) if args.sweep else None
    write_section(args.write, "theory", text)
    if sweep is not None:
        write_section(args.write, "sweep", sweep)


if __name__ == "__main__":
    main()
