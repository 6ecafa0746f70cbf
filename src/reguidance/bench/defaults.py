"""Per-(task, method) defaults of the benchmark under two budgets ("protocols").

* ``reference``: every baseline at its paper's budget, which is its config's ``default_steps``
  (:mod:`reguidance.guidance`: the one place the budgets are written; at the time of writing DPS 1000 DDPM steps,
  DAPS 200 annealing steps with its config's 5 ODE x 100 Langevin steps, DiffPIR and PiGDM 100, RED-diff 50;
  the one exception, written here, is DiffPIR's noiseless-inpainting config: 20 steps on the box tasks), the
  reference configs' step sizes (DPS ``step_size`` (zeta) 0.5 as in its box-inpainting configs and 0.3 as in
  its super-resolution and deblurring configs; DiffPIR ``noise_mix`` (zeta) 0.25 for super-resolution, 0.1 for
  deblurring, 1.0 for inpainting) and the wrapper's testbed defaults
  (:class:`reguidance.wrapper.ReGuidanceConfig`, chosen by ``reguidance theory-sweep``) with ``x0_hat`` clipping.
  These values are *not tuned* on images. This is the primary study's table (``scripts/study.sh``).
* ``cpu``: *starved* candidates (the study's second table, labelled as such), reduced budgets that fit the whole
  benchmark (7 tasks x 6 methods x 200 images x 2 priors) into about an hour and a half on 2 CPU cores: DPS 50
  steps, DAPS 20 x 2 x 50, DiffPIR 20, RED-diff 30, PiGDM 20, and the wrapper with a 10-step inversion and 20
  DPS steps. Its step sizes (DPS ``step_size``) and wrapper options
  (``step_size``, ``t_end``) were chosen per (task, method) on *validation* images by ``reguidance tune-defaults``
  (see :mod:`.tune`), which writes ``assets/bench/tuned_cpu_<prior>.json`` (one table per embedded prior, each
  tuned on its own validation split); the file records the command that made it, the grids and where each choice
  sits in them.

Precedence, lowest first: reference step sizes, the protocol's budget, the tuned table.

A tuned table made elsewhere (``reguidance tune-defaults --write FILE``, e.g. a sweep of a few (task, method) pairs
with ``--ablations``) replaces the package's for one run: every function here takes it as ``table`` (its path), and
``reguidance bench --tuned FILE`` passes it; its protocol and prior must be the run's, and it must hold every
(task, method) the run asks for (:func:`check_table`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..app.methods import SANITY, check_method_options
from ..conventions import ASSETS_DIR, InputError
from ..guidance.registry import METHODS as SAMPLERS
from ..io.files import read_json_object
from ..wrapper import ReGuidanceConfig

if TYPE_CHECKING:
    from .records import Record

__all__ = [
    "PROTOCOLS",
    "check_table",
    "is_tuned",
    "method_options",
    "reguidance_config",
    "resolve_options",
    "tuned_path",
    "tuned_table",
    "variant_options",
]

PROTOCOLS = ("reference", "cpu")

#: methods a tuned table has no entry for: the sanity rows and restorations read from a folder
_UNTUNED = (*SANITY, "folder")

_BOX = ("box16", "box20", "box16c", "box20c")

_SR = ("sr4", "sr8")

#: step sizes from the public reference configs (used by every protocol unless the tuned table overrides them):
#: DPS ``configs/{inpainting,super_resolution,gaussian_deblur}_config.yaml`` (``scale``), DiffPIR
#: ``configs/{inpaint,sisr,deblur}.yaml`` (``zeta``, here ``noise_mix``)
_REFERENCE_STEP: dict[tuple[str, str], dict[str, object]] = {
    **{(t, "dps"): {"step_size": 0.5} for t in _BOX},
    **{(t, "dps"): {"step_size": 0.3} for t in (*_SR, "deblur")},
    **{(t, "diffpir"): {"noise_mix": 1.0} for t in _BOX},
    **{(t, "diffpir"): {"noise_mix": 0.25} for t in _SR},
    ("deblur", "diffpir"): {"noise_mix": 0.1},
}

#: DiffPIR's reference config for noiseless inpainting (``configs/inpaint.yaml``) runs 20 steps, not its 100
_DIFFPIR_INPAINTING_STEPS = 20

#: per-protocol budgets: network-evaluation counts of each method and of the wrapper
_BUDGET: dict[str, dict[str, dict[str, object]]] = {
    "reference": {name: {"steps": config.default_steps} for name, config in SAMPLERS.items()},
    "cpu": {
        "dps": {"steps": 50},
        "daps": {"steps": 20, "ode_steps": 2, "langevin_steps": 50},
        "diffpir": {"steps": 20},
        "reddiff": {"steps": 30},
        "pigdm": {"steps": 20},
    },
}
_WRAPPER_BUDGET: dict[str, dict[str, object]] = {
    "reference": {},
    "cpu": {"inversion_steps": 10, "dps_steps": 20},
}


def _check(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    return protocol


def tuned_path(protocol: str, prior: str = "mnist"):
    """Where the tuned table of ``protocol`` for the embedded prior ``prior`` lives inside the package
    (``assets/bench/tuned_<protocol>_<prior>.json``): each prior is tuned on its own validation split."""
    return ASSETS_DIR / "bench" / f"tuned_{_check(protocol)}_{prior}.json"


@cache
def tuned_table(protocol: str, prior: str = "mnist", table: str | None = None) -> Record:
    """The tuned table of ``protocol`` for ``prior`` (``{"command": str, "entries": [...], ...}``): the file
    ``table`` when given (``InputError`` when it is not a table of this protocol and prior), else the package's, or
    ``{}`` if that prior was never tuned under that protocol (any prior but the embedded ones: the untuned defaults
    apply)."""
    if table is not None:
        if not Path(table).is_file():
            raise InputError(f"--tuned {table}: no such file (write one with reguidance tune-defaults --write)")
        read = read_json_object(table, ("protocol", "prior", "entries", "command"))
        for key, want in (("protocol", _check(protocol)), ("prior", prior)):
            if read[key] != want:
                raise InputError(
                    f"--tuned {table}: a table tuned for {key} {read[key]!r}, and this run's {key} is {want!r}"
                )
        return read
    if "/" in prior or "\\" in prior:  # a checkpoint path has no table
        return {}
    path = tuned_path(protocol, prior)
    return json.loads(path.read_text()) if path.is_file() else {}


def is_tuned(protocol: str, prior: str = "mnist", table: str | None = None) -> bool:
    """Whether ``protocol``'s defaults for ``prior`` come from a validation sweep."""
    return bool(tuned_table(protocol, prior, table).get("entries"))


