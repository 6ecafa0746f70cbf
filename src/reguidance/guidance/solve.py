r"""A method is a frozen, typed config; a problem is what it solves; :func:`solve` runs one on the other.

- :class:`Method` is the base of every method's config (``DPS``, ``DAPS``, ``DiffPIR``, ``RedDiff``, ``PiGDM``): a
  frozen dataclass whose fields are the method's options with the reference defaults, checked when it is built
  (a value of the wrong type or out of range raises an :class:`~reguidance.conventions.InputError` naming the option
  and what is expected). Its class constants: ``name`` (the CLI's name, e.g. ``"dps"``), ``label`` (the paper's,
  e.g. ``"DPS"``), ``default_steps`` (the reference budget: levels of the chain; the one place it is written) and
  ``needs_linear`` (the method solves with ``A`` and its adjoint). A method writes ``stepper``, its update for one
  transition, and optionally ``grid`` (its default chain of ``steps`` levels) and ``first_state``.
- :class:`Problem` holds the prior, the operator, the measurement ``y`` (B, *operator.y_shape) and the generators
  (one per sample).
- :func:`solve` checks the problem against the method once, chooses the levels, counts network evaluations with a
  :class:`~reguidance.diffusion.Denoiser` and runs :func:`~reguidance.guidance.core.run`: the part every method
  shares, written once.
- :class:`Functional` makes a method's functional form (``dps = Functional(DPS)``):
  ``dps(prior, operator, y, rng=..., steps=..., step_size=...)`` is
  ``solve(DPS(step_size=...), Problem(prior, operator, y, rng), steps=...)``.
- :func:`configure` builds a config from ``{option: value}``, refusing an option the method does not have.

Option types: a ``float`` option accepts an ``int`` (stored as the float, so ``1`` and ``1.0`` are one config) but
not a ``bool`` (``True`` for a step size is a mistake, not 1.0); an ``int`` option refuses floats and bools; a
``bool`` option only ``True`` / ``False``; a ``Literal`` option one of its strings.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch import Tensor

from ..conventions import BatchRNG, InputError, check_positive_int
from ..diffusion import Denoiser, EpsModel, Schedule
from ..operators import LinearOperator, Operator
from .core import (
    Callback,
    SampleResult,
    StepFn,
    check_device,
    check_operator,
    check_prior,
    check_problem,
    choose_levels,
    run,
    start,
)

__all__ = [
    "Functional",
    "Method",
    "Problem",
    "check_fields",
    "configure",
    "option_names",
    "options_of",
    "solve",
]


def _expected(hint: Any) -> str:
    """How a type hint reads in an error message."""
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in get_args(hint))
    if hint is type(None):
        return "None"
    return {float: "a number", int: "an integer", bool: "True or False", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _coerce(hint: Any, value: object) -> tuple[bool, object]:
    """``(ok, value)``: whether ``value`` fits ``hint``, and the value to store (an int given for a float is stored
    as the float)."""
    origin = get_origin(hint)
    if origin is Literal:
        return (isinstance(value, str) and value in get_args(hint)), value
    if origin in (Union, types.UnionType):
        for arg in get_args(hint):
            ok, v = _coerce(arg, value)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if isinstance(value, bool) or (isinstance(value, np.bool_)):
        return hint is bool, value
    if hint is float:
        ok = isinstance(value, (int, float, np.integer, np.floating))
        return ok, float(value) if ok else value  # type: ignore[arg-type]
    if hint is int:
        ok = isinstance(value, (int, np.integer))
        return ok, int(value) if ok else value  # type: ignore[call-overload]
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def check_fields(config: object, what: str) -> None:
    """Check every field of the dataclass ``config`` against its annotation, or raise an InputError naming it.

    ``what`` names the config in the message (``"DPS option step_size must be a number, got 'fast'"``).
    """
    hints = get_type_hints(type(config))
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        ok, stored = _coerce(hints[f.name], value)
        if not ok:
            raise InputError(f"{what} option {f.name} must be {_expected(hints[f.name])}, got {value!r}")
        if stored is not value:
            object.__setattr__(config, f.name, stored)


@dataclass(frozen=True, eq=False)
class Problem:
    """An inverse problem: recover ``x`` (B, *operator.x_shape) from ``measurement = A(x) + sigma_y n``
    (B, *operator.y_shape), under ``prior``, drawing every random number from ``rng`` (one generator per sample).

    Checked once against the method that solves it, by :func:`solve` (the operator's contract, linear where the
    method needs it, the measurement's shape and one generator per sample).
    """

    prior: EpsModel
    operator: Operator
    measurement: Tensor
    rng: BatchRNG

    def linear_operator(self, method: str) -> LinearOperator:
        """The operator as a :class:`~reguidance.operators.LinearOperator` (for methods that solve with ``A``), or
        an InputError naming ``method``; :func:`solve` has already refused a nonlinear one for such methods."""
        if not isinstance(self.operator, LinearOperator):
            raise InputError(
                f"{method} needs a linear operator (it solves with A and its adjoint); "
                f"{type(self.operator).__name__} is not a LinearOperator"
            )
        return self.operator


@dataclass(frozen=True)
class Method:
    """The base of the methods' configs: ``steps`` (levels of the method's default chain; ``None`` for the
    reference budget ``default_steps``) and what each method adds. See the module docstring."""

    name: ClassVar[str]
    label: ClassVar[str]
    default_steps: ClassVar[int]
    needs_linear: ClassVar[bool] = False

    steps: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, self.label)
        if self.steps is not None:
            check_positive_int(f"{self.label} option steps", self.steps)
        self.check()

    def check(self) -> None:
        """Check the options' values (their types are already checked); raise an InputError naming the option."""

    def grid(self, schedule: Schedule, steps: int) -> Schedule:
        """The method's chain of ``steps`` levels of ``schedule``: evenly spaced unless the method says otherwise."""
        return schedule.spaced(steps)

    def first_state(self, problem: Problem, levels: Schedule, latent: Tensor | None) -> Tensor:
        """The state at the first level: ``latent``, or fresh noise ``N(0, I)``."""
        return start(problem.operator, problem.measurement, latent, problem.rng)

    def stepper(self, problem: Problem, levels: Schedule, net: Denoiser) -> StepFn:
        """The method's update ``step(x, level) -> Update(x_next, x0_hat)`` for ``problem`` on the chain ``levels``,
        seeing the prior through ``net`` (which counts the network evaluations)."""
        raise NotImplementedError


