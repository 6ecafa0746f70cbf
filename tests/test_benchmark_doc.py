"""BENCHMARK.md and README.md hold exactly what ``reguidance bench-report`` writes from the study's kept records
(``results/<prior>-reference`` and ``results/<prior>-equal``, copied there from the run folders by
``bench-report --keep``): a hand edit of a generated table or answer, or records that no longer give the published
figures, fail here."""

from __future__ import annotations

from pathlib import Path

import pytest

from reguidance.bench.report import benchmark_tables, primary_answer

ROOT = Path(__file__).resolve().parents[1]
#: the primary table's run, read from its kept records (the run folder itself stays on the machine that ran it)
PRIMARY = {name: ROOT / "results" / name for name in ("mnist-reference", "fashion_mnist-reference")}
#: the equal-tuning table's run (every variant tuned alike, CPU budgets), from its kept records
EQUAL = {name: ROOT / "results" / name for name in ("mnist-equal", "fashion_mnist-equal")}


def _section(path: Path, name: str) -> str:
    """What lies between the lines ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` of ``path``."""
    return path.read_text().split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def test_the_primary_table_is_what_bench_report_writes_from_the_kept_records() -> None:
    assert _section(ROOT / "BENCHMARK.md", "primary") == benchmark_tables(PRIMARY).rstrip("\n") + "\n"


def test_the_equal_tuning_table_is_what_bench_report_writes_from_the_kept_records() -> None:
    assert _section(ROOT / "BENCHMARK.md", "equal") == benchmark_tables(EQUAL).rstrip("\n") + "\n"


@pytest.mark.parametrize("doc", ["BENCHMARK.md", "README.md"])
def test_the_primary_answer_is_what_bench_report_writes_from_the_kept_records(doc: str) -> None:
    assert _section(ROOT / doc, "primary_answer") == primary_answer(PRIMARY).rstrip("\n") + "\n"
