"""``bench --tuned FILE``: a tuned table written by ``tune-defaults --write`` (e.g. a few (task, method) pairs
swept with ``--ablations``) replaces the package's for one run, is refused when it does not fit the run, and is
recorded in the run's ``config.json``, from which the report's tuning section is written."""

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
import torch

from reguidance.bench.report import write_summary
from reguidance.bench.runner import BenchSpec, run_bench
from reguidance.conventions import InputError
from reguidance.guidance import DPS
from reguidance.wrapper import ReGuidance
from tiny_models import tiny_adm_prior

#: a table as ``tune-defaults --write`` writes it, with values no default has (so a match cannot be a default's)
TABLE: dict[str, Any] = {
    "protocol": "cpu",
    "prior": "mnist",
    "ids": "0:16",
    "seed": 0,
    "dtype": "fp32",
    "rule": "the rule",
    "command": "reguidance tune-defaults --prior mnist --tasks sr8 --methods dps,pinv --ablations",
    "method_grids": {"dps": "step_size=7,9"},
    "wrapper_grid": "step_size=2,4;t_end=0.5",
    "max_widen": 0,
    "entries": [
        {
            "task": "sr8",
            "method": "dps",
            "method_options": {"steps": 50, "step_size": 7.0},
            "reguidance": {"step_size": 2.0, "t_end": 0.5},
            "edges": {
                "method": {"step_size": {"values": [7.0, 9.0], "chosen": 7.0, "on_edge": True, "hard_limit": False}},
                "reguidance": {
                    "step_size": {"values": [2.0, 4.0], "chosen": 2.0, "on_edge": True, "hard_limit": False}
                },
            },
            "settings": {"candidate": 2, "reguidance": 4, "renoise": 4, "fresh": 2, "more": 2},
            "variants": {
                "renoise": {
                    "reguidance": {"step_size": 4.0, "t_end": 0.5},
                    "edges": {"step_size": {"values": [2.0, 4.0], "chosen": 4.0, "on_edge": True, "hard_limit": False}},
                },
                "fresh": {
                    "reguidance": {"step_size": 2.0, "t_end": 0.5},
                    "edges": {"step_size": {"values": [2.0, 4.0], "chosen": 2.0, "on_edge": True, "hard_limit": False}},
                },
                "more": {
                    "method_options": {"steps": 80, "step_size": 9.0},
                    "edges": {"step_size": {"values": [7.0, 9.0], "chosen": 9.0, "on_edge": True, "hard_limit": True}},
                },
            },
        },
        {"task": "sr8", "method": "pinv", "method_options": {}, "reguidance": {"step_size": 4.0, "t_end": 0.2}},
    ],
}


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps(TABLE))
    return str(path)


def test_the_runs_options_come_from_the_file_and_not_from_the_package(table):
    spec = BenchSpec(["sr8"], ["dps"], range(2), protocol="cpu", ablations=True, tuned=table)
    spec.check()
    assert spec.method("sr8", "dps") == DPS(steps=50, step_size=7.0, clip=True)
    wrapper = spec.wrapper("sr8", "dps")
    # the file's fields over the CPU protocol's wrapper budget (10-step inversion, 20 DPS steps)
    assert (wrapper.step_size, wrapper.t_end, wrapper.inversion_steps, wrapper.dps_steps) == (2.0, 0.5, 10, 20)
    own = spec.ablations_of("sr8", "dps")
    renoise, fresh = own["renoise"], own["fresh"]
    assert isinstance(renoise, ReGuidance) and isinstance(fresh, ReGuidance)
    assert renoise.step_size == 4.0 and fresh.step_size == 2.0
    assert own["more"] == DPS(steps=80, step_size=9.0, clip=True)
    package = BenchSpec(["sr8"], ["dps"], range(2), protocol="cpu", ablations=True)
    assert package.method("sr8", "dps").options()["step_size"] != 7.0  # the package's table chose otherwise
    assert package.identity("sr8", "dps") != spec.identity("sr8", "dps")  # so their rows never mix


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"tasks": ["sr4"]}, r"--tuned .* has no entry for sr4/dps; it holds sr8/dps, sr8/pinv"),
        ({"protocol": "reference"}, r"a table tuned for protocol 'cpu', and this run's protocol is 'reference'"),
        ({"context": {"prior": "fashion_mnist"}}, r"tuned for prior 'mnist', and this run's prior is 'fashion_mnist'"),
    ],
)
def test_a_table_that_does_not_fit_the_run_is_refused_before_anything_runs(table, kw, message):
    base = {"tasks": ["sr8"], "methods": ["dps"], "ids": range(2), "protocol": "cpu", "tuned": table}
    with pytest.raises(InputError, match=message):
        BenchSpec(**{**base, **kw}).check()


def test_the_sanity_rows_need_no_entry(table):
    spec = BenchSpec(["sr8"], ["dps", "mean", "retrieval"], range(2), protocol="cpu", tuned=table)
    replace(spec, context={"dataset": "mnist"}).check()


