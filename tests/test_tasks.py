"""Tasks as parameters: the spec grammar, aliases with their old meaning, presets at any resolution, mask images,
identity by definition, the split in the random streams, and CLI errors before anything heavy loads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance.conventions import InputError
from reguidance.operators import Blur, GaussianBlur, Inpainting, Operator, SuperResolution
from reguidance.tasks import (
    DEFAULT_SIGMA_Y,
    PRESETS,
    get_task,
    motion_kernel,
    parse_task,
    split_tasks,
    stream_rng,
)


def inpainting(op: Operator) -> Inpainting:
    """``op``, which a box or mask task made: an :class:`Inpainting` (a task's operator is typed :class:`Operator`)."""
    assert isinstance(op, Inpainting)
    return op


def hole(op: Operator) -> torch.Tensor:
    """The missing pixels of a one-mask inpainting operator as a bool (H, W) map."""
    return ~inpainting(op).mask[0, 0]


def box_map(h: int, w: int, top: int, left: int, side_h: int, side_w: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[top : top + side_h, left : left + side_w] = True
    return m


# ------------------------------------------------------------------------------------------------ aliases
def test_aliases_keep_their_32x32_meaning():
    op = get_task("box20c").operator([0], 0, (1, 32, 32))
    assert torch.equal(hole(op), box_map(32, 32, 6, 6, 20, 20)) and op.sigma_y == 0.05
    ops = inpainting(get_task("box16").operator([0, 1, 2], 0, (1, 32, 32)))
    assert ops.mask.shape[0] == 3 and all(int((~ops.mask[i]).sum()) == 16 * 16 for i in range(3))
    sr = get_task("sr8").operator([0], 0, (1, 32, 32))
    assert isinstance(sr, SuperResolution) and sr.factor == 8 and sr.kind == "avgpool" and sr.y_shape == (1, 4, 4)
    blur = get_task("deblur").operator([0], 0, (1, 32, 32))
    assert isinstance(blur, GaussianBlur) and blur.kernel.shape == (13, 13) and blur.blur_sigma == 2.0
    assert blur.sigma_y == 0.2


# -------------------------------------------------------------------------------------------------- specs
def test_a_centred_fractional_box_scales_with_the_image():
    task = parse_task("box:0.5c")
    assert torch.equal(hole(task.operator([0], 0, (3, 256, 256))), box_map(256, 256, 64, 64, 128, 128))
    assert torch.equal(hole(task.operator([0], 0, (1, 32, 32))), box_map(32, 32, 8, 8, 16, 16))


def test_a_pixel_box_has_its_side_and_a_position_per_image():
    op = inpainting(parse_task("box:128").operator([0, 1, 2, 3], 0, (3, 256, 256)))
    corners = set()
    for i in range(4):
        rows, cols = torch.nonzero(~op.mask[i, 0], as_tuple=True)
        assert int(rows.max() - rows.min()) + 1 == 128 and int(cols.max() - cols.min()) + 1 == 128
        assert len(rows) == 128 * 128
        corners.add((int(rows.min()), int(cols.min())))
    assert len(corners) > 1  # random positions, one per image


def test_a_fractional_random_box_rounds_the_fraction_of_the_side():
    op = inpainting(parse_task("box:0.25").operator([5], 0, (3, 64, 64)))
    assert int((~op.mask).sum()) == 16 * 16


def test_super_resolution_specs_average_blocks_or_resize_bicubically():
    op = parse_task("sr:16").operator([0], 0, (3, 256, 256))
    x = torch.randn(1, 3, 256, 256)
    by_hand = x.reshape(1, 3, 16, 16, 16, 16).mean(dim=(3, 5))  # mean of each 16x16 block
    torch.testing.assert_close(op(x), by_hand, atol=1e-5, rtol=0)
    bicubic = parse_task("sr:8,bicubic").operator([0], 0, (3, 256, 256))
    assert isinstance(bicubic, SuperResolution) and bicubic.kind == "bicubic" and bicubic.y_shape == (3, 32, 32)


def test_a_gaussian_blur_spec_has_the_stated_kernel():
    op = parse_task("blur:gauss,std=3,size=61").operator([0], 0, (3, 256, 256))
    assert isinstance(op, GaussianBlur)
    u = np.arange(61) - 30
    g = np.exp(-(u**2) / (2 * 3.0**2))
    want = np.outer(g, g) / np.outer(g, g).sum()
    np.testing.assert_allclose(op.kernel.numpy(), want, atol=1e-12)
    assert parse_task("blur:gauss,std=2").kernel_size((1, 32, 32)) == 2 * math.ceil(6) + 1


def test_a_motion_kernel_is_a_normalised_line_of_the_given_length_and_angle():
    k = motion_kernel(21, 0, 25)
    assert k.sum().item() == pytest.approx(1.0)
    assert torch.equal(torch.nonzero(k.sum(dim=1)).flatten(), torch.tensor([12]))  # one row: horizontal
    cols = torch.arange(25, dtype=torch.float64) - 12
    var = float((k.sum(dim=0) * cols**2).sum())
    assert var == pytest.approx(21**2 / 12, rel=0.05)  # a uniform segment of length L has variance L^2 / 12
    vertical = motion_kernel(21, 90, 25)
    torch.testing.assert_close(vertical, k.T)
    diagonal = motion_kernel(10, 45, 15)
    along = diagonal.flip(1)  # the 45-degree line runs from bottom left to top right: flipped, the main diagonal
    r, c = torch.meshgrid(torch.arange(15), torch.arange(15), indexing="ij")
    assert float(along[(r - c).abs() <= 1].sum()) == pytest.approx(1.0) and float(along.diagonal().sum()) > 0.5
    torch.testing.assert_close(diagonal, diagonal.T)
    op = parse_task("blur:motion,length=21,angle=0").operator([0], 0, (3, 64, 64))
    assert isinstance(op, Blur) and op.kernel.shape == (23, 23)


def test_sigma_y_is_a_suffix_option_of_any_task_with_a_stated_default():
    assert parse_task("sr:8").sigma_y == DEFAULT_SIGMA_Y == 0.05
    assert parse_task("sr:8,sigma_y=0.1").sigma_y == 0.1
    with pytest.raises(InputError, match="sigma_y must be > 0"):  # every consistency and likelihood divide by it
        parse_task("paper:sr16,sigma_y=0")
    assert parse_task("box20c,sigma_y=0.2").operator([0], 0, (1, 32, 32)).sigma_y == 0.2
    assert parse_task("blur:gauss,std=1,sigma_y=0.3").sigma_y == 0.3


def test_a_mask_image_gives_its_white_pixels_as_observed(tmp_path):
    pixels = np.full((16, 24), 255, dtype=np.uint8)
    pixels[4:10, 5:20] = 0
    Image.fromarray(pixels).save(tmp_path / "m.png")
    op = inpainting(parse_task(f"mask:{tmp_path / 'm.png'}").operator([0], 0, (3, 16, 24)))
    assert torch.equal(op.mask[0, 0], torch.from_numpy(pixels == 255))
    with pytest.raises(InputError, match=r"the mask is 24x16 .* images are 32x32"):
        parse_task(f"mask:{tmp_path / 'm.png'}").check((3, 32, 32))


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("box128c", "must be one of"),
        ("box:2.5c", "fraction must lie in"),
        ("box:", "box takes one size"),
        ("sr:3x", "factor must be an integer"),
        ("sr:32", r"factor must be an integer in \[2, 16\]"),
        ("sr:8,nearest", "at most one of avgpool, bicubic"),
        ("blur:gauss", "needs std"),
        ("blur:gauss,std=3,size=60", "size must be odd"),
        ("blur:motion,angle=3", "needs length"),
        ("blur:disk,r=3", "blur:gauss"),
        ("sr:8,sigma_y=-1", "sigma_y must be a number >= 0"),
        ("paper:sr16,bicubic", "takes no options"),
        ("mask:/no/such/mask.png", "no such mask file"),
    ],
)
def test_a_bad_spec_is_an_input_error_naming_it_and_the_grammar(spec, why):
    with pytest.raises(InputError, match=why) as err:
        parse_task(spec)
    assert repr(spec) in str(err.value) and "box:S or box:Sc" in str(err.value)


