"""Code generator: a model file's compile-time facts -> the HLS network configuration.

``sentei overlay codegen --model M`` writes three files into a build directory (never the
repository):

``network_config.h``
    one ``CONFIG_T`` struct per layer (hls4ml style: static consts and typedefs deriving
    from ``sentei::conv_config_default``) with the shapes, stride, dilation, padding, K,
    lanes and bit widths; the blob layout (section offsets) the loader checks; the stage
    shapes the testbench compares.
``network.h``
    the on-chip weight storage of every layer, the blob loader and the ``DATAFLOW`` region
    that wires one line buffer + sparse engine per layer between the frame reader and the
    logit writer.
``network.json``
    the same facts for Python tools (driver checks, performance model, build scripts).

Only compile-time facts enter (docs/model-format.md section 6): a retrained model with the
same shapes and K per layer generates the same files, so it runs on the same bitstream.
The files are rendered from :class:`string.Template` texts with named fields; per-layer
blocks are rendered once per layer and joined.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from string import Template

from sentei.atomic_write import json_text
from sentei.errors import SenteiError

FALLBACK_MAX_LANES = 8
# structure the code generator takes from sentei.overlay.perf.layer_geometry
GEOMETRY_FIELDS = ("pixels", "spacing", "row_groups", "chunk_channels", "chunks", "pixel_iterations",
                   "window_iterations", "line_slots", "line_depth", "requant_units", "requant_span", "bank_bits",
                   "col_bits", "slot_bits", "packed_products", "window_bram", "window_memories", "window_blocks",
                   "ddr_rows", "row_words", "row_memory_cycles", "pixel_beats", "row_beats", "sum_bits",
                   "window_taps_in_a_word", "shared_window", "window_banks", "bank_slots")
ROW_ALIGN_WORDS = 8  # each layer's region of the row buffer starts on 64 bytes (an AXI burst never straddles two)


def default_lanes(model) -> list:
    """Fallback plan without a board: the sparse engine with the largest divisor of each
    layer's Cout that is <= 8 lanes."""
    from sentei.overlay.perf import LayerPlan

    return [LayerPlan("sparse", max(p for p in range(1, FALLBACK_MAX_LANES + 1) if layer.out_channels % p == 0))
            for layer in model.layers]


def check_lanes(model, lanes) -> list:
    """Validate explicit plans (ints: sparse lanes; labels such as ``d4w32``): one per layer."""
    from sentei.overlay.perf import check_plans

    return check_plans(model, lanes)


def choose_lanes(model, lanes=None, board: str | None = None, clock_mhz: float | None = None) -> list:
    """Plans per layer: explicit ``lanes``, else the performance model's allocation for
    ``board`` (``sentei.overlay.perf.allocate``), else :func:`default_lanes`."""
    if lanes is not None:
        return check_lanes(model, lanes)
    if board is not None:
        from sentei.overlay import perf

        return perf.allocate(model, board, clock_mhz)
    return default_lanes(model)


# characters a generated comment or C string may carry as they are; everything else is escaped
_C_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _.,+-()")


def c_comment_text(text: str) -> str:
    """``text`` made safe inside a ``//`` comment of generated C++: every character outside a
    plain alphabet (a newline, a backslash that would continue the comment, ``*/``, a
    non-ASCII character) becomes ``?``. The model validator already restricts names; this
    keeps generated code safe even for a model that bypassed it."""
    return "".join(c if c in _C_PLAIN else "?" for c in str(text))


def c_string_literal(text: str) -> str:
    """``text`` as a C string literal: plain characters as they are, every other byte of its
    UTF-8 encoding as a three-digit octal escape (no quote, backslash, newline, trigraph or
    universal character name can end or change the literal)."""
    raw = str(text).encode("utf-8", "backslashreplace")
    return '"' + "".join(chr(b) if chr(b) in _C_PLAIN else f"\\{b:03o}" for b in raw) + '"'


def _act_type(act: str, bits: int) -> str:
    if act == "relu":
        return f"ap_uint<{bits}>"
    if act == "linear":
        return f"ap_int<{bits}>"
    return "ap_int<32>"


