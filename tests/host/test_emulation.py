"""The emulated overlay: buffers with device addresses, cache semantics, the register file,
the accelerator's command protocol and its weight-blob decoding."""
import time

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.modelfile import reference, synthetic
from sentei.host.runtime.emulated_overlay import (
    DDR_BASE, PAGE, EmulatedBusError, EmulatedMemory, EmulatedOverlay, check_blob_header, model_from_blob,
    register_table,
)
from sentei.host.modelfile.schema import blob_offsets, weight_blob
from sentei.overlay import registers as R


@pytest.fixture(scope="module")
def model():
    return synthetic.random_model(seed=3, height=24, width=32)


# ---------------------------------------------------------------------------------------
# memory


def test_allocate_gives_distinct_page_aligned_device_addresses():
    mem = EmulatedMemory()
    a = mem.allocate((10,), np.uint32)
    b = mem.allocate((5000,), np.uint8)
    c = mem.allocate((2, 3), np.int32)
    assert a.device_address == DDR_BASE
    assert b.device_address == DDR_BASE + PAGE  # 40 bytes still take a page
    assert c.device_address == DDR_BASE + 3 * PAGE  # 5000 bytes take two
    assert a.physical_address == a.device_address
    assert isinstance(a, np.ndarray) and a.dtype == np.uint32 and c.shape == (2, 3)
    assert mem.live_buffers() == 3


def test_host_writes_reach_the_device_only_after_flush():
    mem = EmulatedMemory()
    buf = mem.allocate((4,), np.uint32)
    buf[:] = [1, 2, 3, 0xDEADBEEF]
    assert mem.load(buf.device_address, 16) == bytes(16)  # still in the "cache"
    buf.flush()
    assert np.array_equal(np.frombuffer(mem.load(buf.device_address, 16), "<u4"), [1, 2, 3, 0xDEADBEEF])


def test_device_writes_reach_the_host_only_after_invalidate():
    mem = EmulatedMemory()
    buf = mem.allocate((3,), np.int32)
    mem.store(buf.device_address + 4, np.array([-7], "<i4").tobytes(), who="accelerator")
    assert buf.tolist() == [0, 0, 0]
    buf.invalidate()
    assert buf.tolist() == [0, -7, 0]


def test_views_keep_the_device_address_and_copies_lose_it():
    mem = EmulatedMemory()
    buf = mem.allocate((4, 8), np.uint16)
    row = buf[2]
    assert row.device_address == buf.device_address + 2 * 8 * 2
    row[:] = 9
    row.flush()
    assert np.frombuffer(mem.load(buf.device_address + 32, 16), "<u2").tolist() == [9] * 8
    copy = buf.copy()
    assert copy.device_address is None
    with pytest.raises(SenteiError, match="not an emulated buffer"):
        copy.flush()


def test_freed_buffer_is_a_bus_error():
    mem = EmulatedMemory()
    buf = mem.allocate((16,), np.uint8)
    addr = buf.device_address
    buf.freebuffer()
    assert buf.freed and mem.live_buffers() == 0
    with pytest.raises(EmulatedBusError, match=f"0x{addr:x}"):
        mem.load(addr, 4)


def test_read_past_the_end_of_a_buffer_is_a_bus_error():
    mem = EmulatedMemory()
    buf = mem.allocate((16,), np.uint8)
    mem.load(buf.device_address, 16)
    with pytest.raises(EmulatedBusError):
        mem.load(buf.device_address + 8, 9)


def test_capacity_is_enforced():
    mem = EmulatedMemory(capacity=10_000)
    mem.allocate((8000,), np.uint8)
    with pytest.raises(SenteiError, match="out of contiguous memory"):
        mem.allocate((8000,), np.uint8)


# ---------------------------------------------------------------------------------------
# the weight blob as the hardware reads it


