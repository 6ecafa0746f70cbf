r"""Metric classifiers for MNIST, Fashion-MNIST and the emoji, and FD-cls, the Frechet distance of their features.

Classifier. A small CNN on ``x: (B, C, 32, 32)`` in [-1, 1] (C = 1, or 3 for the colour emoji):

    conv3x3(32) BN ReLU maxpool -> conv3x3(64) BN ReLU maxpool -> conv3x3(128) BN ReLU maxpool    (4x4x128)
    -> linear(2048, 128) ReLU  = the *features* phi(x) (128-d)  -> dropout -> linear(128, K) = logits

trained with cross-entropy on the ``train`` split, the epoch with the best ``val`` accuracy kept. K is the number of
classes: the 10 digits or clothes, or the emoji's 8 categories (:data:`reguidance.io.emoji.CATEGORIES`, with
horizontal flips, as the emoji prior is trained).

FD-cls. For two image sets with feature means ``m1, m2`` and covariances ``S1, S2`` (Gaussian fits of ``phi``),

    FD-cls = ||m1 - m2||^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}),

the Frechet (2-Wasserstein) distance between the two Gaussians. ``tr((S1 S2)^{1/2})`` is computed as the sum of
the square roots of the (clamped non-negative) eigenvalues of the symmetric ``S1^{1/2} S2 S1^{1/2}``, in float64,
with torch alone. It is *not* FID: the features are our classifier's, not Inception's, so values are comparable
only with other FD-cls values from the same classifier; the "floor" is FD-cls between two disjoint halves of the
real test set of the same size as the sample set.

Realism per image. Two scores of one restoration ``x``, both from this classifier: its *confidence*
``max_c softmax(logits(x))_c`` (a digit the classifier can name), and its *k-NN distance*
``(1/k) sum_{j <= k} ||phi(x) - phi(r_(j))||_2``, the mean feature distance to its ``k`` (:data:`KNN_K`) nearest
images ``r_(j)`` of a fixed reference set of training images (:func:`reference_ids`: :data:`REFERENCE_SIZE`
training ids drawn by a seeded permutation, the same for every run; their features computed once per run and held
in memory by :class:`RealismScorer`). Lower is closer to the training data. Like FD-cls, both are comparable only
between runs with the same classifier.

Committed classifiers (``assets/models/<name>_classifier.safetensors``) are loaded with :func:`load_classifier`,
which checks the recorded sha256.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..conventions import ASSETS_DIR, check_positive, check_positive_int, check_signal_shape
from ..io.hashing import check_sha256, sha256_file

__all__ = [
    "CLASSIFIERS",
    "KNN_K",
    "REFERENCE_SIZE",
    "MetricClassifier",
    "RealismScorer",
    "classifier_features",
    "confidence",
    "evaluate_samples",
    "fd_cls",
    "frechet_distance",
    "gaussian_fit",
    "knn_distance",
    "load_classifier",
    "predict",
    "reference_ids",
    "train_classifier",
]

ASSETS_MODELS = ASSETS_DIR / "models"

#: committed classifiers: asset file under ``assets/models/``, its sha256, and the test accuracy measured after
#: training (``reguidance train-classifier``; see the model cards ``assets/models/<name>.md``)
CLASSIFIERS: dict[str, dict[str, Any]] = {
    "mnist": {
        "asset": "mnist_classifier.safetensors",
        "sha256": "619e20a738e21f7d564d423092112bcfa7249c545d5948410450ff4d9be0d15c",
        "test_accuracy": 0.9939,
    },
    "fashion_mnist": {
        "asset": "fashion_mnist_classifier.safetensors",
        "sha256": "3f0339c1f08899feb676a5c6464e11d3b3fcd0380531c4f1bf931c733bd10400",
        "test_accuracy": 0.9267,
    },
    "emoji": {
        "asset": "emoji_classifier.safetensors",
        "sha256": "8fdf32aa07f076f3fd661e44ded8305ab2b6d45f4a3186fe16d8c5da32ec42b8",
        "test_accuracy": 0.7989,
    },
}


class MetricClassifier(nn.Module):
    """The metric CNN on ``(B, in_channels, 32, 32)`` images; :meth:`features` gives the 128-d penultimate features,
    :meth:`forward` the ``num_classes`` logits."""

    feature_dim = 128

    def __init__(self, num_classes: int = 10, dropout: float = 0.3, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
            )

        self.body = nn.Sequential(block(in_channels, 32), block(32, 64), block(64, 128), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(128 * 4 * 4, self.feature_dim), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """``phi(x)`` (B, 128) for ``x: (B, in_channels, 32, 32)`` in [-1, 1]."""
        check_signal_shape("x", x, (self.in_channels, 32, 32), "the classifier")
        return self.fc(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes)."""
        return self.head(self.drop(self.features(x)))


