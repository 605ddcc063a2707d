"""The driver's register protocol and buffer handling, through the emulated overlay -- and the
PYNQ ``DefaultIP`` subclass itself, on PYNQ's own MMIO, through a mock pynq device that
forwards to the emulated register file (the way PYNQ's tests mock devices)."""
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from sentei.errors import HardwareTimeoutError, SenteiError
from sentei.host.runtime import driver as drv
from sentei.host.modelfile import reference, synthetic
from sentei.host.runtime.emulated_overlay import IP_BASE, IP_NAME, EmulatedOverlay
from sentei.host.modelfile.schema import weight_blob
from sentei.host.runtime.segmenter import Segmenter
from sentei.overlay import registers as R


@pytest.fixture(scope="module")
def model():
    return synthetic.random_model(seed=11, height=24, width=32)


@pytest.fixture(autouse=True)
def _private_lock_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(drv, "LOCK_DIR", str(tmp_path))


def _writes(log, start=0):
    return [(off, val) for kind, off, *rest in log[start:] if kind == "write" for val in rest]


def test_one_frame_writes_the_documented_registers_in_order(model):
    ov = EmulatedOverlay(model)
    with Segmenter(model, overlay=ov) as seg:
        acc = seg._acc
        mark = len(ov.log)
        frame = synthetic.random_frame(1, 24, 32)
        seg.logits(frame)
        f, lg = acc.frames[0].device_address, acc.logits[0].device_address
        assert _writes(ov.log, mark) == [
            (R.FRAME_LO, f), (R.FRAME_HI, 0), (R.WEIGHTS_LO, 0), (R.WEIGHTS_HI, 0),
            (R.LOGITS_LO, lg), (R.LOGITS_HI, 0), (R.CMD, R.CMD_RUN_FRAME), (R.HEIGHT, 24), (R.WIDTH, 32),
            (R.FRAMES, 1), (R.AP_CTRL, R.AP_START)]
        events = ov.log[mark:]
        flush = events.index(("flush", f, 24 * 32 * 3))
        start = events.index(("write", R.AP_CTRL, R.AP_START))
        invalidate = [i for i, e in enumerate(events) if e[0] == "invalidate"]
        done = [i for i, e in enumerate(events) if e[:2] == ("read", R.AP_CTRL) and e[2] & R.AP_DONE]
        assert flush < start < done[0] < invalidate[0]
        assert events[invalidate[0]] == ("invalidate", lg, int(np.prod(model.shapes()[-1])) * 4)


def test_addresses_above_4gib_are_split_into_two_registers(model):
    ov = EmulatedOverlay(model)
    ov.memory._next = 0x1_2345_0000  # a board whose DDR sits above 4 GiB (e.g. ZynqMP high memory)
    frame = synthetic.random_frame(2, 24, 32)
    with Segmenter(model, overlay=ov) as seg:
        logits = seg.logits(frame)
        w = seg._acc.weights.device_address
    assert w >> 32 == 1
    assert (R.WEIGHTS_LO, w & 0xFFFFFFFF) in _writes(ov.log) and (R.WEIGHTS_HI, 1) in _writes(ov.log)
    assert np.array_equal(logits, reference.run(model, frame))


def test_weights_are_loaded_once_per_model(model):
    ov = EmulatedOverlay(model)
    with Segmenter(model, overlay=ov) as seg:
        for i in range(4):
            seg.logits(synthetic.random_frame(i, 24, 32))
        list(seg.stream(synthetic.random_frame(i, 24, 32) for i in range(3)))
        blob_addr = seg._acc.weights.device_address
    assert [c for c, _ in ov.mmio.commands] == [R.CMD_LOAD_WEIGHTS] + [R.CMD_RUN_FRAME] * 7
    assert sum(1 for e in ov.log if e[0] == "flush" and e[1] == blob_addr) == 1


def test_all_buffers_are_freed_on_close(model):
    ov = EmulatedOverlay(model)
    seg = Segmenter(model, overlay=ov)
    assert ov.memory.live_buffers() == 5  # weights, two frames, two logits
    seg.close()
    seg.close()
    assert ov.memory.live_buffers() == 0 and ov.owner is None
    with pytest.raises(SenteiError, match="closed"):
        seg(synthetic.random_frame(0, 24, 32))


