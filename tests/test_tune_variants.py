"""Equal tuning: every variant (candidate, ReGuidance, renoise, fresh, more) gets its own sweep by the same rule on
the same validation images; the table counts the settings each row had in all."""

import pytest
import torch

from reguidance.bench.tune import (
    DEFAULT_METHOD_GRIDS,
    DEFAULT_WRAPPER_GRID,
    GRID_SIZE,
    collect_table,
    parse_grid,
    tune_pair,
)
from reguidance.evaluation.metrics import ssim
from reguidance.guidance import DPS
from reguidance.tasks import get_task, wrapper_rng
from reguidance.wrapper import ReGuidance, reguide
from tiny_models import tiny_adm_prior


def test_every_default_grid_has_the_same_number_of_settings_and_the_wrapper_reaches_t_end_one_with_both_samplers():
    def size(grid):
        n = 1
        for values in grid.values():
            n *= len(values)
        return n

    wrapper = parse_grid(DEFAULT_WRAPPER_GRID)
    assert size(wrapper) == GRID_SIZE == 12
    assert 1.0 in wrapper["t_end"] and wrapper["sampler"] == ["ddpm", "ddim"]
    for method, grid in DEFAULT_METHOD_GRIDS.items():
        assert size(parse_grid(grid, fields=grid_fields(grid))) == GRID_SIZE, method


def grid_fields(grid: str) -> list[str]:
    return [part.split("=")[0] for part in grid.split(";")]


@pytest.fixture(scope="module")
def tiny_prior():
    return tiny_adm_prior()


@pytest.fixture(scope="module")
def entry(tiny_prior):
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return images, tune_pair(
        tiny_prior,
        images,
        "sr4",
        "dps",
        range(2),
        start=DPS(steps=1, clip=True),
        method_grid=parse_grid("step_size=0.5,5", fields=["step_size"]),
        wrapper_grid=parse_grid("sampler=ddpm,ddim"),
        base=ReGuidance().replace(inversion_steps=1, dps_steps=1, clip=True),
        batch_size=2,
        max_widen=1,
        ablations=True,
        progress=False,
    )


@pytest.mark.slow  # the shared sweep takes about 15 s on 2 busy cores
def test_each_ablation_gets_its_own_sweep_over_the_same_grid(entry):
    _, e = entry
    assert set(e["variants"]) == {"renoise", "fresh", "more"}
    for variant in ("renoise", "fresh"):
        assert [r["sampler"] for r in e["variants"][variant]["sweep"]] == ["ddpm", "ddim"]
        assert e["variants"][variant]["edges"]["sampler"]["on_edge"] is False  # a categorical axis has no edge
    # the method's grid widened once at its edge (3 rows), for the candidate and again for `more`
    assert len(e["method_sweep"]) == 3 and len(e["variants"]["more"]["sweep"]) == 3


@pytest.mark.slow  # the shared sweep takes about 15 s on 2 busy cores
def test_more_is_tuned_at_the_budget_the_wrapper_adds(entry):
    _, e = entry
    # candidate: 1 DPS step = 1 evaluation; the wrapper adds a 1-step inversion and 1 DPS step = 2 evaluations
    assert e["variants"]["more"]["method_options"]["steps"] == 3


@pytest.mark.slow  # the shared sweep takes about 15 s on 2 busy cores
def test_the_table_counts_every_setting_each_row_had(entry):
    _, e = entry
    assert e["settings"] == {"candidate": 3, "reguidance": 5, "renoise": 5, "fresh": 2, "more": 3}
    table = collect_table([e], {"protocol": "cpu"})
    assert table["entries"][0]["settings"] == e["settings"]
    assert "sweep" not in table["entries"][0]["variants"]["renoise"]


@pytest.mark.slow  # the shared sweep takes about 15 s on 2 busy cores
def test_a_renoise_row_is_the_benchmarks_renoise_with_the_tuned_candidate(tiny_prior, entry):
    # recompute the renoise ddim row by hand, one image at a time, from the chosen candidate
    from reguidance.guidance import Problem, solve
    from reguidance.tasks import method_rng

    images, e = entry
    task, scores = get_task("sr4"), []
    for i in range(2):
        op, y = task.measure(images[i : i + 1], [i], 0, split="val")
        rng = method_rng(0, "sr4", "dps", [i], split="val")
        cand = solve(DPS.from_options(e["method_options"]), Problem(tiny_prior, op, y, rng)).x.clamp(-1, 1)
        out = reguide(
            cand,
            y,
            op,
            tiny_prior,
            config=ReGuidance().replace(inversion_steps=1, dps_steps=1, clip=True, sampler="ddim", start="renoise"),
            rng=wrapper_rng(0, "sr4", "dps", [i], split="val"),
        ).x.clamp(-1, 1)
        scores.append(float(ssim(out, images[i : i + 1])[0]))
    assert e["variants"]["renoise"]["sweep"][1]["ssim"] == pytest.approx(sum(scores) / 2, abs=1e-4)


TUNED = {
    "entries": [
        {
            "task": "sr8",
            "method": "dps",
            "method_options": {"step_size": 7.0},
            "reguidance": {"step_size": 2.0, "t_end": 0.5},
            "variants": {
                "renoise": {"reguidance": {"step_size": 5.0, "t_end": 1.0, "sampler": "ddim"}},
                "fresh": {"reguidance": {"step_size": 3.0, "t_end": 0.6, "sampler": "ddpm"}},
                "more": {"method_options": {"steps": 90, "step_size": 4.0}},
            },
        }
    ]
}


