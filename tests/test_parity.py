"""One step of each baseline against the authors' reference code (tests/fixtures/reference_steps, its README).

Each fixture holds the inputs and outputs of one step of the reference implementation, run on the embedded MNIST
network with recorded noise. Here each method runs through its public function on a chain of the two levels the
fixture names, starting from the fixture's state, with a generator stand-in that replays the recorded noise, and
the loop is stopped after the first step by the callback. Nothing on the expected side was computed by reguidance.

Tolerances are on the scale of the compared values and a few times the differences measured on 2026-11-27
(float32 network on this CPU; the network's own rounding varies with the CPU's vector width and thread count).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from torch import Tensor

from reguidance.conventions import BatchRNG
from reguidance.diffusion import Schedule
from reguidance.guidance import StepInfo, daps, diffpir, dps, pigdm, reddiff
from reguidance.operators import Blur, Inpainting, SuperResolution
from reguidance.priors import load_prior

FIXTURES = Path(__file__).parent / "fixtures" / "reference_steps"


def fixture(name: str) -> dict[str, Any]:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


@pytest.fixture(scope="module")
def prior():
    return load_prior("mnist").eval()


class Replay:
    """A stand-in for :class:`BatchRNG` that hands out recorded noise, in order."""

    def __init__(self, batch: int, *draws: Tensor) -> None:
        self.batch = batch
        self.draws = list(draws)

    def __len__(self) -> int:
        return self.batch

    def randn_like(self, x: Tensor) -> Tensor:
        return self.draws.pop(0).to(x)


def replay(batch: int, *draws: Tensor) -> BatchRNG:
    """A :class:`Replay` where the methods take a :class:`BatchRNG` (of which it has what these steps call)."""
    return cast(BatchRNG, Replay(batch, *draws))


class First:
    """A callback that keeps the first step's information and stops the loop there (or after ``n`` steps)."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.steps: list[StepInfo] = []

    def __call__(self, info: StepInfo) -> bool:
        self.steps.append(info)
        return len(self.steps) >= self.n


def operator_of(f: dict[str, Any]):
    sigma_y = float(f["sigma_y"])
    if f["operator"] == "inpaint":
        return Inpainting(f["mask"], sigma_y)
    if f["operator"] == "sr":
        return SuperResolution((1, 32, 32), int(f["factor"]), sigma_y=sigma_y)
    return Blur((1, 32, 32), f["kernel"], sigma_y=sigma_y)


def two_levels(chain: Schedule, t: int, t_next: int) -> Schedule:
    """The chain restricted to the current level ``t`` and the next one (``-1``: the data)."""
    return chain.respace([t] if t_next < 0 else [t_next, t])


def gap(got: Tensor, want: Tensor) -> float:
    return (got.float() - want.float()).abs().max().item()


# ---------------------------------------------------------------------------------------- measured gaps
# Each ``measure_*`` replays every case of one fixture and returns, per compared quantity, the largest gap over
# cases and samples: ``max |library - reference|``, with ``x0`` estimates multiplied by ``sqrt(alpha_bar)`` (the
# scale of ``eps``: Tweedie's 1 / sqrt(alpha_bar), 157 at t = 999, magnifies the network's float32 rounding).
# ``scripts/parity_table.py`` prints them as the table in docs/parity.md.


def measure_dps(prior, name: str) -> dict[str, float]:
    f = fixture(name)
    operator = operator_of(f)
    gaps = {"x0_hat (eps scale)": 0.0, "residual norm / (1 + norm)": 0.0, "x_next": 0.0}
    for c in range(int(f["n_cases"])):
        chain = Schedule.linear().spaced(int(f["chain_len"][c]))
        k = int(f["k"][c])
        levels = chain.respace([k] if k == 0 else [k - 1, k])
        assert float(levels.alphas_cumprod[-1]) == pytest.approx(float(f["alpha_bar"][c]), rel=1e-12)
        stop = First()
        out = dps(
            prior,
            operator,
            f["y"],
            levels=levels,
            rng=replay(2, f["noise"][c]),
            latent=f["x_t"][c],
            step_size=float(f["zeta"]),
            sampler="ddpm",
            clip=True,
            callback=stop,
        )
        info = stop.steps[0]
        scale = math.sqrt(float(f["alpha_bar"][c]))
        _update(gaps, "x0_hat (eps scale)", gap(info.x0, f["expected_x0_hat"][c]) * scale)
        want = f["expected_residual_norm"][c]
        _update(gaps, "residual norm / (1 + norm)", gap(info.residual, want) / (1 + want.abs().max().item()))
        _update(gaps, "x_next", gap(out.x, f["expected_x_next"][c]))
    return gaps


