r"""Interoperability with deepinv (read against deepinv 0.5.0): its ``Physics`` as one of our operators, our prior as
one of its denoisers, and ReGuidance's latent as the start of its ``DPS``.

**Scales.** Our images live in ``[-1, 1]``; a deepinv physics acts on images in its own ``image_range = (lo, hi)``,
deepinv's ``[0, 1]`` unless the user says otherwise. With ``a = (hi - lo) / 2`` and ``c = (hi + lo) / 2`` an image
of ours is ``x_d = a x + c`` there. For deepinv's forward model ``A_d`` and measurement ``y_d = A_d(x_d) + n_d``
(Gaussian noise of std ``sigma_d``), :class:`DeepinvOperator` is the operator on our scale

    A(x) = (A_d(a x + c) - b) / a,        b = A_d(c 1) for a linear physics (so that A = A_d), else 0,

with measurements ``y = (y_d - b) / a`` and ``sigma_y = sigma_d / a`` (for ``[0, 1]``: ``y = 2 y_d - A_d(1)``,
``sigma_y = 2 sigma_d``). The range is explicit at both ends: :meth:`DeepinvOperator.measurement_from_deepinv` and
:meth:`DeepinvOperator.image_from_deepinv` take deepinv's tensors (an image outside ``image_range`` is refused: a
``[-1, 1]`` image handed over as a ``[0, 1]`` one, or ``[0, 255]`` pixels), :meth:`DeepinvOperator.image_to_deepinv`
and :meth:`DeepinvOperator.measurement_to_deepinv` give them back. Everything else (``op(x)``, the solvers) is on
our scale: a tensor handed to them is ours, and a raw deepinv ``y_d`` cannot be told from ours by its values (an
inpainting measurement of a bright image on one scale is one of a darker image on the other), so the conversion is
the user's one explicit step.

**Linearity is the class.** A physics is linear when it is an instance of deepinv's ``LinearPhysics`` (a class of
that name in its method resolution order: deepinv need not be imported here); it then becomes a
:class:`DeepinvLinearOperator` with ``A = A_d``, ``A^T = A_d^T`` (``A_adjoint``) and ``pinv = A_d^dagger``
(``A_dagger``). Having ``A_adjoint`` is not linearity: deepinv's ``PhaseRetrieval`` (``|B x|^2``) defines one (the
adjoint of ``B``). Any other physics becomes a plain :class:`~reguidance.operators.Operator`, for DPS, DAPS,
RED-diff (with ``init=``) and ReGuidance, which only differentiate ``A``; DiffPIR and PiGDM refuse it. Proximal and
Gram solves use our float64 conjugate gradients, never deepinv's ``prox_l2`` (which stores solver settings on the
physics).

**Measurements are the entries A can reach.** deepinv's ``Inpainting`` keeps ``y`` the image's shape, with zeros
(noise included) where the mask is 0. An entry of ``y`` that ``A`` maps every image to 0 is no measurement: the
operator finds them once, as the entries where ``A`` of two random images is exactly 0 (a nonzero row of a linear map
gives 0 on a Gaussian probe with probability 0), counts only the others in ``num_measurements`` (so the truth's
``consistency`` is about 1), and :meth:`DeepinvOperator.measure` puts noise only on them, as deepinv does.

**Real images, real measurements, Gaussian noise.** Our images are real. A physics that takes only complex input
(``RandomPhaseRetrieval``, whose matrix ``B`` is complex: found by the shape probe, where a real probe raises and a
complex one does not) gets our images as complex tensors with zero imaginary part; one whose measurement of a real
image is complex (``CompressedSensing(dtype=torch.cfloat)``) is refused by name, as is one that measures neither
(the error it raised is named). Every method here assumes Gaussian noise of one std: ``sigma_y`` comes from
deepinv's ``GaussianNoise`` (one value for the batch), must be given for ``ZeroNoise`` (or no noise model), and any
other noise model (``PoissonNoise``, ``PoissonGaussianNoise``, ``GammaNoise``, ...: noise that is not Gaussian of one
std, often with a std that depends on the signal, which no ``sigma_y`` expresses) is refused by name, also when a
``sigma_y`` is given.

**Device and dtype.** The physics is a registered submodule (every deepinv ``Physics`` is a
:class:`torch.nn.Module`), so ``operator.to(device)`` moves its buffers (masks, filters) and ``state_dict`` holds
them. deepinv keeps its filters in float32: every call into the physics casts its input to the physics' working
dtype (that of its first floating-point buffer or parameter outside its noise model; for complex input, of its first
complex one) and a real result back, so float64 solves and float32 filters work together at the physics' own
accuracy. deepinv is an optional dependency: nothing here imports it.

**Our prior as deepinv's denoiser** (:class:`PriorDenoiser`): deepinv's denoisers take ``(x, sigma)`` with ``x`` an
image in ``[0, 1]`` plus Gaussian noise of std ``sigma``. On our scale that is ``x0 + 2 sigma eps``, the VP state
``x_t = sqrt(ab) (2 x - 1)`` of the level ``ab = 1 / (1 + 4 sigma^2)``; the network runs at the chain's timestep
whose noise level is nearest in log scale (:meth:`reguidance.diffusion.Schedule.nearest`), and Tweedie's estimate
``x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)`` goes back as ``(x0 + 1) / 2``.

**ReGuidance's latent in deepinv's terms** (:func:`latent_to_deepinv`). The latent is a state of our VP chain,
``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps`` with ``x0`` in ``[-1, 1]``. deepinv 0.5.0's ``DPS`` is a
``PosteriorDiffusion`` on the continuous VP SDE ``beta(t) = 0.1 + 19.9 t`` (the linear 1000-step chain's limit,
``ab(t) = exp(-(0.1 t + 9.95 t^2))``); it carries its state on that same ``[-1, 1]`` VP scale, takes ``x_init`` as
that state (not an image), starts at the first of its ``timesteps`` and returns images in ``[0, 1]`` (read in
``deepinv/sampling/diffusion_sde.py`` and ``diffusion.py``). So ``x_init`` is the latent itself and ``timesteps``
start at the time ``t`` whose ``ab(t)`` is the latent's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..conventions import BatchRNG, InputError, check_image_scale
from .base import LinearOperator, Operator, _check_shape

if TYPE_CHECKING:
    from ..priors.base import Prior

__all__ = [
    "DeepinvLatent",
    "DeepinvLinearOperator",
    "DeepinvOperator",
    "PriorDenoiser",
    "deepinv_time",
    "latent_to_deepinv",
]

#: deepinv's VP SDE (``VariancePreservingDiffusion`` defaults, used by its ``DPS``): ``beta(t) = 0.1 + 19.9 t``
VP_BETA_MIN, VP_BETA_MAX = 0.1, 20.0

#: how far outside ``image_range`` an image handed over from deepinv may reach, as a share of the range's width
#: (a solver's unclamped estimate overshoots a little; a ``[-1, 1]`` image given as ``[0, 1]`` reaches a full width)
RANGE_SLACK = 0.25

#: the noise models that add Gaussian noise of one std (``sigma``), and those that add none
GAUSSIAN_NOISE, ZERO_NOISE = "GaussianNoise", "ZeroNoise"


def _is_linear(physics: nn.Module) -> bool:
    """deepinv's mark of a linear physics: an instance of its ``LinearPhysics`` (found by name in the class's MRO, so
    that deepinv need not be imported; ``ComposedLinearPhysics``, ``DecomposablePhysics``, ... all derive from it)."""
    return any(c.__name__ == "LinearPhysics" for c in type(physics).__mro__)


def _working_dtype(physics: nn.Module, complex_input: bool = False) -> torch.dtype | None:
    """The dtype the physics takes its input in: for real input, that of its first floating-point buffer or parameter
    (a filter); for complex input, that of its first complex one (a matrix), else the complex counterpart of the real
    one; ``None`` when it has none. The noise model's tensors (``GaussianNoise.sigma``) are left out."""
    tensors = [
        t for n, t in (*physics.named_buffers(), *physics.named_parameters()) if not n.startswith("noise_model.")
    ]
    real = next((t.dtype for t in tensors if t.is_floating_point()), None)
    if not complex_input:
        return real
    return next((t.dtype for t in tensors if t.is_complex()), (real or torch.float32).to_complex())


