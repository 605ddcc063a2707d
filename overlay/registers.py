"""The accelerator's AXI4-Lite register map and command protocol (docs/register-map.md).

One place for the numbers that the HLS top function (``overlay/hls/sentei_top.cpp``),
the PYNQ driver and the emulated overlay share. The offsets are the ones Vitis HLS
generates for the top function's ``s_axilite`` interface (``ap_ctrl_hs`` block protocol,
64-bit ``m_axi`` offsets, scalars in argument order); on a board the driver checks them
against the register map PYNQ parses from the ``.hwh`` before it writes anything.
"""
from __future__ import annotations

VLNV = "sentei.org:hls:sentei_top:1.0"  # vendor:library:name:version of the exported IP

# block-level control (ap_ctrl_hs)
AP_CTRL = 0x00
AP_START = 1 << 0
AP_DONE = 1 << 1  # clear-on-read
AP_IDLE = 1 << 2
AP_READY = 1 << 3
GIE = 0x04
IER = 0x08
ISR = 0x0C

# arguments of sentei_top(frame, weights, logits, cmd, height, width, frames, status[, rows<n>...])
FRAME_LO = 0x10  # FRAMES uint8 RGB frames, each H*W*3 bytes row-major HWC padded to whole 32-bit words
FRAME_HI = 0x14
WEIGHTS_LO = 0x1C  # the weight blob of the model file (uint32 words)
WEIGHTS_HI = 0x20
LOGITS_LO = 0x28  # FRAMES int32 logit maps, each h*w*num_classes, row-major HWC
LOGITS_HI = 0x2C
CMD = 0x34
HEIGHT = 0x3C
WIDTH = 0x44
FRAMES = 0x4C  # frames one RUN_FRAME streams through the pipeline (>= 1), back to back in both buffers
STATUS = 0x54  # written by the accelerator at the end of every command
STATUS_CTRL = 0x58  # bit 0: status valid (ap_vld)
ADDRESS_RANGE = 0x1000

# Row ports: only in a bitstream whose network keeps some conv layer's line-buffer rows in DDR
# (network.json "row_ports" not empty). Each such layer n has its own 64-bit m_axi pointer argument
# rows<n> (its own bundle), appended after status in network order, e.g.
# sentei_top(..., status, rows5, rows6). Vitis HLS lays them out after STATUS_CTRL: row port j
# (0, 1, ... in argument order) has its low word at ROWS_FIRST + j*ROW_PORT_STRIDE, its high word
# 4 bytes above and a reserved word after (the .hwh names them rows<n>_1, rows<n>_2). Every port
# points into ONE row buffer the driver allocates: port j gets its address + the port's
# offset_bytes (network.json). Without such layers these registers do not exist.
ROWS_FIRST = 0x5C
ROW_PORT_STRIDE = 0x0C  # LO, HI, reserved


def row_port_offset(j: int) -> int:
    """Offset of the low word of row port ``j`` (0 for the first ``rows<n>`` argument after ``status``)."""
    j = int(j)
    offset = ROWS_FIRST + ROW_PORT_STRIDE * j
    if j < 0 or offset + 8 > ADDRESS_RANGE:
        raise ValueError(f"row port {j} is not inside the 0x{ADDRESS_RANGE:x}-byte register window")
    return offset


# which register each top-function argument uses (checked against the .hwh on a board)
ARGUMENTS = {
    "frame": FRAME_LO, "weights": WEIGHTS_LO, "logits": LOGITS_LO,
    "cmd": CMD, "height": HEIGHT, "width": WIDTH, "frames": FRAMES, "status": STATUS,
}
POINTER_ARGUMENTS = ("frame", "weights", "logits")  # 64-bit: low word at the offset, high word 4 bytes above

# commands (CMD)
CMD_LOAD_WEIGHTS = 1  # read the weight blob into on-chip memory, check it against the bitstream
CMD_RUN_FRAME = 2  # FRAMES frames -> their logits with the loaded weights, the frames overlapped in the pipeline

# status codes (STATUS)
STATUS_OK = 0
STATUS_BAD_MAGIC = 1  # weight blob does not start with the blob magic
STATUS_BAD_LAYOUT = 2  # blob's layer count, section offsets or entries do not fit the bitstream's network (shared windows: their schedule)
STATUS_NO_WEIGHTS = 3  # RUN_FRAME before a successful LOAD_WEIGHTS
STATUS_BAD_SIZE = 4  # HEIGHT/WIDTH differ from the compiled input size
STATUS_BAD_COMMAND = 5  # CMD is not a known command
STATUS_BAD_FRAMES = 6  # RUN_FRAME with FRAMES = 0

STATUS_TEXT = {
    STATUS_OK: "ok",
    STATUS_BAD_MAGIC: "the weight buffer does not hold a sentei weight blob",
    STATUS_BAD_LAYOUT: "the model's layers or K per layer differ from the bitstream's, or a layer with a shared "
                       "window got its weights out of schedule order (run `sentei overlay codegen` for this model "
                       "and rebuild the bitstream; give the driver the build's network.json)",
    STATUS_NO_WEIGHTS: "no weights loaded: send CMD_LOAD_WEIGHTS first",
    STATUS_BAD_SIZE: "the frame size differs from the bitstream's input size",
    STATUS_BAD_COMMAND: "unknown command",
    STATUS_BAD_FRAMES: "FRAMES is 0: a RUN_FRAME runs at least one frame",
}
