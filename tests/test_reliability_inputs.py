"""Reliability, round two (issue 17): user errors are one line and never a traceback, nothing hangs on a huge
range, and nothing is silently wrong (ill-typed or non-finite rows, broken run files, sideways photos, library
warnings before the error line).

Each case: the library raises :class:`InputError`, or the command exits with status 2 and exactly one
``error:`` line on stderr, no traceback, and writes nothing. Runs are tiny (the embedded MNIST prior, two images,
pseudo-inverse candidates, two wrapper steps).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance.cli import main
from reguidance.conventions import InputError

FAST_BENCH = [
    "bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "pinv", "--protocol", "cpu",
    "--inversion-steps", "2", "--dps-steps", "2",
]  # fmt: skip


def one_line_error(capsys, *words: str) -> str:
    """The stderr of a command that failed with a user error: exactly one line (no warning, no traceback before
    it), starting ``error:`` and naming ``words``."""
    text = capsys.readouterr().err
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in text, text
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def png(path: Path, size: tuple[int, int] = (32, 32), value: int = 128) -> Path:
    """A gray PNG of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> Path:
    """A finished tiny benchmark folder (sr4, pinv, ids 0:2, seed 0); its tests are marked slow."""
    out = tmp_path_factory.mktemp("bench") / "run"
    assert main([*FAST_BENCH, "--ids", "0:2", "--out", str(out)]) == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".reguidance*.lock"))
    return dst


# ------------------------------------------------------------------------------------- one line, never a traceback
@pytest.mark.parametrize(
    "spec",
    [
        "blur:gauss,std=1e999",
        "blur:gauss,std=1e300",
        "blur:motion,length=1e999",
        "blur:motion,length=3,angle=1e400",
        "blur:motion,length=3,angle=-1e400",
        "blur:gauss,std=2,size=" + "9" * 400,
        "sr4,sigma_y=1e999",
        "box:" + "1" * 400,
    ],
)
def test_a_task_spec_number_must_be_finite_and_in_range(spec):
    from reguidance.tasks import SPEC_NUMBER_MAX, parse_task

    with pytest.raises(InputError, match=f"at most {SPEC_NUMBER_MAX}|degrees in"):
        parse_task(spec)


@pytest.mark.parametrize("command", ["bench", "restore"])
def test_an_overflowing_task_spec_is_one_line_in_bench_and_restore(tmp_path, capsys, command):
    out = tmp_path / "out"
    if command == "bench":
        args = [*FAST_BENCH, "--tasks", "blur:gauss,std=1e999", "--out", str(out)]
    else:
        image = png(tmp_path / "in" / "a.png")
        args = ["restore", "--task", "blur:gauss,std=1e999", "--image", str(image), "--method", "pinv"]
        args += ["--out", str(out)]
    assert main(args) == 2
    one_line_error(capsys, "std=1e999", "at most")
    assert not out.exists()


def _restore_args(tmp_path: Path) -> list[str]:
    return ["restore", "--task", "sr4", "--method", "pinv", "--image", str(png(tmp_path / "in" / "a.png"))]


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("train", "--lr", "nan"),
        ("train", "--lr", "-1"),
        ("train", "--lr", "inf"),
        ("train", "--lr", "1e999"),
        ("train", "--ema-decay", "nan"),
        ("train", "--ema-decay", "1"),
        ("train", "--minutes", "inf"),
        ("train-classifier", "--lr", "nan"),
        ("train-classifier", "--lr", "0"),
        ("theory", "--t-end", "nan"),
        ("theory", "--step-size", "inf"),
        ("theory", "--noise", "nan"),
        ("restore", "--t-end", "nan"),
        ("restore", "--step-size", "inf"),
    ],
)
def test_every_float_flag_refuses_a_non_finite_or_out_of_range_number(tmp_path, capsys, command, flag, value):
    out = tmp_path / "out"
    args = {
        "train": ["train", "--out", str(out)],
        "train-classifier": ["train-classifier", "--dataset", "mnist", "--out", str(out)],
        "theory": ["theory", "--plot", str(out / "p.png")],
        "restore": [*_restore_args(tmp_path), "--out", str(out)],
    }[command]
    assert main([*args, flag, value]) == 2
    one_line_error(capsys, flag)
    assert not out.exists()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"lr": "fast"}, ["lr", "'fast'"]),
        ({"lr": math.nan}, ["lr"]),
        ({"weight_decay": -1}, ["weight_decay"]),
        ({"grad_clip": "x"}, ["grad_clip"]),
        ({"ema_warmup": "yes"}, ["ema_warmup"]),
        ({"log_every": 0}, ["log_every"]),
        ({"unet": {"model_channels": -4}}, ["model_channels", "-4"]),
        ({"unet": "small"}, ["unet"]),
        ({"nosuch": 1}, ["nosuch"]),
    ],
)
def test_a_bad_train_config_field_is_one_line_naming_the_file_and_field(tmp_path, capsys, config, words):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    one_line_error(capsys, "--config", *words)
    assert not out.exists()


