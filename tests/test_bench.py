"""The benchmark protocol and the resumable runner, on a tiny random-weight ADM prior."""

import json
import os
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import Tensor

from reguidance.app.methods import Pinv
from reguidance.bench.report import summarise, write_summary
from reguidance.bench.runner import BenchSpec, read_results, run_bench
from reguidance.guidance import DPS
from reguidance.operators import Inpainting, Operator
from reguidance.tasks import TASKS, get_task, parse_ids
from reguidance.wrapper import ReGuidance
from tiny_models import tiny_adm_prior


@pytest.fixture(scope="module")
def tiny_prior():
    return tiny_adm_prior()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 1, 32, 32, generator=g) * 2 - 1, torch.arange(8) % 10


#: the ``images`` fixture: images (8, 1, 32, 32) in [-1, 1] and their labels (8,), run_bench's two data arguments
Images = tuple[Tensor, Tensor]


def spec(**kw):
    base = {
        "tasks": ["box16", "sr4"],
        "methods": ["pinv"],
        "ids": range(4),
        "seed": 3,
        "batch_size": 2,
        "reguidance": ReGuidance().replace(inversion_steps=3, dps_steps=3, clip=True),
    }
    return BenchSpec(**{**base, **kw})


def _mask(op: Operator) -> Tensor:
    assert isinstance(op, Inpainting)  # a box task's operator
    return op.mask


def test_box_positions_depend_only_on_the_image_id_and_seed():
    task = get_task("box16")
    alone = _mask(task.operator([4], seed=1, x_shape=(1, 32, 32)))
    batch = _mask(task.operator([2, 3, 4], seed=1, x_shape=(1, 32, 32)))
    assert torch.equal(alone[0], batch[2])
    assert not torch.equal(_mask(task.operator([4], seed=2, x_shape=(1, 32, 32)))[0], alone[0])


def test_measurement_noise_depends_only_on_the_image_id_and_seed(images):
    x, _ = images
    _, y_alone = TASKS["sr8"].measure(x[5:6], [5], seed=0)
    _, y_batch = TASKS["sr8"].measure(x[3:6], [3, 4, 5], seed=0)
    assert torch.allclose(y_alone[0], y_batch[2])


def test_every_task_removes_information():
    x = torch.zeros(1, 1, 32, 32)
    for task in TASKS.values():
        op = task.operator([0], seed=0, x_shape=(1, 32, 32))
        assert int(torch.as_tensor(op.num_measurements).reshape(-1)[0]) < x.numel() or task.kind in (
            "deblur",
            "saturation",
        )
        assert task.sigma_y > 0


def test_ids_are_parsed_as_half_open_ranges():
    assert parse_ids("3:7") == range(3, 7)
    for bad in ("7:3", "a:b", "5", "-1:4"):
        with pytest.raises(ValueError, match="ids"):
            parse_ids(bad)
    with pytest.raises(ValueError, match="past"):
        parse_ids("0:300", limit=256)


def test_unknown_task_and_method_names_are_rejected(tiny_prior, images: Images, tmp_path):
    with pytest.raises(ValueError, match="task must be one of"):
        run_bench(tiny_prior, *images, spec(tasks=["box99"]), tmp_path, progress=False)
    with pytest.raises(ValueError, match="method must be one of"):
        run_bench(tiny_prior, *images, spec(methods=["magic"]), tmp_path, progress=False)


def test_each_image_gets_a_candidate_row_and_a_reguidance_row(tiny_prior, images: Images, tmp_path):
    run_bench(tiny_prior, *images, spec(tasks=["box16c"], ids=range(3)), tmp_path, progress=False)
    rows = read_results(tmp_path / "results.jsonl")
    assert sorted((r["id"], r["reguidance"]) for r in rows) == [(i, b) for i in range(3) for b in (False, True)]
    assert all(r["nfe"] == 6 for r in rows if r["reguidance"])  # 3 inversion + 3 DPS steps on top of pinv's 0
    assert (tmp_path / "images" / "box16c" / "pinv" / "00002_reguidance.png").exists()


