"""What the benchmark's rows and reports say about each metric: the standard SSIM in new rows and the old variant
under its own name in old ones (never mixed), the chi-square shares per variant, a realism score a family can test,
verdicts from the declared family alone, and report.html's tables rendered from their data, each label over its own
column's values."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from reguidance.bench.records import read_results
from reguidance.bench.report import (
    OUTSIDE,
    format_markdown,
    primary_answer,
    read_run,
    summarise,
    write_report_html,
    write_summary,
)
from reguidance.conventions import InputError
from reguidance.evaluation import stats

ROOT = Path(__file__).resolve().parents[1]
scipy_stats = pytest.importorskip("scipy.stats")

Row = dict[str, object]


def _row(task: str, method: str, variant: str, i: int, **metrics: object) -> Row:
    """A results row as the runner writes it now (standard SSIM, marker, chi-square fields), metrics overridable."""
    row: Row = {
        "task": task,
        "method": method,
        "variant": variant,
        "reguidance": variant == "reguidance",
        "id": i,
        "psnr": 20.0,
        "ssim": 0.5,
        "ssim_padded": 0.6,
        "ssim_kind": "wang2004",
        "consistency": 1.0,
        "consistency_raw": 1.0,
        "reward": -1.0,
        "fit_z": 0.5,
        "fit_p": 0.6,
        "fit_dof": 16,
        "label": 0,
        "nfe": 3 if variant == "candidate" else 6,
        "sec_per_image": 0.25,
        "peak_mem_mb": 1.0,
    }
    row.update(metrics)
    return row


def _pairs(task: str, n: int, change: dict[str, list[float]], method: str = "dps") -> list[Row]:
    """``n`` candidate rows and ``n`` ReGuidance rows whose metrics differ by ``change[metric][i]``."""
    rows = []
    for i in range(n):
        rows.append(_row(task, method, "candidate", i))
        base = _row(task, method, "reguidance", i)
        rows.append({**base, **{m: float(base.get(m, 0.0)) + d[i] for m, d in change.items()}})  # type: ignore[arg-type]
    return rows


def _noise(n: int, sd: float, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return [float(v) for v in sd * torch.randn(n, generator=g, dtype=torch.float64)]


# ------------------------------------------------------------------------------------------------------ votes
def test_a_secondary_gain_does_not_vote_when_the_family_is_inconclusive():
    # PSNR +3 dB on every image (secondary, uncorrected: better); of the family, SSIM changes by noise wider than
    # its margin and |fit_z| not at all: the old rule said "helps"; only the family votes, so no clear change
    rows = _pairs("sr8", 30, {"psnr": [3.0] * 30, "ssim": _noise(30, 0.05, 1)})
    e = summarise(rows)["paired"][0]
    assert e["psnr"]["call"] == "better" and not e["psnr"]["primary"]
    assert e["ssim"]["primary"] and e["ssim"]["call"] == "inconclusive" and e["fit"]["call"] == "tie"
    assert e["voting"] == ["ssim", "fit"] and e["better"] == [] and e["verdict"] == "no clear change"


def test_a_secondary_loss_is_listed_but_does_not_make_a_family_gain_mixed():
    # SSIM +0.05 everywhere (family: better), class accuracy 30 of 30 right -> wrong (secondary: worse)
    rows = _pairs("sr8", 30, {"ssim": [0.05] * 30})
    for r in rows:
        r["pred"] = 0 if r["variant"] == "candidate" else 1
    summary = summarise(rows)
    e = summary["paired"][0]
    assert e["class_acc"]["call"] == "worse" and not e["class_acc"]["primary"]
    assert e["verdict"] == "helps" and e["worse"] == [] and e["worse_secondary"] == ["class_acc"]
    assert re.search(r"\| sr8 \| dps \| 30 \| 6 vs 3 \|.*\| helps \| — \|", format_markdown(summary))


def test_a_comparison_outside_the_family_gets_no_verdict():
    # box20c is outside the declared family: a clear SSIM gain is shown as better, uncorrected, and does not vote
    e = summarise(_pairs("box20c", 30, {"ssim": [0.05] * 30}))["paired"][0]
    assert e["ssim"]["call"] == "better" and not e["ssim"]["primary"]
    assert e["voting"] == [] and e["verdict"] == OUTSIDE


def test_the_family_verdicts_of_the_kept_fashion_mnist_records_differ_from_the_old_rule_in_four_of_25():
    # issue 29: counting only the declared family changes 4 of the 25 Fashion-MNIST family verdicts
    stored = json.loads((ROOT / "results/fashion_mnist-reference/summary.json").read_text())
    summary, _ = read_run(ROOT / "results/fashion_mnist-reference")
    family = [
        (old, new)
        for old, new in zip(stored["paired"], summary["paired"], strict=True)
        if stats.LEGACY_FAMILY.contains(new["task"], new["method"], new["against"], "fit")
    ]
    assert len(family) == 25
    assert sum(old["verdict"] != new["verdict"] for old, new in family) == 4


# -------------------------------------------------------------------------------- which SSIM a row holds
def test_new_rows_carry_the_standard_ssim_and_the_padded_one_under_its_own_name():
    from skimage.metrics import structural_similarity
    from torchmetrics.functional.image import structural_similarity_index_measure

    from reguidance.bench.runner import _rows_for
    from reguidance.operators import SuperResolution

    g = torch.Generator().manual_seed(0)
    op = SuperResolution((1, 32, 32), 4, sigma_y=0.1)  # m = 64
    truth = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    y = op(truth) + 0.1 * torch.randn(2, 1, 8, 8, generator=g)
    raw = truth + 0.3 * torch.randn(truth.shape, generator=g)
    x = raw.clamp(-1, 1)
    rows = _rows_for("sr4", "dps", "candidate", [4, 9], x, raw, truth, y, op, torch.tensor([1, 2]), None, 7, 0.1, 1.0)
    u, v = ((x.double() + 1) / 2).numpy(), ((truth.double() + 1) / 2).numpy()
    padded = structural_similarity_index_measure(torch.from_numpy(u), torch.from_numpy(v), reduction="none")
    assert isinstance(padded, torch.Tensor)
    for k, row in enumerate(rows):
        want = structural_similarity(
            u[k, 0], v[k, 0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        assert row["ssim"] == pytest.approx(want, abs=1e-9) and row["ssim_kind"] == "wang2004"
        assert row["ssim_padded"] == pytest.approx(float(padded[k]), abs=1e-9)
        q = float(op.residual_norm(raw[k : k + 1], y[k : k + 1])[0]) ** 2 / 0.1**2
        two_sided = min(1.0, 2 * min(scipy_stats.chi2.cdf(q, 64), scipy_stats.chi2.sf(q, 64)))
        assert row["fit_dof"] == 64 and row["fit_p"] == pytest.approx(two_sided)


def _legacy(row: Row) -> Row:
    """``row`` as the runner wrote it before the standard SSIM: its ``ssim`` was torchmetrics' variant."""
    old = {k: v for k, v in row.items() if k not in ("ssim_padded", "ssim_kind", "fit_p", "fit_dof")}
    return {**old, "ssim": row["ssim_padded"]}


