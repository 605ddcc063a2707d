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


def test_ci_runs_the_readme_test_command_under_the_newest_pip():
    """Issue 29: one CI stage upgrades pip in the venv that the README's test command then uses
    (its `python3 -m venv .venv` keeps an existing venv and its pip)."""
    tests = _commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    venv = re.match(r"python3 -m venv (\S+) && ", tests).group(1)
    at = ci.index(tests)
    upgrades = [i for i, line in enumerate(ci[:at]) if not line.lstrip().startswith("#")
                and re.search(rf"{re.escape(venv)}/bin/python -m pip install (-q )?-U pip\b", line)]
    assert upgrades, "no stage upgrades pip before the README's test command"
    between = ci[upgrades[-1] + 1:at]
    assert not [line for line in between if "rm -rf" in line or "deactivate" in line]
