"""``reguidance bench-report --section`` / ``--answer-into``: the reference-budget table goes into its own marked
section and the primary family's outcome into BENCHMARK.md's first section, from a hand-written finished run (so
every expected line below is derived by hand, not by the report code)."""

from __future__ import annotations

import json
from pathlib import Path


def _test(mean: float, lo: float, hi: float, call: str, primary: bool = True) -> dict[str, object]:
    return {"n": 100, "mean": mean, "ci95": [lo, hi], "call": call, "primary": primary, "p_value": 0.01}


def _run(folder: Path) -> Path:
    """A finished run: sr8/dps against its candidate (SSIM better, fit a tie) and against renoise (SSIM worse,
    fit inconclusive), and one secondary test (PSNR) that the answer must not count."""
    folder.mkdir()
    paired = [
        {
            "task": "sr8",
            "method": "dps",
            "against": "candidate",
            "n": 100,
            "nfe": [1200, 1000],
            "verdict": "helps",
            "ssim": _test(0.0412, 0.02, 0.0624, "better"),
            "fit": _test(-0.013, -0.05, 0.024, "tie"),
            "psnr": _test(1.0, 0.5, 1.5, "better", primary=False),
        },
        {
            "task": "sr8",
            "method": "dps",
            "against": "renoise",
            "n": 100,
            "nfe": [1200, 1100],
            "verdict": "hurts",
            "ssim": _test(-0.0205, -0.031, -0.01, "worse"),
            "fit": _test(0.3, -0.1, 0.7, "inconclusive"),
        },
    ]
    summary = {"rows": [], "paired": paired, "rule": "r", "ssim_kind": "wang2004"}  # written with the standard SSIM
    (folder / "summary.json").write_text(json.dumps(summary))
    config = {"protocol": "reference", "tuned": False, "seed": 0, "ids": ["0:100"]}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_answer_counts_only_primary_tests_and_shows_each_change(tmp_path: Path) -> None:
    from reguidance.bench.report import primary_answer

    text = primary_answer({"mnist-reference": _run(tmp_path / "run")})
    assert "of 4 primary tests ReGuidance comes out better in 1, tie in 1, inconclusive in 1, worse in 1" in text
    assert "test ids 0:100, 100 images per comparison" in text
    lines = text.splitlines()
    ssim, fit = "+0.041 [+0.020, +0.062] ▲", "-0.01 [-0.05, +0.02] ≈"  # rounded by hand from _run's numbers
    assert f"| sr8 | dps | candidate | 1200 vs 1000 | {ssim} | {fit} | helps |" in lines
    ssim, fit = "-0.021 [-0.031, -0.010] ▼", "+0.30 [-0.10, +0.70]"  # inconclusive: no mark
    assert f"| sr8 | dps | renoise | 1200 vs 1100 | {ssim} | {fit} | hurts |" in lines


def test_the_wall_time_of_each_study_command_is_listed_and_a_broken_line_is_named(tmp_path: Path) -> None:
    from reguidance.bench.report import _walltime

    assert _walltime(tmp_path) == []  # a folder bench made by hand has no wall-time file: nothing to list
    record = {"started": "2026-12-02T15:17:00Z", "seconds": 5400, "rc": 0, "nproc": 2, "device": "cpu"}
    record["command"] = "torchrun  bench --ids 0:100"
    (tmp_path / "walltime.jsonl").write_text(json.dumps(record) + "\n{not json\n")
    lines = _walltime(tmp_path)
    assert "| 2026-12-02T15:17:00Z | 5400 | 2 | cpu | 0 | `torchrun bench --ids 0:100` |" in lines
    assert f"| line 2 of {tmp_path / 'walltime.jsonl'} is not a wall-time record | | | | | |" in lines
