"""The README's Python example runs as written."""

from pathlib import Path


def test_readme_python_example_runs(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    start = text.index("```python") + len("```python")
    code = text[start : text.index("```", start)]
    exec(compile(code, "README.md", "exec"), {})  # our own documentation
    assert "manifold distance" in capsys.readouterr().out