def test_killed_run_resumes_to_the_same_summary_as_an_uninterrupted_one(tiny_prior, images: Images, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_bench(tiny_prior, *images, spec(), full, progress=False)
    run_bench(tiny_prior, *images, spec(), resumed, progress=False, stop_after_batches=2)  # "killed"
    with (resumed / "results.jsonl").open("a") as f:
        f.write('{"task": "sr4", "method": "pin')  # a write torn by the kill
    partial = len(read_results(resumed / "results.jsonl"))
    assert 0 < partial < len(read_results(full / "results.jsonl"))
    run_bench(tiny_prior, *images, spec(), resumed, progress=False)
    run_bench(tiny_prior, *images, spec(), resumed, progress=False)  # nothing left: a no-op
    assert len(read_results(resumed / "results.jsonl")) == len(read_results(full / "results.jsonl"))
    assert _quality(write_summary(resumed)) == _quality(write_summary(full))


def _quality(summary):
    """The summary without wall-clock fields (time and memory differ between any two runs)."""
    drop = {"sec_per_image", "peak_mem_mb"}
    return {**summary, "rows": [{k: v for k, v in r.items() if k not in drop} for r in summary["rows"]]}


def test_summary_intervals_and_paired_differences_match_a_hand_computation():
    def row(i, rg, psnr):
        base = {"task": "sr4", "method": Pinv(), "reguidance": rg, "id": i, "psnr": psnr, "ssim": 0.5}
        return {**base, "consistency": 1.0 + psnr / 100, "label": 0, "nfe": 6 if rg else 0}

    before, after = [10.0, 12.0, 14.0, 16.0], [11.0, 12.5, 13.0, 19.0]
    rows = [row(i, False, v) for i, v in enumerate(before)] + [row(i, True, v) for i, v in enumerate(after)]
    rows = [{**r, "sec_per_image": 1.0, "peak_mem_mb": 1.0} for r in rows]
    summary = summarise(rows + rows[:2])  # a resumed run's repeated rows count once
    cand = next(r for r in summary["rows"] if not r["reguidance"])
    # by hand: mean 13, sample sd sqrt(20/3) = 2.5820, half-width 1.96 * 2.5820 / 2 = 2.5303
    assert cand["n"] == 4 and cand["psnr"]["mean"] == pytest.approx(13.0)
    assert cand["psnr"]["ci95"] == pytest.approx([13 - 2.53029, 13 + 2.53029], abs=1e-4)
    paired = summary["paired"][0]["psnr"]
    # differences 1, 0.5, -1, 3: mean 0.875, sd 1.6520, Student t_{0.975, 3} = 3.18245 (tables), half-width
    # 3.18245 * 1.6520 / 2 = 2.6287; 3 of 4 improve
    assert paired["mean"] == pytest.approx(0.875)
    assert paired["ci95"] == pytest.approx([0.875 - 2.6287, 0.875 + 2.6287], abs=1e-3)
    assert paired["win_rate"] == 0.75
    # 4 images are below the minimum n: no test, no verdict, and the verdict says why
    assert paired["p_value"] is None and paired["call"] == "no test"
    assert summary["paired"][0]["verdict"] == "no verdict (n = 4 < 10)"
    # consistency counts closeness to 1 and lower is better: |c - 1| falls for ids 2 only (0.14 -> 0.13)
    assert summary["paired"][0]["consistency"]["win_rate"] == 0.25
    json.dumps(summary)


def test_report_saves_grids_and_the_tradeoff_plot_and_fd_cls(tiny_prior, images: Images, tmp_path):
    from reguidance.bench.report import save_grids, save_tradeoff_plot

    run_bench(tiny_prior, *images, spec(tasks=["sr4"], ids=range(4)), tmp_path, progress=False)
    summary = write_summary(tmp_path, features=lambda x: x.flatten(1)[:, ::64])  # any feature map will do here
    assert all(r["fd_cls"]["mean"] > 0 for r in summary["rows"])  # distinct image sets: a positive distance
    grids = save_grids(tmp_path)
    assert [g.name for g in grids] == ["sr4_pinv.png"]
    assert save_tradeoff_plot(summary, tmp_path / "tradeoff.png").stat().st_size > 1000
    assert "FD-cls" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("dps", {"steps": 3}),
        ("daps", {"steps": 2, "ode_steps": 1, "langevin_steps": 2}),
        ("diffpir", {"steps": 3}),
        ("reddiff", {"steps": 3}),
        ("pigdm", {"steps": 3}),
    ],
)
def test_every_baseline_runs_in_the_benchmark(tiny_prior, images: Images, tmp_path, method, options):
    s = spec(tasks=["box16c"], methods=[method], ids=range(2), method_options={method: options})
    run_bench(tiny_prior, *images, s, tmp_path, progress=False)
    rows = read_results(tmp_path / "results.jsonl")
    assert len(rows) == 4 and all(r["method"] == method for r in rows)


def test_external_candidates_are_read_from_a_folder_by_id(tiny_prior, images: Images, tmp_path):
    from reguidance.io.images import save_images

    x, _ = images
    folder = tmp_path / "cands"
    save_images(x[:2], [folder / "0.png", folder / "00001.png"])
    s = spec(tasks=["sr4"], methods=[f"folder:{folder}"], ids=range(2))
    run_bench(tiny_prior, *images, s, tmp_path / "out", progress=False)
    rows = [r for r in read_results(tmp_path / "out" / "results.jsonl") if not r["reguidance"]]
    assert [r["psnr"] > 40 for r in rows] == [True, True]  # the candidates are the truths, up to 8-bit rounding


def test_missing_external_candidate_names_the_file(tiny_prior, images: Images, tmp_path):
    (tmp_path / "empty").mkdir()
    s = spec(tasks=["sr4"], methods=[f"folder:{tmp_path / 'empty'}"], ids=range(1))
    with pytest.raises(ValueError, match=r"no 0.png or 00000.png"):
        run_bench(tiny_prior, *images, s, tmp_path / "out", progress=False)