def test_timeout_when_weights_never_load_strands_the_buffers(model, stranded):
    """A command that never finishes: its buffers are kept allocated (the accelerator may still
    write them; freed memory goes back to Linux), the accelerator is given back, one line says so."""
    ov = EmulatedOverlay(model, hang=True)
    t0 = time.monotonic()
    with pytest.raises(HardwareTimeoutError, match="LOAD_WEIGHTS.*buffers are kept .* reload the bitstream"):
        Segmenter(model, overlay=ov, timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 3.0
    assert ov.memory.live_buffers() == 5 and len(stranded) == 5 and ov.owner is None


def test_timeout_mid_stream_strands_the_buffers_and_closes(model, stranded):
    ov = EmulatedOverlay(model)
    seg = Segmenter(model, overlay=ov, timeout=0.3)
    seg(synthetic.random_frame(0, 24, 32))
    ov.mmio.hang = True  # the accelerator stops answering
    with pytest.raises(HardwareTimeoutError, match="RUN_FRAME"):
        seg(synthetic.random_frame(1, 24, 32))
    assert seg.closed and ov.memory.live_buffers() == 5 == len(stranded) and ov.owner is None


def test_closing_mid_frame_waits_for_the_accelerator_before_freeing(model):
    """Closed while a frame runs (a camera loop stopped, Ctrl-C): the buffers are freed only after
    the accelerator's last write -- on a board freeing first lets it write into reused memory."""
    ov = EmulatedOverlay(model, delay_s=0.3)
    seg = Segmenter(model, overlay=ov, timeout=5.0)
    frames = seg.stream([synthetic.random_frame(i, 24, 32) for i in range(3)])
    next(frames)  # the first frame's labels; the second is on the accelerator
    seg.close()
    assert ov.memory.live_buffers() == 0 and ov.owner is None
    time.sleep(0.4)
    assert ov.mmio.fault is None  # no write landed outside a live buffer


def test_second_segmenter_on_the_same_overlay_is_refused(model):
    ov = EmulatedOverlay(model)
    first = Segmenter(model, overlay=ov)
    with pytest.raises(SenteiError, match="in use by Segmenter"):
        Segmenter(model, overlay=ov)
    assert ov.memory.live_buffers() == 5  # the refused one allocated nothing
    first.close()
    with Segmenter(model, overlay=ov) as second:
        assert second(synthetic.random_frame(0, 24, 32)).shape == (24, 32)


def test_a_model_the_bitstream_was_not_built_for_is_refused(model):
    other = synthetic.random_model(seed=12, height=24, width=32, specs=(
        synthetic.LayerSpec(8, stride=2, density=0.4),) + synthetic.TINY[1:])
    ov = EmulatedOverlay(model)
    with pytest.raises(SenteiError, match=r"bitstream's.*status 2"):
        Segmenter(other, overlay=ov)
    assert ov.memory.live_buffers() == 0 and ov.owner is None


def test_register_map_mismatch_is_caught_before_any_write(model):
    ov = EmulatedOverlay(model)
    ov.ip_dict[IP_NAME]["registers"]["cmd"]["address_offset"] = 0x38
    with pytest.raises(SenteiError, match="register cmd is at 0x38.*expected at 0x34"):
        Segmenter(model, overlay=ov)
    assert not _writes(ov.log) and ov.memory.live_buffers() == 0
    del ov.ip_dict[IP_NAME]["registers"]["status_ctrl"]
    ov.ip_dict[IP_NAME]["registers"]["cmd"]["address_offset"] = R.CMD
    with pytest.raises(SenteiError, match="status_ctrl is missing"):
        Segmenter(model, overlay=ov)


def test_pipelined_stream_prepares_the_next_frame_while_one_runs(model):
    ov = EmulatedOverlay(model, delay_s=0.02)
    frames = [synthetic.random_frame(i, 24, 32) for i in range(4)]
    with Segmenter(model, overlay=ov) as seg:
        mark = len(ov.log)
        results = list(seg.stream(frames))
        bufs = [b.device_address for b in seg._acc.frames]
    for frame, res in zip(frames, results):
        assert res.frame is frame
        assert np.array_equal(res.logits, reference.run(model, frame))
        assert np.array_equal(res.labels, reference.predict(model, frame))
    events = ov.log[mark:]
    starts = [i for i, e in enumerate(events) if e == ("write", R.AP_CTRL, R.AP_START)]
    frame_addr = [v for off, v in _writes(events) if off == R.FRAME_LO]
    assert frame_addr == [bufs[0], bufs[1], bufs[0], bufs[1]]  # double buffering
    for n in range(3):  # frame n+1 is flushed after frame n started and before frame n is seen done
        flush_next = events.index(("flush", bufs[(n + 1) % 2], 24 * 32 * 3), starts[n])
        done_n = next(i for i in range(starts[n], len(events))
                      if events[i][:2] == ("read", R.AP_CTRL) and events[i][2] & R.AP_DONE)
        assert starts[n] < flush_next < done_n


def test_stopping_a_stream_early_leaves_the_accelerator_idle(model):
    ov = EmulatedOverlay(model)
    with Segmenter(model, overlay=ov) as seg:
        for res in seg.stream(synthetic.random_frame(i, 24, 32) for i in range(5)):
            break
        assert seg._acc.running is None
        frame = synthetic.random_frame(7, 24, 32)
        assert np.array_equal(seg.logits(frame), reference.run(model, frame))


# ---------------------------------------------------------------------------------------
# batches: FRAMES frames per RUN_FRAME


def _accelerator(ov, model, **kw):
    return drv.Accelerator(drv.EmulatedIP(ov.ip_dict[IP_NAME]), ov.allocate, model, **kw)


def test_a_batch_in_one_start_equals_single_runs_bit_for_bit(model):
    ov = EmulatedOverlay(model)
    acc = _accelerator(ov, model, timeout=5.0, batch=4)
    frames = [synthetic.random_frame(40 + i, 24, 32) for i in range(4)]
    mark, cmds = len(ov.log), len(ov.mmio.commands)
    batch = acc.run_frames(frames)
    writes = _writes(ov.log, mark)
    assert writes.count((R.AP_CTRL, R.AP_START)) == 1 and (R.FRAMES, 4) in writes
    assert writes[-2:] == [(R.FRAMES, 4), (R.AP_CTRL, R.AP_START)]
    assert ("flush", acc.frames[0].device_address, 4 * 24 * 32 * 3) in ov.log[mark:]
    singles = [acc.run_frames([f])[0] for f in frames]
    assert batch.shape == (4, *model.shapes()[-1]) and batch.dtype == np.int32
    for i, frame in enumerate(frames):
        assert np.array_equal(batch[i], singles[i])
        assert np.array_equal(batch[i], reference.run(model, frame))
    assert [c for c, _ in ov.mmio.commands][cmds:] == [R.CMD_RUN_FRAME] * 5
    seven = acc.run_frames([synthetic.random_frame(i, 24, 32) for i in range(7)])  # starts of 4 and 3
    assert [v for off, v in _writes(ov.log) if off == R.FRAMES][-2:] == [4, 3] and seven.shape[0] == 7
    acc.close()
    assert ov.memory.live_buffers() == 0


def test_buffers_too_small_for_the_batch_are_refused_in_one_line(model):
    ov = EmulatedOverlay(model)
    acc = _accelerator(ov, model, timeout=5.0, batch=2)
    frames = [synthetic.random_frame(i, 24, 32) for i in range(3)]
    mark = len(ov.log)
    with pytest.raises(SenteiError, match=r"^the frame buffer holds 4608 bytes, a batch of 3 frames needs 6912: "
                                          r"allocate it for the batch \(Accelerator\(\.\.\., batch=3\).*\)$") as exc:
        acc.load_frames(0, frames)
    assert "\n" not in str(exc.value)
    with pytest.raises(SenteiError, match=r"^the frame buffer holds 4608 bytes, a batch of 3 frames needs 6912"):
        acc.submit(0, 3)
    acc.logits[1] = acc.logits[1][:1]  # a logits buffer of one map behind a frame buffer of two
    with pytest.raises(SenteiError, match=r"^the logits buffer holds \d+ bytes, a batch of 2 frames needs \d+"):
        acc.submit(1, 2)
    with pytest.raises(SenteiError, match="^a RUN_FRAME runs 1 to 64 frames, not 0$"):
        acc.submit(0, 0)
    assert (R.AP_CTRL, R.AP_START) not in _writes(ov.log, mark)  # nothing started
    acc.reserve(3)  # grown: now it fits, in one start
    assert acc.batch == 3 and acc.run_frames(frames).shape[0] == 3
    with pytest.raises(SenteiError, match="^batch=65: a batch is 1 to 64 frames$"):
        acc.reserve(65)
    acc.close()
    assert ov.memory.live_buffers() == 0


def test_frames_zero_is_refused_by_the_accelerator_with_its_meaning(model):
    ov = EmulatedOverlay(model)
    acc = _accelerator(ov, model, timeout=5.0)
    ip = acc.ip
    ip.start_command(R.CMD_RUN_FRAME, frame=acc.frames[0].device_address, logits=acc.logits[0].device_address,
                     height=24, width=32, frames=0)
    status = ip.wait_done(2.0)
    assert status == R.STATUS_BAD_FRAMES
    with pytest.raises(SenteiError, match=r"refused the frame: FRAMES is 0: a RUN_FRAME runs at least one frame "
                                          r"\(status 6\)$"):
        drv.check_status(status, "the frame")
    acc.close()


def test_the_timeout_of_a_batch_grows_with_its_frames(model, stranded):
    ov = EmulatedOverlay(model)
    acc = _accelerator(ov, model, timeout=0.15, batch=3)
    ov.mmio.hang = True
    acc.load_frames(0, [synthetic.random_frame(i, 24, 32) for i in range(3)])
    acc.submit(0)
    t0 = time.monotonic()
    with pytest.raises(HardwareTimeoutError, match=r"within 0.45 s of RUN_FRAME of 3 frames"):
        acc.collect_frames()
    assert 0.45 <= time.monotonic() - t0 < 3.0
    assert acc.closed and len(stranded) == 5


def test_a_bitstream_without_the_frames_register_is_refused(model):
    ov = EmulatedOverlay(model)
    ov.ip_dict[IP_NAME]["registers"]["frames"]["address_offset"] = R.STATUS  # the old map: no FRAMES
    with pytest.raises(SenteiError, match="register frames is at 0x54.*expected at 0x4c"):
        Segmenter(model, overlay=ov)
    del ov.ip_dict[IP_NAME]["registers"]["frames"]
    with pytest.raises(SenteiError, match="register frames is missing"):
        Segmenter(model, overlay=ov)
    assert not _writes(ov.log)


# ---------------------------------------------------------------------------------------
# rows in DDR: a row port per layer (rows<n>), all into one row buffer

ROW_PORTS = [{"argument": "rows1", "layer": "conv1", "offset_bytes": 0, "bytes": 2048},
             {"argument": "rows3", "layer": "conv3", "offset_bytes": 2112, "bytes": 2880}]
ROW_BYTES = 4992  # 2112 + 2880: the end of the last region
ROW_REGS = {0x5C, 0x60, 0x68, 0x6C}  # rows1 LO/HI, rows3 LO/HI (after STATUS_CTRL at 0x58)


def _run_frame_writes(log):
    """The register writes of every RUN_FRAME start in ``log``, each up to its AP_START."""
    starts, current = [], []
    for off, val in _writes(log):
        current.append((off, val))
        if (off, val) == (R.AP_CTRL, R.AP_START):
            if (R.CMD, R.CMD_RUN_FRAME) in current:
                starts.append(current)
            current = []
    return starts


def _network_json(bit, model, **extra):
    import json

    facts = {"model": model.name, "blob_words": int(weight_blob(model).size), **extra}
    (bit.parent / "network.json").write_text(json.dumps(facts))


def test_each_row_port_gets_the_row_buffer_plus_its_offset_before_every_run_frame(model):
    ov = EmulatedOverlay(model, row_ports=ROW_PORTS)
    assert ov.row_buffer_bytes == ROW_BYTES and ov.row_ports == [("rows1", 0), ("rows3", 2112)]
    ov.memory._next = 0x1_2345_0000  # above 4 GiB: the high words matter
    frames = [synthetic.random_frame(i, 24, 32) for i in range(3)]
    with Segmenter(model, overlay=ov) as seg:
        acc = seg._acc
        rows = acc.rows.device_address
        assert rows >> 32 == 1 and acc.rows.nbytes == ROW_BYTES
        assert ov.memory.live_buffers() == 6  # weights, rows, two frames, two logits
        assert not [w for w in _writes(ov.log) if w[0] in ROW_REGS]  # LOAD_WEIGHTS: none
        for frame, res in zip(frames, seg.stream(frames)):
            assert np.array_equal(res.logits, reference.run(model, frame))
        batch = seg.segment_batch(frames)  # grows the frame/logits buffers: the row buffer stays
        assert all(np.array_equal(r.logits, reference.run(model, f)) for f, r in zip(frames, batch))
        assert acc.rows.device_address == rows and not acc.rows.freed and ov.memory.live_buffers() == 6
        starts = _run_frame_writes(ov.log)
        assert len(starts) == 4
        low = rows & 0xFFFFFFFF
        for writes in starts:
            assert [w for w in writes if w[0] in ROW_REGS] == [(0x5C, low), (0x60, 1), (0x68, low + 2112), (0x6C, 1)]
        f, lg = acc.frames[0].device_address, acc.logits[0].device_address
        assert starts[-1] == [  # after the three buffers, before CMD
            (R.FRAME_LO, f & 0xFFFFFFFF), (R.FRAME_HI, 1), (R.WEIGHTS_LO, 0), (R.WEIGHTS_HI, 0),
            (R.LOGITS_LO, lg & 0xFFFFFFFF), (R.LOGITS_HI, 1), (0x5C, low), (0x60, 1), (0x68, low + 2112),
            (0x6C, 1), (R.CMD, R.CMD_RUN_FRAME), (R.HEIGHT, 24), (R.WIDTH, 32), (R.FRAMES, 3),
            (R.AP_CTRL, R.AP_START)]
        assert not any(e[0] in ("flush", "invalidate") and e[1] == rows for e in ov.log)  # the accelerator's alone
    assert ov.memory.live_buffers() == 0


def test_without_row_ports_nothing_is_written_to_the_row_port_offsets(model):
    ov = EmulatedOverlay(model)
    assert ov.row_ports == [] and ov.row_buffer_bytes == 0
    with Segmenter(model, overlay=ov) as seg:
        seg.segment_batch([synthetic.random_frame(i, 24, 32) for i in range(2)])
        assert seg._acc.rows is None and ov.memory.live_buffers() == 5
    assert len(_run_frame_writes(ov.log)) == 1
    assert not [w for w in _writes(ov.log) if w[0] in ROW_REGS | {0x64, 0x70}]


def test_a_network_with_row_ports_needs_their_registers(model):
    """network.json lists row ports, the .hwh has no rows<n>_1: one line naming the problem and
    the fix, before any write or allocation."""
    ports = [("rows1", 0), ("rows3", 2112)]
    ov = EmulatedOverlay(model)  # a register map without row ports
    ip = drv.EmulatedIP(ov.ip_dict[IP_NAME])
    ip.check_register_map()
    ip.check_register_map([])  # no row ports needed: fine without them
    with pytest.raises(SenteiError, match=r"^the bitstream's network keeps line-buffer rows in DDR \(network.json: "
                                          r"row ports rows1, rows3\) but its register map has no rows1_1/rows3_1 "
                                          r"registers: rebuild the bitstream from the `sentei overlay codegen` "
                                          r"output of this network .*$") as exc:
        ip.check_register_map(ports)
    assert "\n" not in str(exc.value)
    with pytest.raises(SenteiError, match="keeps line-buffer rows in DDR"):
        _accelerator(ov, model, timeout=5.0, row_ports=ports, row_buffer_bytes=ROW_BYTES)
    assert not _writes(ov.log) and ov.memory.live_buffers() == 0
    with pytest.raises(SenteiError, match=r"row port addresses for 'rows1' were given but the register map was "
                                          r"checked for no row ports"):
        ip.start_command(R.CMD_RUN_FRAME, rows={"rows1": 0x1000_0000})
    assert not _writes(ov.log)
    table = ov.ip_dict[IP_NAME]["registers"]
    table["rows1_1"] = dict(table["frames"], address_offset=0x5C)
    with pytest.raises(SenteiError, match=r"has no rows3_1 register: rebuild"):
        ip.check_register_map(ports)
    table["rows3_1"] = dict(table["frames"], address_offset=0x74)  # another layout than registers.py's
    with pytest.raises(SenteiError, match=r"register rows3_1 is at 0x74 .* expected at 0x68"):
        ip.check_register_map(ports)
    table["rows3"] = table.pop("rows3_1")  # older Vitis HLS: one register per pointer
    table["rows3"]["address_offset"] = 0x68
    ip.check_register_map(ports)
    with pytest.raises(SenteiError, match=r"^a RUN_FRAME of this bitstream needs the address of every row port: "
                                          r"rows3 missing$"):
        ip.start_command(R.CMD_RUN_FRAME, rows={"rows1": 0x1000_0000})
    with pytest.raises(SenteiError, match=r"needs the address of every row port: rows1, rows3 missing"):
        ip.start_command(R.CMD_RUN_FRAME)
    assert not _writes(ov.log)


def _each_refused(bit, model, bad) -> None:
    """Each ``(network.json fields, message)`` of ``bad`` refused by check_network in one line naming the file."""
    for extra, message in bad:
        _network_json(bit, model, **extra)
        with pytest.raises(SenteiError, match=rf"^.*{bit.parent.name}/network.json: " + message
                           + r".*: publish the network.json of the bitstream's own build$") as exc:
            drv.check_network(model, bit)
        assert "\n" not in str(exc.value)


def test_network_json_shared_windows(model, tmp_path):
    bit = installed(tmp_path, "kv260/sentei.bit", network=False) / "kv260" / "sentei.bit"
    last = len(model.layers) - 1
    good = (({}, []), ({"shared_windows": []}, []),
            ({"shared_windows": [{"layer": 1, "lanes": 4, "banks": 5}]}, [{"layer": 1, "lanes": 4, "banks": 5}]))
    for extra, want in good:
        _network_json(bit, model, **extra)
        assert drv.shared_windows_of(drv.check_network(model, bit), model, bit) == want
    one = {"layer": 1, "lanes": 4, "banks": 5}
    bad = [
        ({"shared_windows": {"layer": 1}}, r"shared_windows is \{'layer': 1\}, not a list"),
        ({"shared_windows": ["conv2"]}, r"shared_windows\[0\] is 'conv2', not an object"),
        ({"shared_windows": [dict(one, banks="5")]}, r"shared_windows\[0\] is .*: layer, lanes and banks must be integers"),
        ({"shared_windows": [dict(one, lanes=True)]}, r"shared_windows\[0\] is .*: layer, lanes and banks must be integers"),
        ({"shared_windows": [dict(one, layer=last + 1)]}, rf"shared_windows\[0\].layer is {last + 1}: .* has layers 0..{last}"),
        ({"shared_windows": [one, one]}, r"shared_windows\[1\].layer is 1: .* each named once"),
        ({"shared_windows": [dict(one, banks=3)]}, r"shared_windows\[0\] of layer 1: 4 lanes and 3 banks"),
        ({"shared_windows": [dict(one, lanes=0)]}, r"shared_windows\[0\] of layer 1: 0 lanes and 5 banks"),
    ]
    _each_refused(bit, model, bad)


def test_network_json_row_ports(model, tmp_path):
    bit = installed(tmp_path, "pynqz2/sentei.bit", network=False) / "pynqz2" / "sentei.bit"
    good = (({}, (0, [])), ({"row_buffer_bytes": 0, "row_ports": []}, (0, [])),
            ({"row_buffer_bytes": ROW_BYTES, "row_ports": ROW_PORTS}, (ROW_BYTES, [("rows1", 0), ("rows3", 2112)])),
            ({"row_buffer_bytes": 8192, "row_ports": ROW_PORTS[1:]}, (8192, [("rows3", 2112)])))
    for extra, want in good:
        _network_json(bit, model, **extra)
        assert drv.row_ports_of(drv.check_network(model, bit), bit) == want
    one, two = ROW_PORTS
    bad = [
        ({"row_buffer_bytes": ROW_BYTES - 8, "row_ports": ROW_PORTS},
         r"row_ports\[1\] rows3: its 2880 bytes at offset_bytes 2112 do not lie within the row buffer of "
         r"row_buffer_bytes 4984"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, offset_bytes=4096)]},
         r"row_ports\[1\] rows3: its 2880 bytes at offset_bytes 4096 do not lie within"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, argument="frame")]},
         r"row_ports\[1\].argument is 'frame', not rows<n>"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [dict(one, argument="rows1_1"), two]},
         r"row_ports\[0\].argument is 'rows1_1', not rows<n>"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [dict(one, argument="rows1\nx"), two]},
         r"row_ports\[0\].argument is 'rows1\\nx', not rows<n>"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [dict(one, argument=1), two]},
         r"row_ports\[0\].argument is 1, not rows<n>"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [two, one]},
         r"row_ports\[1\].argument rows1 does not follow rows3"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, argument="rows1")]},
         r"row_ports\[1\].argument rows1 does not follow rows1"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, offset_bytes=2044)]},
         r"row_ports\[1\].offset_bytes of rows3 is 2044, not a multiple of 8"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, offset_bytes=2040)]},
         r"row_ports\[1\] rows3: its bytes 2040..4920 overlap rows1's 0..2048"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, bytes="2880")]},
         r"row_ports\[1\].bytes of rows3 is '2880', not a byte count"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, offset_bytes=-8)]},
         r"row_ports\[1\].offset_bytes of rows3 is -8, not a byte count"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": [one, dict(two, bytes=0)]},
         r"row_ports\[1\].bytes of rows3 is 0: a port's region holds its layer's rows"),
        ({"row_ports": ROW_PORTS}, r"row_ports\[0\] rows1: its 2048 bytes at offset_bytes 0 do not lie within the row "
                                   r"buffer of row_buffer_bytes 0"),
        ({"row_buffer_bytes": ROW_BYTES}, r"row_buffer_bytes is 4992 but row_ports lists no port"),
        ({"row_buffer_bytes": "4992", "row_ports": ROW_PORTS}, r"row_buffer_bytes is '4992', not a byte count"),
        ({"row_buffer_bytes": True, "row_ports": []}, r"row_buffer_bytes is True, not a byte count"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": {"rows1": 0}}, r"row_ports is \{'rows1': 0\}, not a list"),
        ({"row_buffer_bytes": ROW_BYTES, "row_ports": ["rows1"]}, r"row_ports\[0\] is 'rows1', not an object"),
    ]
    _each_refused(bit, model, bad)
    (bit.parent / "network.json").write_text("[1, 2]")
    with pytest.raises(SenteiError, match=r"network.json: holds list, not an object"):
        drv.check_network(model, bit)