def _tuned(protocol: str, prior: str, task: str, method: str, table: str | None = None) -> Record:
    for entry in tuned_table(protocol, prior, table).get("entries", []):
        if entry["task"] == task and entry["method"] == method:
            return entry
    return {}


def check_table(table: str, protocol: str, prior: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse (``InputError``) a tuned table file ``table`` of another protocol or prior, or one without an entry
    for some (task, method) of ``pairs`` that has options to tune (the sanity methods have none): a run never
    falls back to untuned options for part of its pairs without saying so."""
    held = {(e["task"], e["method"]) for e in tuned_table(protocol, prior, table)["entries"]}
    names = [(t, m.split(":", 1)[0]) for t, m in pairs]
    missing = [f"{t}/{m}" for t, m in names if m not in _UNTUNED and (t, m) not in held]
    if missing:
        raise InputError(
            f"--tuned {table} has no entry for {', '.join(missing)}; it holds "
            f"{', '.join(sorted(f'{t}/{m}' for t, m in held)) or 'none'} (tune them with reguidance tune-defaults)"
        )


def method_options(
    task: str,
    method: str,
    protocol: str = "reference",
    *,
    prior: str = "mnist",
    tuned: bool = True,
    table: str | None = None,
) -> dict[str, object]:
    """Options of ``method`` on ``task`` under ``protocol`` for ``prior`` (empty for ``pinv`` or folders);
    ``tuned=False`` leaves the tuned table out (the sweep itself starts from there)."""
    name = method.split(":", 1)[0]
    entry = _tuned(protocol, prior, task, name, table) if tuned else {}
    budget = dict(_BUDGET[_check(protocol)].get(name, {}))
    if protocol == "reference" and name == "diffpir" and task in _BOX:
        budget["steps"] = _DIFFPIR_INPAINTING_STEPS
    return {**_REFERENCE_STEP.get((task, name), {}), **budget, **entry.get("method_options", {})}


def reguidance_config(
    task: str,
    method: str,
    protocol: str = "reference",
    *,
    prior: str = "mnist",
    tuned: bool = True,
    table: str | None = None,
) -> ReGuidanceConfig:
    """The wrapper's options on top of ``method`` for ``task`` under ``protocol`` for ``prior`` (clipping on for
    images)."""
    name = method.split(":", 1)[0]
    entry = _tuned(protocol, prior, task, name, table) if tuned else {}
    options: dict[str, Any] = {**_WRAPPER_BUDGET[_check(protocol)], **entry.get("reguidance", {})}
    return replace(ReGuidanceConfig(clip=True), **options)


def variant_options(
    task: str, method: str, protocol: str = "reference", *, prior: str = "mnist", table: str | None = None
) -> dict[str, ReGuidanceConfig | dict[str, object]]:
    """The ablations' own tuned options for ``method`` on ``task`` (``reguidance tune-defaults --ablations``, see
    :mod:`.tune`): ``renoise`` / ``fresh`` as a :class:`ReGuidanceConfig` (the protocol's wrapper budget, their tuned
    fields), ``more`` as the method's options (its budget and step size tuned at that budget). ``{}`` when the
    table holds none: every ablation then borrows the wrapper's and the method's (:func:`reguidance.app.batch.
    solve_batch`)."""
    entry = _tuned(protocol, prior, task, method.split(":", 1)[0], table)
    out: dict[str, ReGuidanceConfig | dict[str, object]] = {}
    for variant, chosen in entry.get("variants", {}).items():
        if variant == "more":
            out[variant] = check_method_options(method, chosen["method_options"])
        else:
            fields = {**_WRAPPER_BUDGET[_check(protocol)], **chosen["reguidance"]}
            out[variant] = replace(ReGuidanceConfig(clip=True), **fields)
    return out


def resolve_options(
    task: str,
    method: str,
    protocol: str = "reference",
    prior: str = "mnist",
    overrides: Mapping[str, Mapping[str, object]] | None = None,
    table: str | None = None,
) -> dict[str, object]:
    """The options ``method`` runs with on ``task``: :func:`method_options` under ``protocol`` for ``prior``, then
    the user's ``overrides`` of that method (``{method name: {option: value}}``, e.g. ``--steps``), checked against
    the options the method takes (:func:`reguidance.app.methods.check_method_options`: an unknown option or one of the
    wrong type is an ``InputError`` naming it). The one place a benchmark's method options are put together."""
    name = method.split(":", 1)[0]
    merged = {**method_options(task, method, protocol, prior=prior, table=table), **(overrides or {}).get(name, {})}
    return check_method_options(method, merged)
