"""Performance and resource model of the sentei accelerator (docs/performance-model.md).

The accelerator is an inter-layer pipeline: every conv layer is its own stage with ``P``
parallel filter lanes, each lane one multiply-accumulate per clock (an ``II = 1`` loop over
the ``K`` stored weights of its filter). For one frame a layer therefore runs

    cycles = Ho * Wo * (Cout / P) * K

iterations of its MAC loop -- exactly what the C-simulation counts -- and the pipeline
delivers one frame every ``max(stage cycles)`` clocks once it is full.

This module is the model: the boards, each layer's geometry and cycles (the sparse engine's,
the dense engine's, the window generator's), on-chip memory (BRAM18/URAM/LUTRAM) and
DSP/LUT/FF estimates against the board's budget, the pipeline interval, and
:func:`allocate`, which picks engine, lanes and chunk width per layer (the code generator
uses it); the cycle counts without the filter-wise constraint, where the slowest filter of
every lane group sets the pace (Kang, TCSVT 2019), make the cost of imbalance a number.
Every figure here is *modeled*, never measured. The report that puts it together for a model
on a board (``sentei perf``) is :mod:`sentei.overlay.report`; the command line is
:mod:`sentei.overlay.commands`. This module imports neither, nor codegen.
"""
from __future__ import annotations

import bisect
import contextlib
import contextvars
import dataclasses
import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sentei.errors import SenteiError
from sentei.host.modelfile.schedule import fold_bank_loads
from sentei.host.modelfile.schema import conv_out_size

BOARDS_DIR = Path(__file__).resolve().parent / "boards"

# fields every overlay/boards/<name>.json must carry (the build scripts read the same file)
BOARD_FIELDS = (
    "name", "title", "pynq_board", "device", "part", "board_part", "board_connections", "family",
    "ps_ip", "ps_rule", "ps_master", "ps_slave", "ps_config", "clock_source", "clock_property",
    "clock_actual_property", "reset_source", "master_clock_pin", "slave_clock_pin",
    "peripheral_base", "default_clock_mhz", "max_clock_mhz", "budget",
)
BUDGET_FIELDS = ("dsp", "bram18", "uram", "lut", "ff")
FAMILIES = ("zynq_us+", "zynq_7000")

DEFAULT_DSP_FRACTION = 0.85  # leave room for the shell, the PS interconnect and timing closure
# Utilisation ceilings: the share of each budget the lane allocator may plan for. Above
# ~80 % of the LUTs/FFs placement and routing get hard at 200+ MHz; BRAM/URAM columns can be
# filled further since they do not congest routing the same way (docs/performance-model.md 4).
CEILINGS = {"dsp": DEFAULT_DSP_FRACTION, "bram18": 0.90, "uram": 0.90, "lut": 0.80, "ff": 0.80}
RESOURCE_NAMES = {"dsp": "DSP48", "bram18": "BRAM18", "uram": "URAM", "lut": "LUT", "ff": "FF"}
# what to change when one lane per layer already exceeds a ceiling
RESOURCE_ADVICE = {
    "dsp": "use fewer layers or filters, or a bigger board",
    "bram18": "use fewer channels or a smaller dilation (line buffers and weight memories), or a bigger board",
    "uram": "use fewer channels or a smaller dilation, or a bigger board",
    "lut": "use fewer input channels (per-lane window memories grow with Cin*k*k), or a bigger board",
    "ff": "use fewer channels or a smaller dilation, or a bigger board",
}

# ---- the resource model (docs/performance-model.md, section "Resources") ----------------
# It follows overlay/hls: sparse_conv.hpp (lanes, per-lane window copies in LUTRAM, weight
# memories, shared requantizers), line_buffer.hpp (channel-serial row memories),
# stream_utils.hpp and input_quant.hpp (I/O).
# int8 x int8 products one DSP48 can compute per clock when two share an operand (Xilinx WP486:
# the 27x18 multiplier of a DSP48E2 packs two; the 25x18 DSP48E1 of a Zynq-7000 cannot)
MACS_PER_DSP = {"zynq_us+": 2, "zynq_7000": 1}
MACS_PER_DSP_TEXT = "2 int8 MACs per DSP48E2, 1 per DSP48E1"
DSP_PER_LANE = 1  # one DSP48 multiply-accumulate per lane (weights <= 8 bit x activations <= 16 bit)
DSP_PER_REQUANT = 4  # int32 accumulator x 31-bit multiplier -> 64-bit product: 2 x 2 DSP48 tiles
DSP_INPUT_QUANT = 3 * 2  # three channels of uint8 pixel x int32 mul side by side, two DSP48 each
ACC_BITS = 32
REQUANT_PARAM_BITS = 32 + 31 + 6  # requant_param: bias, mult, shift
LUTRAM_MAX_DEPTH = 64  # memories this shallow map to LUTRAM, not BRAM
# simple dual-port LUTRAM by depth: (bits a data LUT holds, data LUTs a primitive), each primitive
# one more LUT for the write address its data LUTs share: UltraScale+ (UG574) 32 x 14 bits
# (RAM32M16) or 64 x 7 bits (RAM64M8) in 8 LUTs; 7-series (UG474) 32 x 6 bits (RAM32M) or 64 x 3
# bits (RAM64M) in 4 LUTs
LUTRAM_PRIMITIVES = {"zynq_us+": {32: (2, 7), 64: (1, 7)}, "zynq_7000": {32: (2, 3), 64: (1, 3)}}
DEFAULT_FAMILY = "zynq_us+"  # how a layer priced without a board is priced
URAM_WIDTH, URAM_DEPTH = 72, 4096  # one UltraRAM: 4K x 72 bits
URAM_MIN_BRAM18 = 4  # a row memory goes to URAM (where the board has it) when each URAM saves >= 4 BRAM18
# BRAM18 aspect ratios (width, depth) in simple dual-port mode
BRAM18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
LUT_PER_LANE = 28  # weight-memory addressing, lane control (+ its accumulator's adder, sum_bits LUTs)
PIXEL_OPTIONS = tuple(range(1, 9))  # output pixels per sparse lane the allocator tries (ASSUMPTIONS: why up to 8)
BRAM_WINDOW_MIN_DISTANCE = 3  # a BRAM read takes 1-2 clocks: window copies there need this much room
LUT_PER_PIXEL = 8  # sparse engine: a further pixel's finished-sum handling (+ its adder, sum_bits LUTs)
LUT_PER_PACK = 20  # sparse engine: recovering two products from one packed multiply (an 18-bit sign fix-up)
LUT_PER_SIMD = 24  # dense engine: one product's share of a lane's adder tree (~20-bit adds) and its multiplexing
FF_PER_SIMD = 20  # dense engine: pipeline registers of the adder tree, per product
LUT_PER_REQUANT = 300  # 64-bit round-add, 6-bit variable shift, two clamps
LUT_PER_LAYER = 400  # line-buffer and engine counters, stream handshakes
LUT_SHELL = 6000  # s_axilite control, three m_axi adapters, frame reader, logits writer
FF_PER_LANE = 40  # pipeline registers (+ the accumulator and finished sum, 2 * sum_bits)
FF_PER_LAYER = 600  # counters, addresses, pipeline registers of both loops
FF_SHELL = 8000
# the flattened MAC loop of sparse_conv.hpp fills its pipeline once per frame: weight read,
# window read, multiply, accumulate and requantize stages, about ten clocks
PIPELINE_FILL = 10
# stages that move data rather than compute (stream_utils.hpp, input_quant.hpp)
INPUT_PIXELS_PER_CYCLE = 1  # unpack_pixels / quantize_input: one RGB pixel per clock
OUTPUT_WORDS_PER_CYCLE = 1  # write_logits: one int32 per clock
UNSTRUCTURED_SEED = 0
# rows kept in DDR (row_memory.hpp): a 64-bit m_axi port per layer
ROW_WORD_BITS = 64  # a Zynq-7000 HP port's width; a DDR word of the row buffer
DDR_READ_LATENCY = 64  # clocks from a read burst's request to its first word (Vitis HLS's default m_axi latency)
ROW_LOOP_OVERHEAD = 2  # clocks to enter and leave a pixel's pipelined burst loop (simulate.LOOP_OVERHEAD)
FETCH_DEPTH = 2  # the FIFO of pixels read back from DDR, before simulation (codegen's rule)
M_AXI_OUTSTANDING = 4  # bursts in flight each way (num_read/write_outstanding of the row ports)
M_AXI_BURST = 16  # words a burst (max_read/write_burst_length): data FIFOs of 4 x 16 words each way
LUT_PER_M_AXI = 1500  # one m_axi adapter: address generation, burst splitting, handshakes (the shell's 6000 holds three)
FF_PER_M_AXI = 2000

