"""`reguidance speed`: the report's shape, the floor arithmetic and the interleaved rounds, on injected clocks and
timers (no assertion hangs on a real timing; speed *targets* live in the command's output)."""

import itertools
from collections.abc import Callable

import pytest
import torch

from reguidance.conventions import InputError
from reguidance.diffusion import Schedule
from reguidance.priors.adm import ADMPrior, ADMUNet
from reguidance.studies.speed import Cost, Floor, SpeedConfig, format_speed, interleave, measure_speed, summarise_rounds
from tiny_models import tiny_unet_config

TINY = tiny_unet_config(16)


def ticking_clock() -> Callable[[], float]:
    """A clock that advances one second per reading: every timed block lasts exactly one second."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


@pytest.mark.filterwarnings("ignore::reguidance.guidance.dps.GuidanceWarning")  # 2 steps from t=999, clipped
def test_speed_report_divides_each_method_by_the_floor_of_its_evaluations():
    # Every timed block lasts 1 s on the ticking clock, so with batch b and floor_iters n the floor is
    # 1 / (n b) s per image for a forward and for a forward with gradient, and each method 1 / b s per image:
    # its ratio is n / NFE (DPS 2 grad steps, DAPS 1 annealing step x 5 ODE steps, inversion 2, ReGuidance 2 + 2).
    prior = ADMPrior(ADMUNet(**TINY), Schedule.linear()).eval()
    cfg = SpeedConfig(batch_size=2, dps_steps=2, inversion_steps=2, daps_annealing_steps=1, floor_iters=3, repeats=2)
    report = measure_speed(prior, cfg, clock=ticking_clock())
    assert report["floor"] == {
        "fwd_ms_per_image": pytest.approx(1e3 / 6),
        "fwd_grad_ms_per_image": pytest.approx(1e3 / 6),
    }
    assert report["repeats"] == 2 and report["batch_size"] == 2
    nfe = {"dps": 2, "daps": 5, "inversion": 2, "reguidance": 4}
    assert {name: m["nfe"] for name, m in report["methods"].items()} == nfe
    for name, m in report["methods"].items():
        assert m["ratio_to_floor"] == pytest.approx(3 / nfe[name])
        assert m["ratio_min"] == pytest.approx(3 / nfe[name]) and m["ratio_max"] == pytest.approx(3 / nfe[name])
        assert m["ms_per_image"] == pytest.approx(500.0) and len(m["per_repeat"]) == 2
    text = format_speed(report)
    assert "ratio to floor" in text and "2 interleaved repeats" in text and "0.600-0.600" in text  # DAPS: 3 / 5


def test_interleave_times_the_floor_right_before_each_method_in_every_round():
    log: list[str] = []
    floors = [Floor(fwd_s=i + 1.0, fwd_grad_s=10.0 * (i + 1)) for i in range(4)]
    next_floor = iter(floors)

    def time_floor() -> Floor:
        log.append("floor")
        return next(next_floor)

    def timer(name: str, seconds: list[float]) -> Callable[[], float]:
        values = iter(seconds)

        def time_method() -> float:
            log.append(name)
            return next(values)

        return time_method

    rounds = interleave(time_floor, {"dps": timer("dps", [5.0, 6.0]), "daps": timer("daps", [7.0, 8.0])}, repeats=2)
    assert log == ["floor", "dps", "floor", "daps", "floor", "dps", "floor", "daps"]
    assert rounds == {"dps": [(floors[0], 5.0), (floors[2], 6.0)], "daps": [(floors[1], 7.0), (floors[3], 8.0)]}


def test_the_ratio_is_the_median_of_the_per_round_ratios_with_their_range():
    # One forward per run, so a round's floor cost is its fwd_s. Rounds (floor, time): (1, 3), (2, 2), (4, 8) have
    # ratios 3, 1, 2: median 2, range 1-3 (the ratio of the medians, 3 / 2, would be another number).
    rounds = [(Floor(1.0, 9.0), 3.0), (Floor(2.0, 9.0), 2.0), (Floor(4.0, 9.0), 8.0)]
    summary = summarise_rounds(rounds, Cost(fwd=1))
    assert summary["ratio_to_floor"] == pytest.approx(2.0)
    assert (summary["ratio_min"], summary["ratio_max"]) == (pytest.approx(1.0), pytest.approx(3.0))
    assert summary["ms_per_image"] == pytest.approx(3000.0) and summary["nfe"] == 1
    assert [r["ratio_to_floor"] for r in summary["per_repeat"]] == [pytest.approx(3.0), 1.0, 2.0]
    assert summary["per_repeat"][2] == {
        "floor_fwd_ms_per_image": 4000.0,
        "floor_fwd_grad_ms_per_image": 9000.0,
        "ms_per_image": 8000.0,
        "ratio_to_floor": 2.0,
    }


def test_an_even_number_of_rounds_takes_the_mean_of_the_middle_two_ratios():
    # Cost 2 forwards + 1 gradient on floor (0.5, 1.0): 2 s per image. Times 1, 2, 4, 8 s: ratios 0.5, 1, 2, 4.
    rounds = [(Floor(0.5, 1.0), seconds) for seconds in (8.0, 1.0, 4.0, 2.0)]
    summary = summarise_rounds(rounds, Cost(fwd=2, fwd_grad=1))
    assert summary["ratio_to_floor"] == pytest.approx(1.5)
    assert (summary["ratio_min"], summary["ratio_max"]) == (pytest.approx(0.5), pytest.approx(4.0))
    assert summary["nfe"] == 3


def test_repeats_must_be_a_positive_integer():
    with pytest.raises(InputError, match="repeats"):
        SpeedConfig(repeats=0)
    with pytest.raises(InputError, match="repeats"):
        interleave(lambda: Floor(1.0, 1.0), {"dps": lambda: 1.0}, repeats=0)


def test_speed_repeats_0_is_a_one_line_error(capsys: pytest.CaptureFixture[str]):
    from reguidance.cli import main

    assert main(["speed", "--repeats", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--repeats" in err and len(err.splitlines()) == 1


def test_bf16_autocast_returns_eps_in_the_input_dtype():
    torch.manual_seed(0)
    prior = ADMPrior(ADMUNet(**TINY), Schedule.linear()).eval().optimize(torch.bfloat16)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert prior.predict(x, torch.tensor([10, 500])).eps.dtype == torch.float32


def test_optimize_names_the_compile_modes_it_accepts():
    prior = ADMPrior(ADMUNet(**TINY), Schedule.linear()).eval()
    with pytest.raises(ValueError, match="compile_mode must be one of default, reduce-overhead, max-autotune"):
        prior.optimize(compile=True, compile_mode="fastest")
    assert prior.optimize(compile=False, compile_mode="reduce-overhead") is prior  # mode unused without compile


def test_cpu_facts_reads_the_model_name_and_the_bf16_units(monkeypatch):
    from pathlib import Path

    from reguidance.studies import speed

    info = "processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2 amx_bf16 avx512f\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: info)
    assert speed.cpu_facts() == ("Example CPU 9000", True)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: info.replace("amx_bf16 ", ""))
    assert speed.cpu_facts() == ("Example CPU 9000", False)
