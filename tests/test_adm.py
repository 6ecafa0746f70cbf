"""The ADM UNet against guided-diffusion's outputs, its options, and loading priors from names and files."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from reguidance.conventions import InputError
from reguidance.diffusion import Schedule, p_mean_variance
from reguidance.priors import NetworkPrior, adm, adm_config, list_models, load_prior, loading, random_prior, zoo
from reguidance.priors.adm import ADMPrior, ADMUNet, state_dict_shapes
from reguidance.priors.zoo import ModelEntry

FIXTURES = Path(__file__).parent / "fixtures" / "adm"
TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The models here are tiny: one thread is fastest, and immune to other processes competing for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dev() -> dict[str, Any]:
    return torch.load(FIXTURES / "adm_dev.pt", weights_only=True)


@pytest.fixture(scope="module")
def dev_prior(dev: dict[str, Any]) -> ADMPrior:
    unet = ADMUNet(**dev["config"])
    unet.load_state_dict(dev["state_dict"], strict=True)
    return ADMPrior(unet).eval()


@pytest.fixture(autouse=True)
def isolated_checkpoint_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the user's checkpoints: the env var is unset and the cache is an empty tmp folder."""
    monkeypatch.delenv(zoo.ENV_CHECKPOINTS, raising=False)
    monkeypatch.setattr(zoo, "DEFAULT_CACHE", tmp_path / "cache")


TINY: dict[str, Any] = {
    "image_size": 16,
    "in_channels": 3,
    "model_channels": 32,
    "out_channels": 6,
    "num_res_blocks": 1,
    "attention_resolutions": [2],
    "dropout": 0.0,
    "channel_mult": [1, 2],
    "num_heads": 4,
    "num_head_channels": 16,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
}


def tiny(**overrides: Any) -> dict[str, Any]:
    return {**TINY, **overrides}