def test_restore_writes_images_and_resumes(tiny_prior, images, tmp_path):
    from reguidance.app.restore import restore, write_report
    from reguidance.io.images import save_images

    x, _ = images
    save_images(x[:3], [tmp_path / "in" / f"img{k}.png" for k in range(3)])
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    names = restore(
        tiny_prior,
        "box16c",
        tmp_path / "out",
        images=tmp_path / "in",
        method=Pinv(),
        config=cfg,
        batch_size=2,
        progress=False,
    )
    report = write_report(tmp_path / "out", "box16c", cfg, names)
    assert [r["name"] for r in report["images"]] == ["img0.png", "img1.png", "img2.png"]
    assert (tmp_path / "out" / "restored" / "img2.png").exists()
    log = (tmp_path / "out" / "restore.jsonl").read_text()
    restore(tiny_prior, "box16c", tmp_path / "out", images=tmp_path / "in", method=Pinv(), config=cfg, progress=False)
    assert (tmp_path / "out" / "restore.jsonl").read_text() == log  # nothing recomputed: the rows were read back
    assert write_report(tmp_path / "out", "box16c", cfg, names) == report


def test_sharded_restore_ranks_split_the_inputs_and_merge(tiny_prior, images, tmp_path):
    from reguidance.app.restore import restore, write_report
    from reguidance.io.images import save_images

    save_images(images[0][:3], [tmp_path / "in" / f"img{k}.png" for k in range(3)])
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    kw = {"images": tmp_path / "in", "method": Pinv(), "config": cfg, "progress": False, "world_size": 2}
    names = restore(tiny_prior, "sr4", tmp_path / "out", rank=0, **kw)
    with pytest.raises(ValueError, match="no result yet"):
        write_report(tmp_path / "out", "sr4", cfg, names)
    restore(tiny_prior, "sr4", tmp_path / "out", rank=1, **kw)
    rank1 = (tmp_path / "out" / "restore.rank1.jsonl").read_text()
    assert "img1.png" in rank1 and "img0.png" not in rank1
    assert [r["name"] for r in write_report(tmp_path / "out", "sr4", cfg, names)["images"]] == [
        "img0.png",
        "img1.png",
        "img2.png",
    ]


def test_restore_rejects_measurements_of_random_box_tasks(tiny_prior, images, tmp_path):
    from reguidance.app.restore import restore
    from reguidance.io.images import save_images

    save_images(images[0][:1], [tmp_path / "y.png"])
    with pytest.raises(ValueError, match="random box"):
        restore(tiny_prior, "box16", tmp_path / "out", measurements=tmp_path / "y.png", method=Pinv(), progress=False)


def test_torchrun_shards_merge_to_the_single_process_results(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).parent / "scripts" / "shard_worker.py"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
        str(tmp_path / "sharded"),
    ]
    tests = str(Path(__file__).parent)  # the worker imports tiny_models from here, as this file does
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "sharded").glob("results*.jsonl")) == [
        "results.rank0.jsonl",
        "results.rank1.jsonl",
    ]
    sys.path.insert(0, str(worker.parent))
    from shard_worker import tiny_setup

    prior, images, labels, spec_ = tiny_setup()
    run_bench(prior, images, labels, spec_, tmp_path / "single", progress=False)
    merged, single = write_summary(tmp_path / "sharded"), write_summary(tmp_path / "single")
    for a, b in zip(merged["rows"], single["rows"], strict=True):
        assert (a["task"], a["reguidance"], a["n"]) == (b["task"], b["reguidance"], b["n"])
        for m in ("psnr", "ssim", "consistency"):  # batches differ between the runs: equal up to float rounding
            assert a[m]["mean"] == pytest.approx(b[m]["mean"], rel=1e-4, abs=1e-4)


def test_tuning_sweeps_the_step_size_then_the_wrapper_and_applies_its_rule(tiny_prior, images, tmp_path):
    from reguidance.bench.tune import choose, collect_table, parse_grid, run_sweep, tune_pair
    from reguidance.evaluation.metrics import ssim
    from reguidance.tasks import stream_rng
    from reguidance.wrapper import reguide

    assert parse_grid("step_size=0.1,1.0;dps_steps=2") == {"step_size": [0.1, 1.0], "dps_steps": [2]}
    base = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    wrapper_grid = parse_grid("step_size=0.1,1.0")
    method_grid = parse_grid("step_size=0.5,5", fields=["step_size"])
    entry = tune_pair(
        tiny_prior,
        images[0],
        "sr4",
        "dps",
        range(3),
        start=DPS(steps=2, clip=True),
        method_grid=method_grid,
        wrapper_grid=wrapper_grid,
        base=base,
        batch_size=2,
        max_widen=0,
        progress=False,
    )
    assert [r["step_size"] for r in entry["method_sweep"]] == [0.5, 5.0]
    assert [r["step_size"] for r in entry["wrapper_sweep"]] == [0.1, 1.0]
    chosen_step = choose(entry["method_sweep"])["step_size"]
    assert entry["method_options"] == DPS(steps=2, step_size=chosen_step, clip=True).options()
    assert entry["reguidance"] == base.replace(step_size=choose(entry["wrapper_sweep"])["step_size"]).options()

    # a sweep row is the benchmark's own measurement: recompute the last wrapper row by hand, batch size 1
    task, x, rows = get_task("sr4"), images[0][:3], []
    for i in range(3):
        op, y = task.measure(x[i : i + 1], [i], 0, split="val")
        cand = dps_candidates(tiny_prior, op, y, i, chosen_step)
        out = reguide(
            cand,
            y,
            op,
            tiny_prior,
            config=ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True, step_size=1.0),
            rng=stream_rng(0, "sr4", "reguidance/dps", [i], split="val"),
        ).x.clamp(-1, 1)
        rows.append(float(ssim(out, x[i : i + 1])[0]))
    assert entry["wrapper_sweep"][1]["ssim"] == pytest.approx(sum(rows) / 3, abs=1e-4)

    calls = []

    def tune(task, method):
        calls.append((task, method))
        return entry

    run_sweep([("sr4", "dps")], tmp_path, tune)
    again = run_sweep([("sr4", "dps")], tmp_path, tune)
    assert calls == [("sr4", "dps")]  # the second sweep resumed from the saved entry
    table = collect_table(again, {"protocol": "cpu"})
    assert table["entries"] == [
        {
            "task": "sr4",
            "method": "dps",
            "method_options": entry["method_options"],
            "reguidance": entry["reguidance"],
            "edges": entry["edges"],
            "settings": {"candidate": 2, "reguidance": 4},
        }
    ]
    assert entry["edges"]["method"]["step_size"]["values"] == [0.5, 5.0]
    assert choose([{"consistency": 5.0, "ssim": 0.9}, {"consistency": 1.0, "ssim": 0.5}])["ssim"] == 0.5
    assert choose([{"consistency": 5.0, "ssim": 0.9}, {"consistency": 3.0, "ssim": 0.5}])["ssim"] == 0.9


