r"""A Gaussian-mixture prior with exact scores: the testbed on which samplers are checked against the truth.

Data ``x_0`` in dimension ``d`` follow a mixture of ``K`` Gaussians,

    p_0(x) = sum_k w_k N(x; mu_k, S_k),      S_k = Q_k diag(l_k) Q_k^T   (eigendecomposition, l_k > 0).

Under the variance-preserving forward process ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps`` (``ab = alpha_bar_t``)
every noise level is again a mixture, with the same weights,

    p_t(x) = sum_k w_k N(x; sqrt(ab) mu_k, C_k(ab)),
    C_k(ab) = ab S_k + (1 - ab) I = Q_k diag(ab l_k + 1 - ab) Q_k^T,

so ``C_k`` has the eigenvectors of ``S_k``: its inverse and log-determinant are trivial at every level. The
score and the noise prediction are exact,

    grad log p_t(x) = -sum_k gamma_k(x) C_k^{-1} (x - sqrt(ab) mu_k),
    eps(x_t, t) = -sqrt(1 - ab) grad log p_t(x_t),

with ``gamma_k(x)`` the responsibilities (component probabilities given ``x_t = x``), and so is Tweedie's
posterior mean

    E[x_0 | x_t] = sum_k gamma_k (mu_k + sqrt(ab) S_k C_k^{-1} (x_t - sqrt(ab) mu_k))
                 = (x_t - sqrt(1 - ab) eps) / sqrt(ab).

Linear measurements ``y = A x_0 + sigma_y n`` (``A`` (m, d), ``n ~ N(0, I_m)``) have an exact posterior
that is again a mixture: with ``G_k = A S_k A^T + sigma_y^2 I``,

    w_k(y) ∝ w_k N(y; A mu_k, G_k),
    mean_k(y) = mu_k + S_k A^T G_k^{-1} (y - A mu_k),
    Sigma_k = S_k - S_k A^T G_k^{-1} A S_k.

All computations run in float64; results come back in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..conventions import (
    BatchRNG,
    check_finite,
    check_nonnegative,
    check_positive_int,
    check_signal_shape,
    check_unit_interval,
)
from ..diffusion import Schedule
from .base import Prior, PriorOutput

__all__ = ["GMMPrior", "GaussianMixture", "GaussianMixturePosterior"]

_F64 = torch.float64
_LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------------------------------------ helpers
def _as_f64(name: str, value: Tensor | float, device: torch.device | None = None) -> Tensor:
    """``value`` as a finite float64 tensor (on ``device`` when given)."""
    t = torch.as_tensor(value)
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.to(dtype=_F64, device=device if device is not None else t.device)
    return check_finite(name, t)


def _per_component(name: str, value: Tensor | float, k: int, device: torch.device) -> Tensor:
    """``value`` as ``k`` positive float64 numbers, one per component (one number is given to all), or a ValueError
    naming ``name``."""
    v = _as_f64(name, value, device)
    if v.dim() == 0:
        v = v.expand(k)
    if v.shape != (k,):
        raise ValueError(f"{name} has shape {tuple(v.shape)} but means implies ({k},)")
    if not bool((v > 0).all()):
        raise ValueError(f"{name} must all be positive, got {v.tolist()}")
    return v


def _out_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _categorical(weights: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF draw: ``weights`` (B, K) or (K,), ``u`` (B,) uniform in [0, 1) -> component (B,) int64."""
    cdf = torch.cumsum(weights, dim=-1)
    cdf = cdf / cdf[..., -1:]
    if cdf.dim() == 1:
        cdf = cdf.expand(u.shape[0], -1)
    k = torch.searchsorted(cdf.contiguous(), u.reshape(-1, 1).contiguous(), right=True).squeeze(1)
    return k.clamp(max=weights.shape[-1] - 1)


def _sqrt_factor(cov: Tensor) -> Tensor:
    """``L`` (K, d, d) with ``L L^T = cov``: the Cholesky factor where ``cov`` is positive definite, otherwise
    the symmetric square root from the eigendecomposition (eigenvalues clamped at 0)."""
    chol, info = torch.linalg.cholesky_ex(cov)
    bad = info != 0
    if bool(bad.any()):
        lam, vec = torch.linalg.eigh(cov[bad])
        chol = chol.clone()
        chol[bad] = vec @ torch.diag_embed(lam.clamp(min=0).sqrt()) @ vec.transpose(-1, -2)
    return chol