def randomized(unet: ADMUNet, seed: int = 0) -> ADMUNet:
    """Give every parameter random values, so that zero-initialised layers matter too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return unet.eval()


def inputs(config: dict[str, Any], batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    size, c = config["image_size"], config["in_channels"]
    return torch.randn(batch, c, size, size, generator=g), torch.tensor([3, 750][:batch])


def tiny_entry(name: str = "tiny", **fields: Any) -> ModelEntry:
    return ModelEntry(
        name=name,
        description="a tiny test model",
        config=tiny(),
        n_params=sum(math.prod(s) for s in state_dict_shapes(tiny()).values()),
        filename=f"{name}.pt",
        **fields,
    )


# ------------------------------------------------------------------------------------------ reference outputs
def test_dev_checkpoint_loads_strict_and_forward_matches_reference(dev: dict[str, Any]) -> None:
    unet = ADMUNet(**dev["config"])
    unet.load_state_dict(dev["state_dict"], strict=True)
    with torch.no_grad():
        out = unet.eval()(dev["x"], dev["t"])
    assert out.shape == dev["out"].shape
    assert (out - dev["out"]).abs().max().item() < TOL


def _check_p_mean_variance(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], schedule: Schedule, i: torch.Tensor
) -> None:
    """``TOL`` on every output; ``pred_xstart = (x - sqrt(1 - ab) eps) / sqrt(ab)`` on the scale of ``eps``.

    At the noisiest level ``1 / sqrt(ab)`` is about 156 and ``|pred_xstart|`` reaches ~600, so float32 rounding
    in the network (which varies with the CPU thread count) shows up there multiplied by 156.
    """
    for key in ("mean", "variance", "log_variance", "pred_xstart"):
        diff = (got[key].expand_as(want[key]) - want[key]).abs().amax(dim=(1, 2, 3))
        if key == "pred_xstart":
            diff = diff * schedule.alphas_cumprod[i].sqrt().float()
        assert diff.max().item() < TOL, f"{key} differs by {diff.tolist()}"


def test_p_mean_variance_learned_range_1000_steps_matches_reference(dev: dict[str, Any], dev_prior: ADMPrior) -> None:
    ref = dev["p_mean_variance_1000"]
    schedule = Schedule.linear()
    i = ref["t"]
    with torch.no_grad():
        pred = dev_prior.predict(dev["x"], schedule.timesteps(i))
    assert dev_prior.variance == "learned_range"
    got = p_mean_variance(schedule, dev["x"], i, pred.eps, pred.var_values, variance="learned_range")
    _check_p_mean_variance(got, ref, schedule, i)


def test_p_mean_variance_learned_range_100_respaced_steps_matches_reference(
    dev: dict[str, Any], dev_prior: ADMPrior
) -> None:
    ref = dev["p_mean_variance_100"]
    schedule = Schedule.linear().spaced(100)
    assert torch.equal(schedule.timestep_map, ref["timestep_map"])
    i = ref["t"]
    with torch.no_grad():
        pred = dev_prior.predict(dev["x"], schedule.timestep_map[i])
    got = p_mean_variance(schedule, dev["x"], i, pred.eps, pred.var_values, variance="learned_range")
    _check_p_mean_variance(got, ref, schedule, i)


# ------------------------------------------------------------------------------------------- known manifests
@pytest.mark.parametrize("name", ["ffhq_10m", "imagenet256_uncond"])
def test_known_config_builds_exactly_the_manifest_keys_shapes_and_param_count(name: str) -> None:
    manifest = json.loads((FIXTURES / f"{name}.keys.json").read_text())
    entry = zoo.MODELS[name]
    assert entry.unet_config() == adm_config.unet_config_from_create_model(**manifest["create_model_kwargs"])
    shapes = state_dict_shapes(entry.unet_config())
    want = {k: tuple(v) for k, v in manifest["state_dict_shapes"].items()}
    assert list(shapes) == list(want)
    assert shapes == want
    n_params = sum(math.prod(s) for s in shapes.values())
    assert n_params == manifest["n_params"] == entry.n_params


def test_create_model_conversion_turns_resolutions_into_downsample_rates() -> None:
    cfg = adm_config.unet_config_from_create_model(
        image_size=256, num_channels=128, num_res_blocks=1, learn_sigma=True, attention_resolutions="32,16,8"
    )
    assert cfg["attention_resolutions"] == [8, 16, 32]
    assert cfg["channel_mult"] == [1, 1, 2, 2, 4, 4]
    assert cfg["out_channels"] == 6 and cfg["num_classes"] is None


# --------------------------------------------------------------------------------------------------- options
OPTIONS: dict[str, dict[str, Any]] = {
    "reference_family": {},
    "scale_shift_off": {"use_scale_shift_norm": False},
    "conv_resample": {"resblock_updown": False, "conv_resample": True},
    "pool_and_nearest_resample": {"resblock_updown": False, "conv_resample": False},
    "heads_by_count": {"num_head_channels": -1, "num_heads": 2, "num_heads_upsample": 4},
    "new_attention_order": {"use_new_attention_order": True},
    "class_conditional": {"num_classes": 10},
    "eps_only_three_levels": {
        "out_channels": 3,
        "channel_mult": [1, 1, 2],
        "num_res_blocks": 2,
        "attention_resolutions": [2, 4],
        "dropout": 0.1,
    },
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_builds_runs_and_round_trips_its_state_dict(name: str) -> None:
    config = tiny(**OPTIONS[name])
    unet = randomized(ADMUNet(**config))
    x, t = inputs(config)
    y = torch.tensor([1, 7]) if config.get("num_classes") else None
    with torch.no_grad():
        out = unet(x, t, y)
    assert out.shape == (2, config["out_channels"], 16, 16)
    assert torch.isfinite(out).all()
    copy = ADMUNet(**config)
    copy.load_state_dict(unet.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(copy.eval()(x, t, y), out)


def _reference_attention(qkv: torch.Tensor, heads: int, new_order: bool) -> torch.Tensor:
    """Softmax attention written out per head, as guided-diffusion lays out the qkv channels."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:
        q, k, v = (z.reshape(b, heads, ch, length) for z in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(b, heads, 3 * ch, length).split(ch, dim=2)
    w = torch.softmax(torch.einsum("bhct,bhcs->bhts", q, k) / math.sqrt(ch), dim=-1)
    return torch.einsum("bhts,bhcs->bhct", w, v).reshape(b, heads * ch, length)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_reads_qkv_channels_in_the_reference_order(new_order: bool) -> None:
    qkv = torch.randn(2, 3 * 4 * 8, 20, generator=torch.Generator().manual_seed(1))
    module = adm.QKVAttention(4, new_order=new_order)
    assert (module(qkv) - _reference_attention(qkv, 4, new_order)).abs().max().item() < 1e-5


def test_class_conditional_model_requires_labels() -> None:
    unet = ADMUNet(**tiny(num_classes=10))
    x, t = inputs(TINY)
    with pytest.raises(ValueError, match="class-conditional"):
        unet(x, t)


def test_use_checkpoint_never_recomputes_activations() -> None:
    unet = randomized(ADMUNet(**tiny(use_checkpoint=True)))
    calls = []
    unet.middle_block[1].register_forward_hook(lambda *_: calls.append(1))
    x, t = inputs(TINY)
    x.requires_grad_(True)
    unet(x, t).square().sum().backward()
    assert len(calls) == 1
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_convert_to_fp16_runs_the_torso_in_half_precision_close_to_fp32() -> None:
    unet = randomized(ADMUNet(**tiny(use_fp16=True)))
    x, t = inputs(TINY)
    with torch.no_grad():
        full = unet(x, t)
        unet.convert_to_fp16()
        assert unet.torso_dtype == torch.float16 and unet.out[2].weight.dtype == torch.float32
        half = unet(x, t)
    assert half.dtype == torch.float32
    assert (half - full).abs().max().item() < 0.05 * full.abs().max().item()
    assert unet.convert_to_fp32().torso_dtype == torch.float32


def test_unsupported_dims_is_refused() -> None:
    with pytest.raises(ValueError, match="dims=2"):
        ADMUNet(**tiny(dims=3))


def test_attention_resolutions_as_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match="downsample rates"):
        ADMUNet(**tiny(attention_resolutions="16"))


