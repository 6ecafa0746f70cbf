"""The nonlinear task: a saturating sensor after a blur, ``y = tanh(k B x) + sigma_y n``, its spec, its gradient
against the hand derivation, and the methods that refuse it by the operator's class."""

import pytest
import torch

from reguidance.app.methods import make_method
from reguidance.conventions import BatchRNG, InputError
from reguidance.guidance import Problem, solve
from reguidance.operators import GaussianBlur, LinearOperator, Operator, Saturation
from reguidance.tasks import parse_task
from tiny_models import tiny_adm_prior


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def test_satblur_is_the_deblur_kernel_then_tanh_of_gain_two():
    task = parse_task("satblur")
    operator = task.operator([0, 1, 2], seed=0, x_shape=(1, 32, 32))
    assert isinstance(operator, Saturation) and not isinstance(operator, LinearOperator)
    x = images()
    blur = GaussianBlur((1, 32, 32), 13, blur_sigma=2.0)
    torch.testing.assert_close(operator(x), torch.tanh(2.0 * blur(x)))
    assert operator.sigma_y == 0.05


def test_the_spec_names_blur_and_gain_and_defaults_the_gain_to_two():
    assert parse_task("sat:gauss,std=2,k=3").name == "sat:gauss,std=2,size=13,k=3"
    assert parse_task("sat:gauss,std=1.5").gain == 2.0
    assert parse_task("sat:gauss,std=2,size=9,k=1,sigma_y=0.1").sigma_y == 0.1


@pytest.mark.parametrize("spec", ["sat:gauss", "sat:gauss,std=2,k=0", "sat:motion,length=3", "sat:gauss,std=2,q=1"])
def test_a_bad_saturation_spec_is_refused_naming_it(spec):
    with pytest.raises(InputError, match="sat:"):
        parse_task(spec)


def test_linear_tasks_keep_their_identity_without_a_gain_entry():
    assert "gain" not in parse_task("deblur").definition()
    assert parse_task("satblur").definition()["gain"] == 2.0


def test_the_data_gradient_is_the_hand_derived_chain_rule():
    # d/dx ||tanh(k B x) - y||^2 = 2 k B^T [(1 - tanh^2(k B x)) (tanh(k B x) - y)], B^T the blur's exact adjoint
    blur = GaussianBlur((1, 32, 32), 7, blur_sigma=1.0)
    k = 3.0
    operator = Saturation(blur, k, sigma_y=0.1)
    x, y = images(2, 1), images(2, 2) * 0.9
    s = torch.tanh(k * blur(x))
    expected = 2 * k * blur.adjoint((1 - s**2) * (s - y))
    torch.testing.assert_close(operator.data_gradient(x, y), expected)


def test_a_small_gain_is_about_the_linear_blur_scaled_by_the_gain():
    blur = GaussianBlur((1, 32, 32), 7, blur_sigma=1.0)
    x = images(2, 3)
    out = Saturation(blur, 1e-3, 0.0)(x)
    torch.testing.assert_close(out / 1e-3, blur(x), atol=1e-6, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_prior():
    return tiny_adm_prior()


@pytest.mark.parametrize("method", ["pinv", "diffpir", "pigdm", "reddiff"])
def test_methods_that_need_a_linear_operator_refuse_the_saturating_sensor(tiny_prior, method):
    operator = parse_task("satblur").operator([0, 1], seed=0, x_shape=(1, 32, 32))
    y = operator.measure(images(2).float(), BatchRNG.from_seed(0, 2))
    with pytest.raises(InputError, match=r"linear|LinearOperator|pinv"):
        config = make_method(method, {} if method == "pinv" else {"steps": 2})
        solve(config, Problem(tiny_prior, operator, y, BatchRNG.from_seed(1, 2)))


@pytest.mark.parametrize("method", ["dps", "daps"])
def test_dps_and_daps_take_the_saturating_sensor(tiny_prior, method):
    operator: Operator = parse_task("satblur").operator([0, 1], seed=0, x_shape=(1, 32, 32))
    y = operator.measure(images(2).float(), BatchRNG.from_seed(0, 2))
    options = {"steps": 2} if method == "dps" else {"steps": 2, "ode_steps": 1, "langevin_steps": 2}
    out = solve(make_method(method, options), Problem(tiny_prior, operator, y, BatchRNG.from_seed(1, 2)))
    assert out.x.shape == (2, 1, 32, 32) and out.nfe > 0


def test_the_methods_that_refuse_a_nonlinear_operator_are_named_by_their_class():
    from reguidance.app.methods import METHODS, needs_linear

    assert {m for m in METHODS if needs_linear(m)} == {"pinv", "diffpir", "pigdm", "reddiff"}
    assert parse_task("satblur").linear is False and parse_task("deblur").linear is True


def test_a_benchmark_of_a_nonlinear_task_with_a_linear_only_method_is_refused_before_it_runs():
    from reguidance.bench.runner import BenchSpec

    BenchSpec(["satblur"], ["dps", "daps"], range(2)).check()
    with pytest.raises(InputError, match="diffpir needs a linear operator but task satblur is nonlinear"):
        BenchSpec(["sr4", "satblur"], ["dps", "diffpir"], range(2)).check()
