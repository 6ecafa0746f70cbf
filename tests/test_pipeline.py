"""The image pipeline in Python and its command-line fast paths (issue 18, "No Python pipeline for images" and
"Feedback"): ``make_operator`` at a given image shape, the top-level names, ``--compile`` / ``--compile-mode`` /
``--channels-last`` on ``bench`` and ``restore``, per-step progress bars of the candidate method, the memory note's
batch, and the one fitting rule of ``restore --resize``.

The prior is the embedded ``mnist`` model (32x32 gray) with a few steps: the tests check wiring, not quality.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import reguidance
from reguidance.app import memory
from reguidance.cli import main
from reguidance.conventions import BatchRNG, InputError
from reguidance.tasks import make_operator

#: the wrapper's budget of every command below
TINY = ["--inversion-steps", "1", "--dps-steps", "2"]


def gray_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def two_digits(folder: Path) -> Path:
    """Two 32x32 gray PNGs (committed MNIST test images 0 and 1) in ``folder``."""
    from reguidance.io.datasets import load_test_subset

    x, _, _ = load_test_subset("mnist")
    for k, name in enumerate(("a.png", "b.png")):
        gray_png(folder / name, ((x[k, 0].numpy() + 1) * 127.5).round())
    return folder


# ------------------------------------------------------------------------------------------------ make_operator
def test_make_operator_has_no_default_image_shape() -> None:
    assert inspect.signature(make_operator).parameters["image_shape"].default is inspect.Parameter.empty


def test_make_operator_builds_super_resolution_at_the_given_size() -> None:
    op = make_operator("sr:8", (3, 64, 64))
    assert op.x_shape == (3, 64, 64) and op.y_shape == (3, 8, 8) and op.sigma_y == 0.05
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    blocks = x.numpy().reshape(2, 3, 8, 8, 8, 8).mean(axis=(3, 5))  # average of each 8x8 block, by hand
    np.testing.assert_allclose(op(x).numpy(), blocks, atol=1e-12)


def test_make_operator_resolves_a_relative_box_at_the_image_size() -> None:
    op = make_operator("box:0.5c,sigma_y=0.1", (1, 16, 16))
    hole = np.ones((16, 16))
    hole[4:12, 4:12] = 0  # the central half of the side is missing
    x = torch.ones(1, 1, 16, 16, dtype=torch.float64)
    np.testing.assert_array_equal(op(x).reshape(16, 16).numpy(), hole)
    assert op.sigma_y == 0.1


def box_mask(ids: list[int] | None) -> torch.Tensor:
    """The mask (observed = True) of task ``box:8`` on 32x32 images ``ids`` under seed 1."""
    mask = make_operator("box:8", (1, 32, 32), ids=ids, seed=1).mask
    assert isinstance(mask, torch.Tensor)
    return mask


def test_make_operator_draws_a_random_box_per_image_id() -> None:
    alone, batch = box_mask([4]), box_mask([2, 3, 4])
    assert torch.equal(alone[0], batch[2]) and batch.shape[0] == 3
    shared = box_mask(None)  # one draw (id 0) for every image of a batch
    assert shared.shape[0] == 1 and torch.equal(shared[0], box_mask([0])[0])


@pytest.mark.parametrize(
    ("task", "shape", "message"),
    [
        ("sr:8", (2, 1, 32, 32), r"image_shape must be \(C, H, W\).*pass x.shape\[1:\]"),
        ("sr:8", (1, 32), r"image_shape must be \(C, H, W\)"),
        ("sr:8", (1, 0, 32), r"image_shape must be \(C, H, W\)"),
        ("sr:3", (1, 32, 32), "task sr:3 does not fit 1x32x32 images"),
        ("zoom:2", (1, 32, 32), "task must be one of"),
    ],
)
def test_make_operator_refuses_bad_input_naming_it(task: str, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_operator(task, shape)


# ------------------------------------------------------------------------------------------- top-level names
def test_import_reguidance_does_not_import_torch() -> None:
    code = "import sys, reguidance; print('torch' in sys.modules, len(reguidance.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and int(out[1]) > 20


def test_the_top_level_names_are_the_library_s_own_objects() -> None:
    from reguidance import guidance, operators, priors, tasks, wrapper
    from reguidance.io import images

    assert reguidance.reguide is wrapper.reguide and reguidance.ReGuidance is wrapper.ReGuidance
    assert reguidance.load_prior is priors.load_prior and reguidance.make_operator is tasks.make_operator
    assert reguidance.load_images is images.load_images and reguidance.save_images is images.save_images
    assert reguidance.DPS is guidance.DPS and reguidance.solve is guidance.solve
    assert reguidance.LinearOperator is operators.LinearOperator and reguidance.BatchRNG is BatchRNG
    for name in reguidance.__all__:
        assert getattr(reguidance, name) is not None and name in dir(reguidance)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = reguidance.nonsense


# ---------------------------------------------------------------------------------------------- fast paths
def test_bench_and_restore_pass_the_fast_paths_to_load_prior(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reguidance.priors as priors

    seen: list[dict[str, Any]] = []
    real = priors.load_prior

    def recording(name: str, **kw: Any) -> Any:
        seen.append({k: kw.get(k) for k in ("compile", "compile_mode", "channels_last")})
        return real(name, **{**kw, "compile": False})  # compiling would take minutes on this CPU

    monkeypatch.setattr(priors, "load_prior", recording)
    fast = ["--compile", "--compile-mode", "reduce-overhead", "--channels-last"]
    bench = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "pinv", "--ids", "0:1", *TINY]
    assert main([*bench, *fast, "--out", str(tmp_path / "bench")]) == 0
    restore = ["restore", "--prior", "mnist", "--task", "sr4", "--method", "pinv", *TINY]
    restore += ["--image", str(two_digits(tmp_path / "in"))]
    assert main([*restore, *fast, "--out", str(tmp_path / "restore")]) == 0
    assert main([*restore, "--out", str(tmp_path / "plain")]) == 0
    on = {"compile": True, "compile_mode": "reduce-overhead", "channels_last": True}
    assert seen == [on, on, {"compile": False, "compile_mode": "default", "channels_last": False}]


def test_channels_last_changes_results_by_rounding_only_and_not_the_run_identity(tmp_path: Path) -> None:
    restore = ["restore", "--prior", "mnist", "--task", "sr4", "--method", "dps", "--steps", "3", *TINY]
    restore += ["--image", str(two_digits(tmp_path / "in"))]
    assert main([*restore, "--out", str(tmp_path / "plain")]) == 0
    assert main([*restore, "--channels-last", "--out", str(tmp_path / "fast")]) == 0
    for name in ("a.png", "b.png"):
        plain, fast = (np.asarray(Image.open(tmp_path / d / "restored" / name), np.int16) for d in ("plain", "fast"))
        assert np.abs(plain - fast).max() <= 1  # at most one 8-bit level apart: float rounding
    rows = (tmp_path / "plain" / "restore.jsonl").read_text()
    assert main([*restore, "--channels-last", "--out", str(tmp_path / "plain")]) == 0  # resumes: same identity
    assert (tmp_path / "plain" / "restore.jsonl").read_text() == rows  # nothing redone


# ------------------------------------------------------------------------------------------------- progress
def test_solve_batch_shows_per_step_bars_of_the_method_and_the_wrapper(capsys: pytest.CaptureFixture[str]) -> None:
    from reguidance.app.batch import solve_batch
    from reguidance.guidance import DPS
    from reguidance.priors import load_prior
    from reguidance.wrapper import ReGuidance

    prior = load_prior("mnist")
    x = torch.zeros(1, 1, 32, 32)
    op = make_operator("sr4", (1, 32, 32))
    y = op.measure(x, BatchRNG.from_seed(0, 1))
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=4, clip=True)
    common: dict[str, Any] = {"seed": 0, "task": "sr4", "split": "test", "name": "dps", "config": cfg}
    common["method"] = DPS(steps=3, clip=True)
    solve_batch(prior, op, y, [0], **common)
    assert capsys.readouterr().err == ""  # quiet unless asked
    solve_batch(prior, op, y, [0], **common, progress=True)
    err = capsys.readouterr().err
    # each bar first shows "0/<its steps>" (later refreshes are throttled by time, so only the first is certain)
    assert "DPS:   0%" in err and "0/3" in err  # the candidate method's own steps
    assert "euler inversion:   0%" in err and "0/2" in err and "0/4" in err  # the wrapper's inversion and its DPS


def test_restore_shows_the_candidate_method_s_steps_under_its_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    restore = ["restore", "--prior", "mnist", "--task", "sr4", "--method", "daps", "--steps", "2", *TINY]
    assert main([*restore, "--image", str(two_digits(tmp_path / "in")), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "restore:   0%" in err and "DAPS:   0%" in err  # the method's bar under the images' bar


def test_bench_shows_the_candidate_method_s_steps_under_its_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "dps", "--steps", "3", "--ids", "0:1"]
    assert main([*bench, *TINY, "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "bench:   0%" in err and "DPS:   0%" in err and "0/3" in err  # the method's bar under the images' bar


# ---------------------------------------------------------------------------------------------- memory note
def test_the_batch_that_must_fit_is_at_most_the_number_of_images() -> None:
    from reguidance.priors import load_prior

    prior = load_prior("mnist")
    step = memory.estimate_step(prior)
    assert step is not None
    # room for 9 images, 2 images to solve: one batch of 2 fits, no note (the old note said "batches of 9")
    assert memory.fit_batch(prior, 16, "cpu", available=9 * step.need(1), n=2) == (2, None)
    fitted, note = memory.fit_batch(prior, 16, "cpu", available=step.need(1), n=2)
    assert fitted == 1 and note is not None
    assert "--batch-size 16 with 2 images (one batch of 2)" in note and "batches of 1 instead" in note


def test_restore_of_two_images_with_room_for_nine_prints_no_memory_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reguidance.priors import load_prior

    step = memory.estimate_step(load_prior("mnist"))
    assert step is not None
    monkeypatch.setattr(memory, "available_bytes", lambda device: 9 * step.need(1))
    restore = ["restore", "--prior", "mnist", "--task", "sr4", "--method", "pinv", *TINY]
    assert main([*restore, "--image", str(two_digits(tmp_path / "in")), "--out", str(tmp_path / "out")]) == 0
    assert "note:" not in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- one fitting rule
def test_restore_resize_takes_the_central_square_as_bench_does(tmp_path: Path) -> None:
    wide = np.zeros((32, 96))
    wide[:, 32:64], wide[:, 64:] = 128, 255  # black | gray | white thirds: the central square is all gray
    gray_png(tmp_path / "in" / "wide.png", wide)
    restore = ["restore", "--prior", "mnist", "--task", "sr4", "--image", str(tmp_path / "in"), *TINY]
    restore += ["--candidate", str(tmp_path / "in"), "--resize", "--out", str(tmp_path / "out")]
    assert main(restore) == 0
    candidate = np.asarray(Image.open(tmp_path / "out" / "candidate" / "wide.png"))
    assert candidate.shape == (32, 32) and (candidate == 128).all()  # stretching would keep black and white ends
    facts = json.loads((tmp_path / "out" / "config.json").read_text())["facts"]
    assert facts["resize"] == "center_crop"  # the rule is part of the run's identity
