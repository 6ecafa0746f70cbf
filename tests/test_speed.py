"""`reguidance speed`: the report's shape and the floor arithmetic (speed *targets* live in the command's output)."""

import torch

from reguidance.diffusion import Schedule
from reguidance.priors.adm import ADMPrior, ADMUNet
from reguidance.speed import SpeedConfig, format_speed, measure_speed

TINY = {
    "image_size": 16,
    "in_channels": 1,
    "model_channels": 32,
    "out_channels": 1,
    "num_res_blocks": 1,
    "attention_resolutions": [],
    "channel_mult": (1, 2),
    "num_head_channels": 32,
}


def test_speed_report_has_the_floor_and_every_method_with_its_ratio():
    torch.manual_seed(0)
    prior = ADMPrior(ADMUNet(**TINY), Schedule.linear()).eval()
    cfg = SpeedConfig(batch_size=2, dps_steps=2, inversion_steps=2, daps_annealing_steps=1, floor_iters=1)
    report = measure_speed(prior, cfg)
    assert report["floor"]["fwd_ms_per_image"] > 0
    assert report["floor"]["fwd_grad_ms_per_image"] > report["floor"]["fwd_ms_per_image"] * 0.5
    assert set(report["methods"]) == {"dps", "daps", "inversion", "reguidance"}
    assert report["methods"]["reguidance"]["nfe"] == 4 and report["methods"]["daps"]["nfe"] == 5
    assert all(m["ratio_to_floor"] > 0 for m in report["methods"].values())
    assert "ratio to floor" in format_speed(report)


def test_bf16_autocast_returns_eps_in_the_input_dtype():
    torch.manual_seed(0)
    prior = ADMPrior(ADMUNet(**TINY), Schedule.linear()).eval().optimize(torch.bfloat16)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert prior.predict(x, torch.tensor([10, 500])).eps.dtype == torch.float32


def test_optimize_names_the_compile_modes_it_accepts():
    import pytest

    prior = ADMPrior(ADMUNet(**TINY), Schedule.linear()).eval()
    with pytest.raises(ValueError, match="compile_mode must be one of default, reduce-overhead, max-autotune"):
        prior.optimize(compile=True, compile_mode="fastest")
    assert prior.optimize(compile=False, compile_mode="reduce-overhead") is prior  # mode unused without compile


def test_cpu_facts_reads_the_model_name_and_the_bf16_units(monkeypatch):
    from pathlib import Path

    from reguidance import speed

    info = "processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2 amx_bf16 avx512f\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: info)
    assert speed.cpu_facts() == ("Example CPU 9000", True)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: info.replace("amx_bf16 ", ""))
    assert speed.cpu_facts() == ("Example CPU 9000", False)