def measure_daps(prior, name: str) -> dict[str, float]:
    f = fixture(name)
    operator = operator_of(f)
    chain = Schedule.linear()
    gaps = {"x0_hat": 0.0, "x0 after Langevin": 0.0, "x_next (VE) / (1 + max |x_next|)": 0.0}
    for c in range(int(f["n_cases"])):
        levels = two_levels(chain, int(f["sigma_timestep"][c]), int(f["sigma_next_timestep"][c]))
        assert levels.sigmas()[-1].item() == pytest.approx(float(f["sigma"][c]), rel=1e-6)
        ab, ab_next = float(levels.alphas_cumprod[-1]), float(levels.alphas_cumprod[0])
        common = dict(
            levels=levels,
            latent=math.sqrt(ab) * f["x_t"][c],  # the fixture's state is on the VE scale
            ode_steps=int(f["ode_steps"]),
            ode_sigma_min=float(f["ode_sigma_min"]),
            langevin_steps=int(f["langevin_steps"]),
            tau=float(f["tau_ref"]),  # the reference's own tau, unconverted
        )
        stop = First()
        draws = [*f["langevin_noise"][c], f["renoise_noise"][c]]
        out = daps(prior, operator, f["y"], rng=replay(2, *draws), step_size=float(f["lr"]), callback=stop, **common)
        _update(gaps, "x0 after Langevin", gap(stop.steps[0].x0, f["expected_x0_langevin"][c]))
        want = f["expected_x_next"][c]
        rel = gap(out.x / math.sqrt(ab_next), want) / (1 + want.abs().max().item())
        _update(gaps, "x_next (VE) / (1 + max |x_next|)", rel)
        # with a zero step size the Langevin chain stays at the ODE's estimate: x0_hat itself
        stop = First()
        zeros = [torch.zeros_like(f["renoise_noise"][c])] * (int(f["langevin_steps"]) + 1)
        daps(prior, operator, f["y"], rng=replay(2, *zeros), step_size=0.0, callback=stop, **common)
        _update(gaps, "x0_hat", gap(stop.steps[0].x0, f["expected_x0_hat"][c]))
    return gaps


def measure_diffpir(prior, name: str) -> dict[str, float]:
    """The exact data step does not amplify its input's error (its weight on x0_hat is rho / (|K|^2 + rho) <= 1),
    so x0_data carries x0_hat's float32 rounding, magnified at the top level like x0_hat's."""
    f = fixture(name)
    operator = operator_of(f)
    chain = Schedule.linear()
    gaps = {"x0_hat (eps scale)": 0.0, "x0_data (eps scale)": 0.0, "x_next": 0.0}
    for c in range(int(f["n_cases"])):
        levels = two_levels(chain, int(f["t"][c]), int(f["t_next"][c]))
        common = dict(levels=levels, latent=f["x_t"][c], noise_mix=float(f["zeta"]), clip=True)
        scale = math.sqrt(float(f["alpha_bar"][c]))
        stop = First()
        out = diffpir(prior, operator, f["y"], rng=replay(2, f["zeta_noise"][c]), lambda_=1.0, callback=stop, **common)
        _update(gaps, "x0_data (eps scale)", gap(stop.steps[0].x0, f["expected_x0_data"][c]) * scale)
        _update(gaps, "x_next", gap(out.x, f["expected_x_next"][c]))
        stop = First()
        diffpir(prior, operator, f["y"], rng=replay(2, f["zeta_noise"][c]), lambda_=0.0, callback=stop, **common)
        _update(gaps, "x0_hat (eps scale)", gap(stop.steps[0].x0, f["expected_x0_hat"][c]) * scale)
    return gaps


def measure_reddiff(prior, name: str) -> dict[str, float]:
    f = fixture(name)
    operator = operator_of(f)
    ts = [int(t) for t in f["t"]]  # processing order, descending
    levels = Schedule.linear().respace([min(ts) - 1, *sorted(ts)])  # one more level: its step is never taken
    stop = First(n=len(ts))
    reddiff(
        prior,
        operator,
        f["y"],
        levels=levels,
        rng=replay(2, *f["noise"]),
        init=f["mu0"],
        step_size=float(f["lr"]),
        lambda_=float(f["lambda_"]),
        obs_weight=float(f["obs_weight"]),
        weighting=str(f["weighting"]),
        callback=stop,
    )
    return {f"mu after Adam step {s + 1}": gap(info.x, f["expected_mu"][s]) for s, info in enumerate(stop.steps)}


def measure_pigdm(prior, name: str) -> dict[str, float]:
    f = fixture(name)
    operator = operator_of(f)
    chain = Schedule.linear()
    gaps = {"x0_hat (eps scale)": 0.0, "x_next": 0.0}
    for c in range(int(f["n_cases"])):
        levels = two_levels(chain, int(f["t"][c]), int(f["t_next"][c]))
        stop = First()
        out = pigdm(
            prior,
            operator,
            f["y"],
            levels=levels,
            rng=replay(2),
            latent=f["x_t"][c],
            scale=float(f["scale"]),
            eta=float(f["eta"]),
            callback=stop,
        )
        scale = math.sqrt(float(f["alpha_bar"][c]))
        _update(gaps, "x0_hat (eps scale)", gap(stop.steps[0].x0, f["expected_x0_hat"][c]) * scale)
        _update(gaps, "x_next", gap(out.x, f["expected_x_next"][c]))
    return gaps


def _update(gaps: dict[str, float], key: str, value: float) -> None:
    gaps[key] = max(gaps[key], value)


MEASURE = {"dps": measure_dps, "daps": measure_daps, "diffpir": measure_diffpir, "reddiff": measure_reddiff}
MEASURE["pigdm"] = measure_pigdm
FILES = [
    "dps_inpaint",
    "dps_sr4",
    "daps_inpaint",
    "daps_sr4",
    "diffpir_inpaint",
    "diffpir_sr4",
    "diffpir_deblur",
    "reddiff_inpaint",
    "reddiff_sr4",
    "pigdm_inpaint",
    "pigdm_sr4",
]
#: the tolerance of each method's comparisons (a few times the gaps measured on 2026-11-27); RED-diff's Adam
#: divides each entry's gradient by its running RMS, which magnifies float32 rounding where gradients are tiny
TOLERANCE = {"dps": 3e-5, "daps": 5e-5, "diffpir": 5e-5, "reddiff": 5e-4, "pigdm": 2e-5}


@pytest.mark.parametrize("name", FILES)
def test_one_step_matches_the_reference(prior, name):
    method = name.split("_")[0]
    gaps = MEASURE[method](prior, name)
    assert gaps and max(gaps.values()) < TOLERANCE[method], gaps