def test_a_task_that_does_not_fit_the_images_names_both():
    with pytest.raises(InputError, match=r"task box:128 does not fit 1x32x32 images"):
        parse_task("box:128").check((1, 32, 32))
    with pytest.raises(InputError, match=r"paper:sr16 does not fit 3x40x40"):
        parse_task("sr:16").check((3, 40, 40))


def test_a_list_of_tasks_splits_where_a_new_task_starts():
    assert split_tasks("paper:sr16,sr:8,bicubic,sigma_y=0.1,blur:gauss,std=3,box20c") == [
        "paper:sr16",
        "sr:8,bicubic,sigma_y=0.1",
        "blur:gauss,std=3",
        "box20c",
    ]


# ------------------------------------------------------------------------------------------------ presets
def test_the_paper_presets_at_256():
    shape = (3, 256, 256)
    assert torch.equal(hole(PRESETS["paper:box128c"].operator([0], 0, shape)), box_map(256, 256, 64, 64, 128, 128))
    assert int((~inpainting(PRESETS["paper:box128"].operator([0], 0, shape)).mask).sum()) == 128 * 128
    assert PRESETS["paper:sr8"].operator([0], 0, shape).y_shape == (3, 32, 32)
    assert PRESETS["paper:sr16"].operator([0], 0, shape).y_shape == (3, 16, 16)
    gauss = PRESETS["paper:gauss"].operator([0], 0, shape)
    assert isinstance(gauss, GaussianBlur) and gauss.kernel.shape == (61, 61) and gauss.blur_sigma == 3.0
    assert gauss.sigma_y == 0.2
    motion = PRESETS["paper:motion"].operator([0], 0, shape)
    torch.testing.assert_close(motion.kernel, motion_kernel(31, 45, 61))