# ---------------------------------------------------------------------------------------
# the real PYNQ classes


def test_importing_the_host_package_does_not_import_pynq():
    code = ("import sys, sentei.host.runtime.segmenter, sentei.host.runtime.driver, sentei.host.runtime.emulated_overlay, sentei.host.commands.demo, "
            "sentei.host.runtime.camera, sentei.host.runtime.demo; "
            "assert 'pynq' not in sys.modules, 'pynq imported'; "
            "assert 'cv2' not in sys.modules, 'cv2 imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


pynq = pytest.importorskip("pynq", reason="pynq is not installed (pip install 'sentei[board]')")


class EmulatedPynqDevice(pynq.Device):
    """A pynq Device whose registers are the emulated accelerator's (PYNQ's REGISTER_RW path)."""

    def __init__(self, overlay):
        super().__init__("sentei-emulated")
        self.capabilities = {"REGISTER_RW": True}
        self.overlay = overlay
        self.allocations = []

    def read_registers(self, address, length):
        assert length == 4
        return struct.pack("<I", self.overlay.mmio.read(address - IP_BASE))

    def write_registers(self, address, data):
        assert len(data) == 4
        self.overlay.mmio.write(address - IP_BASE, struct.unpack("<I", data)[0])

    def allocate(self, shape, dtype, **kwargs):
        buf = self.overlay.allocate(shape, dtype)
        self.allocations.append(buf.device_address)
        return buf


class FakePynqOverlay:
    """What ``pynq.Overlay`` offers the driver: ``ip_dict`` with the accelerator's description."""

    def __init__(self, emulated):
        self.device = EmulatedPynqDevice(emulated)
        self.ip_dict = {IP_NAME: dict(emulated.ip_dict[IP_NAME], device=self.device)}


def test_board_driver_class_is_a_registered_default_ip():
    from pynq.overlay import _ip_drivers

    cls = drv.board_driver_class()
    assert issubclass(cls, pynq.DefaultIP) and issubclass(cls, drv.SenteiDriver)
    assert cls.bindto == [R.VLNV]
    assert _ip_drivers[R.VLNV] is cls and drv.board_driver_class() is cls  # defined once


def test_pynq_default_ip_subclass_runs_bit_exact_on_pynq_mmio(model):
    emulated = EmulatedOverlay(model)
    board = FakePynqOverlay(emulated)
    frames = [synthetic.random_frame(i, 24, 32) for i in range(3)]
    with Segmenter(model, overlay=board) as seg:
        assert seg.backend == "fpga"
        assert type(seg.ip).__name__ == "SenteiIP" and isinstance(seg.ip.mmio, pynq.MMIO)
        assert seg.ip.register_map.CTRL.address == R.AP_CTRL  # PYNQ's register map of the same table
        for frame, res in zip(frames, seg.stream(frames)):
            assert np.array_equal(res.logits, reference.run(model, frame))
        assert np.array_equal(seg(frames[0]), reference.predict(model, frames[0]))
        batch = seg.segment_batch(frames)  # FRAMES=3 through PYNQ's MMIO; the buffers grown with pynq.allocate
        assert all(np.array_equal(r.logits, reference.run(model, f)) for f, r in zip(frames, batch))
        assert (R.FRAMES, 3) in _writes(emulated.log)
        # pynq.allocate went to the IP's device: five buffers, the blob first, then the four grown ones
        assert len(board.device.allocations) == 9
        assert seg._acc.weights.device_address == board.device.allocations[0]
        with pytest.raises(SenteiError, match="FPGA accelerator is in use"):
            Segmenter(model, overlay=board)
    assert emulated.memory.live_buffers() == 0
    assert [c for c, _ in emulated.mmio.commands] == [R.CMD_LOAD_WEIGHTS] + [R.CMD_RUN_FRAME] * 5
    np.testing.assert_array_equal(emulated.memory.live_bytes(), 0)


def test_pynq_without_a_device_means_emulation(model, monkeypatch, capsys):
    ok, reason = drv.pynq_device_status()
    if ok:
        pytest.skip("this machine has an FPGA device")
    assert "finds no FPGA device" in reason
    from sentei.host.runtime import segmenter

    monkeypatch.setattr(segmenter, "_SAID", set())
    with Segmenter(model, backend="auto") as seg:
        assert seg.backend in ("emu", "reference")
        assert "no FPGA" in seg.backend_reason
    with Segmenter(model, backend="auto"):
        pass
    err = capsys.readouterr().err
    assert err.count("sentei: backend") == 1 and "finds no FPGA device" in err
    with pytest.raises(SenteiError, match="backend fpga: pynq is installed but finds no FPGA device"):
        Segmenter(model, backend="fpga")


def test_blob_is_what_the_driver_flushes(model):
    emulated = EmulatedOverlay(model)
    with Segmenter(model, overlay=emulated) as seg:
        addr = seg._acc.weights.device_address
        n = weight_blob(model).size
        device_view = np.frombuffer(emulated.memory.load(addr, 4 * n), "<u4")
    assert np.array_equal(device_view, weight_blob(model))


def test_accelerator_alone_strands_its_buffers_on_timeout(model, stranded):
    """Without a Segmenter around it, the Accelerator itself closes when the hardware hangs, and
    keeps the buffers of the command that never finished allocated."""
    ov = EmulatedOverlay(model)
    ip = drv.EmulatedIP(ov.ip_dict[IP_NAME])
    acc = drv.Accelerator(ip, ov.allocate, model, timeout=0.2)
    acc.load_frame(0, synthetic.random_frame(0, 24, 32))
    ov.mmio.hang = True
    acc.submit(0)
    with pytest.raises(HardwareTimeoutError):
        acc.collect()
    assert acc.closed and ov.memory.live_buffers() == 5  # stranded, not freed under the accelerator
    hung = EmulatedOverlay(model, hang=True)
    with pytest.raises(HardwareTimeoutError):
        drv.Accelerator(drv.EmulatedIP(hung.ip_dict[IP_NAME]), hung.allocate, model, timeout=0.1)
    assert hung.memory.live_buffers() == 5 and len(stranded) == 10


def test_emulated_wait_sleeps_until_done_instead_of_polling(model):
    """The emulated accelerator shares the CPU: the driver wakes once at done (its interrupt-like
    event), so a 150 ms command costs a handful of AP_CTRL reads, not one every 200 us."""
    ov = EmulatedOverlay(model, delay_s=0.15)
    seg = Segmenter(model, overlay=ov, timeout=5.0)
    start = len(ov.log)
    t0 = time.monotonic()
    seg(synthetic.random_frame(0, 24, 32))
    assert time.monotonic() - t0 >= 0.15
    polls = sum(1 for kind, off, *_ in ov.log[start:] if kind == "read" and off == R.AP_CTRL)
    assert polls <= 4, polls  # start_command's idle check, then done -- polling would be ~750
    assert ov.mmio.done_event.is_set()
    seg.close()


def test_board_driver_still_polls_with_sleeps(model, monkeypatch):
    """Without a done event (a board's MMIO) wait_done sleeps 10 us .. 200 us between polls."""
    sleeps = []
    ov = EmulatedOverlay(model, delay_s=0.05)
    ip = drv.EmulatedIP(ov.ip_dict[IP_NAME])
    monkeypatch.setattr(ip, "_pause", lambda s, deadline: (sleeps.append(s), time.sleep(s)))
    blob = weight_blob(model)
    buf = ov.allocate(blob.shape, blob.dtype)
    buf[:] = blob
    buf.flush()
    ip.start_command(R.CMD_LOAD_WEIGHTS, weights=buf.device_address)
    assert ip.wait_done(2.0) == R.STATUS_OK
    assert len(sleeps) > 10 and sleeps[0] == pytest.approx(1e-5) and max(sleeps) == pytest.approx(2e-4)
    ov.close()


def installed(root, *names, network=True):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"BIT")
        path.with_suffix(".hwh").write_text("<hwh/>")
        if network:
            path.with_name("network.json").write_text("{}")
    return root


