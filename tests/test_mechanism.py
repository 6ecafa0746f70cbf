"""The mechanism map (inverted latent vs re-noised candidate vs fresh noise) and the theory report's ablation rows."""

import math
from dataclasses import replace

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.studies.mechanism import (
    CELL_KEYS,
    GMM_METRICS,
    MapGrid,
    format_markdown,
    gmm_rows,
    run_gmm_map,
    save_heatmap,
    summarise,
)
from reguidance.studies.theory import TheoryConfig, make_testbed, problem_stream, run_theory
from reguidance.wrapper import ReGuidance, reguide

TINY = TheoryConfig(candidates=16, candidate_steps=3).with_options(step_size=0.2)
TWO_CELLS = MapGrid(
    t_end=(0.3,), sampler=("ddpm",), inversion_steps=(4, 8), inversion_method=("euler",), dps_steps=(6,)
)


def _row(start, pid, reward, distance, steps=None, method=None):
    facts = dict.fromkeys(CELL_KEYS) | {"prior": "p", "task": "t", "candidate_method": "c", "t_end": 0.5}
    facts |= {"sampler": "ddpm", "dps_steps": 20, "start": start, "inversion_steps": steps, "inversion_method": method}
    return facts | {"id": pid, "seed": 0, "reward": reward, "manifold_distance": distance, "nfe": 20}


def test_paired_difference_per_cell_matches_a_hand_computed_interval():
    inv = [_row("inversion", i, r, 1.0, 10, "euler") for i, r in enumerate([1.5, 2.0, 4.0, 4.0])]
    renoise = [_row("renoise", i, r, 2.0) for i, r in reversed(list(enumerate([0.5, 0.0, 1.0, 0.0])))]
    fresh = [_row("fresh", i, 0.0, 1.0) for i in range(4)]
    stale = _row("renoise", 2, 99.0, 2.0)  # an earlier copy of a row, rewritten after a torn write: the last counts
    (cell,) = summarise([stale, *inv, *renoise, *fresh], GMM_METRICS)["cells"]
    # d = inversion - renoise by id = [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3), half width t_0.975(3 df) s / 2, where
    # t_0.975(3) = 3.182446 (Student's table)
    half = 3.182446 * math.sqrt(5 / 3) / 2
    d = cell["minus_renoise"]["reward"]
    assert cell["n"] == 4 and d["mean"] == pytest.approx(2.5)
    assert d["ci95"] == pytest.approx([2.5 - half, 2.5 + half], abs=1e-5)
    assert cell["minus_renoise"]["manifold_distance"]["mean"] == pytest.approx(-1.0)
    assert cell["minus_renoise"]["manifold_distance"]["win_rate"] == 1.0  # lower distance is better
    assert cell["minus_fresh"]["reward"]["mean"] == pytest.approx((1.5 + 2 + 4 + 4) / 4)


def test_a_cell_whose_fresh_twin_has_not_run_is_reported_against_renoise_alone(tmp_path):
    """A map cut short runs fresh noise last at the larger budgets: its cells with their re-noised twin are summarised
    (against renoise, by hand: d = [1, 1, 1] -> +1 with a zero-width interval), counted only where each twin ran, and
    drawn; a cell without its re-noised twin is left out."""
    inv = [_row("inversion", i, 2.0, 1.0, 10, "euler") for i in range(3)]
    renoise = [_row("renoise", i, 1.0, 2.0) for i in range(3)]
    deeper = [r | {"t_end": 0.9} for r in inv]  # neither twin at t_end 0.9
    full = [r | {"dps_steps": 100} for r in [*inv, *renoise, *(_row("fresh", i, 0.0, 3.0) for i in range(3))]]
    summary = summarise([*inv, *renoise, *deeper, *full], GMM_METRICS)
    cells = {e["dps_steps"]: e for e in summary["cells"]}
    assert sorted(cells) == [20, 100] and {e["t_end"] for e in summary["cells"]} == {0.5}
    cut = cells[20]
    assert "minus_fresh" not in cut and set(cut["means"]) == {"inversion", "renoise"} and cut["n"] == 3
    assert cut["minus_renoise"]["reward"]["mean"] == pytest.approx(1.0)
    assert cut["minus_renoise"]["reward"]["ci95"] == pytest.approx([1.0, 1.0])
    text = format_markdown(summary, GMM_METRICS)
    assert "Inversion vs renoise, of 2 cells" in text and "Inversion vs fresh, of 1 cells" in text
    assert "| ddpm | 20 | 0.5 | — |" in text  # the fresh column of the cut cell
    assert save_heatmap(summary, tmp_path / "map.png", GMM_METRICS, against="fresh").stat().st_size > 1000