# ------------------------------------------------------------------------------------------------------ prior
def test_prior_signal_shape_and_variance_follow_the_unet() -> None:
    learned = ADMPrior(ADMUNet(**tiny()))
    fixed = ADMPrior(ADMUNet(**tiny(out_channels=3)))
    assert learned.signal_shape == (3, 16, 16) and learned.variance == "learned_range"
    assert fixed.variance == "fixed_small" and len(fixed.schedule) == 1000


def test_prior_splits_eps_and_var_values() -> None:
    prior = ADMPrior(randomized(ADMUNet(**tiny())))
    x, t = inputs(TINY)
    with torch.no_grad():
        out = prior.unet(x, t)
        pred = prior.predict(x, t)
    assert torch.equal(pred.eps, out[:, :3]) and pred.var_values is not None
    assert torch.equal(pred.var_values, out[:, 3:])


def test_prior_refuses_a_batch_of_the_wrong_shape() -> None:
    prior = ADMPrior(ADMUNet(**tiny()))
    with pytest.raises(ValueError, match=r"\(\*, 3, 16, 16\)"):
        prior.predict(torch.zeros(1, 3, 32, 32), torch.tensor([0]))


# ---------------------------------------------------------------------------------------------------- loading
@pytest.fixture
def tiny_state_dict() -> dict[str, torch.Tensor]:
    return randomized(ADMUNet(**tiny()), seed=3).state_dict()


def _output(prior: NetworkPrior) -> torch.Tensor:
    x, t = inputs(TINY)
    with torch.no_grad():
        return prior.unet(x, t)


def _reference_output(state_dict: dict[str, torch.Tensor]) -> torch.Tensor:
    unet = ADMUNet(**tiny())
    unet.load_state_dict(state_dict, strict=True)
    return _output(ADMPrior(unet.eval()))


@pytest.mark.parametrize("wrapper", [None, "ema", "state_dict", "model"])
def test_load_prior_reads_a_pt_file_raw_or_wrapped(
    tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor], wrapper: str | None
) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(tiny_state_dict if wrapper is None else {wrapper: tiny_state_dict, "step": 7}, path)
    prior = load_prior(path, config=tiny())
    assert not prior.training and not any(p.requires_grad for p in prior.parameters())
    assert torch.equal(_output(prior), _reference_output(tiny_state_dict))


def test_load_prior_reads_a_safetensors_file(tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state_dict.items()}, str(path))
    prior = load_prior(str(path), config=tiny())
    assert torch.equal(_output(prior), _reference_output(tiny_state_dict))


def test_load_prior_accepts_create_model_arguments_as_config(tmp_path: Path) -> None:
    create_kwargs = {
        "image_size": 64,
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,2",
        "learn_sigma": True,
        "attention_resolutions": "32",
        "num_head_channels": 16,
        "model_path": "ignored.pt",
    }
    unet_config = adm_config.unet_config_from_create_model(**create_kwargs)
    path = tmp_path / "gd.pt"
    torch.save(ADMUNet(**unet_config).state_dict(), path)
    prior = load_prior(path, config=create_kwargs)
    assert prior.signal_shape == (3, 64, 64) and prior.variance == "learned_range"


