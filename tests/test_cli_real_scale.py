"""The command line fit for real checkpoints (issue "Real-scale use", items 3 and 7).

``--prior-config`` / ``--checkpoint-dir`` on every command with ``--prior`` and their share of the run's identity;
no silent resize of candidates; the memory estimate before a guided run; per-step bars with an ETA. The priors are
the embedded ``mnist`` model and a small random guided-diffusion UNet saved to ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance.app import memory
from reguidance.app.runs import prior_facts
from reguidance.cli import cli, main
from reguidance.diffusion import Schedule
from reguidance.priors import load_prior, zoo
from reguidance.priors.adm import ADMUNet
from reguidance.priors.base import Prior, PriorOutput

#: a 16x16 RGB guided-diffusion UNet with attention at 8x8 in two heads: the heads are not stored in the
#: weights, so the checkpoint needs a --prior-config
TINY: dict[str, Any] = {
    "image_size": 16,
    "in_channels": 3,
    "model_channels": 32,
    "out_channels": 3,
    "num_res_blocks": 1,
    "attention_resolutions": [2],
    "dropout": 0.0,
    "channel_mult": [1, 2],
    "num_heads": 2,
}
TINY_FLAGS = {"image_size": 16, "num_heads": 2}
#: what every guided run below uses (a few steps: the tests check wiring, not quality)
FAST = ["--task", "sr4", "--inversion-steps", "1", "--dps-steps", "2"]


@pytest.fixture(autouse=True)
def isolated_checkpoint_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV_CHECKPOINTS, raising=False)
    monkeypatch.setattr(zoo, "DEFAULT_CACHE", tmp_path / "cache")


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """(weights file, its JSON config of guided-diffusion flags)."""
    unet = ADMUNet(**TINY)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    weights = tmp_path / "ckpts" / "tiny.pt"
    weights.parent.mkdir()
    torch.save(unet.state_dict(), weights)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_FLAGS))
    return weights, config


def gray_png(path: Path, size: int, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), value).save(path)
    return path


def rgb_png(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (200, 40, 90)).save(path)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ --prior-config, --checkpoint-dir
def test_every_command_with_a_prior_takes_prior_config_checkpoint_dir_and_threads() -> None:
    with_prior = {name for name, cmd in cli.commands.items() if any(p.name == "prior_name" for p in cmd.params)}
    assert with_prior == {"sample", "bench", "demo", "speed", "restore", "tune", "tune-defaults"}
    for name in with_prior:
        flags = {opt for p in cli.commands[name].params for opt in getattr(p, "opts", [])}
        assert {"--prior-config", "--checkpoint-dir", "--threads"} <= flags, name


@pytest.mark.parametrize("command", ["restore", "bench", "sample", "speed", "tune"])
def test_a_missing_prior_config_is_one_line_exit_2_before_any_work(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # the --prior does not exist either: the config is refused first, while the command line is parsed
    args = [command, "--prior", str(tmp_path / "nothing.pt"), "--prior-config", str(tmp_path / "absent.yaml")]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "--prior-config" in err and "absent.yaml" in err and "does not exist" in err


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("bad.json", "{not json", "could not parse"),
        ("list.yaml", "- 1\n- 2\n", "expected a mapping"),
        ("flags.txt", "image_size: 16", "expected .json, .yaml or .yml"),
    ],
)
def test_an_invalid_prior_config_is_one_line_exit_2(
    tmp_path: Path, name: str, text: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / name
    config.write_text(text)
    assert main(["speed", "--prior", "mnist", "--prior-config", str(config)]) == 2
    err = one_line_error(capsys)
    assert "--prior-config" in err and says in err


def test_a_missing_checkpoint_dir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--checkpoint-dir", str(tmp_path / "nowhere")]) == 2
    err = one_line_error(capsys)
    assert "--checkpoint-dir" in err and "nowhere" in err


def test_a_checkpoint_of_an_unregistered_architecture_needs_its_prior_config(
    tmp_path: Path, tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    weights, config = tiny_checkpoint
    rgb_png(tmp_path / "in" / "a.png", 16)
    base = ["restore", "--prior", str(weights), *FAST, "--image", str(tmp_path / "in"), "--method", "pinv"]
    assert main([*base, "--out", str(tmp_path / "without")]) == 2
    assert "--prior" in one_line_error(capsys)
    assert main([*base, "--out", str(tmp_path / "with"), "--prior-config", str(config)]) == 0
    facts = json.loads((tmp_path / "with" / "config.json").read_text())["facts"]
    assert facts["prior_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert facts["prior_config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert (tmp_path / "with" / "restored" / "a.png").is_file()


def test_checkpoint_dir_finds_a_known_models_file(
    tmp_path: Path,
    tiny_checkpoint: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights, _ = tiny_checkpoint
    entry = zoo.ModelEntry(name="tiny", description="test", config=TINY, n_params=0, filename="tiny.pt", url="-")
    monkeypatch.setitem(zoo.MODELS, "tiny", entry)
    rgb_png(tmp_path / "in" / "a.png", 16)
    base = ["restore", "--prior", "tiny", *FAST, "--image", str(tmp_path / "in"), "--method", "pinv"]
    assert main([*base, "--out", str(tmp_path / "lost")]) == 2  # not in $REGUIDANCE_CHECKPOINTS or the cache
    assert "tiny.pt" in one_line_error(capsys)
    assert main([*base, "--out", str(tmp_path / "found"), "--checkpoint-dir", str(weights.parent)]) == 0
    facts = json.loads((tmp_path / "found" / "config.json").read_text())["facts"]
    assert facts["prior_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()  # no recorded sha256: hashed


def test_the_prior_config_file_enters_the_run_identity(tmp_path: Path, tiny_checkpoint: tuple[Path, Path]) -> None:
    weights, config = tiny_checkpoint
    other = tmp_path / "other.yaml"
    other.write_text("image_size: 16\nnum_heads: 2\nnoise_schedule: cosine\n")
    a = prior_facts(str(weights), "fp32", config=config)
    b = prior_facts(str(weights), "fp32", config=other)
    assert a["prior_config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert a["prior_config_sha256"] != b["prior_config_sha256"] and a["prior_sha256"] == b["prior_sha256"]
    assert "prior_config_sha256" not in prior_facts(str(weights), "fp32")


def test_a_diffusers_folder_is_identified_by_its_weights_file(tmp_path: Path) -> None:
    folder = tmp_path / "ddpm"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "unet" / "config.json").write_text("{}")
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights, as far as hashing goes")
    facts = prior_facts(str(folder), "bf16")
    assert facts["prior_sha256"] == hashlib.sha256(b"weights, as far as hashing goes").hexdigest()


def test_speed_refuses_a_prior_config_for_a_known_model_it_times_with_random_weights(
    tmp_path: Path, tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["speed", "--prior", "ffhq_10m", "--prior-config", str(tiny_checkpoint[1])]) == 2
    assert "random weights" in one_line_error(capsys)


# ------------------------------------------------------------------------------------------ candidates' size
def restore_args(tmp_path: Path, candidate_size: int) -> list[str]:
    gray_png(tmp_path / "in" / "a.png", 32)
    gray_png(tmp_path / "cand" / "a.png", candidate_size, value=90)
    return [
        "restore",
        "--prior",
        "mnist",
        *FAST,
        "--image",
        str(tmp_path / "in"),
        "--candidate",
        str(tmp_path / "cand"),
        "--out",
        str(tmp_path / "out"),
    ]


def test_a_candidate_of_another_size_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(restore_args(tmp_path, 48)) == 2
    err = one_line_error(capsys)
    assert "--candidate" in err and "a.png is 48x48" in err and "32x32" in err and "--resize" in err
    assert not (tmp_path / "out" / "restored").exists()


def test_resize_fits_a_candidate_of_another_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*restore_args(tmp_path, 48), "--resize"]) == 0
    err = capsys.readouterr().err
    assert "restore" in err and "1/1" in err  # the outer bar, per image
    assert "DPS" in err and "0/2" in err and "step/s" in err  # the wrapper's guided steps, with their total
    with Image.open(tmp_path / "out" / "candidate" / "a.png") as img:
        pixels = np.asarray(img)
    # a flat 48x48 picture resized is the same flat picture at 32x32 (bicubic keeps constants)
    assert pixels.shape == (32, 32) and set(pixels.ravel().tolist()) == {90}


# ---------------------------------------------------------------------------------------------------- memory
class TanhPrior(Prior):
    """eps = tanh(x): its input gradient saves exactly one tensor per image, tanh's output (C H W float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.schedule = Schedule.linear()
        self.signal_shape = (3, 8, 8)
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=False)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> PriorOutput:
        return PriorOutput(torch.tanh(x_t))


