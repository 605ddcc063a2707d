"""Input from outside -- model files, camera URLs, file names -- is data, never code.

A static scan of the package's sources for the ways Python runs code from data (pickle,
``torch.load`` without ``weights_only=True``, ``np.load(allow_pickle=True)``, ``eval``/``exec``,
``yaml.load`` without a safe loader, a shell), and a fuzz of the camera source parser.
"""
import ast
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentei.errors import SenteiError
from sentei.host.runtime import camera

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("sentei", "host", "overlay", "training", "notebooks", "benchmarks")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _sources():
    for folder in PACKAGE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")
        for path in sorted((REPO / folder).rglob("*.ipynb")):
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            # IPython magics (%matplotlib inline) are not Python: scanned as comments; a shell
            # escape (!cmd) is reported
            lines = [("# " + line) if line.lstrip().startswith("%") else
                     ("os.system(shell_escape)" if line.lstrip().startswith("!") else line)
                     for line in code.splitlines()]
            yield path, "\n".join(lines)


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""  # a method of some computed object (net.to(dev).eval()): not a module function
    parts.append(node.id)
    return ".".join(reversed(parts))


def unsafe_calls(source: str) -> list[str]:
    """Where ``source`` could run code taken from data; empty when it cannot."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where}: from {node.module} import ...")
            if node.module == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from torch import load (call torch.load(..., weights_only=True))")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("eval", "exec", "compile", "__import__"):
                found.append(f"{where}: {name}()")
            elif name == "torch.load" and not _is_true(_kw(node, "weights_only")):
                found.append(f"{where}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and _is_true(_kw(node, "allow_pickle")):
                found.append(f"{where}: {name}(allow_pickle=True)")
            elif name in ("yaml.load", "yaml.load_all") and "Safe" not in ast.unparse(_kw(node, "Loader") or
                                                                                      ast.Constant(None)):
                found.append(f"{where}: {name} without SafeLoader (use yaml.safe_load)")
            elif name in ("yaml.unsafe_load", "yaml.full_load", "os.system", "os.popen"):
                found.append(f"{where}: {name}()")
            elif name.startswith("subprocess.") and _is_true(_kw(node, "shell")):
                found.append(f"{where}: {name}(shell=True)")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = """
import pickle
from torch import load
torch.load(p)
torch.load(p, weights_only=False)
np.load(p, allow_pickle=True)
eval(text)
exec(code)
yaml.load(fh)
subprocess.run(cmd, shell=True)
"""
    assert len(unsafe_calls(bad)) == 9
    good = """
torch.load(p, map_location="cpu", weights_only=True)
net.to(device).eval()
np.load(p)
model.eval()
yaml.safe_load(fh)
yaml.load(fh, Loader=yaml.SafeLoader)
subprocess.run([exe, "--version"])
"""
    assert unsafe_calls(good) == []


def test_no_source_of_the_package_runs_code_from_data():
    found = {str(path.relative_to(REPO)): hits for path, text in _sources() if (hits := unsafe_calls(text))}
    assert found == {}
    assert sum(1 for _ in _sources()) > 30  # the scan saw the package


# -- camera sources: an untrusted string is a Source or one SenteiError line, nothing else -------

@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.builds(lambda scheme, rest: f"{scheme}://{rest}",
              st.sampled_from(["rtsp", "rtsps", "http", "https", "file", "concat", "pipe", "RTSP", "ftp", ""]),
              st.text(max_size=120)),
    st.builds(lambda user, host, port: f"rtsp://{user}:Secret9pw@{host}:{port}/stream",
              st.text(max_size=20), st.text(max_size=40), st.text(max_size=8)),
))
def test_any_source_string_is_accepted_safely_or_refused_in_one_line(text):
    secret = re.match(r"^[^:/?#]*://[^/?#@]*:Secret9pw@", text) is not None  # in the password's place
    try:
        source = camera.parse_source(text)
    except SenteiError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message
        assert not secret or "Secret9pw" not in message  # a password never appears in a message
        return
    assert not secret or "Secret9pw" not in source.label
    assert source.kind in ("camera", "url", "file")
    if source.kind == "url":
        scheme = source.target.split("://", 1)[0].lower()
        assert scheme in camera.URL_SCHEMES
        assert source.target.isprintable() and not any(ch.isspace() for ch in source.target)
    elif source.kind == "camera":
        assert 0 <= source.target <= camera.MAX_CAMERA_INDEX


@pytest.mark.parametrize("text, fragment", [
    ("rtsp://[::1", "not a valid URL"),
    ("http://[not-an-ip]/x", "not a valid URL"),
    ("a" * 5000, "video source not found"),  # longer than a file name may be: not an OSError
    ("clip\n.mp4", "control characters"),
    ("clip\x00.mp4", "control characters"),
    ("\u00b2", "video source not found"),  # a digit to str.isdigit(), not to int()
    ("~no-such-user-sentei/video.mp4", "video source not found"),  # ~user of no user
])
def test_source_strings_that_used_to_escape_as_other_errors(text, fragment):
    with pytest.raises(SenteiError, match=fragment):
        camera.parse_source(text)