def test_the_presets_are_relative_to_the_image_elsewhere():
    shape = (1, 32, 32)  # 1/8 of 256
    assert torch.equal(hole(PRESETS["paper:box128c"].operator([0], 0, shape)), box_map(32, 32, 8, 8, 16, 16))
    gauss = PRESETS["paper:gauss"].operator([0], 0, shape)
    assert gauss.blur_sigma == pytest.approx(3 / 8) and gauss.kernel.shape == (9, 9)  # 61 / 8 = 7.6 -> odd 9
    for task in PRESETS.values():
        task.check((3, 64, 64))


# ----------------------------------------------------------------------------------------------- identity
def test_identity_is_the_definition_not_the_name(tmp_path):
    assert parse_task("box:16").definition() == get_task("box16").definition()
    assert parse_task("sr:8").definition() != parse_task("sr:8,sigma_y=0.1").definition()
    assert parse_task("sr:8").definition() != parse_task("sr:8,bicubic").definition()
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[:, :4] = 255  # the left half observed (an all-black mask observes nothing: refused)
    for name in ("a.png", "b.png"):
        Image.fromarray(pixels).save(tmp_path / name)
    a, b = parse_task(f"mask:{tmp_path / 'a.png'}"), parse_task(f"mask:{tmp_path / 'b.png'}")
    assert a.definition() == b.definition() and a.name != b.name  # the same content, by sha256
    Image.fromarray(255 - pixels).save(tmp_path / "b.png")
    assert parse_task(f"mask:{tmp_path / 'b.png'}").definition() != a.definition()


# ------------------------------------------------------------------------------------------------ streams
def test_validation_and_test_images_with_the_same_id_get_different_masks_and_noise():
    x = torch.zeros(2, 1, 32, 32)
    task = get_task("box16")
    op_val, y_val = task.measure(x, [3, 4], 0, split="val")
    op_test, y_test = task.measure(x, [3, 4], 0, split="test")
    val_corners, test_corners = inpainting(op_val).top_left, inpainting(op_test).top_left
    assert val_corners is not None and test_corners is not None and not torch.equal(val_corners, test_corners)
    assert not torch.equal(y_val, y_test)
    _, again = task.measure(x[1:], [4], 0, split="val")  # the same split: the same draws, in any batch
    torch.testing.assert_close(again, y_val[1:])
    a = stream_rng(0, "sr4", "method/dps", [7], split="val").randn(4)
    b = stream_rng(0, "sr4", "method/dps", [7], split="test").randn(4)
    assert not torch.equal(a, b)


# --------------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def no_prior_loads(monkeypatch):
    from reguidance import cli

    def refuse(*args, **kwargs):
        raise AssertionError("the prior loaded before the options were checked")

    monkeypatch.setattr(cli.support, "load_prior", refuse)


def _run(argv, capsys) -> tuple[int, str]:
    from reguidance.cli import main

    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_restore_refuses_a_bad_task_before_the_prior_loads(no_prior_loads, capsys, tmp_path):
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "a.png")
    code, err = _run(
        ["restore", "--task", "box128c", "--image", str(tmp_path / "a.png"), "--method", "pinv", "--out", "o"], capsys
    )
    assert code == 2 and "\n" not in err and "'box128c'" in err and "box:S or box:Sc" in err
    Image.fromarray(np.zeros((256, 256), dtype=np.uint8)).save(tmp_path / "big.png")  # ffhq_10m's image size
    with pytest.raises(AssertionError, match="the prior loaded"):  # a preset that fits ffhq_10m goes on to load it
        image = str(tmp_path / "big.png")
        args = ["--task", "paper:sr16", "--prior", "ffhq_10m", "--image", image, "--method", "pinv", "--out", "o"]
        _run(["restore", *args], capsys)
    code, err = _run(
        ["restore", "--task", "box:64", "--image", str(tmp_path / "a.png"), "--method", "pinv", "--out", "o"], capsys
    )
    assert code == 2 and "does not fit 1x32x32 images" in err  # mnist's shape, known without loading


def test_bench_refuses_a_bad_task_and_a_prior_dataset_mismatch_before_the_prior_loads(no_prior_loads, capsys):
    code, err = _run(["bench", "--tasks", "box20c,box128c", "--out", "o"], capsys)
    assert code == 2 and "'box128c'" in err and "\n" not in err
    code, err = _run(["bench", "--prior", "ffhq_10m", "--dataset", "mnist", "--out", "o"], capsys)
    assert code == 2 and "(1, 32, 32)" in err and "(3, 256, 256)" in err and "ffhq_10m" in err
    code, err = _run(["bench", "--tasks", "paper:sr16,box:40", "--out", "o"], capsys)
    assert code == 2 and "box:40 does not fit 1x32x32" in err