def test_train_config_validate_is_an_input_error_for_a_nan_learning_rate():
    from reguidance.app.train import TrainConfig

    with pytest.raises(InputError, match="lr must be a finite number > 0"):
        TrainConfig(lr=math.nan).validate()
    assert TrainConfig().validate().lr == 3e-4  # the defaults pass


def test_a_prior_config_with_an_ill_typed_value_is_one_line(tmp_path, capsys):
    config = tmp_path / "pc.json"
    config.write_text(json.dumps({"model_channels": "x"}))
    out = tmp_path / "out"
    assert main([*FAST_BENCH, "--ids", "0:2", "--prior-config", str(config), "--out", str(out)]) == 2
    one_line_error(capsys, "--prior-config", "model_channels")
    assert not out.exists()


def test_a_code_carrying_lpips_file_is_one_line_without_warnings(tmp_path, capsys):
    class Code:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Code()}, evil)
    out = tmp_path / "out"
    args = ["--lpips-alexnet", str(evil), "--lpips-lin", str(evil), "--out", str(out)]
    assert main([*FAST_BENCH, "--ids", "0:2", *args]) == 2
    captured = capsys.readouterr()
    assert "this must never run" not in captured.out
    lines = [line for line in captured.err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: --lpips"), captured.err
    assert "never pickled code" in lines[0]
    assert not (out / "results.jsonl").exists()


# ---------------------------------------------------------------------------------------------------- never hangs
def test_id_span_and_check_ids_never_walk_a_range():
    from reguidance.tasks import check_ids, id_span

    huge = range(5, 10**18)
    start = time.perf_counter()
    assert id_span(huge) == (5, 10**18)
    assert id_span([3, 1, 2]) == (1, 4)
    with pytest.raises(InputError, match="--ids 5:1000000000000000000 go past"):
        check_ids(huge, 10_000)
    with pytest.raises(InputError, match="empty"):
        id_span(range(3, 3))
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("source", ["dataset", "folder"])
def test_a_huge_id_range_is_refused_at_once(tmp_path, capsys, source):
    out = tmp_path / "out"
    extra = []
    if source == "folder":
        png(tmp_path / "data" / "a.png", (40, 40))
        extra = ["--data", f"folder:{tmp_path / 'data'}"]
    start = time.perf_counter()
    assert main([*FAST_BENCH, *extra, "--ids", f"0:{10**12}", "--out", str(out)]) == 2
    assert time.perf_counter() - start < 30
    one_line_error(capsys, "--ids", f"0:{10**12}", "go past")
    assert not out.exists()


def test_load_test_images_checks_a_range_arithmetically():
    from reguidance.bench.inputs import load_test_images

    with pytest.raises(InputError, match="go past"):
        load_test_images("mnist", range(0, 10**15))


def test_sample_n_beyond_memory_is_refused_at_once(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sample", "--prior", "mnist", "--n", str(10**15), "--out", str(out)]) == 2
    one_line_error(capsys, "--n", "held in memory")
    assert not out.exists()


def test_check_fits_in_memory_counts_float_and_uint8_copies():
    from reguidance.app.memory import check_fits_in_memory

    # 5 bytes per value (float32 + uint8): 10 samples of 1x2x2 need 200 bytes
    assert check_fits_in_memory("n", 10, (1, 2, 2), available=200) == 10
    with pytest.raises(InputError, match="at most 9"):
        check_fits_in_memory("n", 10, (1, 2, 2), available=199)


# ------------------------------------------------------------------------------------------ never silently wrong
def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "task": "sr4", "method": "pinv", "variant": "candidate", "reguidance": False, "id": 0, "psnr": 15.0,
        "ssim": 0.5, "consistency": 1.0, "consistency_raw": 1.0, "reward": -0.1, "label": 7, "nfe": 0,
        "sec_per_image": 0.1, "peak_mem_mb": 10.0, "run": "0123456789abcdef",
    }  # fmt: skip
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"id": "zero"}, ["'id'", "'zero'"]),
        ({"id": -1}, ["'id'", ">= 0"]),
        ({"id": 1.5}, ["'id'"]),
        ({"id": True}, ["'id'"]),
        ({"psnr": math.nan}, ["'psnr'", "finite"]),
        ({"ssim": math.inf}, ["'ssim'", "finite"]),
        ({"reward": -math.inf}, ["'reward'"]),
        ({"psnr": "15"}, ["'psnr'"]),
        ({"reguidance": "no"}, ["'reguidance'"]),
        ({"task": 4}, ["'task'"]),
    ],
)
def test_a_results_row_with_an_ill_typed_or_non_finite_field_is_refused_naming_file_and_line(tmp_path, changes, words):
    from reguidance.bench.records import read_results

    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_row()) + "\n" + json.dumps(_row(**{"id": 1, **changes})) + "\n")
    with pytest.raises(InputError, match=r"results\.jsonl, line 2") as err:
        read_results(path)
    for w in words:
        assert w in str(err.value)


