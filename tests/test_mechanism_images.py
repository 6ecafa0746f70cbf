"""scripts/mechanism_images.py: a resumable map of inverted latent vs re-noised candidate vs fresh noise.

The expectations are derived from the library's public calls (the benchmark's measurement, method and wrapper
streams), not from the script: the tiny grid's size is counted by hand, the candidates and the re-noised runs are
recomputed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest
import torch

from reguidance.bench.defaults import method_for, wrapper_for
from reguidance.bench.records import read_all_results, variant_of
from reguidance.evaluation.metrics import ssim
from reguidance.guidance import Problem, solve
from reguidance.io.datasets import load_dataset
from reguidance.priors import load_prior
from reguidance.tasks import get_task, method_rng, wrapper_rng
from reguidance.wrapper import reguide

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mechanism_images.py"
IDS = [9800, 9801]  # --tiny keeps the first two ids of --ids


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--tasks", "box20", "--methods", "dps", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, timeout=600, env=env, check=False)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mechanism")
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_the_tiny_grid_writes_one_row_per_cell_and_image(tiny_run):
    rows = _rows(tiny_run)
    # per image: 1 candidate; inversion at t_end {0.3, 1} x {ddpm, ddim} x inversion {2, 3} x DPS {2, 3} = 16;
    # renoise and fresh at t_end x sampler x DPS = 8 each
    assert sorted(r["start"] for r in rows) == sorted(
        ["candidate"] * 2 + ["inversion"] * 32 + ["renoise", "fresh"] * 16
    )
    assert {r["id"] for r in rows} == set(IDS)
    assert all(r["inversion_steps"] is None for r in rows if r["start"] != "inversion")
    tuned = wrapper_for(get_task("box20"), "dps", "cpu", prior="mnist").step_size
    assert {r["step_size"] for r in rows if r["start"] != "candidate"} == {tuned}


def test_a_rerun_recomputes_nothing_and_drops_a_torn_last_line(tiny_run):
    log = tiny_run / "rows.jsonl"
    before = log.read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (tiny_run / "candidates").rglob("*.pt")}
    with log.open("ab") as f:
        f.write(b'{"task": "box20", "start": "inv')  # a kill in the middle of a write
    proc = _run(tiny_run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert log.read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (tiny_run / "candidates").rglob("*.pt")} == stamps


def test_the_candidates_are_the_benchmarks(tiny_run):
    prior = load_prior("mnist")
    images, _ = load_dataset("mnist", "test")
    task = get_task("box20")
    operator, y = task.measure(images[IDS], IDS, 0, split="test")
    method = method_for(task, "dps", "cpu", prior="mnist", overrides={"steps": 3})  # --tiny's DPS budget
    raw = solve(method, Problem(prior, operator, y, method_rng(0, "box20", "dps", IDS))).x
    cand = SimpleNamespace(x=raw.clamp(-1, 1))
    for k, i in enumerate(IDS):
        cached = torch.load(tiny_run / "candidates" / "box20" / "dps" / f"{i:05d}.pt")
        torch.testing.assert_close(cached["y"], y[k], rtol=0, atol=0)
        # the script ran in another process with its own thread count: equal up to the README's 1e-4 tolerance
        torch.testing.assert_close(cached["x"], cand.x[k], rtol=0, atol=1e-4)
    rows = {r["id"]: r for r in _rows(tiny_run) if r["start"] == "candidate"}
    s = ssim(cand.x, images[IDS])
    assert [rows[i]["ssim"] for i in IDS] == pytest.approx(s.tolist(), abs=1e-4)


def test_renoise_rows_do_not_depend_on_inversion_steps(tiny_run):
    prior = load_prior("mnist")
    images, _ = load_dataset("mnist", "test")
    task = get_task("box20")
    operator, y = task.measure(images[IDS], IDS, 0, split="test")
    x_hat = torch.stack([torch.load(tiny_run / "candidates" / "box20" / "dps" / f"{i:05d}.pt")["x"] for i in IDS])
    base = wrapper_for(task, "dps", "cpu", prior="mnist")
    rows = [r for r in _rows(tiny_run) if r["start"] == "renoise"]
    cases: list[tuple[float, Literal["ddpm", "ddim"], int]] = [(0.3, "ddpm", 2), (1.0, "ddim", 3)]
    for t_end, sampler, dps_steps in cases:
        outs = []
        for inversion_steps in (1, 50):  # neither is on the tiny grid: renoise must not read it
            cfg = base.replace(
                start="renoise",
                t_end=t_end,
                sampler=sampler,
                dps_steps=dps_steps,
                inversion_steps=inversion_steps,
            )
            outs.append(reguide(x_hat, y, operator, prior, config=cfg, rng=wrapper_rng(0, "box20", "dps", IDS)).x)
        torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
        expected = ssim(outs[0].clamp(-1, 1), images[IDS]).tolist()
        got = {
            r["id"]: r["ssim"]
            for r in rows
            if (r["t_end"], r["sampler"], r["dps_steps"]) == (t_end, sampler, dps_steps)
        }
        assert len(got) == len(IDS)
        assert [got[i] for i in IDS] == pytest.approx(expected, abs=1e-5)


def test_candidates_from_a_bench_folder_are_its_kept_ones_bit_for_bit(tmp_path):
    """A bench run made with the same facts gives the map its candidates (no new draws); one made with other facts
    is refused, naming the fact, before anything is written."""
    from safetensors.torch import load_file

    bench = tmp_path / "bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).with_name("reguidance")), "bench", "--protocol", "cpu", "--prior", "mnist", "--ids"]
    cmd += ["9800:9802", "--tasks", "box20", "--methods", "dps", "--steps", "3", "--inversion-steps", "2"]
    cmd += ["--dps-steps", "2", "--out", str(bench), "--device", "cpu"]  # --steps 3: --tiny's DPS budget
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    refused = tmp_path / "refused"
    base = [sys.executable, str(SCRIPT), "--tiny", "--tasks", "box20", "--methods", "dps", "--no-progress"]
    proc = subprocess.run(
        [*base, "--out", str(refused), "--candidates-from", str(bench), "--protocol", "reference"],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "protocol='cpu'" in proc.stderr and "'reference'" in proc.stderr
    assert not refused.exists()
    out = tmp_path / "map"
    proc = subprocess.run(
        [*base, "--out", str(out), "--candidates-from", str(bench)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench_rows = {r["id"]: r for r in read_all_results(bench) if variant_of(r) == "candidate"}
    images, _ = load_dataset("mnist", "test")
    _, y = get_task("box20").measure(images[IDS], IDS, 0, split="test")
    for k, i in enumerate(IDS):
        cached = torch.load(out / "candidates" / "box20" / "dps" / f"{i:05d}.pt")
        kept = load_file(bench / "candidates" / "box20" / "dps" / f"{i:05d}.safetensors")
        assert torch.equal(cached["x"], kept["x"]) and torch.equal(cached["raw"], kept["raw"])
        assert torch.equal(cached["y"], y[k])
        assert cached["nfe"] == bench_rows[i]["nfe"] == 3
    assert json.loads((out / "config.json").read_text())["candidates_from"] == str(bench)
    before = (out / "rows.jsonl").read_bytes()
    proc = subprocess.run(
        [*base, "--out", str(out), "--candidates-from", str(out)],  # a map folder is no bench run
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "not a bench run's configuration" in proc.stderr
    assert (out / "rows.jsonl").read_bytes() == before
    doc = tmp_path / "answer.md"
    doc.write_text("<!-- mechanism_answer:begin -->\n<!-- mechanism_answer:end -->\n")
    report = [sys.executable, str(SCRIPT.with_name("mechanism_map.py")), "--prior", "mnist", "--out", str(out)]
    report += ["--answer-into", str(doc), "--plot", str(tmp_path / "map.png"), "--summary", str(tmp_path / "s.json")]
    proc = subprocess.run(report, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 primary-table images per cell" in doc.read_text()  # the bench's images, not held-out ones
