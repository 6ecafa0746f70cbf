"""The device checks of ``scripts/gpu_check.sh``, on the device named by ``REGUIDANCE_TEST_DEVICE``.

Unset, they run on CUDA when it is available and are skipped otherwise; ``REGUIDANCE_TEST_DEVICE=cpu`` runs them on
CPU (``scripts/gpu_check.sh --device cpu``, part of ``make test``), and ``=cuda`` on a machine without CUDA is a
failure, not a skip. Random draws are compared only within one device: a CUDA generator seeded like a CPU one draws
other numbers (README, Reliability: reproducibility).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from reguidance.app import memory
from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.guidance.dps import dps
from reguidance.operators import SuperResolution
from reguidance.priors.adm import ADMPrior, ADMUNet
from reguidance.studies.speed import SpeedConfig, measure_floor, measure_speed

FIXTURE = Path(__file__).parent / "fixtures" / "adm" / "adm_dev.pt"
ENV = "REGUIDANCE_TEST_DEVICE"


@pytest.fixture(scope="module")
def device() -> torch.device:
    """``$REGUIDANCE_TEST_DEVICE``, else CUDA where available, else the module is skipped."""
    name = os.environ.get(ENV)
    if name is None:
        if not torch.cuda.is_available():
            pytest.skip(f"needs a CUDA device (or {ENV}=cpu)")
        return torch.device("cuda")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"{ENV}={name} but torch {torch.__version__} sees no CUDA device")
    return dev


@pytest.fixture
def cuda(device: torch.device) -> torch.device:
    """The device, for the checks that only CUDA can answer (skipped on other devices)."""
    if device.type != "cuda":
        pytest.skip("a CUDA-only property")
    return device


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    """The guided-diffusion UNet's output on a small config, recorded from the authors' code (tests/test_adm.py)."""
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture
def exact_matmul() -> Iterator[None]:
    """TF32 off on CUDA (it rounds fp32 matmuls to 10 mantissa bits) for the test, then restored."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


#: an 8x8 RGB guided-diffusion UNet (learned variance, attention at 4x4, resblock up/down: ffhq_10m's kind in
#: miniature), cheap enough for bf16, which CPUs without bf16 units emulate slowly; also timed by
#: ``scripts/gpu_check.sh --device cpu``
TINY_CONFIG: dict[str, Any] = {
    "image_size": 8,
    "in_channels": 3,
    "model_channels": 32,
    "out_channels": 6,
    "num_res_blocks": 1,
    "attention_resolutions": [2],
    "channel_mult": [1, 1],
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
}


