"""Methods as typed configs: options checked where they are parsed, a registry by CLI name, solve = the functional
forms, and the one rule that snaps a sigma to a chain level."""

import json
import math
from typing import Any

import pytest
import torch

from reguidance.conventions import BatchRNG, InputError
from reguidance.diffusion import Schedule, Variance
from reguidance.guidance import (
    DAPS,
    DPS,
    METHODS,
    DiffPIR,
    PiGDM,
    Problem,
    RedDiff,
    daps,
    diffpir,
    dps,
    method_config,
    options_of,
    pigdm,
    reddiff,
    solve,
)
from reguidance.guidance.solve import Functional
from reguidance.wrapper import ReGuidance, reguide

#: small non-default options of every method, and its functional form
CASES: dict[str, tuple[Functional, dict[str, Any], int]] = {
    "dps": (dps, {"step_size": 0.3, "sampler": "ddim", "eta": 0.5, "clip": True}, 8),
    "daps": (daps, {"ode_steps": 2, "langevin_steps": 5, "step_size": 1e-3, "tau": 0.1}, 4),
    "diffpir": (diffpir, {"lambda_": 2.0, "noise_mix": 0.3, "skip_type": "uniform"}, 8),
    "reddiff": (reddiff, {"step_size": 0.05, "lambda_": 0.5, "weighting": "sqrt"}, 8),
    "pigdm": (pigdm, {"scale": 0.5, "eta": 0.2}, 8),
}


def test_the_registry_names_every_method_by_its_cli_name():
    assert METHODS == {"dps": DPS, "daps": DAPS, "diffpir": DiffPIR, "reddiff": RedDiff, "pigdm": PiGDM}


def test_reference_budgets_and_linearity_are_the_papers():
    # DPS 1000 DDPM steps, DAPS 200 annealing levels, DiffPIR and PiGDM 100, RED-diff 50 (module docstrings)
    budgets = {name: cls.default_steps for name, cls in METHODS.items()}
    assert budgets == {"dps": 1000, "daps": 200, "diffpir": 100, "reddiff": 50, "pigdm": 100}
    assert [name for name, cls in METHODS.items() if cls.needs_linear] == ["diffpir", "pigdm"]


@pytest.mark.parametrize("name", list(CASES))
def test_method_config_round_trips_through_its_json_options(name):
    config = method_config(name, {"steps": 7, **CASES[name][1]})
    options = json.loads(json.dumps(options_of(config)))
    assert options["steps"] == 7
    assert method_config(name, options) == config


def test_an_int_given_for_a_float_option_is_the_same_config():
    config = method_config("dps", {"step_size": 1})
    assert isinstance(config, DPS) and isinstance(config.step_size, float) and config == DPS(step_size=1.0)


def test_an_unknown_method_is_refused_listing_the_known():
    with pytest.raises(InputError, match=r"unknown method 'dsp'.*dps, daps, diffpir, reddiff, pigdm"):
        method_config("dsp", {})


def test_an_unknown_option_is_refused_naming_it_and_listing_the_options():
    with pytest.raises(InputError, match=r"bogus.*step_size, sampler, eta, clip"):
        method_config("dps", {"bogus": 1})
    with pytest.raises(InputError, match="ode_steps"):  # an option of another method
        method_config("diffpir", {"ode_steps": 2})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("dps", {"steps": "x"}, "steps must be an integer"),
        ("dps", {"steps": 0}, "steps must be an integer >= 1"),
        ("dps", {"step_size": "fast"}, "step_size must be a number, got 'fast'"),
        ("dps", {"step_size": True}, "step_size must be a number, got True"),
        ("dps", {"sampler": "euler"}, "sampler must be one of 'ddpm', 'ddim'"),
        ("dps", {"clip": 1}, "clip must be True or False"),
        ("daps", {"ode_steps": 2.5}, "ode_steps must be an integer, got 2.5"),
        ("daps", {"tau": 0.0}, "tau must be > 0"),
        ("diffpir", {"noise_mix": 1.5}, "noise_mix must lie in"),
        ("reddiff", {"weighting": "log"}, "weighting must be one of"),
        ("pigdm", {"scale": -1.0}, "scale must be a finite number >= 0"),
    ],
)
def test_an_ill_typed_or_out_of_range_option_is_refused_naming_it(name, options, message):
    with pytest.raises(InputError, match=message):
        method_config(name, options)
    with pytest.raises(InputError, match=message):  # the same check when the config is built directly
        METHODS[name](**options)


@pytest.mark.parametrize("name", list(CASES))
def test_solve_equals_the_functional_form_bitwise(gmm_prior, gmm_problem, name):
    operator, _, y = gmm_problem
    function, options, steps = CASES[name]
    by_function = function(gmm_prior, operator, y, steps=steps, rng=BatchRNG.from_seed(5, 6), **options)
    by_solve = solve(
        method_config(name, options), Problem(gmm_prior, operator, y, BatchRNG.from_seed(5, 6)), steps=steps
    )
    with_steps = method_config(name, {"steps": steps, **options})
    by_config_steps = solve(with_steps, Problem(gmm_prior, operator, y, BatchRNG.from_seed(5, 6)))
    for other in (by_solve, by_config_steps):
        assert torch.equal(other.x, by_function.x) and other.nfe == by_function.nfe
        assert other.timesteps == by_function.timesteps


