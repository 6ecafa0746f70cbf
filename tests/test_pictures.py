"""Specification of the pictures people read: labelled grids (reguidance.io.pictures), the tradeoff plot, and the
static ``report.html`` of a benchmark run and of a restore run (reguidance.io.webpage), read back with the standard
library's HTML parser (no browser needed)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from reguidance.conventions import InputError
from reguidance.io.pictures import fit_text, labelled_grid, overview

# ------------------------------------------------------------------------------------------------ labelled grids


def _flat(values: list[int], h: int, w: int) -> torch.Tensor:
    """Gray images ``(len(values), 1, h, w)`` of the flat 8-bit levels ``values``, on the [-1, 1] scale."""
    u = torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, h, w)
    return u / 127.5 - 1


def test_a_labelled_grid_has_the_size_of_its_cells_gaps_and_label_strips() -> None:
    # 3 rows x 4 columns of 28 x 20 images: enlarged x5 (ceil(96 / 20)) to 140 x 100, 2-pixel gaps;
    # the longest row label "id 10" is 5 characters of 6 pixels plus 3 pixels either side: 36 pixels;
    # one 17-pixel line of column labels, two with a title
    x = _flat(list(range(12)), 28, 20)
    grid = labelled_grid(x, ["a", "b", "c", "d"], ["id 0", "id 1", "id 10"])
    assert grid.size == (36 + 4 * (100 + 2), 17 + 3 * (140 + 2))
    titled = labelled_grid(x, ["a", "b", "c", "d"], ["id 0", "id 1", "id 10"], title="box20 / dps")
    assert titled.size == (36 + 4 * 102, 2 * 17 + 3 * 142)


def test_large_images_are_not_enlarged_and_a_grid_without_row_labels_has_no_label_column() -> None:
    grid = labelled_grid(_flat([0, 0], 100, 120), ["x", "y"])
    assert grid.size == (2 * (120 + 2), 17 + 100 + 2)


def test_each_cell_holds_its_image_and_the_label_strips_hold_only_text() -> None:
    levels = [40, 60, 80, 100, 120, 140]  # 2 rows x 3 columns, row-major
    grid = np.asarray(labelled_grid(_flat(levels, 32, 32), ["measurement", "candidate", "truth"], ["id 0", "id 7"]))
    assert grid.shape == (17 + 2 * 98, 30 + 3 * 98)  # x3: 96-pixel cells; labels "id 0" / "id 7": 4 * 6 + 6
    left, top = 30, 17
    for j, level in enumerate(levels):
        r, k = divmod(j, 3)
        cell = grid[top + r * 98 : top + r * 98 + 96, left + k * 98 : left + k * 98 + 96]
        assert (cell == level).all()
    header, side = grid[:top], grid[:, :left]
    assert set(np.unique(header)) <= {0, 255} and set(np.unique(side)) <= {0, 255}  # black text on white
    for k in range(3):  # some text above every column, and the same for every row label
        assert (header[:, left + k * 98 : left + k * 98 + 96] == 0).any()
    for r in range(2):
        assert (side[top + r * 98 : top + r * 98 + 96] == 0).any()
    gaps = grid[top:, left + 96 : left + 98]  # the gap right of the first column
    assert (gaps == 255).all()


def test_a_small_image_is_enlarged_pixel_for_pixel() -> None:
    x = -torch.ones(1, 1, 24, 24)
    x[0, 0, 0, 1] = 1.0  # one white pixel, second column of the first row
    grid = np.asarray(labelled_grid(x, ["only"]))
    cell = grid[17 : 17 + 96, :96]  # x4
    assert (cell[:4, 4:8] == 255).all()
    assert cell.sum() == 16 * 255  # nothing else is white


def test_rgb_images_give_an_rgb_grid_with_their_colours() -> None:
    x = torch.tensor([0.0, -1.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 48, 48)  # (127.5 -> 128, 0, 255)
    grid = labelled_grid(x, ["a", "b"])
    assert grid.mode == "RGB"
    assert np.asarray(grid)[17 + 10, 10].tolist() == [128, 0, 255]


def test_labels_are_cut_to_their_space_and_drawn_in_latin_1() -> None:
    assert fit_text("measurement", 96) == "measurement"
    assert fit_text("a_very_long_column_label", 60) == "a_very_l.."  # 10 characters of 6 pixels
    assert fit_text("ok\u2603\n", 60) == "ok??"
    assert fit_text("é", 6) == "é"


def test_a_grid_refuses_labels_that_do_not_fit_the_images() -> None:
    with pytest.raises(InputError, match="5 images"):
        labelled_grid(_flat([0] * 5, 8, 8), ["a", "b"])
    with pytest.raises(InputError, match="row labels"):
        labelled_grid(_flat([0] * 4, 8, 8), ["a", "b"], ["only one"])


def test_an_overview_tiles_pictures_under_one_title() -> None:
    a, b, c = Image.new("L", (50, 40), 10), Image.new("L", (30, 60), 20), Image.new("L", (20, 20), 30)
    sheet = overview([a, b, c], "title", per_row=2)
    # columns as wide as their widest picture (50, 30), 8 pixels apart; rows as high as their highest (60, 20)
    assert sheet.size == (50 + 8 + 30, 17 + 60 + 8 + 20)
    pixels = np.asarray(sheet)
    assert pixels[17, 0] == 10 and pixels[17, 58] == 20 and pixels[17 + 68, 0] == 30
    assert overview([a], "t", titles=["a"]).size == (50, 17 + 17 + 40)


# ------------------------------------------------------------------------------------------------ tradeoff plot


def _summary_row(task: str, method: str, variant: str, consistency: float, ssim: float) -> dict[str, object]:
    return {
        "task": task,
        "method": method,
        "variant": variant,
        "reguidance": variant == "reguidance",
        "consistency": {"mean": consistency},
        "ssim": {"mean": ssim},
        "class_acc": None,
    }


@pytest.mark.slow  # 4-7 s on the shared 2-core machine, most of it importing matplotlib
def test_the_tradeoff_plot_keeps_all_its_text_inside_the_figure_without_overlaps(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from reguidance.bench.report import save_tradeoff_plot, tradeoff_figure

    rows = []
    for task in ("box20", "sr8", "paper:box128c"):
        for method in ("pinv", "dps", "daps"):  # every pair ends at the same point: labels there would collide
            rows.append(_summary_row(task, method, "candidate", 3.0, 0.2))
            rows.append(_summary_row(task, method, "reguidance", 1.0, 0.5))
    summary = {"rows": rows}
    fig = tradeoff_figure(summary)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    undrawn = set()  # labels of ticks outside the axes' view: matplotlib keeps but does not draw them
    for axes in fig.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in undrawn]
    boxes = [t.get_window_extent(renderer) for t in texts]
    frame = fig.bbox
    labels = {t.get_text() for t in texts}
    assert "SSIM" in labels and "method dps" in labels and "task paper:box128c" in labels
    for t, b in zip(texts, boxes, strict=True):
        assert frame.x0 - 0.5 <= b.x0 and b.x1 <= frame.x1 + 0.5, t.get_text()
        assert frame.y0 - 0.5 <= b.y0 and b.y1 <= frame.y1 + 0.5, t.get_text()
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            overlap = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
            assert overlap < 1.0, (texts[i].get_text(), texts[j].get_text())
    path = save_tradeoff_plot(summary, tmp_path / "tradeoff.png")
    with Image.open(path) as png:  # the whole figure, not cropped: 7.5 x 4.5 inches at 120 dpi
        assert png.format == "PNG" and png.size == (900, 540)


# ------------------------------------------------------------------------------------------------ report.html


class _Page(HTMLParser):
    """What a reader sees: image sources, table rows (their header cell's text and each cell's text), headings."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []
        self.headings: list[str] = []
        self.doctype = ""
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._head = ""
        self._heading: list[str] | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(str(dict(attrs)["src"]))
        elif tag == "tr":
            self._row, self._head = [], ""
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            text = " ".join(" ".join(self._cell).split())
            if tag == "th" and not self._row and not self._head:
                self._head = text
            else:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._head, self._row))
            self._row = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def _read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _png(path: Path, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), level).save(path)


