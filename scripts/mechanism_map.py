"""The mechanism map (issue 19): inverted latent vs re-noised candidate vs fresh noise, on the exact-score mixture of
``reguidance theory``, over t_end x sampler x inversion steps x inversion method x DPS budget
(:mod:`reguidance.studies.mechanism`); with ``--prior mnist``, the same tables and heat maps from the rows that
``scripts/mechanism_images.py`` wrote into ``--out`` (it runs nothing: run that script first, it resumes).

Resumable: the rows of each cell are appended to ``<out>/rows.jsonl`` as it finishes; a rerun skips the cells it
holds (a folder made with another configuration is refused). Then it writes ``<out>/summary.json`` (per cell: means
and the paired differences with 95% intervals, floats cut to 5 digits), the Markdown tables (printed, or with
``--write FILE`` between ``<!-- mechanism_gmm:begin -->`` and ``<!-- mechanism_gmm:end -->`` of FILE) and the heat
map (``--plot``).

Usage: .venv/bin/python scripts/mechanism_map.py --prior gmm --out runs/mechanism/gmm [--write docs/mechanism.md]
       [--summary docs/mechanism_gmm_summary.json]
       .venv/bin/python scripts/mechanism_map.py --prior mnist --out runs/mechanism/mnist [--write docs/mechanism.md]
       [--summary docs/mechanism_mnist_summary.json] [--plot docs/mechanism_mnist.png]
       (256 problems: about 10 minutes on one CPU core; ``--problems 16`` for a quick look)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from reguidance.conventions import InputError
from reguidance.evaluation.metrics import fit_z
from reguidance.io.files import atomic_write_text, check_marked, read_json_object, read_rows, write_section
from reguidance.priors import load_prior
from reguidance.studies.mechanism import (
    GMM_METRICS,
    MapGrid,
    counts,
    format_markdown,
    run_gmm_map,
    save_heatmap,
    summarise,
)
from reguidance.studies.theory import TheoryConfig
from reguidance.tasks import parse_task

#: the image map's metrics, each with whether higher is better: realism against the truth (SSIM, PSNR) and the
#: noise-calibrated fit to y, ``|fit_z|`` of the unclamped output (:func:`reguidance.evaluation.metrics.fit_z`: 0 when
#: the residual has the size the measurement noise predicts; the raw reward ``-||y - A x||^2`` rewards fitting the
#: noise)
IMAGE_METRICS: dict[str, bool] = {"ssim": True, "psnr": True, "abs_fit_z": False}
#: how the answer's tables name them
LABELS = {"ssim": "SSIM", "psnr": "PSNR", "abs_fit_z": "|fit_z| (the noise-calibrated fit to y, lower is better)"}


def image_rows(out: Path) -> list[dict[str, object]]:
    """The rows ``scripts/mechanism_images.py`` wrote into ``out``, each with ``abs_fit_z``, and with
    ``inversion_steps`` / ``inversion_method`` set only on inversion rows (the ablations' cells do not depend on
    them). ``consistency_raw = ||y - A x|| / (sigma_y sqrt(m))`` of a row gives ``||y - A x||``; ``m`` is the
    task's number of measurements on the prior's image shape."""
    path = out / "rows.jsonl"
    if not path.is_file():
        raise InputError(f"{path} does not exist: run scripts/mechanism_images.py --out {out} first")
    prior = load_prior("mnist")
    rows = []
    sizes: dict[str, tuple[float, torch.Tensor]] = {}
    for r in read_rows(path, ("task", "consistency_raw"), {"task": "text"}):
        r = dict(r)
        task, raw = r["task"], r["consistency_raw"]
        assert isinstance(task, str)  # read_rows checked its kind
        if not isinstance(raw, (int, float)):
            raise InputError(f"{path}: consistency_raw is {raw!r}, expected a number")
        if task not in sizes:
            op = parse_task(task).operator([0], 0, prior.signal_shape)
            sizes[task] = (op.sigma_y, torch.as_tensor(op.num_measurements, dtype=torch.float64))
        sigma_y, m = sizes[task]
        residual = torch.tensor([float(raw)], dtype=torch.float64) * sigma_y * m.sqrt()
        r["abs_fit_z"] = float(fit_z(residual, sigma_y, m).abs()[0])
        if r.get("start") != "inversion":
            r["inversion_method"] = None
            r["inversion_steps"] = None
        rows.append(r)
    return rows


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
    parser.add_argument(
        "--prior", choices=["gmm", "mnist"], required=True, help="gmm runs the mixture map; mnist reports image rows."
    )
    parser.add_argument("--out", type=Path, required=True, help="Run folder (config.json, rows.jsonl, summary.json).")
    parser.add_argument("--problems", type=int, default=256, help="Problems per cell (>= 256 for the report).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the problems (theory's table is seed 1).")
    parser.add_argument("--write", type=Path, default=None, help="Markdown file with mechanism_gmm markers.")
    parser.add_argument("--plot", type=Path, default=Path("docs/mechanism_gmm.png"))
    parser.add_argument(
        "--answer-into",
        type=Path,
        default=None,
        help="Markdown file with mechanism_answer (mnist) or mechanism_answer_gmm (gmm) markers: the computed answer.",
    )
    parser.add_argument(
        "--from-summary",
        type=Path,
        default=None,
        help="Write the tables, pictures and answer from this summary.json (made by an earlier run; for mnist it holds "
        "the map's protocol) instead of running the map (gmm) or reading its rows (mnist).",
    )
    parser.add_argument(
        "--summary", type=Path, default=None, help="Where the summary goes (default <out>/summary.json)."
    )
    args = parser.parse_args()
    sections = ("mechanism_gmm", "mechanism_answer_gmm")
    if args.prior == "mnist":
        try:  # where the map's facts are: its kept summary, or its run folder's configuration
            facts = (
                read_json_object(args.from_summary, ("cells", "protocol"))
                if args.from_summary is not None
                else read_json_object(args.out / "config.json", ("protocol",))
            )
        except InputError as e:
            parser.error(str(e))
        sections = image_sections(str(facts["protocol"]))
    for target, name in zip((args.write, args.answer_into), sections, strict=True):
        if target is not None:  # every edited file's markers before anything (the pictures included) is written
            try:
                check_marked(target, f"<!-- {name}:begin -->", f"<!-- {name}:end -->")
            except (InputError, OSError) as e:
                parser.error(str(e))
    if args.prior == "mnist":
        report_images(args, facts)
        return
    if args.from_summary is not None:
        try:
            summary = read_json_object(args.from_summary, ("cells",))
        except InputError as e:
            parser.error(str(e))
    else:
        summary = gmm_summary(args, parser)
    save_heatmap(summary, args.plot, GMM_METRICS)
    print(f"picture: {args.plot}")
    write_section(args.write, "mechanism_gmm", format_markdown(summary, GMM_METRICS))
    write_section(args.answer_into, "mechanism_answer_gmm", answer_gmm(summary))


def gmm_summary(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Run (or resume) the mixture map into ``args.out`` and write its summary (one cell a line)."""
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
    print(f"summary: {args.summary or args.out / 'summary.json'}")
    return summary