def _working_device(physics: nn.Module) -> torch.device:
    for t in (*physics.buffers(), *physics.parameters()):
        return t.device
    return torch.device("cpu")


def _noise_sigma(physics: nn.Module, read: bool = True) -> float | None:
    """deepinv's ``GaussianNoise`` std (one value for the batch; not read unless ``read``); ``None`` for
    ``ZeroNoise`` or no noise model; an InputError naming any other noise model (module docstring)."""
    model = getattr(physics, "noise_model", None)
    kind = type(model).__name__
    if model is None or kind == ZERO_NOISE:
        return None
    sigma = getattr(model, "sigma", None)
    if kind != GAUSSIAN_NOISE or sigma is None:
        raise InputError(
            f"the physics' noise model is {kind}, not Gaussian noise of one std: every method here assumes "
            f"y = A(x) + sigma_y n with n ~ N(0, I), and no sigma_y expresses {kind}'s noise; give the physics a "
            f"{GAUSSIAN_NOISE} (or {ZERO_NOISE} and pass sigma_y)"
        )
    if not read:
        return None
    values = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    if values.numel() == 0 or not bool((values == values[0]).all()):
        raise InputError(f"the physics' noise_model.sigma holds {values.numel()} different values: pass sigma_y")
    return float(values[0])


