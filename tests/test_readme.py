"""The README's Python examples run as written, in order, in one namespace (except a block whose first line is
``# not run by the tests``: it says why, e.g. it needs deepinv, which cannot be installed here)."""

import re
from pathlib import Path

NOT_RUN = "# not run by the tests"


def test_readme_python_examples_run(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if not b.startswith(NOT_RUN)]
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    for k, code in enumerate(blocks):
        exec(compile(code, f"README.md (python block {k})", "exec"), namespace)  # our own documentation
    out = capsys.readouterr().out
    assert "manifold distance" in out
    assert "DiffPIR needs a linear operator" in out  # the Operators section's nonlinear sensor is refused
    residual = float(re.search(r"projection: residual ([0-9.]+) after 50 NFE", out).group(1))
    assert residual < 0.2  # the projection fits y; unguided sampling leaves about 0.8
    # a latent inverted to t_end = 1 on the 1000-step linear chain is deepinv DPS's first state, t = 999
    assert "deepinv timestep 999, denoiser sigma 79 on [0, 1]" in out  # sqrt((1 - ab_999) / ab_999) / 2 = 78.7