TASK = 'mask:a<b&"c.png'  # a task spec with characters HTML must escape
FOLDER = 'mask_a<b&"c.png'  # its folder name (":" and "/" become "_")


def _bench_folder(out: Path) -> list[dict[str, object]]:
    """A benchmark folder by hand: 3 ids of one (task, method), rows with known metrics, every picture."""
    rows = []
    for i in (0, 3, 12):
        for k, variant in enumerate(("candidate", "reguidance")):
            rows.append(
                {
                    "task": TASK,
                    "method": "dps",
                    "variant": variant,
                    "reguidance": variant == "reguidance",
                    "id": i,
                    "psnr": 10.0 + i + 0.25 * k,
                    "ssim": 0.5 + 0.01 * i + 0.001 * k,
                    "ssim_padded": 0.6 + 0.01 * i + 0.001 * k,
                    "ssim_kind": "wang2004",
                    "consistency": 2.0 - 0.5 * k,
                    "consistency_raw": 2.0 - 0.5 * k,
                    "reward": -1.5 - k,
                    "label": 7,
                    "pred": 1 + k,
                    "nfe": 3 * (1 + k),
                    "sec_per_image": 0.1,
                    "peak_mem_mb": 1.0,
                    "run": "x",
                }
            )
        for kind in ("measurement", "candidate", "reguidance", "truth"):
            _png(out / "images" / FOLDER / "dps" / f"{i:05d}_{kind}.png", 100)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_the_bench_report_shows_every_image_with_its_metrics_and_the_summary(tmp_path: Path) -> None:
    from reguidance.bench.report import write_report_html, write_summary

    out = tmp_path / "run"
    rows = _bench_folder(out)
    summary = write_summary(out)
    path = write_report_html(out, summary)
    assert path == out / "report.html"
    page = _read_page(path)
    assert page.doctype.lower() == "doctype html"
    assert f"{TASK} / dps" in page.headings and "Summary" in page.headings
    for src in page.images:  # every picture is a file next to the page
        assert (out / unquote(src)).is_file(), src
    assert len(page.images) == 3 * 4
    header = next(cells for head, cells in page.rows if head == "image")
    assert header == ["measurement", "candidate", "+ReGuidance", "truth"]
    by_id = {head: cells for head, cells in page.rows if head.startswith("id ")}
    assert sorted(by_id) == ["id 0", "id 12", "id 3"]  # one row per image
    for r in rows:
        cells = by_id[f"id {r['id']}"]
        text = cells[1 if r["variant"] == "candidate" else 2]
        assert f"PSNR {r['psnr']:.2f} dB" in text and f"SSIM {r['ssim']:.3f}" in text
        assert f"consistency {r['consistency']:.2f}" in text and f"reward {r['reward']:.3g}" in text
        assert cells[3] == "class 7"
    assert any(TASK in cells for _, cells in page.rows)  # the summary table names the task, unescaped when read