def test_a_row_written_before_the_marker_is_read_with_its_ssim_as_the_padded_variant(tmp_path: Path):
    old = _legacy(_row("sr8", "dps", "candidate", 0, ssim_padded=0.81))
    new = _row("sr8", "dps", "candidate", 1, ssim=0.52, ssim_padded=0.83)
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    legacy, current = read_results(path)
    assert "ssim" not in legacy and legacy["ssim_padded"] == 0.81
    assert current["ssim"] == 0.52 and current["ssim_padded"] == 0.83


def test_old_and_new_rows_are_never_averaged_into_one_ssim(tmp_path: Path):
    # a folder resumed across the change: one image of each kind in the same (task, method, variant)
    path = tmp_path / "results.jsonl"
    old = _legacy(_row("sr8", "dps", "candidate", 0, ssim_padded=0.9))
    path.write_text(json.dumps(old) + "\n" + json.dumps(_row("sr8", "dps", "candidate", 1, ssim=0.4)) + "\n")
    row = summarise(read_results(path))["rows"][0]
    assert row["ssim"] is None  # the standard SSIM of one image is not a mean over two
    assert row["ssim_padded"]["mean"] == pytest.approx((0.9 + 0.6) / 2)  # the padded one: both images hold it


def test_a_row_naming_an_unknown_ssim_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_row("sr8", "dps", "candidate", 0, ssim_kind="ms-ssim")) + "\n")
    with pytest.raises(InputError, match=r"results.jsonl, row 1 holds an SSIM of kind 'ms-ssim'"):
        read_results(path)


