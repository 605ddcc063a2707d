"""The scripts under benchmarks/ are not a package: tests load them by path."""
import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    """The module ``benchmarks/<name>.py``, loaded afresh."""
    spec = importlib.util.spec_from_file_location(f"sentei_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