def image_sections(protocol: str) -> tuple[str, str]:
    """The markers an image map's tables and answer go between: ``mechanism_mnist`` / ``mechanism_answer`` for
    candidates at the CPU protocol's budgets, with a ``_reference`` suffix at the reference budgets (so both maps can
    stand on one page)."""
    suffix = "" if protocol == "cpu" else f"_{protocol}"
    return f"mechanism_mnist{suffix}", f"mechanism_answer{suffix}"


def report_images(args: argparse.Namespace, facts: dict[str, Any]) -> None:
    """Tables and one heat map per (task, candidate method) from the image rows in ``args.out`` (their summary, with
    the map's ``protocol`` and ``candidates_from`` from ``facts``, its ``config.json``, written to ``--summary``), or,
    with ``--from-summary``, from ``facts``, such a summary."""
    if args.from_summary is None:
        rows = image_rows(args.out)
        config = facts
        summary = summarise(rows, IMAGE_METRICS)
        summary |= {"protocol": config["protocol"], "candidates_from": config.get("candidates_from")}
        small = _rounded(summary)
        assert isinstance(small, dict)
        atomic_write_text(args.summary or args.out / "summary.json", json.dumps(small, indent=1) + "\n")
        print(f"{len(rows)} rows")
    else:
        summary = facts
    protocol = str(summary["protocol"])
    done = {(e["task"], e["candidate_method"]) for e in summary["cells"]}
    plot = args.plot if args.plot != Path("docs/mechanism_gmm.png") else Path("docs/mechanism_mnist.png")
    pictures = []
    for task, method in sorted(done):
        group = {
            "cells": [e for e in summary["cells"] if (e["task"], e["candidate_method"]) == (task, method)],
            "candidates": [],
        }
        if group["cells"]:
            path = plot.with_name(f"{plot.stem}_{task}_{method}{plot.suffix}")
            title = f"MNIST {task}, {protocol} candidate {method}: inversion − renoise"
            pictures.append(save_heatmap(group, path, IMAGE_METRICS, title=title))
    print(f"pictures: {', '.join(map(str, pictures))}")
    tables, answer_section = image_sections(protocol)
    write_section(args.write, tables, format_markdown(summary, IMAGE_METRICS))
    held_out = summary.get("candidates_from") is None
    write_section(args.answer_into, answer_section, answer(summary, protocol, held_out))


