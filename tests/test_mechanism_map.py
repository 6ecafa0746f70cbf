"""scripts/mechanism_map.py on the mixture map's kept summary (docs/mechanism_gmm_summary.json, no rerun): the
answer's counts are recounted here from the cells' intervals, and a file without its markers stops the script
before anything, the picture included, is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "mechanism_map.py"
SUMMARY = ROOT / "docs" / "mechanism_gmm_summary.json"


def _map(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), "--prior", "gmm", "--out", "unused", "--from-summary", str(SUMMARY), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def _count(cells: list[dict], metric: str, higher: bool, against: str = "renoise") -> tuple[int, int]:
    """(better, worse): cells whose 95% interval of inversion minus ``against`` lies clear of 0 on the good / bad
    side."""
    lo = [c[f"minus_{against}"][metric]["ci95"][0] for c in cells]
    hi = [c[f"minus_{against}"][metric]["ci95"][1] for c in cells]
    above, below = sum(x > 0 for x in lo), sum(x < 0 for x in hi)
    return (above, below) if higher else (below, above)


def test_the_answer_counts_the_cells_whose_interval_clears_zero(tmp_path: Path) -> None:
    cells = json.loads(SUMMARY.read_text())["cells"]
    doc = tmp_path / "answer.md"
    doc.write_text("above\n<!-- mechanism_answer_gmm:begin -->\nSTALE TEXT\n<!-- mechanism_answer_gmm:end -->\nbelow\n")
    proc = _map("--answer-into", str(doc), "--plot", str(tmp_path / "map.png"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = doc.read_text()
    assert text.startswith("above\n") and text.endswith("below\n") and "STALE TEXT" not in text
    reward, distance = _count(cells, "reward", higher=True), _count(cells, "manifold_distance", higher=False)
    assert f"**Exact-score mixture, {len(cells)} cells**" in text
    assert f"reward better in {reward[0]}, worse in {reward[1]}" in text
    assert f"manifold distance better in {distance[0]}, worse in {distance[1]}" in text
    assert (tmp_path / "map.png").stat().st_size > 0


def test_a_file_without_its_markers_stops_the_script_before_the_picture(tmp_path: Path) -> None:
    doc = tmp_path / "plain.md"
    doc.write_text("no markers\n")
    proc = _map("--write", str(doc), "--plot", str(tmp_path / "map.png"))
    assert proc.returncode == 2
    assert "mechanism_gmm:begin" in proc.stderr and str(doc) in proc.stderr
    assert not (tmp_path / "map.png").exists() and doc.read_text() == "no markers\n"


def test_an_image_map_at_reference_budgets_writes_between_its_own_markers(tmp_path: Path) -> None:
    """The map of reference-budget candidates answers into ``mechanism_answer_reference`` (both maps can stand on
    one page): a file holding only the CPU map's markers is refused before anything is read or written."""
    out = tmp_path / "map"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"protocol": "reference"}))
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- mechanism_answer:begin -->\n<!-- mechanism_answer:end -->\n")
    cmd = [sys.executable, str(SCRIPT), "--prior", "mnist", "--out", str(out), "--answer-into", str(doc)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert "mechanism_answer_reference:begin" in proc.stderr
    assert doc.read_text() == "<!-- mechanism_answer:begin -->\n<!-- mechanism_answer:end -->\n"


def test_the_image_map_answer_from_its_kept_summary_recounts_the_intervals(tmp_path: Path) -> None:
    """The CPU map's answer, rewritten from its kept summary alone (its rows stayed on the machine that ran it):
    the counts per metric and the marks of its |fit_z| table (lower is better: ▲ where the interval lies below 0)."""
    summary = ROOT / "docs" / "mechanism_mnist_summary.json"
    cells = json.loads(summary.read_text())["cells"]
    doc = tmp_path / "answer.md"
    doc.write_text("<!-- mechanism_answer:begin -->\nSTALE\n<!-- mechanism_answer:end -->\n")
    cmd = [sys.executable, str(SCRIPT), "--prior", "mnist", "--out", "unused", "--from-summary", str(summary)]
    cmd += ["--answer-into", str(doc), "--plot", str(tmp_path / "map.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = doc.read_text()
    assert "STALE" not in text and "candidates at the `cpu` protocol's budgets" in text
    for against in ("renoise", "fresh"):
        ssim = _count(cells, "ssim", higher=True, against=against)
        fit = _count(cells, "abs_fit_z", higher=False, against=against)
        assert f"ssim better in {ssim[0]} and worse in {ssim[1]}" in text
        assert f"abs_fit_z better in {fit[0]} and worse in {fit[1]}" in text
    fit_table = text.split("|fit_z| (the noise-calibrated fit")[1].split("\n", 1)[1]  # its rows, not its legend
    better, worse = _count(cells, "abs_fit_z", higher=False)
    assert (fit_table.count("▲"), fit_table.count("▼")) == (better, worse)
    assert len(list(tmp_path.glob("map_*.png"))) == len({(c["task"], c["candidate_method"]) for c in cells})