def test_the_default_grid_is_issue_19s_and_ablations_carry_no_inversion_settings():
    cells = MapGrid().cells()
    inversions = [c for c in cells if c.start == "inversion"]
    ablations = [c for c in cells if c.start != "inversion"]
    assert len(inversions) == 5 * 2 * 3 * 3 * 3 and len(ablations) == 2 * 5 * 2 * 3
    assert all(c.inversion_steps is None and c.inversion_method is None for c in ablations)


def test_a_bad_grid_value_is_refused_with_its_name():
    with pytest.raises(InputError, match="t_end"):
        MapGrid(t_end=(0.3, 1.5))
    with pytest.raises(InputError, match="sampler"):
        MapGrid(sampler=())


@pytest.fixture(scope="module")
def two_cell_rows():
    return [r for rows in gmm_rows(TINY, TWO_CELLS) for r in rows]


def _values(rows, start, steps=None):
    rs = sorted((r for r in rows if r["start"] == start and r["inversion_steps"] == steps), key=lambda r: r["id"])
    return torch.tensor([r["reward"] for r in rs], dtype=torch.float64)


def test_renoise_and_fresh_run_once_and_do_not_depend_on_the_inversion_settings(two_cell_rows):
    tb = make_testbed(TINY)
    for start in ("renoise", "fresh"):
        assert sum(r["start"] == start for r in two_cell_rows) == 16  # one cell for both inversion settings
        # the wrapper with other (unused) inversion settings gives the same rows
        cfg = ReGuidance().replace(t_end=0.3, dps_steps=6, start=start, inversion_steps=37, inversion_method="heun")
        out = reguide(tb.candidate, tb.y, tb.operator, tb.prior, config=cfg, rng=problem_stream(TINY, 3, tb.ids))
        assert torch.allclose(_values(two_cell_rows, start), out.reward_after, rtol=1e-9, atol=1e-12)
    summary = summarise(two_cell_rows, GMM_METRICS)
    assert [c["n"] for c in summary["cells"]] == [16, 16]
    assert summary["cells"][0]["means"]["renoise"] == summary["cells"][1]["means"]["renoise"]
    assert summary["candidates"][0]["n"] == 16


def test_inversion_cells_are_the_wrapper_started_from_the_inversion(two_cell_rows):
    """The map reuses one inversion per (t_end, steps, method); that is the wrapper's own inversion start."""
    tb = make_testbed(TINY)
    for steps in (4, 8):
        cfg = ReGuidance().replace(t_end=0.3, dps_steps=6, inversion_steps=steps)
        out = reguide(tb.candidate, tb.y, tb.operator, tb.prior, config=cfg, rng=problem_stream(TINY, 3, tb.ids))
        assert torch.allclose(_values(two_cell_rows, "inversion", steps), out.reward_after, rtol=1e-9, atol=1e-12)
        nfe = {r["nfe"] for r in two_cell_rows if r["inversion_steps"] == steps}
        assert nfe == {steps + 6}  # Euler: one evaluation per inversion step, then one per DPS step
    assert {r["nfe"] for r in two_cell_rows if r["start"] == "renoise"} == {6}


