"""scripts/deepinv_side_by_side.py at a tiny budget: both DPS runs finish on the same network and physics, every
number of the table is there, and the time ratio printed is the ratio of the two medians it reports."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "deepinv_side_by_side.py"


def _load():
    spec = importlib.util.spec_from_file_location("deepinv_side_by_side", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_side_by_side_command_prints_quality_time_and_their_ratio(tmp_path: Path, capsys) -> None:
    out = tmp_path / "side.json"
    result = _load().main(["--images", "2", "--steps", "3", "--repeats", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    assert set(rows) == {"truth", "ours", "deepinv"}
    for label in ("ours", "deepinv"):
        assert all(math.isfinite(v) for v in rows[label].values())
        assert rows[label]["seconds_per_step"] > 0
    assert rows["deepinv"]["network_calls_per_step"] > 0  # deepinv's DPS did call our network
    assert rows["truth"]["consistency"] == pytest.approx(1.0, abs=0.25)  # deepinv's noise, our scale: about 1
    ratio = rows["deepinv"]["seconds_per_step"] / rows["ours"]["seconds_per_step"]
    assert result["time_ratio_deepinv_over_ours"] == pytest.approx(ratio)
    assert f"per-step time ratio (deepinv / ours): {ratio:.2f}" in printed
