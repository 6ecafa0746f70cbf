r"""A method is a frozen, typed config; a problem is what it solves; :func:`solve` runs one on the other.

- :class:`Method` is the base of every method's config: the samplers (``DPS``, ``DAPS``, ``DiffPIR``, ``RedDiff``,
  ``PiGDM``, all :class:`ChainMethod`), ReGuidance (:class:`reguidance.wrapper.ReGuidance`, which also takes a
  *candidate*) and the benchmark's candidate sources without a network (:mod:`reguidance.app.methods`). A config is
  a frozen dataclass whose fields are the method's options with the reference defaults, checked when it is built (a
  value of the wrong type or out of range raises an :class:`~reguidance.conventions.InputError` naming the option
  and what is expected). What a program needs to know about a method lives on its class, nowhere else:

  =====================  ======================================================================================
  class constant         meaning
  =====================  ======================================================================================
  ``name`` / ``label``   the command line's name (``"dps"``) and the paper's (``"DPS"``)
  ``needs_linear``       it solves with ``A`` and its adjoint (a :class:`~reguidance.operators.LinearOperator`)
  ``budget_option``      the option that scales its network evaluations (``"steps"``), or None
  ``budgets``            per benchmark protocol (``"reference"``, ``"cpu"``), the options that set its budget
  ``reference``          per task family (:func:`reguidance.tasks.family`), the reference code's options
  ``step_sizes``         the options that are step sizes (what a tuning sweep varies)
  ``tuning_grid``        the default grid of that sweep (``"step_size=0.1,0.3"``)
  ``image_options``      what it is always given on [-1, 1] images (``clip=True`` for the samplers)
  =====================  ======================================================================================

- :class:`ChainMethod` adds ``steps`` (levels of the method's default chain; ``None`` for the reference budget
  ``default_steps``) and the extension points of a sampler: ``stepper`` (its update for one transition) and
  optionally ``grid`` (its default chain of ``steps`` levels) and ``first_state``.
- :class:`Problem` holds the prior, the operator, the measurement ``y`` (B, *operator.y_shape) and the generators
  (one per sample).
- :func:`solve` checks the problem against the method once and runs it (:meth:`Method.run`); a chain method chooses
  the levels, counts network evaluations with a :class:`~reguidance.diffusion.Denoiser` and runs
  :func:`~reguidance.guidance.core.run`: the part every sampler shares, written once.
- One serializer: :meth:`Method.options` (a JSON-able ``{option: value}``: a config's identity in records, tuned
  tables and run folders) and :meth:`Method.from_options` (its inverse, refusing an unknown option), with
  :meth:`Method.replace` for "these options changed". :func:`options_of` and :func:`configure` are the same as
  functions.
- :class:`Functional` makes a chain method's functional form (``dps = Functional(DPS)``):
  ``dps(prior, operator, y, rng=..., steps=..., step_size=...)`` is
  ``solve(DPS(step_size=...), Problem(prior, operator, y, rng), steps=...)``.

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
    Cost,
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
    "ChainMethod",
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


M = TypeVar("M", bound="Method")


@dataclass(frozen=True)
class Method:
    """The base of every method's config (the module docstring): class constants for what programs need to know
    about the method, :meth:`run` to solve a problem, and the serializer :meth:`options` / :meth:`from_options`."""

    name: ClassVar[str]
    label: ClassVar[str]
    needs_linear: ClassVar[bool] = False
    #: whether :meth:`run` needs a candidate (ReGuidance) or refuses one (every other method)
    takes_candidate: ClassVar[bool] = False
    budget_option: ClassVar[str | None] = None
    budgets: ClassVar[Mapping[str, Mapping[str, object]]] = {}
    reference: ClassVar[Mapping[str, Mapping[str, object]]] = {}
    step_sizes: ClassVar[tuple[str, ...]] = ()
    tuning_grid: ClassVar[str] = ""
    image_options: ClassVar[Mapping[str, object]] = {}

    def __post_init__(self) -> None:
        check_fields(self, self.label)
        self.check()

    def check(self) -> None:
        """Check the options' values (their types are already checked); raise an InputError naming the option."""

    # ------------------------------------------------------------------------------------------- the serializer
    def options(self) -> dict[str, object]:
        """The config as a JSON-able dict ``{option: value}`` (numbers, strings, bools, None), every option
        included: its identity in a run's records. Fields that hold data of one problem (RED-diff's ``init``, a
        tensor) are not options and are left out."""
        return {name: getattr(self, name) for name in option_names(type(self))}

    @classmethod
    def from_options(cls: type[M], options: Mapping[str, object], *, data: bool = False) -> M:
        """The config with ``options`` (the keys of :meth:`options`) over the defaults, or an InputError naming the
        options ``cls`` does not have and listing those it has; ``data`` admits the data fields too. Values are
        checked by the config itself."""
        known = option_names(cls, data=data)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InputError(
                f"unknown {cls.label} option(s) {', '.join(unknown)}; {cls.name} has the options {', '.join(known)}"
            )
        return cls(**options)

    def replace(self: M, **changes: object) -> M:
        """This config with some options changed (the keys of :meth:`options`), checked like a new one."""
        return type(self).from_options({**self.options(), **changes})

    def cost(self) -> Cost:
        """The network evaluations per image of one run of this config (its ``nfe`` is what the run reports)."""
        return Cost()

    def linear_only(self) -> bool:
        """Whether this config needs a :class:`~reguidance.operators.LinearOperator` (:attr:`needs_linear`, or what
        its options imply: RED-diff without ``init`` starts from the pseudo-inverse)."""
        return self.needs_linear

    @classmethod
    def budget(cls, protocol: str, family: str) -> dict[str, object]:
        """The options that set the budget under the benchmark ``protocol`` for a task of ``family`` (:attr:`budgets`;
        a method whose reference code budgets a family differently overrides this)."""
        return dict(cls.budgets.get(protocol, {}))

    # ---------------------------------------------------------------------------------------------------- solving
    def run(
        self,
        problem: Problem,
        *,
        candidate: Tensor | None = None,
        steps: int | None = None,
        levels: Schedule | None = None,
        latent: Tensor | None = None,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> SampleResult:
        """Solve ``problem`` (checked by :func:`solve`, which calls this); the arguments are :func:`solve`'s."""
        raise NotImplementedError


@dataclass(frozen=True)
class ChainMethod(Method):
    """The base of the samplers' configs: ``steps`` (levels of the method's default chain; ``None`` for the reference
    budget ``default_steps``) and what each method adds; a sampler writes :meth:`stepper`. See the module
    docstring."""

    default_steps: ClassVar[int]
    budget_option: ClassVar[str | None] = "steps"
    image_options: ClassVar[Mapping[str, object]] = {"clip": True}

    steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps is not None:
            check_positive_int(f"{self.label} option steps", self.steps)

    @classmethod
    def budget(cls, protocol: str, family: str) -> dict[str, object]:
        """The reference protocol's budget is ``default_steps`` unless :attr:`budgets` says otherwise."""
        return {**({"steps": cls.default_steps} if protocol == "reference" else {}), **super().budget(protocol, family)}

    @property
    def levels(self) -> int:
        """The number of levels of its chain: ``steps``, or ``default_steps`` when None."""
        return self.default_steps if self.steps is None else self.steps

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

    def run(
        self,
        problem: Problem,
        *,
        candidate: Tensor | None = None,
        steps: int | None = None,
        levels: Schedule | None = None,
        latent: Tensor | None = None,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> SampleResult:
        """Choose the chain (``levels``, else :meth:`grid` with ``steps``, else ``self.steps``, else
        ``default_steps`` levels; giving ``levels`` and a number of steps, here or in the config, is refused) and run
        :meth:`stepper` down it from :meth:`first_state`."""
        chain = choose_levels(
            problem.prior, self.steps if steps is None else steps, levels, self.grid, default_steps=self.default_steps
        )
        net = Denoiser(problem.prior)
        step = self.stepper(problem, chain, net)
        x = self.first_state(problem, chain, latent)
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
                desc=self.label,
            )


def option_names(cls: type[Method], *, data: bool = False) -> tuple[str, ...]:
    """The names of ``cls``'s options, in field order; with ``data``, also the fields that hold data of one problem
    (RED-diff's ``init``: a tensor, not an option, so not part of a run's identity)."""
    return tuple(f.name for f in fields(cls) if data or f.metadata.get("option", True))


def options_of(method: Method) -> dict[str, object]:
    """``method.options()``: its options as a JSON-able dict, its identity in a run's records."""
    return method.options()


def configure(cls: type[M], options: Mapping[str, object], *, data: bool = False) -> M:
    """``cls.from_options(options)``: the config with ``options`` over its defaults (an unknown option refused)."""
    return cls.from_options(options, data=data)


def solve(
    method: Method,
    problem: Problem,
    *,
    candidate: Tensor | None = None,
    steps: int | None = None,
    levels: Schedule | None = None,
    latent: Tensor | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> SampleResult:
    """Solve ``problem`` with ``method``: check them, then run the method (:meth:`Method.run`).

    For a chain method the chain is ``levels`` if given, else ``method.grid`` with ``steps`` levels (``steps`` here,
    else ``method.steps``, else ``method.default_steps``); giving both ``levels`` and a number of steps is refused.
    ``latent`` (B, *operator.x_shape) replaces the fresh start at the first level. ``candidate`` (B,
    *operator.x_shape) in [-1, 1] is what ReGuidance wraps (a method that takes none refuses it). ``callback`` and
    ``progress`` as in :func:`~reguidance.guidance.core.run`. Raises an InputError before any network evaluation
    when the operator lacks what the method uses (a linear operator for DiffPIR and PiGDM) or the measurement and
    generators do not fit it.
    """
    if not isinstance(method, Method):
        raise InputError(f"method must be a method config (e.g. DPS()), got {type(method).__name__}")
    if not isinstance(problem, Problem):
        raise InputError(f"problem must be a Problem, got {type(problem).__name__}")
    if candidate is None and method.takes_candidate:
        raise InputError(f"{method.label} wraps a candidate: pass candidate= (B, C, H, W) in [-1, 1]")
    if candidate is not None and not method.takes_candidate:
        raise InputError(
            f"{method.label} takes no candidate (ReGuidance does: solve(ReGuidance(), problem, candidate=x))"
        )
    check_operator(problem.operator, method.label, linear=method.needs_linear)
    check_problem(problem.operator, problem.measurement, problem.rng)
    check_prior(problem.prior, method.label)  # after the operator's checks, which never touch the prior
    check_device("measurement", problem.measurement, problem.prior)
    return method.run(
        problem, candidate=candidate, steps=steps, levels=levels, latent=latent, callback=callback, progress=progress
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

    def __init__(self, method: type[ChainMethod]) -> None:
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
