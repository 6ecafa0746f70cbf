"""Any guided-diffusion checkpoint: its UNet read from the state dict's keys and shapes, the rest from flags.

Each architecture is built with random weights, saved as a bare state dict, and loaded back by ``load_prior`` with
no config or with a config in guided-diffusion's flag names (a dict, JSON or YAML file): the rebuilt network must
have the original's keyword arguments and give the original's outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.diffusion import Schedule
from reguidance.priors import adm, adm_config, load_prior, loading, zoo
from reguidance.priors.adm import ADMPrior, ADMUNet
from reguidance.priors.adm_config import checkpoint_config, infer_structure

FIXTURES = Path(__file__).parent / "fixtures" / "adm"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_checkpoint_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV_CHECKPOINTS, raising=False)
    monkeypatch.setattr(zoo, "DEFAULT_CACHE", tmp_path / "cache")


def unet_kwargs(**kw: Any) -> dict[str, Any]:
    """Full ADMUNet keyword arguments: guided-diffusion's defaults (those create_model passes) and ``kw``."""
    base = {
        "in_channels": 3,
        "dropout": 0.0,
        "conv_resample": True,
        "dims": 2,
        "num_classes": None,
        "use_checkpoint": False,
        "use_fp16": False,
        "num_heads": 1,
        "num_head_channels": -1,
        "num_heads_upsample": -1,
        "use_scale_shift_norm": False,
        "resblock_updown": False,
        "use_new_attention_order": False,
    }
    return {**base, **kw}


# name -> (ADMUNet kwargs, config as guided-diffusion flags or None, how the config is passed)
RGB64 = unet_kwargs(
    image_size=64,
    model_channels=32,
    out_channels=6,
    num_res_blocks=1,
    attention_resolutions=[4, 8],  # feature maps 16x16 and 8x8
    channel_mult=[1, 2, 3, 4],
    num_head_channels=32,
)
UPDOWN = unet_kwargs(
    image_size=32,
    model_channels=32,
    out_channels=3,
    num_res_blocks=2,
    attention_resolutions=[2],
    channel_mult=[1, 2, 2],
    num_heads=2,
    use_scale_shift_norm=True,
    resblock_updown=True,
)
LSUN_LIKE = unet_kwargs(
    image_size=32,
    model_channels=32,
    out_channels=6,
    num_res_blocks=2,
    attention_resolutions=[2, 4, 8],
    channel_mult=[1, 1, 2, 2],
    num_head_channels=32,
    dropout=0.1,
    use_scale_shift_norm=True,
    resblock_updown=True,
)
POOLED = unet_kwargs(
    image_size=16,
    model_channels=32,
    out_channels=3,
    num_res_blocks=1,
    attention_resolutions=[1],
    channel_mult=[1, 2],
    num_heads=4,
    conv_resample=False,
    num_classes=10,
    use_new_attention_order=True,
)
UPDOWN_YAML = """# DPS-style model config
image_size: 32
num_channels: 32
num_res_blocks: 2
channel_mult: "1,2,2"
learn_sigma: False
class_cond: False
use_checkpoint: False
attention_resolutions: 16
num_heads: 2
num_head_channels: -1
num_heads_upsample: -1
use_scale_shift_norm: True
dropout: 0.0
resblock_updown: True
use_fp16: False
use_new_attention_order: False

model_path: models/whatever.pt
"""
LSUN_FLAGS = {
    "attention_resolutions": "16,8,4",
    "class_cond": False,
    "diffusion_steps": 1000,
    "dropout": 0.1,
    "image_size": 32,
    "learn_sigma": True,
    "noise_schedule": "linear",
    "num_channels": 32,
    "num_head_channels": 32,
    "num_res_blocks": 2,
    "resblock_updown": True,
    "use_fp16": False,
    "use_scale_shift_norm": True,
}
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    # heads are never stored; the image size follows from guided-diffusion's default channel_mult for 64x64
    "rgb64_learned_sigma_heads_only": (RGB64, {"num_head_channels": 32}),
    "updown_scale_shift_yaml": (UPDOWN, ("yaml", UPDOWN_YAML)),
    "lsun_like_json": (LSUN_LIKE, ("json", json.dumps(LSUN_FLAGS))),
    "pooled_class_conditional_dict": (POOLED, {"image_size": 16, "num_heads": 4, "use_new_attention_order": True}),
}