def dps_candidates(prior, operator, y, i, step_size):
    from reguidance.guidance import DPS, Problem, solve
    from reguidance.tasks import stream_rng

    rng = stream_rng(0, "sr4", "method/dps", [i], split="val")
    return solve(DPS(steps=2, step_size=step_size, clip=True), Problem(prior, operator, y, rng)).x.clamp(-1, 1)


def test_protocol_defaults_layer_reference_budget_and_tuned_table(monkeypatch):
    from reguidance.bench import defaults

    sr8 = get_task("sr8")
    assert defaults.method_for(sr8, "dps") == DPS(step_size=0.3, steps=1000, clip=True)
    assert defaults.method_for(sr8, "dps", "cpu", tuned=False) == DPS(step_size=0.3, steps=50, clip=True)
    assert defaults.wrapper_for(sr8, "pinv", "cpu", tuned=False).inversion_steps == 10
    table = {
        "entries": [
            {
                "task": "sr8",
                "method": "dps",
                "method_options": {"step_size": 7.0},
                "reguidance": {"step_size": 2.0, "t_end": 0.5},
            }
        ]
    }
    monkeypatch.setattr(
        defaults, "tuned_table", lambda protocol, prior="mnist", table_=None: table if protocol == "cpu" else {}
    )
    assert defaults.method_for(sr8, "dps", "cpu") == DPS(step_size=7.0, steps=50, clip=True)
    assert defaults.method_for(get_task("sr:8"), "dps", "cpu") == DPS(step_size=7.0, steps=50, clip=True)  # one task
    cfg = defaults.wrapper_for(sr8, "dps", "cpu")
    assert (cfg.step_size, cfg.t_end, cfg.dps_steps, cfg.clip) == (2.0, 0.5, 20, True)
    assert defaults.is_tuned("cpu") and not defaults.is_tuned("reference")
    assert defaults.method_for(sr8, "dps") == DPS(step_size=0.3, steps=1000, clip=True)  # other protocols untouched
    with pytest.raises(ValueError, match="protocol must be one of"):
        defaults.method_for(sr8, "dps", "gpu")


def test_tuning_grid_rejects_unknown_fields():
    from reguidance.bench.tune import parse_grid

    with pytest.raises(ValueError, match="FIELD"):
        parse_grid("speed=3")


def test_restore_resumes_after_a_torn_last_row(tiny_prior, images, tmp_path):
    from reguidance.app.restore import restore, write_report
    from reguidance.io.images import save_images

    save_images(images[0][:2], [tmp_path / "in" / f"img{k}.png" for k in range(2)])
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    kw = {"images": tmp_path / "in", "method": Pinv(), "config": cfg, "progress": False, "batch_size": 1}
    names = restore(tiny_prior, "sr4", tmp_path / "out", **kw)
    log = tmp_path / "out" / "restore.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n" + '{"name": "img1.p')  # killed while writing row 2
    restore(tiny_prior, "sr4", tmp_path / "out", **kw)
    assert [r["name"] for r in write_report(tmp_path / "out", "sr4", cfg, names)["images"]] == ["img0.png", "img1.png"]


def test_verdict_follows_the_corrected_calls_of_every_metric():
    from reguidance.bench.report import verdict

    assert verdict({"better": ["ssim"], "worse": []}) == "helps"
    assert verdict({"better": ["ssim", "psnr"], "worse": ["reward"]}) == "mixed"
    assert verdict({"better": [], "worse": ["psnr"]}) == "hurts"
    assert verdict({"better": [], "worse": []}) == "no clear change"