ASSUMPTIONS = (
    "cycles per layer = Ho*G*(Cout/P)*K: one iteration of the II=1 MAC loop per stored weight "
    "per lane, G groups of Q output pixels a row (G = Wo/Q for adjacent pixels; on a dilated layer "
    "ceil(Wo/(M*Q))*M, groups of pixels M = d/gcd(s,d) apart in blocks of M*Q); this is exactly the "
    "C-simulation's iteration count",
    "engine clocks per frame = Ho*G*max((Cout/P)*K, L) + L (+1 sparse) + S + 2*(M*Q - 1) + 10: one "
    "flattened II=1 loop whose groups take max(NF*K, L) clocks (L = the group's window columns x Cin/Wc "
    "chunks, loaded during the MACs; the chunk width Wc is chosen so that L <= NF*K whenever the line "
    "buffer allows), the first window (L; the sparse engine's chunks pass a register a clock before "
    "they are broadcast to the lanes: L + 1), the last fold's requantization (S), the last blocks' "
    "pixels and one pipeline fill",
    "line buffer clocks per frame = H*W*Cin/Wc (word writes; 1 per pixel for k=1) + Ho*G*L "
    "(chunk reads) + border positions off the output grid (one each)",
    "other stages: frame reader and input quantizer 1 pixel/clock (H*W), logits writer "
    "1 int32/clock (h*w*classes)",
    "a layer's stage time is the larger of its engine and its sliding window (they run concurrently); "
    "pipeline interval = the slowest stage (DATAFLOW, every stage on one clock); frames/s = "
    "clock / interval; frame latency = interval + fill, fill = sum over layers of the input rows "
    "a layer buffers before its first output, each arriving at the bottleneck's pace",
    "frames/s is modeled, not measured: the requested clock is met, DDR never stalls the m_axi "
    "ports, weights are loaded once (CMD_LOAD_WEIGHTS) and not per frame",
    "rows in DDR (plan suffix r, boards with ddr_rows): a layer's input rows go to a ring of "
    "(k-1)*d+1+s rows in DDR through its own 64-bit m_axi port, one process writing each input pixel "
    "as it arrives (B = ceil(Cin/(64/bits)) words, one burst) and, in the turns between, reading the "
    "pixels of each window's k rows back (one burst each, 64 clocks to the first word; padding rows "
    "sent without a read): busy H*W*(B+2) + (pixels read)*(B+2+64) + 2 a padding pixel clocks a frame; "
    "on chip the window generator keeps 2k rows; each port costs two 64-word data FIFOs, 1500 LUT "
    "and 2000 FF",
    "DSP48: per sparse lane 1 per pixel, or 1 per pair of pixels where two 8-bit products share the "
    "weight (WP486 packing on a DSP48E2; a DSP48E1 of Zynq-7000 takes one each), per dense lane 1 per "
    "product (an upper bound: HLS may build narrow products in LUTs; plan x: one per two lanes' "
    "products of one activation, + 20 LUTs a pair's fix-up); 4 per shared requantizer "
    "(R = min(ceil(Q*P/K), P) per layer, none in the logits layer), 6 for the input quantizer",
    "window copies: per lane a LUTRAM bank per (group column, tap row, channel mod Wc) of 2*Cin/Wc "
    "activations, each column read once a clock through a (k*Wc banks x 64-word blocks):1 "
    "multiplexer (N/4 LUT6 per bit), and per pixel a k:1 multiplexer of its columns' reads; or (plan "
    "suffix b) per lane BRAM18 memories of the group's columns' words of k*Wc activations (columns "
    "never read in one clock stacked), each read once a clock, its tap picked by a k*Wc:1 multiplexer, "
    "and per pixel a k:1 multiplexer; "
    "finished pixels: a LUTRAM of 2*M*Q words per output channel",
    "a shared window (plan suffix h, shared_window.hpp): one window of B banks for all lanes, B the "
    "fewest (>= P, k*Wc, Cin*k/32; <= 4P) with no fold holding more than K weights in a bank of "
    "t = ci*k + ky mod B (shared_banks: the K steps then need no padding); per bank and group column "
    "a LUTRAM of 2*ceil(Cin*k/B) words, per bank a (k*Wc):1 pick of the chunk's taps and its write "
    "address, a P:1 multiplexer of the claiming lane's read address, a LUT per lane for the claim, "
    "and per pixel a k:1 pick of its column; per lane and pixel a B:1 crossbar; the loader's "
    "check a memory of K x B bits and B LUTs",
    "LUTRAM (simple dual port, by the family's slices): UltraScale+ 32 x 14 bits (RAM32M16) or "
    "64 x 7 bits (RAM64M8) in 8 LUTs, Zynq-7000 32 x 6 bits (RAM32M) or 64 x 3 bits (RAM64M) in 4 "
    "LUTs; a memory of at most 32 words in the 32-deep kind, a deeper one in 64-word blocks; a block "
    "of M*Q pixels is priced as what it adds to the next layer's pixel FIFO (its depth + M*Q - 1)",
    "the allocator tries Q = 1 to 8 pixels a sparse lane (Q <= K; on a 1x1 layer Q divides Wo): "
    "a lane's copy holds the group's Q + k - 1 columns (stride 1), so a larger group pays fewer "
    "window LUTs a MAC (conv6 of the CamVid network: 224 at Q = 4, 188 at Q = 8); groups of up "
    "to 16 gained at most 3 % more frames/s for the bundled models on ZCU104, KV260 and "
    "Ultra96-V2 (7 % for sentei-design-pynqz2 on KV260) at 1.5x the allocator's time, with "
    "pixel memories of 2*M*Q words a channel on the dilated layers (256 at M = 8), so the options stop at 8",
"BRAM18/URAM: per lane one weight memory of (Cout/P)*K entries (weight, bank, slot bits), per "
    "requantizer one memory of NF*S x 69 bits; per layer with k>1, (k-1)*d+1 row memories of "
    "W*Cin/Wc words of Wc*input_bits (URAM where the board has it: the layers whose rows save the most "
    "BRAM18 per URAM, at least one, within the URAM ceiling); "
    "a chunk FIFO of L words; best BRAM18 aspect ratio; <= 64 words go to LUTRAM",
    "running sums sum_bits wide (perf.sum_bits: every partial sum of K products of weight_bits x the "
    "input's range, at most 32; 20-25 bits on the CamVid network): an adder of sum_bits LUTs and two "
    "registers of sum_bits FFs per lane and pixel",
    "LUT: per lane 28 + 8 per further pixel + sum_bits per pixel + 20 per packed pair + window copy; "
    "per requantizer 300 + S:1 multiplexer of sum_bits; per layer 400 "
    "+ the row multiplexers (k x Wc*bits x ((k-1)*d+1):1); shell 6000 -- +-50%",
    "FF: per lane 40 (pipeline) + 2 x sum_bits per pixel (running and finished sum), per layer the "
    "pixel registers (Cin + 2 x Cout activations where a block is one pixel) and 600, shell 8000",
    "the lane allocator keeps every resource within its ceiling (DSP 85 %, BRAM18 90 %, URAM 90 %, "
    "LUT 80 %, FF 80 % of the board's budget, shell included)",
    "pruned without the filter-wise constraint, lanes of a fold wait for its slowest filter "
    "(filter o on lane o mod P, as the loader places it; Kang, TCSVT 2019); a filter-wise model "
    "is re-pruned hypothetically by placing each layer's nonzeros uniformly at random over its "
    "Cout*Cin*k*k weights (seeded): a lower bound on the imbalance of magnitude pruning",
)


# ---------------------------------------------------------------------------------------
# boards


@dataclass(frozen=True)
class Board:
    """One target board: part, PS wiring (for the build scripts) and resource budget."""

    name: str
    title: str
    part: str
    family: str
    budget: dict
    default_clock_mhz: float
    max_clock_mhz: float
    spec: dict = field(repr=False, compare=False, default_factory=dict)