def _restore_folder(out: Path, names: list[str], *, std: bool, truth: bool) -> dict[str, object]:
    kinds = ["measurement", "candidate", "restored", *(["std"] if std else []), *(["truth"] if truth else [])]
    images = []
    for n, name in enumerate(names):
        for k, kind in enumerate(kinds):
            _png(out / kind / name, 20 * k + n)
        images.append(
            {
                "name": name,
                "candidate": f"cands/{name}",
                "output": f"restored/{name}",
                "consistency_before": 3.0 + n,
                "consistency_after": 1.25 + n,
                "nfe": 12,
                **({"spread": 0.0625 * (n + 1)} if std else {}),
            }
        )
    return {"task": "box20", "config": {"t_end": 0.4}, "images": images}


@pytest.mark.parametrize(("std", "truth"), [(True, True), (False, False)])
def test_the_restore_report_and_grid_show_each_input_with_its_numbers(tmp_path: Path, std: bool, truth: bool) -> None:
    from reguidance.app.restore import save_pictures

    names = ['a<b&"c.png', "digit #1 é.png", "plain.png"]
    report = _restore_folder(tmp_path, names, std=std, truth=truth)
    grid, html_path = save_pictures(tmp_path, report)
    columns = 3 + std + truth
    # 8 x 8 images enlarged x12 to 96 x 96; row labels up to 14 characters ("digit #1 é.png"): 84 + 6 pixels
    with Image.open(grid) as picture:
        assert picture.size == (90 + columns * 98, 2 * 17 + 3 * 98)
    page = _read_page(html_path)
    for src in page.images:
        assert (tmp_path / unquote(src)).is_file(), src
    assert len(page.images) == 3 * columns
    header = next(cells for head, cells in page.rows if head == "image")
    optional = [*(["uncertainty"] if std else []), *(["truth"] if truth else [])]
    assert header == ["measurement", "candidate", "restored", *optional]
    by_name = {head: cells for head, cells in page.rows if head in names}
    assert list(by_name) == names  # one row per input, in input order, its name as typed
    for row in report["images"]:  # type: ignore[attr-defined]
        cells = by_name[row["name"]]
        assert f"consistency {row['consistency_before']:.2f}" in cells[1]
        assert f"consistency {row['consistency_after']:.2f}" in cells[2]
        if std:
            assert f"mean std {row['spread']:.3f}" in cells[3]


def test_an_overwrite_clears_the_pictures_and_pages_too(tmp_path: Path) -> None:
    from reguidance.app.runs import clear_outputs
    from reguidance.io.files import Manifest

    manifest = Manifest(tmp_path)  # what a run records as it writes: --overwrite removes exactly these
    for name in ("report.html", "grid.png"):
        (tmp_path / name).write_text("x")
        manifest.record(tmp_path / name)
    for folder in ("truth", "std"):
        _png(tmp_path / folder / "a.png", 0)
        manifest.record(tmp_path / folder / "a.png")
    (tmp_path / "mine.txt").write_text("kept")
    clear_outputs(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".reguidance")] == ["mine.txt"]