def test_holm_adjustment_matches_a_hand_computation():
    from reguidance.evaluation.metrics import holm

    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, max(0.06, 0.04 * 1) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_summary_corrects_the_primary_family_together_and_calls_each_metric():
    from reguidance.bench.report import summarise

    g = torch.Generator().manual_seed(0)
    rows = []
    for task, shift in (("a", 0.2), ("b", -0.2), ("c", 0.0)):  # ReGuidance better, worse, no change on SSIM
        for i in range(40):
            noise = float(torch.randn((), generator=g)) * 0.05
            base = {"task": task, "method": "dps", "id": i, "psnr": 20.0, "consistency": 1.0, "label": 0}
            base |= {"nfe": 1, "sec_per_image": 0.0, "peak_mem_mb": 0.0, "reward": -1.0}
            rows.append({**base, "variant": "candidate", "reguidance": False, "ssim": 0.5})
            rows.append({**base, "variant": "reguidance", "reguidance": True, "ssim": 0.5 + shift + noise})
    paired = {p["task"]: p for p in summarise(rows)["paired"]}
    assert [paired[m]["verdict"] for m in "abc"] == ["helps", "hurts", "no clear change"]
    assert paired["b"]["worse"] == ["ssim"] and paired["a"]["better"] == ["ssim"]
    # the primary family here: dps vs candidate on SSIM for 3 tasks (no fit_z in these rows): Holm over 3 tests
    ps = sorted((paired[m]["ssim"]["p_value"], paired[m]["ssim"]["p_holm"]) for m in "abc")
    assert ps[0][1] == pytest.approx(min(1.0, 3 * ps[0][0]))
    assert all(paired[m]["ssim"]["primary"] for m in "abc")
    # PSNR is secondary: no correction, no Holm value
    assert not paired["a"]["psnr"]["primary"] and "p_holm" not in paired["a"]["psnr"]


def test_rows_carry_the_reward_and_the_consistency_before_the_clamp(tiny_prior, images: Images, tmp_path):
    from reguidance.tasks import get_task

    ids = [0, 1]
    run_bench(tiny_prior, *images, spec(tasks=["box16"], ids=ids), tmp_path, progress=False)
    rows = {(r["variant"], r["id"]): r for r in read_results(tmp_path / "results.jsonl")}
    truth = images[0][ids]
    _, y = get_task("box16").measure(truth, ids, 3, split="test")
    for k, i in enumerate(ids):
        # the pseudo-inverse puts y on the observed pixels: before the clamp it fits y exactly
        assert rows[("candidate", i)]["consistency_raw"] == pytest.approx(0.0, abs=1e-5)
        # reward = -(sum over observed pixels of (y - clamp(y))^2), by hand from the mask
        observed = y[k].flatten()
        clamped = observed.clamp(-1, 1)
        assert rows[("candidate", i)]["reward"] == pytest.approx(-float(((observed - clamped) ** 2).sum()), rel=1e-5)


def test_ablations_share_the_measurement_and_spend_the_stated_evaluations(tiny_prior, images: Images, tmp_path):
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=3, clip=True)
    base = spec(tasks=["sr4"], methods=["pinv", "dps"], ids=range(2), reguidance=cfg)
    base = replace(base, method_options={"dps": {"steps": 4}})
    run_bench(tiny_prior, *images, base, tmp_path, progress=False)
    first = read_results(tmp_path / "results.jsonl")
    run_bench(tiny_prior, *images, replace(base, ablations=True), tmp_path, progress=False)  # resumes: adds them
    rows = read_results(tmp_path / "results.jsonl")
    assert len(rows) == len(first) + 2 * 3 + 2 * 2  # dps: renoise, fresh, more; pinv: renoise, fresh (no budget)
    nfe = {(r["method"], r["variant"]): r["nfe"] for r in rows}
    assert nfe[("dps", "reguidance")] == 4 + 2 + 3
    assert nfe[("dps", "renoise")] == 4 + 3 and nfe[("dps", "fresh")] == 3  # no inversion; fresh uses no candidate
    assert nfe[("dps", "more")] == round(4 * (4 + 5) / 4)  # the base method given the wrapper's 5 extra NFE
    assert ("pinv", "more") not in nfe
    summary = write_summary(tmp_path)
    against = {(p["method"], p["against"]) for p in summary["paired"]}
    assert against == {("dps", v) for v in ("candidate", "renoise", "fresh", "more")} | {
        ("pinv", v) for v in ("candidate", "renoise", "fresh")
    }
    assert summary["paired"][0]["n"] == 2


def test_tuning_refuses_any_split_but_validation(tiny_prior, images):
    from reguidance.bench.tune import parse_grid, tune_pair

    with pytest.raises(ValueError, match="validation images only; got split 'test'"):
        tune_pair(tiny_prior, images[0], "sr4", "pinv", range(2), wrapper_grid=parse_grid("t_end=0.3"), split="test")


