"""The notebooks run headless in emulation (nbclient, the python3 kernel): 1 and 3 as they are,
2 on a generated video file in place of the camera. Each runs with the default bundled model
(skipped until one is bundled) and with a synthetic model file, so they are exercised either way."""
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import sentei.notebooks
from sentei.host.modelfile import schema, bundled, synthetic

NOTEBOOKS = Path(sentei.notebooks.__file__).resolve().parent
NAMES = ("1_getting_started.ipynb", "2_live_camera.ipynb", "3_latency_and_power.ipynb")

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install 'sentei[dev]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install 'sentei[dev]')")


def test_notebooks_are_clean_and_valid():
    for name in NAMES:
        book = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(book)
        assert book.metadata.kernelspec.name == "python3"
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: commit notebooks without outputs"


def test_pynq_get_notebooks_finds_them():
    """`pynq get-notebooks sentei` copies the folder of the `pynq.notebooks` entry point named sentei."""
    found = importlib.metadata.entry_points()  # a dict of groups on Python 3.9, selectable from 3.10
    group = found.select(group="pynq.notebooks") if hasattr(found, "select") else found.get("pynq.notebooks", [])
    points = list({(ep.name, ep.value): ep for ep in group if ep.name == "sentei"}.values())  # 3.9 repeats a
    assert len(points) == 1 and points[0].value == "sentei.notebooks"  # distribution found twice on the path
    module = points[0].load()
    folder = Path(list(module.__path__)[0])
    assert {p.name for p in folder.glob("*.ipynb")} == set(NAMES)
    assert (folder / "data" / "bench-pc-emulation.json").is_file()
    assert not [p for p in folder.glob("*.py") if p.name != "__init__.py"]  # would be copied to the user
    report = json.loads((folder / "data" / "bench-pc-emulation.json").read_text())
    assert report["schema"] == "sentei-bench" and report["runs"]


@pytest.fixture(autouse=True)
def _inline_figures(monkeypatch):
    """The kernel draws figures inline; an inherited MPLBACKEND (e.g. Agg in a CI shell) would hide them."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


def _bundled_or_skip():
    try:
        bundled.resolve_model(None)
    except Exception as exc:
        pytest.skip(f"no default bundled model yet ({exc})")


@pytest.fixture(params=["synthetic", pytest.param("bundled", marks=pytest.mark.slow)])
def model_env(request, tmp_path, monkeypatch):
    if request.param == "bundled":
        _bundled_or_skip()
        monkeypatch.delenv("SENTEI_MODEL", raising=False)
    else:
        path = schema.save(synthetic.random_model(seed=51, height=72, width=96), tmp_path / "synthetic.sentei")
        monkeypatch.setenv("SENTEI_MODEL", str(path))
    return request.param


def run_notebook(name, tmp_path):
    work = tmp_path / "nb"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    book = nbformat.read(work / name, as_version=4)
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    client.execute()
    text = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
            if out.output_type == "stream":
                text.append(out.text)
            elif "data" in out:
                text.append(" ".join(sorted(out.data)))
    return "\n".join(text)


@pytest.mark.slow
def test_getting_started(model_env, tmp_path):
    text = run_notebook("1_getting_started.ipynb", tmp_path)
    assert "backend: emu" in text or "backend: reference" in text
    assert "no PYNQ overlay here (skipped): " in text  # the SenteiOverlay's ip_dict/register_map cell, on a PC
    assert "-> labels (360, 480)" in text
    assert "image/png" in text and "FPS on backend" in text


@pytest.mark.slow
def test_live_camera_on_a_video_file(model_env, tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'sentei[camera]')")
    video = tmp_path / "street.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (120, 90))
    rng = np.random.default_rng(2)
    for _ in range(8):
        writer.write(rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8))
    writer.release()
    monkeypatch.setenv("SENTEI_CAMERA_SOURCE", str(video))
    monkeypatch.setenv("SENTEI_CAMERA_FRAMES", "5")
    text = run_notebook("2_live_camera.ipynb", tmp_path)
    assert "reached 5 frames: 5 frames" in text
    assert "image/jpeg" in text  # the frames shown inline


@pytest.mark.slow
def test_latency_and_power(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'sentei[bench]')")
    text = run_notebook("3_latency_and_power.ipynb", tmp_path)
    assert "data/bench-pc-emulation.json" in text
    assert "text/markdown" in text and text.count("image/png") == 2
    assert "fpga zcu104 @200 MHz (modeled)" in text
