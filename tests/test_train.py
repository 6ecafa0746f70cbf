"""Training, checkpoint/resume, EMA, FD-cls, and the embedded models and classifiers."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from reguidance.app.train import TrainConfig, draw_samples, ema_decay, train, update_ema
from reguidance.cli import main
from reguidance.conventions import REPRODUCIBILITY_ATOL, InputError
from reguidance.evaluation.classifier import accuracy, frechet_distance, gaussian_fit, load_classifier
from reguidance.io.datasets import load_test_subset
from reguidance.io.images import load_images
from reguidance.priors import load_prior


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and lose much on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_UNET = {
    "image_size": 8,
    "in_channels": 1,
    "model_channels": 32,
    "out_channels": 1,
    "num_res_blocks": 1,
    "attention_resolutions": [2],
    "dropout": 0.1,
    "channel_mult": [1, 1],
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
}


def tiny_config(steps: int, unet: dict | None = None, **kw) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=8, checkpoint_every=100, log_every=1, lr_warmup=2, unet=unet or TINY_UNET, **kw
    )


def tiny_images(n: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_a_few_training_steps_give_a_finite_loss_and_write_the_weights(tmp_path: Path) -> None:
    facts = train(tiny_config(3), tmp_path, images=tiny_images(), progress=False, final_samples=False)
    assert facts["steps_done"] == 3 and math.isfinite(facts["last_loss"])
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in rows)
    ema_keys = set(load_file(str(tmp_path / "ema.safetensors")))
    assert ema_keys == set(load_file(str(tmp_path / "checkpoint" / "model.safetensors")))


@pytest.mark.parametrize("stop_at", [2, 3])  # mid-epoch, and exactly at an epoch boundary (3 batches per epoch)
@pytest.mark.parametrize("hflip", [False, True])
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_run(tmp_path: Path, stop_at: int, hflip: bool) -> None:
    images = tiny_images()
    train(tiny_config(5, hflip=hflip), tmp_path / "straight", images=images, progress=False, final_samples=False)
    train(tiny_config(stop_at, hflip=hflip), tmp_path / "split", images=images, progress=False, final_samples=False)
    train(tiny_config(5), tmp_path / "split", resume=True, images=images, progress=False, final_samples=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "straight" / "checkpoint" / name))
        b = load_file(str(tmp_path / "split" / "checkpoint" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_ema_moves_a_fraction_one_minus_decay_towards_the_weights() -> None:
    ema, model = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        ema.weight.fill_(1.0)
        model.weight.fill_(3.0)
    update_ema(ema, model, 0.9)
    assert torch.allclose(ema.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))


def test_ema_decay_warms_up_then_saturates() -> None:
    assert ema_decay(0, 0.999) == pytest.approx(0.1)
    assert ema_decay(10**6, 0.999) == 0.999
    assert ema_decay(0, 0.999, warmup=False) == 0.999


def test_fd_cls_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = gaussian_fit(f)
    assert frechet_distance(*g, *g) == pytest.approx(0.0, abs=1e-8)
    shifted = gaussian_fit(f + 0.5)
    assert frechet_distance(*g, *shifted) == pytest.approx(16 * 0.25, rel=1e-6)
    assert frechet_distance(*g, *gaussian_fit(f + 1.0)) > frechet_distance(*g, *shifted)


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form() -> None:
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    expected = float(((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(torch.zeros(3), torch.diag(a), torch.zeros(3), torch.diag(b)) == pytest.approx(expected)


# test accuracy at training: 99.39% (MNIST), 92.67% (Fashion-MNIST); on these 256 images 100% and 94.1%
@pytest.mark.parametrize(("name", "least"), [("mnist", 0.98), ("fashion_mnist", 0.90)])
def test_committed_classifiers_classify_the_committed_test_subset(name: str, least: float) -> None:
    images, labels, _ = load_test_subset(name)
    assert accuracy(load_classifier(name), images, labels) >= least


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_embedded_prior_loads_offline_and_samples_images(name: str) -> None:
    prior = load_prior(name)
    x = draw_samples(prior, 3, steps=10, seed=0)
    assert x.shape == (3, 1, 32, 32) and x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()


def test_samples_do_not_depend_on_the_batch_size() -> None:
    prior = load_prior("mnist")
    one = draw_samples(prior, 3, steps=3, seed=5, batch_size=1)
    three = draw_samples(prior, 3, steps=3, seed=5, batch_size=3)
    # the same draws; only the batch's float32 rounding differs (1.8e-5 measured: 1 / sqrt(ab) = 157 at the top level)
    assert torch.allclose(one, three, atol=REPRODUCIBILITY_ATOL)


def test_sample_command_writes_its_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    argv = ["sample", "--prior", "mnist", "--n", "8", "--steps", "3", "--reference", "subset"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert {"fd_cls", "fd_cls_floor", "class_histogram", "mean_confidence"} <= set(data)
    assert len(data["class_histogram"]) == 10 and sum(data["class_histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert (tmp_path / "out" / "samples.png").is_file()


def test_an_unknown_classifier_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no committed classifier for 'cifar10'"):
        load_classifier("cifar10")


def test_a_resumed_run_logs_each_step_once(tmp_path: Path) -> None:
    images = tiny_images()
    train(tiny_config(2), tmp_path, images=images, progress=False, final_samples=False)  # checkpoint at step 2
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 3, "loss": 0.5}\n{"step": 4, "lo')  # logged after it, then killed
    train(tiny_config(4), tmp_path, resume=True, images=images, progress=False, final_samples=False)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


RGB_UNET = {**TINY_UNET, "in_channels": 3, "out_channels": 3}


def write_folder(folder: Path, n: int = 16, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):  # 12x10 RGBA: the central 10x10 square is kept, then resized to 8x8
        Image.fromarray(rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)).save(folder / f"{i:02d}.png")


def test_a_folder_of_colour_images_trains_a_colour_prior(tmp_path: Path) -> None:
    write_folder(tmp_path / "data")
    cfg = tiny_config(2, unet=RGB_UNET, dataset=f"folder:{tmp_path / 'data'}")
    facts = train(cfg, tmp_path / "run", progress=False, final_samples=False)
    assert facts["steps_done"] == 2
    expected, _ = load_images(tmp_path / "data", size=8, channels=3)  # the reader's own rule, alpha over white
    saved = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    assert saved["data_sha256"] == hashlib.sha256(expected.numpy().tobytes()).hexdigest()


def test_a_resumed_run_refuses_training_data_that_changed(tmp_path: Path) -> None:
    write_folder(tmp_path / "data")
    cfg = tiny_config(2, unet=RGB_UNET, dataset=f"folder:{tmp_path / 'data'}")
    train(cfg, tmp_path / "run", progress=False, final_samples=False)
    write_folder(tmp_path / "data", seed=1)
    with pytest.raises(InputError, match="changed since the run started"):
        train(tiny_config(3, unet=RGB_UNET), tmp_path / "run", resume=True, progress=False, final_samples=False)


def test_a_named_data_set_of_another_shape_than_the_unet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"shape \(1, 32, 32\) but the UNet expects \(3, 8, 8\)"):
        train(tiny_config(1, unet=RGB_UNET, dataset="mnist"), tmp_path, progress=False, final_samples=False)


def test_fine_tuning_starts_from_the_priors_weights(tmp_path: Path) -> None:
    prior = load_prior("mnist")
    images = load_test_subset("mnist")[0][:8]
    cfg = TrainConfig(steps=1, batch_size=8, lr=1e-30, init="mnist", checkpoint_every=100, ema_decay=0.0)
    train(cfg, tmp_path, images=images, progress=False, final_samples=False)
    tuned = load_file(str(tmp_path / "ema.safetensors"))
    start = prior.unet.state_dict()
    assert tuned.keys() == start.keys()
    assert all(torch.allclose(tuned[k], start[k].float(), atol=1e-6) for k in start)


def test_fine_tuning_a_conditional_or_unknown_prior_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nosuchprior"):
        train(TrainConfig(steps=1, init="nosuchprior"), tmp_path, images=tiny_images(), progress=False)


def test_a_trained_folder_is_a_prior_that_load_prior_reads_with_its_weights_checked(tmp_path: Path) -> None:
    from reguidance.app.runs import known_signal_shape

    write_folder(tmp_path / "data")
    cfg = tiny_config(2, unet=RGB_UNET, dataset=f"folder:{tmp_path / 'data'}")
    train(cfg, tmp_path / "run", progress=False, final_samples=False)
    prior = load_prior(str(tmp_path / "run"))
    assert prior.signal_shape == (3, 8, 8) == known_signal_shape(str(tmp_path / "run"))
    saved = load_file(str(tmp_path / "run" / "ema.safetensors"))
    assert all(torch.equal(prior.unet.state_dict()[k], saved[k]) for k in saved)
    weights = tmp_path / "run" / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # the same size, another content
    with pytest.raises(InputError, match="sha256"):
        load_prior(str(tmp_path / "run"))


def test_the_model_card_states_the_data_the_settings_and_what_the_run_spent(tmp_path: Path) -> None:
    write_folder(tmp_path / "data")
    cfg = tiny_config(3, unet=RGB_UNET, dataset=f"folder:{tmp_path / 'data'}", hflip=True)
    facts = train(cfg, tmp_path / "run", progress=False, final_samples=False, command="reguidance train --x")
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"folder:{tmp_path / 'data'}" in card and cfg.data_sha256 is not None and cfg.data_sha256 in card
    assert "mirrored left-right" in card and "steps: 3 (24 images)" in card and "`reguidance train --x`" in card
    assert facts["sha256"] in card