def test_a_bitstream_without_its_network_json_is_not_usable(tmp_path, monkeypatch):
    """The build publishes network.json beside the .bit; without it no model can be checked, so
    find_bitstream refuses it by name -- before anything opens, where `auto` still emulates."""
    from sentei.host.runtime import segmenter

    root = installed(tmp_path / "bitstreams", "zcu104/sentei.bit", network=False)
    with pytest.raises(SenteiError, match=r"zcu104/network.json is missing: the build publishes it beside sentei.bit"):
        drv.find_bitstream(root=root, environ={"BOARD": "ZCU104"})
    with pytest.raises(SenteiError, match="network.json is missing"):
        drv.find_bitstream(root / "zcu104" / "sentei.bit")
    monkeypatch.setattr(drv, "pynq_device_status", lambda: (True, "pynq finds the ZCU104"))
    real_find = drv.find_bitstream
    monkeypatch.setattr(drv, "find_bitstream", lambda bitfile=None: real_find(root=root, environ={"BOARD": "ZCU104"}))
    choice = segmenter.choose_backend("auto")
    assert choice.name in ("emu", "reference") and "network.json is missing" in choice.reason


def test_the_board_lock_file_is_shared_by_every_user(tmp_path):
    """Created writable for all (a later user, or root under fs.protected_regular, opens it
    without O_CREAT), and an existing file is opened as it is."""
    import stat

    lock = drv._BoardLock("first")
    path = tmp_path / drv.LOCK_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o666
    lock.release()
    path.chmod(0o644)
    again = drv._BoardLock("second")  # the existing file, not a new one
    assert path.read_text() == f"second (pid {os.getpid()})"
    again.release()

