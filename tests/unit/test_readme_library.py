"""The README's Python example is examples/library.py, which tests/e2e/test_library.py runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_example_the_e2e_test_runs() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python library") :]
    shown = section[section.index("```python\n") + len("```python\n") :]
    shown = shown[: shown.index("```\n")]
    example = (REPO / "examples" / "library.py").read_text()
    assert shown == example[example.index("import sys") :]