def test_a_good_results_row_reads_back():
    from reguidance.bench.records import ROW_FIELDS
    from reguidance.io.files import ill_typed

    assert ill_typed(_row(), ROW_FIELDS) is None
    assert ill_typed(_row(lpips=0.1, pred=-1), ROW_FIELDS) is None


def test_a_restore_row_with_a_nan_consistency_is_refused(tmp_path):
    from reguidance.app.restore import _read_rows

    row = {"name": "a.png", "run": "x", "consistency_before": math.nan, "consistency_after": 1.0}
    (tmp_path / "restore.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"restore.jsonl, line 1, 'consistency_before' is nan"):
        _read_rows(tmp_path)


@pytest.mark.slow  # the tiny benchmark run they share takes ~10-30 s
@pytest.mark.parametrize(("field", "value"), [("id", "zero"), ("psnr", math.nan)])
def test_bench_refuses_to_resume_over_a_bad_row_and_leaves_it(tmp_path, capsys, bench_run, field, value):
    out = copy_run(bench_run, tmp_path / "run")
    log = out / "results.jsonl"
    rows = log.read_text().splitlines()
    rows[0] = json.dumps({**json.loads(rows[0]), field: value})
    log.write_text("\n".join(rows) + "\n")
    before = log.read_bytes()
    assert main([*FAST_BENCH, "--ids", "0:2", "--out", str(out)]) == 2
    one_line_error(capsys, "results.jsonl, line 1", f"'{field}'")
    assert log.read_bytes() == before


@pytest.mark.slow  # the tiny benchmark run they share takes ~10-30 s
def test_an_appended_row_of_another_run_is_refused_naming_the_difference(tmp_path, capsys, bench_run):
    out = copy_run(bench_run, tmp_path / "run")
    log = out / "results.jsonl"
    last = json.loads(log.read_text().splitlines()[-1])
    with log.open("a") as f:
        f.write(json.dumps({**last, "run": "00000000deadbeef"}) + "\n")
    assert main([*FAST_BENCH, "--ids", "0:2", "--out", str(out)]) == 2
    err = one_line_error(capsys, "other settings", "00000000deadbeef", str(last["run"]))
    assert "()" not in err


@pytest.mark.slow  # the tiny benchmark run they share takes ~10-30 s
def test_another_seed_is_refused_naming_the_seed(tmp_path, capsys, bench_run):
    out = copy_run(bench_run, tmp_path / "run")
    assert main([*FAST_BENCH, "--ids", "0:2", "--seed", "1", "--out", str(out)]) == 2
    err = one_line_error(capsys, "seed: 0 in the folder, 1 now")
    assert "()" not in err


@pytest.mark.slow  # the tiny benchmark run they share takes ~10-30 s
@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("config.json", "{broken", ["config.json", "not valid JSON"]),
        ("config.json", "[]", ["config.json", "list"]),
        ("config.json", "{}", ["config.json", "lacks protocol"]),
        ("summary.json", '{"rows": [], "paired": [], "rule": "r", "alpha": NaN}', ["summary.json", "NaN"]),
        ("summary.json", '{"rows": 3, "paired": [], "rule": "r"}', ["summary.json", "rows"]),
    ],
)
def test_bench_report_names_the_broken_run_file_not_into(tmp_path, capsys, bench_run, file, content, words):
    out = copy_run(bench_run, tmp_path / "run")
    (out / file).write_text(content)
    into = tmp_path / "into.md"
    into.write_text("<!-- tables:begin -->\n<!-- tables:end -->\n")
    assert main(["bench-report", "--run", f"a={out}", "--into", str(into)]) == 2
    err = one_line_error(capsys, *words)
    assert "--into" not in err
    assert into.read_text() == "<!-- tables:begin -->\n<!-- tables:end -->\n"


def _oriented(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())
    return path


