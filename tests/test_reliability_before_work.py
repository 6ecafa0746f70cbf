"""Before the first write, before the model loads, and never a hang or a traceback (issue 27, section 3).

Each test names the mechanism that closes one class of failure found by the held-out matrix: unbounded sizes
(threads, draws), image files that do not read through (a header claiming too many pixels, a truncated file),
file names that are not text, seeds past the 64-bit range, output suffixes checked late, input checks after the
prior loads, a mask that observes nothing, and library inputs on the wrong device, scale or shape. A command that
refuses exits with status 2 and exactly one ``error:`` line, and leaves its output path untouched.
"""

from __future__ import annotations

import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import reguidance as rg
from reguidance.cli import main
from reguidance.conventions import InputError

FAST = ["--inversion-steps", "2", "--dps-steps", "2"]
FAST_BENCH = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "pinv", "--protocol", "cpu", *FAST]


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The stderr of a refused command: exactly one line, ``error: ...``, naming ``words``, no traceback."""
    text = capsys.readouterr().err
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in text, text
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def png(path: Path, size: tuple[int, int] = (32, 32), colour: int | tuple[int, int, int] = 90) -> Path:
    """A flat PNG of ``size`` (width, height): gray for an int ``colour``, RGB for a triple."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L" if isinstance(colour, int) else "RGB", size, colour).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` 8-bit gray pixels and that holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def truncated_png(path: Path) -> Path:
    """A noisy 32x32 PNG cut in half: its header reads, its pixels do not."""
    png(path)
    Image.effect_noise((32, 32), 60).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def no_prior_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any prior load fails the test: the refusal must come first."""
    import reguidance.priors as priors

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the prior loaded before the inputs were checked")

    monkeypatch.setattr(priors, "load_prior", refuse)


def restore_args(image: Path, out: Path, *more: str) -> list[str]:
    return ["restore", "--task", "sr4", "--method", "pinv", "--image", str(image), "--out", str(out), *FAST, *more]


# ----------------------------------------------------------------------------------------------- unbounded sizes
def test_a_thread_count_is_bounded_by_the_cpus_this_process_may_use() -> None:
    from reguidance.conventions import check_threads, usable_cpus

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cpus() == cpus
    assert check_threads("--threads", cpus) == cpus
    for bad in (0, cpus + 1, 1_000_000):
        with pytest.raises(InputError, match=f"--threads must be an integer >= 1 and at most {cpus}"):
            check_threads("--threads", bad)


@pytest.mark.parametrize("command", ["sample", "bench", "restore", "train", "speed"])
def test_every_threads_flag_refuses_more_threads_than_cpus_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None, command: str
) -> None:
    out = tmp_path / "out"
    args = {
        "sample": ["sample", "--prior", "mnist", "--out", str(out)],
        "bench": [*FAST_BENCH, "--out", str(out)],
        "restore": restore_args(png(tmp_path / "a.png"), out),
        "train": ["train", "--out", str(out), "--steps", "1"],
        "speed": ["speed", "--json", str(out)],
    }[command]
    assert main([*args, "--threads", "1000000"]) == 2
    one_line_error(capsys, "--threads", "1000000")
    assert not out.exists()


def test_check_draws_fit_counts_two_float_copies_and_a_generator_per_draw_and_image() -> None:
    from reguidance.app.memory import GENERATOR_BYTES, check_draws_fit

    # 3 draws of a batch of 2 images of 1x2x2: 3 * 2 * (2 copies * 4 pixels * 4 bytes + one generator)
    need = 3 * 2 * (2 * 4 * 4 + GENERATOR_BYTES)
    assert check_draws_fit("--samples", 3, (1, 2, 2), 2, available=need) == 3
    with pytest.raises(InputError, match=r"--samples 3: .* ask for at most 2"):
        check_draws_fit("--samples", 3, (1, 2, 2), 2, available=need - 1)


def test_restore_samples_beyond_memory_are_refused_at_once_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None
) -> None:
    out = tmp_path / "out"
    start = time.perf_counter()
    assert main(restore_args(png(tmp_path / "a.png"), out, "--samples", "1000000000")) == 2
    assert time.perf_counter() - start < 30  # arithmetic, not a billion generators
    one_line_error(capsys, "--samples 1000000000", "is available")
    assert not out.exists()


# ------------------------------------------------------------------------------------------ image files read through
def test_a_header_claiming_too_many_pixels_is_one_line_in_every_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reguidance.io.images import image_size, inspect_images, load_images

    huge = png_header_only(tmp_path / "huge" / "h.png", 100_000, 100_000)  # past Pillow's own bomb limit
    for read in (image_size, lambda f: inspect_images([f]), load_images):
        with pytest.raises(InputError, match=r"h\.png' is too large"):
            read(huge)
    out = tmp_path / "out"
    assert main([*FAST_BENCH, "--ids", "0:1", "--data", f"folder:{huge.parent}", "--out", str(out)]) == 2
    one_line_error(capsys, "--data folder:", "h.png", "too large", "megapixels")
    assert not out.exists()


def test_inspect_images_decodes_each_file_through_and_finds_a_truncated_one(tmp_path: Path) -> None:
    from reguidance.io.images import image_size, inspect_images

    cut = truncated_png(tmp_path / "cut.png")
    assert image_size(cut) == (32, 32)  # the header alone reads fine
    with pytest.raises(InputError, match=r"--data folder:x: could not read image file .*cut.png.*truncated"):
        inspect_images([png(tmp_path / "fine.png"), cut], "--data folder:x")


@pytest.mark.parametrize("command", ["bench", "restore", "train"])
def test_a_truncated_image_is_refused_before_the_run_folder_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None, command: str
) -> None:
    folder = tmp_path / "in"
    png(folder / "a.png")
    truncated_png(folder / "b.png")
    out = tmp_path / "out"
    args = {
        "bench": [*FAST_BENCH, "--ids", "0:2", "--data", f"folder:{folder}", "--out", str(out)],
        "restore": restore_args(folder, out),
        "train": ["train", "--data", f"folder:{folder}", "--steps", "1", "--out", str(out)],
    }[command]
    assert main(args) == 2
    one_line_error(capsys, "b.png", "truncated")
    assert not out.exists()


def test_external_candidates_are_found_and_read_through_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None
) -> None:
    folder = tmp_path / "cands"
    png(folder / "0.png")
    truncated_png(folder / "00001.png")
    out = tmp_path / "out"
    base = ["bench", "--prior", "mnist", "--tasks", "sr4", "--protocol", "cpu", *FAST, "--out", str(out)]
    assert main([*base, "--methods", f"folder:{folder}", "--ids", "0:3"]) == 2
    one_line_error(capsys, f"--methods folder:{folder}", "no 2.png or 00002.png")
    assert main([*base, "--methods", f"folder:{folder}", "--ids", "0:2"]) == 2
    one_line_error(capsys, "00001.png", "truncated")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------- names, seeds
def test_a_file_name_that_is_not_text_is_refused_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None
) -> None:
    folder = tmp_path / "in"
    png(folder / "fine.png")
    Image.new("L", (32, 32), 90).save(os.fsencode(folder) + b"/\xff\xfe.png")  # Latin-1 bytes: not UTF-8
    out = tmp_path / "out"
    assert main(restore_args(folder, out)) == 2
    one_line_error(capsys, "--image", r"b'\xff\xfe.png'", "rename it")
    assert not out.exists()


def test_the_seed_bound_leaves_room_for_every_offset_added_to_a_seed() -> None:
    from reguidance.conventions import SEED_MAX, check_seed, derive_seed

    assert check_seed("--seed", SEED_MAX) == SEED_MAX == 2**63 - 1
    with pytest.raises(InputError, match=r"--seed must be an integer in \[0, 2\*\*63 - 1"):
        check_seed("--seed", SEED_MAX + 1)
    torch.Generator().manual_seed(SEED_MAX + 7919)  # the theory testbed's offset, the largest one added to a seed
    derive_seed(SEED_MAX + 7919, 2**32)  # and the per-sample mixing


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("restore", "--seed"),
        ("bench", "--seed"),
        ("sample", "--seed"),
        ("theory", "--seed"),
        ("theory", "--testbed-seed"),
        ("train", "--seed"),
        ("tune", "--seed"),
    ],
)
def test_a_seed_past_the_bound_is_refused_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None, command: str, flag: str
) -> None:
    out = tmp_path / "out"
    args = {
        "restore": restore_args(png(tmp_path / "a.png"), out),
        "bench": [*FAST_BENCH, "--out", str(out)],
        "sample": ["sample", "--prior", "mnist", "--out", str(out)],
        "theory": ["theory", "--plot", str(out / "p.png")],
        "train": ["train", "--out", str(out)],
        "tune": ["tune", "--task", "sr4", "--method", "pinv", "--out", str(out)],
    }[command]
    assert main([*args, flag, str(2**64)]) == 2
    one_line_error(capsys, flag, str(2**64))
    assert not out.exists()


def test_batch_rng_refuses_a_seed_torch_cannot_take_by_name() -> None:
    with pytest.raises(InputError, match=r"seeds must be integers in \[0, 2\*\*64\), got 18446744073709551616"):
        rg.BatchRNG([2**64])


def test_theory_refuses_a_picture_suffix_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import reguidance.studies.theory as theory

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the theory ran before the suffix was checked")

    monkeypatch.setattr(theory, "run_theory", never)
    assert main(["theory", "--plot", str(tmp_path / "p.xyz")]) == 2
    one_line_error(capsys, "--plot", "p.xyz", ".png", ".pdf")
    assert not (tmp_path / "p.xyz").exists()


# ------------------------------------------------------------------------------------- restore: before the prior
@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no image nor measurement", ["pass exactly one of --image"]),
        ("truncated image", ["--image", "truncated"]),
        ("no candidate for an input", ["--candidate", "no candidate for 1 inputs: b.png"]),
        ("image of another size", ["--image", "a.png is 48x48", "--resize"]),
        ("image smaller than a 256x256 prior", ["--image", "a.png is 32x32", "256x256"]),
    ],
)
def test_restore_checks_every_input_before_the_prior_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None, case: str, words: list[str]
) -> None:
    folder, cands, out = tmp_path / "in", tmp_path / "cands", tmp_path / "out"
    png(folder / "a.png", (48, 48) if case == "image of another size" else (32, 32))
    args = ["restore", "--task", "sr4", "--out", str(out), *FAST]
    if case == "no image nor measurement":
        args += ["--method", "pinv"]
    elif case == "truncated image":
        truncated_png(folder / "b.png")
        args += ["--method", "pinv", "--image", str(folder)]
    elif case == "no candidate for an input":
        png(folder / "b.png")
        png(cands / "a.png")
        args += ["--candidate", str(cands), "--image", str(folder)]
    elif case == "image smaller than a 256x256 prior":
        args += ["--prior", "ffhq_10m", "--method", "pinv", "--image", str(folder)]
    else:
        args += ["--method", "pinv", "--image", str(folder)]
    assert main(args) == 2
    one_line_error(capsys, *words)
    assert not out.exists()


def test_restore_refuses_a_colour_photo_for_a_gray_prior_unless_asked_to_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None
) -> None:
    photo = png(tmp_path / "in" / "photo.png", colour=(200, 40, 90))
    out = tmp_path / "out"
    assert main(restore_args(photo, out)) == 2
    one_line_error(capsys, "--image", "photo.png is in colour", "gray", "--resize")
    assert not out.exists()


def test_restore_resize_converts_a_colour_photo_to_gray_with_itu_601_luma(tmp_path: Path) -> None:
    from reguidance.app.restore import RestoreRequest, plan_restore

    photo = png(tmp_path / "in" / "photo.png", colour=(200, 40, 90))
    plan = plan_restore(RestoreRequest("sr4", tmp_path / "out", image=photo, method="pinv", resize=True))
    assert plan.inputs is not None and plan.inputs.truth is not None
    luma = round(0.299 * 200 + 0.587 * 40 + 0.114 * 90)  # ITU-R 601, on 8-bit pixels
    assert plan.inputs.truth.shape == (1, 1, 32, 32)
    torch.testing.assert_close(plan.inputs.truth, torch.full((1, 1, 32, 32), luma / 127.5 - 1))
    assert not (tmp_path / "out").exists()  # planning writes nothing


# ---------------------------------------------------------------------------------------------------------- masks
def test_an_all_black_mask_is_refused_while_the_task_is_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_prior_loads: None
) -> None:
    from reguidance.tasks import parse_task

    mask = png(tmp_path / "black.png", colour=0)
    with pytest.raises(InputError, match="the mask observes nothing"):
        parse_task(f"mask:{mask}")
    out = tmp_path / "out"
    args = ["restore", "--task", f"mask:{mask}", "--method", "pinv", "--image", str(png(tmp_path / "a.png"))]
    assert main([*args, "--out", str(out)]) == 2
    one_line_error(capsys, "black.png", "observes nothing")
    assert not out.exists()


def test_an_inpainting_mask_must_observe_something_in_every_sample() -> None:
    mask = torch.ones(3, 1, 4, 4)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"mask observes nothing in sample\(s\) \[1\]"):
        rg.Inpainting(mask, 0.1)
    rg.Inpainting(mask[[0, 2]], 0.1)  # every sample observes something


# -------------------------------------------------------------------------------------------------------- library
@pytest.fixture(scope="module")
def mnist_sr4() -> tuple[object, rg.Operator, torch.Tensor]:
    prior = rg.load_prior("mnist")
    operator = rg.make_operator("sr:4", (1, 32, 32))
    y = operator.measure(-torch.ones(1, 1, 32, 32), rg.BatchRNG.from_seed(1, 1))
    return prior, operator, y


def test_a_meta_device_candidate_is_refused_by_name(mnist_sr4) -> None:
    prior, operator, y = mnist_sr4
    candidate = torch.zeros(1, 1, 32, 32, device="meta")
    with pytest.raises(InputError, match=r"candidate is on the meta device: a shape \(1, 1, 32, 32\) without values"):
        rg.reguide(candidate, y, operator, prior, inversion_steps=2, dps_steps=2)


def test_a_meta_device_measurement_is_refused_by_name(mnist_sr4) -> None:
    prior, operator, _ = mnist_sr4
    problem = rg.Problem(prior, operator, torch.zeros(1, 1, 8, 8, device="meta"), rg.BatchRNG.from_seed(2, 1))
    with pytest.raises(InputError, match="measurement is on the meta device"):
        rg.solve(rg.DPS(steps=2), problem)


def test_a_none_prior_is_refused_by_name_in_solve_and_reguide(mnist_sr4) -> None:
    _, operator, y = mnist_sr4
    with pytest.raises(InputError, match=r"DPS needs a diffusion prior .* got NoneType"):
        rg.solve(rg.DPS(steps=2), rg.Problem(None, operator, y, rg.BatchRNG.from_seed(2, 1)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"ReGuidance needs a diffusion prior .* got NoneType"):
        rg.reguide(torch.zeros(1, 1, 32, 32), y, operator, None, inversion_steps=2, dps_steps=2)  # type: ignore[arg-type]


def test_colour_photos_for_a_gray_prior_are_refused_unless_load_images_converts_them(mnist_sr4, tmp_path) -> None:
    _, operator, _ = mnist_sr4
    png(tmp_path / "photos" / "a.png", (40, 40), (200, 40, 90))
    photos, _ = rg.load_images(tmp_path / "photos", size=32)  # the files' own channels: colour
    with pytest.raises(InputError, match=r"colour images where gray images \(1 channel\) are expected.*channels=1"):
        operator.measure(photos, rg.BatchRNG.from_seed(1, 1))
    gray, _ = rg.load_images(tmp_path / "photos", size=32, channels=1)  # asked for: converted
    assert operator.measure(gray, rg.BatchRNG.from_seed(1, 1)).shape == (1, 1, 8, 8)


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        ((1, 32, 32, 1), r"channels-last \(B, H, W, C\); use x.permute\(0, 3, 1, 2\)"),
        ((1, 32, 32), r"one image without its batch dimension \(use x\[None\]\)"),
        ((1, 1, 64, 64), r"images of another size; .*load_images\(..., size=32\)"),
    ],
)
def test_a_batch_of_the_wrong_shape_is_told_what_it_probably_is(mnist_sr4, shape, says) -> None:
    _, operator, _ = mnist_sr4
    with pytest.raises(InputError, match=says):
        operator.measure(torch.zeros(shape), rg.BatchRNG.from_seed(1, 1))


def test_images_with_no_value_below_zero_get_a_scale_warning(mnist_sr4) -> None:
    from reguidance.conventions import ImageScaleWarning

    _, operator, _ = mnist_sr4
    unit = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32)  # a [0, 1] picture
    with pytest.warns(ImageScaleWarning, match=r"\[0, 1\] scale.*2 x - 1"):
        operator.measure(unit, rg.BatchRNG.from_seed(1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        operator.measure(unit * 2 - 1, rg.BatchRNG.from_seed(1, 1))  # the same picture on [-1, 1]: no warning
