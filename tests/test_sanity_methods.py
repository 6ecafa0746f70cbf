"""The sanity rows: the mean training image and the training image whose measurement best explains y, as methods
the runner treats like any candidate (options, identity, variants)."""

import pytest
import torch

from reguidance.app.methods import Retrieval, make_method, method_class, retrieve
from reguidance.bench.runner import BenchSpec
from reguidance.conventions import BatchRNG, InputError
from reguidance.operators import Inpainting, SuperResolution
from reguidance.tasks import parse_task


def train_set(n: int = 40) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1


def brute_force(operator, y, train):
    # one image and one measurement at a time, nothing batched
    out = []
    for i in range(y.shape[0]):
        op = operator.select([i]) if operator.batch_size is not None else operator
        d = [float(((op(train[j : j + 1]) - y[i : i + 1]) ** 2).sum()) for j in range(train.shape[0])]
        out.append(train[min(range(len(d)), key=d.__getitem__)])
    return torch.stack(out)


def test_retrieval_finds_the_training_image_a_noiseless_measurement_came_from():
    train = train_set()
    operator = SuperResolution((1, 32, 32), 4)
    picked = [5, 17, 33]
    y = operator(train[picked])
    torch.testing.assert_close(retrieve(operator, y, train, chunk=7), train[picked], rtol=0, atol=0)


def test_retrieval_with_per_image_masks_matches_a_one_by_one_search():
    train = train_set()
    operator = Inpainting.random_box((1, 32, 32), 20, BatchRNG.from_seed(0, 3), sigma_y=0.3)
    y = operator.measure(train_set(3) * 0.5, BatchRNG.from_seed(1, 3))
    torch.testing.assert_close(retrieve(operator, y, train, chunk=16), brute_force(operator, y, train))


def test_retrieval_takes_a_nonlinear_operator():
    train = train_set()
    operator = parse_task("satblur").operator([0, 1], seed=0, x_shape=(1, 32, 32))
    y = operator(train[[3, 8]])
    torch.testing.assert_close(retrieve(operator, y, train), train[[3, 8]], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["mean", "retrieval"])
def test_a_sanity_method_without_a_training_dataset_is_refused(method):
    with pytest.raises(InputError, match="dataset must be one of"):
        make_method(method)
    with pytest.raises(InputError, match="dataset must be one of"):
        make_method(method, {"dataset": "cifar"})


def test_sanity_methods_have_no_budget_and_no_more_ablation():
    budgets = {name: method_class(name).budget_option for name in ("mean", "retrieval", "pinv", "dps")}
    assert budgets == {"mean": None, "retrieval": None, "pinv": None, "dps": "steps"}
    spec = BenchSpec(
        ["sr4"], ["mean", "retrieval", "dps"], range(2), ablations=True, context={"dataset": "mnist"}, protocol="cpu"
    )
    assert spec.variants("sr4", "retrieval") == ("candidate", "reguidance", "renoise", "fresh")
    assert spec.variants("sr4", "dps")[-1] == "more"  # DPS 50 steps on a 1000-level chain: room for more


def test_no_more_ablation_for_a_method_that_already_takes_every_level_of_the_chain():
    # the reference budgets: DPS 1000 steps (every level of the 1000-level chain), DAPS 200 annealing steps
    spec = BenchSpec(["sr8"], ["dps", "daps"], range(2), ablations=True, protocol="reference")
    assert spec.method("sr8", "dps").options()["steps"] == 1000 and spec.method("sr8", "daps").options()["steps"] == 200
    assert spec.variants("sr8", "dps") == ("candidate", "reguidance", "renoise", "fresh")
    assert spec.variants("sr8", "daps")[-1] == "more"
    assert spec.variants("sr8", "dps", chain=1001)[-1] == "more"  # a longer chain leaves room


def test_more_is_scaled_by_the_wrappers_evaluations_and_capped_at_the_chain():
    from reguidance.app.methods import scaled_budget
    from reguidance.guidance import DAPS, DPS

    # 50 steps spent 50 NFE; the wrapper added 30: 50 * 80 / 50 = 80 steps
    assert scaled_budget(DPS(steps=50, step_size=1.0), 50, 30) == DPS(steps=80, step_size=1.0)
    # 900 steps + 200 extra would be 1100: capped at the chain's 1000 levels
    assert scaled_budget(DPS(steps=900), 900, 200, limit=1000) == DPS(steps=1000)
    # DAPS spends 5 NFE per annealing step: 200 steps, 1000 NFE, + 200 NFE -> 240 steps
    assert scaled_budget(DAPS(steps=200), 1000, 200, limit=1000) == DAPS(steps=240)


def test_the_runner_gives_sanity_methods_the_runs_dataset_and_it_enters_the_identity():
    mnist = BenchSpec(["sr4"], ["retrieval"], range(2), context={"dataset": "mnist"})
    fashion = BenchSpec(["sr4"], ["retrieval"], range(2), context={"dataset": "fashion_mnist"})
    assert mnist.method("sr4", "retrieval") == Retrieval(dataset="mnist")
    assert mnist.identity("sr4", "retrieval") != fashion.identity("sr4", "retrieval")
    with pytest.raises(InputError, match="dataset must be one of"):
        BenchSpec(["sr4"], ["mean"], range(2), context={"dataset": "folder"}).check()


def test_retrieval_with_a_shared_operator_and_noise_matches_a_one_by_one_search():
    train = train_set()
    operator = SuperResolution((1, 32, 32), 8, sigma_y=0.3)
    y = operator.measure(train_set(4) * 0.5, BatchRNG.from_seed(2, 4))
    torch.testing.assert_close(retrieve(operator, y, train, chunk=9), brute_force(operator, y, train))
