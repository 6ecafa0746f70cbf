"""Metrics that do not reward fitting the noise: the chi-square fit statistic's null law, the k-NN realism score on
a toy feature set, and the new row fields of the benchmark runner."""

from __future__ import annotations

import math

import pytest
import torch

from reguidance.evaluation.classifier import (
    MetricClassifier,
    RealismScorer,
    confidence,
    knn_distance,
    reference_ids,
)
from reguidance.evaluation.metrics import fit_z
from reguidance.operators import Inpainting, MatrixOperator, SuperResolution


def test_fit_z_at_the_truth_has_mean_zero_and_variance_one():
    # y = A x0 + sigma n with n ~ N(0, I_m): ||y - A x0||^2 / sigma^2 is chi-square(m), mean m and variance 2m,
    # so fit_z = (chi2 - m) / sqrt(2 m) has mean 0 and variance 1, whatever the operator, sigma and m.
    g = torch.Generator().manual_seed(0)
    n_draws, sigma = 20_000, 0.05
    op = SuperResolution((1, 32, 32), 8, sigma_y=sigma)  # m = 16 measurements
    x0 = torch.rand(n_draws, 1, 32, 32, generator=g) * 2 - 1
    y = op(x0) + sigma * torch.randn(n_draws, 1, 4, 4, generator=g)
    z = fit_z(op.residual_norm(x0, y), sigma, op.num_measurements)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.05)  # se 1 / sqrt(20000) = 0.007
    assert float(z.var()) == pytest.approx(1.0, abs=0.08)  # se about 0.03 (chi-square(16) has heavy-ish tails)
    # skewness of chi-square(m) is sqrt(8 / m) = 0.71 for m = 16: the law is the chi-square's, not a normal's
    skew = float(((z - z.mean()) ** 3).mean() / z.var() ** 1.5)
    assert skew == pytest.approx(math.sqrt(8 / 16), abs=0.15)


def test_fit_z_null_law_holds_for_a_dense_matrix_and_per_sample_masks():
    g = torch.Generator().manual_seed(1)
    n_draws, sigma, m, d = 8_000, 0.3, 40, 60
    op = MatrixOperator(torch.randn(m, d, generator=g), sigma_y=sigma)
    x0 = torch.randn(n_draws, d, generator=g)
    y = op(x0) + sigma * torch.randn(n_draws, m, generator=g)
    z = fit_z(op.residual_norm(x0, y), sigma, op.num_measurements)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.06) and float(z.var()) == pytest.approx(1.0, abs=0.1)
    # inpainting with a different mask per sample: m differs per sample, the law does not
    mask = (torch.rand(n_draws, 1, 8, 8, generator=g) < 0.5).float()
    inp = Inpainting(mask, 0.1)
    x1 = torch.rand(n_draws, 1, 8, 8, generator=g) * 2 - 1
    y1 = (x1 + 0.1 * torch.randn(x1.shape, generator=g)) * mask
    z1 = fit_z(inp.residual_norm(x1, y1), 0.1, inp.num_measurements)
    assert float(z1.mean()) == pytest.approx(0.0, abs=0.06) and float(z1.var()) == pytest.approx(1.0, abs=0.1)


def test_fit_z_penalises_fitting_the_noise_and_missing_y():
    # an exact fit (residual 0) gives -m / sqrt(2 m) = -sqrt(m / 2); a residual of 3 sigma per entry gives 8m/sqrt(2m)
    m, sigma = 16, 0.05
    assert float(fit_z(torch.zeros(1), sigma, m)) == pytest.approx(-math.sqrt(m / 2))
    assert float(fit_z(torch.tensor([3 * sigma * math.sqrt(m)]), sigma, m)) == pytest.approx(8 * m / math.sqrt(2 * m))
    with pytest.raises(ValueError, match="sigma_y"):
        fit_z(torch.zeros(1), 0.0, m)


def test_knn_distance_on_a_toy_feature_set():
    reference = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    queries = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    # k = 1: nearest distances 0; 1 (to (1, 0)); 0
    assert knn_distance(queries, reference, k=1).tolist() == pytest.approx([0.0, 1.0, 0.0])
    # k = 2: (0 + 1) / 2; (1 + sqrt 2) / 2 ((1, 1) is sqrt 2 from both (0, 0) and (0, 2)); (5, 5)'s second
    # nearest is (0, 2) at sqrt(25 + 9) = sqrt 34 (then (1, 0) at sqrt 41, (0, 0) at sqrt 50)
    assert knn_distance(queries, reference, k=2).tolist() == pytest.approx(
        [0.5, (1 + math.sqrt(2)) / 2, math.sqrt(34) / 2]
    )
    with pytest.raises(ValueError, match="fewer than k"):
        knn_distance(queries, reference, k=5)