def test_a_lock_file_this_user_cannot_open_is_one_line(tmp_path, monkeypatch):
    """One an older sentei left read-only for others (the EACCES a non-root user gets; root
    writes anyway, so the refusal is stood in for)."""
    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(drv._BoardLock, "_open", staticmethod(refuse))
    with pytest.raises(SenteiError, match=r"^cannot open the accelerator lock .*: another user owns it read-only; "
                                          r"remove it \(sudo rm .*\) when no sentei program is running$"):
        drv._BoardLock("third")


def test_the_installed_bitstream_is_the_one_for_this_board(tmp_path):
    """$BOARD is PYNQ's board name (Ultra96 on an Ultra96-V2 image: pynq_board in
    overlay/boards/ultra96v2.json); no bitstream for it is an error, never another board's."""
    root = installed(tmp_path / "bitstreams", "kv260/sentei.bit", "ultra96v2/sentei.bit", "zcu104/sentei.bit")
    find = drv.find_bitstream
    assert find(root=root, environ={"BOARD": "Ultra96"}) == root / "ultra96v2" / "sentei.bit"
    assert find(root=root, environ={"BOARD": "ZCU104"}) == root / "zcu104" / "sentei.bit"
    with pytest.raises(SenteiError, match=r"no installed bitstream is for this board \(\$BOARD=Pynq-Z2\); installed: "
                                          r"kv260/sentei.bit, ultra96v2/sentei.bit, zcu104/sentei.bit"):
        find(root=root, environ={"BOARD": "Pynq-Z2"})
    with pytest.raises(SenteiError, match=r"3 bitstreams are installed .* \$BOARD is not set"):
        find(root=root, environ={})
    single = installed(tmp_path / "one", "kv260/sentei.bit")
    with pytest.raises(SenteiError, match=r"\$BOARD=ZCU104"):  # one installed, for another board: refused too
        find(root=single, environ={"BOARD": "ZCU104"})
    assert find(root=single, environ={}) == single / "kv260" / "sentei.bit"
    anyboard = installed(tmp_path / "any", "sentei.bit")
    assert find(root=anyboard, environ={"BOARD": "ZCU104"}) == anyboard / "sentei.bit"
    assert find(root=tmp_path / "none", environ={"BOARD": "ZCU104"}) is None


