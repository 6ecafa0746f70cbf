"""Method options are checked against the method before any file is written (``bench`` and ``restore``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import reguidance.bench.defaults as defaults
from reguidance.app.methods import check_method_options
from reguidance.bench.defaults import resolve_options
from reguidance.bench.runner import BenchSpec, run_bench
from reguidance.cli import main
from reguidance.conventions import InputError


def test_an_unknown_option_is_refused_naming_it_and_the_options_that_exist() -> None:
    with pytest.raises(InputError, match=r"method dps has no option 'bogus'; it takes .*step_size"):
        check_method_options("dps", {"bogus": 1})


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
        check_method_options(method, options)


def test_pinv_takes_no_options() -> None:
    with pytest.raises(InputError, match="it takes no options"):
        check_method_options("pinv", {"steps": 3})


def test_the_protocol_tables_hold_only_options_the_methods_take() -> None:
    for protocol in defaults.PROTOCOLS:
        for prior in ("mnist", "fashion_mnist"):
            for task in ("box20", "box20c", "sr4", "sr8", "deblur"):
                for method in ("pinv", "dps", "daps", "diffpir", "reddiff", "pigdm"):
                    resolve_options(task, method, protocol, prior)


def test_a_user_override_beats_the_table_and_is_checked() -> None:
    assert resolve_options("sr8", "dps", "cpu", "mnist", {"dps": {"steps": 7}})["steps"] == 7
    with pytest.raises(InputError, match="bogus"):
        resolve_options("sr8", "dps", "cpu", "mnist", {"dps": {"bogus": 1}})


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
    real = defaults.method_options
    monkeypatch.setattr(defaults, "method_options", lambda *a, **k: {**real(*a, **k), "bogus": 1})
    out = tmp_path / "run"
    assert main(["bench", "--tasks", "sr8", "--methods", "dps", "--ids", "0:2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err and err.startswith("error: ")
    assert not out.exists()


def test_restore_refuses_an_unknown_option_before_writing(tmp_path) -> None:
    from reguidance.app.restore import RestoreRequest, plan_restore, restore

    (tmp_path / "in").mkdir()
    with pytest.raises(InputError, match="bogus"):
        restore(
            SimpleNamespace(signal_shape=(1, 32, 32)),  # type: ignore[arg-type]
            "sr4",
            tmp_path / "out",
            images=tmp_path / "in",
            method="dps",
            method_options={"bogus": 1},
        )
    assert not (tmp_path / "out").exists()
    image = tmp_path / "in" / "a.png"
    Image.new("L", (32, 32), 128).save(image)
    plan = plan_restore(RestoreRequest("sr4", tmp_path / "o", image=image, method="dps", steps=3))
    assert plan.method_options == {"steps": 3}
