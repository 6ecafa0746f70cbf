"""Every way a prior can be given wrongly is refused the same way: ``load_prior`` raises ``InputError`` naming what
was given and what was expected, and the command line prints exactly that as one line on stderr, exits with 2 and
writes nothing.

Each case builds its bad input in a fresh folder (nothing is downloaded); the command used is ``sample`` with a
two-image, one-step budget, which would write ``--out`` if the prior loaded.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from safetensors.torch import load_file, save_file

from reguidance.cli import main
from reguidance.conventions import ASSETS_DIR, InputError
from reguidance.priors import PriorNotFoundError, load_prior, zoo
from reguidance.priors.zoo import MODELS


class Case(NamedTuple):
    """``make(folder)`` -> (``--prior`` value, ``--prior-config`` file or None); ``says``: regexes the message
    must match (each); ``never``: a phrase it must not hold."""

    make: Callable[[Path], tuple[str, Path | None]]
    says: tuple[str, ...]
    never: str | None = None


class _Code:
    """A pickled object that would call ``print`` when unpickled without ``weights_only``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this must never run",))


def _code_pt(folder: Path) -> tuple[str, None]:
    path = folder / "code.pt"
    torch.save({"time_embed.0.weight": torch.zeros(2), "payload": _Code()}, path)
    return str(path), None


def _no_suffix(folder: Path) -> tuple[str, None]:
    path = folder / "hostname"  # a plain file without a suffix, as /etc/hostname
    path.write_text("box\n")
    return str(path), None


def _config(text: dict[str, Any]) -> Callable[[Path], tuple[str, Path]]:
    def make(folder: Path) -> tuple[str, Path]:
        path = folder / "flags.json"
        path.write_text(json.dumps(text))
        return "mnist", path

    return make


def _bin_diffusers_folder(folder: Path) -> tuple[str, None]:
    root = folder / "ddpm"
    (root / "unet").mkdir(parents=True)
    (root / "scheduler").mkdir()
    (root / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 32}))
    (root / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": [0.0]}))
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler"}))
    return str(root), None


def _non_finite(folder: Path) -> tuple[str, None]:
    sd = load_file(str(ASSETS_DIR / str(MODELS["mnist"].asset)))
    sd["out.2.bias"] = torch.full_like(sd["out.2.bias"], float("nan"))  # one output channel: one value
    path = folder / "nan.safetensors"
    save_file(sd, str(path))
    return str(path), None


def _plain_folder(folder: Path) -> tuple[str, None]:
    (folder / "weights").mkdir()
    return str(folder / "weights"), None


CASES: dict[str, Case] = {
    "unknown name": Case(lambda f: ("nosuch", None), (r"unknown model name 'nosuch'", r"known: .*mnist")),
    "file without a suffix": Case(_no_suffix, (r"hostname \(a file\) has no suffix", r"expected a known model name")),
    "empty name": Case(lambda f: ("", None), (r"prior '' is empty", r"expected a model name"), never="directory"),
    "missing file": Case(lambda f: (str(f / "absent.pt"), None), (r"absent\.pt does not exist",)),
    "missing folder": Case(lambda f: (str(f / "ddpm-256"), None), (r"ddpm-256 does not exist; expected",)),
    "plain folder": Case(_plain_folder, (r"weights is a folder but not a diffusers model folder",)),
    "pickled code": Case(_code_pt, (r"code\.pt", r"Unsupported global: GLOBAL .*print", r"never pickled code")),
    "non-finite weights": Case(_non_finite, (r"nan\.safetensors", r"hold 1 NaN or Inf values")),
    "config value of the wrong type": Case(
        _config({"model_channels": "x"}), (r"model_channels='x'", r"flags\.json", r"must be an integer >= 1")
    ),
    "config value out of range": Case(
        _config({"model_channels": -4}), (r"model_channels=-4", r"flags\.json", r"must be an integer >= 1")
    ),
    "flag value of the wrong type": Case(
        _config({"num_heads": "four"}), (r"num_heads='four'", r"flags\.json", r"-1 \(unset\) or an integer >= 1")
    ),
    "diffusers folder of pickles": Case(
        _bin_diffusers_folder,
        (r"diffusion_pytorch_model\.bin: pickles are not read", r"save_pretrained\(.*safe_serialization=True\)"),
    ),
}


@pytest.fixture(autouse=True)
def isolated_checkpoint_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV_CHECKPOINTS, raising=False)
    monkeypatch.setattr(zoo, "DEFAULT_CACHE", tmp_path / "cache")


def _check_message(message: str, case: Case) -> None:
    for pattern in case.says:
        assert re.search(pattern, message), (pattern, message)
    if case.never is not None:
        assert case.never not in message, message


@pytest.mark.parametrize("name", list(CASES))
def test_load_prior_raises_an_input_error_naming_the_input(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    prior, config = case.make(tmp_path)
    with pytest.raises(InputError) as info:
        load_prior(prior, config=config)
    _check_message(str(info.value), case)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("name", list(CASES))
def test_the_cli_prints_one_line_exits_2_and_writes_nothing(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    prior, config = case.make(tmp_path)
    out = tmp_path / "out"
    args = ["sample", "--prior", prior, "--dataset", "mnist", "--n", "2", "--steps", "1", "--out", str(out)]
    assert main([*args, *(["--prior-config", str(config)] if config is not None else [])]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err  # no warning before it, no traceback
    flag = "--prior-config" if config is not None else "--prior"
    assert flag in lines[0]
    _check_message(lines[0], case)
    assert "this must never run" not in captured.out
    assert not out.exists()


def test_a_missing_file_is_both_an_input_error_and_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(PriorNotFoundError) as info:
        load_prior(tmp_path / "absent.pt")
    assert isinstance(info.value, InputError) and isinstance(info.value, FileNotFoundError)


def test_models_lists_the_folders_searched_for_an_absent_checkpoint_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(zoo.ENV_CHECKPOINTS, str(tmp_path / "env"))
    assert main(["models", "--checkpoint-dir", str(tmp_path / "given")]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("ffhq_10m "))
    assert "drive.google.com" in lines[at]
    order = [str(tmp_path / "given"), str(tmp_path / "env"), str(tmp_path / "cache")]
    assert lines[at + 1].strip() == f"as ffhq_10m.pt into one of (searched in this order): {', '.join(order)}"
    embedded = next(line for line in lines if line.startswith("mnist "))
    assert "searched" not in embedded and str(ASSETS_DIR) in embedded