M = TypeVar("M", bound=Method)


def option_names(cls: type[Method], *, data: bool = False) -> tuple[str, ...]:
    """The names of ``cls``'s options, ``steps`` first; with ``data``, also the fields that hold data of one problem
    (RED-diff's ``init``: a tensor, not an option, so not part of a run's identity)."""
    return tuple(f.name for f in fields(cls) if data or f.metadata.get("option", True))


def options_of(method: Method) -> dict[str, object]:
    """A method's options as a JSON-able dict ``{option: value}`` (numbers, strings, bools, None): its identity in
    a run's records. Fields that hold tensors (RED-diff's ``init``) are data, not options, and are left out."""
    return {name: getattr(method, name) for name in option_names(type(method))}


def configure(cls: type[M], options: Mapping[str, object], *, data: bool = False) -> M:
    """``cls(**options)``, or an InputError naming the options ``cls`` does not have and listing those it has
    (:func:`option_names`; ``data`` as there). Values are checked by the config itself."""
    known = option_names(cls, data=data)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"unknown {cls.label} option(s) {', '.join(unknown)}; {cls.name} has the options {', '.join(known)}"
        )
    return cls(**options)  # type: ignore[arg-type]


def solve(
    method: Method,
    problem: Problem,
    *,
    steps: int | None = None,
    levels: Schedule | None = None,
    latent: Tensor | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> SampleResult:
    """Solve ``problem`` with ``method``: check them, choose the chain, run the method's stepper down it.

    The chain is ``levels`` if given, else ``method.grid`` with ``steps`` levels (``steps`` here, else
    ``method.steps``, else ``method.default_steps``); giving both ``levels`` and a number of steps is refused.
    ``latent`` (B, *operator.x_shape) replaces the fresh start at the first level. ``callback`` and ``progress`` as
    in :func:`~reguidance.guidance.core.run`. Raises an InputError before any network evaluation when the operator
    lacks what the method uses (a linear operator for DiffPIR and PiGDM) or the measurement and generators do not
    fit it.
    """
    if not isinstance(method, Method):
        raise InputError(f"method must be a method config (e.g. DPS()), got {type(method).__name__}")
    if not isinstance(problem, Problem):
        raise InputError(f"problem must be a Problem, got {type(problem).__name__}")
    check_operator(problem.operator, method.label, linear=method.needs_linear)
    check_problem(problem.operator, problem.measurement, problem.rng)
    check_prior(problem.prior, method.label)  # after the operator's checks, which never touch the prior
    check_device("measurement", problem.measurement, problem.prior)
    if steps is None:
        steps = method.steps
    chain = choose_levels(problem.prior, steps, levels, method.grid, default_steps=method.default_steps)
    net = Denoiser(problem.prior)
    step = method.stepper(problem, chain, net)
    x = method.first_state(problem, chain, latent)
    with torch.no_grad():  # a method that differentiates enables gradients inside its own step
        return run(
            step,
            x,
            chain,
            net,
            problem.operator,
            problem.measurement,
            callback=callback,
            progress=progress,
            desc=method.label,
        )


class Functional:
    """A method's functional form: ``dps = Functional(DPS)``, and ``dps(prior, operator, measurement, *, rng,
    steps=None, levels=None, latent=None, callback=None, progress=False, **options)`` is
    ``solve(DPS(**options), Problem(prior, operator, measurement, rng), steps=steps, levels=levels, latent=latent,
    callback=callback, progress=progress)``.

    The keywords that are not :func:`solve`'s are the method's options (its config's fields but ``steps``, data such
    as RED-diff's ``init`` included); one it does not have raises an InputError naming it. A form is named after
    ``method.name`` and its docstring lists the options with their defaults.
    """

    def __init__(self, method: type[Method]) -> None:
        self.method = method
        self.__name__ = self.__qualname__ = method.name
        self.__module__ = method.__module__
        defaults = {f.name: f.default for f in fields(method) if f.name != "steps"}
        self.__doc__ = (
            f"Run {method.label} on one problem: ``solve({method.__name__}(**options), Problem(prior, operator, "
            "measurement, rng), steps=steps, levels=levels, latent=latent, callback=callback, progress=progress)``."
            "\n\n``measurement`` (B, *operator.y_shape) with ``sigma_y`` on the [-1, 1] scale; ``rng`` one generator "
            f"per sample; ``steps`` levels of the method's chain (default {method.default_steps}), or the chain "
            "``levels``; ``latent`` (B, *operator.x_shape) the state at the first level instead of the method's own "
            "start (a method whose state is not noisy refuses it).\n\nOptions (keyword only) with their defaults: "
            + ", ".join(f"``{name}={value!r}``" for name, value in defaults.items())
            + f"; their meaning: :class:`{method.__module__}.{method.__name__}`."
        )

    def __repr__(self) -> str:
        return f"<functional form {self.__name__} of {self.method.__name__}>"

    def __call__(
        self,
        prior: EpsModel,
        operator: Operator,
        measurement: Tensor,
        *,
        rng: BatchRNG,
        steps: int | None = None,
        levels: Schedule | None = None,
        latent: Tensor | None = None,
        callback: Callback | None = None,
        progress: bool = False,
        **options: Any,
    ) -> SampleResult:
        method = configure(self.method, options, data=True)
        problem = Problem(prior, operator, measurement, rng)
        return solve(method, problem, steps=steps, levels=levels, latent=latent, callback=callback, progress=progress)
