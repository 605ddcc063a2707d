"""Packaging: PEP 621 metadata in pyproject.toml, one version, and the extras' rules that keep
both README commands installable with the pip that `python3 -m venv` brings and with the newest
pip (a PC never reaches pynq 3.x, whose 3.1.1 names its dependencies by git URL, which pip
refuses from PyPI). The extras are read from pyproject.toml (tomllib, Python 3.11+), else from
the installed distribution's metadata (what pip itself reads, built from the same file)."""
import importlib.metadata
import re
from pathlib import Path

import pytest

import sentei

Requirement = pytest.importorskip("packaging.requirements").Requirement
Version = pytest.importorskip("packaging.version").Version

ROOT = Path(__file__).resolve().parents[1]
PCS = [(machine, python) for machine in ("x86_64", "AMD64", "arm64") for python in ("3.9", "3.10", "3.11", "3.12")]
BOARDS = [("aarch64", "3.10"), ("armv7l", "3.10"), ("aarch64", "3.12")]  # PYNQ 3.0/3.1 images: Python 3.10
EXTRA = re.compile(r'(?:^| and )extra == "([\w-]+)"$')


def _installed():
    try:
        return importlib.metadata.distribution("sentei")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("sentei is not installed (pip install -e '.[dev]')")


def _extras():
    """{extra: {requirement}}: pyproject.toml's optional-dependencies, or else the installed
    sentei's, with the extra taken out of each marker."""
    try:
        import tomllib
    except ImportError:
        return _installed_extras()
    with open(ROOT / "pyproject.toml", "rb") as f:
        table = tomllib.load(f)["project"]["optional-dependencies"]
    return {name: {str(Requirement(r)) for r in reqs} for name, reqs in table.items()}


def _installed_extras():
    extras = {}
    for line in _installed().requires or []:
        name, _, marker = line.partition(";")
        found = EXTRA.search(marker.strip())
        if not found:
            continue
        rest = EXTRA.sub("", marker.strip()).strip()
        if rest.startswith("(") and rest.endswith(")"):
            rest = rest[1:-1]
        extras.setdefault(found.group(1), set()).add(str(Requirement(f"{name.strip()}; {rest}" if rest else name)))
    return extras


def _needs(extra, machine, python):
    """{name: SpecifierSet} that `pip install 'sentei[extra]'` asks for on that machine and Python."""
    env = {"platform_machine": machine, "python_version": python, "python_full_version": python + ".0"}
    out = {}
    for text in _extras()[extra]:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out.setdefault(req.name, []).append(req.specifier)
    return out


def _allows(specs, version):
    return all(Version(version) in spec for spec in specs)


def test_one_version_declared_once():
    """sentei.__version__ is the version; pyproject.toml takes it from there (PEP 621 dynamic)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\[project\]$', text, flags=re.M)
    assert re.search(r'^dynamic = \["version"\]$', text, flags=re.M)
    assert re.search(r'^version = \{attr = "sentei.__version__"\}$', text, flags=re.M)
    assert not re.search(r'^version = "', text, flags=re.M)
    for legacy in ("setup.py", "setup.cfg"):
        path = ROOT / legacy
        assert not path.exists() or not re.search(r"version|install_requires|extras_require", path.read_text()), \
            f"{legacy}: the metadata lives in pyproject.toml"
    assert importlib.metadata.version("sentei") == sentei.__version__ == _installed().version


def test_all_is_every_extra():
    extras = _extras()
    assert set(extras) == {"train", "board", "camera", "bench", "fast", "onnx", "dev", "all"}
    union = set().union(*(reqs for name, reqs in extras.items() if name != "all"))
    assert extras["all"] == union


@pytest.mark.parametrize("extra", ["board", "all"])
@pytest.mark.parametrize("machine, python", PCS)
def test_a_pc_gets_pynq_4_and_never_3(extra, machine, python):
    """Only pynq 4.0+ on a PC, and numpy < 2 said from the top so that no resolver takes numpy 2
    first and walks pynq back to 3.1.1 (git-URL dependencies: pip refuses the whole install)."""
    needs = _needs(extra, machine, python)
    assert _allows(needs["pynq"], "4.0.0")
    for old in ("3.1.2", "3.1.1", "3.0.1", "2.7.0"):
        assert not _allows(needs["pynq"], old)
    assert not _allows(needs["numpy"], "2.0.0") and _allows(needs["numpy"], "1.26.4")


@pytest.mark.parametrize("extra", ["board", "all"])
@pytest.mark.parametrize("python", ["3.13", "3.14"])
def test_a_pc_on_python_313_gets_no_pynq(extra, python):
    """pynq 4.0 pins numpy < 2 and grpcio 1.64.0: no wheels for Python 3.13; there the pynq tests skip."""
    needs = _needs(extra, "x86_64", python)
    assert "pynq" not in needs
    assert _allows(needs.get("numpy", []), "2.0.0")


@pytest.mark.parametrize("machine, python", BOARDS)
def test_a_board_keeps_the_pynq_of_its_image(machine, python):
    needs = _needs("board", machine, python)
    for image in ("3.0.1", "3.1.1", "3.1.2", "4.0.0"):
        assert _allows(needs["pynq"], image)
    assert not _allows(needs["numpy"], "2.0.0")


@pytest.mark.parametrize("python", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_the_hls_headers_come_on_every_python(python):
    """hls4ml ships ap_int.h; 1.x needs Python 3.10, 0.8.1 (same headers) serves 3.9."""
    specs = _needs("dev", "x86_64", python)["hls4ml"]
    if python == "3.9":
        assert _allows(specs, "0.8.1") and not _allows(specs, "1.0.0")
    else:
        assert _allows(specs, "1.3.0") and not _allows(specs, "0.8.1")


def test_torch_stays_pinned():
    assert _extras()["train"] >= {str(Requirement("torch>=2.3,<=2.13.0"))}


def test_every_package_folder_is_listed_for_a_plain_install():
    """`pip install .` (not -e) ships only the packages pyproject.toml lists: a sub-package left
    out installs fine and fails at import (sentei.host.bench.power once did, only outside CI's
    editable install)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in tool["package-dir"].items():
        base = root / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if all((base / Path(*rel.parts[:i]) / "__init__.py").is_file() for i in range(len(rel.parts) + 1)):
                found.add(".".join((name, *rel.parts)))
    assert found <= listed, sorted(found - listed)
