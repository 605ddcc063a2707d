"""Shared builders for the reliability tests: corrupt model files, odd images, broken data sets,
and the check every command must pass on bad input (exit status 2, one line, no traceback,
nothing written)."""
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from sentei import cli
from sentei.host.modelfile import schema as F
from sentei.host.modelfile.synthetic import random_model
from tests.host.conftest import patch_header, stranded  # noqa: F401 (one header rewriter, one STRANDED)

H, W = 16, 24  # the tiny models' input: every engine runs it in milliseconds


def tiny_model(seed: int = 1):
    return random_model(seed=seed, height=H, width=W)


def unvalidated_bytes(model) -> bytes:
    """The bytes ``format.save`` would write for ``model``, without its validation: how a buggy
    or hostile writer makes a file the loader must refuse."""
    with mock.patch.object(F, "validate"):
        return F.to_bytes(model)


def _unequal_k():
    m = tiny_model()
    m.layers[1].indices = np.ascontiguousarray(m.layers[1].indices[:, :-1])
    return unvalidated_bytes(m)


def _index_out_of_range():
    m = tiny_model()
    m.layers[0].indices[0, -1] = m.layers[0].fan_in + 5
    return unvalidated_bytes(m)


def _value_outside_bits():
    m = tiny_model()
    assert m.layers[2].weight_bits == 4
    m.layers[2].values[0, 0] = 9  # 4-bit weights are [-8, 7]
    return unvalidated_bytes(m)


def _shapes_do_not_chain():
    m = tiny_model()
    m.layers[1].in_channels = 5  # its input has 8 channels
    return unvalidated_bytes(m)


def _empty_output():
    m = random_model(seed=1, height=4, width=4)
    for layer in m.layers:
        layer.padding = 0  # 4x4 -> 1x1 after the first stride-2 3x3 ... then nothing
    return unvalidated_bytes(m)


def _k_declared_wrong():
    return patch_header(F.to_bytes(tiny_model()), lambda h: h["layers"][0].update(k_nonzero=3))


# name -> (bytes, a fragment of the one-line message naming the field)
def corrupt_models() -> dict[str, tuple[bytes, str]]:
    good = F.to_bytes(tiny_model())
    return {
        "truncated": (good[: len(good) // 2], "truncated"),
        "truncated-header": (good[:20], "header length"),
        "appended-garbage": (good + b"\0" * 64, "file length"),
        "wrong-magic": (b"NOTSENT\n" + good[8:], "magic"),
        "wrong-version": (good[:8] + struct.pack("<I", 2) + good[12:], "version 2"),
        "unequal-k": (_unequal_k(), "K must be equal for every filter"),
        "k-declared-wrong": (_k_declared_wrong(), "k_nonzero"),
        "index-out-of-range": (_index_out_of_range(), "indices: position"),
        "value-outside-bits": (_value_outside_bits(), "exceed 4-bit range"),
        "shapes-do-not-chain": (_shapes_do_not_chain(), "shapes do not chain"),
        "empty-output": (_empty_output(), "is empty"),
        "crc-mismatch": (patch_header(good, lambda h: h["arrays"]["layers.0.bias"].update(crc32=1)), "crc32"),
        "not-a-model-png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "magic"),
        "not-a-model-pickle": (b"\x80\x04\x95" + bytes(60), "magic"),
        "empty-file": (b"", "too short"),
    }


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixels are never there)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    return F.save(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.sentei")


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def make_split(root: Path, split: str, labels: dict, frames=None, size=(H, W)) -> Path:
    """``root/split/<stem>.png`` frames and ``root/splitannot/<stem>.png`` labels (value per stem)."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(exist_ok=True)
    rng = np.random.default_rng(len(labels))
    for stem in (labels if frames is None else frames):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / split / f"{stem}.png")
    for stem, value in labels.items():
        Image.fromarray(np.full(size, value, dtype=np.uint8)).save(root / f"{split}annot" / f"{stem}.png")
    return root


def files_under(path: Path) -> list[str]:
    """Every file below ``path`` (empty when it does not exist)."""
    path = Path(path)
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def assert_one_line_error(status, err: str, *fragments: str) -> str:
    """Exit status 2, exactly one line on stderr starting ``sentei: error:``, no traceback."""
    assert status == 2, f"exit status {status}, stderr: {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("sentei: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def run_main(argv, capsys):
    """``sentei.cli.main(argv)`` in-process: (status, stdout, stderr); argparse errors give their status."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def run_subprocess(argv, cwd=None, timeout=120, env=None):
    """``python -m sentei argv`` in a fresh process: the console script as a user runs it."""
    return subprocess.run([sys.executable, "-m", "sentei", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)
