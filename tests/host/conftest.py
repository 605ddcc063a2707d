"""Helpers shared by the host tests (and the reliability tests)."""
from __future__ import annotations

import argparse
import json
import struct

import pytest

from sentei.host.modelfile import schema as F
from sentei.host.commands import demo as live


def patch_header(data: bytes, mutate) -> bytes:
    """Rewrite the JSON header of model-file bytes with ``mutate(header)``, keeping the data section
    aligned as the writer does (the one header rewriter of the tests)."""
    _, hlen = struct.unpack_from("<II", data, 8)
    header = json.loads(data[16:16 + hlen])
    mutate(header)
    head = json.dumps(header).encode()
    prefix = F.MAGIC + struct.pack("<II", F.VERSION, len(head)) + head
    prefix += b"\0" * (F._aligned(len(prefix)) - len(prefix))
    return prefix + data[F._aligned(16 + hlen):]


def live_cli(argv) -> int:
    """Run a ``sentei.host.commands.demo`` subcommand (demo, camera) as the console script would."""
    parser = argparse.ArgumentParser()
    live.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def stranded(monkeypatch):
    """``driver.STRANDED`` for one test (a hung accelerator's buffers, never freed)."""
    from sentei.host.runtime import driver

    monkeypatch.setattr(driver, "STRANDED", [])
    return driver.STRANDED