def test_renoising_one_level_up_moves_the_candidate_by_the_levels_noise_only():
    """Re-noising to level 1 of the chain gives ``sqrt(ab) x + sqrt(1 - ab) n``, ``1 - ab ~ 2e-4``: the change
    ``||latent - x||`` is ``sqrt(1 - ab) ||n||`` up to ``(1 - sqrt(ab)) ||x||`` (~1e-4 ||x||), and ``||n||`` of a
    16-d standard normal lies in [2, 6] (chi with 16 degrees of freedom: mean 3.94, sd 0.70). At full noise the
    re-noised start is ``n`` itself, like the fresh one. A DPS budget past the levels up to ``t_end`` runs them
    all. (The inversion one level up is far from an off-manifold candidate — the ODE is stiff there — and the map
    records it as ``latent_change_rel``.)"""
    cfg = replace(TINY, candidates=4)
    grid = MapGrid(t_end=(0.001, 1.0), sampler=("ddim",), inversion_steps=(2,), inversion_method=("euler",))
    rows = [r for rs in gmm_rows(cfg, replace(grid, dps_steps=(1000,))) for r in rs if r["start"] != "candidate"]
    tb = make_testbed(cfg)
    sigma1 = float(1 - tb.prior.schedule.alphas_cumprod[1]) ** 0.5
    norms = tb.candidate.norm(dim=1)
    for r in rows:
        assert r["dps_steps_run"] == (2 if r["t_end"] == 0.001 else 1000)
        if r["start"] == "renoise" and r["t_end"] == 0.001:
            assert 2 < r["latent_change_rel"] * float(norms[r["id"]]) / sigma1 < 6
    fresh = {r["id"]: r["latent_change_rel"] for r in rows if r["start"] == "fresh" and r["t_end"] == 1.0}
    for r in rows:
        if r["start"] == "renoise" and r["t_end"] == 1.0:
            assert r["latent_change_rel"] == pytest.approx(fresh[r["id"]], rel=1e-2)


def test_the_map_resumes_without_recomputing_and_refuses_another_configuration(tmp_path, two_cell_rows):
    rows = run_gmm_map(tmp_path, TINY, TWO_CELLS)
    assert len(rows) == len(two_cell_rows) == 16 * 5  # candidates, renoise, fresh, two inversion cells
    size = (tmp_path / "rows.jsonl").stat().st_size
    assert len(run_gmm_map(tmp_path, TINY, TWO_CELLS)) == len(rows)
    assert (tmp_path / "rows.jsonl").stat().st_size == size
    with pytest.raises(InputError, match="another map"):
        run_gmm_map(tmp_path, replace(TINY, seed=5), TWO_CELLS)


def test_tables_and_heat_map_are_written(tmp_path, two_cell_rows):
    summary = summarise(two_cell_rows, GMM_METRICS)
    text = format_markdown(summary, GMM_METRICS)
    cell = summary["cells"][0]
    assert f"{cell['minus_renoise']['reward']['mean']:+.3f}" in text
    assert "of 2 cells" in text
    assert save_heatmap(summary, tmp_path / "map.png", GMM_METRICS).stat().st_size > 1000


def test_theory_reports_the_ablations_on_the_same_problems():
    cfg = TheoryConfig(candidates=8, candidate_steps=3).with_options(inversion_steps=4, dps_steps=5)
    report, _ = run_theory(cfg)
    methods = report["methods"]
    assert {"renoise", "fresh"} <= set(methods)
    for start in ("renoise", "fresh"):
        assert methods[start]["n"] == 8
        assert methods[start]["nfe"] == 3 + 5  # the candidate's steps, then DPS; no inversion
        paired = report[f"reguidance_minus_{start}"]
        for m in ("reward", "manifold_distance"):  # a paired mean is the difference of the means
            assert paired[m]["mean"] == pytest.approx(methods["reguidance"][m] - methods[start][m], abs=1e-9)
