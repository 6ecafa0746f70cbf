"""The mechanism map (issue 19): inverted latent vs re-noised candidate vs fresh noise, on the exact-score mixture of
``reguidance theory``, over t_end x sampler x inversion steps x inversion method x DPS budget
(:mod:`reguidance.mechanism`).

Resumable: the rows of each cell are appended to ``<out>/rows.jsonl`` as it finishes; a rerun skips the cells it
holds (a folder made with another configuration is refused). Then it writes ``<out>/summary.json`` (per cell: means
and the paired differences with 95% intervals, floats cut to 5 digits), the Markdown tables (printed, or with
``--write FILE`` between ``<!-- mechanism_gmm:begin -->`` and ``<!-- mechanism_gmm:end -->`` of FILE) and the heat
map (``--plot``).

Usage: .venv/bin/python scripts/mechanism_map.py --prior gmm --out runs/mechanism/gmm [--write docs/mechanism.md]
       [--summary docs/mechanism_gmm_summary.json]
       (256 problems: about 10 minutes on one CPU core; ``--problems 16`` for a quick look)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reguidance.conventions import InputError
from reguidance.files import atomic_write_text, write_section
from reguidance.mechanism import GMM_METRICS, MapGrid, format_markdown, run_gmm_map, save_heatmap, summarise
from reguidance.theory import TheoryConfig


def _rounded(obj: object, digits: int = 5) -> object:
    """``obj`` with every float cut to ``digits`` significant digits (a small summary to commit)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", choices=["gmm"], required=True, help="Only the mixture map lives here for now.")
    parser.add_argument("--out", type=Path, required=True, help="Run folder (config.json, rows.jsonl, summary.json).")
    parser.add_argument("--problems", type=int, default=256, help="Problems per cell (>= 256 for the report).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the problems (theory's table is seed 1).")
    parser.add_argument("--write", type=Path, default=None, help="Markdown file with mechanism_gmm markers.")
    parser.add_argument("--plot", type=Path, default=Path("docs/mechanism_gmm.png"))
    parser.add_argument(
        "--summary", type=Path, default=None, help="Where the summary goes (default <out>/summary.json)."
    )
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        cfg = TheoryConfig(candidates=args.problems, seed=args.seed)
        rows = run_gmm_map(args.out, cfg, MapGrid(), progress=True)
    except InputError as e:
        parser.error(str(e))
    print(f"{len(rows)} rows; {time.perf_counter() - start:.0f} s this call")
    summary = summarise(rows, GMM_METRICS)
    seconds = {(r["t_end"], r["sampler"], r["inversion_steps"], r["inversion_method"], r["dps_steps"], r["start"]):
               float(r.get("cell_seconds", 0.0)) for r in rows}  # fmt: skip
    summary["seconds_all_cells"] = sum(seconds.values())
    small = _rounded(summary)
    assert isinstance(small, dict)
    lines = ",\n".join(json.dumps(c) for c in small["cells"])  # one cell a line: small diffs when it changes
    rest = json.dumps({k: v for k, v in small.items() if k != "cells"})
    atomic_write_text(args.summary or args.out / "summary.json", '{"cells": [\n' + lines + "\n],\n" + rest[1:] + "\n")
    save_heatmap(summary, args.plot, GMM_METRICS)
    print(f"picture: {args.plot}; summary: {args.summary or args.out / 'summary.json'}")
    write_section(args.write, "mechanism_gmm", format_markdown(summary, GMM_METRICS))


if __name__ == "__main__":
    main()
