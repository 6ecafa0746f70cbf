"""Method options are checked against the method before any file is written (``bench`` and ``restore``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import reguidance.bench.defaults as defaults
from reguidance.app.methods import make_method
from reguidance.bench.defaults import method_for
from reguidance.bench.runner import BenchSpec, run_bench
from reguidance.cli import main
from reguidance.conventions import InputError
from reguidance.tasks import get_task


def test_an_unknown_option_is_refused_naming_it_and_the_options_that_exist() -> None:
    with pytest.raises(InputError, match=r"unknown DPS option\(s\) bogus; dps has the options .*step_size"):
        make_method("dps", {"bogus": 1})


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("dps", {"steps": 2.5}),
        ("dps", {"step_size": "big"}),
        ("daps", {"ode_steps": True}),
        ("diffpir", {"skip_type": 3}),
    ],
)
def test_an_option_of_the_wrong_type_is_refused(method: str, options: dict[str, object]) -> None:
    with pytest.raises(InputError, match=f"option {next(iter(options))} must be"):
        make_method(method, options)


def test_pinv_takes_no_options() -> None:
    with pytest.raises(InputError, match=r"pinv has the options $"):
        make_method("pinv", {"steps": 3})


def test_the_protocol_tables_hold_only_options_the_methods_take() -> None:
    for protocol in defaults.PROTOCOLS:
        for prior in ("mnist", "fashion_mnist"):
            for task in ("box20", "box20c", "sr4", "sr8", "deblur"):
                for method in ("pinv", "dps", "daps", "diffpir", "reddiff", "pigdm"):
                    method_for(get_task(task), method, protocol, prior=prior)


def test_a_user_override_beats_the_table_and_is_checked() -> None:
    assert method_for(get_task("sr8"), "dps", "cpu", overrides={"steps": 7}).options()["steps"] == 7
    with pytest.raises(InputError, match="bogus"):
        method_for(get_task("sr8"), "dps", "cpu", overrides={"bogus": 1})


def test_run_bench_refuses_an_unknown_option_before_writing(tmp_path) -> None:
    spec = BenchSpec(["box20"], ["dps"], range(2), method_options={"dps": {"bogus": 1}})
    with pytest.raises(InputError, match="bogus"):
        spec.check()
    out = tmp_path / "run"
    prior = SimpleNamespace(signal_shape=(1, 32, 32))  # nothing but its shape is read before the check
    with pytest.raises(InputError, match="bogus"):
        run_bench(prior, torch.zeros(2, 1, 32, 32), torch.zeros(2, dtype=torch.int64), spec, out)  # type: ignore[arg-type]
    assert not out.exists()


def test_the_cli_refuses_an_unknown_table_option_in_one_line_before_writing(tmp_path, capsys, monkeypatch) -> None:
    """A defaults table holding an option the method does not take (e.g. a hand-edited tuned table)."""
    real = defaults.tuned_table
    hacked = {"entries": [{"task": "sr8", "method": "dps", "method_options": {"bogus": 1}, "reguidance": {}}]}
    monkeypatch.setattr(defaults, "tuned_table", lambda *a, **k: hacked if a[0] == "reference" else real(*a, **k))
    out = tmp_path / "run"
    assert main(["bench", "--tasks", "sr8", "--methods", "dps", "--ids", "0:2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err and err.startswith("error: ")
    assert not out.exists()


def test_restore_refuses_an_unknown_option_before_writing(tmp_path) -> None:
    from reguidance.app.restore import RestoreRequest, plan_restore
    from reguidance.guidance import DPS

    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.new("L", (32, 32), 128).save(image)
    with pytest.raises(InputError, match="bogus"):
        plan_restore(RestoreRequest("sr4", tmp_path / "out", image=image, method="dps", wrapper={"bogus": 1}))
    assert not (tmp_path / "out").exists()
    plan = plan_restore(RestoreRequest("sr4", tmp_path / "o", image=image, method="dps", steps=3))
    assert plan.method == DPS(steps=3, clip=True)
