"""Image folders as benchmark datasets, and the paper's 256x256 presets end to end through `restore` and `bench`.

The end-to-end runs use a cheap stand-in prior of the 256x256x3 shape (a random 3x3 convolution as the noise
predictor): what is under test is the tasks, the folder and the commands, not the network. The real ffhq_10m
architecture (random weights) runs the same commands in ``scripts/paper_presets_smoke.sh``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reguidance.bench.inputs import ImageFolder
from reguidance.conventions import InputError
from reguidance.diffusion import Schedule
from reguidance.priors.base import Prior, PriorOutput
from reguidance.tasks import PRESETS
from reguidance.wrapper import ReGuidance


class ConvPrior(Prior):
    """A random-weight stand-in of a 256x256 RGB prior: ``eps = 0.1 conv3x3(x_t)``."""

    def __init__(self, shape: tuple[int, int, int] = (3, 256, 256)) -> None:
        super().__init__()
        self.schedule = Schedule.linear()
        self.signal_shape = shape
        g = torch.Generator().manual_seed(0)
        self.net = nn.Conv2d(shape[0], shape[0], 3, padding=1)
        with torch.no_grad():
            self.net.weight.copy_(0.1 * torch.randn(self.net.weight.shape, generator=g))
        self.requires_grad_(False)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> PriorOutput:
        self.check_input(x_t)
        return PriorOutput(0.1 * self.net(x_t))


def _photo(seed: int, h: int, w: int, gray: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(h, w) if gray else (h, w, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def faces(tmp_path):
    """A folder of mixed photos: RGB and gray, square and not, PNG and JPEG, and a file that is no image."""
    folder = tmp_path / "faces"
    folder.mkdir()
    _photo(0, 300, 400).save(folder / "b.png")
    _photo(1, 256, 256, gray=True).save(folder / "a.png")
    _photo(2, 512, 300).save(folder / "c.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_ids_follow_sorted_names_and_images_are_centre_cropped_then_resized(faces):
    data = ImageFolder(faces, (3, 64, 64))
    assert [p.name for p in data.files] == ["a.png", "b.png", "c.jpg"] and len(data) == 3
    x = data[[1, 0]]
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    with Image.open(faces / "b.png") as img:  # 400 x 300: the central 300 x 300 square, then bicubic to 64
        want = np.asarray(img.crop((50, 0, 350, 300)).resize((64, 64), Image.Resampling.BICUBIC), dtype=np.float32)
    torch.testing.assert_close(x[0], torch.from_numpy(want / 127.5 - 1).permute(2, 0, 1))
    assert torch.equal(x[1, 0], x[1, 1]) and torch.equal(x[1, 1], x[1, 2])  # gray: its value in every channel
    assert data.labels.tolist() == [-1, -1, -1]


def test_the_manifest_names_each_file_with_its_sha256_and_id(faces):
    manifest = ImageFolder(faces, (3, 32, 32)).manifest()
    assert [(m["file"], m["id"]) for m in manifest] == [("a.png", 0), ("b.png", 1), ("c.jpg", 2)]
    for m in manifest:
        assert m["sha256"] == hashlib.sha256((faces / str(m["file"])).read_bytes()).hexdigest()


def test_a_folder_without_images_is_refused(tmp_path):
    with pytest.raises(InputError, match="holds no image"):
        ImageFolder(tmp_path, (3, 32, 32))


@pytest.fixture
def stand_in(monkeypatch):
    """The CLI loads the stand-in prior, and the wrapper runs 1 inversion + 1 DPS step (bench has no option)."""
    from reguidance import cli
    from reguidance.bench import runner

    prior = ConvPrior()
    monkeypatch.setattr(cli.support, "load_prior", lambda *args, **kwargs: prior)
    tiny = ReGuidance().replace(inversion_steps=1, dps_steps=1, clip=True)
    monkeypatch.setattr(runner, "wrapper_for", lambda *args, **kwargs: tiny)
    return prior


def test_bench_runs_256_presets_on_an_image_folder_end_to_end(stand_in, faces, tmp_path, capsys):
    # two presets here (SSIM at 256x256 costs seconds per image on CPU); restore runs all six below, and
    # scripts/paper_presets_smoke.sh all six through both commands with the real architecture
    from reguidance.cli import main

    out = tmp_path / "run"
    tasks = "paper:box128,paper:sr16"
    argv = ["bench", "--prior", "stand-in.pt", "--data", f"folder:{faces}", "--tasks", tasks, "--methods", "pinv"]
    assert main([*argv, "--ids", "1:2", "--batch-size", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["task"] for r in summary["rows"]} == {"paper:box128", "paper:sr16"}
    for row in summary["rows"]:
        assert row["n"] == 1 and np.isfinite(row["psnr"]["mean"]) and -1 <= row["ssim"]["mean"] <= 1
        assert row["fd_cls"] is None and row["class_acc"] is None
    assert any("FD-cls and class accuracy skipped" in n for n in summary["notes"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["file"] for m in manifest] == ["a.png", "b.png", "c.jpg"]
    with Image.open(out / "images" / "paper_box128" / "pinv" / "00001_reguidance.png") as img:
        assert img.size == (256, 256) and img.mode == "RGB"

    _photo(3, 256, 256).save(faces / "a.png")  # a file changed: the folder's rows are not its results any more
    assert main([*argv, "--ids", "1:2", "--batch-size", "1", "--out", str(out)]) == 2
    assert "manifest_sha256" in capsys.readouterr().err


def test_restore_runs_every_256_preset_end_to_end(stand_in, faces, tmp_path):
    from reguidance.cli import main

    for task in PRESETS:
        out = tmp_path / task.replace(":", "_")
        argv = ["restore", "--prior", "stand-in.pt", "--task", task, "--image", str(faces / "c.jpg"), "--method"]
        argv += ["pinv", "--inversion-steps", "1", "--dps-steps", "1", "--resize", "--out", str(out)]  # c.jpg: 300x512
        assert main(argv) == 0
        report = json.loads((out / "report.json").read_text())
        assert [r["name"] for r in report["images"]] == ["c.jpg"]
        assert np.isfinite(report["images"][0]["consistency_after"])
        with Image.open(out / "restored" / "c.jpg.png") as img:
            assert img.size == (256, 256) and img.mode == "RGB"


def test_a_dataset_of_another_shape_than_the_prior_is_refused_before_work(tmp_path):
    from reguidance.bench.runner import BenchSpec, run_bench

    images = torch.zeros(2, 1, 32, 32)
    spec = BenchSpec(["sr4"], ["pinv"], range(2), context={"prior": "stand-in"})
    with pytest.raises(InputError, match=r"\(1, 32, 32\).*stand-in models \(3, 256, 256\)"):
        run_bench(ConvPrior(), images, torch.zeros(2), spec, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