def test_tuning_command_reads_the_validation_split_only(monkeypatch, tmp_path, images):
    from reguidance.cli import main
    from reguidance.io import datasets as data

    asked = []

    def load_dataset(name, split, *args, **kwargs):
        asked.append(split)
        return images[0].repeat(1, 1, 1, 1), images[1]

    monkeypatch.setattr(data, "is_available", lambda name: True)
    monkeypatch.setattr(data, "load_dataset", load_dataset)
    args = ["tune", "--task", "sr4", "--method", "pinv", "--ids", "0:2", "--grid", "t_end=0.3;dps_steps=1"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert asked == ["val"]


def test_widening_goes_one_step_past_an_edge_and_stops_at_hard_limits():
    from reguidance.bench.tune import edges, widen

    assert widen("step_size", [1, 3, 10], 10) == pytest.approx(10 * 10 / 3, rel=1e-5)
    assert widen("step_size", [1, 3, 10], 1) == pytest.approx(1 / 3, rel=1e-5)
    assert widen("step_size", [1, 3, 10], 3) is None  # interior: nothing to widen
    assert widen("t_end", [0.3, 0.5], 0.5) == pytest.approx(0.7)
    assert widen("t_end", [0.3, 0.5], 0.3) == pytest.approx(0.1)
    assert widen("t_end", [0.8, 1.0], 1.0) is None  # t_end cannot pass 1
    assert widen("t_end", [0.7, 0.9], 0.9) == pytest.approx(1.0)  # the step stops on the limit
    assert widen("noise_mix", [0.1, 0.25, 1.0], 1.0) is None
    rows = [{"t_end": 0.8}, {"t_end": 1.0}]
    assert edges(rows, {"t_end": 1.0}, ["t_end"])["t_end"] == {
        "values": [0.8, 1.0],
        "chosen": 1.0,
        "on_edge": True,
        "hard_limit": True,
    }


def test_bench_report_fills_the_marked_section_and_keeps_the_prose(tiny_prior, images: Images, tmp_path):
    from reguidance.cli import main

    out = tmp_path / "run"
    run_bench(tiny_prior, *images, spec(tasks=["sr4"]), out, progress=False)
    summary = write_summary(out)
    config = json.loads((out / "config.json").read_text())
    assert config["protocol"] == "reference" and config["runs"][0]["reguidance"]["inversion_steps"] == 3
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Title\nprose above\n<!-- tables:begin -->\nold\n<!-- tables:end -->\nprose below\n")
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\nprose above\n<!-- tables:begin -->\n### tiny") and text.endswith("prose below\n")
    assert "old" not in text
    paired = summary["paired"][0]
    assert f"| sr4 | pinv | {paired['n']} |" in text
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- summary:begin -->\n<!-- summary:end -->\n")
    args = ["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--summary-into", str(readme)]
    assert main([*args, "--pictures", str(tmp_path / "pics"), "--picture-method", "pinv"]) == 0
    verdicts = [p["verdict"] for p in summary["paired"]]
    counts = [verdicts.count(v) for v in ("helps", "equivalent", "no clear change", "mixed", "hurts")]
    untested = sum(v.startswith("no verdict") for v in verdicts)
    worse = sum(bool(p["worse"]) for p in summary["paired"])
    row = f"| tiny | {len(verdicts)} | {' | '.join(map(str, counts))} | {untested} | {worse} |"
    assert row in readme.read_text()
    assert (tmp_path / "pics" / "benchmark_tiny.png").stat().st_size > 0
    assert main(["bench-report", "--run", f"tiny={tmp_path}", "--into", str(doc)]) == 2  # no summary there
    (tmp_path / "plain.md").write_text("no markers\n")
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(tmp_path / "plain.md")]) == 2


def test_bench_report_section_and_answer_use_their_own_markers_and_check_every_file_first(
    tiny_prior, images: Images, tmp_path
):
    from reguidance.cli import main

    out = tmp_path / "run"
    run_bench(tiny_prior, *images, spec(tasks=["sr4"]), out, progress=False)
    write_summary(out)
    doc = tmp_path / "BENCH.md"
    before = (
        "<!-- primary_answer:begin -->\nold answer\n<!-- primary_answer:end -->\n"
        "<!-- primary:begin -->\nold primary\n<!-- primary:end -->\n"
        "<!-- tables:begin -->\nstarved tables stay\n<!-- tables:end -->\n"
    )
    doc.write_text(before)
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    args = ["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--section", "primary"]
    assert main([*args, "--answer-into", str(readme)]) == 2  # the README lacks the markers: nothing is written
    assert doc.read_text() == before and readme.read_text() == "no markers here\n"
    assert main([*args[:-1], "no such section"]) == 2
    assert main([*args, "--answer-into", str(doc)]) == 0
    text = doc.read_text()
    assert "old answer" not in text and "old primary" not in text and "starved tables stay" in text
    answer = text.split("<!-- primary_answer:begin -->")[1].split("<!-- primary_answer:end -->")[0]
    assert answer.strip() == "**tiny**: no test of the primary family in this run."  # pinv is not in the family
    assert text.split("<!-- primary:begin -->")[1].lstrip().startswith("### tiny")