def test_the_cli_names_the_flag_of_a_missing_or_foreign_table_and_writes_nothing(tmp_path, capsys):
    from reguidance.cli import main

    out = tmp_path / "run"
    args = ["bench", "--protocol", "cpu", "--tasks", "sr8", "--methods", "dps", "--ids", "0:2", "--out", str(out)]
    assert main([*args, "--tuned", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: --tuned {tmp_path / 'nope.json'}: no such file (write one with reguidance tune-defaults --write)"
    )
    foreign = tmp_path / "notes.json"
    foreign.write_text(json.dumps({"hello": 1}))
    assert main([*args, "--tuned", str(foreign)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {foreign} lacks protocol, prior, entries, command") and "\n" not in err
    assert not out.exists()


def test_the_run_records_the_table_and_the_report_shows_each_ablations_own_choice(table, tmp_path):
    from reguidance.bench import report

    prior = tiny_adm_prior()
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spec = BenchSpec(
        ["sr8"],
        ["pinv"],
        range(2),
        protocol="cpu",
        tuned=table,
        wrapper_overrides={"inversion_steps": 1, "dps_steps": 1},
    )
    out = tmp_path / "run"
    run_bench(prior, images, torch.arange(2), spec, out, progress=False)
    write_summary(out)
    recorded = json.loads((out / "config.json").read_text())["tuned_table"]
    assert recorded["command"] == TABLE["command"] and recorded["path"] == table
    assert [(e["task"], e["method"]) for e in recorded["entries"]] == [("sr8", "pinv")]  # the run's pairs only
    assert recorded["sha256"] == hashlib.sha256(open(table, "rb").read()).hexdigest()
    # the report's section, from a table with ablations: one more column, each ablation's own choice
    lines = report._tuned_section("cpu", "mnist", table={**TABLE, "entries": TABLE["entries"][:1]})
    assert lines[0].startswith("Options chosen on validation images 0:16 of mnist (seed 0, fp32) by `reguidance")
    assert lines[2].endswith("| settings in all | ablations' own choices |")
    assert lines[-2].endswith(
        "| candidate 2, reguidance 4, renoise 4, fresh 2, more 2 | renoise: step_size=4 (on an edge: step_size); "
        "fresh: step_size=2 (on an edge: step_size); more: step_size=9 (on an edge: step_size (hard limit)) |"
    )
    # and a run's report reads the recorded table, so the file may move or change afterwards
    (tmp_path / "tuned.json").unlink()
    text = report.benchmark_tables({"tiny": out})
    assert "by `reguidance tune-defaults --prior mnist --tasks sr8 --methods dps,pinv --ablations`" in text


def test_a_sweep_reads_pairs_another_process_saved_and_computes_only_the_rest(tmp_path):
    from reguidance.bench.tune import run_sweep

    other = tmp_path / "other"
    other.mkdir()
    saved = {"task": "sr8", "method": "daps", "method_options": {"step_size": 1e-4}, "reguidance": {}, "variants": {}}
    (other / "sr8_daps.json").write_text(json.dumps(saved))
    # saved without the ablations a sweep now asks for: computed again
    stale = {"task": "box20", "method": "daps", "method_options": {}, "reguidance": {}}
    (other / "box20_daps.json").write_text(json.dumps(stale))
    ran = []

    def run_pair(task, method):
        ran.append((task, method))
        return {"task": task, "method": method, "method_options": {"step_size": 3.0}, "reguidance": {}, "variants": {}}

    out = tmp_path / "all"
    pairs = [("sr8", "dps"), ("sr8", "daps"), ("box20", "daps")]
    entries = run_sweep(pairs, out, run_pair, lambda e: "variants" in e, sources=[other])
    assert ran == [("sr8", "dps"), ("box20", "daps")]
    assert [e["method_options"] for e in entries] == [{"step_size": 3.0}, {"step_size": 1e-4}, {"step_size": 3.0}]
    assert sorted(p.name for p in out.iterdir()) == ["box20_daps.json", "sr8_dps.json"]  # nothing copied
    assert json.loads((other / "sr8_daps.json").read_text()) == saved  # nor changed


def test_tune_defaults_refuses_a_from_folder_no_tune_run_made(tmp_path, capsys):
    from reguidance.cli import main

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    args = ["tune-defaults", "--tasks", "sr8", "--methods", "pinv", "--out", str(tmp_path / "out")]
    assert main([*args, "--from", str(stranger)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: --from {stranger}: not the folder of a reguidance tune run (its .reguidance-run.json is missing)\n"
    )
    assert not (tmp_path / "out").exists()


def test_tune_defaults_refuses_an_out_inside_a_from_folder(tmp_path, capsys):
    from reguidance.cli import main

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / ".reguidance-run.json").write_text(json.dumps({"program": "reguidance", "kind": "tune"}))
    out = sweep / "all"
    assert main(["tune-defaults", "--tasks", "sr8", "--methods", "pinv", "--out", str(out), "--from", str(sweep)]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {out} lies inside the input --from {sweep}; a run never writes over its inputs: choose an "
        "--out apart from them\n"
    )
    assert not out.exists()
