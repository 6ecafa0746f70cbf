"""The README's `reguidance theory` table: the default experiment on held-out problems (seed 1; the sweep that chose
the defaults used seed 0), written between ``<!-- theory:begin -->`` and ``<!-- theory:end -->``.

Usage: .venv/bin/python scripts/theory_readme.py [--write README.md]   (seconds)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reguidance.files import replace_marked
from reguidance.theory import TheoryConfig, format_markdown, run_theory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    report, _ = run_theory(TheoryConfig())
    text = format_markdown(report)
    if args.write is None:
        print(text, end="")
        return
    replace_marked(args.write, text, "<!-- theory:begin -->", "<!-- theory:end -->")
    print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