def _settings(cells: list[dict[str, Any]]) -> str:
    """The grid the finished cells cover, read from the cells themselves."""

    def values(key: str) -> str:
        return "/".join(str(v) for v in sorted({e[key] for e in cells}))

    return (
        f"t_end {values('t_end')}; samplers {values('sampler')}; inversion steps {values('inversion_steps')} "
        f"({values('inversion_method')}); DPS steps {values('dps_steps')}"
    )


def answer(summary: dict[str, Any], protocol: str, held_out: bool = True) -> str:
    """One computed paragraph: of the image map's finished cells, in how many the inverted latent beats, ties or
    loses to re-noising and to fresh noise on each metric (95% interval clear of 0), which settings were run, and
    the budget ``protocol`` the candidates were made at (``held_out``: on images outside the benchmark's; else the
    candidates, and so the images, are a bench run's)."""
    cells = summary["cells"]
    if not cells:
        return "No finished cell of the image map yet.\n"
    groups = sorted({(e["task"], e["candidate_method"]) for e in cells})
    images = sorted({e["n"] for e in cells})
    parts = []
    for against in ("renoise", "fresh"):
        tally = counts(cells, IMAGE_METRICS, against)
        calls = ", ".join(f"{m} better in {tally[m]['better']} and worse in {tally[m]['worse']}" for m in IMAGE_METRICS)
        of = "" if tally["cells"] == len(cells) else f" (the {tally['cells']} cells whose {against} twin has run)"
        parts.append(f"against {against}{of}: {calls}")
    text = (
        f"**MNIST (learned prior), {len(cells)} finished cells** ({', '.join(f'{t}/{m}' for t, m in groups)} "
        f"candidates at the `{protocol}` protocol's budgets; "
        f"{_settings(cells)}; {'/'.join(map(str, images))} {'held-out' if held_out else 'primary-table'} images per "
        "cell, 95% intervals, no multiplicity "
        f"correction). Inversion {parts[0]}; {parts[1]}.\n"
    )
    tables = [_change_table(cells, m, "renoise") for m in ("ssim", "abs_fit_z")]
    return text + "\n" + "\n".join(tables)