def test_the_kept_records_are_re_derived_with_every_stored_statistic_and_no_standard_ssim():
    # results/ holds the issue-19 study's rows and summaries, written with torchmetrics' SSIM under "ssim"
    for name in ("mnist-reference", "fashion_mnist-equal"):
        stored = json.loads((ROOT / "results" / name / "summary.json").read_text())
        summary, _ = read_run(ROOT / "results" / name)
        assert all(e.get("ssim") is None for e in (*summary["rows"], *summary["paired"]))
        for old, new in zip(stored["paired"], summary["paired"], strict=True):
            for m in ("ssim", "fit", "psnr"):
                before, after = old[m], new["ssim_padded" if m == "ssim" else m]
                for key in ("mean", "ci95", "p_value", "p_holm", "p_tost_holm", "primary", "call"):
                    assert after.get(key) == before.get(key), (name, old["task"], old["against"], m, key)
            assert "median" in new["fit"] and "p_signed_rank" in new["fit"]
        assert [r["fd_cls"] for r in summary["rows"]] == [r["fd_cls"] for r in stored["rows"]]  # needs pictures


def test_the_answer_of_the_kept_records_names_the_padded_ssim_and_never_the_standard_one():
    text = primary_answer({"mnist-reference": ROOT / "results" / "mnist-reference"})
    header = next(line for line in text.splitlines() if line.startswith("| task |"))
    assert "ΔSSIM (padded) [95% CI]" in header and "| ΔSSIM [95% CI]" not in header


def test_a_legacy_summary_without_rows_is_renamed_and_its_verdicts_recounted(tmp_path: Path):
    test = {"n": 30, "mean": 0.1, "ci95": [0.0, 0.2], "p_value": 0.01, "p_tost": 0.9, "call": "better"}
    entry = {"task": "sr8", "method": "dps", "against": "candidate", "n": 30, "nfe": [6, 3], "verdict": "mixed"}
    entry |= {"ssim": {**test, "primary": True, "call": "inconclusive"}, "fit": {**test, "primary": True}}
    entry |= {"psnr": {**test, "primary": False, "call": "worse"}}  # the old rule counted this: "mixed"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"rows": [], "paired": [entry], "rule": "r", "min_n": 10}))
    config = {"protocol": "reference", "tuned": False, "seed": 0, "ids": ["0:30"]}
    (folder / "config.json").write_text(json.dumps(config))
    summary, _ = read_run(folder)
    e = summary["paired"][0]
    assert "ssim" not in e and e["ssim_padded"]["call"] == "inconclusive"
    assert e["verdict"] == "helps" and e["worse_secondary"] == ["psnr"]


# ------------------------------------------------------------------------ the chi-square check per variant
def test_the_shares_of_implausibly_small_and_large_residuals_are_counted_per_variant():
    rows = _pairs("sr8", 20, {})
    cand = [r for r in rows if r["variant"] == "candidate"]
    for k, r in enumerate(cand):  # 4 fit the noise (p < 0.05, fit_z < 0), 2 miss y (p < 0.05, fit_z > 0)
        r["fit_p"], r["fit_z"] = (0.01, -3.0) if k < 4 else (0.001, 4.0) if k < 6 else (0.5, 0.1)
    summary = summarise(rows)
    row = next(r for r in summary["rows"] if r["variant"] == "candidate")
    assert row["fit_small"]["mean"] == pytest.approx(4 / 20) and row["fit_large"]["mean"] == pytest.approx(2 / 20)
    lo, hi = row["fit_small"]["ci95"]  # Wilson's interval for 4 of 20 (by hand: 0.0807 to 0.4160)
    assert (lo, hi) == (pytest.approx(0.0807, abs=1e-4), pytest.approx(0.4160, abs=1e-4))
    other = next(r for r in summary["rows"] if r["variant"] == "reguidance")
    assert other["fit_small"]["mean"] == 0.0 and other["fit_large"]["mean"] == 0.0