# --------------------------------------------------------------------------------------------------- inference
@torch.no_grad()
def _batched(fn: Any, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([fn(x[k : k + batch_size]) for k in range(0, len(x), batch_size)])


def classifier_features(model: MetricClassifier, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Features (N, 128) float64 of ``x: (N, C, 32, 32)`` in [-1, 1] (model in eval mode)."""
    model.eval()
    return _batched(model.features, x, batch_size).double()


def predict(model: MetricClassifier, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Class probabilities (N, K) of ``x: (N, C, 32, 32)`` in [-1, 1]."""
    model.eval()
    return _batched(lambda b: model(b).softmax(-1), x, batch_size)


# ----------------------------------------------------------------------------------------------------- realism
#: neighbours averaged by the k-NN realism score
KNN_K = 5
#: training images in the k-NN reference set (about 200 per class; their features cost a few seconds on one CPU
#: core), and the seed of the permutation that draws them
REFERENCE_SIZE = 2000
REFERENCE_SEED = 0


def confidence(logits: Tensor) -> Tensor:
    """The classifier's confidence per image (B,): the largest class probability of ``logits: (B, classes)``."""
    return logits.detach().double().softmax(-1).max(-1).values


def knn_distance(features: Tensor, reference: Tensor, k: int = KNN_K) -> Tensor:
    """Mean Euclidean distance (B,) from each row of ``features: (B, D)`` to its ``k`` nearest rows of
    ``reference: (N, D)``, N >= k (float64; ties do not matter, only distances are kept)."""
    check_positive_int("k", k)
    if reference.dim() != 2 or features.dim() != 2 or reference.shape[1] != features.shape[1]:
        raise ValueError(f"features {tuple(features.shape)} and reference {tuple(reference.shape)} must be (*, D)")
    if reference.shape[0] < k:
        raise ValueError(f"the reference set has {reference.shape[0]} rows, fewer than k = {k}")
    distances = torch.cdist(features.double(), reference.double())
    return distances.topk(k, dim=1, largest=False).values.mean(1)


def reference_ids(n_train: int, size: int = REFERENCE_SIZE, seed: int = REFERENCE_SEED) -> Tensor:
    """The training ids of the k-NN reference set, sorted: the first ``min(size, n_train)`` of a permutation of
    ``0 .. n_train - 1`` drawn by a CPU generator seeded with ``seed`` (the same on every machine)."""
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    return perm[: min(size, n_train)].sort().values


class RealismScorer:
    """The metric classifier with its reference features: called on images it returns logits (so it serves wherever
    a classifier does); :meth:`realism` gives the per-image confidence and k-NN distance.

    ``reference`` is the reference images ``(N, 1, 32, 32)`` in [-1, 1] or a function returning them (None: no
    reference set, so no k-NN distance); it is called and its features computed at the first :meth:`realism`, then
    held for the run.
    """

    def __init__(self, model: MetricClassifier, reference: Tensor | Any | None = None, k: int = KNN_K) -> None:
        self.model = model
        self.k = k
        self._reference = reference
        self._bank: Tensor | None = None

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, x: Tensor) -> Tensor:
        """Logits (B, 10) on the CPU of ``x: (B, 1, 32, 32)`` in [-1, 1]."""
        with torch.no_grad():
            return self.model(x.to(self._device(), torch.float32)).cpu()

    def features(self, x: Tensor) -> Tensor:
        """Features (B, 128) float64 on the CPU."""
        return classifier_features(self.model, x.to(self._device(), torch.float32)).cpu()

    def bank(self) -> Tensor | None:
        """The reference set's features (N, 128), computed once; None without a reference set."""
        if self._bank is None and self._reference is not None:
            images = self._reference if isinstance(self._reference, Tensor) else self._reference()
            self._bank = None if images is None else self.features(images)
            self._reference = None
        return self._bank

    def realism(self, x: Tensor) -> dict[str, Tensor]:
        """``{"confidence": (B,), "knn_dist": (B,)}`` of ``x: (B, 1, 32, 32)`` in [-1, 1] (``knn_dist`` only with
        a reference set)."""
        out = {"confidence": confidence(self(x))}
        bank = self.bank()
        if bank is not None:
            out["knn_dist"] = knn_distance(self.features(x), bank, self.k)
        return out


# ------------------------------------------------------------------------------------------------------ FD-cls
def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D), float64, of ``features: (N, D)``, N >= 2."""
    f = features.double()
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"features has shape {tuple(f.shape)} but (N, D) with N >= 2 is expected")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def _sqrtm_psd(s: Tensor) -> Tensor:
    evals, evecs = torch.linalg.eigh((s + s.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """``||mu1 - mu2||^2 + tr(s1 + s2 - 2 (s1^1/2 s2 s1^1/2)^1/2)`` for Gaussians ``N(mu1, s1)``, ``N(mu2, s2)``."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    tr_cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_cross
    return float(value.clamp(min=0))