def tiny_prior(device: torch.device) -> ADMPrior:
    """:data:`TINY_CONFIG` with random weights drawn from seed 0 (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = ADMUNet(**TINY_CONFIG)
        with torch.no_grad():  # guided-diffusion zero-initialises its output layers: random weights everywhere
            for p in unet.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return ADMPrior(unet.to(device).eval(), Schedule.linear())


def dev_prior(golden: dict[str, Any], device: torch.device) -> ADMPrior:
    unet = ADMUNet(**golden["config"])
    unet.load_state_dict(golden["state_dict"], strict=True)
    return ADMPrior(unet.to(device).eval(), Schedule.linear())


def test_adm_unet_matches_the_reference_in_fp32(golden: dict[str, Any], device: torch.device, exact_matmul: None):
    unet = dev_prior(golden, device).unet
    with torch.no_grad():
        out = unet(golden["x"].to(device), golden["t"].to(device)).cpu()
    assert torch.allclose(out, golden["out"], atol=1e-4)


def test_bf16_autocast_stays_close_to_fp32(golden: dict[str, Any], device: torch.device):
    prior = dev_prior(golden, device)
    x, t = golden["x"].to(device), golden["t"].to(device)
    with torch.no_grad():
        exact = prior.predict(x, t).eps
        fast = prior.optimize(torch.bfloat16).predict(x, t).eps
    assert fast.dtype == torch.float32 and fast.device.type == device.type
    assert (fast - exact).norm() / exact.norm() < 0.05  # bf16 keeps 8 mantissa bits: ~0.4% per rounding


def sr_problem(golden: dict[str, Any], device: torch.device) -> tuple[SuperResolution, torch.Tensor]:
    op = SuperResolution((3, 32, 32), 4, sigma_y=0.05).to(device)
    return op, op(golden["x"].to(device).clamp(-1, 1))


def test_dps_does_not_depend_on_the_batch(golden: dict[str, Any], device: torch.device):
    prior = dev_prior(golden, device)
    op, y = sr_problem(golden, device)
    levels = prior.schedule.spaced(5)
    full = dps(prior, op, y, levels=levels, rng=BatchRNG.from_seed(0, range(3), device=device), clip=True).x
    part = dps(prior, op, y[1:], levels=levels, rng=BatchRNG.from_seed(0, [1, 2], device=device), clip=True).x
    assert full.device.type == device.type
    assert torch.allclose(full[1:], part, atol=1e-3)


def test_the_input_gradient_under_bf16_autocast_stays_close_to_fp32(device: torch.device):
    prior = tiny_prior(device)
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 3, 8, 8, generator=g).to(device), torch.randn(2, 3, 8, 8, generator=g).to(device)
    t = torch.tensor([100, 700], device=device)

    def input_gradient() -> torch.Tensor:  # what a DPS step differentiates: the network's output w.r.t. its input
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((prior.predict(xr, t).eps * w).sum(), xr)
        return grad

    exact = input_gradient()
    prior.optimize(torch.bfloat16)
    fast = input_gradient()
    assert fast.dtype == torch.float32 and bool(torch.isfinite(fast).all())
    assert (fast - exact).norm() / exact.norm() < 0.1  # 0.034 on CPU (2026-12-02)


def test_generators_live_on_the_device_and_draw_per_sample(device: torch.device):
    whole = BatchRNG.from_seed(7, range(4), device=device)
    assert all(g.device.type == device.type for g in whole.generators)
    draws = whole.randn(3, 5)
    assert draws.device.type == device.type
    some = BatchRNG.from_seed(7, [3, 1], device=device).randn(3, 5)
    assert torch.equal(some, draws[[3, 1]])  # sample i's draws depend on its own seed only, bit for bit
    assert torch.equal(BatchRNG.from_seed(7, range(4), device=device).randn(3, 5), draws)  # same seed, same draws
    assert not torch.equal(draws[0], draws[1])


def test_uniform_draws_on_the_device_are_in_the_unit_interval_and_per_sample(device: torch.device):
    draws = BatchRNG.from_seed(3, range(3), device=device).rand(1000)
    assert draws.device.type == device.type and float(draws.min()) >= 0.0 and float(draws.max()) < 1.0
    assert torch.equal(BatchRNG.from_seed(3, [2], device=device).rand(1000), draws[2:])


def test_free_memory_is_read_from_the_device(device: torch.device):
    free = memory.available_bytes(device)
    assert isinstance(free, int) and free > 0
    if device.type == "cuda":
        total = torch.cuda.mem_get_info(device)[1]
    else:
        meminfo = dict(line.split(":", 1) for line in memory.MEMINFO.read_text().splitlines() if ":" in line)
        total = int(meminfo["MemTotal"].split()[0]) * 1024
    assert free <= total


def test_cuda_free_memory_falls_by_an_allocation(cuda: torch.device):
    torch.cuda.empty_cache()
    before = memory.available_bytes(cuda)
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device=cuda)
    after = memory.available_bytes(cuda)
    assert before is not None and after is not None
    assert before - after >= 256 * 2**20  # mem_get_info counts what the caching allocator reserved
    del block
    torch.cuda.empty_cache()


def test_fit_batch_lowers_a_batch_beyond_the_device_memory_and_keeps_one_that_fits(device: torch.device):
    prior = tiny_prior(device)
    step = memory.estimate_step(prior)
    assert step is not None and step.per_image > 0
    assert memory.fit_batch(prior, 2, device) == (2, None)  # an 8x8 UNet: well under 1 MB per image
    free = memory.available_bytes(device)
    assert free is not None
    asked = free // step.need(1) * 4 + 4  # well beyond what the device holds
    fits, notice = memory.fit_batch(prior, asked, device)
    assert 1 <= fits < asked and notice is not None and str(device) in notice


def test_floor_timings_are_positive_and_peak_memory_holds_the_weights(golden: dict[str, Any], device: torch.device):
    prior = dev_prior(golden, device)
    floor = measure_floor(prior, batch_size=2, iters=1)
    assert floor["fwd_s_per_image"] > 0 and floor["fwd_grad_s_per_image"] > 0
    weights_mb = sum(p.numel() * p.element_size() for p in prior.parameters()) / 2**20
    assert floor["fwd_grad_peak_mb"] >= weights_mb  # CUDA: the allocator's peak; CPU: the process's peak RSS


@pytest.mark.filterwarnings("ignore::reguidance.guidance.dps.GuidanceWarning")  # one step from t=999, clipped
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_speed_report_on_the_device_has_every_method_and_round(device: torch.device, dtype: str):
    prior = tiny_prior(device)
    if dtype == "bf16":
        prior.optimize(torch.bfloat16)
    cfg = SpeedConfig(batch_size=1, dps_steps=1, inversion_steps=1, daps_annealing_steps=1, floor_iters=1, repeats=2)
    report = measure_speed(prior, cfg, dtype)
    expected = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    assert report["device"] == expected and report["dtype"] == dtype and report["repeats"] == 2
    for m in report["methods"].values():
        assert len(m["per_repeat"]) == 2 and m["ratio_min"] <= m["ratio_to_floor"] <= m["ratio_max"]
        assert m["ratio_min"] > 0 and m["peak_mem_mb"] > 0