def test_a_functional_form_refuses_an_unknown_option_naming_it(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    with pytest.raises(InputError, match=r"unknown DPS option\(s\) bogus; dps has the options steps, step_size"):
        dps(gmm_prior, operator, y, steps=5, rng=BatchRNG.from_seed(0, 6), bogus=1)
    with pytest.raises(InputError, match="pass init= instead of latent="):
        reddiff(gmm_prior, operator, y, steps=5, rng=BatchRNG.from_seed(0, 6), latent=torch.zeros(6, 8))


def test_a_functional_form_is_named_after_its_method_and_lists_its_defaults():
    assert (dps.__name__, reddiff.__name__) == ("dps", "reddiff")
    assert dps.__doc__ is not None and reddiff.__doc__ is not None
    assert "``step_size=1.0``, ``sampler='ddpm'``, ``eta=0.0``, ``clip=False``" in dps.__doc__
    assert "(default 50)" in reddiff.__doc__ and "``init=None``" in reddiff.__doc__


def test_a_bad_problem_is_refused_before_any_network_evaluation(gmm_problem):
    class Counting:
        variance: Variance = "fixed_small"
        schedule = Schedule.linear()
        calls = 0

        signal_shape: tuple[int, ...] = (2,)

        def predict(self, x_t, t):
            Counting.calls += 1
            raise AssertionError("the network ran")

    operator, _, y = gmm_problem
    with pytest.raises(InputError, match="rng holds 2 generators but measurement has 6"):
        solve(DPS(), Problem(Counting(), operator, y, BatchRNG.from_seed(0, 2)), steps=5)
    with pytest.raises(InputError, match="steps or levels"):
        solve(DPS(steps=5), Problem(Counting(), operator, y, BatchRNG.from_seed(0, 6)), levels=Schedule.linear())
    assert Counting.calls == 0


def test_solve_refuses_what_is_not_a_method(gmm_prior, gmm_problem):
    operator, _, y = gmm_problem
    problem = Problem(gmm_prior, operator, y, BatchRNG.from_seed(0, 6))
    with pytest.raises(InputError, match="method config"):
        solve({"step_size": 1.0}, problem)  # type: ignore[arg-type]  # options instead of a config, on purpose


def test_reguide_refuses_an_unknown_option(gmm_prior, gmm_problem):
    operator, truth, y = gmm_problem
    with pytest.raises(InputError, match=r"unknown ReGuidance option.*stepsize"):
        reguide(truth, y, operator, gmm_prior, stepsize=0.2)


def test_a_sigma_snaps_to_the_nearest_level_in_log_sigma():
    chain = Schedule.linear()
    sigmas = chain.sigmas().tolist()
    assert [chain.nearest(sigmas[k]) for k in (0, 10, 500, 999)] == [0, 10, 500, 999]
    # between two levels the boundary is their geometric mean, which lies below the arithmetic one
    k = 3
    geometric = math.sqrt(sigmas[k] * sigmas[k + 1])
    assert chain.nearest(geometric * (1 + 1e-6)) == k + 1
    assert chain.nearest(geometric * (1 - 1e-6)) == k
    assert chain.nearest(1e-9) == 0 and chain.nearest(1e9) == 999
    with pytest.raises(ValueError, match="sigma"):
        chain.nearest(0.0)


class _Recording:
    """A prior that records, per network call, whether its input asks for a gradient (a forward kept for a backward
    pass) or not (a forward alone)."""

    def __init__(self, prior) -> None:
        self.prior = prior
        self.calls: list[bool] = []
        self.variance, self.schedule, self.signal_shape = prior.variance, prior.schedule, prior.signal_shape

    def predict(self, x_t, t):
        self.calls.append(bool(x_t.requires_grad and torch.is_grad_enabled()))
        return self.prior.predict(x_t, t)


@pytest.mark.parametrize(
    "config",
    [
        DPS(steps=5),
        DPS(steps=7, guidance_every=3),
        DPS(steps=5, guidance="tweedie"),
        DAPS(steps=3, ode_steps=2, langevin_steps=2),
        DiffPIR(steps=4),
        RedDiff(steps=5),
        PiGDM(steps=4),
        ReGuidance().replace(inversion_steps=3, dps_steps=4),
        ReGuidance().replace(inversion_steps=3, dps_steps=4, inversion_method="heun"),
        ReGuidance().replace(inversion_steps=3, dps_steps=4, start="renoise"),
        ReGuidance().replace(inversion_steps=3, dps_steps=6, guidance_every=2, guidance="tweedie"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_a_configs_cost_is_the_forward_and_backward_passes_its_run_makes(gmm_prior, gmm_problem, config) -> None:
    operator, _, y = gmm_problem
    prior = _Recording(gmm_prior)
    problem = Problem(prior, operator, y, BatchRNG.from_seed(0, y.shape[0]))
    candidate = operator.pinv(y).clamp(-1, 1) if isinstance(config, ReGuidance) else None
    out = solve(config, problem, candidate=candidate)
    cost = config.cost()
    assert (cost.fwd, cost.fwd_grad) == (prior.calls.count(False), prior.calls.count(True))
    assert out.nfe == cost.nfe
