"""Per-(task, method) defaults of the benchmark: each method's options and the ReGuidance options on top of it.

Status: *not yet tuned*. The table holds the public references' values (DPS: 1000 DDPM steps, ``zeta`` 1.0 as in
its super-resolution configs and 0.5 as in its box-inpainting configs) and the wrapper's testbed defaults
(:class:`reguidance.wrapper.ReGuidanceConfig`, chosen by ``reguidance theory-sweep``) with ``x0_hat`` clipping as
images need. The tuning sweep on the validation split (never the test split) replaces these values; until then
every report says they are untuned.
"""

from __future__ import annotations

from dataclasses import replace

from ..wrapper import ReGuidanceConfig

__all__ = ["TUNED", "method_options", "reguidance_config"]

#: whether the values below came from the validation sweep (False: reference values, see the module docstring)
TUNED = False

_BOX = ("box16", "box20", "box16c", "box20c")

_METHOD: dict[tuple[str, str], dict[str, object]] = {
    **{(t, "dps"): {"steps": 1000, "zeta": 0.5} for t in _BOX},
    ("sr4", "dps"): {"steps": 1000, "zeta": 1.0},
    ("sr8", "dps"): {"steps": 1000, "zeta": 1.0},
    ("deblur", "dps"): {"steps": 1000, "zeta": 1.0},
}

_REGUIDANCE: dict[tuple[str, str], dict[str, object]] = {}


def method_options(task: str, method: str) -> dict[str, object]:
    """Options of ``method`` on ``task`` (empty for methods without options, e.g. ``pinv`` or folders)."""
    return dict(_METHOD.get((task, method.split(":", 1)[0]), {}))


def reguidance_config(task: str, method: str) -> ReGuidanceConfig:
    """The wrapper's options on top of ``method`` for ``task``: the testbed defaults with clipping, unless tuned."""
    return replace(ReGuidanceConfig(clip=True), **_REGUIDANCE.get((task, method.split(":", 1)[0]), {}))  # type: ignore[arg-type]