def test_a_model_must_have_the_blob_length_the_bitstream_was_built_for(model, tmp_path):
    import json

    bit = installed(tmp_path, "zcu104/sentei.bit", network=False) / "zcu104" / "sentei.bit"
    with pytest.raises(SenteiError, match="network.json is missing"):
        drv.check_network(model, bit)
    words = int(weight_blob(model).size)
    (bit.parent / "network.json").write_text(json.dumps({"model": "camvid-x", "blob_words": words + 4}))
    with pytest.raises(SenteiError, match=rf"weight blob is {words} words, the bitstream .* built for camvid-x "
                                          rf"\({words + 4} words\)"):
        drv.check_network(model, bit)
    (bit.parent / "network.json").write_text(json.dumps({"model": model.name, "blob_words": words}))
    drv.check_network(model, bit)


def test_a_board_bitstream_with_row_ports_gets_them_from_network_json(model, tmp_path):
    """The fpga path: network.json beside the .bit lists the row ports, SenteiIP on PYNQ's MMIO
    writes the pynq.allocate'd row buffer + each offset to its port; a .hwh without them is refused."""
    bit = installed(tmp_path, "pynqz2/sentei.bit", network=False) / "pynqz2" / "sentei.bit"
    _network_json(bit, model, row_buffer_bytes=ROW_BYTES, row_ports=ROW_PORTS)
    emulated = EmulatedOverlay(model, row_ports=ROW_PORTS)
    board = FakePynqOverlay(emulated)
    board.bitfile_name = str(bit)
    frame = synthetic.random_frame(3, 24, 32)
    with Segmenter(model, overlay=board) as seg:
        assert seg.backend == "fpga" and type(seg.ip).__name__ == "SenteiIP"
        rows = seg._acc.rows.device_address
        assert rows in board.device.allocations and seg._acc.rows.nbytes == ROW_BYTES
        assert seg._acc.row_ports == [("rows1", 0), ("rows3", 2112)]
        assert np.array_equal(seg.logits(frame), reference.run(model, frame))
    (start,) = _run_frame_writes(emulated.log)
    assert [w for w in start if w[0] in ROW_REGS] == [(0x5C, rows), (0x60, 0), (0x68, rows + 2112), (0x6C, 0)]
    assert emulated.memory.live_buffers() == 0
    old = EmulatedOverlay(model)  # a bitstream built without the row ports, with this network.json
    board = FakePynqOverlay(old)
    board.bitfile_name = str(bit)
    with pytest.raises(SenteiError, match=r"keeps line-buffer rows in DDR .* no rows1_1/rows3_1 registers: rebuild"):
        Segmenter(model, overlay=board)
    assert not _writes(old.log) and old.memory.live_buffers() == 0
    late = [ROW_PORTS[0], dict(ROW_PORTS[1], offset_bytes=4096)]
    _network_json(bit, model, row_buffer_bytes=ROW_BYTES, row_ports=late)
    board = FakePynqOverlay(emulated)
    board.bitfile_name = str(bit)
    mark = len(emulated.log)
    with pytest.raises(SenteiError, match=r"network.json: row_ports\[1\] rows3: its 2880 bytes at offset_bytes 4096"):
        Segmenter(model, overlay=board)
    assert len(emulated.log) == mark  # refused before anything is read, written or allocated
