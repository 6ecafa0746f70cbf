"""The README's Python examples run as written, in order, in one namespace (except a block whose first line is
``# not run by the tests``: it says why, e.g. it needs deepinv, whose examples ``make test-deepinv`` runs in its own
environment), in a fresh folder that holds what the first example reads: ``photos/``, two PNGs of the committed MNIST
test images."""

import re
from pathlib import Path

import numpy as np
from PIL import Image

NOT_RUN = "# not run by the tests"


def _write_photos(folder: Path) -> list[np.ndarray]:
    """Two 8-bit gray 32x32 PNGs (committed MNIST test images 0 and 1) in ``folder``; returns their pixels."""
    from reguidance.io.datasets import load_test_subset

    x, _, _ = load_test_subset("mnist")
    folder.mkdir()
    pixels = [((x[k, 0].numpy() + 1) * 127.5).round().astype(np.uint8) for k in (0, 1)]
    for name, arr in zip(("seven.png", "two.png"), pixels, strict=True):
        Image.fromarray(arr).save(folder / name)
    return pixels


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if not b.startswith(NOT_RUN)]
    assert len(blocks) >= 3
    photos = _write_photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for k, code in enumerate(blocks):
        exec(compile(code, f"README.md (python block {k})", "exec"), namespace)  # our own documentation
    out = capsys.readouterr().out
    # the image pipeline: one restoration per photo, same name, the prior's size, and closer to y than the candidate
    restored = sorted(p.name for p in (tmp_path / "restored").iterdir())
    assert restored == ["seven.png", "two.png"]
    for name, truth in zip(restored, photos, strict=True):
        with Image.open(tmp_path / "restored" / name) as img:
            assert img.size == (32, 32) and img.mode == "L"
            assert not np.array_equal(np.asarray(img), truth)  # restored from a 8x8 measurement, not copied
    fits = re.search(r"consistency ([0-9.]+) -> ([0-9.]+); restored/seven.png", out)
    assert fits is not None, out
    before, after = map(float, fits.groups())
    assert after < before
    # the mixture, the operators, a new method and the latent in deepinv's terms
    assert "manifold distance" in out
    assert "DiffPIR needs a linear operator" in out  # the Operators section's nonlinear sensor is refused
    projection = re.search(r"projection: residual ([0-9.]+) after 50 NFE", out)
    assert projection is not None, out
    residual = float(projection.group(1))
    assert residual < 0.2  # the projection fits y; unguided sampling leaves about 0.8
    # a latent inverted to t_end = 0.3 (chain level 300) starts deepinv 0.5's VP SDE at the time of its level
    assert "deepinv time 0.301, denoiser sigma 0.62 on [0, 1]" in out  # exp(-(0.1 t + 9.95 t^2)) = ab_300


def test_the_readme_states_the_operator_contract_by_class_not_by_duck_typing():
    text = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "any object with `A(x)`" not in text  # a plain object is refused: it must subclass Operator
    assert "subclasses `Operator` or `LinearOperator`" in text