def test_bench_report_keep_copies_the_records_byte_for_byte_and_the_copy_gives_the_same_tables(
    tiny_prior, images: Images, tmp_path
):
    from reguidance.cli import main

    out = tmp_path / "run"
    run_bench(tiny_prior, *images, spec(tasks=["sr4"]), out, progress=False)
    write_summary(out)
    (out / "walltime.jsonl").write_text(
        '{"started": "x", "seconds": 1, "rc": 0, "nproc": 1, "device": "cpu", "command": "c"}\n'
    )
    doc = tmp_path / "BENCH.md"
    doc.write_text("<!-- tables:begin -->\n<!-- tables:end -->\n")
    keep = tmp_path / "kept"
    (keep / "tiny").mkdir(parents=True)
    (keep / "tiny" / "summary.json").write_text("mine")  # a file the program did not write: refused, nothing written
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--keep", str(keep)]) == 2
    assert (keep / "tiny" / "summary.json").read_text() == "mine" and len(list((keep / "tiny").iterdir())) == 1
    assert doc.read_text() == "<!-- tables:begin -->\n<!-- tables:end -->\n"
    (keep / "tiny" / "summary.json").unlink()
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--keep", str(keep)]) == 0
    kept = sorted(p.name for p in (keep / "tiny").iterdir() if not p.name.startswith("."))
    assert kept == ["config.json", "results.jsonl", "summary.json", "walltime.jsonl"]
    for name in kept:
        assert (keep / "tiny" / name).read_bytes() == (out / name).read_bytes()
    tables = doc.read_text()
    assert main(["bench-report", "--run", f"tiny={keep / 'tiny'}", "--into", str(doc), "--keep", str(keep)]) == 2
    assert main(["bench-report", "--run", f"tiny={keep / 'tiny'}", "--into", str(doc)]) == 0  # from the copy alone
    assert doc.read_text() == tables
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--keep", str(keep)]) == 0  # rerun
    stale = keep / "tiny" / "results.rank0.jsonl"  # as if an earlier, sharded run had been kept here
    assert main(["bench-report", "--run", f"stale={out}", "--into", str(doc), "--keep", str(keep)]) == 0
    (keep / "stale" / "results.jsonl").rename(stale)
    with (keep / "tiny" / ".reguidance-manifest.jsonl").open("a") as manifest:  # as that run's --keep recorded it
        manifest.write('{"path": "results.rank0.jsonl"}\n')
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--keep", str(keep)]) == 0
    assert not stale.exists()  # deleted: the copy holds this run's rows alone
    foreign = keep / "tiny" / "results.rank1.jsonl"
    foreign.write_text("a file the program did not write\n")
    assert main(["bench-report", "--run", f"tiny={out}", "--into", str(doc), "--keep", str(keep)]) == 2
    assert foreign.read_text() == "a file the program did not write\n"
    foreign.unlink()
    for name in ("..", "a/b"):  # a name that would leave KEEP
        assert main(["bench-report", "--run", f"{name}={out}", "--into", str(doc), "--keep", str(keep)]) == 2
    assert not (tmp_path / "config.json").exists() and not (keep / "a").exists()


def test_lpips_when_given_is_a_column_a_paired_change_and_part_of_the_verdict(tiny_prior, images: Images, tmp_path):
    from reguidance.bench.report import format_markdown

    def l1(x, truth):  # any per-image distance stands in for LPIPS here; tests/test_lpips.py checks LPIPS itself
        return (x - truth).abs().flatten(1).mean(1)

    run_bench(tiny_prior, *images, spec(tasks=["sr4"]), tmp_path, lpips=l1, progress=False)
    rows = read_results(tmp_path / "results.jsonl")
    truth = images[0][0:1]
    from reguidance.io.images import load_images

    saved, _ = load_images(tmp_path / "images" / "sr4" / "pinv" / "00000_candidate.png", None, 1)
    first = next(r for r in rows if r["id"] == 0 and not r["reguidance"])
    assert first["lpips"] == pytest.approx(float(l1(saved, truth)[0]), abs=0.01)  # PNG quantisation aside
    summary = write_summary(tmp_path, notes=["FID skipped"])
    by_id = {(r["id"], r["reguidance"]): r["lpips"] for r in rows}
    wins = [by_id[(i, True)] < by_id[(i, False)] for i in range(4)]  # lower LPIPS is better
    assert summary["paired"][0]["lpips"]["win_rate"] == sum(wins) / 4
    assert summary["rows"][0]["lpips"]["mean"] == pytest.approx(sum(by_id[(i, False)] for i in range(4)) / 4)
    text = format_markdown(summary)
    assert "| LPIPS |" in text and "ΔLPIPS" in text
    assert "Note: FID skipped" in (tmp_path / "summary.md").read_text()


def test_bench_needs_both_lpips_files(tmp_path, capsys):
    from reguidance.cli import main

    assert main(["bench", "--ids", "0:2", "--lpips-alexnet", str(tmp_path / "a.pth"), "--out", str(tmp_path)]) == 2
    assert "--lpips-lin" in capsys.readouterr().err


