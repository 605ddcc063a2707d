"""The README's two commands stay true: CI runs the README's test command verbatim."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line for block in blocks[:2] for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands():
    main, tests = _commands()[:2]
    assert "pip install" in main and "sentei " in main
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    tests = _commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
