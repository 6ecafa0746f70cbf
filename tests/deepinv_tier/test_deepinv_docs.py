"""Every Python example in the docs (README.md, docs/*.md) that mentions deepinv runs as written against deepinv
0.5.0, each in a fresh namespace (so each is complete on its own), in a fresh folder; the main suite leaves out the
ones that import deepinv (``# not run by the tests: needs deepinv``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
        found += [(f"{doc.name}#{k}", code) for k, code in enumerate(blocks) if "deepinv" in code]
    return found


EXAMPLES = _examples()


def test_the_docs_hold_the_deepinv_examples() -> None:
    assert len(EXAMPLES) >= 3  # the adapter, the latent's terms, the hand-over to deepinv's DPS
    assert any("dinv.sampling.DPS" in code for _, code in EXAMPLES)


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_a_deepinv_example_runs(where: str, code: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "__example__"})  # our own documentation
    out = capsys.readouterr().out
    if "handover.time" in code and "dinv." not in code:
        assert "deepinv time 0.301, denoiser sigma 0.62 on [0, 1]" in out
    if "dinv.sampling.DPS" in code:
        low, high = map(float, re.findall(r"images in \[(-?[0-9.]+), (-?[0-9.]+)\]", out)[0])
        assert -0.25 <= low and high <= 1.25  # deepinv's [0, 1], not our [-1, 1]
    if "consistency" in code:
        before, after = map(float, re.findall(r"consistency ([0-9.]+) -> ([0-9.]+)", out)[0])
        assert before > 0 and after > 0
