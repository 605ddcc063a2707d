"""SenteiOverlay: PYNQ's own ``pynq.Overlay`` code on a mock ``pynq.Device`` whose metadata is the
emulated accelerator's and whose registers and memory are the emulated overlay's, so the
download, the driver binding by VLNV, the model load and the frames all run on the emulated
hardware path -- bit-exact against the reference engine. And the bitstream: missing (one line),
installed, or linked through PYNQ ``.link`` files that PYNQ's own downloader resolves."""
import hashlib
import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.runtime import driver as drv
from sentei.host.modelfile import reference, synthetic
from sentei.host.runtime.emulated_overlay import IP_NAME, EmulatedOverlay
from sentei.host.modelfile.schema import blob_words
from sentei.overlay import registers as R

pynq = pytest.importorskip("pynq", reason="pynq is not installed (pip install 'sentei[board]')")

from sentei.host.runtime.pynq_ip import SenteiIP  # noqa: E402
from sentei.host.runtime.pynq_overlay import SenteiOverlay  # noqa: E402
from tests.host.test_driver import EmulatedPynqDevice, model  # noqa: E402,F401  (model: the fixture)


@pytest.fixture(autouse=True)
def _private_board_files(tmp_path, monkeypatch):
    """The board lock and the installed bitstreams in this test's folder; no $SENTEI_BITSTREAM, no $BOARD."""
    for name, value in (("LOCK_DIR", tmp_path), ("BITSTREAM_ROOT", tmp_path / "installed")):
        monkeypatch.setattr(drv, name, str(value))
    for var in (drv.BITSTREAM_ENV, "BOARD"):
        monkeypatch.delenv(var, raising=False)


class EmulatedBoard(EmulatedPynqDevice):
    """A pynq Device that "downloads" a bitstream whose metadata is the emulated accelerator's."""

    def __init__(self, emulated):
        super().__init__(emulated)
        self.timestamp = ""
        self.bitfile_name = None
        self.downloads = []

    def get_bitfile_metadata(self, bitfile_name):
        ip = {k: v for k, v in self.overlay.ip_dict[IP_NAME].items() if k != "mmio"}  # what a .hwh gives
        return SimpleNamespace(ip_dict={IP_NAME: ip}, gpio_dict={}, interrupt_controllers={}, interrupt_pins={},
                               hierarchy_dict={}, mem_dict={}, clock_dict={}, systemgraph=None)

    def download(self, bitstream, parser=None):
        self.downloads.append(bitstream.bitfile_name)
        self.post_download(bitstream, parser)


