"""Checks that need a GPU: skipped here, run by scripts/gpu_check.sh on a CUDA machine."""

from pathlib import Path

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.guidance.dps import dps
from reguidance.operators import SuperResolution
from reguidance.priors.adm import ADMPrior, ADMUNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FIXTURE = Path(__file__).parent / "fixtures" / "adm" / "adm_dev.pt"


@pytest.fixture(scope="module")
def golden():
    return torch.load(FIXTURE, weights_only=True)


def test_adm_unet_matches_the_reference_on_cuda_in_fp32(golden):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    unet = ADMUNet(**golden["config"])
    unet.load_state_dict(golden["state_dict"], strict=True)
    unet = unet.cuda().eval()
    with torch.no_grad():
        out = unet(golden["x"].cuda(), golden["t"].cuda()).cpu()
    assert torch.allclose(out, golden["out"], atol=1e-4)


def test_bf16_autocast_stays_close_to_fp32_on_cuda(golden):
    unet = ADMUNet(**golden["config"])
    unet.load_state_dict(golden["state_dict"], strict=True)
    prior = ADMPrior(unet.cuda().eval())
    x, t = golden["x"].cuda(), golden["t"].cuda()
    with torch.no_grad():
        exact = prior.predict(x, t).eps
        fast = prior.optimize(torch.bfloat16).predict(x, t).eps
    assert fast.dtype == torch.float32
    assert (fast - exact).norm() / exact.norm() < 0.05


def test_dps_on_cuda_does_not_depend_on_the_batch(golden):
    unet = ADMUNet(**golden["config"])
    unet.load_state_dict(golden["state_dict"], strict=True)
    prior = ADMPrior(unet.cuda().eval(), Schedule.linear())
    op = SuperResolution((3, 32, 32), 4, sigma_y=0.05).cuda()
    y = op(golden["x"].cuda().clamp(-1, 1))
    sched = prior.schedule.spaced(5)
    full = dps(prior, op, y, sched, rng=BatchRNG.from_seed(0, range(3), device="cuda"), clip=True).x
    part = dps(prior, op, y[1:], sched, rng=BatchRNG.from_seed(0, [1, 2], device="cuda"), clip=True).x
    assert torch.allclose(full[1:], part, atol=1e-3)