def test_the_benchmark_runs_each_ablation_with_its_own_tuned_options(monkeypatch):
    from reguidance.bench import defaults
    from reguidance.bench.runner import BenchSpec

    monkeypatch.setattr(
        defaults, "tuned_table", lambda protocol, prior="mnist", table_=None: TUNED if protocol == "cpu" else {}
    )
    spec = BenchSpec(["sr8"], ["dps"], range(2), protocol="cpu", ablations=True)
    own = spec.ablations_of("sr8", "dps")
    renoise, fresh = own["renoise"], own["fresh"]
    assert isinstance(renoise, ReGuidance) and isinstance(fresh, ReGuidance)
    assert (renoise.step_size, renoise.t_end, renoise.dps.sampler) == (5.0, 1.0, "ddim")
    assert renoise.dps_steps == 20 and renoise.inversion_steps == 10  # the protocol's wrapper budget
    assert fresh.t_end == 0.6 and own["more"] == DPS(steps=90, step_size=4.0, clip=True)
    recorded = spec.facts("sr8", "dps")["ablation_options"]
    assert isinstance(recorded, dict) and recorded["more"] == DPS(steps=90, step_size=4.0, clip=True).options()
    # without the ablations the identity holds no such entry
    plain = BenchSpec(["sr8"], ["dps"], range(2), protocol="cpu")
    assert plain.ablations_of("sr8", "dps") == {} and "ablation_options" not in plain.facts("sr8", "dps")


def _more(prior, method, own):
    """``solve_batch``'s candidate, ReGuidance and ``more`` (its own config ``own``) on sr4, 1 + 1 wrapper steps."""
    from reguidance.app.batch import solve_batch

    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op, y = get_task("sr4").measure(x, [0, 1], 0)
    config = ReGuidance().replace(inversion_steps=1, dps_steps=1, clip=True)
    variants = ("candidate", "reguidance", "more")
    return solve_batch(
        prior, op, y, [0, 1], seed=0, task="sr4", split="test", name="dps", method=method, config=config,
        variants=variants, variant_options={"more": own},
    )  # fmt: skip


def test_solve_batch_runs_more_with_its_own_options(tiny_prior):
    out = _more(tiny_prior, DPS(steps=1), DPS(steps=4))
    assert out["more"].nfe == 4  # one evaluation per DPS step, not the scaled 1 + 2


def test_the_report_lists_the_settings_each_row_had_and_a_categorical_choice(monkeypatch):
    from reguidance.bench import defaults, report

    table = {
        "ids": "0:16",
        "entries": [
            {
                "task": "sr8",
                "method": "dps",
                "method_options": {"steps": 50, "step_size": 3.0},
                "reguidance": {"step_size": 10.0, "sampler": "ddim"},
                "edges": {
                    "method": {
                        "step_size": {"values": [1.0, 3.0], "chosen": 3.0, "on_edge": True, "hard_limit": False}
                    },
                    "reguidance": {
                        "sampler": {"values": ["ddim", "ddpm"], "chosen": "ddim", "on_edge": False, "hard_limit": False}
                    },
                },
                "settings": {"candidate": 12, "reguidance": 24, "renoise": 24, "fresh": 12, "more": 12},
            }
        ],
    }
    monkeypatch.setattr(defaults, "tuned_table", lambda protocol, prior="mnist", table_=None: table)
    row = report._tuned_section("cpu", "mnist")[-2]
    assert "sampler=ddim" in row and "sampler: ddim, ddpm" in row
    assert row.endswith("| candidate 12, reguidance 24, renoise 24, fresh 12, more 12 |")


def test_more_without_its_budget_is_scaled_from_this_runs_budget_with_its_own_step_size(tiny_prior):
    out = _more(tiny_prior, DPS(steps=1, step_size=0.5), DPS(steps=None, step_size=2.0))
    # the wrapper spends 1 + 1 evaluations on top of the candidate's 1: more gets round(1 * 3 / 1) = 3 steps
    assert out["reguidance"].nfe == 3 and out["more"].nfe == 3


def test_a_run_that_overrides_the_budgets_drops_mores_tuned_budget_but_keeps_its_step_size(monkeypatch):
    from reguidance.bench import defaults
    from reguidance.bench.runner import BenchSpec

    monkeypatch.setattr(defaults, "tuned_table", lambda protocol, prior="mnist", table_=None: TUNED)
    quick = BenchSpec(["sr8"], ["dps"], range(2), protocol="cpu", ablations=True, method_options={"dps": {"steps": 5}})
    assert quick.ablations_of("sr8", "dps")["more"] == DPS(steps=None, step_size=4.0, clip=True)
    # a method without a step budget (pinv, the sanity rows) has no more to rescale, and its spec still works
    for method in ("pinv", "mean"):
        plain = BenchSpec(
            ["sr8"], [method], range(2), protocol="cpu", ablations=True, method_options={"dps": {"steps": 5}}
        )
        assert plain.ablations_of("sr8", method) == {}
    fewer = BenchSpec(["sr8"], ["dps"], range(2), protocol="cpu", ablations=True, wrapper_overrides={"dps_steps": 5})
    assert fewer.ablations_of("sr8", "dps")["more"] == DPS(steps=None, step_size=4.0, clip=True)
    renoise = fewer.ablations_of("sr8", "dps")["renoise"]
    assert isinstance(renoise, ReGuidance) and renoise.dps_steps == 5