def _bitstream(folder, model):
    """sentei.bit, sentei.hwh and network.json as a build publishes them (the .bit's bytes unused)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentei.bit").write_bytes(b"bitstream")
    (folder / "sentei.hwh").write_text("<hwh/>")
    (folder / "network.json").write_text(json.dumps({"model": model.name, "blob_words": blob_words(model)}))
    return folder / "sentei.bit"


def test_a_plain_pynq_overlay_binds_sentei_ip(model, tmp_path):
    """The issue: ``pynq.Overlay("sentei.bit").sentei_top_0`` was a DefaultIP."""
    board = EmulatedBoard(EmulatedOverlay(model))
    ol = pynq.Overlay(str(_bitstream(tmp_path, model)), device=board)
    assert type(ol.sentei_top_0) is SenteiIP
    assert ol.ip_dict[IP_NAME]["type"] == R.VLNV


def test_the_overlay_downloads_loads_a_model_and_runs_frames_bit_exact(model, tmp_path):
    emulated = EmulatedOverlay(model)
    board = EmulatedBoard(emulated)
    bit = _bitstream(tmp_path / "installed" / "zcu104", model)
    frames = [synthetic.random_frame(i, 24, 32) for i in range(3)]
    with SenteiOverlay(device=board) as ol:  # the installed bitstream, found as a Segmenter finds it
        assert isinstance(ol, pynq.Overlay) and board.downloads == [str(bit)]
        assert type(ol.accelerator) is SenteiIP and isinstance(ol.accelerator.mmio, pynq.MMIO)
        assert ol.ip_name == IP_NAME and ol.ip_dict[IP_NAME]["type"] == R.VLNV
        assert ol.register_map.CTRL.address == R.AP_CTRL
        with pytest.raises(SenteiError, match="no model is loaded"):
            ol.run(frames[0])
        seg = ol.load_model(model)
        assert seg.backend == "fpga" and seg.ip is ol.accelerator
        assert np.array_equal(ol.run(frames[0]), reference.predict(model, frames[0]))
        batch = ol.run_batch(frames)  # one RUN_FRAME of three frames
        assert all(np.array_equal(r.logits, reference.run(model, f)) for f, r in zip(frames, batch))
        assert [c for c, _ in emulated.mmio.commands] == [R.CMD_LOAD_WEIGHTS, R.CMD_RUN_FRAME, R.CMD_RUN_FRAME]
        ol.load_model(model)  # a second model load frees the first one's buffers first
    assert ol.segmenter is None and emulated.memory.live_buffers() == 0


def test_a_model_the_bitstream_was_not_built_for_is_refused(model, tmp_path):
    other = synthetic.random_model(seed=24, height=24, width=32, num_classes=5)
    assert blob_words(other) != blob_words(model)
    board = EmulatedBoard(EmulatedOverlay(model))
    ol = SenteiOverlay(_bitstream(tmp_path, model), device=board)
    with pytest.raises(SenteiError, match="build the bitstream for this model"):
        ol.load_model(other)
    assert ol.segmenter is None


def test_no_bitstream_is_one_line(tmp_path):
    with pytest.raises(SenteiError) as err:
        SenteiOverlay()
    text = str(err.value)
    assert "\n" not in text and text.startswith("no sentei bitstream is installed for this board")
    assert "docs/build.md" in text and drv.BITSTREAM_ENV in text
    with pytest.raises(SenteiError, match="bitstream not found"):
        SenteiOverlay(tmp_path / "nowhere.bit")


def _link(path, source):
    """A PYNQ .link file (its global form: one url and md5sum) for ``source``."""
    digest = hashlib.md5(source.read_bytes()).hexdigest()
    path.with_name(path.name + ".link").write_text(json.dumps({"url": source.as_uri(), "md5sum": digest}))


def test_a_linked_bitstream_is_downloaded_with_pynqs_link_resolver(model, tmp_path, monkeypatch):
    pytest.importorskip("pynqutils", reason="pynqutils comes with pynq")
    monkeypatch.setitem(sys.modules, "magic", types.ModuleType("magic"))  # python-magic: on PYNQ images only
    published = _bitstream(tmp_path / "published", model).parent
    board_dir = tmp_path / "installed" / "zcu104"
    board_dir.mkdir(parents=True)
    for name in ("sentei.bit", "sentei.hwh", "network.json"):
        _link(board_dir / name, published / name)
    environ = {"BOARD": "ZCU104"}
    with pytest.raises(SenteiError, match=r"only linked \(sentei.bit.link\), not downloaded") as err:
        drv.find_bitstream(environ=environ)
    assert "\n" not in str(err.value)
    path = drv.find_bitstream(environ=environ, fetch=True)  # pynqutils' download_overlays, md5-checked
    assert path == board_dir / "sentei.bit" and path.read_bytes() == b"bitstream"
    assert (board_dir / "network.json").read_text() == (published / "network.json").read_text()
    assert drv.find_bitstream(environ=environ) == path  # downloaded once, found as installed since

    (board_dir / "sentei.bit").unlink()
    (board_dir / "sentei.bit.link").write_text(json.dumps({"url": (tmp_path / "gone.bit").as_uri(), "md5sum": "0"}))
    with pytest.raises(SenteiError, match="could not download the files linked in") as err:
        drv.find_bitstream(environ=environ, fetch=True)
    assert "\n" not in str(err.value)


def test_the_package_exports_the_overlay_lazily():
    import sentei.host

    assert sentei.host.SenteiOverlay is SenteiOverlay