def test_reference_ids_are_a_fixed_sorted_subset():
    a, b = reference_ids(1000, size=50), reference_ids(1000, size=50)
    assert torch.equal(a, b) and len(set(a.tolist())) == 50 and torch.equal(a, a.sort().values)
    assert 0 <= int(a.min()) and int(a.max()) < 1000
    assert not torch.equal(a, torch.arange(50))  # drawn, not the first ids
    assert len(reference_ids(30, size=50)) == 30


def test_confidence_is_the_largest_class_probability():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # probabilities (1/4, 3/4) and (1/2, 1/2)
    assert confidence(logits).tolist() == pytest.approx([0.75, 0.5])


def test_realism_scorer_computes_the_reference_features_once():
    torch.manual_seed(0)
    model = MetricClassifier().eval()
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(12, 1, 32, 32, generator=g) * 2 - 1
    loads = []

    def load_reference():
        loads.append(1)
        return reference

    scorer = RealismScorer(model, load_reference, k=3)
    x = reference[:2]
    first, second = scorer.realism(x), scorer.realism(x)
    assert loads == [1]  # read once per run
    assert torch.equal(first["knn_dist"], second["knn_dist"])
    # a reference image's own distance to itself is 0, so its k-NN mean is 2/3 of its two other nearest
    with torch.no_grad():
        f_ref = model.features(reference).double()
        f_x = model.features(x).double()  # x alone, as the scorer sees it: a batch of 2, not of 12
        probs = model(x).softmax(-1)
    d = torch.cdist(f_ref[:2], f_ref).sort(dim=1).values[:, :3].mean(1)  # by brute force: sort all distances
    # float32 features of the same image in batches of 2 and of 12 may differ in their last bits (the kernels sum in
    # another order, e.g. under ATEN_CPU_CAPABILITY=default). Moving a point by delta moves each of its distances,
    # so the mean of its k nearest, by at most ||delta|| (triangle inequality); allow that, plus a few float32 ulps
    # of the features' norm for the scorer's own evaluation, and no more.
    slack = (f_x - f_ref[:2]).norm(dim=1) + 8 * torch.finfo(torch.float32).eps * f_x.norm(dim=1)
    assert ((first["knn_dist"] - d).abs() <= slack).all(), (first["knn_dist"], d, slack)
    assert slack.max() < 1e-4 * d.min()  # the allowance is rounding, far below the distances themselves
    assert first["confidence"].tolist() == pytest.approx(probs.max(-1).values.tolist(), rel=1e-6)
    assert set(RealismScorer(model).realism(x)) == {"confidence"}  # no reference set: no k-NN distance


def test_runner_rows_carry_fit_z_and_realism_and_keep_the_old_fields(tmp_path):
    from reguidance.bench.runner import BenchSpec, read_results, run_bench
    from reguidance.diffusion import Schedule
    from reguidance.priors.adm import ADMPrior, ADMUNet
    from reguidance.tasks import get_task
    from reguidance.wrapper import ReGuidance

    torch.manual_seed(0)
    unet = ADMUNet(
        image_size=32,
        in_channels=1,
        model_channels=32,
        out_channels=1,
        num_res_blocks=1,
        attention_resolutions=[],
        channel_mult=(1, 2),
        num_head_channels=32,
    )
    prior = ADMPrior(unet, Schedule.linear()).eval()
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1, torch.arange(2)
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    spec = BenchSpec(tasks=["box16"], methods=["pinv"], ids=range(2), seed=3, batch_size=2, reguidance=cfg)
    scorer = RealismScorer(MetricClassifier().eval(), images, k=1)
    run_bench(prior, images, labels, spec, tmp_path, classifier=scorer, progress=False)
    rows = {(r["variant"], r["id"]): r for r in read_results(tmp_path / "results.jsonl")}
    op, _ = get_task("box16").measure(images, [0, 1], 3, split="test")
    for i in range(2):
        cand = rows[("candidate", i)]
        # the pseudo-inverse puts y on the observed pixels: before the clamp its residual is 0, fit_z = -sqrt(m/2)
        m = int(op.num_measurements[i]) if isinstance(op.num_measurements, torch.Tensor) else op.num_measurements
        assert cand["fit_z"] == pytest.approx(-math.sqrt(m / 2), rel=1e-4)
        for r in (cand, rows[("reguidance", i)]):
            assert 0.1 <= r["confidence"] <= 1.0 and r["knn_dist"] >= 0.0
            assert {"psnr", "ssim", "consistency", "consistency_raw", "reward", "pred", "label", "nfe"} <= set(r)
