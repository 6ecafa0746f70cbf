"""deepinv interop: a deepinv-style Physics (duck-typed here; deepinv itself needs torchvision, which cannot be
imported beside this torch) becomes an operator on our [-1, 1] scale."""

import pytest
import torch

from reguidance.conventions import BatchRNG
from reguidance.guidance import daps, dps
from reguidance.interop import DeepinvOperator

try:  # the real package, where it can be installed
    import deepinv  # noqa: F401

    HAVE_DEEPINV = True
except Exception:  # ImportError, or torchvision failing beside this torch
    HAVE_DEEPINV = False


class Noise:
    sigma = 0.05


class Downsample:
    """deepinv's LinearPhysics interface on [0, 1] images: 2x2 average pooling."""

    noise_model = Noise()

    def A(self, x):
        return torch.nn.functional.avg_pool2d(x, 2)

    def A_adjoint(self, y):
        return torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest") / 4


class Square(Downsample):
    """A nonlinear physics: the squared pooled intensity."""

    def A(self, x):
        return torch.nn.functional.avg_pool2d(x, 2) ** 2

    A_adjoint = None


def test_a_linear_physics_is_the_same_linear_map_on_our_scale():
    op = DeepinvOperator(Downsample(), (1, 4, 4))
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    y_deepinv = Downsample().A(DeepinvOperator.image_to_deepinv(x))  # what deepinv measures (noise-free)
    torch.testing.assert_close(op.measurement_from_deepinv(y_deepinv), torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(op(x), torch.nn.functional.avg_pool2d(x, 2))
    assert op.linear and op.sigma_y == pytest.approx(0.1)  # noise std doubles with the scale
    v = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close((op(x) * v).sum(), (x * op.adjoint(v)).sum())


def test_a_nonlinear_physics_serves_dps_and_daps_but_has_no_adjoint(gmm_prior):
    from reguidance.priors.base import PriorOutput

    class ImagePrior:  # the 16-dimensional problem seen as 1x4x4 images; the mixture itself is 8-dimensional
        variance, schedule, signal_shape = "fixed_small", gmm_prior.schedule, (1, 4, 4)

        def predict(self, x_t, t):
            flat = x_t.flatten(1)
            eps = torch.cat([gmm_prior.predict(flat[:, :8], t).eps, gmm_prior.predict(flat[:, 8:], t).eps], 1)
            return PriorOutput(eps.reshape(x_t.shape))

    op = DeepinvOperator(Square(), (1, 4, 4))
    assert not op.linear
    y = op(torch.full((2, 1, 4, 4), 0.5, dtype=torch.float64))
    for method in (dps, daps):
        out = method(ImagePrior(), op, y, steps=4, rng=BatchRNG.from_seed(0, 2))
        assert out.x.shape == (2, 1, 4, 4) and torch.isfinite(out.x).all()
    with pytest.raises(ValueError, match="not linear"):
        op.adjoint(y)


@pytest.mark.skipif(not HAVE_DEEPINV, reason="deepinv cannot be imported here (it needs torchvision)")
def test_the_real_deepinv_downsampling_physics():
    import deepinv as dinv

    physics = dinv.physics.Downsampling(img_size=(1, 8, 8), factor=2, filter=None)
    op = DeepinvOperator(physics, (1, 8, 8), sigma_y=0.1)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(op.measurement_from_deepinv(physics.A((x + 1) / 2)), op(x))