def known_boards() -> list[str]:
    """Names of the boards in ``overlay/boards/`` (the ``BOARD=`` values of the Makefile)."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))


def load_board(name: str) -> Board:
    """Read and check ``overlay/boards/<name>.json``.

    Raises
    ------
    SenteiError
        The board is unknown (the message lists the known boards) or its file lacks a field.
    """
    known = known_boards()
    if name not in known:
        raise SenteiError(f"unknown board {name!r}: known boards are {', '.join(known)}")
    path = BOARDS_DIR / f"{name}.json"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SenteiError(f"{path}: not valid JSON ({exc})") from None
    missing = [key for key in BOARD_FIELDS if key not in spec]
    missing += [f"budget.{key}" for key in BUDGET_FIELDS if key not in spec.get("budget", {})]
    if missing:
        raise SenteiError(f"{path}: missing {', '.join(missing)}")
    if spec["family"] not in FAMILIES:
        raise SenteiError(f"{path}: family {spec['family']!r} is not one of {', '.join(FAMILIES)}")
    return Board(name=spec["name"], title=spec["title"], part=spec["part"], family=spec["family"],
                 budget={k: int(spec["budget"][k]) for k in BUDGET_FIELDS},
                 default_clock_mhz=float(spec["default_clock_mhz"]),
                 max_clock_mhz=float(spec["max_clock_mhz"]), spec=spec)


def as_board(board) -> Board:
    """A :class:`Board`, or the board of that name (:func:`load_board`)."""
    return board if isinstance(board, Board) else load_board(str(board))


# ---------------------------------------------------------------------------------------
# cycles


def divisors(n: int) -> list[int]:
    """The lane counts a layer of ``n`` filters can use: the divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def layer_cycles(ho: int, wo: int, cout: int, lanes: int, k: int) -> int:
    """Iterations of a layer's II=1 MAC loop per frame: ``Ho * Wo * (Cout / P) * K``."""
    if lanes < 1 or cout % lanes:
        raise SenteiError(f"{lanes} lanes do not divide {cout} filters (lanes must be a divisor of Cout)")
    return ho * wo * (cout // lanes) * k


def fold_sync_cycles(ho: int, wo: int, nnz, lanes: int) -> int:
    """MAC-loop cycles of a zero-skipping layer whose lanes wait for each fold's slowest filter.

    Filter ``o`` runs on lane ``o mod P`` in fold ``o // P`` (the loader's placement), so
    fold ``f`` lasts ``max(nnz[o])`` over filters ``f*P .. f*P+P-1``:
    ``Ho * Wo * sum_f max_{o in f} nnz[o]``. With equal ``nnz`` (filter-wise) this is
    :func:`layer_cycles`.
    """
    nnz = np.asarray(nnz, dtype=np.int64)
    if lanes < 1 or nnz.size % lanes:
        raise SenteiError(f"{lanes} lanes do not divide {nnz.size} filters")
    per_fold = nnz.reshape(-1, lanes).max(axis=1)
    return ho * wo * int(per_fold.sum())


def balanced_cycles(ho: int, wo: int, nnz, lanes: int) -> int:
    """MAC-loop cycles if the same nonzeros were spread evenly over the lanes (the ideal)."""
    total = int(np.asarray(nnz, dtype=np.int64).sum())
    return ho * wo * -(-total // lanes)


def unstructured_nnz(cout: int, fan_in: int, total: int, seed: int = UNSTRUCTURED_SEED) -> np.ndarray:
    """Per-filter nonzeros of a hypothetical unstructured pruning keeping ``total`` weights.

    The ``total`` kept weights of the layer are placed uniformly at random over its
    ``Cout * fan_in`` positions (multivariate hypergeometric counts per filter): the
    spread of random unstructured pruning at the same sparsity. Magnitude pruning of a
    trained network is usually more uneven, so the imbalance priced from it is a lower bound.
    """
    rng = np.random.default_rng(seed)
    colors = np.full(cout, fan_in, dtype=np.int64)
    return rng.multivariate_hypergeometric(colors, int(total), method="marginals")


# ---------------------------------------------------------------------------------------
# resources


def field_bits(n: int) -> int:
    """Bits of an unsigned field holding ``0 .. n-1`` (at least 1)."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def bram18_count(depth: int, width: int) -> int:
    """BRAM18 blocks for one memory of ``depth`` words of ``width`` bits (best aspect ratio)."""
    if depth <= 0 or width <= 0:
        return 0
    return min(-(-width // w) * -(-depth // d) for w, d in BRAM18_SHAPES)


def memory_cost(depth: int, width: int, family: str = DEFAULT_FAMILY) -> tuple[int, int]:
    """``(bram18, lut)`` of one memory: LUTRAM when at most 64 words deep, else BRAM18."""
    if depth <= 0 or width <= 0:
        return 0, 0
    if depth <= LUTRAM_MAX_DEPTH:
        return 0, lutram_luts(depth, width, family)
    return bram18_count(depth, width), 0


def lutram_luts(depth: int, width: int, family: str = DEFAULT_FAMILY) -> int:
    """LUTs of a simple dual-port LUTRAM on ``family``'s slices (:data:`LUTRAM_PRIMITIVES`):
    at most 32 words in 32-deep primitives, else in blocks of 64 words; ``width`` bits take
    ceil(width / bits) data LUTs and a write-address LUT per primitive they fill."""
    if depth <= 0 or width <= 0:
        return 0
    deep = 32 if depth <= 32 else 64
    bits, per_primitive = LUTRAM_PRIMITIVES[family][deep]
    data = -(-width // bits)
    return -(-depth // deep) * (data + -(-data // per_primitive))


def board_family(board) -> str:
    """The device family ``board`` is priced as (:data:`DEFAULT_FAMILY` without a board)."""
    return as_board(board).family if board is not None else DEFAULT_FAMILY


def uram_count(depth: int, width: int) -> int:
    """UltraRAMs (4K x 72) for one memory of ``depth`` words of ``width`` bits."""
    if depth <= 0 or width <= 0:
        return 0
    return -(-width // URAM_WIDTH) * -(-depth // URAM_DEPTH)


def mux_luts(inputs: int, width: int) -> int:
    """LUTs of an ``inputs``:1 multiplexer of ``width`` bits (4 inputs per LUT6 with F7/F8)."""
    return 0 if inputs <= 1 else width * -(-inputs // 4)


def line_storage(depth: int, width: int, has_uram: bool) -> str:
    """Where one row memory goes when a layer is priced alone (no network-wide URAM budget):
    ``lutram``, ``bram`` or ``uram`` (only where a URAM saves at least 4 BRAM18). Reports and
    codegen use :func:`line_placement`, which shares the board's URAMs across layers."""
    if depth <= LUTRAM_MAX_DEPTH:
        return "lutram"
    if has_uram and uram_count(depth, width) * URAM_MIN_BRAM18 <= bram18_count(depth, width):
        return "uram"
    return "bram"


def sum_bits(model, index: int) -> int:
    """Width of layer ``index``'s running sums (``sum_t``): every partial sum of a filter's K
    products fits, whatever weights a model file of this shape holds -- each within
    ``weight_bits`` (the loader checks), each activation within the input's range -- so the
    narrow sum is exact and the int32 of the model format (docs/model-format.md, section 3)
    is never needed below the bias; at most :data:`ACC_BITS`."""
    layer = model.layers[index]
    lo, hi = model.input_range(index)
    bound = layer.k_nonzero * (1 << (layer.weight_bits - 1)) * max(abs(int(lo)), abs(int(hi)))
    return min(ACC_BITS, bound.bit_length() + 1)


def input_bits(model, index: int) -> int:
    """Width in bits of layer ``index``'s input activation."""
    if index == 0:
        return model.input.bits
    return model.layers[index - 1].out_bits


ENGINES = ("sparse", "dense")


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is built: its engine, lanes, line-buffer word width and output pixels per lane.

    ``engine`` is ``sparse`` (sparse_conv.hpp: one stored weight per lane per clock, zeros
    skipped, a window copy per lane) or ``dense`` (dense_conv.hpp: a whole window chunk of
    ``k * chunk_channels`` weights per lane per clock, the window broadcast). ``lanes`` need
    not divide Cout: the last of the ceil(Cout/lanes) folds then has idle lanes.
    ``chunk_channels`` (Wc, a divisor of Cin) is None for "the best for these lanes"
    (:func:`best_chunk_channels`). ``pixels`` (Q, sparse engine only, dividing Wo) is the
    number of output pixels a lane computes with each weight it reads: Q MACs per lane per
    clock, two of them in one DSP48E2 (:func:`packed_products`); on a dilated layer they are
    spaced so that they share window columns (:func:`group_spacing`) unless ``adjacent``.
    ``window_bram`` (sparse engine) keeps the lanes' window copies in BRAM18 instead of LUTRAM.
    ``ddr_rows`` (k > 1) keeps the layer's line-buffer rows in DDR (row_memory.hpp), only the
    window's 2k rows on chip: for dilated layers on boards short of BRAM (``ddr_rows`` in the
    board file). ``packed`` (dense engine, 8-bit operands) multiplies each activation with the
    weights of two lanes in one DSP48E2 (products.hpp): half the DSP48s, LUTs for the sign
    fix-ups; the sparse engine packs its pixel pairs without being asked.
    """

    engine: str = "sparse"
    lanes: int = 1
    chunk_channels: int | None = None
    pixels: int = 1
    adjacent: bool = False
    window_bram: bool = False
    ddr_rows: bool = False
    packed: bool = False
    shared: bool = False

    def label(self) -> str:
        """``8`` (sparse, 8 lanes), ``s8w4`` (Wc 4), ``s8w4p2`` (two pixels a lane), ``s8w4p2a``
        (two adjacent pixels on a dilated layer), ``s8w4p2b`` (window copies in BRAM), ``s8w4r``
        (rows in DDR), ``s8w4p2h`` (one window shared by the lanes, :func:`shared_banks`), ``d4w32``
        (dense, 4 lanes, Wc 32), ``d4w32x`` (two lanes' products a DSP48E2): what --lanes takes."""
        if (self.engine == "sparse" and self.chunk_channels is None and self.pixels == 1 and not self.window_bram
                and not self.ddr_rows and not self.shared):
            return str(self.lanes)
        wc = "" if self.chunk_channels is None else f"w{self.chunk_channels}"
        px = "" if self.pixels == 1 else f"p{self.pixels}{'a' if self.adjacent else ''}"
        return (f"{self.engine[0]}{self.lanes}{wc}{px}{'b' if self.window_bram else ''}{'h' if self.shared else ''}"
                f"{'x' if self.packed else ''}{'r' if self.ddr_rows else ''}")


def as_plan(value) -> LayerPlan:
    """A :class:`LayerPlan` from a plan, an int (sparse lanes) or a label (``d4w32``, ``s16w2p2``)."""
    if isinstance(value, LayerPlan):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return LayerPlan("sparse", int(value))
    text = str(value).strip().lower()
    m = re.fullmatch(r"([sd]?)(\d+)(?:w(\d+))?(?:p(\d+)(a?))?(b?)(h?)(x?)(r?)", text)
    if not m:
        raise SenteiError(f"layer plan {value!r}: expected LANES (sparse), sLANES[wWc][pQ[a]][b|h][r] or "
                          f"dLANES[wWc][x][r], e.g. 8, s16w2p2 or d4w32")
    engine = "dense" if m.group(1) == "d" else "sparse"
    return LayerPlan(engine, int(m.group(2)), int(m.group(3)) if m.group(3) else None,
                     int(m.group(4)) if m.group(4) else 1, bool(m.group(5)), bool(m.group(6)), bool(m.group(9)),
                     packed=bool(m.group(8)), shared=bool(m.group(7)))


def group_spacing(k: int, s: int, d: int, q: int, adjacent: bool = False) -> int:
    """M, the distance in output pixels between the pixels of a group: 1 (adjacent) unless the
    layer is dilated, where pixels ``d / gcd(s, d)`` apart share k - 1 of their window columns
    (adjacent pixels of a dilated layer share none) -- or ``adjacent`` is asked for (no block
    overhanging the row)."""
    return 1 if q == 1 or k == 1 or adjacent else d // math.gcd(s, d)


def group_offsets(k: int, s: int, d: int, q: int, m: int = 1) -> tuple[int, ...]:
    """The window columns a group of ``q`` output pixels ``m`` apart (:func:`group_spacing`)
    reads, as offsets from the group's first column: the distinct ``qq*m*s + kx*d`` (qq < q,
    kx < k), ascending. The line buffer sends these columns once per group and every lane
    keeps one copy of them (pixel_groups.hpp computes the same set)."""
    return tuple(sorted({qq * m * s + kx * d for qq in range(q) for kx in range(k)}))


@functools.lru_cache(maxsize=4096)
def window_memories(k: int, s: int, d: int, q: int, m: int = 1, pack: bool = False) -> tuple[int, int]:
    """``(memories, blocks)`` of a lane's window copy for a group of ``q`` pixels ``m`` apart
    (pixel_groups.hpp's ``make_window_layout``, which the generated code checks against this).

    Unpacked (LUTRAM copies) a memory per column, one block each. Packed (``pack``: BRAM
    copies) columns that no tap column kx reads in the same clock share a memory: in a clock
    every pixel reads the same kx, so the columns ``qq*m*s + kx*d`` (qq < q) need q different
    memories; column c takes the lowest memory that holds no column before it read together
    with it, as the next block of that memory."""
    offsets = group_offsets(k, s, d, q, m)
    if not pack:
        return len(offsets), 1
    column = {o: j for j, o in enumerate(offsets)}
    together = [{column[qq * m * s + kx * d] for qq in range(q)} for kx in range(k)]
    memory: list[int] = []
    for c in range(len(offsets)):
        taken = {memory[b] for b in range(c) if any(b in cols and c in cols for cols in together)}
        memory.append(next(n for n in range(len(offsets)) if n not in taken))
    return max(memory) + 1, max(memory.count(n) for n in set(memory))


def column_words(cin: int, wc: int) -> int:
    """Words of one window column of a sparse lane's copy: ``Cin/Wc`` chunks, two halves."""
    return 2 * (cin // wc)


def one_word_columns(cin: int, wc: int) -> bool:
    """Whether such a column is shallow enough for LUTRAM to keep it as one word of its taps."""
    return column_words(cin, wc) <= LUTRAM_MAX_DEPTH


SHARED_MAX_BANKS_PER_LANE = 4  # the banks a shared window may have: up to 4 a lane (a crossbar that wide costs more than copies)


def bank_slots(cin: int, k: int, banks: int) -> int:
    """Slots (words a half) of one bank of a shared window: ``ceil(Cin*k / B)``."""
    return -(-(cin * k) // banks)


def shared_banks(model, index: int, lanes: int, wc: int) -> int | None:
    """B, the banks of a window shared by layer ``index``'s ``lanes`` lanes (plan suffix ``h``), or
    None where no B of at most :data:`SHARED_MAX_BANKS_PER_LANE` a lane serves them.

    In every step of a fold each lane reads one activation, in the bank of its weight; the
    order of a filter's K weights is free (the integer sum does not depend on it), so the fold
    runs in K steps without two lanes in one bank exactly when no bank holds more than K of the
    fold's weights (Koenig: the lane x bank multigraph, every degree <= K, has a K-edge colouring;
    :mod:`sentei.host.modelfile.schedule` builds it). B is the smallest number that does, at
    least P (a step reads P banks), k*Wc (a chunk writes k*Wc) and Cin*k/32 (a bank's two halves
    within 64 words: one LUTRAM block)."""
    layer = model.layers[index]
    if layer.indices is None:
        return None
    cin, k = layer.in_channels, layer.kernel

    def compute() -> dict:
        low = max(lanes, k * wc, -(-(cin * k) // (LUTRAM_MAX_DEPTH // 2)))
        for banks in range(low, min(SHARED_MAX_BANKS_PER_LANE * lanes, cin * k) + 1):
            if fold_bank_loads(layer.indices, k, lanes, banks).max() <= layer.k_nonzero:
                return {"banks": banks}
        return {"banks": None}

    return _remembered(model, ("banks", index, lanes, wc), compute)["banks"]


def group_layout(wo: int, q: int, m: int) -> tuple[int, int]:
    """``(blocks, groups)`` of an output row of ``wo`` pixels in groups of ``q`` pixels ``m``
    apart: a block is m*q pixels (m groups, group r holding pixels r, r + m, ...); ``blocks`` =
    ceil(wo / (m*q)) per row (the last one's pixels beyond the row are computed and dropped),
    ``groups`` = blocks * m per row."""
    blocks = -(-wo // (m * q))
    return blocks, blocks * m


@functools.lru_cache(maxsize=65536)
def window_iterations(h: int, w: int, k: int, s: int, d: int, p: int, cin: int, wc: int, q: int = 1,
                      m: int = 1, ddr_rows: bool = False) -> int:
    """Clocks per frame of the window generator (line_buffer.hpp) with ``wc`` channels per
    word and groups of ``q`` output pixels ``m`` apart, when the layers around it keep up.

    ``k > 1`` (``line_buffer``): the writer stores a row of ``W * Cin/wc`` words one a clock
    once its slot is free (the reader has started the output row ``yo`` with
    ``y < yo*s - p + span + s``); the reader sends an output row's ``groups * L`` chunks
    (:func:`group_layout`; L = the group's columns x Cin/wc) one a clock once the rows under
    it are complete (``rows_ready(yo) = clamp(yo*s - p + span, 0, H)`` rows, seen 3 clocks
    after the last word); both act in the same clock. The frame ends when both are done.
    ``k = 1`` (``pointwise_window``): ``Cin/wc`` clocks per padded position on the output
    grid, one per other position. ``ddr_rows``: the generator walks the image
    ``rows_through_memory`` sends (row_memory.hpp): ``Ho*k`` rows, each window's own, stride
    ``k``, no vertical dilation or padding.
    """
    ho, wo = conv_out_size(h, w, k, s, d, p)
    cw = cin // wc
    if k == 1:
        positions = (h + 2 * p) * (w + 2 * p)
        return ho * wo * cw + positions - ho * wo
    reads = group_layout(wo, q, m)[1] * len(group_offsets(k, s, d, q, m)) * cw  # chunks an output row
    if ddr_rows:
        h, s, d, p = ho * k, k, 1, 0  # the vertical walk; the columns stay the layer's
    span = d * (k - 1) + 1
    slots = span + s
    row_words = w * cw
    w_start: list[int] = []  # writer start clock of each row, numbered across frames
    r_start: list[int] = []  # reader start clock of each output row, across frames

    def first_row(n: int) -> int:  # row (across frames) of window row 0 of output row n (across frames)
        f, yo = divmod(n, ho)
        return f * h + yo * s - p

    freeing = 0  # the first output row (across frames) whose window row 0 is > y - slots: rises with y

    def write_rows(upto: int) -> None:  # start clocks of the rows below ``upto``
        nonlocal freeing
        for y in range(len(w_start), upto):
            while first_row(freeing) + slots <= y:  # row y's slot is free once the reader reaches it
                freeing += 1
            free = 0 if freeing == 0 else r_start[freeing - 1] + reads
            prev = w_start[-1] + row_words if w_start else 0
            w_start.append(max(prev, free))

    for n in range(2 * ho):  # two frames: the second frame's clocks are the steady state
        f, yo = divmod(n, ho)
        need = f * h + min(max(yo * s - p + span, 0), h)
        write_rows(need)
        ready = w_start[need - 1] + row_words + 2 if need else 0
        r_start.append(max(r_start[-1] + reads if r_start else 0, ready))
    write_rows(2 * h)
    end = [max(r_start[(f + 1) * ho - 1] + reads, w_start[(f + 1) * h - 1] + row_words) for f in (0, 1)]
    return end[1] - end[0]


def dense_allowed(model, index: int) -> bool:
    """Whether the dense engine can run layer ``index``: a window of at least two chunks
    (``k = 3``, or ``k = 1`` with Cin >= 2)."""
    layer = model.layers[index]
    return layer.kernel > 1 or layer.in_channels >= 2


def _engine_pixel(engine: str, folds: int, k_nonzero: int, chunks: int) -> int:
    """Engine clocks per output pixel (per group of pixels, sparse): sparse ``max(NF*K, L)``,
    dense ``NF*L``."""
    return max(folds * k_nonzero, chunks) if engine == "sparse" else folds * chunks


def packed_products(model, index: int, pixels: int) -> bool:
    """Whether a sparse lane of layer ``index`` computing ``pixels`` pixels multiplies two
    activations by its weight in one multiplier (Xilinx WP486): ``(a1 << 18) + a0`` times the
    weight in a 27 x 18 DSP48E2, both products recovered exactly from the 45-bit result.
    Exact when both products fit 18 signed bits: activations and weights of at most 8 bits."""
    return pixels > 1 and input_bits(model, index) <= 8 and model.layers[index].weight_bits <= 8


def requant_sharing(sums: int, steps: int, pixels: int = 1) -> tuple[int, int]:
    """``(R, S)``: R shared requantizers of S sums each for the ``sums`` = Q*P finished sums of
    a fold, one sum a requantizer a clock during the next fold's ``steps`` clocks (S <= steps).
    R is at most P, so S >= Q: the R sums of a clock belong to R different lanes, hence
    different output channels (each channel's pixel memory has one write port)."""
    lanes = max(1, sums // pixels)
    units = min(-(-sums // steps), lanes)
    return units, -(-sums // units)


def best_chunk_channels(model, index: int, engine: str, lanes: int, pixels: int = 1, spacing: int = 1) -> int:
    """Wc for a layer: sparse, the divisor of Cin that minimizes ``max(engine, window
    generator)`` clocks, the narrowest among equals (deeper, cheaper memories); dense, the
    narrowest divisor whose stage is within 1 % of the fastest (the SIMD width grows with Wc:
    one more MAC per lane per channel), with at least two chunks a window."""
    layer = model.layers[index]
    shapes = model.shapes()
    (cin, h, w), (cout, ho, wo) = shapes[index], shapes[index + 1]
    k = layer.kernel
    folds = -(-cout // lanes)
    columns = len(group_offsets(k, layer.stride, layer.dilation, pixels, spacing))
    groups = group_layout(wo, pixels, spacing)[1]
    options = [v for v in divisors(cin) if engine == "sparse" or k * (cin // v) >= 2]
    if not options:
        raise SenteiError(f"layer {layer.name}: the dense engine needs a window of at least two chunks "
                          f"(Cin {cin} with k = {k}); use the sparse engine")

    def stage(wc: int) -> int:
        chunks = columns * (cin // wc)
        return max(ho * groups * _engine_pixel(engine, folds, layer.k_nonzero, chunks),
                   window_iterations(h, w, k, layer.stride, layer.dilation, layer.padding, cin, wc, pixels, spacing))

    if engine == "sparse":
        return min(options, key=lambda v: (stage(v), v))
    fastest = min(stage(v) for v in options)
    return min(v for v in options if stage(v) <= fastest * 1.01)


#: while :func:`allocate` runs: its model and what :func:`layer_geometry` and
#: :func:`layer_resources` computed for it, per (layer, plan, ...); else None
_MEMO: contextvars.ContextVar = contextvars.ContextVar("sentei_perf_memo", default=None)


@contextlib.contextmanager
def _remembering(model):
    """Within the block, each (layer, plan) of ``model`` has its geometry and resources
    computed once: the allocator asks for the same few hundred of them hundreds of thousands
    of times (each repair step prices the whole design), and the model does not change meanwhile."""
    token = _MEMO.set((model, {}))
    try:
        yield
    finally:
        _MEMO.reset(token)


def _remembered(model, key: tuple, compute) -> dict:
    """``compute()`` (a flat dict), or a copy of what it gave for ``key`` in this :func:`_remembering` block."""
    memo = _MEMO.get()
    if memo is None or memo[0] is not model:
        return compute()
    found = memo[1].get(key)
    if found is None:
        found = memo[1][key] = compute()
    return dict(found)


def layer_geometry(model, index: int, plan) -> dict:
    """The compile-time structure of layer ``index`` built as ``plan`` (what codegen states).

    ``plan`` is a :class:`LayerPlan` or an int (sparse lanes). A sparse layer runs its
    output pixels in groups of Q = ``pixels`` adjacent ones; the window of a group is its
    ``group_columns`` distinct columns (:func:`group_offsets`), L = ``chunks`` of them per
    group. ``requant_units`` R requantizers serve ``requant_span`` S sums each
    (:func:`requant_sharing`: Q*P sums a fold, T clocks a fold -- K sparse, L dense).
    """
    plan = as_plan(plan)
    return _remembered(model, ("geometry", index, plan), lambda: _layer_geometry(model, index, plan))


def _layer_geometry(model, index: int, plan: LayerPlan) -> dict:
    layer = model.layers[index]
    shapes = model.shapes()
    (cin, h, w), (cout, ho, wo) = shapes[index], shapes[index + 1]
    lanes, q = plan.lanes, plan.pixels
    if plan.engine not in ENGINES:
        raise SenteiError(f"layer {layer.name}: engine {plan.engine!r} is not one of {', '.join(ENGINES)}")
    if not 1 <= lanes <= cout:
        raise SenteiError(f"layer {layer.name}: {lanes} lanes for {cout} filters (use 1 to {cout})")
    if plan.engine == "dense" and not dense_allowed(model, index):
        raise SenteiError(f"layer {layer.name}: the dense engine needs a window of at least two chunks; "
                          f"use the sparse engine")
    k, kn = layer.kernel, layer.k_nonzero
    if q < 1 or (q > 1 and (plan.engine != "sparse" or q > kn or (k == 1 and wo % q))):
        raise SenteiError(f"layer {layer.name}: {q} pixels a lane: the sparse engine takes 1 to K = {kn} "
                          f"pixels (on a 1x1 layer a divisor of the output width {wo}), the dense engine 1")
    spacing = group_spacing(k, layer.stride, layer.dilation, q, plan.adjacent)
    wc = plan.chunk_channels or best_chunk_channels(model, index, plan.engine, lanes, q, spacing)
    if wc < 1 or cin % wc:
        raise SenteiError(f"layer {layer.name}: chunk width {wc} must divide Cin = {cin} (one of {divisors(cin)})")
    if plan.engine == "dense" and k * (cin // wc) < 2:
        raise SenteiError(f"layer {layer.name}: chunk width {wc} leaves {k * (cin // wc)} chunk a window; the "
                          f"dense engine needs at least two (a narrower chunk)")
    folds = -(-cout // lanes)
    cw = cin // wc
    columns = len(group_offsets(k, layer.stride, layer.dilation, q, spacing))
    copy_memories, copy_blocks = window_memories(k, layer.stride, layer.dilation, q, spacing, plan.window_bram)
    chunks = columns * cw
    sparse = plan.engine == "sparse"
    units, span = requant_sharing(q * lanes, kn if sparse else chunks, q)
    pixel = _engine_pixel(plan.engine, folds, kn, chunks)
    distance = window_distance(pixel, folds * (kn if sparse else chunks), chunks)
    if plan.window_bram and (not sparse or distance < BRAM_WINDOW_MIN_DISTANCE):
        raise SenteiError(f"layer {layer.name}: window copies in BRAM need the sparse engine and a group of at "
                          f"least {BRAM_WINDOW_MIN_DISTANCE} clocks between a window's last write and first read "
                          f"(this plan leaves {distance}): use fewer lanes or LUTRAM (no 'b')")
    if plan.packed and (plan.engine != "dense" or lanes < 2 or not packed_products(model, index, 2)):
        raise SenteiError(f"layer {layer.name}: 'x' packs two lanes' products of the dense engine (at least two "
                          f"lanes, weights and activations of <= 8 bits); the sparse engine packs its pixels itself")
    if plan.ddr_rows and k == 1:
        raise SenteiError(f"layer {layer.name}: rows in DDR ('r') are for k > 1 layers; a 1x1 layer keeps no rows")
    shared = shared_banks(model, index, lanes, wc) if plan.shared else None
    if plan.shared and (not sparse or plan.window_bram or shared is None):
        raise SenteiError(f"layer {layer.name}: a shared window ('h') is for the sparse engine in LUTRAM (no 'b'), "
                          f"where at most {SHARED_MAX_BANKS_PER_LANE} banks a lane serve {lanes} lanes without two "
                          f"in one bank a step (perf.shared_banks); use per-lane copies (no 'h') or other lanes")
    window = window_iterations(h, w, k, layer.stride, layer.dilation, layer.padding, cin, wc, q, spacing,
                               plan.ddr_rows)
    rows = row_layout(model, index) if plan.ddr_rows else None
    blocks, row_groups = group_layout(wo, q, spacing)
    groups = ho * row_groups
    return {
        "engine": plan.engine, "lanes": lanes, "folds": folds, "pixels": q, "spacing": spacing,
        "block": spacing * q, "row_groups": row_groups,
        "chunk_channels": wc, "chunks": chunks, "group_columns": columns, "pixel_iterations": pixel,
        "window_iterations": window,
        "line_slots": (2 * k if plan.ddr_rows else ring_rows(layer)) if k > 1 else 1,
        "ddr_rows": int(plan.ddr_rows),
        "row_words": rows["words"] if rows else 0,
        "pixel_beats": rows["pixel_beats"] if rows else 1, "row_beats": rows["row_beats"] if rows else 1,
        "row_memory_cycles": row_memory_cycles(h, w, ho, k, layer.stride, layer.dilation, layer.padding,
                                               rows["pixel_beats"]) if rows else 0,
        "line_depth": w * cw if k > 1 else 1,
        "requant_units": units, "requant_span": span,
        # sparse entries name a tap (ky, channel mod Wc) = bank, a window column kx and a chunk
        # cw = channel / Wc -- in a shared window the bank t mod B and slot t // B of t = ci*k + ky
        # (shared_banks) -- the dense engine addresses chunks only
        "banks": k * wc, "bank_bits": field_bits(shared or k * wc), "col_bits": field_bits(k),
        "slot_bits": field_bits(bank_slots(cin, k, shared)) if shared else field_bits(cw) if sparse
        else field_bits(chunks),
        "shared_window": int(plan.shared), "window_banks": shared or 0,
        "bank_slots": bank_slots(cin, k, shared) if shared else 0,
        "packed_products": int(sparse and packed_products(model, index, q) or plan.packed),
        "window_bram": int(plan.window_bram), "window_distance": distance,
        "window_memories": copy_memories, "window_blocks": copy_blocks,
        # a column's k*Wc taps as one memory word (ARRAY_RESHAPE): in BRAM always, in LUTRAM where
        # the column is at most 64 words deep (one word read, then a tap picked: no block multiplexer
        # as wide as the word), else a LUTRAM bank per tap
        "window_taps_in_a_word": int(sparse and not plan.shared and (plan.window_bram or one_word_columns(cin, wc))),
        "simd": k * wc if plan.engine == "dense" else 1,
        "sum_bits": sum_bits(model, index),
        "engine_cycles": engine_clocks(groups * pixel, first_window(plan.engine, chunks), engine_tail(span, spacing * q)),
        "mac_iterations": groups * folds * (kn if sparse else chunks),
    }


def ring_rows(layer) -> int:
    """Rows a k > 1 layer's window generator keeps (line_buffer.hpp): the SPAN = d*(k-1)+1 rows
    under a window and the S the next output row adds; the ring in DDR of row_memory.hpp too."""
    return layer.dilation * (layer.kernel - 1) + 1 + layer.stride


def row_layout(model, index: int) -> dict:
    """How layer ``index``'s rows lie in DDR when kept there (row_memory.hpp's row_layout):
    ``pixel_beats`` 64-bit words a pixel, ``row_beats`` a row, a ring of ``slots`` = SPAN + S
    rows, ``words`` in all."""
    layer = model.layers[index]
    (cin, _, w) = model.shapes()[index]
    per_beat = ROW_WORD_BITS // input_bits(model, index)
    pixel_beats = -(-cin // per_beat)
    slots = ring_rows(layer)
    return {"pixel_beats": pixel_beats, "row_beats": w * pixel_beats, "slots": slots,
            "words": slots * w * pixel_beats}


def row_memory_cycles(h: int, w: int, ho: int, k: int, s: int, d: int, p: int, pixel_beats: int) -> int:
    """Clocks per frame ``rows_through_memory`` (row_memory.hpp) is busy: each input pixel
    written (a pipelined burst of ``pixel_beats`` words, entered and left), each pixel of the
    window rows read back (the same plus the read latency; a pixel of a padding row is a
    zero, no read)."""
    turn = pixel_beats + ROW_LOOP_OVERHEAD
    reads = sum(1 for yo in range(ho) for ky in range(k) if 0 <= yo * s - p + ky * d < h)
    return h * w * turn + reads * w * (turn + DDR_READ_LATENCY) + (ho * k - reads) * w * ROW_LOOP_OVERHEAD


def window_distance(pixel: int, macs: int, chunks: int) -> int:
    """Loop iterations between accesses of one half of a sparse engine's window copies, for
    any weight pattern (sparse_conv.hpp's DIST): a group of ``pixel`` clocks does its MACs in
    the first ``macs`` and writes the next window's ``chunks`` centred in it."""
    d = (pixel - chunks) // 2
    return min(pixel - macs + 1 + d, pixel - d - chunks + 1)


def engine_tail(requant_span: int, block: int) -> int:
    """Clocks an engine's loop leaves for after it: the last fold's requantization and, with
    blocks of several pixels, the rest of one leaving block and the last block (folds.hpp)."""
    return requant_span + 2 * (block - 1)


def first_window(engine: str, chunks: int) -> int:
    """Clocks of an engine's first-window loop: one a chunk, and in the sparse engine one more
    (each chunk is written a clock after its read, from the register that drives the broadcast
    to every lane's copy: sparse_conv.hpp's chunk_schedule)."""
    return chunks + (1 if engine == "sparse" else 0)


def engine_clocks(pixel_clocks: int, first: int, tail: int) -> int:
    """Clocks per frame of an engine whose groups take ``pixel_clocks`` in all: plus the
    first window (``first``: :func:`first_window`), what follows the loop (``tail``: the last
    fold's requantization and the last blocks' pixels) and the pipeline fill (see ASSUMPTIONS)."""
    return pixel_clocks + first + tail + PIPELINE_FILL


def line_placement(model, lanes, board=None, uram_limit: int | None = None) -> list[str]:
    """Where each layer's line-buffer rows go: ``none`` (k = 1), ``lutram``, ``bram`` or ``uram``.

    Rows at most 64 words deep go to LUTRAM; the others to BRAM18, except that on a board
    with URAM the set of layers whose rows save the most BRAM18 in all moves there (each
    saving at least one BRAM18 per URAM), its URAMs within ``uram_limit`` (default: the
    board's ceiling) -- a 0/1 knapsack, solved exactly over the URAMs used (fewer URAMs on a
    tie). (Taking the best BRAM18 per URAM first, as before, left BRAM18 a greedy order missed:
    the default model on KV260 reached 247.4 frames/s where 259.7 fits.)
    """
    places, candidates = [], []
    for n, p in enumerate(lanes):
        layer = model.layers[n]
        if layer.kernel == 1:
            places.append("none")
            continue
        g = layer_geometry(model, n, p)
        width = g["chunk_channels"] * input_bits(model, n)
        if g["line_depth"] <= LUTRAM_MAX_DEPTH:
            places.append("lutram")
            continue
        places.append("bram")
        urams = g["line_slots"] * uram_count(g["line_depth"], width)
        brams = g["line_slots"] * bram18_count(g["line_depth"], width)
        if brams >= urams:
            candidates.append((n, brams, urams))
    if board is not None and candidates:
        left = resource_limits(board)["uram"] if uram_limit is None else uram_limit
        best = {0: (0, ())}  # URAMs used -> (BRAM18 saved, layers), the best of each total
        for n, brams, urams in candidates:
            for used, (saved, layers) in list(best.items()):
                total = used + urams
                if total <= left and (total not in best or best[total][0] < saved + brams):
                    best[total] = (saved + brams, layers + (n,))
        _, (_, layers) = max(best.items(), key=lambda item: (item[1][0], -item[0]))
        for n in layers:
            places[n] = "uram"
    return places


def layer_resources(model, index: int, plan, board=None, storage: str | None = None,
                    depths: tuple[int, int] | None = None) -> dict:
    """DSP48, BRAM18, URAM, LUT and FF estimate of one layer built as ``plan`` (ASSUMPTIONS).

    ``storage`` is where the line-buffer rows go (:func:`line_placement`); by default the
    layer alone on ``board`` decides (URAM when the board has it and each URAM replaces at
    least four BRAM18). ``depths`` are the layer's (pixel, chunk[, fetched pixel]) FIFO depths when known
    (simulated); by default the geometry's rules (:func:`fifo_depth_pixels`, :func:`fifo_depth_chunks`).
    """
    plan = as_plan(plan)
    key = ("resources", index, plan, getattr(board, "name", board), storage, depths)
    return _remembered(model, key, lambda: _layer_resources(model, index, plan, board, storage, depths))


def _layer_resources(model, index: int, plan: LayerPlan, board, storage: str | None,
                     depths: tuple[int, int] | None) -> dict:
    layer = model.layers[index]
    cin, cout, k = layer.in_channels, layer.out_channels, layer.k_nonzero
    g = layer_geometry(model, index, plan)
    act_depth, win_depth, fetch_depth = (tuple(depths) + (FETCH_DEPTH,))[:3] if depths else (
        fifo_depth_pixels(model, index, g), fifo_depth_chunks(g), FETCH_DEPTH)
    lanes, folds, dense = g["lanes"], g["folds"], g["engine"] == "dense"
    logits = layer.act == "logits"
    family = board_family(board)
    units = g["requant_units"]
    bits = input_bits(model, index)
    out_bits = layer.stored_out_bits
    chunk_bits = g["banks"] * bits
    if dense:  # a word of k*Wc weights per lane, fold and chunk; one broadcast window
        ebits = g["simd"] * layer.weight_bits
        w_bram, w_lut = memory_cost(folds * g["chunks"], lanes * ebits, family)  # ARRAY_RESHAPE: one word for all lanes
        win_bram, win_lut = memory_cost(2 * g["chunks"], chunk_bits, family)
        lane_lut = LUT_PER_LANE + g["sum_bits"] + g["simd"] * LUT_PER_SIMD
        pair_lut = (lanes // 2) * g["simd"] * LUT_PER_PACK * g["packed_products"]  # plan x: a fix-up a product pair
        macs = lanes * g["simd"]
    else:  # one entry (weight, bank, column, slot) per lane, fold and weight; a window copy per lane
        pair_lut = 0  # the pixel pairs' fix-ups are in lane_lut
        q = g["pixels"]
        ebits = layer.weight_bits + g["bank_bits"] + g["col_bits"] + g["slot_bits"]
        w_bram, w_lut = memory_cost(folds * k, lanes * ebits, family)  # ARRAY_RESHAPE: one word for all lanes
        # a copy: a memory per group column of 2 * Cin/Wc words (two halves), read once a clock at
        # the address the lane's weight names, its tap picked there (sparse_conv.hpp: word[m]); each
        # pixel then picks the memory of its column among its k columns'. In LUTRAM a bank per tap
        # (k*Wc of them a column): a memory's read is a (k*Wc banks x 64-word blocks):1 multiplexer.
        # In BRAM one word of k*Wc taps a column, columns never read in one clock stacked in one
        # memory (window_memories), each memory's block picked by kx, its tap from the word
        depth = column_words(cin, g["chunk_channels"])
        taps = g["banks"]
        pick = q * mux_luts(layer.kernel, bits)
        if g["shared_window"]:  # shared_window.hpp: one window of B banks a column, read through a crossbar
            banks, slots = g["window_banks"], g["bank_slots"]
            win_bram = 0
            win_lut = (banks * (g["group_columns"] * lutram_luts(2 * slots, bits, family)  # a bank's columns
                                + mux_luts(taps, bits) + g["slot_bits"] + g["bank_bits"]  # its write: a tap of the chunk, the slot
                                + mux_luts(lanes, g["slot_bits"] + g["col_bits"])  # its read address: the claiming lane's
                                + lanes * -(-(g["bank_bits"] + 1) // 6)  # which lane claims it (bank and a nonzero weight)
                                + pick)  # each pixel's column of its k
                       + lanes * q * mux_luts(banks, bits))  # the crossbar: each lane's pixel from its bank
            check_bram, check_lut = memory_cost(k, banks, family)  # the loader's banks taken a step (conflict check)
            w_bram, w_lut = w_bram + check_bram, w_lut + check_lut + banks
        elif g["window_bram"]:
            memories, blocks = g["window_memories"], g["window_blocks"]
            win_bram = lanes * memories * bram18_count(blocks * depth, taps * bits)
            block_pick = mux_luts(layer.kernel, field_bits(blocks)) if blocks > 1 else 0
            win_lut = lanes * (memories * (mux_luts(taps, bits) + block_pick) + pick)
        elif g["window_taps_in_a_word"]:  # a column one LUTRAM word of k*Wc taps, one block deep
            win_bram = 0
            win_lut = lanes * (g["group_columns"] * (lutram_luts(depth, taps * bits, family) + mux_luts(taps, bits)) + pick)
        else:
            win_bram = 0
            win_lut = lanes * (g["group_columns"] * (taps * lutram_luts(depth, bits, family)
                                                     + mux_luts(taps * -(-depth // 64), bits)) + pick)
        lane_lut = (LUT_PER_LANE + q * g["sum_bits"] + (q - 1) * LUT_PER_PIXEL
                    + (q // 2) * LUT_PER_PACK * g["packed_products"])
        macs = lanes * q
    q_bram, q_lut = memory_cost(folds * g["requant_span"], REQUANT_PARAM_BITS, family)
    # line buffer: SPAN + S row memories of line_depth words of Wc*bits, k row multiplexers
    lb = {"bram18": 0, "uram": 0, "lut": 0}
    if layer.kernel > 1:
        row_width = g["chunk_channels"] * bits
        where = storage or line_storage(g["line_depth"], row_width,
                                        board is not None and as_board(board).budget["uram"] > 0)
        if where == "uram":
            lb["uram"] = g["line_slots"] * uram_count(g["line_depth"], row_width)
        elif where == "bram":
            lb["bram18"] = g["line_slots"] * bram18_count(g["line_depth"], row_width)
        else:
            lb["lut"] = g["line_slots"] * lutram_luts(g["line_depth"], row_width, family)
        lb["lut"] += layer.kernel * mux_luts(g["line_slots"], row_width)
    if g["ddr_rows"]:  # the row port: a read and a write data FIFO, the adapter's logic; the fetched pixels' FIFO
        m_bram, m_lut = memory_cost(M_AXI_OUTSTANDING * M_AXI_BURST, ROW_WORD_BITS, family)
        p_bram, p_lut = memory_cost(fetch_depth, cin * bits, family)
        lb["bram18"] += 2 * m_bram + p_bram
        lb["lut"] += 2 * m_lut + LUT_PER_M_AXI + p_lut
    f_bram, f_lut = memory_cost(win_depth, chunk_bits, family)  # chunk FIFO
    a_bram, a_lut = memory_cost(act_depth, cin * bits, family)  # input pixel FIFO
    requant_lut = 0 if logits else units * (LUT_PER_REQUANT + mux_luts(g["requant_span"], g["sum_bits"]))
    # finished pixels, two blocks of M*Q (one filled, one leaving): registers for one pixel a
    # block, else a LUTRAM per output channel (its requantizer writes, the pixel word reads)
    block_ff = 2 * cout * out_bits if g["block"] == 1 else 0
    block_lut = 0 if g["block"] == 1 else cout * lutram_luts(2 * g["block"], out_bits, family)
    # the block's burst room in the next layer's pixel FIFO (fifo_depth_pixels): what the FIFO
    # costs with it over what it costs without, counted here, with the layer that needs it (at
    # simulated ``depths`` every FIFO is priced at its own depth, which holds the room already)
    burst_bram = burst_lut = 0
    if g["block"] > 1 and not depths:
        # the next layer's rule depth; after the last layer the logits stream (codegen's io depth 2)
        base = fifo_depth_pixels(model, index + 1, None) if index + 1 < len(model.layers) else 2
        with_room = memory_cost(base + g["block"] - 1, cout * out_bits, family)
        without = memory_cost(base, cout * out_bits, family)
        burst_bram, burst_lut = with_room[0] - without[0], with_room[1] - without[1]
    return {
        "engine": g["engine"],
        "dsp": (dense_dsp(g, board) if dense else lanes * dsp_per_lane(g, board))
        + (0 if logits else units * DSP_PER_REQUANT),
        "macs_per_clock": macs,
        "bram18_weights": w_bram + units * q_bram,
        "bram18_line_buffer": lb["bram18"] + f_bram + a_bram + win_bram + burst_bram,
        "bram18": w_bram + units * q_bram + lb["bram18"] + f_bram + a_bram + win_bram + burst_bram,
        "uram": lb["uram"],
        "weight_bits_on_chip": (lanes * folds * g["chunks"] * ebits if dense else cout * k * ebits)
        + cout * REQUANT_PARAM_BITS,
        "lut_windows": win_lut,
        "bram18_windows": win_bram,
        "lut": lanes * lane_lut + pair_lut + w_lut + win_lut + units * q_lut + requant_lut + LUT_PER_LAYER
        + lb["lut"] + f_lut + a_lut + block_lut + burst_lut,
        "ff": lanes * (FF_PER_LANE + 2 * g["sum_bits"]) + (macs * FF_PER_SIMD if dense else (macs - lanes) * 2 * g["sum_bits"])
        + cin * bits + block_ff + FF_PER_LAYER + (FF_PER_M_AXI if g["ddr_rows"] else 0),
        "line_storage": where if layer.kernel > 1 else "none",
        **{key: g[key] for key in ("lanes", "folds", "pixels", "chunk_channels", "chunks", "requant_units")},
    }


def products_per_dsp(g: dict, board=None) -> int:
    """Products one DSP48 computes for a layer: two where they are packed (:func:`packed_products`,
    plan ``x``) and the board's DSP48E2 takes the 27-bit operand, else one (every board without
    a family, ``board=None``, is priced as a DSP48E2)."""
    return MACS_PER_DSP.get(board_family(board), 1) if g["packed_products"] else 1


def dense_dsp(g: dict, board=None) -> int:
    """DSP48s of a dense layer's products: one per lane and SIMD product, or (plan ``x``) one
    per pair of lanes and SIMD product where they are packed (an odd lane alone)."""
    return -(-g["lanes"] // products_per_dsp(g, board)) * g["simd"] * DSP_PER_LANE


def dsp_per_lane(g: dict, board=None) -> int:
    """DSP48s of one sparse lane: one per pixel, or one per pair of pixels where the products
    are packed (:func:`products_per_dsp`)."""
    return -(-g["pixels"] // products_per_dsp(g, board))


def fifo_depth_chunks(g: dict) -> int:
    """Depth of the chunk FIFO between a layer's window generator and its engine: two
    windows (the generator may finish the next window while the engine still reads its
    first chunks; the engine itself buffers one more)."""
    return 2 * g["chunks"]


def fifo_depth_pixels(model, index: int, g: dict, producer_block: int = 1) -> int:
    """Depth of the pixel FIFO in front of a layer's window generator, before simulation:
    four pixels for k > 1 (the generator keeps ``stride`` spare rows and takes a pixel
    whenever one is there, so the layer before never waits for its reads), two for k = 1;
    plus the burst of the layer before (``producer_block`` - 1: a block of M*Q pixels leaves
    its engine one a clock, faster than a window generator takes them, and an engine whose
    pixel cannot leave stops its MACs). The simulation (:mod:`sentei.overlay.simulate`)
    deepens it where the pipeline needs more."""
    return (4 if model.layers[index].kernel > 1 else 2) + producer_block - 1


SHELL_RESOURCES = {"dsp": DSP_INPUT_QUANT, "bram18": 0, "uram": 0, "lut": LUT_SHELL, "ff": FF_SHELL}


def design_resources(model, lanes, board=None, uram_limit: int | None = None) -> dict[str, int]:
    """Estimate of the whole accelerator (shell included) with ``lanes`` per layer on ``board``
    (line buffers placed by :func:`line_placement`)."""
    totals = dict(SHELL_RESOURCES)
    places = line_placement(model, lanes, board, uram_limit)
    for n, p in enumerate(lanes):
        res = layer_resources(model, n, p, board, places[n])
        for key in totals:
            totals[key] += res.get(key, 0)
    return totals


def dsp_budget(board, dsp_fraction: float = DEFAULT_DSP_FRACTION) -> int:
    """DSP48s the allocator may use: ``floor(board DSPs * dsp_fraction)``."""
    return resource_limits(board, dsp_fraction)["dsp"]


def resource_limits(board, dsp_fraction: float | None = None, ceilings: dict | None = None) -> dict[str, int]:
    """What the allocator may use of each resource: ``floor(budget * ceiling)``.

    ``ceilings`` overrides entries of :data:`CEILINGS`; ``dsp_fraction``, when given, the DSP
    one (``ceilings["dsp"]`` included).
    """
    share = dict(CEILINGS)
    share.update(ceilings or {})
    if dsp_fraction is not None:
        share["dsp"] = dsp_fraction
    for key, value in share.items():
        if not 0 < value <= 1:
            name = "dsp_fraction" if key == "dsp" else f"the {RESOURCE_NAMES[key]} ceiling"
            raise SenteiError(f"{name} {value} must lie in (0, 1]")
    budget = as_board(board).budget
    return {key: int(budget[key] * share[key]) for key in BUDGET_FIELDS}


def over_limits(used: dict, limits: dict) -> list[str]:
    """The resources of ``used`` above their ``limits``, in BUDGET_FIELDS order."""
    return [key for key in BUDGET_FIELDS if used.get(key, 0) > limits[key]]


# ---------------------------------------------------------------------------------------
# the pipeline's stages


def fixed_stages(model) -> dict[str, int]:
    """Clocks per frame of the stages lanes do not change.

    ``input`` (frame reader and input quantizer, one pixel per clock) and ``output``
    (logits writer, one int32 per clock).
    """
    shapes = model.shapes()
    stages = {"input": -(-model.input.height * model.input.width // INPUT_PIXELS_PER_CYCLE)}
    c, h, w = shapes[-1]
    stages["output"] = -(-c * h * w // OUTPUT_WORDS_PER_CYCLE)
    return stages


def engine_cycles(model, index: int, plan) -> int:
    """Clocks per frame of layer ``index``'s engine (sparse or dense), see ASSUMPTIONS."""
    return layer_geometry(model, index, plan)["engine_cycles"]


def window_cycles(model, index: int, plan) -> int:
    """Clocks per frame of layer ``index``'s window generator (its chunk width follows the plan)."""
    return layer_geometry(model, index, plan)["window_iterations"]


def pipeline_interval(model, plans) -> int:
    """The modeled interval: the slowest stage's clocks per frame (engines, window generators,
    frame reader, logits writer)."""
    return max([conv_stage_cycles(model, n, p) for n, p in enumerate(plans)] + list(fixed_stages(model).values()))


def conv_stage_cycles(model, index: int, plan) -> int:
    """Clocks per frame of layer ``index``: the largest of its engine, its window generator
    and, with rows in DDR, the process that moves them."""
    g = layer_geometry(model, index, plan)
    return max(g["engine_cycles"], g["window_iterations"], g["row_memory_cycles"])


# ---------------------------------------------------------------------------------------
# the allocator


def layer_options(model, index: int, ddr_rows: bool = False, packed_dense: bool = False) -> list[LayerPlan]:
    """Every distinct way to build layer ``index``: the sparse engine with P = ceil(Cout/NF)
    lanes for each fold count NF and each pixel count of :data:`PIXEL_OPTIONS` that divides
    the output width (its chunk width the fastest, :func:`best_chunk_channels`, with BRAM
    window copies where they fit, with one window shared by the lanes where some number of
    banks serves them without padding (:func:`shared_banks`), and with the narrowest chunk that makes a LUTRAM window
    column one word, at most 64 deep, where that is no slower), and (where it can run) the dense engine with those lanes
    and each chunk width Wc dividing Cin that leaves >= 2 chunks a window (with ``packed_dense``,
    on a board whose DSP48E2 packs two products, each also as ``x`` where it may). With ``ddr_rows``
    (a board whose file allows it), each of these also with its rows in DDR where that keeps
    fewer rows on chip (2k < (k-1)*d + 1 + s: the dilated layers)."""
    layer = model.layers[index]
    cout, cin, k = layer.out_channels, layer.in_channels, layer.kernel
    lanes = sorted({-(-cout // nf) for nf in range(1, cout + 1)})
    wo = model.shapes()[index + 1][2]  # groups may overhang the row (group_layout), not exceed it
    pixels = [q for q in PIXEL_OPTIONS if q <= layer.k_nonzero and q <= wo and (k > 1 or wo % q == 0)]
    spaced = layer.kernel > 1 and layer.dilation > 1  # spaced groups share columns; adjacent ones overhang no row
    # the narrowest chunk whose window column (2*Cin/Wc words) is one LUTRAM word of its taps
    one_word = next((v for v in divisors(cin) if one_word_columns(cin, v)), None)
    plans = []
    for q in pixels:
        for p in lanes:
            for adj in ((False, True) if spaced and q > 1 else (False,)):
                plan = LayerPlan("sparse", p, None, q, adj)
                plans.append(plan)
                g = layer_geometry(model, index, plan)
                if g["window_distance"] >= BRAM_WINDOW_MIN_DISTANCE:
                    plans.append(LayerPlan("sparse", p, None, q, adj, True))
                if shared_banks(model, index, p, g["chunk_channels"]) is not None:
                    plans.append(LayerPlan("sparse", p, None, q, adj, shared=True))  # one window for all lanes
                if not g["window_taps_in_a_word"] and one_word is not None and one_word > g["chunk_channels"]:
                    wide = LayerPlan("sparse", p, one_word, q, adj)  # LUTRAM copies a word a column, if no slower
                    if conv_stage_cycles(model, index, wide) <= conv_stage_cycles(model, index, plan):
                        plans.append(wide)
    if dense_allowed(model, index):
        dense = [LayerPlan("dense", p, wc) for p in lanes for wc in divisors(cin) if k * (cin // wc) >= 2]
        if packed_dense and packed_products(model, index, 2):
            dense += [dataclasses.replace(plan, packed=True) for plan in dense if plan.lanes >= 2]
        plans += dense
    if ddr_rows and k > 1 and 2 * k < ring_rows(layer):
        plans += [dataclasses.replace(plan, ddr_rows=True) for plan in plans]
    return plans


def board_options(model, index: int, board) -> list[LayerPlan]:
    """:func:`layer_options` on ``board``: with rows in DDR where its file allows them (``ddr_rows``),
    and the dense engine's packed products (``x``) where its DSP48s take two."""
    b = as_board(board)
    return layer_options(model, index, bool(b.spec.get("ddr_rows", False)), MACS_PER_DSP.get(b.family, 1) > 1)


def _layer_rows(model, index: int, board, limits: dict) -> list[tuple[int, dict, LayerPlan]]:
    """Every option of a layer as ``(stage clocks, resource shares of the limits, plan)``."""
    rows = []
    for plan in board_options(model, index, board):
        res = layer_resources(model, index, plan, board)
        shares = {key: res.get(key, 0) / limits[key] for key in BUDGET_FIELDS if limits[key]}
        rows.append((conv_stage_cycles(model, index, plan), shares, plan))
    return rows


#: plans the allocator's last step tries for the one layer that sets the interval, per weighting
EXCHANGE_TRIES = 4


def _weightings() -> list[dict[str, float]]:
    """Where the allocator's picks start: a layer's resources as shares of the limits, all
    alike or one of them eight times dearer."""
    out = [{key: 1.0 for key in BUDGET_FIELDS}]
    for scarce in BUDGET_FIELDS:
        out.append({key: 8.0 if key == scarce else 1.0 for key in BUDGET_FIELDS})
    return out


def _repair(rows, plans, target, used_of, limits, steps: int = 64):
    """Move layers to other plans within ``target`` until the design fits ``limits``: each
    step takes the resource most over its limit and the one layer change that frees most of
    it per share it adds elsewhere (never adding to a resource with no room); None when no
    change helps. ``rows`` are each layer's options, ``used_of(plans)`` the design's use."""
    index = [{row[2]: row for row in layer_rows} for layer_rows in rows]
    plans = list(plans)
    for _ in range(steps):
        used = used_of(plans)
        over = over_limits(used, limits)
        if not over:
            return plans
        scarce = max(over, key=lambda k: used[k] / limits[k])
        room = {k: (limits[k] - used[k]) / limits[k] for k in BUDGET_FIELDS if limits[k]}
        best, best_score = None, 0.0
        for n, layer_rows in enumerate(rows):
            current = index[n][plans[n]][1]
            for cycles, shares, plan in layer_rows:
                if cycles > target:
                    continue
                freed = current.get(scarce, 0.0) - shares.get(scarce, 0.0)
                if freed <= 0:
                    continue
                cost, allowed = 0.0, True
                for key, share in shares.items():
                    grow = share - current.get(key, 0.0)
                    if key == scarce or grow <= 0:
                        continue
                    if room.get(key, 0.0) <= grow:
                        allowed = False
                        break
                    cost += grow / room[key]
                if allowed and freed / (cost + 1e-9) > best_score:
                    best, best_score = (n, plan), freed / (cost + 1e-9)
        if best is None:
            return None
        plans[best[0]] = best[1]
    return None


class DoesNotFit(SenteiError):
    """The cheapest design of a model exceeds a board's ceilings. ``used`` is that design's
    resources, ``limits`` the ceilings; ``overshoot`` (> 1) the largest ``used / limit``: how
    far the model is from fitting, which a search over models can descend."""

    def __init__(self, model, board: Board, used: dict, limits: dict):
        self.used, self.limits = used, limits
        self.overshoot = max(used[k] / limits[k] if limits[k] else math.inf if used[k] else 0.0
                             for k in BUDGET_FIELDS)
        key = over_limits(used, limits)[0]
        super().__init__(f"model {model.name} needs {used[key]:,} {RESOURCE_NAMES[key]} at its cheapest, "
                         f"more than {limits[key]:,} ({limits[key] / board.budget[key]:.0%} of {board.name}'s "
                         f"{board.budget[key]:,}): {RESOURCE_ADVICE[key]}")


def allocate(model, board, clock_mhz: float | None = None,
             dsp_fraction: float | None = None, ceilings: dict | None = None) -> list[LayerPlan]:
    """A :class:`LayerPlan` per layer (engine, lanes, chunk width, pixels) balancing the
    pipeline within every budget.

    The smallest pipeline interval T the budgets allow, searched by bisection over the stage
    clocks the layers' options (:func:`layer_options`) give: for a candidate T every layer
    takes its cheapest option whose stage is at most T (cheapest by its resources as shares
    of the limits, weighted all alike or one resource dearer: :func:`_weightings`); where the
    whole design (:func:`design_resources`, shell included) exceeds :func:`resource_limits`
    -- DSP48, BRAM18, URAM, LUT or FF -- layers move to other plans within T that free the
    resource most over its limit (:func:`_repair`: LUTs for BRAM window copies, DSP48s for
    LUTs, ...); T is feasible when some start repairs to a fitting design -- the cheapest
    plans within T, or the best design found so far with its layers slower than T sped up.
    The repairs are greedy, so feasibility found this way is not monotone in T (a target can
    fail where a lower one succeeds); after the bisection the search keeps lowering the
    target to just below the design's interval while that succeeds -- where one layer alone
    sets the interval, also from the design with that layer on each of a few of its cheapest
    plans within the target (:data:`EXCHANGE_TRIES` per weighting), not only the cheapest. T never goes below the
    stages plans cannot speed up (frame reader, logits writer).

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
    board : str or Board
        A name from :func:`known_boards`.
    clock_mhz : float, optional
        Does not change the balance (every stage runs on one clock); checked against the
        board's maximum so that the code generator fails early.
    dsp_fraction : float, optional
        Share of the board's DSP48s the accelerator may take (default: ``ceilings["dsp"]``,
        else :data:`DEFAULT_DSP_FRACTION`).
    ceilings : dict, optional
        Shares of the budgets (keys of :data:`CEILINGS`), overriding the defaults.

    Raises
    ------
    DoesNotFit
        The cheapest plan of every layer already exceeds a limit (the network does not fit):
        the message names the resource and what to change.
    """
    b = as_board(board)
    if clock_mhz is not None:
        check_clock(b, clock_mhz)
    with _remembering(model):
        return _allocate(model, b, resource_limits(b, dsp_fraction, ceilings))


def _allocate(model, b: Board, limits: dict) -> list[LayerPlan]:
    rows = [_layer_rows(model, n, b, limits) for n in range(len(model.layers))]
    stages = [{plan: cycles for cycles, _, plan in layer_rows} for layer_rows in rows]  # plan -> clocks
    weightings = _weightings()

    def by_cost(weights: dict):
        """Sort key of a layer's rows: cheapest by ``weights`` first, then faster."""
        return lambda r: (sum(weights[k] * v for k, v in r[1].items()), r[0])

    def within(n: int, target: float) -> list:
        return [r for r in rows[n] if r[0] <= target]

    def pick(target: float, weights: dict) -> list[LayerPlan] | None:
        plans = []
        for n in range(len(rows)):
            ok = within(n, target)
            if not ok:
                return None
            plans.append(min(ok, key=by_cost(weights))[2])
        return plans

    def used_of(plans):
        return design_resources(model, plans, b, limits["uram"])

    def from_design(design: list[LayerPlan], target: float, weights: dict) -> list[LayerPlan] | None:
        """``design`` with each layer slower than ``target`` moved to its cheapest plan within it."""
        plans = []
        for n, plan in enumerate(design):
            if stages[n][plan] <= target:
                plans.append(plan)
                continue
            ok = within(n, target)
            if not ok:
                return None
            plans.append(min(ok, key=by_cost(weights))[2])
        return plans

    def fitting(target: float, incumbent: list[LayerPlan] | None = None) -> list[LayerPlan] | None:
        starts = [lambda w: pick(target, w)]
        if incumbent is not None:  # the best design so far, its too-slow layers sped up: a nearby start
            starts.append(lambda w: from_design(incumbent, target, w))
        for start in starts:
            for weights in weightings:
                plans = start(weights)
                if plans is None:
                    return None
                plans = _repair(rows, plans, target, used_of, limits)
                if plans is not None:
                    return plans
        return None

    def exchange(target: float, design: list[LayerPlan], tries: int = EXCHANGE_TRIES) -> list[LayerPlan] | None:
        """``design`` with its one layer slower than ``target`` (None if there are more) moved to
        each of its ``tries`` cheapest plans within it by each weighting, the rest repaired: where
        the cheapest plan alone leaves nothing the repair can fix, a dearer one may."""
        slow = [n for n, plan in enumerate(design) if stages[n][plan] > target]
        if len(slow) != 1:
            return None
        n = slow[0]
        ok, seen = within(n, target), []
        for weights in weightings:
            for r in sorted(ok, key=by_cost(weights))[:tries]:
                if r[2] not in seen:
                    seen.append(r[2])
        for plan in seen:
            found = _repair(rows, design[:n] + [plan] + design[n + 1:], target, used_of, limits)
            if found is not None:
                return found
        return None

    def interval(plans) -> int:
        return max([stages[n][plan] for n, plan in enumerate(plans)] + [floor])

    cheapest = pick(math.inf, weightings[0])
    plans = fitting(math.inf)
    if plans is None:
        raise DoesNotFit(model, b, design_resources(model, cheapest, b, limits["uram"]), limits)
    floor = max(fixed_stages(model).values())
    targets = sorted({c for layer_rows in rows for c, _, _ in layer_rows if c > floor} | {floor})
    lo, hi = 0, len(targets)  # targets[hi:] are feasible (hi = len: only "no target", plans above)
    while lo < hi:
        mid = (lo + hi) // 2
        found = fitting(targets[mid], plans)
        if found is None:
            lo = mid + 1
        else:
            plans, hi = found, mid
    # The repairs are greedy, so a target can fail where a lower one succeeds: from the design
    # found, keep lowering the target to just below its interval while that succeeds
    while True:
        below = bisect.bisect_left(targets, interval(plans)) - 1
        if below < 0:
            return plans
        found = fitting(targets[below], plans) or exchange(targets[below], plans)
        if found is None:
            return plans
        plans = found


def check_clock(board, clock_mhz: float) -> None:
    """Reject a clock outside ``(0, board max]`` with a one-line message."""
    b = as_board(board)
    if not 0 < clock_mhz <= b.max_clock_mhz:
        raise SenteiError(f"clock {clock_mhz:g} MHz is outside (0, {b.max_clock_mhz:g}] MHz for {b.name} "
                          f"(its default is {b.default_clock_mhz:g} MHz)")


# ---------------------------------------------------------------------------------------
# plans as given


def resolve_plans(model, plans) -> list[LayerPlan]:
    """The plans with their chunk widths filled in (what the report and codegen state)."""
    out = []
    for n, plan in enumerate(plans):
        out.append(dataclasses.replace(as_plan(plan), chunk_channels=layer_geometry(model, n, plan)["chunk_channels"]))
    return out


def check_plans(model, lanes) -> list[LayerPlan]:
    """One :class:`LayerPlan` per layer from plans, ints (sparse lanes) or labels
    (``d4w32``); each checked against its layer (:func:`layer_geometry`)."""
    plans = [as_plan(p) for p in lanes]
    if len(plans) != len(model.layers):
        raise SenteiError(f"{len(plans)} lane counts given for {len(model.layers)} layers (give one per layer)")
    for n, plan in enumerate(plans):
        layer_geometry(model, n, plan)
    return plans