def random_unet(kwargs: dict[str, Any], seed: int = 0) -> ADMUNet:
    """Every parameter random (zero-initialised layers too), in eval mode."""
    unet = ADMUNet(**kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return unet.eval()


def write_config(tmp_path: Path, config: Any) -> Any:
    if isinstance(config, tuple):
        kind, text = config
        path = tmp_path / f"model_config.{kind}"
        path.write_text(text)
        return path
    return config


def shapes_of(kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return adm.state_dict_shapes(kwargs)


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoint_loads_with_its_original_arguments_and_outputs(tmp_path: Path, case: str) -> None:
    kwargs, config = CASES[case]
    unet = random_unet(kwargs)
    path = tmp_path / "model.pt"
    torch.save(unet.state_dict(), path)
    prior = load_prior(path, config=write_config(tmp_path, config))
    assert isinstance(prior, ADMPrior)  # predict takes the class label
    assert prior.unet.config == {**kwargs, "num_heads_upsample": kwargs["num_heads"]}  # -1 means num_heads
    size = kwargs["image_size"]
    assert prior.signal_shape == (3, size, size)
    assert prior.variance == ("learned_range" if kwargs["out_channels"] == 6 else "fixed_small")
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3, 870])
    y = torch.tensor([1, 7]) if kwargs["num_classes"] else None
    with torch.no_grad():
        want = unet(x, t, y)
        got = prior.predict(x, t, y)
    assert torch.allclose(got.eps, want[:, :3], atol=1e-5, rtol=0)
    if kwargs["out_channels"] == 6:
        assert got.var_values is not None and torch.allclose(got.var_values, want[:, 3:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["ffhq_10m", "imagenet256_uncond"])
def test_published_checkpoint_keys_resolve_to_the_registered_configs(name: str) -> None:
    manifest = json.loads((FIXTURES / f"{name}.keys.json").read_text())
    shapes = {k: tuple(v) for k, v in manifest["state_dict_shapes"].items()}
    registered = zoo.MODELS[name].unet_config()
    # with no config, the known model whose keys and shapes it has exactly
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert loading.infer_config(meta) == name
    # with the published flags (DPS's model_config.yaml holds these), and with the heads alone
    assert checkpoint_config(shapes, manifest["create_model_kwargs"]).unet == registered
    assert checkpoint_config(shapes, {"num_heads": 4, "num_head_channels": 64}).unet == registered


def test_dps_model_config_yaml_of_ffhq_gives_the_registered_config(tmp_path: Path) -> None:
    text = (
        'image_size: 256\nnum_channels: 128\nnum_res_blocks: 1\nchannel_mult: ""\nlearn_sigma: True\n'
        "class_cond: False\nuse_checkpoint: False\nattention_resolutions: 16\nnum_heads: 4\nnum_head_channels: 64\n"
        "num_heads_upsample: -1\nuse_scale_shift_norm: True\ndropout: 0.0\nresblock_updown: True\nuse_fp16: False\n"
        "use_new_attention_order: False\n\nmodel_path: models/ffhq_10m.pt\n"
    )
    (tmp_path / "model_config.yaml").write_text(text)
    manifest = json.loads((FIXTURES / "ffhq_10m.keys.json").read_text())
    shapes = {k: tuple(v) for k, v in manifest["state_dict_shapes"].items()}
    flags = adm_config.read_config_file(tmp_path / "model_config.yaml")
    assert checkpoint_config(shapes, flags).unet == zoo.MODELS["ffhq_10m"].unet_config()


def test_structure_read_from_the_keys_of_each_architecture() -> None:
    for kwargs, _ in CASES.values():
        s = infer_structure(shapes_of(kwargs))
        for key in ("in_channels", "model_channels", "out_channels", "num_res_blocks", "channel_mult"):
            assert s[key] == kwargs[key], key
        assert s["attention_resolutions"] == kwargs["attention_resolutions"]
        assert s["use_scale_shift_norm"] == kwargs["use_scale_shift_norm"]
        assert s["resblock_updown"] == kwargs["resblock_updown"]
        assert s["conv_resample"] == kwargs["conv_resample"]
        assert s["num_classes"] == kwargs["num_classes"]


# ------------------------------------------------------------------------------------------ what is refused
@pytest.fixture
def rgb64_file(tmp_path: Path) -> Path:
    path = tmp_path / "rgb64.pt"
    torch.save(ADMUNet(**RGB64).state_dict(), path)
    return path


def test_without_config_the_error_names_the_heads_and_the_keys_that_resolve_them(rgb64_file: Path) -> None:
    with pytest.raises(InputError, match=r"cannot infer the UNet configuration.*attention heads.*num_head_channels"):
        load_prior(rgb64_file)


def test_an_image_size_no_rule_fixes_is_asked_for(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"the image size \(pass image_size; channel_mult \[1, 2, 2\]"):
        checkpoint_config(shapes_of(UPDOWN), {"num_heads": 2})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"num_channels": 64}, r"config num_channels=64 contradicts .*model_channels=32"),
        ({"num_res_blocks": 2}, r"config num_res_blocks=2 contradicts .*num_res_blocks=1"),
        ({"learn_sigma": False}, r"config learn_sigma=False contradicts .*6 output channels for 3 input"),
        ({"channel_mult": "1,2,4,8"}, r"config channel_mult='1,2,4,8' contradicts .*channel_mult=\[1, 2, 3, 4\]"),
        ({"attention_resolutions": "16"}, r"attention_resolutions='16' contradicts .*sizes \[16, 8\]"),
        ({"use_scale_shift_norm": True}, r"use_scale_shift_norm=True contradicts .*use_scale_shift_norm=False"),
        ({"class_cond": True}, r"class_cond=True contradicts .*num_classes=None"),
        ({"in_channels": 1}, r"in_channels=1 contradicts .*in_channels=3"),
    ],
)
def test_a_flag_that_contradicts_the_state_dict_names_both(rgb64_file: Path, flags: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_prior(rgb64_file, config={"num_head_channels": 32, **flags})


def test_heads_that_do_not_divide_the_attention_width_are_refused(rgb64_file: Path) -> None:
    with pytest.raises(InputError, match=r"num_head_channels=48 does not divide the attention widths"):
        load_prior(rgb64_file, config={"num_head_channels": 48})


def test_unknown_flags_are_refused_by_name(rgb64_file: Path) -> None:
    with pytest.raises(InputError, match=r"\['num_chanels'\] that are not guided-diffusion flags"):
        load_prior(rgb64_file, config={"num_head_channels": 32, "num_chanels": 32})


def test_an_x0_predicting_model_is_refused(rgb64_file: Path) -> None:
    with pytest.raises(InputError, match="predict_xstart"):
        load_prior(rgb64_file, config={"num_head_channels": 32, "predict_xstart": True})


def test_the_chain_and_variance_follow_the_diffusion_flags(tmp_path: Path) -> None:
    path = tmp_path / "eps.pt"
    torch.save(ADMUNet(**UPDOWN).state_dict(), path)
    flags = {"image_size": 32, "num_heads": 2, "noise_schedule": "cosine", "diffusion_steps": 500, "sigma_small": False}
    prior = load_prior(path, config=flags)
    assert prior.variance == "fixed_large"
    assert torch.equal(prior.schedule.alphas_cumprod, Schedule.cosine(500).alphas_cumprod)
    assert load_prior(path, config={**flags, "sigma_small": True}).variance == "fixed_small"


def test_a_state_dict_of_another_network_is_not_taken_for_a_unet(tmp_path: Path) -> None:
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(InputError, match=r"not a guided-diffusion UNet state dict: it has no key 'time_embed"):
        load_prior(path, config={"num_heads": 1})


def test_a_config_that_is_neither_a_name_nor_a_config_file_is_refused(rgb64_file: Path) -> None:
    with pytest.raises(InputError, match=r"neither a known model name .* nor a \.json / \.yaml / \.yml file"):
        load_prior(rgb64_file, config="model_config.txt")


def test_a_directory_that_is_no_diffusers_folder_is_refused_as_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "x.pt"
    folder.mkdir()
    with pytest.raises(
        InputError,
        match=r"is a folder but not a diffusers model folder .*expected a known model name, a checkpoint file",
    ):
        load_prior(folder)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_head_channels": 32, "num_channels": "x"}, r"config num_channels='x' must be an integer >= 1"),
        ({"num_head_channels": 32, "learn_sigma": "maybe"}, r"config learn_sigma='maybe' must be true or false"),
        ({"num_head_channels": 32, "dropout": 2}, r"config dropout=2 must be a number in \[0, 1\)"),
        ({"num_head_channels": 32, "attention_resolutions": "a,b"}, r"attention_resolutions='a,b' must be positive"),
        ({"num_head_channels": 32, "noise_schedule": "quad"}, r"noise_schedule='quad' must be 'linear' or 'cosine'"),
        ({"num_head_channels": 0}, r"config num_head_channels=0 must be -1 \(unset\) or an integer >= 1"),
        ({**RGB64, "model_channels": "x"}, r"config model_channels='x' must be an integer >= 1"),
        ({**RGB64, "channel_mult": [1, 2, -3, 4]}, r"config channel_mult=\[1, 2, -3, 4\] must be positive numbers"),
        ({"model_channels": 32}, r"lacks the required ADMUNet arguments \['image_size', 'in_channels'"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_key(
    rgb64_file: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_prior(rgb64_file, config=config)


def test_a_config_file_with_a_value_of_the_wrong_type_is_refused_naming_the_file(rgb64_file: Path) -> None:
    path = rgb64_file.parent / "flags.yaml"
    path.write_text("num_head_channels: 32\nimage_size: big\n")
    with pytest.raises(InputError, match=r"config image_size='big' \(in .*flags\.yaml\) must be an integer >= 1"):
        load_prior(rgb64_file, config=path)


def test_flags_without_a_state_dict_take_create_models_defaults() -> None:
    # guided-diffusion's create_model(image_size=64, num_channels=32, num_res_blocks=1) with its other defaults:
    # channel_mult (1, 2, 3, 4) for 64x64, attention at 16x16 (rate 4), one head, 3 -> 3 channels
    unet = adm_config.unet_config_from_create_model(image_size=64, num_channels=32, num_res_blocks=1)
    assert unet == unet_kwargs(
        image_size=64,
        model_channels=32,
        out_channels=3,
        num_res_blocks=1,
        attention_resolutions=[4],
        channel_mult=[1, 2, 3, 4],
    )
