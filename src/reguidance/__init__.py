"""reguidance: make pretrained diffusion priors solve hard inverse problems (ReGuidance, arXiv 2506.10955).

The names most programs need are here at the top level (``import reguidance as rg``):

- priors: :func:`load_prior` (a known name, a guided-diffusion checkpoint, a diffusers folder);
- operators: :class:`Operator` (any differentiable ``A``), :class:`LinearOperator` (adjoint, pseudo-inverse,
  exact solves), the built-in :class:`Inpainting`, :class:`SuperResolution`, :class:`Blur`,
  :class:`GaussianBlur`, :class:`MatrixOperator`, and :func:`make_operator` (a task spec such as ``"sr:8"`` or
  ``"paper:box128c"`` -> the operator for images of a given ``(C, H, W)``);
- methods: the configs :class:`DPS`, :class:`DAPS`, :class:`DiffPIR`, :class:`RedDiff`, :class:`PiGDM`, run by
  :func:`solve` on a :class:`Problem`; ReGuidance itself: :func:`reguide` with its :class:`ReGuidance`;
- images: :func:`load_images` / :func:`save_images` (files and folders <-> ``(B, C, H, W)`` in ``[-1, 1]``);
- randomness and errors: :class:`BatchRNG` (one generator per sample), :class:`InputError`.

They are imported on first use (PEP 562), so ``import reguidance`` itself does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .conventions import BatchRNG, InputError
    from .guidance import DAPS, DPS, DiffPIR, PiGDM, Problem, RedDiff, solve
    from .io.images import load_images, save_images
    from .operators import Blur, GaussianBlur, Inpainting, LinearOperator, MatrixOperator, Operator, SuperResolution
    from .priors import load_prior
    from .tasks import make_operator
    from .wrapper import ReGuidance, reguide

__all__ = [
    "DAPS",
    "DPS",
    "BatchRNG",
    "Blur",
    "DiffPIR",
    "GaussianBlur",
    "Inpainting",
    "InputError",
    "LinearOperator",
    "MatrixOperator",
    "Operator",
    "PiGDM",
    "Problem",
    "ReGuidance",
    "RedDiff",
    "SuperResolution",
    "__version__",
    "load_images",
    "load_prior",
    "make_operator",
    "reguide",
    "save_images",
    "solve",
]

#: the module each top-level name comes from (relative to this package)
_SOURCES = {
    "BatchRNG": "conventions",
    "InputError": "conventions",
    "DAPS": "guidance",
    "DPS": "guidance",
    "DiffPIR": "guidance",
    "PiGDM": "guidance",
    "Problem": "guidance",
    "RedDiff": "guidance",
    "solve": "guidance",
    "load_images": "io.images",
    "save_images": "io.images",
    "Blur": "operators",
    "GaussianBlur": "operators",
    "Inpainting": "operators",
    "LinearOperator": "operators",
    "MatrixOperator": "operators",
    "Operator": "operators",
    "SuperResolution": "operators",
    "load_prior": "priors",
    "make_operator": "tasks",
    "ReGuidance": "wrapper",
    "reguide": "wrapper",
}


def __getattr__(name: str) -> Any:
    """A top-level name of :data:`__all__`, imported from its module on first use and then cached here."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'reguidance' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