# ----------------------------------------------------------------------------------------------- mixture
class GaussianMixture:
    """``sum_k w_k N(mu_k, Q_k diag(l_k) Q_k^T)`` in dimension ``d``, exact at every noise level.

    Args:
        weights: (K,) positive mixture weights (normalised to sum to 1).
        means: (K, d) component means ``mu_k``.
        eigvecs: (K, d, d) orthonormal ``Q_k`` (columns are eigenvectors of ``S_k``).
        eigvals: (K, d) positive eigenvalues ``l_k`` of ``S_k``.

    Tensors are stored in float64 on the device of ``means``. ``alpha_bar`` arguments are a number in (0, 1]
    or a (B,) tensor of such (one level per sample); ``alpha_bar = 1`` is the data distribution itself.
    """

    def __init__(self, weights: Tensor, means: Tensor, eigvecs: Tensor, eigvals: Tensor) -> None:
        means = _as_f64("means", means)
        if means.dim() != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {tuple(means.shape)}")
        k, d = means.shape
        device = means.device
        weights = _as_f64("weights", weights, device)
        eigvecs = _as_f64("eigvecs", eigvecs, device)
        eigvals = _as_f64("eigvals", eigvals, device)
        if weights.shape != (k,):
            raise ValueError(f"weights has shape {tuple(weights.shape)} but means implies ({k},)")
        if not bool((weights > 0).all()):
            raise ValueError(f"weights must all be positive, got {weights.tolist()}")
        if eigvecs.shape != (k, d, d):
            raise ValueError(f"eigvecs has shape {tuple(eigvecs.shape)} but means implies ({k}, {d}, {d})")
        if eigvals.shape != (k, d):
            raise ValueError(f"eigvals has shape {tuple(eigvals.shape)} but means implies ({k}, {d})")
        if not bool((eigvals > 0).all()):
            raise ValueError(f"eigvals must all be positive (covariances positive definite), min {eigvals.min()}")
        gram = eigvecs.transpose(-1, -2) @ eigvecs
        err = float((gram - torch.eye(d, dtype=_F64, device=device)).abs().max())
        if err > 1e-4:
            raise ValueError(f"eigvecs must be orthonormal (Q_k^T Q_k = I), max deviation {err:.2e}")
        self._set(weights / weights.sum(), means, eigvecs, eigvals)

    def _set(self, weights: Tensor, means: Tensor, eigvecs: Tensor, eigvals: Tensor) -> None:
        self.weights, self.means, self.eigvecs, self.eigvals = weights, means, eigvecs, eigvals

    @classmethod
    def _unchecked(cls, weights: Tensor, means: Tensor, eigvecs: Tensor, eigvals: Tensor) -> GaussianMixture:
        """Build from already validated float64 tensors (used to move or rebuild a mixture)."""
        gm = cls.__new__(cls)
        gm._set(weights, means, eigvecs, eigvals)
        return gm

    # -------------------------------------------------------------------------------------- constructors
    @classmethod
    def isotropic(cls, weights: Tensor, means: Tensor, variances: Tensor | float) -> GaussianMixture:
        """``S_k = v_k I``; ``variances`` (K,) positive (or one number for all components)."""
        means = _as_f64("means", means)
        k, d = cls._shape_of(means)
        v = _per_component("variances", variances, k, means.device)
        eye = torch.eye(d, dtype=_F64, device=means.device).expand(k, d, d).clone()
        return cls(weights, means, eye, v[:, None].expand(k, d).clone())

    @classmethod
    def diagonal(cls, weights: Tensor, means: Tensor, variances: Tensor) -> GaussianMixture:
        """``S_k = diag(v_k)``; ``variances`` (K, d) positive."""
        means = _as_f64("means", means)
        k, d = cls._shape_of(means)
        v = _as_f64("variances", variances, means.device)
        if v.shape != (k, d):
            raise ValueError(f"variances has shape {tuple(v.shape)} but means implies ({k}, {d})")
        if not bool((v > 0).all()):
            raise ValueError(f"variances must all be positive, min {float(v.min())}")
        eye = torch.eye(d, dtype=_F64, device=means.device).expand(k, d, d).clone()
        return cls(weights, means, eye, v.clone())

    @classmethod
    def low_rank(
        cls, weights: Tensor, means: Tensor, factors: Tensor, noise_variance: Tensor | float
    ) -> GaussianMixture:
        """``S_k = U_k U_k^T + s_k^2 I``: ``factors`` (K, d, r), ``noise_variance`` (K,) the ``s_k^2 > 0``.

        The data lie within a few ``s_k`` of the ``r``-dimensional affine subspaces ``mu_k + range(U_k)``.
        """
        means = _as_f64("means", means)
        k, d = cls._shape_of(means)
        u = _as_f64("factors", factors, means.device)
        if u.dim() != 3 or u.shape[:2] != (k, d):
            raise ValueError(f"factors has shape {tuple(u.shape)} but means implies ({k}, {d}, r)")
        s2 = _per_component("noise_variance", noise_variance, k, means.device)
        lam, vec = torch.linalg.eigh(u @ u.transpose(-1, -2))
        return cls(weights, means, vec, lam.clamp(min=0) + s2[:, None])

    @classmethod
    def random(
        cls,
        dim: int,
        modes: int,
        rank: int = 1,
        seed: int = 0,
        separation: float = 4.0,
        thickness: float = 0.05,
    ) -> GaussianMixture:
        """A reproducible multimodal test mixture near ``modes`` affine subspaces of dimension ``rank``.

        Means are spread by farthest-point selection in the cube ``[-0.6, 0.6]^dim``; each covariance is
        ``U_k U_k^T + s_k^2 I`` with ``U_k`` (dim, rank) spanning a random subspace with standard deviations
        ``tau * [0.5, 1]`` along it, and ``s_k = thickness * tau`` off it (a thin "manifold"). ``tau`` is
        chosen so the closest two means lie ``separation`` largest standard deviations apart (and
        ``tau <= 0.15``, keeping samples roughly in [-1, 1]). Weights are uniform in [0.5, 1.5], normalised.
        ``rank = 0`` gives isotropic components.
        """
        dim = check_positive_int("dim", dim)
        modes = check_positive_int("modes", modes)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= dim:
            raise ValueError(f"rank must be an integer in [0, dim={dim}], got {rank!r}")
        if not (isinstance(separation, (int, float)) and separation > 0):
            raise ValueError(f"separation must be a positive number, got {separation!r}")
        if not (isinstance(thickness, (int, float)) and thickness > 0):
            raise ValueError(f"thickness must be a positive number, got {thickness!r}")
        g = torch.Generator().manual_seed(int(seed))
        candidates = (torch.rand(256 * modes, dim, generator=g, dtype=_F64) * 2 - 1) * 0.6
        chosen = [0]
        closest = (candidates - candidates[0]).norm(dim=1)
        for _ in range(modes - 1):
            nxt = int(closest.argmax())
            chosen.append(nxt)
            closest = torch.minimum(closest, (candidates - candidates[nxt]).norm(dim=1))
        means = candidates[chosen]
        if modes > 1:
            gaps = torch.cdist(means, means) + torch.eye(modes, dtype=_F64) * 1e9
            tau = min(float(gaps.min()) / (separation * math.sqrt(1 + thickness**2)), 0.15)
        else:
            tau = 0.15
        basis, _ = torch.linalg.qr(torch.randn(modes, dim, dim, generator=g, dtype=_F64))
        scales = tau * (0.5 + 0.5 * torch.rand(modes, rank, generator=g, dtype=_F64))
        factors = basis[:, :, :rank] * scales[:, None, :]
        weights = 0.5 + torch.rand(modes, generator=g, dtype=_F64)
        noise_variance = torch.full((modes,), (thickness * tau) ** 2, dtype=_F64)
        return cls.low_rank(weights, means, factors, noise_variance)

    @staticmethod
    def _shape_of(means: Tensor) -> tuple[int, int]:
        if means.dim() != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {tuple(means.shape)}")
        return int(means.shape[0]), int(means.shape[1])

    # ----------------------------------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def covariances(self) -> Tensor:
        """``S_k`` (K, d, d) float64."""
        return (self.eigvecs * self.eigvals[:, None, :]) @ self.eigvecs.transpose(-1, -2)

    def mean(self) -> Tensor:
        """The mixture's mean ``sum_k w_k mu_k`` (d,) float64."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """The mixture's covariance ``sum_k w_k (S_k + mu_k mu_k^T) - m m^T`` (d, d) float64."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covariances)
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - torch.outer(m, m)

    def to(self, device: torch.device | str) -> GaussianMixture:
        """A copy on ``device`` (still float64)."""
        return GaussianMixture._unchecked(
            *(t.to(device=device, copy=True) for t in (self.weights, self.means, self.eigvecs, self.eigvals))
        )

    def __repr__(self) -> str:
        return f"GaussianMixture(dim={self.dim}, components={self.num_components}, device={self.device})"

    # ------------------------------------------------------------------------------------- input checking
    def _x(self, name: str, x: Tensor) -> Tensor:
        check_signal_shape(name, x, (self.dim,), "the mixture")
        return x.to(dtype=_F64, device=self.device)

    def _alpha_bar(self, alpha_bar: Tensor | float, batch: int) -> Tensor:
        """``alpha_bar`` as a (B,) float64 tensor in (0, 1]."""
        if isinstance(alpha_bar, Tensor):
            ab = alpha_bar.detach().to(dtype=_F64, device=self.device).reshape(-1)
            if ab.numel() == 1:
                ab = ab.expand(batch)
            if ab.numel() != batch:
                raise ValueError(
                    f"alpha_bar has {ab.numel()} values but the batch has {batch} samples; expected a number or (B,)"
                )
            if not bool(((ab > 0) & (ab <= 1)).all()):
                raise ValueError(f"alpha_bar must lie in (0, 1], got values in [{float(ab.min())}, {float(ab.max())}]")
            return ab
        value = check_unit_interval("alpha_bar", alpha_bar)
        return torch.full((batch,), value, dtype=_F64, device=self.device)

    # ------------------------------------------------------------------------------------ per-component
    def _components(self, x: Tensor, ab: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For x (B, d) float64 and ab (B,): the joint log ``log w_k + log N_k`` (B, K), the residual in the
        eigenbasis ``z = Q_k^T (x - sqrt(ab) mu_k)`` (B, K, d) and the eigenvalues of ``C_k(ab)`` (B, K, d).
        """
        c = ab[:, None, None] * self.eigvals + (1 - ab)[:, None, None]
        r = x[:, None, :] - ab.sqrt()[:, None, None] * self.means
        z = torch.einsum("kji,bkj->bki", self.eigvecs, r)
        log_n = -0.5 * ((z**2 / c).sum(-1) + c.log().sum(-1) + self.dim * _LOG_2PI)
        return self.weights.log() + log_n, z, c

    # -------------------------------------------------------------------------------------- densities
    def log_prob(self, x: Tensor, alpha_bar: Tensor | float = 1.0) -> Tensor:
        """``log p_t(x)`` (B,) of the noised mixture at level ``alpha_bar``; ``x`` (B, d)."""
        xd = self._x("x", x)
        joint, _, _ = self._components(xd, self._alpha_bar(alpha_bar, xd.shape[0]))
        return torch.logsumexp(joint, dim=1).to(device=x.device, dtype=_out_dtype(x))

    def responsibilities(self, x: Tensor, alpha_bar: Tensor | float = 1.0) -> Tensor:
        """``gamma_k(x) = P(component k | x_t = x)`` (B, K) at level ``alpha_bar``; rows sum to 1."""
        xd = self._x("x", x)
        joint, _, _ = self._components(xd, self._alpha_bar(alpha_bar, xd.shape[0]))
        return torch.softmax(joint, dim=1).to(device=x.device, dtype=_out_dtype(x))

    def _score(self, xd: Tensor, ab: Tensor) -> Tensor:
        joint, z, c = self._components(xd, ab)
        gamma = torch.softmax(joint, dim=1)
        return -torch.einsum("bk,kij,bkj->bi", gamma, self.eigvecs, z / c)

    def score(self, x: Tensor, alpha_bar: Tensor | float) -> Tensor:
        """``grad_x log p_t(x)`` (B, d) at level ``alpha_bar``; ``x`` (B, d)."""
        xd = self._x("x", x)
        s = self._score(xd, self._alpha_bar(alpha_bar, xd.shape[0]))
        return s.to(device=x.device, dtype=_out_dtype(x))

    def eps(self, x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
        """The exact noise prediction ``-sqrt(1 - ab) grad log p_t(x_t)`` (B, d); ``x_t`` (B, d)."""
        xd = self._x("x_t", x_t)
        ab = self._alpha_bar(alpha_bar, xd.shape[0])
        e = -(1 - ab).sqrt()[:, None] * self._score(xd, ab)
        return e.to(device=x_t.device, dtype=_out_dtype(x_t))

    def x0_mean(self, x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
        """Tweedie's exact posterior mean ``E[x_0 | x_t]`` (B, d) at level ``alpha_bar``; ``x_t`` (B, d)."""
        xd = self._x("x_t", x_t)
        ab = self._alpha_bar(alpha_bar, xd.shape[0])
        joint, z, c = self._components(xd, ab)
        gamma = torch.softmax(joint, dim=1)
        shrink = ab.sqrt()[:, None, None] * self.eigvals / c * z  # sqrt(ab) l / c in the eigenbasis
        per = self.means + torch.einsum("kij,bkj->bki", self.eigvecs, shrink)
        return torch.einsum("bk,bki->bi", gamma, per).to(device=x_t.device, dtype=_out_dtype(x_t))

    # ---------------------------------------------------------------------------------------- geometry
    def manifold_distance(self, x: Tensor) -> Tensor:
        """The Mahalanobis distance to the nearest component (B,):

            manifold_distance(x) = min_k sqrt((x - mu_k)^T S_k^{-1} (x - mu_k)).

        For a low-rank-plus-isotropic component this is about the distance off the subspace
        ``mu_k + range(U_k)`` divided by ``s_k``: 0 at a mean, a few units for typical samples, large far
        from every component's "manifold".
        """
        xd = self._x("x", x)
        z = torch.einsum("kji,bkj->bki", self.eigvecs, xd[:, None, :] - self.means)
        d2 = (z**2 / self.eigvals).sum(-1)
        return d2.min(dim=1).values.sqrt().to(device=x.device, dtype=_out_dtype(x))

    def nearest_component(self, x: Tensor) -> Tensor:
        """The most responsible component at ``alpha_bar = 1``, ``argmax_k gamma_k(x)`` (B,) int64."""
        xd = self._x("x", x)
        joint, _, _ = self._components(xd, self._alpha_bar(1.0, xd.shape[0]))
        return joint.argmax(dim=1).to(x.device)

    # ----------------------------------------------------------------------------------------- sampling
    def sample(self, rng: BatchRNG | int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Exact draws ``x`` (B, d) in ``dtype`` and their components (B,) int64, on the mixture's device.

        ``rng`` is a :class:`BatchRNG` (sample ``i`` uses only generator ``i``: one uniform for the component,
        then
        ``d`` normals) or a count ``n``, meaning ``BatchRNG.from_seed(seed, n)``.
        """
        if not isinstance(rng, BatchRNG):
            rng = BatchRNG.from_seed(seed, check_positive_int("n", rng))
        k, z = self._draws(rng)
        comp = _categorical(self.weights, k)
        noise = torch.einsum("bij,bj->bi", self.eigvecs[comp], self.eigvals[comp].sqrt() * z)
        return (self.means[comp] + noise).to(dtype), comp

    def _draws(self, rng: BatchRNG) -> tuple[Tensor, Tensor]:
        """Per sample, one uniform then ``d`` standard normals (float64), on the mixture's device."""
        u = rng.rand(1, dtype=_F64).reshape(-1).to(self.device)
        z = rng.randn(self.dim, dtype=_F64).to(self.device)
        return u, z

    # ---------------------------------------------------------------------------------------- posterior
    def posterior(self, matrix: Tensor, y: Tensor, sigma_y: float) -> GaussianMixturePosterior:
        """The exact posterior of ``x_0`` given ``y = A x_0 + sigma_y n``.

        ``matrix`` is ``A`` (m, d), ``y`` (B, m), ``sigma_y >= 0`` on the scale of ``y``; ``sigma_y = 0``
        needs every ``A S_k A^T`` nonsingular. The result holds per-sample weights and means and per-component
        covariances (see the module docstring).
        """
        sigma_y = check_nonnegative("sigma_y", sigma_y)
        a = _as_f64("matrix", matrix, self.device)
        if a.dim() != 2 or a.shape[1] != self.dim or a.shape[0] < 1:
            raise ValueError(f"matrix has shape {tuple(a.shape)} but the mixture expects (m, {self.dim})")
        m = int(a.shape[0])
        check_signal_shape("y", y, (m,), f"the matrix A {tuple(a.shape)}")
        out_dtype = _out_dtype(y)
        yd = y.to(dtype=_F64, device=self.device)

        s = self.covariances
        a_s = a @ s  # (K, m, d)
        gram = a_s @ a.T + sigma_y**2 * torch.eye(m, dtype=_F64, device=self.device)  # G_k (K, m, m)
        gram = 0.5 * (gram + gram.transpose(-1, -2))
        lam = torch.linalg.eigvalsh(gram)
        if sigma_y == 0 and bool((lam[:, 0] <= 1e-10 * lam[:, -1].clamp(min=1e-300)).any()):
            k = int((lam[:, 0] <= 1e-10 * lam[:, -1]).nonzero()[0])
            raise ValueError(
                f"sigma_y = 0 needs A S_k A^T nonsingular, but it is singular for component {k} "
                f"(A has shape {tuple(a.shape)}); use sigma_y > 0 or an A of full row rank m <= rank(S_k)"
            )
        chol = torch.linalg.cholesky(gram)
        resid = yd[:, None, :] - (self.means @ a.T)[None]  # (B, K, m)
        white = torch.linalg.solve_triangular(
            chol[None].expand(resid.shape[0], -1, -1, -1), resid[..., None], upper=False
        ).squeeze(-1)
        log_n = -0.5 * ((white**2).sum(-1) + m * _LOG_2PI) - chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        weights = torch.softmax(self.weights.log() + log_n, dim=1)
        g_inv_a_s = torch.cholesky_solve(a_s, chol)  # G_k^{-1} A S_k (K, m, d)
        means = self.means[None] + torch.einsum("kmd,bkm->bkd", g_inv_a_s, resid)
        cov = s - a_s.transpose(-1, -2) @ g_inv_a_s
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        return GaussianMixturePosterior(weights, means, cov, _sqrt_factor(cov), out_dtype)


class GaussianMixturePosterior:
    """The exact posterior mixture of a :class:`GaussianMixture` given measurements of ``B`` samples.

    Attributes (float64): ``weights`` (B, K) per-sample component probabilities, ``means`` (B, K, d)
    per-sample
    component means, ``covariances`` (K, d, d) component covariances (the same for every ``y``), and
    ``cov_factors`` (K, d, d) with ``L_k L_k^T = covariances[k]`` (the Cholesky factor where the covariance is
    positive definite, its symmetric square root where it is singular, e.g. ``sigma_y = 0``). Results are
    returned in ``dtype``, the measurement's dtype.
    """

    def __init__(
        self, weights: Tensor, means: Tensor, covariances: Tensor, cov_factors: Tensor, dtype: torch.dtype
    ) -> None:
        self.weights, self.means = weights, means
        self.covariances, self.cov_factors = covariances, cov_factors
        self.dtype = dtype

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    def most_likely_component(self) -> Tensor:
        """``argmax_k`` of the posterior weights (B,) int64."""
        return self.weights.argmax(dim=1)

    def mean(self) -> Tensor:
        """The posterior mean ``E[x_0 | y_i]`` (B, d)."""
        return torch.einsum("bk,bkd->bd", self.weights, self.means).to(self.dtype)

    def sample(self, rng: BatchRNG) -> Tensor:
        """One exact draw per measurement (B, d); sample ``i`` uses only generator ``i`` and ``y_i``."""
        if not isinstance(rng, BatchRNG) or len(rng) != len(self):
            got = len(rng) if isinstance(rng, BatchRNG) else type(rng).__name__
            raise ValueError(f"rng must be a BatchRNG with one generator per measurement ({len(self)}), got {got}")
        d = int(self.means.shape[-1])
        u = rng.rand(1, dtype=_F64).reshape(-1).to(self.weights.device)
        z = rng.randn(d, dtype=_F64).to(self.weights.device)
        comp = _categorical(self.weights, u)
        rows = torch.arange(len(self), device=comp.device)
        x = self.means[rows, comp] + torch.einsum("bij,bj->bi", self.cov_factors[comp], z)
        return x.to(self.dtype)


# ------------------------------------------------------------------------------------------------- prior
class GMMPrior(Prior):
    """The exact noise predictor of a :class:`GaussianMixture` on a ``schedule`` (default linear, T = 1000).

    ``predict(x_t, t)`` with ``x_t`` (B, d) and ``t`` (B,) int64 original timesteps returns
    ``eps(x_t, alpha_bar_t)`` in ``x_t``'s dtype. The mixture's tensors are buffers, kept in float64 by
    ``.to()``.
    """

    # buffers (registered in __init__), declared for the type checker
    weights: Tensor
    means: Tensor
    eigvecs: Tensor
    eigvals: Tensor
    alpha_bar_by_timestep: Tensor

    def __init__(self, mixture: GaussianMixture, schedule: Schedule | None = None) -> None:
        super().__init__()
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        self.schedule = schedule if schedule is not None else Schedule.linear()
        self.signal_shape = (mixture.dim,)
        for name in ("weights", "means", "eigvecs", "eigvals"):
            self.register_buffer(name, getattr(mixture, name).clone())
        # alpha_bar by original timestep (NaN where the schedule has no level for that timestep)
        tmap = self.schedule.timestep_map
        table = torch.full((int(tmap.max()) + 1,), float("nan"), dtype=_F64)
        table[tmap] = self.schedule.alphas_cumprod.to(_F64)
        self.register_buffer("alpha_bar_by_timestep", table)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> GMMPrior:
        super()._apply(fn, recurse)
        for name, buf in self._buffers.items():  # keep the exact computation in float64
            if buf is not None and buf.is_floating_point():
                self._buffers[name] = buf.to(_F64)
        return self

    @property
    def mixture(self) -> GaussianMixture:
        """The wrapped mixture, on this module's device."""
        return GaussianMixture._unchecked(self.weights, self.means, self.eigvecs, self.eigvals)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """``alpha_bar`` (B,) float64 for original integer timesteps ``t`` (B,)."""
        if not isinstance(t, Tensor) or t.dim() != 1 or t.is_floating_point() or t.is_complex():
            raise ValueError(f"t must be a (B,) integer tensor of timesteps, got {t!r:.60}")
        table = self.alpha_bar_by_timestep
        t = t.to(table.device)
        if bool(((t < 0) | (t >= table.numel())).any()):
            raise ValueError(f"t must lie in [0, {table.numel() - 1}], got {t.tolist()[:8]}")
        ab = table[t]
        if bool(ab.isnan().any()):
            raise ValueError(f"t holds timesteps the prior's schedule does not contain: {t.tolist()[:8]}")
        return ab

    def predict(self, x_t: Tensor, t: Tensor) -> PriorOutput:
        """``PriorOutput(eps)`` with ``eps`` (B, d) the exact noise prediction at ``alpha_bar_t``."""
        check_signal_shape("x_t", x_t, self.signal_shape, "the prior")
        ab = self.alpha_bar(t)
        if ab.shape[0] != x_t.shape[0]:
            raise ValueError(f"t has {ab.shape[0]} timesteps but x_t has {x_t.shape[0]} samples")
        return PriorOutput(self.mixture.eps(x_t, ab))