def fd_cls(model: MetricClassifier, x: Tensor, y: Tensor) -> float:
    """FD-cls between image sets ``x: (N, C, 32, 32)`` and ``y: (M, C, 32, 32)`` in [-1, 1] (N, M >= 2)."""
    return frechet_distance(*gaussian_fit(classifier_features(model, x)), *gaussian_fit(classifier_features(model, y)))


def evaluate_samples(model: MetricClassifier, samples: Tensor, test_images: Tensor) -> dict[str, Any]:
    """Sample quality of ``samples: (N, C, 32, 32)`` against ``test_images: (M, C, 32, 32)``, both in [-1, 1].

    Returns ``fd_cls`` (samples vs all test images), ``fd_cls_floor`` (FD-cls between the first ``n`` and the next
    ``n`` test images, ``n = min(N, 5000, M // 2)``), ``fd_cls_matched`` (the first ``n`` samples vs the same next
    ``n`` test images: the number to set beside the floor, both sets the same size, since small sets bias FD-cls
    upwards), ``class_histogram`` (fraction of samples per predicted class) and ``mean_confidence`` (mean of the
    largest class probability).
    """
    n = min(len(samples), 5000, len(test_images) // 2)
    if n < 2:
        raise ValueError(f"need at least 2 samples and 4 test images, got {len(samples)} and {len(test_images)}")
    f_test = classifier_features(model, test_images)
    f_samples = classifier_features(model, samples)
    g_test = gaussian_fit(f_test)
    probs = predict(model, samples)
    hist = torch.bincount(probs.argmax(-1), minlength=model.num_classes).double() / len(samples)
    return {
        "fd_cls": frechet_distance(*gaussian_fit(f_samples), *g_test),
        "fd_cls_floor": frechet_distance(*gaussian_fit(f_test[:n]), *gaussian_fit(f_test[n : 2 * n])),
        "fd_cls_matched": frechet_distance(*gaussian_fit(f_samples[:n]), *gaussian_fit(f_test[n : 2 * n])),
        "floor_size": n,
        "n_samples": len(samples),
        "class_histogram": [round(float(h), 4) for h in hist],
        "mean_confidence": float(probs.max(-1).values.mean()),
    }


# ---------------------------------------------------------------------------------------------------- training
def accuracy(model: MetricClassifier, x: Tensor, labels: Tensor) -> float:
    """Fraction of ``x`` whose most probable class is ``labels``."""
    return float((predict(model, x).argmax(-1) == labels).double().mean())


def train_classifier(
    dataset: str,
    out: str | os.PathLike[str],
    *,
    epochs: int = 6,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    bf16: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the metric CNN on ``dataset``'s train split, keep the best epoch on ``val``, report ``test`` accuracy.

    Writes ``out/<dataset>_classifier.safetensors`` and ``out/<dataset>_classifier.json`` (the facts returned).
    AdamW, learning rate on a cosine from ``lr`` to 0 over all steps, data order from ``seed``.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive("lr", lr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ..io.datasets import load_dataset

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (load_dataset(dataset, s) for s in ("train", "val", "test"))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed + 1)
    flips = dataset == "emoji"  # as the emoji prior is trained: a mirrored emoji is the same category
    model = MetricClassifier(int(y_train.max()) + 1, in_channels=x_train.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = len(x_train) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.15)
    best: dict[str, Any] = {"val_accuracy": -1.0}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        bar = tqdm(range(per_epoch), disable=not progress, desc=f"{dataset} epoch {epoch + 1}/{epochs}")
        for k in bar:
            idx = perm[k * batch_size : (k + 1) * batch_size]
            x = x_train[idx]
            if flips:
                mirror = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if k % 50 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        val_acc = accuracy(model, x_val, y_val)
        if progress:
            print(f"{dataset} epoch {epoch + 1}: val accuracy {val_acc:.4f}", flush=True)
        if val_acc > best["val_accuracy"]:
            state = {k: v.clone() for k, v in model.state_dict().items()}
            best = {"val_accuracy": val_acc, "epoch": epoch + 1, "state": state}
    model.load_state_dict(best.pop("state"))
    path = out / f"{dataset}_classifier.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    facts = {
        "dataset": dataset,
        **best,
        "test_accuracy": accuracy(model, x_test, y_test),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "wall_s": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
        "file": str(path),
        "sha256": sha256_file(path),
    }
    (out / f"{dataset}_classifier.json").write_text(json.dumps(facts, indent=2))
    return facts


# ----------------------------------------------------------------------------------------------------- loading
def load_classifier(name: str, path: str | os.PathLike[str] | None = None) -> MetricClassifier:
    """The committed metric classifier of dataset ``name`` (eval mode, frozen), checked against its sha256.

    ``path`` loads a classifier file of the same architecture instead (no sha256 check).
    """
    from safetensors.torch import load_file

    if path is None:
        if name not in CLASSIFIERS:
            known = ", ".join(sorted(CLASSIFIERS)) or "(none)"
            raise ValueError(f"no committed classifier for {name!r}; known: {known}")
        entry = CLASSIFIERS[name]
        asset = ASSETS_MODELS / entry["asset"]
        if not asset.is_file():
            raise FileNotFoundError(f"the classifier asset {asset} is missing from this build")
        remedy = "the package file is corrupt; reinstall reguidance"
        check_sha256(str(asset), sha256_file(asset), entry["sha256"], remedy)
        path = asset
    weights = load_file(str(path))  # its first convolution and last layer give the channels and classes
    channels, classes = int(weights["body.0.0.weight"].shape[1]), int(weights["head.weight"].shape[0])
    model = MetricClassifier(classes, in_channels=channels)
    model.load_state_dict(weights)
    return model.eval().requires_grad_(False)
