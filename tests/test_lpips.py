"""LPIPS from weight files: wiring checked against torchvision's AlexNet layout, loading checks, basic properties."""

import pytest
import torch
from torch import nn

from reguidance.evaluation.lpips import LPIPS

CHANNELS = (64, 192, 384, 256, 256)


def torchvision_layout_features() -> nn.Sequential:
    """torchvision's ``alexnet().features``, written out layer by layer (indices are the state-dict keys)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lpips")
    features = torchvision_layout_features()
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, root / "alexnet.pth")
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(CHANNELS)}
    torch.save(heads, root / "alex.pth")
    return root, features, heads


def reference_lpips(features, heads, x, y):
    """LPIPS as the lpips package computes it: slices [0:2], [2:5], [5:8], [8:10], [10:12] of the features."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    cuts = [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)]
    total = 0
    hx, hy = (x - shift) / scale, (y - shift) / scale
    for k, (a, b) in enumerate(cuts):
        hx, hy = features[a:b](hx), features[a:b](hy)
        nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + (heads[f"lin{k}.model.1.weight"] * (nx - ny) ** 2).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_matches_the_reference_computation_on_torchvisions_layout(weights):
    root, features, heads = weights
    metric = LPIPS(root / "alexnet.pth", root / "alex.pth", min_size=64)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1, torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        want = reference_lpips(features, heads, x, y)
    assert torch.allclose(metric(x, y), want, rtol=1e-4, atol=1e-6)
    assert torch.allclose(metric(x, x), torch.zeros(3), atol=1e-7)
    assert torch.allclose(metric(x, y), metric(y, x), atol=1e-6)
    assert torch.allclose(metric(x[1:2], y[1:2]), metric(x, y)[1:2], atol=1e-6)  # per image, whatever the batch


def test_grey_small_images_are_repeated_and_upsampled(weights):
    root, features, heads = weights
    metric = LPIPS(root / "alexnet.pth", root / "alex.pth", min_size=64)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1, torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    up = torch.nn.functional.interpolate
    with torch.no_grad():
        want = reference_lpips(
            features,
            heads,
            up(x, size=(64, 64), mode="bilinear").expand(-1, 3, -1, -1),
            up(y, size=(64, 64), mode="bilinear").expand(-1, 3, -1, -1),
        )
    assert torch.allclose(metric(x, y), want, rtol=1e-4, atol=1e-6)


def test_lpips_refuses_wrong_files(weights, tmp_path):
    root, *_ = weights
    with pytest.raises(FileNotFoundError, match="no file"):
        LPIPS(tmp_path / "missing.pth", root / "alex.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit AlexNet"):
        LPIPS(tmp_path / "bad.pth", root / "alex.pth")
    (tmp_path / "alexnet-owt-00000000.pth").write_bytes((root / "alexnet.pth").read_bytes())
    with pytest.raises(ValueError, match="sha256"):  # torchvision-style name whose hash prefix does not match
        LPIPS(tmp_path / "alexnet-owt-00000000.pth", root / "alex.pth")
    metric = LPIPS(root / "alexnet.pth", root / "alex.pth")
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 16, 16))