def test_rows_written_before_the_chi_square_check_have_no_share():
    rows = [{k: v for k, v in r.items() if k != "fit_p"} for r in _pairs("sr8", 12, {})]
    assert all(r["fit_small"] is None and r["fit_large"] is None for r in summarise(rows)["rows"])


# -------------------------------------------------------------------------------------------- realism
def test_no_loss_of_realism_is_a_tie_when_the_realism_score_is_in_the_family():
    # knn_dist changes of sd 0.3 around 0 (margin 0.5), SSIM gains: with the realism score declared in a family,
    # TOST calls its change a tie and the verdict "helps" says no realism was lost; a realism loss votes "mixed"
    family = stats.Family(("dps",), ("candidate",), ("ssim", stats.REALISM), ())
    rows = _pairs("sr8", 40, {"ssim": [0.05] * 40, "knn_dist": [10.0 + d for d in _noise(40, 0.3, 5)]})
    for r in rows:
        r.setdefault("knn_dist", 10.0)  # the candidates' distance
    e = summarise(rows, family)["paired"][0]
    assert e["knn_dist"]["primary"] and e["knn_dist"]["call"] == "tie" and e["verdict"] == "helps"
    lost = [{**r, "knn_dist": float(r["knn_dist"]) + 2.0 * (r["variant"] == "reguidance")} for r in rows]  # type: ignore[arg-type]
    assert summarise(lost, family)["paired"][0]["verdict"] == "mixed"
    assert stats.MARGINS[stats.REALISM] == 0.5 and stats.REALISM in stats.MARGIN_RATIONALE