@pytest.mark.parametrize("balanced", [True, False])
def test_model_from_blob_recovers_every_runtime_array(balanced):
    m = synthetic.random_model(seed=5, balanced=balanced, input_bits=7)
    loaded = model_from_blob(m, weight_blob(m))
    for a, b in zip(m.layers, loaded.layers):
        assert np.array_equal(a.values, b.values) and b.values.dtype == np.int8
        assert np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.bias, b.bias)
        if a.act == "logits":
            assert b.mult is None and b.shift is None
        else:
            assert np.array_equal(a.mult, b.mult) and np.array_equal(a.shift, b.shift)
    assert (loaded.input.mul, loaded.input.add, loaded.input.shift) == (m.input.mul, m.input.add, m.input.shift)
    frame = synthetic.random_frame(1, m.input.height, m.input.width)
    assert np.array_equal(reference.run(loaded, frame), reference.run(m, frame))


def test_blob_header_check_codes(model):
    blob = weight_blob(model)

    def reader(words):
        return lambda first, count: words[first:first + count]

    assert check_blob_header(model, reader(blob)) == R.STATUS_OK
    bad = blob.copy()
    bad[0] ^= 1
    assert check_blob_header(model, reader(bad)) == R.STATUS_BAD_MAGIC
    bad = blob.copy()
    bad[1] += 1
    assert check_blob_header(model, reader(bad)) == R.STATUS_BAD_LAYOUT
    other = synthetic.random_model(seed=3, height=24, width=32, specs=(
        synthetic.LayerSpec(8, stride=2, density=0.4),) + synthetic.TINY[1:])
    assert blob_offsets(other) != blob_offsets(model)
    assert check_blob_header(model, reader(weight_blob(other))) == R.STATUS_BAD_LAYOUT
    bad = blob.copy()
    bad[8] = 32  # input shift beyond the hardware's 0..31
    assert check_blob_header(model, reader(bad)) == R.STATUS_BAD_LAYOUT


@pytest.mark.parametrize("corrupt", ["index", "value", "mult", "shift"])
def test_entry_check_fails_the_load_and_drops_old_weights(model, corrupt):
    """Like the HLS loader: an entry out of range fails the load and leaves no weights."""
    from sentei.host.runtime.emulated_overlay import EngineHardware

    hw = EngineHardware(model, "reference")
    blob = weight_blob(model)
    assert hw.load_weights(blob) == R.STATUS_OK
    bad = blob.copy()
    layer = model.layers[2]  # 4-bit weights in the TINY spec
    entry = blob_offsets(model)[2] + 3 * layer.out_channels
    off, c = blob_offsets(model)[2], layer.out_channels
    if corrupt == "index":
        bad[entry] = (layer.fan_in << 8) | (bad[entry] & 0xFF)
    elif corrupt == "value":
        bad[entry] = (bad[entry] & ~np.uint32(0xFF)) | np.uint32(0x7F)  # +127 > 4-bit max 7
    elif corrupt == "mult":
        bad[off + c] |= np.uint32(1 << 31)  # multipliers are below 2^31
    else:
        bad[off + 2 * c] = 63  # shifts are at most 62
    assert hw.load_weights(bad) == R.STATUS_BAD_LAYOUT
    assert hw.run_frame(synthetic.random_frame(0, 24, 32))[0] == R.STATUS_NO_WEIGHTS


# ---------------------------------------------------------------------------------------
# the register file, driven by hand


