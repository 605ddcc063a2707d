"""Fuzzing the loader: whatever the bytes, it returns a valid model or raises ModelFormatError
with a message that names a field -- never another exception, never a hang."""
import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentei.errors import ModelFormatError
from sentei.host.modelfile import schema as F
from sentei.host.modelfile.synthetic import random_model

from .conftest import patch_header

GOOD = F.to_bytes(random_model(seed=8, height=12, width=16))
_, HLEN = struct.unpack_from("<II", GOOD, 8)
HEADER = json.loads(GOOD[16:16 + HLEN])


def _load_or_refuse(data: bytes):
    try:
        model = F.from_bytes(data)
    except ModelFormatError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        assert ":" in msg  # "<field>: <what is wrong>"
        return None
    F.validate(model)
    return model


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_flips(flips):
    data = bytearray(GOOD)
    for pos, val in flips:
        data[pos] = val
    _load_or_refuse(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GOOD)), st.binary(max_size=200))
def test_truncation_and_splices(cut, junk):
    _load_or_refuse(GOOD[:cut])
    _load_or_refuse(GOOD[:cut] + junk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    assert _load_or_refuse(data) is None or data == GOOD


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(HEADER) if p]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PATHS), JSON_VALUES)
def test_header_field_replaced(path, value):
    def replace(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    _load_or_refuse(patch_header(GOOD, replace))


def test_the_unmodified_file_loads():
    model = _load_or_refuse(GOOD)
    assert model is not None and np.array_equal(model.layers[0].values, random_model(8, 12, 16).layers[0].values)
