"""The configs each (task, method) of the benchmark runs with, under two budgets ("protocols"), as typed objects.

Every per-method fact lives on the method's class (:class:`reguidance.guidance.solve.Method`: ``budget``,
``reference``, ``image_options``); this module only puts them together for one task, in one order, lowest first:

1. the method's ``image_options`` (``clip=True``: ``x0_hat`` is clipped to [-1, 1] for images);
2. its ``reference`` options for the task's family (:attr:`reguidance.tasks.Task.family`): the reference configs'
   step sizes (DPS ``step_size`` (zeta) 0.5 for inpainting, 0.3 for super-resolution and deblurring; DiffPIR
   ``noise_mix`` 1.0 / 0.25 / 0.1), applied under every protocol unless tuned;
3. its budget under the protocol (:meth:`~reguidance.guidance.solve.Method.budget`):

   * ``reference``: every baseline at its paper's budget (DPS 1000 DDPM steps, DAPS 200 annealing steps with 5 ODE
     x 100 Langevin steps, DiffPIR and PiGDM 100, except DiffPIR's noiseless-inpainting config, 20, RED-diff 50)
     and the wrapper's testbed defaults (:class:`reguidance.wrapper.ReGuidance`, chosen by ``reguidance
     theory-sweep``). These values are *not tuned* on images. The primary study's table (``scripts/study.sh``).
   * ``cpu``: *starved* candidates (the study's second table, labelled as such), reduced budgets that fit the whole
     benchmark into about an hour and a half on 2 CPU cores (DPS 50 steps, DAPS 20 x 2 x 50, DiffPIR 20, RED-diff
     30, PiGDM 20; the wrapper 10 inversion + 20 DPS steps);

4. the tuned table's choice for this (task, method), if any: ``assets/bench/tuned_<protocol>_<prior>.json``, one
   table per embedded prior, tuned on its own validation split by ``reguidance tune-defaults`` (:mod:`.tune`; the
   file records the command that made it, the grids and where each choice sits in them);
5. the run's own overrides (``--steps``, ``--inversion-steps``, ``--dps-steps``; the sanity methods' ``dataset``).

A tuned table made elsewhere (``reguidance tune-defaults --write FILE``) replaces the package's for one run: every
function here takes it as ``table`` (its path), and ``reguidance bench --tuned FILE`` passes it; its protocol and
prior must be the run's, and it must hold every (task, method) the run asks for (:func:`check_table`). Entries are
matched by task *definition* (a task's name is resolved when it is parsed, :func:`reguidance.tasks.parse_task`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..app.methods import SANITY, make_method, method_class
from ..conventions import ASSETS_DIR, InputError
from ..guidance.solve import Method
from ..io.files import read_json_object
from ..tasks import Task, get_task
from ..wrapper import ReGuidance

if TYPE_CHECKING:
    from .records import Record

__all__ = [
    "PROTOCOLS",
    "ablation_configs",
    "check_table",
    "is_tuned",
    "method_for",
    "tuned_path",
    "tuned_table",
    "wrapper_for",
]

PROTOCOLS = ("reference", "cpu")

#: methods a tuned table has no entry for: the sanity rows and candidates read from a folder
_UNTUNED = (*SANITY, "folder")


def _check(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    return protocol


def tuned_path(protocol: str, prior: str = "mnist") -> Path:
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


@cache
def _definition(name: str) -> str:
    return json.dumps(get_task(name).definition(), sort_keys=True)


def _same_task(a: str, b: Task) -> bool:
    return _definition(a) == json.dumps(b.definition(), sort_keys=True)


def _tuned(protocol: str, prior: str, task: Task, method: str, table: str | None = None) -> Record:
    for entry in tuned_table(protocol, prior, table).get("entries", []):
        if entry["method"] == method and _same_task(entry["task"], task):
            return entry
    return {}


def check_table(table: str, protocol: str, prior: str, pairs: Sequence[tuple[Task, str]]) -> None:
    """Refuse (``InputError``) a tuned table file ``table`` of another protocol or prior, or one without an entry
    for some (task, method) of ``pairs`` that has options to tune (the sanity methods have none): a run never
    falls back to untuned options for part of its pairs without saying so."""
    entries = tuned_table(protocol, prior, table)["entries"]
    missing = [
        f"{t.name}/{m}"
        for t, m in pairs
        if m.split(":", 1)[0] not in _UNTUNED and not _tuned(protocol, prior, t, m.split(":", 1)[0], table)
    ]
    if missing:
        held = ", ".join(sorted(f"{e['task']}/{e['method']}" for e in entries)) or "none"
        raise InputError(
            f"--tuned {table} has no entry for {', '.join(missing)}; it holds {held} (tune them with reguidance "
            "tune-defaults)"
        )


def method_for(
    task: Task,
    method: str,
    protocol: str = "reference",
    *,
    prior: str = "mnist",
    tuned: bool = True,
    table: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Method:
    """The config ``method`` (a name of :mod:`reguidance.app.methods`, or ``folder:PATH``) runs with on ``task``
    under ``protocol`` for ``prior`` (the module docstring's order; ``tuned=False`` leaves the tuned table out, as
    the sweep that makes it does). An option the method does not take, or a value of the wrong type, is an
    ``InputError`` naming it."""
    name = method.split(":", 1)[0]
    cls = method_class(method)
    entry = _tuned(protocol, prior, task, name, table) if tuned else {}
    options = {
        **cls.image_options,
        **cls.reference.get(task.family, {}),
        **cls.budget(_check(protocol), task.family),
        **entry.get("method_options", {}),
        **(overrides or {}),
    }
    return make_method(method, options)


def wrapper_for(
    task: Task,
    method: str,
    protocol: str = "reference",
    *,
    prior: str = "mnist",
    tuned: bool = True,
    table: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> ReGuidance:
    """The wrapper on top of ``method`` for ``task`` under ``protocol`` for ``prior`` (the module docstring's
    order; ``overrides`` are flat wrapper options such as ``{"inversion_steps": 10}``)."""
    entry = _tuned(protocol, prior, task, method.split(":", 1)[0], table) if tuned else {}
    options = {
        **ReGuidance.image_options,
        **ReGuidance.budget(_check(protocol), task.family),
        **entry.get("reguidance", {}),
        **(overrides or {}),
    }
    return ReGuidance.from_options(options)


def ablation_configs(
    task: Task,
    method: str,
    protocol: str = "reference",
    *,
    prior: str = "mnist",
    table: str | None = None,
    wrapper_overrides: Mapping[str, object] | None = None,
    rescale: bool = False,
) -> dict[str, Method]:
    """The ablations' own tuned configs for ``method`` on ``task`` (``reguidance tune-defaults --ablations``, see
    :mod:`.tune`): ``renoise`` / ``fresh`` as a :class:`ReGuidance` (the protocol's wrapper budget, their tuned
    fields, ``wrapper_overrides``), ``more`` as the method's config (its budget and step size tuned at that budget;
    with ``rescale`` its budget option is None: the run changed the budgets the tuned one was scaled for, so it is
    scaled again from this run's, :func:`reguidance.app.batch.solve_batch`). ``{}`` when the table holds none:
    every ablation then borrows the wrapper's and the method's."""
    entry = _tuned(protocol, prior, task, method.split(":", 1)[0], table)
    out: dict[str, Method] = {}
    for variant, chosen in entry.get("variants", {}).items():
        if variant == "more":
            config = make_method(method, {**method_class(method).image_options, **chosen["method_options"]})
            key = config.budget_option
            out[variant] = config.replace(**{key: None}) if rescale and key is not None else config
        else:
            out[variant] = ReGuidance.from_options(
                {
                    **ReGuidance.image_options,
                    **ReGuidance.budget(_check(protocol), task.family),
                    **chosen["reguidance"],
                    **(wrapper_overrides or {}),
                }
            )
    return out