@dataclass(frozen=True)
class LayerFacts:
    """Compile-time facts of one layer, as the generated config states them."""

    index: int
    name: str
    cin: int
    cout: int
    kernel: int
    stride: int
    dilation: int
    padding: int
    in_height: int
    in_width: int
    out_height: int
    out_width: int
    k_nonzero: int
    lanes: int
    weight_bits: int
    act: str
    out_bits: int
    in_type: str
    out_type: str
    out_min: int
    out_max: int
    blob_offset: int
    geometry: tuple = ()  # (name, value) pairs of sentei.overlay.perf.layer_geometry
    line_storage: str = "bram"  # where the line-buffer rows go: bram, uram or lutram
    engine: str = "sparse"  # sparse_conv.hpp or dense_conv.hpp
    act_depth: int = 2  # FIFO depth of the layer's input pixels
    win_depth: int = 2  # FIFO depth of its window chunks
    fetch_depth: int = 2  # FIFO depth of the pixels read back from DDR (rows in DDR only; perf.FETCH_DEPTH)
    row_offset: int = 0  # 64-bit word of the row buffer where its region starts (rows in DDR only)

    @property
    def ddr_rows(self) -> bool:
        return bool(dict(self.geometry).get("ddr_rows", 0))

    @property
    def folds(self) -> int:
        return -(-self.cout // self.lanes)

    @property
    def iterations(self) -> int:
        """MAC-loop iterations per frame: Ho * groups a row * NF * K (sparse, groups of Q pixels)
        or Ho * Wo * NF * L (dense)."""
        g = dict(self.geometry)
        steps = self.k_nonzero if self.engine == "sparse" else g["chunks"]
        return self.out_height * g["row_groups"] * self.folds * steps


@dataclass(frozen=True)
class NetworkFacts:
    """Everything the generated files state about a model."""

    model_name: str
    height: int
    width: int
    input_bits: int
    num_classes: int
    layers: tuple[LayerFacts, ...]
    blob_words: int
    io_depths: tuple = (2, 2, 2)  # FIFO depths of the frame words, the RGB pixels and the logits
    fifo_source: str = "rule"  # "simulated" (sentei.overlay.simulate) or "rule" (perf.fifo_depth_*)

    @property
    def frame_words(self) -> int:
        return (self.height * self.width * 3 + 3) // 4

    @property
    def logit_words(self) -> int:
        last = self.layers[-1]
        return last.out_height * last.out_width * last.cout

    def depths(self) -> dict[str, int]:
        """Every stream's FIFO depth by name (``words``, ``rgb``, ``act<n>``, ``win<n>``, ``fetch<n>``
        for a layer with rows in DDR, ``act<L>``)."""
        out = {"words": self.io_depths[0], "rgb": self.io_depths[1]}
        for n, f in enumerate(self.layers):
            out[f"act{n}"], out[f"win{n}"] = f.act_depth, f.win_depth
            if f.ddr_rows:
                out[f"fetch{n}"] = f.fetch_depth
        out[f"act{len(self.layers)}"] = self.io_depths[2]
        return out

    @property
    def row_buffer_words(self) -> int:
        """64-bit words of the DDR buffer the layers with rows in DDR share, each its region."""
        return max([f.row_offset + dict(f.geometry)["row_words"] for f in self.layers if f.ddr_rows] + [0])

    @property
    def row_buffer_bytes(self) -> int:
        return 8 * self.row_buffer_words

    def row_ports(self) -> list[dict]:
        """The top function's row-memory pointers after ``status``, in argument order: each
        layer with rows in DDR, its argument ``rows<n>``, its region of the row buffer."""
        return [{"argument": f"rows{f.index}", "layer": f.name, "offset_bytes": 8 * f.row_offset,
                 "bytes": 8 * dict(f.geometry)["row_words"]} for f in self.layers if f.ddr_rows]

    def shared_windows(self) -> list[dict]:
        """The layers with one window for all lanes (plan ``h``): ``{"layer", "lanes", "banks"}``
        each -- what the host needs to lay their weights out in schedule order
        (:func:`sentei.host.modelfile.schedule.scheduled_blob`)."""
        return [{"layer": f.index, "lanes": f.lanes, "banks": dict(f.geometry)["window_banks"]}
                for f in self.layers if dict(f.geometry)["shared_window"]]

    def stages(self) -> list[tuple[int, int, int]]:
        """``(C, H, W)`` of the input activation and of every layer's output."""
        return [(3, self.height, self.width)] + [(f.cout, f.out_height, f.out_width) for f in self.layers]

    def to_json(self) -> dict:
        return {
            "model": self.model_name, "signature": self.signature(),
            "input": {"height": self.height, "width": self.width, "bits": self.input_bits},
            "num_classes": self.num_classes, "blob_words": self.blob_words,
            "row_buffer_bytes": self.row_buffer_bytes, "row_ports": self.row_ports(),
            "shared_windows": self.shared_windows(),
            "fifo_depths": {"source": self.fifo_source, **self.depths()},
            "frame_words": self.frame_words, "logit_words": self.logit_words,
            "layers": [{"name": f.name, "cin": f.cin, "cout": f.cout, "kernel": f.kernel, "stride": f.stride,
                        "dilation": f.dilation, "padding": f.padding, "in": [f.in_height, f.in_width],
                        "out": [f.out_height, f.out_width], "k_nonzero": f.k_nonzero, "lanes": f.lanes,
                        "folds": f.folds, "weight_bits": f.weight_bits, "act": f.act, "out_bits": f.out_bits,
                        "blob_offset": f.blob_offset, "iterations": f.iterations, "engine": f.engine,
                        "act_depth": f.act_depth, "win_depth": f.win_depth,
                        **({"fetch_depth": f.fetch_depth, "row_offset_bytes": 8 * f.row_offset} if f.ddr_rows else {}),
                        "line_storage": f.line_storage, **dict(f.geometry)} for f in self.layers],
        }

    def signature(self) -> str:
        """Hash of the compile-time facts (the model name excluded): equal for models that
        run on the same bitstream."""
        facts = [(f.cin, f.cout, f.kernel, f.stride, f.dilation, f.padding, f.k_nonzero, f.lanes,
                  f.weight_bits, f.act, f.out_bits, f.line_storage, f.engine, dict(f.geometry)["chunk_channels"],
                  f.act_depth, f.win_depth)
                 + tuple(dict(f.geometry)[key] for key in ("pixels", "spacing", "packed_products")
                         if dict(f.geometry)["pixels"] > 1)
                 + (("bram",) if dict(f.geometry)["window_bram"] else ())
                 + (("shared", dict(f.geometry)["window_banks"]) if dict(f.geometry)["shared_window"] else ())
                 + (("ddr", f.fetch_depth) if f.ddr_rows else ()) for f in self.layers]
        text = json.dumps([self.height, self.width, self.input_bits, facts, list(self.io_depths)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


FIFO_DEPTHS = ("simulated", "rule")


def network_facts(model, lanes=None, board: str | None = None, clock_mhz: float | None = None,
                  fifo_depths: str = "simulated") -> NetworkFacts:
    """Collect the compile-time facts of ``model`` with the chosen plan per layer.

    ``fifo_depths``: ``simulated`` (default) derives every stream's depth with the clock-level
    simulation of this pipeline (:func:`sentei.overlay.simulate.derive_fifo_depths`: the
    smallest depths found that run it at the modeled interval); ``rule`` takes the geometry's
    rules (``perf.fifo_depth_*``) without simulating (no C++ compiler needed).
    """
    if fifo_depths not in FIFO_DEPTHS:
        raise SenteiError(f"FIFO depths {fifo_depths!r}: use one of {', '.join(FIFO_DEPTHS)}")
    from sentei.host.modelfile.schema import act_range, blob_offsets, blob_words
    from sentei.overlay import perf

    lanes = choose_lanes(model, lanes, board, clock_mhz)
    places = perf.line_placement(model, lanes, board)
    shapes = model.shapes()
    offsets = blob_offsets(model)
    in_type = f"ap_int<{model.input.bits}>"
    layers = []
    producer_block = 1  # the layer before's pixels a block: its burst into this layer's pixel FIFO
    row_offset = 0  # where the next layer with rows in DDR starts in the row buffer
    for n, layer in enumerate(model.layers):
        (_, h, w), (_, ho, wo) = shapes[n], shapes[n + 1]
        lo, hi = act_range(layer.act, layer.out_bits)
        out_type = _act_type(layer.act, layer.out_bits)
        geo = perf.layer_geometry(model, n, lanes[n])
        storage = places[n]
        depths = {"act_depth": perf.fifo_depth_pixels(model, n, geo, producer_block),
                  "win_depth": perf.fifo_depth_chunks(geo)}
        layers.append(LayerFacts(
            index=n, name=layer.name, cin=layer.in_channels, cout=layer.out_channels, kernel=layer.kernel,
            stride=layer.stride, dilation=layer.dilation, padding=layer.padding, in_height=h, in_width=w,
            out_height=ho, out_width=wo, k_nonzero=layer.k_nonzero, lanes=geo["lanes"], engine=geo["engine"],
            **depths,
            weight_bits=layer.weight_bits, act=layer.act, out_bits=layer.stored_out_bits,
            in_type=in_type, out_type=out_type, out_min=lo, out_max=hi, blob_offset=offsets[n],
            geometry=tuple((key, geo[key]) for key in GEOMETRY_FIELDS),
            line_storage=storage if storage != "none" else "bram", row_offset=row_offset if geo["ddr_rows"] else 0))
        if geo["ddr_rows"]:
            row_offset += -(-geo["row_words"] // ROW_ALIGN_WORDS) * ROW_ALIGN_WORDS
        in_type = out_type
        producer_block = geo["block"]
    facts = NetworkFacts(model_name=model.name, height=model.input.height, width=model.input.width,
                         input_bits=model.input.bits, num_classes=model.num_classes, layers=tuple(layers),
                         blob_words=blob_words(model),
                         io_depths=(2, 2, 2 + producer_block - 1))  # the last layer's burst into the logits
    if fifo_depths == "rule":
        return facts
    from sentei.overlay import simulate

    depths, _ = simulate.derive_fifo_depths(facts, perf.pipeline_interval(model, lanes))
    return with_depths(facts, depths, "simulated")


def with_depths(facts: NetworkFacts, depths: dict[str, int], source: str) -> NetworkFacts:
    """``facts`` with the FIFO depths ``depths`` (by stream name, as :meth:`NetworkFacts.depths`)."""
    layers = tuple(dataclasses.replace(f, act_depth=depths[f"act{n}"], win_depth=depths[f"win{n}"],
                                       fetch_depth=depths.get(f"fetch{n}", f.fetch_depth))
                   for n, f in enumerate(facts.layers))
    io = (depths["words"], depths["rgb"], depths[f"act{len(layers)}"])
    return dataclasses.replace(facts, layers=layers, io_depths=io, fifo_source=source)


# ---------------------------------------------------------------------------------------
# templates

CONFIG_HEADER = Template("""\
// network_config.h -- generated by `sentei overlay codegen`; do not edit, regenerate.
// Compile-time facts of the network (signature ${signature}): shapes, K, engines, lanes, bit
// widths and the weight-blob layout. Weights, biases and requantization constants are NOT
// here: they are loaded at run time by CMD_LOAD_WEIGHTS (docs/model-format.md, section 6).
#ifndef SENTEI_NETWORK_CONFIG_H
#define SENTEI_NETWORK_CONFIG_H

#include "dense_conv.hpp"
#include "input_quant.hpp"
#include "row_memory.hpp"
#include "sparse_conv.hpp"

#define SENTEI_NUM_LAYERS ${num_layers}
#define SENTEI_FRAME_WORDS ${frame_words}   // ceil(height * width * 3 / 4), one frame
#define SENTEI_BLOB_WORDS ${blob_words}
#define SENTEI_LOGIT_WORDS ${logit_words}  // out_height * out_width * num_classes, one frame
#define SENTEI_COSIM_FRAMES ${cosim_frames}  // frames the m_axi depths of co-simulation allow in one start
#define SENTEI_FRAME_BUFFER_WORDS ${frame_buffer_words}  // SENTEI_FRAME_WORDS * SENTEI_COSIM_FRAMES
#define SENTEI_LOGIT_BUFFER_WORDS ${logit_buffer_words}  // SENTEI_LOGIT_WORDS * SENTEI_COSIM_FRAMES

// Layers with their line-buffer rows in DDR (row_memory.hpp): each its own m_axi port (a pointer
// argument of sentei_top after `status`, register ROWS<layer>), all into one buffer the driver
// allocates (network.json: row_buffer_bytes, each layer's row_offset_bytes). None: no such ports.
#define SENTEI_PRAGMA_TEXT(x) _Pragma(#x)
#define SENTEI_PRAGMA(x) SENTEI_PRAGMA_TEXT(x)
#define SENTEI_ROW_BUFFER_WORDS ${row_buffer_words}  // 64-bit words of the row buffer
#define SENTEI_ROW_PARAMS${row_params_macro}
#define SENTEI_ROW_ARGS${row_args_macro}
#define SENTEI_ROW_INTERFACES${row_interfaces_macro}
#define SENTEI_ROW_BUFFER_ARGS(buffer)${row_buffer_args_macro}

namespace sentei {
namespace network {

static const unsigned num_layers = ${num_layers};
static const unsigned blob_words = ${blob_words};
static const unsigned num_classes = ${num_classes};

/// word offset of each layer's section in the weight blob (blob words 9 .. 9+L-1 must match)
static const unsigned blob_offsets[num_layers] = {${blob_offsets}};

/// feature maps compared by the testbench: the input activation, then each layer's output
static const unsigned num_stages = num_layers + 1;
static const unsigned stage_channels[num_stages] = {${stage_channels}};
static const unsigned stage_height[num_stages] = {${stage_height}};
static const unsigned stage_width[num_stages] = {${stage_width}};
static const char* const layer_names[num_layers] = {${layer_names}};

/// the frame: ${height} x ${width} RGB -> signed ${input_bits}-bit input activation
struct input_config : input_config_default {
    static const unsigned height = ${height};
    static const unsigned width = ${width};
    static const unsigned frame_words = SENTEI_FRAME_WORDS;
    static const unsigned bits = ${input_bits};
    typedef ap_int<${input_bits}> out_t;
    static const long long out_min = ${input_min}LL;
    static const long long out_max = ${input_max}LL;
};

${layer_configs}
}  // namespace network
}  // namespace sentei

#endif
""")

LAYER_CONFIG = Template("""\
/// layer ${index} (${name}): ${cin} -> ${cout}, k=${kernel} s=${stride} d=${dilation} p=${padding},
/// ${in_height}x${in_width} -> ${out_height}x${out_width}, K=${k_nonzero} of ${fan_in}, ${engine} engine, ${lanes} lanes x ${folds} folds x ${pixels} pixels ${spacing} apart,
/// ${act} ${out_bits}-bit; ${iterations} MAC iterations per frame; window in ${chunks} chunks of
/// ${chunk_channels} channels x ${kernel} taps, line-buffer rows in ${line_storage}
struct layer${index}_config : conv_config_default {
    static const unsigned index = ${index};
    static const unsigned cin = ${cin};
    static const unsigned cout = ${cout};
    static const unsigned kernel = ${kernel};
    static const unsigned stride = ${stride};
    static const unsigned dilation = ${dilation};
    static const unsigned padding = ${padding};
    static const unsigned in_height = ${in_height};
    static const unsigned in_width = ${in_width};
    static const unsigned out_height = ${out_height};
    static const unsigned out_width = ${out_width};
    static const unsigned k_nonzero = ${k_nonzero};
    static const unsigned lanes = ${lanes};
    static const unsigned folds = ${folds};
    static const unsigned pixels = ${pixels};
    static const unsigned spacing = ${spacing};
    static const unsigned weight_bits = ${weight_bits};
    static const unsigned chunk_channels = ${chunk_channels};
    static const unsigned chunks = ${chunks};
    static const unsigned pixel_iterations = ${pixel_iterations};
    static const unsigned window_iterations = ${window_iterations};
    static const unsigned line_slots = ${line_slots};
    static const unsigned line_depth = ${line_depth};
    static const unsigned requant_units = ${requant_units};
    static const unsigned requant_span = ${requant_span};
    static const unsigned bank_bits = ${bank_bits};
    static const unsigned col_bits = ${col_bits};
    static const unsigned slot_bits = ${slot_bits};
    static const bool packed_products = ${packed_text};
    static const bool window_bram = ${window_bram_text};
    static const bool shared_window = ${shared_window_text};
    static const unsigned window_banks = ${window_banks_value};
    static const unsigned bank_slots = ${bank_slots_value};
    static const unsigned window_memories = ${window_memories};
    static const unsigned window_blocks = ${window_blocks};
    static const bool ddr_rows = ${ddr_rows_text};
    static const unsigned row_offset = ${row_offset};
    static const unsigned blob_offset = ${blob_offset};
    static const int act = ${act_enum};
    static const long long out_min = ${out_min}LL;
    static const long long out_max = ${out_max}LL;
    typedef ${in_type} in_t;
    typedef ${out_type} out_t;
    typedef ap_int<${sum_bits}> sum_t;  // K products of weight_bits x in_t, every partial sum exact (perf.sum_bits)
};

""")

NETWORK_HEADER = Template("""\
// network.h -- generated by `sentei overlay codegen`; do not edit, regenerate.
// The network of signature ${signature}: on-chip weight storage, the blob loader, and the
// dataflow pipeline (one window generator + engine per layer). Included by sentei_top.cpp only.
#ifndef SENTEI_NETWORK_H
#define SENTEI_NETWORK_H

#include "dense_conv.hpp"
#include "input_quant.hpp"
#include "line_buffer.hpp"
#include "network_config.h"
#include "row_memory.hpp"
#include "sentei_top.hpp"
#include "sparse_conv.hpp"
#include "stream_utils.hpp"

namespace sentei {
namespace network {

// On-chip weights: written by load(), passed into the dataflow region by run(), each read by
// exactly one of its processes.
${storage}
${windows}
/// CMD_LOAD_WEIGHTS, first half: check the blob's header against this network (nothing is written).
inline status_t check(const word_t* blob) {
    if (blob[0] != BLOB_MAGIC) return STATUS_BAD_MAGIC;
    if (blob[1] != num_layers) return STATUS_BAD_LAYOUT;
check_offsets:
    for (unsigned l = 0; l < num_layers; l++) {
        if (blob[9 + l] != blob_offsets[l]) return STATUS_BAD_LAYOUT;
    }
    if (blob[8] > 31) return STATUS_BAD_LAYOUT;
    return STATUS_OK;
}

/// CMD_LOAD_WEIGHTS, second half: copy a checked blob on chip; BAD_LAYOUT if an entry does not fit.
inline status_t load(const word_t* blob, input_quant_param& iq) {
input_constants:
    for (unsigned c = 0; c < 3; c++) {
        iq.mul[c] = ap_int<32>(blob[2 + c]);
        iq.add[c] = ap_int<32>(blob[5 + c]);
    }
    iq.shift = blob[8].range(4, 0);
    bool ok = true;
${loads}    return ok ? STATUS_OK : STATUS_BAD_LAYOUT;
}

/// The dataflow region: every process called once, every memory it reads passed in as an
/// argument, every FIFO depth ${depth_source}.
inline void pipeline(const word_t* frame, logit_t* logits, const input_quant_param& iq, unsigned frames${params}
                     SENTEI_ROW_PARAMS) {
#pragma HLS INLINE off  // stays a function: inlined into sentei_top, its DATAFLOW pragma would be dropped
#pragma HLS DATAFLOW  // one process per block: all layers work at once on successive pixels and frames, no DDR between them
    hls::stream<word_t> words("words");
#pragma HLS STREAM variable = words depth = ${words_depth}  // ${depth_source}
    hls::stream<rgb_t> rgb("rgb");
#pragma HLS STREAM variable = rgb depth = ${rgb_depth}  // ${depth_source}
    hls::stream<in_pixel_t<layer0_config> > act0("act0");
#pragma HLS STREAM variable = act0 depth = ${act0_depth}  // ${depth_source}
${streams}
    read_words<input_config>(frame, words, frames);
    unpack_pixels<input_config>(words, rgb, frames);
    quantize_input<input_config>(rgb, act0, iq, frames);
${calls}    write_logits<layer${last}_config>(act${num_layers}, logits, frames);
}

/// CMD_RUN_FRAME: `frames` frames -> their logits through every layer at once.
inline void run(const word_t* frame, logit_t* logits, const input_quant_param& iq, unsigned frames SENTEI_ROW_PARAMS) {
    pipeline(frame, logits, iq, frames${args} SENTEI_ROW_ARGS);
}

}  // namespace network
}  // namespace sentei

#endif
""")

LAYER_STORAGE = {
    "sparse": Template("""\
static sparse_entry<layer${index}_config> layer${index}_weights[${lanes}][${folds} * ${k_nonzero}];
static requant_param layer${index}_quant[${requant_units}][${folds} * ${requant_span}];
"""),
    "dense": Template("""\
static dense_word_t<layer${index}_config> layer${index}_weights[${lanes}][${folds} * ${chunks}];
static requant_param layer${index}_quant[${requant_units}][${folds} * ${requant_span}];
"""),
}

LAYER_PARAMS = {
    "sparse": Template(""",
                     const sparse_entry<layer${index}_config> w${index}[${lanes}][${folds} * ${k_nonzero}],
                     const requant_param q${index}[${requant_units}][${folds} * ${requant_span}]"""),
    "dense": Template(""",
                     const dense_word_t<layer${index}_config> w${index}[${lanes}][${folds} * ${chunks}],
                     const requant_param q${index}[${requant_units}][${folds} * ${requant_span}]"""),
}

LAYER_ARGS = Template(""", layer${index}_weights, layer${index}_quant""")

# how a sparse layer's window copies are built (perf.layer_resources prices both)
WINDOW_STORAGE = {
    "lutram": {"window_storage": "lutram", "taps_directive": "ARRAY_PARTITION",
               "taps_reason": "a LUTRAM bank per tap: a column deeper than 64 words reads through a mux of 8-bit banks"},
    "lutram_word": {"window_storage": "lutram", "taps_directive": "ARRAY_RESHAPE",
                    "taps_reason": "a column's k*Wc taps in one LUTRAM word (<= 64 deep): written whole, one word read, a tap selected"},
    "bram": {"window_storage": "bram", "taps_directive": "ARRAY_RESHAPE",
             "taps_reason": "a column's k*Wc taps in one BRAM word: a chunk written whole, a word read, a tap selected"},
}


def window_storage(geometry: dict) -> str:
    """Which WINDOW_STORAGE a sparse layer's copies take (perf prices the same three)."""
    if geometry["window_bram"]:
        return "bram"
    return "lutram_word" if geometry["window_taps_in_a_word"] else "lutram"


LAYER_ENGINE = {
    "sparse": Template("""\
/// layer ${index}'s sparse engine: its lanes' window copies, bound to ${window_storage} for this board.
inline void layer${index}_engine(hls::stream<chunk_t<layer${index}_config> >& in,
                          hls::stream<out_pixel_t<layer${index}_config> >& out,
                          const sparse_entry<layer${index}_config> w[${lanes}][${folds} * ${k_nonzero}],
                          const requant_param q[${requant_units}][${folds} * ${requant_span}], unsigned frames) {
#pragma HLS INLINE off  // a dataflow process of its own: inlined, its memories would become variables of the region
    window_copies_t<layer${index}_config> win;
#pragma HLS ARRAY_PARTITION variable = win dim = 1 complete  // a window copy per lane: P independent reads per clock
#pragma HLS ARRAY_PARTITION variable = win dim = 2 complete  // ${window_memories} memories (window_layout): the Q pixels of a lane read Q of them a clock
#pragma HLS ${taps_directive} variable = win dim = 3 complete  // ${taps_reason}
#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = ${window_storage}  // chosen by the performance model: one write and one read port
    sparse_conv<layer${index}_config>(in, out, w, q, frames, win);
}

"""),
    "shared": Template("""\
/// layer ${index}'s sparse engine: one window of ${window_banks} banks for its ${lanes} lanes, in LUTRAM.
inline void layer${index}_engine(hls::stream<chunk_t<layer${index}_config> >& in,
                          hls::stream<out_pixel_t<layer${index}_config> >& out,
                          const sparse_entry<layer${index}_config> w[${lanes}][${folds} * ${k_nonzero}],
                          const requant_param q[${requant_units}][${folds} * ${requant_span}], unsigned frames) {
#pragma HLS INLINE off  // a dataflow process of its own: inlined, its memories would become variables of the region
    shared_window_t<layer${index}_config> win;
#pragma HLS ARRAY_PARTITION variable = win dim = 1 complete  // a memory per bank: the lanes read P different banks a clock
#pragma HLS ARRAY_PARTITION variable = win dim = 2 complete  // and per column: the Q pixels read Q columns of a bank a clock
#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = lutram  // ${bank_words} words a memory: one write and one read port
    sparse_conv<layer${index}_config>(in, out, w, q, frames, win);
}

"""),
    "dense": Template(""),
}

LAYER_WINDOW = {
    "rows": Template("""\
/// layer ${index}'s window generator: ${rows_text}, bound to ${line_storage} for this board.
inline void layer${index}_window(hls::stream<in_pixel_t<layer${index}_config> >& in,
                          hls::stream<chunk_t<layer${index}_config> >& out, unsigned frames) {
#pragma HLS INLINE off  // a dataflow process of its own: inlined, its memory would become a variable of the region
    line_word_t<layer${index}_config> lines[${line_slots}][${line_depth}];
#pragma HLS AGGREGATE variable = lines compact = bit  // a word's Wc channels in one memory word of Wc*bits, read and written whole (no padding)
#pragma HLS ARRAY_PARTITION variable = lines dim = 1 complete  // one memory per row slot: k rows read while one is written
#pragma HLS BIND_STORAGE variable = lines type = ram_s2p impl = ${line_storage}  // chosen by the performance model
    line_buffer<${walk_config}>(in, out, lines, frames);
}

"""),
    "pointwise": Template("""\
/// layer ${index}'s window generator (1x1: no rows kept).
inline void layer${index}_window(hls::stream<in_pixel_t<layer${index}_config> >& in,
                          hls::stream<chunk_t<layer${index}_config> >& out, unsigned frames) {
#pragma HLS INLINE off  // a dataflow process of its own
    pointwise_window<layer${index}_config>(in, out, frames);
}

"""),
}

LAYER_LOAD = {
    "sparse": Template("""\
    ok &= load_conv_weights<layer${index}_config>(blob, layer${index}_weights, layer${index}_quant);
"""),
    "dense": Template("""\
    ok &= load_dense_weights<layer${index}_config>(blob, layer${index}_weights, layer${index}_quant);
"""),
}

LAYER_STREAMS = Template("""\
    hls::stream<chunk_t<layer${index}_config> > win${index}("win${index}");
#pragma HLS STREAM variable = win${index} depth = ${win_depth}  // ${depth_source}
    hls::stream<out_pixel_t<layer${index}_config> > act${next}("act${next}");
#pragma HLS STREAM variable = act${next} depth = ${next_act_depth}  // ${depth_source}
""")

FETCH_STREAM = Template("""\
    hls::stream<in_pixel_t<layer${index}_config> > fetch${index}("fetch${index}");
#pragma HLS STREAM variable = fetch${index} depth = ${fetch_depth}  // ${depth_source}
""")

FETCH_CALL = Template("""\
    rows_through_memory<layer${index}_config>(act${index}, rows${index}, fetch${index}, frames);
""")

LAYER_CALLS = {
    "sparse": Template("""\
    layer${index}_window(${window_input}, win${index}, frames);
    layer${index}_engine(win${index}, act${next}, w${index}, q${index}, frames);
"""),
    "dense": Template("""\
    layer${index}_window(${window_input}, win${index}, frames);
    dense_conv<layer${index}_config>(win${index}, act${next}, w${index}, q${index}, frames);
"""),
}

ACT_ENUM = {"relu": "ACT_RELU", "linear": "ACT_LINEAR", "logits": "ACT_LOGITS"}
COSIM_FRAMES = 2


DEPTH_SOURCE = {
    "simulated": "derived by the clock-level simulation (sentei perf --simulate): the pipeline runs at its modeled interval",
    "rule": "the geometry's rule (perf.fifo_depth_*), not simulated",
}


def _layer_fields(f: LayerFacts, following: LayerFacts | None, io_depths) -> dict:
    kk = f.kernel * f.kernel
    return {"index": f.index, "next": f.index + 1, "name": c_comment_text(f.name), "cin": f.cin, "cout": f.cout,
            "kernel": f.kernel, "stride": f.stride, "dilation": f.dilation, "padding": f.padding,
            "in_height": f.in_height, "in_width": f.in_width, "out_height": f.out_height,
            "out_width": f.out_width, "k_nonzero": f.k_nonzero, "fan_in": f.cin * kk, "lanes": f.lanes,
            "folds": f.folds, "weight_bits": f.weight_bits, "blob_offset": f.blob_offset, "act": f.act,
            "act_enum": ACT_ENUM[f.act], "line_storage": f.line_storage, "engine": f.engine,
            **dict(f.geometry),
            "out_bits": f.out_bits, "out_min": f.out_min, "out_max": f.out_max, "in_type": f.in_type,
            "out_type": f.out_type, "iterations": f.iterations, "win_depth": f.win_depth,
            "packed_text": "true" if dict(f.geometry)["packed_products"] else "false",
            "window_bram_text": "true" if dict(f.geometry)["window_bram"] else "false",
            "shared_window_text": "true" if dict(f.geometry)["shared_window"] else "false",
            "window_banks_value": max(1, dict(f.geometry)["window_banks"]),
            "bank_slots_value": max(1, dict(f.geometry)["bank_slots"]),
            "bank_words": 2 * dict(f.geometry)["bank_slots"],
            "ddr_rows_text": "true" if f.ddr_rows else "false", "row_offset": f.row_offset,
            "window_input": f"fetch{f.index}" if f.ddr_rows else f"act{f.index}", "fetch_depth": f.fetch_depth,
            # rows in DDR: the window walks the k rows of each output row that rows_through_memory sends
            "walk_config": f"rows_config<layer{f.index}_config> " if f.ddr_rows else f"layer{f.index}_config",
            "rows_text": "the 2k rows of two output rows' windows, brought back from DDR by rows_through_memory"
            if f.ddr_rows else "its row memories",
            **WINDOW_STORAGE[window_storage(dict(f.geometry))],
            "next_act_depth": following.act_depth if following else io_depths[2]}


def render(facts: NetworkFacts) -> dict[str, str]:
    """The generated files' contents, by file name."""
    from sentei.host.modelfile.schema import act_range

    input_lo, input_hi = act_range("linear", facts.input_bits)
    nxt = list(facts.layers[1:]) + [None]
    layers = [(f, _layer_fields(f, g, facts.io_depths)) for f, g in zip(facts.layers, nxt)]
    source = DEPTH_SOURCE[facts.fifo_source]

    def join(pick) -> str:
        return "".join(pick(f).substitute(fields, depth_source=source) for f, fields in layers)

    stages = facts.stages()
    ddr = [f for f in facts.layers if f.ddr_rows]

    def macro(lines: list[str]) -> str:  # a #define's body, one line each
        return "".join(f" \\\n    {line}" for line in lines)

    port = ("HLS INTERFACE mode = m_axi port = rows{n} offset = slave bundle = gmem_rows{n} depth = {words} "
            "num_read_outstanding = {out} num_write_outstanding = {out} max_read_burst_length = {burst} "
            "max_write_burst_length = {burst}")
    from sentei.overlay import perf

    common = {"signature": facts.signature(), "num_layers": len(facts.layers), "last": len(facts.layers) - 1}
    config = CONFIG_HEADER.substitute(
        common, frame_words=facts.frame_words, blob_words=facts.blob_words, logit_words=facts.logit_words,
        cosim_frames=COSIM_FRAMES, frame_buffer_words=facts.frame_words * COSIM_FRAMES,
        logit_buffer_words=facts.logit_words * COSIM_FRAMES,
        num_classes=facts.num_classes, blob_offsets=", ".join(str(f.blob_offset) for f in facts.layers),
        stage_channels=", ".join(str(c) for c, _, _ in stages),
        stage_height=", ".join(str(h) for _, h, _ in stages),
        stage_width=", ".join(str(w) for _, _, w in stages),
        layer_names=", ".join(c_string_literal(f.name) for f in facts.layers),
        height=facts.height, width=facts.width, input_bits=facts.input_bits,
        input_min=input_lo, input_max=input_hi,
        row_buffer_words=facts.row_buffer_words,
        row_params_macro=macro([f", sentei::row_word_t* rows{f.index}" for f in ddr]),
        row_args_macro=macro([f", rows{f.index}" for f in ddr]),
        row_interfaces_macro=macro(
            [f"SENTEI_PRAGMA({port.format(n=f.index, words=dict(f.geometry)['row_words'], out=perf.M_AXI_OUTSTANDING, burst=perf.M_AXI_BURST)})"
             f" SENTEI_PRAGMA(HLS INTERFACE mode = s_axilite port = rows{f.index} bundle = control)" for f in ddr]),
        row_buffer_args_macro=macro([f", (buffer) + {f.row_offset}" for f in ddr]),
        layer_configs=join(lambda f: LAYER_CONFIG))
    network = NETWORK_HEADER.substitute(
        common, storage=join(lambda f: LAYER_STORAGE[f.engine]),
        windows=join(lambda f: LAYER_WINDOW["rows" if f.kernel > 1 else "pointwise"])
        + join(lambda f: LAYER_ENGINE["shared" if dict(f.geometry)["shared_window"] else f.engine]),
        loads=join(lambda f: LAYER_LOAD[f.engine]),
        streams=join(lambda f: LAYER_STREAMS) + "".join(FETCH_STREAM.substitute(fields, depth_source=source)
                                                        for f, fields in layers if f.ddr_rows),
        calls="".join((FETCH_CALL.substitute(fields) if f.ddr_rows else "") + LAYER_CALLS[f.engine].substitute(fields)
                      for f, fields in layers), params=join(lambda f: LAYER_PARAMS[f.engine]),
        args=join(lambda f: LAYER_ARGS), act0_depth=facts.layers[0].act_depth, words_depth=facts.io_depths[0],
        rgb_depth=facts.io_depths[1], depth_source=source)
    return {"network_config.h": config, "network.h": network,
            "network.json": json_text(facts.to_json())}


def default_out_dir(model) -> Path:
    """``build/hls/<model name>`` under the current directory."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    return Path("build") / "hls" / safe


#: overlay/ folders that hold hand-written sources (build/ and csim_build/ beside them are outputs)
SOURCE_FOLDERS = ("hls", "tb", "scripts", "boards")


def check_out_dir(out: Path) -> None:
    """Refuse an output folder among the package's own sources: a package folder itself
    (sentei/, host/, training/, overlay/) or anything under host/, training/, sentei/ and
    overlay's source folders. A generated ``network.h`` there would sit beside, and be taken
    for, the hand-written HLS. overlay/build/ (the Makefile's) is an output folder."""
    target = Path(out).resolve()
    here = Path(__file__).resolve().parent
    whole = [Path(p).resolve() for name in ("sentei", "sentei.host", "sentei.training")
             for spec in [importlib.util.find_spec(name)] if spec for p in spec.submodule_search_locations or []]
    trees = whole + [here / name for name in SOURCE_FOLDERS]
    root = next((r for r in trees if target == r or r in target.parents), here if target == here else None)
    if root is not None:
        raise SenteiError(f"--out {out}: inside the package's sources ({root}); generated files go in a build "
                          f"folder (the default is build/hls/<model name>)")


def generate(model, out_dir: str | os.PathLike | None = None, lanes=None, board: str | None = None,
             clock_mhz: float | None = None, fifo_depths: str = "simulated") -> tuple[NetworkFacts, dict[str, Path]]:
    """Write the generated files for ``model`` into ``out_dir``; return the facts and paths.

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
        The network (only its compile-time facts are used).
    out_dir : path, optional
        Where to write; default :func:`default_out_dir`.
    lanes : list of int, optional
        Lanes per layer; each must divide the layer's Cout.
    board, clock_mhz : optional
        Ask the performance model for the lanes when ``lanes`` is not given.

    Returns
    -------
    (NetworkFacts, dict)
        The facts and the written path of each file.
    """
    from sentei.atomic_write import atomic_write_bytes

    out = Path(out_dir) if out_dir is not None else default_out_dir(model)
    check_out_dir(out)
    facts = network_facts(model, lanes, board, clock_mhz, fifo_depths)
    paths = {}
    for name, text in render(facts).items():
        paths[name] = atomic_write_bytes(out / name, text.encode("utf-8"))
    return facts, paths