# ------------------------------------------------------------------------------------------ report.html
class _Tables(HTMLParser):
    """Every ``<table>`` of a page as (header cells, body rows), each cell's text as a reader sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            header, body = self.tables[-1]
            (header.extend if self._in_head else body.append)(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _run_folder(out: Path, n: int = 12) -> list[Row]:
    """A finished run by hand: ``n`` images of sr8 / dps with candidate, ReGuidance and renoise rows (every metric,
    the classifier's prediction and realism), and their pictures."""
    from PIL import Image

    rows = []
    for i in range(n):
        for k, variant in enumerate(("candidate", "reguidance", "renoise")):
            metrics: dict[str, object] = {
                "psnr": 15.0 + 0.5 * i + k,
                "ssim": 0.4 + 0.01 * i + 0.02 * k + 0.001 * (i % 3),
                "ssim_padded": 0.7 + 0.005 * i - 0.01 * k,
                "fit_z": (-1) ** i * (0.3 + 0.1 * i) + k,
                "fit_p": 0.01 if i % 4 == 0 else 0.4,
                "confidence": 0.9 - 0.01 * k,
                "knn_dist": 10.0 + 0.1 * i - 0.2 * k,
                "pred": i % 3,
                "label": i % 2,
                "nfe": [100, 160, 160][k],
                "sec_per_image": [1.5, 2.25, 2.0][k],
            }
            rows.append(_row("sr8", "dps", variant, i, **metrics))
            for kind in ("measurement", "truth", variant):
                path = out / "images" / "sr8" / "dps" / f"{i:05d}_{kind}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), 100).save(path)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _mean(rows: list[Row], variant: str, value: Callable[[Row], float]) -> float:
    return statistics.fmean(value(r) for r in rows if r["variant"] == variant)


def _f(r: Row, key: str) -> float:
    return float(r[key])  # type: ignore[arg-type]


def test_every_table_of_a_real_report_page_has_each_label_over_its_own_values(tmp_path: Path):
    out = tmp_path / "run"
    rows = _run_folder(out)
    page = _Tables()
    page.feed(write_report_html(out, write_summary(out)).read_text(encoding="utf-8"))
    assert len(page.tables) == 4  # the pictures, the means, ReGuidance minus candidate, minus renoise
    for header, body in page.tables:
        assert body and all(len(cells) == len(header) for cells in body), header
    pictures, means, *paired = page.tables
    assert pictures[0] == ["image", "measurement", "candidate", "+ReGuidance", "renoise+DPS", "truth"]

    # the means table: every value derived here from the rows, looked up by its label
    header, body = means
    for cells in body:
        col = dict(zip(header, cells, strict=True))
        v = col["variant"]
        assert (col["task"], col["method"], col["n"]) == ("sr8", "dps", "12")
        assert col["NFE"] == str({"candidate": 100, "reguidance": 160, "renoise": 160}[v])
        assert col["s/image"] == {"candidate": "1.50", "reguidance": "2.25", "renoise": "2.00"}[v]
        assert col["PSNR"].startswith(f"{_mean(rows, v, lambda r: _f(r, 'psnr')):.2f} [")
        assert col["SSIM"].startswith(f"{_mean(rows, v, lambda r: _f(r, 'ssim')):.3f} [")
        padded = _mean(rows, v, lambda r: _f(r, "ssim_padded"))
        assert col["SSIM (torchmetrics, padded)"].startswith(f"{padded:.3f} [")
        assert col["fit_z"].startswith(f"{_mean(rows, v, lambda r: _f(r, 'fit_z')):+.2f} [")
        assert col["|fit_z|"].startswith(f"{_mean(rows, v, lambda r: abs(_f(r, 'fit_z'))):.2f} [")
        small = _mean(rows, v, lambda r: float(_f(r, "fit_p") < 0.05 and _f(r, "fit_z") < 0))
        large = _mean(rows, v, lambda r: float(_f(r, "fit_p") < 0.05 and _f(r, "fit_z") > 0))
        assert col["residual implausibly small (χ², 5%)"].startswith(f"{small:.2f} [")
        assert col["residual implausibly large (χ², 5%)"].startswith(f"{large:.2f} [")
        assert col["class acc"].startswith(f"{_mean(rows, v, lambda r: float(r['pred'] == r['label'])):.2f} [")
        assert col["k-NN distance"].startswith(f"{_mean(rows, v, lambda r: _f(r, 'knn_dist')):.2f} [")

    # the paired tables: ReGuidance minus each rival, changes derived from the rows
    for (header, body), rival in zip(paired, ("candidate", "renoise"), strict=True):
        col = dict(zip(header, body[0], strict=True))
        assert (col["task"], col["method"], col["n"]) == ("sr8", "dps", "12")
        assert col["NFE"] == f"160 vs {100 if rival == 'candidate' else 160}"
        after = {r["id"]: r for r in rows if r["variant"] == "reguidance"}
        before = {r["id"]: r for r in rows if r["variant"] == rival}
        d_fit = [abs(_f(after[i], "fit_z")) - abs(_f(before[i], "fit_z")) for i in after]
        d_ssim = [_f(after[i], "ssim") - _f(before[i], "ssim") for i in after]
        assert col["Δ|fit_z|"].startswith(f"{statistics.fmean(d_fit):+.2f} [")
        assert f"median {statistics.median(d_fit):+.2f}" in col["Δ|fit_z|"]
        assert col["ΔSSIM"].startswith(f"{statistics.fmean(d_ssim):+.3f} [")
        wins = sum(d > 0 for d in d_ssim)
        assert f"; {wins}/0/{12 - wins};" in col["ΔSSIM"]
        assert col["verdict"] in ("helps", "equivalent", "no clear change", "mixed", "hurts")


def test_the_markdown_summary_has_as_many_cells_as_labels_in_every_row(tmp_path: Path):
    out = tmp_path / "run"
    _run_folder(out)
    text = format_markdown(write_summary(out))
    assert "\\|fit_z\\|" in text  # the label's bars escaped, so a Markdown reader keeps it in one cell
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
    assert len(tables) == 3
    for lines in tables:
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, lines[0]


def test_every_ssim_the_kept_records_report_is_named_as_the_padded_variant():
    from reguidance.bench.report import benchmark_tables

    runs = {name: ROOT / "results" / name for name in ("mnist-reference", "fashion_mnist-equal")}
    for line in (benchmark_tables(runs) + primary_answer(runs)).splitlines():
        if "; rule: " in line:  # the tuning rule as recorded (it says "SSIM"), followed by which SSIM that was
            assert line.endswith("The rule's SSIM is torchmetrics' padded variant, the one computed when it was tuned.")
            line = line.split("; rule: ")[0]
        assert not re.search(r"SSIM(?! \((padded|torchmetrics))", line), line
