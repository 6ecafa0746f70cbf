"""Leftovers of the issue "Real-scale use": no silent resize of clean images or measurements in ``restore``; the
wrapper's budget on ``bench``; ReGuidance's latent in deepinv's conventions; the public checkpoint lookup.

The priors are the embedded ``mnist`` model (32x32 gray) with a few steps: the tests check wiring, not quality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance.cli import main
from reguidance.conventions import InputError
from reguidance.operators.deepinv import latent_to_deepinv
from reguidance.priors import zoo

#: what every guided restore below uses
FAST = ["--prior", "mnist", "--task", "sr4", "--inversion-steps", "1", "--dps-steps", "2"]
FAST_BENCH = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "pinv", "--protocol", "cpu", "--ids", "0:1"]


def gray_png(path: Path, size: int, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), value).save(path)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The last stderr line of a command that failed with a user error (progress bars may come before it)."""
    text = capsys.readouterr().err
    err = text.strip().splitlines()[-1]
    assert err.startswith("error: ") and "Traceback" not in text, text
    assert sum(line.startswith("error: ") for line in text.splitlines()) == 1, text
    for w in words:
        assert w in err, err
    return err


# ------------------------------------------------------------------------------------------- clean images' size
def test_a_clean_image_of_another_size_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gray_png(tmp_path / "in" / "a.png", 48)
    gray_png(tmp_path / "in" / "b.png", 32)
    args = ["restore", *FAST, "--image", str(tmp_path / "in"), "--method", "pinv", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = one_line_error(capsys, "--image", "a.png is 48x48", "32x32", "--resize")
    assert "b.png" not in err  # only the file that does not fit is named
    assert not (tmp_path / "out").exists()


def test_resize_fits_a_clean_image_of_another_size(tmp_path: Path) -> None:
    gray_png(tmp_path / "in" / "a.png", 48, value=90)
    args = ["restore", *FAST, "--image", str(tmp_path / "in"), "--method", "pinv", "--out", str(tmp_path / "out")]
    assert main([*args, "--resize"]) == 0
    with Image.open(tmp_path / "out" / "candidate" / "a.png") as img:
        pixels = np.asarray(img, dtype=np.float64)
    # the flat 48x48 image resized is flat at 32x32 (bicubic keeps constants); the candidate is the pseudo-inverse
    # of its noisy x4 measurement: 90 plus noise averaged over 64 blocks
    assert pixels.shape == (32, 32) and abs(pixels.mean() - 90) < 5


def test_a_measurement_of_another_size_is_refused_and_never_resized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gray_png(tmp_path / "y" / "a.png", 16)  # sr4 of a 32x32 prior measures 8x8
    args = ["restore", *FAST, "--measurement", str(tmp_path / "y"), "--method", "pinv"]
    for extra in ([], ["--resize"]):
        assert main([*args, *extra, "--out", str(tmp_path / "out")]) == 2
        one_line_error(capsys, "--measurement", "a.png is 16x16", "8x8", "never resized")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- bench's wrapper budget
def test_bench_records_the_wrapper_steps_it_was_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reguidance.bench.defaults import wrapper_for
    from reguidance.tasks import get_task

    out = tmp_path / "run"
    assert main([*FAST_BENCH, "--inversion-steps", "2", "--dps-steps", "3", "--out", str(out)]) == 0
    (run,) = json.loads((out / "config.json").read_text())["runs"]
    protocol = wrapper_for(get_task("sr4"), "pinv", "cpu", prior="mnist")  # the cpu protocol's 10 and 20 steps
    assert (protocol.inversion_steps, protocol.dps_steps) != (2, 3)
    assert run["reguidance"] == {**run["reguidance"], "inversion_steps": 2, "dps_steps": 3}
    assert run["facts"]["reguidance"] == run["reguidance"]  # in the identity
    assert run["reguidance"]["t_end"] == protocol.t_end and run["reguidance"]["step_size"] == protocol.step_size
    capsys.readouterr()
    # the same folder with another budget holds other results: refused, naming what differs
    assert main([*FAST_BENCH, "--inversion-steps", "2", "--out", str(out)]) == 2
    one_line_error(capsys, "dps_steps", "--overwrite")


@pytest.mark.parametrize(("flag", "value"), [("--dps-steps", "0"), ("--inversion-steps", "-1")])
def test_bench_refuses_a_wrapper_budget_that_is_not_a_positive_integer(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*FAST_BENCH, flag, value, "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, flag, value)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- latent -> deepinv
def test_a_latent_of_known_image_and_noise_maps_to_deepinvs_values() -> None:
    # ab = 0.64: sqrt(ab) = 0.8, sqrt(1 - ab) = 0.6, so x_t = 0.8 x0 + 0.6 eps
    x0 = torch.tensor([-1.0, 0.0, 0.5, 1.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    eps = torch.tensor([1.0, -1.0, 2.0, 0.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    latent = 0.8 * x0 + 0.6 * eps
    d = latent_to_deepinv(latent, 0.64)
    # deepinv 0.5's DPS carries its state on the same [-1, 1] VP scale and takes x_init as that state
    torch.testing.assert_close(d.x_init, latent)
    # the denoiser's input: (x0 + 1) / 2 + s eps with s = sqrt(0.36 / 0.64) / 2 = 0.375
    assert d.sigma == pytest.approx(0.375)
    want = torch.tensor([0.0 + 0.375, 0.5 - 0.375, 0.75 + 0.75, 1.0 + 0.0], dtype=torch.float64)
    torch.testing.assert_close(d.noisy_image.flatten(), want)


@pytest.mark.parametrize("t", [0.001, 0.3, 0.5, 1.0])
def test_the_deepinv_time_is_the_one_whose_vp_level_is_the_latents(t: float) -> None:
    """deepinv's VP SDE: beta(t) = 0.1 + 19.9 t, so ab(t) = exp(-(0.1 t + 19.9 t^2 / 2)), by hand."""
    ab = math.exp(-(0.1 * t + 19.9 * t**2 / 2))
    assert latent_to_deepinv(torch.zeros(1, 1, 2, 2), ab).time == pytest.approx(t, rel=1e-9)


def test_a_latent_past_the_sdes_end_maps_to_time_one_and_bad_levels_are_refused() -> None:
    ab_999 = math.prod(1 - (1e-4 + s * (0.02 - 1e-4) / 999) for s in range(1000))  # the linear chain's last level
    assert ab_999 < math.exp(-(0.1 + 19.9 / 2))  # a little past the SDE's end
    assert latent_to_deepinv(torch.zeros(1, 1, 2, 2), ab_999).time == 1.0
    for ab in (0.0, 1.0, -0.5):
        with pytest.raises(InputError, match="alpha_bar must lie in"):
            latent_to_deepinv(torch.zeros(1, 1, 2, 2), ab)
    with pytest.raises(InputError, match="floating-point"):
        latent_to_deepinv(torch.zeros(1, 1, 2, 2, dtype=torch.int64), 0.5)


# ------------------------------------------------------------------------------------------ checkpoint lookup
def test_find_checkpoint_looks_in_the_given_folder_then_the_usual_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(zoo.ENV_CHECKPOINTS, raising=False)
    monkeypatch.setattr(zoo, "DEFAULT_CACHE", tmp_path / "cache")
    entry = zoo.ModelEntry(name="tiny", description="test", config={}, n_params=0, filename="tiny.pt", url="-")
    assert zoo.find_checkpoint(entry, tmp_path / "given") is None
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny.pt").write_bytes(b"weights")
    assert zoo.find_checkpoint(entry) == tmp_path / "cache" / "tiny.pt"
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "tiny.pt").write_bytes(b"other weights")
    assert zoo.find_checkpoint(entry, tmp_path / "given") == tmp_path / "given" / "tiny.pt"