def _change_table(cells: list[dict[str, Any]], metric: str, against: str) -> str:
    """The paired change of ``metric`` (inversion minus ``against``) per setting (rows: inversion + DPS steps, t_end,
    sampler) and (task, candidate) (columns), ▲ / ▼ where its 95% interval lies above / below 0."""
    groups = sorted({(e["task"], e["candidate_method"]) for e in cells})
    settings = sorted({(e["inversion_steps"], e["dps_steps"], e["t_end"], e["sampler"]) for e in cells})
    at = {(e["inversion_steps"], e["dps_steps"], e["t_end"], e["sampler"], e["task"], e["candidate_method"]): e
          for e in cells}  # fmt: skip
    lines = [
        f"{LABELS[metric]}, inversion minus {against} (mean [95% CI] over the images; ▲ / ▼ clear of 0 on the "
        "better / worse side):",
        "",
        "| inversion + DPS steps | t_end | sampler | " + " | ".join(f"{t}/{m}" for t, m in groups) + " |",
        "|---|---|---|" + "---|" * len(groups),
    ]
    for k, d, t, smp in settings:
        row = []
        for task, m in groups:
            e = at.get((k, d, t, smp, task, m))
            if e is None:
                row.append("—")
                continue
            v = e[f"minus_{against}"][metric]
            lo, hi = v["ci95"]
            above, below = (" ▲", " ▼") if IMAGE_METRICS[metric] else (" ▼", " ▲")
            mark = above if lo > 0 else below if hi < 0 else ""
            row.append(f"{v['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}")
        lines.append(f"| {k} + {d} | {t} | {smp} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


#: the wrapper's default setting (:class:`reguidance.ReGuidance`) as a mechanism-map cell
DEFAULT_CELL = {"t_end": 0.3, "sampler": "ddpm", "inversion_steps": 100, "inversion_method": "euler", "dps_steps": 100}


def answer_gmm(summary: dict[str, Any]) -> str:
    """The mixture map's computed answer: in how many cells the inverted latent beats / loses to re-noising on the
    reward and on the distance to the data manifold, where it wins on both (sampler and t_end of those cells), the
    mean reward gain by DPS budget, and the wrapper's default cell."""
    cells = summary["cells"]
    if not cells:
        return "No finished cell of the mixture map yet.\n"
    tally = counts(cells, GMM_METRICS, "renoise")
    calls = "; ".join(
        f"{m.replace('_', ' ')} better in {tally[m]['better']}, worse in {tally[m]['worse']}" for m in GMM_METRICS
    )
    wins = tally["wins"]
    where = sorted({(e["sampler"], e["t_end"]) for e in wins})
    by_budget = {
        d: sum(e["minus_renoise"]["reward"]["mean"] for e in cells if e["dps_steps"] == d)
        / sum(e["dps_steps"] == d for e in cells)
        for d in sorted({e["dps_steps"] for e in cells})
    }
    default = [e for e in cells if all(e[k] == v for k, v in DEFAULT_CELL.items())]
    text = (
        f"**Exact-score mixture, {len(cells)} cells** ({_settings(cells)}; {cells[0]['n']} problems per cell, 95% "
        f"intervals, no multiplicity correction). Inverted latent against the re-noised candidate: {calls}. Better "
        f"on the reward and not worse on the distance in {len(wins)} cells"
        + (f" (sampler, t_end: {', '.join(f'{s} {t}' for s, t in where)})" if where else "")
        + ". Mean reward gain over re-noising by DPS steps: "
        + ", ".join(f"{d}: {g:+.3f}" for d, g in by_budget.items())
        + "."
    )
    if default:
        d = default[0]["minus_renoise"]
        text += (
            " The wrapper's default (DDPM, t_end 0.3, 100 + 100 steps): reward "
            f"{d['reward']['mean']:+.3f} [{d['reward']['ci95'][0]:+.3f}, {d['reward']['ci95'][1]:+.3f}], distance "
            f"{d['manifold_distance']['mean']:+.2f} [{d['manifold_distance']['ci95'][0]:+.2f}, "
            f"{d['manifold_distance']['ci95'][1]:+.2f}] (lower is closer to the data)."
        )
    return text + "\n"


if __name__ == "__main__":
    main()
