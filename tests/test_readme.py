"""The README's Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path


def test_readme_python_examples_run(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    for k, code in enumerate(blocks):
        exec(compile(code, f"README.md (python block {k})", "exec"), namespace)  # our own documentation
    out = capsys.readouterr().out
    assert "manifold distance" in out
    residual = float(re.search(r"projection: residual ([0-9.]+) after 50 NFE", out).group(1))
    assert residual < 0.2  # the projection fits y; unguided sampling leaves about 0.8