def _check_range(image_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in image_range)
    except (TypeError, ValueError):
        raise InputError(f"image_range must be two numbers (lo, hi), got {image_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"image_range must be two finite numbers lo < hi, got {image_range!r}")
    return lo, hi


def _probe_shape(physics: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
    """``(y_shape, complex_input)`` from a noiseless call on a zero image: in the physics' real working dtype, or, where
    that raises, as a complex tensor (a physics with a complex matrix, ``RandomPhaseRetrieval``). An InputError for a
    physics that measures neither, or that measures a real image as a complex tensor."""
    real = _working_dtype(physics) or torch.float32
    probe = torch.zeros(1, *shape, dtype=real, device=_working_device(physics))
    name = type(physics).__name__
    complex_input = False
    with torch.no_grad():
        try:
            y = physics.A(probe)
        except Exception as err:  # deepinv raises RuntimeError, TypeError, ... for input it cannot take
            try:
                y, complex_input = physics.A(probe.to(_working_dtype(physics, True))), True
            except Exception:
                raise InputError(
                    f"the physics {name} cannot measure an image of shape (1, {', '.join(map(str, shape))}), real or "
                    f"complex: A(x) raised {type(err).__name__}: {err}"
                ) from err
    if not isinstance(y, Tensor):
        raise InputError(f"the physics {name} returns a {type(y).__name__}, not one tensor: it is not supported")
    if y.is_complex():
        raise InputError(
            f"the physics {name} measures a real image as a complex tensor ({y.dtype}): complex measurements are "
            "not supported (our residuals, noise and solves are real); use a physics with real measurements"
        )
    return tuple(y.shape[1:]), complex_input


class DeepinvOperator(Operator):
    """A deepinv ``Physics`` acting on our signals ``x_shape = (C, H, W)`` in ``[-1, 1]`` (module docstring).

    ``physics`` must be a :class:`torch.nn.Module` with deepinv's ``A(x)`` (every deepinv ``Physics`` is); an
    instance of deepinv's ``LinearPhysics`` makes ``DeepinvOperator(...)`` return a :class:`DeepinvLinearOperator`.
    ``image_range = (lo, hi)`` is the range of the images the physics acts on: deepinv's ``(0, 1)`` unless given.
    ``sigma_y`` (our scale) defaults to ``sigma_d / a`` for deepinv's ``GaussianNoise`` of std ``sigma_d``
    (``2 sigma_d`` for ``[0, 1]``) and must be given for ``ZeroNoise``; other noise models are refused. The
    physics' shapes and its unobserved entries are found by noiseless calls on ``(1, *x_shape)`` probes of its own
    device and dtype; a physics that cannot measure a real image, or measures it as a complex tensor, is refused.
    """

    physics: Any  # a deepinv Physics: an nn.Module whose A, A_adjoint, A_dagger the type checker cannot see
    observed: Tensor | None  # (1, *y_shape) bool: the entries A can reach; None when A reaches every entry

    def __new__(cls, physics: Any = None, *args: Any, **kwargs: Any) -> DeepinvOperator:
        # no arguments when copy / pickle rebuild an instance of the class they already know
        if cls is DeepinvOperator and isinstance(physics, nn.Module) and _is_linear(physics):
            cls = DeepinvLinearOperator
        return super().__new__(cls)

    def __init__(
        self,
        physics: Any,
        x_shape: Sequence[int],
        sigma_y: float | None = None,
        *,
        image_range: Sequence[float] = (0.0, 1.0),
    ) -> None:
        if not isinstance(physics, nn.Module) or not callable(getattr(physics, "A", None)):
            raise InputError(
                f"physics must be a deepinv Physics (a torch.nn.Module with A(x)), got {type(physics).__name__}; "
                "for a forward model of your own, subclass reguidance.operators.Operator or LinearOperator"
            )
        shape = _check_shape("x_shape", x_shape)
        lo, hi = _check_range(image_range)
        noise = _noise_sigma(physics, read=sigma_y is None)  # the noise model's kind is checked either way
        if sigma_y is None:
            if noise is None:
                kind = type(getattr(physics, "noise_model", None)).__name__
                raise InputError(
                    f"the physics adds no noise ({kind}): pass sigma_y, the Gaussian noise std on our [-1, 1] scale "
                    f"({2 / (hi - lo):g} times a std on image_range {(lo, hi)})"
                )
            sigma_y = noise * 2 / (hi - lo)
        y_shape, complex_input = _probe_shape(physics, shape)
        super().__init__(shape, y_shape, sigma_y)
        self.image_range = (lo, hi)
        self.complex_input = complex_input
        self.physics = physics  # a registered submodule: .to(device) and state_dict carry its buffers
        self.register_buffer("observed", self._reachable())

    # ------------------------------------------------------------------------------------------- the scales
    @property
    def _half_width(self) -> float:
        """``a = (hi - lo) / 2``: our unit in the physics' image units."""
        return (self.image_range[1] - self.image_range[0]) / 2

    @property
    def _centre(self) -> float:
        """``c = (hi + lo) / 2``: the physics' image of our 0."""
        return (self.image_range[1] + self.image_range[0]) / 2

    def image_from_deepinv(self, x_d: Tensor, name: str = "image") -> Tensor:
        """Images ``x_d`` (B, C, H, W) on the physics' ``image_range`` as ours in ``[-1, 1]``: ``(x_d - c) / a``.

        An InputError when ``x_d`` reaches outside ``image_range`` by more than a quarter of its width (a ``[-1, 1]``
        image handed over as a ``[0, 1]`` one, ``[0, 255]`` pixels): say ``image_range`` when building the operator.
        """
        lo, hi = self.image_range
        slack = RANGE_SLACK * (hi - lo)
        if isinstance(x_d, Tensor) and x_d.is_floating_point() and x_d.numel() > 0:
            low, high = float(x_d.min()), float(x_d.max())
            if not (lo - slack <= low and high <= hi + slack):
                raise InputError(
                    f"{name} holds values in [{low:.4g}, {high:.4g}] but the physics' image_range is ({lo:g}, {hi:g}) "
                    f"(values up to {slack:g} outside it are accepted): pass images on that range, or build the "
                    "operator with the range your images are on, e.g. DeepinvOperator(physics, x_shape, "
                    "image_range=(-1, 1))"
                )
        return check_image_scale(name, (x_d - self._centre) / self._half_width)

    def image_to_deepinv(self, x: Tensor) -> Tensor:
        """Our images ``x`` in ``[-1, 1]`` on the physics' ``image_range``: ``a x + c``."""
        return self._half_width * x + self._centre

    def measurement_from_deepinv(self, y_d: Tensor) -> Tensor:
        """deepinv's measurement ``y_d = A_d(x_d) + n_d`` (of an image on ``image_range``) on our scale:
        ``(y_d - b) / a``; its shape must be ``(B, *y_shape)``."""
        self.check_measurement(y_d, "deepinv's measurement")
        return (y_d - self._offset(y_d)) / self._half_width

    def measurement_to_deepinv(self, y: Tensor) -> Tensor:
        """Our measurement ``y`` as deepinv's: ``a y + b`` (what ``physics(x_d)`` returns)."""
        self.check_measurement(y)
        return self._half_width * y + self._offset(y)

    # ------------------------------------------------------------------------------------ calling the physics
    def _call(self, fn: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
        """``fn(t)`` in the physics' working dtype (made complex for a physics that takes complex input), returned
        real in ``t``'s dtype."""
        dtype = _working_dtype(self.physics, self.complex_input) or t.dtype
        if dtype == t.dtype:
            return fn(t)
        out = fn(t.to(dtype))
        return (out.real if out.is_complex() else out).to(t.dtype)

    def _offset(self, like: Tensor) -> Tensor:
        """``b = A_d(c 1)`` for a linear physics, else 0 (one measurement, ``like``'s dtype and device)."""
        if not isinstance(self, LinearOperator):
            return like.new_zeros(1, *self.y_shape)
        return self._call(self.physics.A, like.new_full((1, *self.x_shape), self._centre))

    def _forward(self, x: Tensor) -> Tensor:
        return self._call(self.physics.A, self.image_to_deepinv(x)) / self._half_width

    def _reachable(self) -> Tensor | None:
        """The entries of ``y`` that ``A`` of two random images does not leave exactly 0 (module docstring), as a
        ``(1, *y_shape)`` bool tensor; ``None`` when that is every entry."""
        device = _working_device(self.physics)
        if device.type == "meta":  # no values to look at: every entry counts
            return None
        g = torch.Generator().manual_seed(0)
        probes = torch.rand(2, *self.x_shape, generator=g, dtype=torch.float64) * 2 - 1
        with torch.no_grad():
            ys = self._forward(probes.to(device))
        observed = (ys != 0).any(dim=0, keepdim=True)
        return None if bool(observed.all()) else observed

    # ------------------------------------------------------------------------------- noise and diagnostics
    @property
    def num_measurements(self) -> int:
        """The entries of ``y`` that ``A`` reaches (deepinv's ``Inpainting``: the observed pixels, over channels)."""
        return math.prod(self.y_shape) if self.observed is None else int(self.observed.sum())

    def measure(self, x: Tensor, rng: BatchRNG) -> Tensor:
        """``A(x) + sigma_y n`` on the entries ``A`` reaches, 0 elsewhere (as deepinv measures); ``x`` in [-1, 1]."""
        y = super().measure(x, rng)
        return y if self.observed is None else y * self.observed


class DeepinvLinearOperator(DeepinvOperator, LinearOperator):
    """A deepinv ``LinearPhysics`` as a :class:`~reguidance.operators.LinearOperator`: ``A = A_d``, ``A^T = A_d^T``,
    ``pinv = A_d^dagger`` (``physics.A_dagger``); ``prox_l2`` and ``solve_gram`` by our conjugate gradients (module
    docstring). Made by ``DeepinvOperator(physics, x_shape)``."""

    def _forward(self, x: Tensor) -> Tensor:
        return self._call(self.physics.A, x)  # (A_d(a x + c) - A_d(c)) / a = A_d(x) for a linear A_d

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._call(self.physics.A_adjoint, y)

    def _pinv(self, y: Tensor) -> Tensor:
        dagger = getattr(self.physics, "A_dagger", None)
        if not callable(dagger):
            raise NotImplementedError(f"the physics {type(self.physics).__name__} has no A_dagger")
        return self._call(dagger, y)


# ------------------------------------------------------------------------------------------ the prior as a denoiser
class PriorDenoiser(nn.Module):
    """Our prior as a deepinv denoiser ``D(x, sigma)``: ``x`` (B, C, H, W) an image in ``[0, 1]`` plus Gaussian
    noise of std ``sigma`` (a number or one per sample, > 0), the result Tweedie's estimate in ``[0, 1]`` units
    (module docstring). ``sigma = 0`` returns ``x``. Counts its network evaluations in ``nfe`` (per batch call)."""

    def __init__(self, prior: Prior) -> None:
        super().__init__()
        self.prior = prior
        self.nfe = 0

    def forward(self, x: Tensor, sigma: float | Tensor, *args: Any, **kwargs: Any) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().reshape(-1)
        if s.numel() not in (1, x.shape[0]) or not bool(torch.isfinite(s).all() & (s >= 0).all()):
            raise InputError(f"sigma must be a number >= 0 or one per sample ({x.shape[0]},), got {sigma!r}")
        s = s.expand(x.shape[0])
        if bool((s == 0).all()):
            return x
        schedule = self.prior.schedule
        timesteps = torch.tensor([schedule.nearest(2 * float(v)) if v > 0 else 0 for v in s], device=x.device)
        ab = (1 / (1 + 4 * s**2)).to(x.device, x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        x_t = ab.sqrt() * (2 * x - 1)
        eps = self.prior(x_t, timesteps)
        self.nfe += 1
        x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        return torch.where((s > 0).to(x.device).reshape(ab.shape), (x0 + 1) / 2, x)


# ------------------------------------------------------------------------------------------ the latent for DPS
def deepinv_time(alpha_bar: float) -> float:
    """The time ``t`` of deepinv's VP SDE whose ``ab(t) = exp(-(0.1 t + 9.95 t^2))`` is ``alpha_bar`` in (0, 1): the
    positive root of ``9.95 t^2 + 0.1 t + log(ab) = 0``, at most 1. The discrete chain's last levels lie a little
    past the SDE's end (``ab_999 = 4.04e-5 < ab(1) = 4.32e-5``): a level below ``ab(1)`` is given ``t = 1``."""
    ab = float(alpha_bar)
    if not 0 < ab < 1:
        raise InputError(f"alpha_bar must lie in (0, 1), got {alpha_bar!r}")
    half_slope = (VP_BETA_MAX - VP_BETA_MIN) / 2
    t = (-VP_BETA_MIN + math.sqrt(VP_BETA_MIN**2 - 4 * half_slope * math.log(ab))) / (2 * half_slope)
    return min(t, 1.0)


@dataclass(frozen=True)
class DeepinvLatent:
    """A latent ``x_t`` (B, C, H, W) of level ``alpha_bar`` in deepinv 0.5.0's conventions (module docstring).

    ``x_init``: the latent itself, deepinv ``DPS``'s starting state (a VP state on ``[-1, 1]``, not an image);
    ``time``: the time of deepinv's VP SDE at that level, where its ``timesteps`` must start
    (``torch.linspace(time, 0, n)``); ``noisy_image``: ``(x_t / sqrt(ab) + 1) / 2 = x0_01 + sigma eps``, what a
    deepinv denoiser sees; ``sigma``: ``sqrt((1 - ab) / ab) / 2``, its noise level on the ``[0, 1]`` scale.
    """

    x_init: Tensor
    time: float
    noisy_image: Tensor
    sigma: float
    alpha_bar: float


def latent_to_deepinv(latent: Tensor, alpha_bar: float) -> DeepinvLatent:
    """Our latent ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps`` (B, C, H, W) at level ``alpha_bar`` (for ReGuidance:
    ``prior.schedule.alphas_cumprod[round(t_end * (N - 1))]``, the last level of ``invert``'s schedule) in deepinv's
    conventions: see :class:`DeepinvLatent`."""
    if not isinstance(latent, Tensor) or not latent.is_floating_point():
        got = latent.dtype if isinstance(latent, Tensor) else type(latent).__name__
        raise InputError(f"latent must be a floating-point tensor, got {got}")
    ab = float(alpha_bar)
    if not 0 < ab < 1:
        raise InputError(f"alpha_bar must lie in (0, 1), got {alpha_bar!r}")
    return DeepinvLatent(
        x_init=latent,
        time=deepinv_time(ab),
        noisy_image=(latent / math.sqrt(ab) + 1) / 2,
        sigma=math.sqrt((1 - ab) / ab) / 2,
        alpha_bar=ab,
    )