def _wait_done(ov, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not ov.mmio.read(R.AP_CTRL) & R.AP_DONE:
        assert time.monotonic() < deadline, "emulated accelerator never finished"
        time.sleep(1e-4)
    assert ov.mmio.read(R.STATUS_CTRL) == 1
    return ov.mmio.read(R.STATUS)


def _command(ov, cmd, frame=0, weights=0, logits=0, height=0, width=0, frames=1):
    io = ov.mmio
    for lo, addr in ((R.FRAME_LO, frame), (R.WEIGHTS_LO, weights), (R.LOGITS_LO, logits)):
        io.write(lo, addr & 0xFFFFFFFF)
        io.write(lo + 4, addr >> 32)
    io.write(R.CMD, cmd)
    io.write(R.HEIGHT, height)
    io.write(R.WIDTH, width)
    io.write(R.FRAMES, frames)
    io.write(R.AP_CTRL, R.AP_START)
    return _wait_done(ov)


def test_register_protocol_by_hand_is_bit_exact(model):
    ov = EmulatedOverlay(model)
    assert ov.mmio.read(R.AP_CTRL) == R.AP_IDLE
    q = model.input
    c, h, w = model.shapes()[-1]
    wbuf = ov.allocate(weight_blob(model).shape, np.uint32)
    fbuf = ov.allocate((q.height, q.width, 3), np.uint8)
    lbuf = ov.allocate((h, w, c), np.int32)
    frame = synthetic.random_frame(9, q.height, q.width)

    assert _command(ov, R.CMD_RUN_FRAME, frame=fbuf.device_address, logits=lbuf.device_address,
                    height=q.height, width=q.width) == R.STATUS_NO_WEIGHTS
    wbuf[:] = weight_blob(model)
    assert _command(ov, R.CMD_LOAD_WEIGHTS, weights=wbuf.device_address) == R.STATUS_BAD_MAGIC  # not flushed
    wbuf.flush()
    assert _command(ov, R.CMD_LOAD_WEIGHTS, weights=wbuf.device_address) == R.STATUS_OK
    fbuf[:] = frame
    fbuf.flush()
    assert _command(ov, R.CMD_RUN_FRAME, frame=fbuf.device_address, logits=lbuf.device_address,
                    height=q.height, width=q.width + 1) == R.STATUS_BAD_SIZE
    assert _command(ov, 7) == R.STATUS_BAD_COMMAND
    assert _command(ov, R.CMD_RUN_FRAME, frame=fbuf.device_address, logits=lbuf.device_address,
                    height=q.height, width=q.width) == R.STATUS_OK
    assert not lbuf.any()  # the accelerator's writes are not visible before invalidate
    lbuf.invalidate()
    assert np.array_equal(lbuf.transpose(2, 0, 1), reference.run(model, frame))
    assert [cmd for cmd, _ in ov.mmio.commands] == [2, 1, 1, 2, 7, 2]
    ov.close()


def test_ap_done_and_status_valid_clear_on_read(model):
    ov = EmulatedOverlay(model)
    ov.mmio.write(R.CMD, 99)
    ov.mmio.write(R.AP_CTRL, R.AP_START)
    ov.mmio.join()
    assert ov.mmio.read(R.AP_CTRL) == R.AP_DONE | R.AP_IDLE | R.AP_READY
    assert ov.mmio.read(R.AP_CTRL) == R.AP_IDLE
    assert ov.mmio.read(R.STATUS_CTRL) == 1
    assert ov.mmio.read(R.STATUS_CTRL) == 0
    assert ov.mmio.read(R.STATUS) == R.STATUS_BAD_COMMAND


def test_wrong_address_surfaces_as_bus_error(model):
    ov = EmulatedOverlay(model)
    wbuf = ov.allocate(weight_blob(model).shape, np.uint32)
    ov.mmio.write(R.WEIGHTS_LO, (wbuf.device_address + 0x100000) & 0xFFFFFFFF)
    ov.mmio.write(R.CMD, R.CMD_LOAD_WEIGHTS)
    ov.mmio.write(R.AP_CTRL, R.AP_START)
    ov.mmio.join()
    with pytest.raises(EmulatedBusError, match="outside every live buffer"):
        ov.mmio.read(R.AP_CTRL)


def test_register_window_is_checked(model):
    io = EmulatedOverlay(model).mmio
    with pytest.raises(ValueError):
        io.write(0x11, 1)
    with pytest.raises(ValueError):
        io.read(R.ADDRESS_RANGE)
    with pytest.raises(ValueError):
        io.write(R.CMD, 2**32)


def test_start_while_busy_is_ignored_and_hang_never_finishes(model):
    ov = EmulatedOverlay(model, hang=True)
    ov.mmio.write(R.CMD, R.CMD_LOAD_WEIGHTS)
    ov.mmio.write(R.AP_CTRL, R.AP_START)
    ov.mmio.write(R.AP_CTRL, R.AP_START)
    time.sleep(0.05)
    assert ov.mmio.read(R.AP_CTRL) == R.AP_START  # busy: not idle, not done
    assert ov.mmio.commands == []


def test_register_table_matches_the_register_map():
    table = register_table()
    assert table["CTRL"]["address_offset"] == R.AP_CTRL
    assert table["frame_1"]["address_offset"] == R.FRAME_LO and table["frame_2"]["address_offset"] == R.FRAME_HI
    assert table["weights_2"]["address_offset"] == R.WEIGHTS_HI
    assert table["logits_1"]["address_offset"] == R.LOGITS_LO
    assert table["status_ctrl"]["address_offset"] == R.STATUS_CTRL
    assert (table["frames"]["address_offset"], table["status"]["address_offset"], table["status_ctrl"]["address_offset"]) \
        == (0x4C, 0x54, 0x58)  # sentei_top(frame, weights, logits, cmd, height, width, frames, status)
    offsets = [e["address_offset"] for e in table.values()]
    assert len(set(offsets)) == len(offsets) and max(offsets) < R.ADDRESS_RANGE


def test_claim_is_exclusive(model):
    ov = EmulatedOverlay(model)
    ov.claim("first")
    with pytest.raises(SenteiError, match="in use by first"):
        ov.claim("second")
    ov.release()
    ov.claim("second")


# ---------------------------------------------------------------------------------------
# RUN_FRAME of FRAMES frames


def _loaded(model):
    """An overlay with the weights of ``model`` loaded, by hand."""
    ov = EmulatedOverlay(model)
    wbuf = ov.allocate(weight_blob(model).shape, np.uint32)
    wbuf[:] = weight_blob(model)
    wbuf.flush()
    assert _command(ov, R.CMD_LOAD_WEIGHTS, weights=wbuf.device_address) == R.STATUS_OK
    return ov


def test_status_sits_at_its_new_offsets(model):
    assert (R.FRAMES, R.STATUS, R.STATUS_CTRL, R.STATUS_BAD_FRAMES) == (0x4C, 0x54, 0x58, 6)
    ov = EmulatedOverlay(model)
    _command(ov, 7)
    assert ov.mmio.regs[0x54 // 4] == R.STATUS_BAD_COMMAND and ov.mmio.regs[0x4C // 4] == 1
    ov.mmio.write(0x54, 0)  # read-only
    assert ov.mmio.read(0x54) == R.STATUS_BAD_COMMAND


def test_a_batch_is_bit_exact_with_single_runs_and_laid_out_back_to_back():
    """FRAMES = 3 through one start: frame n at word n*ceil(3HW/4) (here 3HW is not a whole number
    of words, so the padding matters), logit map n at value n*h*w*C; the same logits as three
    single-frame starts, bit for bit."""
    m = synthetic.random_model(seed=4, height=13, width=17)  # 3*13*17 = 663 bytes: 166 words, 1 byte padding
    q, (c, h, w) = m.input, m.shapes()[-1]
    ov = _loaded(m)
    words, n = (3 * q.height * q.width + 3) // 4, 3
    frames = [synthetic.random_frame(20 + i, q.height, q.width) for i in range(n)]
    fbuf = ov.allocate((n, 4 * words), np.uint8)
    fbuf[:] = 0xEE  # the padding bytes are never part of a frame
    for i, frame in enumerate(frames):
        fbuf[i, :frame.size] = frame.reshape(-1)
    fbuf.flush()
    lbuf = ov.allocate((n, h, w, c), np.int32)
    mark = len(ov.mmio.commands)
    assert _command(ov, R.CMD_RUN_FRAME, frame=fbuf.device_address, logits=lbuf.device_address,
                    height=q.height, width=q.width, frames=n) == R.STATUS_OK
    assert list(ov.mmio.commands[mark:]) == [(R.CMD_RUN_FRAME, R.STATUS_OK)]  # one start
    lbuf.invalidate()
    single = ov.allocate((h, w, c), np.int32)
    for i, frame in enumerate(frames):
        assert _command(ov, R.CMD_RUN_FRAME, frame=fbuf[i].device_address, logits=single.device_address,
                        height=q.height, width=q.width, frames=1) == R.STATUS_OK
        single.invalidate()
        assert np.array_equal(lbuf[i], single)
        assert np.array_equal(lbuf[i].transpose(2, 0, 1), reference.run(m, frame))
    ov.close()


def test_frames_zero_is_bad_frames_and_touches_no_buffer(model):
    q, (c, h, w) = model.input, model.shapes()[-1]
    ov = EmulatedOverlay(model)
    lbuf = ov.allocate((h, w, c), np.int32)
    args = dict(frame=0xDEAD0000, logits=lbuf.device_address, height=q.height, width=q.width)  # no frame buffer
    assert _command(ov, R.CMD_RUN_FRAME, frames=0, **args) == R.STATUS_BAD_FRAMES  # before NO_WEIGHTS
    assert _command(ov, R.CMD_RUN_FRAME, frames=0, **dict(args, width=q.width + 1)) == R.STATUS_BAD_SIZE  # after it
    ov = _loaded(model)
    lbuf = ov.allocate((h, w, c), np.int32)
    assert _command(ov, R.CMD_RUN_FRAME, frames=0, **dict(args, logits=lbuf.device_address)) == R.STATUS_BAD_FRAMES
    lbuf.invalidate()
    assert not lbuf.any() and ov.mmio.fault is None
    assert R.STATUS_TEXT[R.STATUS_BAD_FRAMES].startswith("FRAMES is 0")


@pytest.mark.parametrize("short", ["frame", "logits"])
def test_a_batch_larger_than_its_buffers_is_a_bus_error(model, short):
    q, (c, h, w) = model.input, model.shapes()[-1]
    ov = _loaded(model)
    fbuf = ov.allocate((2 if short == "frame" else 3, q.height, q.width, 3), np.uint8)
    lbuf = ov.allocate((2 if short == "logits" else 3, h, w, c), np.int32)
    for reg, value in ((R.FRAME_LO, fbuf.device_address), (R.LOGITS_LO, lbuf.device_address), (R.CMD, R.CMD_RUN_FRAME),
                       (R.HEIGHT, q.height), (R.WIDTH, q.width), (R.FRAMES, 3), (R.AP_CTRL, R.AP_START)):
        ov.mmio.write(reg, value)
    ov.mmio.join()
    with pytest.raises(EmulatedBusError, match="outside every live buffer"):
        ov.mmio.read(R.AP_CTRL)
    lbuf.invalidate()
    assert not lbuf.any()  # refused before the first logit map is written


# ---------------------------------------------------------------------------------------
# rows in DDR: a row port per layer (rows<n>) after status, all into one row buffer


def test_row_ports_follow_status_in_argument_order():
    """sentei_top(..., status, rows5, rows6): after STATUS (0x54) and its ap_vld (0x58), each
    64-bit pointer takes LO, HI and a reserved word, as Vitis HLS lays out the s_axilite map."""
    assert (R.ROWS_FIRST, R.ROW_PORT_STRIDE) == (0x5C, 0x0C)
    assert [R.row_port_offset(j) for j in range(3)] == [0x5C, 0x68, 0x74]
    assert R.row_port_offset(333) == 0xFF8  # the last whose high word fits the 0x1000-byte window
    for j in (-1, 334):
        with pytest.raises(ValueError, match="register window"):
            R.row_port_offset(j)
    assert not any(name.startswith("rows") for name in R.ARGUMENTS)  # not every bitstream has them
    assert not any(name.startswith("rows") for name in register_table())
    table = register_table([("rows5", 0), ("rows6", 61440)])
    assert {n: table[n]["address_offset"] for n in ("rows5_1", "rows5_2", "rows6_1", "rows6_2")} \
        == {"rows5_1": 0x5C, "rows5_2": 0x60, "rows6_1": 0x68, "rows6_2": 0x6C}
    offsets = [e["address_offset"] for e in table.values()]
    assert len(set(offsets)) == len(offsets) == len(register_table()) + 4 and max(offsets) < R.ADDRESS_RANGE


ROW_PORTS = [{"argument": "rows1", "layer": "conv1", "offset_bytes": 0, "bytes": 2048},
             {"argument": "rows3", "layer": "conv3", "offset_bytes": 2112, "bytes": 2880}]
ROW_BYTES = 4992


def _loaded_with_rows(model, row_ports=ROW_PORTS):
    ov = EmulatedOverlay(model, row_ports=row_ports)
    wbuf = ov.allocate(weight_blob(model).shape, np.uint32)
    wbuf[:] = weight_blob(model)
    wbuf.flush()
    assert _command(ov, R.CMD_LOAD_WEIGHTS, weights=wbuf.device_address) == R.STATUS_OK  # no rows needed
    return ov


def _start_with_rows(ov, model, fbuf, lbuf, rows1, rows3, width=None):
    q = model.input
    for lo, addr in ((R.FRAME_LO, fbuf.device_address), (R.LOGITS_LO, lbuf.device_address),
                     (0x5C, rows1), (0x68, rows3)):
        ov.mmio.write(lo, addr & 0xFFFFFFFF)
        ov.mmio.write(lo + 4, addr >> 32)
    for reg, value in ((R.CMD, R.CMD_RUN_FRAME), (R.HEIGHT, q.height), (R.WIDTH, width or q.width),
                       (R.FRAMES, 1), (R.AP_CTRL, R.AP_START)):
        ov.mmio.write(reg, value)
    ov.mmio.join()


def _with_buffers(model, frame, logits_values=None):
    """A loaded overlay with two row ports, a flushed frame buffer, a logits buffer and five
    candidate row buffers: ``rows``, ``other`` (both of ROW_BYTES), ``short`` (8 bytes less),
    ``big`` (64 bytes more) and ``freed``."""
    q, (c, h, w) = model.input, model.shapes()[-1]
    ov = _loaded_with_rows(model)
    fbuf = ov.allocate((q.height, q.width, 3), np.uint8)
    fbuf[:] = frame
    fbuf.flush()
    lbuf = ov.allocate((logits_values or h * w * c,), np.int32)
    extra = {"short": -8, "big": 64}
    bufs = {name: ov.allocate((ROW_BYTES + extra.get(name, 0),), np.uint8)
            for name in ("rows", "other", "short", "big", "freed")}
    bufs["freed"].freebuffer()
    return ov, fbuf, lbuf, {name: b.device_address for name, b in bufs.items()}


@pytest.mark.parametrize("rows1, rows3, message", [
    (("rows", 0), ("rows", 0), r"^accelerator rows: rows3 \(ROWS1\) at {rows} is not the row buffer's address \+ its "
                               r"offset_bytes 2112, the buffer rows1 \(ROWS0\) at {rows} - 0 = {rows} points at"),
    (("rows", 0), ("rows", 264), r"rows3 \(ROWS1\) at {rows+264} is not the row buffer's address"),  # words, not bytes
    (("rows", 0), ("other", 2112), r"rows3 \(ROWS1\) at {other+2112} is not .* rows1 \(ROWS0\) at {rows} - 0"),
    (("other", 0), ("rows", 2112), r"rows3 \(ROWS1\) at {rows+2112} is not .* rows1 \(ROWS0\) at {other} - 0"),
    (("zero", 0), ("zero", 2112), r"^accelerator rows write of 4992 bytes at 0x0 lies outside every live buffer"),
    (("short", 0), ("short", 2112), r"write of 4992 bytes at {short} lies outside every live buffer"),  # page: more
    (("freed", 0), ("freed", 2112), r"write of 4992 bytes at {freed} lies outside every live buffer"),
    (("big", 64), ("big", 2176), r"the row buffer the ports point at, {big+64}, is not the start of a buffer "
                                 r"\({big} is\)"),  # every port 64 bytes late, inside a buffer that holds them
])
def test_run_frame_refuses_row_ports_outside_one_row_buffer(model, rows1, rows3, message):
    frame = synthetic.random_frame(5, model.input.height, model.input.width)
    ov, fbuf, lbuf, addr = _with_buffers(model, frame)
    addr["zero"] = 0
    names = {k: f"0x{v:x}" for k, v in addr.items()}
    names.update({f"{k}+{d}": f"0x{v + d:x}" for k, v in addr.items() for d in (64, 264, 2112)})
    _start_with_rows(ov, model, fbuf, lbuf, addr[rows1[0]] + rows1[1], addr[rows3[0]] + rows3[1])
    with pytest.raises(EmulatedBusError, match=message.format(**names)):
        ov.mmio.read(R.AP_CTRL)
    lbuf.invalidate()
    assert not lbuf.any()  # refused before any logit is written


def test_a_row_buffer_inside_the_logits_buffer_is_refused(model):
    (c, h, w) = model.shapes()[-1]
    frame = synthetic.random_frame(5, model.input.height, model.input.width)
    ov, fbuf, big, _ = _with_buffers(model, frame, logits_values=h * w * c + ROW_BYTES)
    _start_with_rows(ov, model, fbuf, big, big.device_address, big.device_address + 2112)
    with pytest.raises(EmulatedBusError, match="overlaps the frame or logits buffer"):
        ov.mmio.read(R.AP_CTRL)


def test_run_frame_with_each_port_at_its_region_of_the_row_buffer_is_bit_exact(model):
    q, (c, h, w) = model.input, model.shapes()[-1]
    frame = synthetic.random_frame(5, q.height, q.width)
    ov, fbuf, lbuf, addr = _with_buffers(model, frame)
    _start_with_rows(ov, model, fbuf, lbuf, 0, 0, width=q.width + 1)  # a refused size touches no buffer
    assert ov.mmio.read(R.STATUS) == R.STATUS_BAD_SIZE and ov.mmio.fault is None
    _start_with_rows(ov, model, fbuf, lbuf, addr["rows"], addr["rows"] + 2112)
    assert ov.mmio.read(R.STATUS) == R.STATUS_OK and ov.mmio.fault is None
    lbuf.invalidate()
    assert np.array_equal(lbuf.reshape(h, w, c).transpose(2, 0, 1), reference.run(model, frame))
    ov.close()


def test_an_overlay_without_row_ports_ignores_their_offsets(model):
    q, (c, h, w) = model.input, model.shapes()[-1]
    ov = _loaded_with_rows(model, row_ports=[])
    assert ov.row_buffer_bytes == 0 and ov.row_ports == []
    assert not any(name.startswith("rows") for name in ov.ip_dict["sentei_top_0"]["registers"])
    fbuf = ov.allocate((q.height, q.width, 3), np.uint8)
    lbuf = ov.allocate((h, w, c), np.int32)
    _start_with_rows(ov, model, fbuf, lbuf, 0, 0xDEAD0000)
    assert ov.mmio.read(R.STATUS) == R.STATUS_OK and ov.mmio.fault is None


def test_the_row_ports_come_from_the_compiled_facts_or_the_arguments(model):
    from types import SimpleNamespace

    from sentei.host.runtime.emulated_overlay import EngineHardware

    hw = EngineHardware(model, "reference")
    hw.facts = SimpleNamespace(row_buffer_bytes=65536, row_ports=lambda: [  # what NetworkFacts says
        {"argument": "rows5", "layer": "conv6", "offset_bytes": 0, "bytes": 4096},
        {"argument": "rows6", "layer": "conv7", "offset_bytes": 4096, "bytes": 61440}])
    ov = EmulatedOverlay(model, hardware=hw)
    assert ov.row_buffer_bytes == ov.mmio.row_buffer_bytes == 65536
    assert ov.row_ports == ov.mmio.row_ports == [("rows5", 0), ("rows6", 4096)]
    table = ov.ip_dict["sentei_top_0"]["registers"]
    assert (table["rows5_1"]["address_offset"], table["rows6_2"]["address_offset"]) == (0x5C, 0x6C)
    assert EmulatedOverlay(model, hardware=hw, row_ports=[]).row_ports == []  # the argument wins
    hw.facts = SimpleNamespace(row_buffer_bytes=0, row_ports=lambda: [])
    assert EmulatedOverlay(model, hardware=hw).row_ports == []
    assert EmulatedOverlay(model).row_ports == []  # the engines: no compiled facts
    assert EmulatedOverlay(model, row_ports=ROW_PORTS).row_buffer_bytes == 4992  # the end of the last region
    assert EmulatedOverlay(model, row_ports=ROW_PORTS, row_buffer_bytes=8192).row_buffer_bytes == 8192
    for kw, message in (({"row_ports": ROW_PORTS, "row_buffer_bytes": 4096}, r"rows3: its 2880 bytes at offset_bytes "
                                                                               r"2112 do not lie within"),
                        ({"row_ports": [dict(ROW_PORTS[0], argument="rows_out")]}, r"'rows_out', not rows<n>"),
                        ({"row_ports": [], "row_buffer_bytes": -1}, r"row_buffer_bytes is -1, not a byte count")):
        with pytest.raises(SenteiError, match=r"^EmulatedOverlay row ports: .*" + message) as exc:
            EmulatedOverlay(model, **kw)
        assert "publish" not in str(exc.value)  # no network.json here