def test_the_step_estimate_counts_the_activations_saved_for_the_input_gradient() -> None:
    step = memory.estimate_step(TanhPrior())
    assert step is not None and step.per_image == 3 * 8 * 8 * 4
    assert step.need(10) == int(10 * 3 * 8 * 8 * 4 * (1 + memory.MARGIN))


def test_fit_batch_lowers_the_batch_to_what_the_memory_holds() -> None:
    prior = TanhPrior()
    one = memory.StepMemory(3 * 8 * 8 * 4).need(1)
    assert memory.fit_batch(prior, 16, "cpu", available=16 * one) == (16, None)
    fitted, notice = memory.fit_batch(prior, 16, "cpu", available=5 * one + 1)
    assert fitted == 5 and notice is not None and "--batch-size 16" in notice and "batches of 5" in notice
    with pytest.raises(ValueError, match="one image needs"):
        memory.fit_batch(prior, 16, "cpu", available=one - 1)


def test_available_memory_on_cpu_is_memavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:         10 kB\nMemAvailable:     300 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.available_bytes("cpu") == 300 * 1024


def test_restore_lowers_its_batch_when_memory_is_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        gray_png(tmp_path / "in" / f"{name}.png", 32, value=80 if name == "a" else 160)
    step = memory.estimate_step(load_prior("mnist"))
    assert step is not None
    monkeypatch.setattr(memory, "available_bytes", lambda device: step.need(1))
    args = ["restore", "--prior", "mnist", *FAST, "--image", str(tmp_path / "in"), "--method", "pinv"]
    assert main([*args, "--out", str(tmp_path / "out"), "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "note: --batch-size 2 needs" in err and "batches of 1" in err
    assert len(list((tmp_path / "out" / "restored").iterdir())) == 2


def test_restore_refuses_a_run_where_one_image_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gray_png(tmp_path / "in" / "a.png", 32)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    args = ["restore", "--prior", "mnist", *FAST, "--image", str(tmp_path / "in"), "--method", "pinv"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys)
    assert "one image needs about" in err and "1 MiB is available" not in err and "available on cpu" in err
    assert not (tmp_path / "out" / "restored").exists()


# -------------------------------------------------------------------------------------------------- progress
def test_the_sampler_loop_shows_steps_out_of_the_total_with_an_eta(capsys: pytest.CaptureFixture[str]) -> None:
    from reguidance.guidance.core import Update, run

    class Net:
        nfe = 0

    levels = Schedule.linear().spaced(7)
    x = torch.zeros(1, 2)
    run(lambda x, level: Update(x, x), x, levels, Net(), None, None, progress=True, desc="toy")  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "toy" in err and "0/7" in err and "step/s" in err
    assert "<?" in err  # tqdm's "[elapsed<remaining" (unknown before the first step) needs the total