def test_exif_orientation_6_is_applied_on_load(tmp_path):
    """Orientation 6 means "rotate 90 degrees clockwise to view": the stored array rotated clockwise by numpy
    (an independent derivation) is what is read."""
    from reguidance.io.images import image_size, load_images

    stored = np.arange(8 * 16, dtype=np.uint8).reshape(8, 16) * 2  # 16 wide, 8 tall, no symmetry
    path = _oriented(tmp_path / "photo.png", stored, 6)
    upright = np.rot90(stored, k=-1)  # clockwise: 8 wide, 16 tall
    x, _ = load_images(path, None, 1)
    got = ((x[0, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
    assert got.shape == (16, 8) and np.array_equal(got, upright)
    assert image_size(path) == (8, 16)  # (width, height) as seen


def test_restore_checks_the_size_a_sideways_photo_is_seen_at(tmp_path):
    from reguidance.app.restore import check_sizes

    path = _oriented(tmp_path / "photo.png", np.zeros((32, 64), np.uint8), 6)  # stored 64x32, seen 32x64
    with pytest.raises(InputError, match=r"photo\.png is 32x64"):
        check_sizes(path, (32, 32), "--image")


def test_a_task_mask_is_read_upright(tmp_path):
    from reguidance.operators import Inpainting
    from reguidance.tasks import parse_task

    stored = np.zeros((32, 32), np.uint8)
    stored[0, :] = 255  # the top row observed; rotated clockwise it becomes the right column
    task = parse_task(f"mask:{_oriented(tmp_path / 'm.png', stored, 6)}")
    op = task.operator([0], 0, (1, 32, 32))
    assert isinstance(op, Inpainting)
    mask = op.mask
    assert bool(mask[0, 0, :, -1].all()) and int(mask.sum()) == 32


def test_a_large_image_reads_without_a_warning_and_a_too_large_one_is_refused(tmp_path, monkeypatch):
    import warnings

    from reguidance.io import images

    path = png(tmp_path / "a.png", (40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would warn: 1600 pixels > 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images.load_images(path, 32, 1)
    monkeypatch.setattr(images, "MAX_PIXELS", 1599)
    with pytest.raises(InputError, match="40x40"):
        images.load_images(path, 32, 1)
    with pytest.raises(InputError, match="40x40"):
        images.image_size(path)


def test_restore_of_a_too_large_image_is_one_line(tmp_path, capsys, monkeypatch):
    from reguidance.io import images

    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    image = png(tmp_path / "in" / "big.png", (40, 40))
    out = tmp_path / "out"
    assert main(["restore", "--task", "sr4", "--method", "pinv", "--image", str(image), "--out", str(out)]) == 2
    one_line_error(capsys, "big.png", "40x40")
    assert not out.exists()


# ----------------------------------------------------------------------------------------------------- library
@pytest.fixture(scope="module")
def mnist_problem():
    from reguidance.priors import load_prior
    from reguidance.tasks import get_task

    prior = load_prior("mnist")
    x = torch.zeros(1, 1, 32, 32)
    operator, y = get_task("sr4").measure(x, [0], 0)
    return prior, operator, x, y


@pytest.mark.parametrize(("scale", "words"), [(200.0, "[0, 255] pixels"), (1e6, "far outside")])
def test_a_candidate_on_another_scale_is_refused(mnist_problem, scale, words):
    from reguidance.wrapper import reguide

    prior, operator, x, y = mnist_problem
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        reguide(torch.full_like(x, scale), y, operator, prior, inversion_steps=1, dps_steps=1)


def test_an_object_without_the_operators_attributes_is_refused(mnist_problem):
    from reguidance.wrapper import reguide

    prior, _, x, y = mnist_problem
    with pytest.raises(InputError, match=r"needs a reguidance\.operators\.Operator"):
        reguide(x, y, object(), prior, inversion_steps=1, dps_steps=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["inversion_steps", "dps_steps"])
def test_a_step_count_beyond_the_chain_names_the_limit(mnist_problem, option):
    from reguidance.wrapper import reguide

    prior, operator, x, y = mnist_problem
    options: dict[str, Any] = {"inversion_steps": 1, "dps_steps": 1, option: 10**6}
    # t_end = 0.3 of a 1000-level chain: levels 0 .. round(0.3 * 999) = 300, i.e. 301 of them
    with pytest.raises(InputError, match=f"{option}=1000000 exceeds the 301 levels .* at most 301"):
        reguide(x, y, operator, prior, **options)


def test_schedule_spaced_beyond_the_chain_is_an_input_error():
    from reguidance.diffusion import Schedule

    schedule = Schedule.linear(1000)
    assert schedule.levels_up_to(1.0) == 1000 and schedule.levels_up_to(0.3) == 301
    with pytest.raises(InputError, match="at most 1000"):
        schedule.spaced(1001)


@pytest.mark.parametrize("name", ["nosuch", "/etc/hostname", ""])
def test_load_prior_refusals_are_input_errors(name):
    from reguidance.priors import load_prior

    with pytest.raises(InputError):
        load_prior(name)
