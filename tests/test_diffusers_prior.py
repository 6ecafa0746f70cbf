"""A diffusers UNet2DModel folder as a prior: its schedule, its output converted to eps, and what is refused.

Each test saves a tiny random ``UNet2DModel`` and a scheduler with ``save_pretrained`` and loads the folder with
``load_prior``. The reference is diffusers itself: the model's own output converted by hand from the formulas
``x_t = a x0 + s eps``, ``v = a eps - s x0`` (``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)``), and the
scheduler's own ``alphas_cumprod``, ``add_noise`` and ``get_velocity``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.priors import load_prior

diffusers = pytest.importorskip(
    "diffusers", reason="diffusers is not installed (pip install 'reguidance[diffusers]'); its prior is untested"
)
from reguidance.priors.diffusers import DiffusersPrior, eps_from_prediction  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_unet(out_channels: int = 3, seed: int = 0) -> Any:
    """A 16x16 RGB UNet2DModel with one attention level, every parameter random."""
    unet = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=out_channels,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return unet.eval()


def save_folder(root: Path, unet: Any, scheduler: Any, flat: bool = False) -> Path:
    """The pipeline layout (unet/, scheduler/) or the flat one (config.json next to scheduler_config.json)."""
    unet.save_pretrained(root if flat else root / "unet")
    scheduler.save_pretrained(root if flat else root / "scheduler")
    return root


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 3, 16, 16, generator=g), torch.tensor([0, 417, 999])


def model_output(unet: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return unet(x, t).sample


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predict_converts_the_models_own_output_to_eps(tmp_path: Path, prediction_type: str) -> None:
    unet = tiny_unet()
    scheduler = diffusers.DDPMScheduler(prediction_type=prediction_type)
    prior = load_prior(save_folder(tmp_path, unet, scheduler))
    assert isinstance(prior, DiffusersPrior) and prior.signal_shape == (3, 16, 16)
    assert not prior.training and not any(p.requires_grad for p in prior.parameters())
    x, t = batch()
    out = model_output(unet, x, t)
    ab = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    a, s = ab.sqrt(), (1 - ab).sqrt()
    want = {"epsilon": out, "v_prediction": a * out + s * x, "sample": (x - a * out) / s}[prediction_type]
    with torch.no_grad():
        got = prior.predict(x, t)
    assert got.var_values is None
    assert torch.allclose(got.eps, want, atol=TOL * max(1.0, want.abs().max().item()), rtol=0)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_conversion_inverts_the_schedulers_own_targets(prediction_type: str) -> None:
    scheduler = diffusers.DDPMScheduler()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    t = torch.tensor([1, 500, 998])
    x_t = scheduler.add_noise(x0, eps, t)
    target = scheduler.get_velocity(x0, eps, t) if prediction_type == "v_prediction" else x0
    ab = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    assert torch.allclose(eps_from_prediction(target, x_t, ab, prediction_type), eps, atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "scheduler_kwargs",
    [
        {},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        {"beta_schedule": "squaredcos_cap_v2"},
        {"beta_schedule": "sigmoid"},
        {"num_train_timesteps": 400, "beta_start": 0.0002, "beta_end": 0.03},
        {"trained_betas": torch.linspace(0.001, 0.05, 300).tolist()},
    ],
)
def test_schedule_equals_the_schedulers_alphas_cumprod(tmp_path: Path, scheduler_kwargs: dict[str, Any]) -> None:
    scheduler = diffusers.DDPMScheduler(**scheduler_kwargs)
    prior = load_prior(save_folder(tmp_path, tiny_unet(), scheduler))
    want = scheduler.alphas_cumprod.double()
    assert prior.schedule.alphas_cumprod.shape == want.shape
    assert torch.allclose(prior.schedule.alphas_cumprod, want, atol=1e-6, rtol=1e-5)
    assert torch.equal(prior.schedule.timestep_map, torch.arange(len(want)))


def test_learned_range_variance_splits_the_output(tmp_path: Path) -> None:
    unet = tiny_unet(out_channels=6)
    prior = load_prior(save_folder(tmp_path, unet, diffusers.DDPMScheduler(variance_type="learned_range")))
    assert prior.variance == "learned_range"
    x, t = batch()
    out = model_output(unet, x, t)
    with torch.no_grad():
        got = prior.predict(x, t)
    assert got.var_values is not None
    assert torch.allclose(got.eps, out[:, :3], atol=TOL, rtol=0)
    assert torch.allclose(got.var_values, out[:, 3:], atol=TOL, rtol=0)


@pytest.mark.parametrize(("variance_type", "ours"), [("fixed_small", "fixed_small"), ("fixed_large", "fixed_large")])
def test_fixed_variance_types_map_onto_ours(tmp_path: Path, variance_type: str, ours: str) -> None:
    prior = load_prior(save_folder(tmp_path, tiny_unet(), diffusers.DDPMScheduler(variance_type=variance_type)))
    assert prior.variance == ours


def test_flat_folder_with_a_ddim_scheduler_loads(tmp_path: Path) -> None:
    unet = tiny_unet()
    scheduler = diffusers.DDIMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear")
    prior = load_prior(save_folder(tmp_path, unet, scheduler, flat=True))
    assert prior.prediction_type == "v_prediction" and prior.variance == "fixed_small"
    assert torch.allclose(prior.schedule.alphas_cumprod, scheduler.alphas_cumprod.double(), atol=1e-6, rtol=1e-5)


def test_bf16_autocast_returns_eps_in_the_input_dtype_close_to_fp32(tmp_path: Path) -> None:
    prior = load_prior(save_folder(tmp_path, tiny_unet(), diffusers.DDPMScheduler()))
    x, t = batch()
    with torch.no_grad():
        full = prior.predict(x, t).eps
        half = prior.optimize(torch.bfloat16).predict(x, t).eps
    assert half.dtype == torch.float32
    assert (half - full).abs().max().item() < 0.05 * full.abs().max().item()


# ------------------------------------------------------------------------------------------ what is refused
def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("scheduler_changes", "message"),
    [
        ({"rescale_betas_zero_snr": True}, r"rescale_betas_zero_snr=True, which cannot be mapped"),
        ({"variance_type": "learned"}, r"variance_type='learned', which cannot be mapped"),
        ({"beta_schedule": "laplace"}, r"beta_schedule='laplace'"),
        ({"use_karras_sigmas": True}, r"use_karras_sigmas=True"),
        ({"_class_name": "ScoreSdeVeScheduler"}, r"'ScoreSdeVeScheduler'; expected one of DDPMScheduler"),
        ({"prediction_type": "flow"}, r"prediction_type='flow'"),
    ],
)
def test_scheduler_settings_that_cannot_be_mapped_are_refused(
    tmp_path: Path, scheduler_changes: dict[str, Any], message: str
) -> None:
    root = save_folder(tmp_path, tiny_unet(), diffusers.DDPMScheduler())
    edit_json(root / "scheduler" / "scheduler_config.json", **scheduler_changes)
    with pytest.raises(InputError, match=message):
        load_prior(root)


def test_a_conditional_unet_class_is_refused(tmp_path: Path) -> None:
    root = save_folder(tmp_path, tiny_unet(), diffusers.DDPMScheduler())
    edit_json(root / "unet" / "config.json", _class_name="UNet2DConditionModel")
    with pytest.raises(InputError, match="describes a 'UNet2DConditionModel'; only UNet2DModel"):
        load_prior(root)


def test_pickled_weights_are_not_read(tmp_path: Path) -> None:
    root = tmp_path / "model"
    tiny_unet().save_pretrained(root / "unet", safe_serialization=False)
    diffusers.DDPMScheduler().save_pretrained(root / "scheduler")
    assert (root / "unet" / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(InputError, match=r"no diffusion_pytorch_model\.safetensors .*pickles are not read"):
        load_prior(root)


def test_a_folder_without_a_scheduler_config_is_refused(tmp_path: Path) -> None:
    tiny_unet().save_pretrained(tmp_path / "unet")
    with pytest.raises(InputError, match="has no scheduler config"):
        load_prior(tmp_path)


def test_a_unet_subfolder_given_alone_finds_its_scheduler(tmp_path: Path) -> None:
    root = save_folder(tmp_path, tiny_unet(), diffusers.DDPMScheduler(prediction_type="sample"))
    assert load_prior(root / "unet").prediction_type == "sample"


def test_a_config_argument_is_refused_for_a_diffusers_folder(tmp_path: Path) -> None:
    root = save_folder(tmp_path, tiny_unet(), diffusers.DDPMScheduler())
    with pytest.raises(InputError, match="has its own"):
        load_prior(root, config={"num_heads": 4})