def test_a_diverging_setting_is_recorded_and_bounds_the_widening():
    from reguidance.bench.tune import _stage, choose, edges

    def evaluate(options):  # SSIM grows with the step size until it diverges past 20
        if options["step_size"] > 20:
            return {**options, "ssim": None, "consistency": None, "diverged": True}
        return {**options, "ssim": options["step_size"] / 100, "consistency": 1.0}

    rows, best = _stage({"step_size": [1.0, 3.0, 10.0]}, evaluate, 1.5, max_widen=2)
    assert [r["step_size"] for r in rows] == [1.0, 3.0, 10.0, pytest.approx(100 / 3, rel=1e-4)]
    assert best["step_size"] == 10.0
    edge = edges(rows, best, ["step_size"])["step_size"]
    assert edge["values"] == [1.0, 3.0, 10.0] and edge["on_edge"] and edge["hard_limit"]
    with pytest.raises(ValueError, match="every setting of the grid diverged"):
        choose([{"diverged": True}])


def test_widening_keeps_small_step_sizes():
    from reguidance.bench.tune import widen

    assert widen("step_size", [1e-6, 1e-5], 1e-6) == pytest.approx(1e-7)  # not rounded away to 0


def _fail_at(variant: str, calls: list[tuple[list[int], int]], monkeypatch) -> None:
    """Make ``variant`` fail on the first batch (ids 0, 1), as the reference run failed after 24 minutes of work: the
    wrapper's variant when it starts so, ``more`` when DPS is asked for more steps than the candidate's 3. Every DPS
    candidate solve is recorded in ``calls`` as (ids, steps)."""
    from reguidance.app import batch
    from reguidance.guidance import DPS

    real = batch.solve

    def solve(config, problem, **kwargs):
        if isinstance(config, DPS):
            assert config.steps is not None  # the benchmark always sets the budget
            calls.append((list(problem.rng.ids), config.steps))
            if variant == "more" and config.steps > 3:
                raise RuntimeError("out of memory")
        elif getattr(config, "start", None) == variant:
            raise RuntimeError("out of memory")
        return real(config, problem, **kwargs)

    monkeypatch.setattr(batch, "solve", solve)


def _ablation_spec() -> BenchSpec:
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    return spec(tasks=["sr4"], methods=["dps"], reguidance=cfg, method_options={"dps": {"steps": 3}}, ablations=True)


def _rows_by_key(out) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Each row by (task, method, variant, id), without wall-clock fields (they differ between any two runs)."""
    rows = read_results(out / "results.jsonl")
    keyed = {(r["task"], r["method"], r["variant"], r["id"]): r for r in rows}
    assert len(keyed) == len(rows)  # no variant of an image written twice
    drop = {"sec_per_image", "peak_mem_mb"}
    return {k: {f: v for f, v in r.items() if f not in drop} for k, r in keyed.items()}


#: the variants of the ablation spec, in the order they are computed
ORDER = ("candidate", "reguidance", "renoise", "fresh", "more")


@pytest.mark.parametrize("failing", ["renoise", "more"])
def test_a_failing_variant_keeps_the_rows_of_the_variants_before_it(
    tiny_prior, images: Images, tmp_path, monkeypatch, failing
):
    from reguidance.io.files import Manifest

    calls: list[tuple[list[int], int]] = []
    _fail_at(failing, calls, monkeypatch)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_bench(tiny_prior, *images, _ablation_spec(), tmp_path, progress=False)
    # the first batch (ids 0, 1): DPS-3 candidates; 'more' asks for 3 * (3 + 4) / 3 = 7 steps (4: the wrapper's)
    assert calls == [([0, 1], 3), *([([0, 1], 7)] if failing == "more" else [])]
    kept = {(r["variant"], r["id"]) for r in read_results(tmp_path / "results.jsonl")}
    before = ORDER[: ORDER.index(failing)]
    assert kept == {(v, i) for v in before for i in (0, 1)}
    assert all((tmp_path / "images" / "sr4" / "dps" / f"00001_{v}.png").exists() for v in before)
    saved = tmp_path / "candidates" / "sr4" / "dps" / "00001.safetensors"
    assert saved.exists() and saved in Manifest(tmp_path)  # --overwrite deletes it with the rest


@pytest.mark.parametrize(("failing", "candidates_saved"), [("renoise", True), ("more", True), ("renoise", False)])
def test_a_rerun_computes_only_the_missing_variants_and_equals_an_uninterrupted_run(
    tiny_prior, images: Images, tmp_path, monkeypatch, failing, candidates_saved
):
    import shutil

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_bench(tiny_prior, *images, _ablation_spec(), full, progress=False)
    calls: list[tuple[list[int], int]] = []
    with monkeypatch.context() as patch:
        _fail_at(failing, calls, patch)
        with pytest.raises(RuntimeError):
            run_bench(tiny_prior, *images, _ablation_spec(), resumed, progress=False)
    if not candidates_saved:  # a folder an older version wrote: the candidate is recomputed, not guessed
        shutil.rmtree(resumed / "candidates")
    calls.clear()
    _fail_at("none", calls, monkeypatch)
    run_bench(tiny_prior, *images, _ablation_spec(), resumed, progress=False)
    again = [([0, 1], 3)] if not candidates_saved else []  # DPS-3 candidates of ids 0, 1 only when not saved
    assert calls == [*again, ([0, 1], 7), ([2, 3], 3), ([2, 3], 7)]
    assert _rows_by_key(resumed) == _rows_by_key(full)
    calls.clear()
    run_bench(tiny_prior, *images, _ablation_spec(), resumed, progress=False)  # nothing left: a no-op
    assert calls == []