def test_load_prior_infers_the_config_from_keys_and_shapes(
    tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(zoo.MODELS, "tiny", tiny_entry())
    path = tmp_path / "whatever.pt"
    torch.save(tiny_state_dict, path)
    assert loading.infer_config(tiny_state_dict) == "tiny"
    prior = load_prior(path)
    assert torch.equal(_output(prior), _reference_output(tiny_state_dict))


def test_load_prior_without_config_names_the_problem_when_nothing_fits(
    tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "unknown.pt"
    torch.save(tiny_state_dict, path)
    with pytest.raises(ValueError, match=r"cannot infer the UNet configuration.*pass config="):
        load_prior(path)


def test_missing_keys_are_listed_with_the_known_config_that_fits(
    tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(zoo.MODELS, "tiny", tiny_entry())
    path = tmp_path / "tiny.pt"
    torch.save(tiny_state_dict, path)
    with pytest.raises(ValueError, match=r"missing keys: .*fit the known config\(s\) tiny"):
        load_prior(path, config=tiny(num_classes=10))  # expects label_emb.weight


def test_unexpected_keys_and_wrong_shapes_are_listed(tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor]) -> None:
    sd = dict(tiny_state_dict)
    sd["extra.weight"] = torch.zeros(2)
    sd["input_blocks.0.0.weight"] = torch.zeros(32, 1, 3, 3)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(ValueError) as info:
        load_prior(path, config=tiny())
    msg = str(info.value)
    assert "1 unexpected keys: extra.weight" in msg
    assert "input_blocks.0.0.weight: (32, 1, 3, 3) (expected (32, 3, 3, 3))" in msg
    assert "no known config fits" in msg


def test_known_name_is_found_in_checkpoint_dir_and_its_sha256_verified(
    tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.save(tiny_state_dict, folder / "tiny.pt")
    digest = hashlib.sha256((folder / "tiny.pt").read_bytes()).hexdigest()
    monkeypatch.setitem(zoo.MODELS, "tiny", tiny_entry(sha256=digest))
    assert torch.equal(_output(load_prior("tiny", checkpoint_dir=folder)), _reference_output(tiny_state_dict))
    monkeypatch.setenv(zoo.ENV_CHECKPOINTS, str(folder))
    assert load_prior("tiny").signal_shape == (3, 16, 16)


def test_sha256_mismatch_is_refused(
    tmp_path: Path, tiny_state_dict: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.save(tiny_state_dict, tmp_path / "tiny.pt")
    monkeypatch.setitem(zoo.MODELS, "tiny", tiny_entry(sha256="0" * 64))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_prior("tiny", checkpoint_dir=tmp_path)


def test_unknown_name_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model name 'ffhq'.*ffhq_10m"):
        load_prior("ffhq")


def test_missing_checkpoint_of_a_known_name_says_where_it_looked_and_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ffhq_10m\.pt.*not found in .*drive\.google\.com"):
        load_prior("ffhq_10m", checkpoint_dir=tmp_path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prior(tmp_path / "nope.pt", config=tiny())


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"has suffix '\.bin'; expected a known model name, a checkpoint file"):
        load_prior(tmp_path / "model.bin", config=tiny())


def test_embedded_model_absent_from_this_build_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from reguidance.priors import zoo

    ghost = ModelEntry(
        name="ghost", description="", config=tiny(), n_params=1, asset="models/ghost.safetensors", sha256="0" * 64
    )
    monkeypatch.setitem(zoo.MODELS, "ghost", ghost)
    with pytest.raises(FileNotFoundError, match="embedded model 'ghost' is not available in this build"):
        load_prior("ghost")


def test_embedded_priors_load_offline() -> None:
    for name in ("mnist", "fashion_mnist"):
        prior = load_prior(name)
        assert prior.signal_shape == (1, 32, 32)


def test_embedded_entries_must_record_a_sha256() -> None:
    with pytest.raises(ValueError, match="sha256"):
        ModelEntry(name="m", description="", config=tiny(), n_params=1, asset="m.safetensors")


def test_list_models_reports_known_models_and_local_presence(tmp_path: Path) -> None:
    (tmp_path / "ffhq_10m.pt").write_bytes(b"")
    rows = {row["name"]: row for row in list_models(checkpoint_dir=tmp_path)}
    assert {"ffhq_10m", "imagenet256_uncond"} <= set(rows)
    assert rows["ffhq_10m"]["present"] and rows["ffhq_10m"]["path"] == str(tmp_path / "ffhq_10m.pt")
    assert not rows["imagenet256_uncond"]["present"]
    assert rows["imagenet256_uncond"]["kind"] == "checkpoint" and rows["imagenet256_uncond"]["sha256"] is None


def test_random_prior_is_reproducible_non_trivial_and_leaves_the_global_rng_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(zoo.MODELS, "tiny", tiny_entry())
    state = torch.random.get_rng_state()
    a, b, c = random_prior("tiny", seed=0), random_prior("tiny", seed=0), random_prior("tiny", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    out_a = _output(a)
    assert torch.equal(out_a, _output(b)) and not torch.equal(out_a, _output(c))
    assert out_a.abs().max() > 0
