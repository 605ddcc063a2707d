/**
 * \file folds.hpp
 * \brief What both engines share: the fold sequencing of the lanes and the shared requantizers.
 *
 * An engine computes a layer's Cout filters NF = ceil(Cout/P) folds at a time on its P
 * lanes; a fold takes STEPS clocks (K stored weights for sparse_conv.hpp, L window chunks
 * for dense_conv.hpp). When a fold ends its P sums wait in `done` while the next fold
 * starts, and R = ceil(P/STEPS) shared requantizers turn them into output activations
 * during that fold's first S = ceil(P/R) <= STEPS clocks, one lane each per clock: 4R DSP48s
 * for requantization instead of 4P. The pixel leaves when its last fold is requantized.
 * Lanes of a partly empty last fold (P not dividing Cout) compute zeros that are never
 * requantized.
 */
#ifndef SENTEI_FOLDS_HPP
#define SENTEI_FOLDS_HPP

#include "csim_hooks.hpp"
#include "requant.hpp"
#include "types.hpp"

namespace sentei {

/**
 * \brief Default layer configuration; the generated `layer<i>_config` structs derive from it.
 *
 * Every field is a compile-time fact of the model file (docs/model-format.md, section 6):
 * a model with the same values runs on the same bitstream whatever its weights.
 */
struct conv_config_default {
    static const unsigned index = 0;        ///< position of the layer in the network
    static const unsigned cin = 1;          ///< input channels
    static const unsigned cout = 1;         ///< output channels (filters)
    static const unsigned kernel = 1;       ///< k (1 or 3)
    static const unsigned stride = 1;       ///< s (1 or 2)
    static const unsigned dilation = 1;     ///< d
    static const unsigned padding = 0;      ///< p, zero padding on all four sides
    static const unsigned in_height = 1;    ///< H
    static const unsigned in_width = 1;     ///< W
    static const unsigned out_height = 1;   ///< Ho = (H + 2p - d(k-1) - 1)/s + 1
    static const unsigned out_width = 1;    ///< Wo
    static const unsigned k_nonzero = 1;    ///< K, stored weights per filter
    static const unsigned lanes = 1;        ///< P, filters computed in parallel
    static const unsigned folds = 1;        ///< NF = ceil(cout / lanes); the last fold may have idle lanes
    static const unsigned weight_bits = 8;  ///< W, signed weight width
    static const unsigned chunk_channels = 1;     ///< Wc, channels per line-buffer word (divides cin)
    static const unsigned chunks = 1;             ///< L = kernel * cin / Wc, window chunks per output pixel
    static const unsigned pixel_iterations = 1;   ///< max(folds * k_nonzero, chunks): engine clocks per output pixel
    static const unsigned window_iterations = 1;  ///< line-buffer loop clocks per frame
    static const unsigned line_slots = 1;         ///< row memories: d*(k-1)+1 for k > 1, else 1 (unused)
    static const unsigned line_depth = 1;         ///< words per row memory: in_width * cin / Wc for k > 1
    static const unsigned requant_units = 1;      ///< R = ceil(lanes / k_nonzero) shared requantizers
    static const unsigned requant_span = 1;       ///< S = ceil(lanes / R) <= k_nonzero lanes per requantizer
    static const unsigned bank_bits = 1;          ///< bits of a window bank index (kernel * Wc banks)
    static const unsigned slot_bits = 1;          ///< bits of a window slot index (chunks slots)
    static const unsigned blob_offset = 0;  ///< word offset of the layer's section in the blob
    static const int act = ACT_RELU;        ///< ACT_RELU, ACT_LINEAR or ACT_LOGITS
    static const long long out_min = 0;     ///< saturation bounds of the output activation
    static const long long out_max = 255;
    typedef ap_int<8> in_t;   ///< input activation type (the previous layer's out_t)
    typedef ap_uint<8> out_t; ///< output activation type: ap_uint<B> relu, ap_int<B> linear, ap_int<32> logits
};

/**
 * \brief Step `j` of the R shared requantizers on the finished sums of fold `pf`:
 *        requantizer r turns lane r*S + j into output channel pf*lanes + r*S + j.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void requant_step(typename CONFIG_T::out_t px[CONFIG_T::folds * CONFIG_T::lanes], const acc_t done[CONFIG_T::lanes],
                  const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span],
                  unsigned pf, unsigned j) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    for (unsigned r = 0; r < CONFIG_T::requant_units; r++) {
#pragma HLS UNROLL  // the R shared requantizers, lane r*S + j each
        unsigned l = r * CONFIG_T::requant_span + j;
        if (l < CONFIG_T::lanes && pf * CONFIG_T::lanes + l < CONFIG_T::cout) {  // idle lanes of a last fold: none
            const requant_param& q = quant[r][pf * CONFIG_T::requant_span + j];
            px[pf * CONFIG_T::lanes + l] = requantize<CONFIG_T>(done[l] + q.bias, q);
        }
    }
}

/**
 * \brief Send a finished output pixel: its channels leave as one stream word.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void emit_pixel(const typename CONFIG_T::out_t px[CONFIG_T::folds * CONFIG_T::lanes],
                hls::stream<out_pixel_t<CONFIG_T> >& out) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    out_pixel_t<CONFIG_T> word;
    for (unsigned c = 0; c < CONFIG_T::cout; c++) {
#pragma HLS UNROLL  // wires: every channel of the partitioned pixel into the word
        word.data[c] = px[c];
    }
    SENTEI_RECORD(CONFIG_T::index + 1, word);
    out.write(word);
}

/// Bits of an unsigned counter that holds 0 .. N (at least 1): the width of the engines' control counters.
template <unsigned long long N>
struct counter_bits {
    static const unsigned value = N < 2 ? 1 : 1 + counter_bits<N / 2>::value;
};
template <>
struct counter_bits<0> {
    static const unsigned value = 1;
};

/**
 * \brief Where an engine's flattened loop is: output pixel, clock within it, window half.
 *
 * The counters are as narrow as their ranges (a wide `unsigned` would widen every
 * comparison and adder of the loop's control path).
 * \tparam TP clocks per output pixel
 * \tparam NPIX output pixels per frame
 */
template <unsigned TP, unsigned NPIX>
struct pixel_clock {
    ap_uint<counter_bits<NPIX>::value> pix = 0;
    ap_uint<counter_bits<TP>::value> i = 0;
    ap_uint<1> half = 0;

    /// The next clock; a new pixel swaps the window halves.
    void tick() {
#pragma HLS INLINE  // part of the engine's pipelined loop
        if (++i == TP) {
            i = 0;
            pix++;
            half ^= 1;
        }
    }
};

/// One weight of a blob section, decoded: value and position (channel, tap row, tap column).
struct blob_entry {
    ap_int<8> value;
    unsigned ci, ky, kx;
};

/**
 * \brief Decode entry word `w` of a layer's section (value in bits 7..0, idx = (ci*k + ky)*k + kx
 *        in bits 31..8); clear `ok` when the position lies outside Cin*k*k or the value does
 *        not fit `weight_bits` (neither can come from a valid model file).
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
blob_entry decode_entry(word_t w, bool& ok) {
#pragma HLS INLINE  // part of the loader's pipelined loop
    static const unsigned KS = CONFIG_T::kernel;
    static const unsigned KK = KS * KS;
    static const int wmax = (1 << (CONFIG_T::weight_bits - 1)) - 1;
    blob_entry e;
    e.value = w.range(7, 0);
    unsigned idx = w.range(31, 8);
    if (idx >= CONFIG_T::cin * KK || e.value > wmax || e.value < -wmax - 1) ok = false;
    e.ci = (idx / KK) % CONFIG_T::cin;  // constant dividers, at load time only
    e.ky = (idx % KK) / KS;
    e.kx = idx % KS;
    return e;
}

/**
 * \brief The fold and step the lanes are in, and the requantization of the fold before.
 *
 * Call `requantize` at the start of every MAC clock, read `f`/`j` (`first()`, `last()`) for
 * the lanes' MACs, move the sums of a `last()` step to `done`, then `advance()`. After the
 * frame's last MAC clock `finish` requantizes the last fold and sends the last pixel.
 * \tparam CONFIG_T layer configuration
 * \tparam STEPS clocks of one fold
 */
template <class CONFIG_T, unsigned STEPS>
struct fold_sequencer {
    static const unsigned NF = CONFIG_T::folds;
    static const unsigned S = CONFIG_T::requant_span;
    ap_uint<counter_bits<NF>::value> f = 0, pf = 0;  // fold of the lanes; fold whose sums wait in done[]
    ap_uint<counter_bits<STEPS>::value> j = 0;       // step of the lanes in the fold
    bool pending = false;                            // done[] holds sums not yet requantized

    bool first() const { return j == 0; }
    bool last() const { return j == STEPS - 1; }

    /// Lane l's MAC of this step: its running sum plus `product`, moved to done[l] at the fold's end.
    void accumulate(acc_t acc[CONFIG_T::lanes], acc_t done[CONFIG_T::lanes], unsigned l, acc_t product) const {
#pragma HLS INLINE  // part of the engine's pipelined loop, once per lane
        acc_t sum = (first() ? acc_t(0) : acc[l]) + product;
        acc[l] = sum;
        if (last()) done[l] = sum;
    }

    /// Step j of the requantizers on the waiting fold; the pixel leaves with its last fold.
    void requantize(typename CONFIG_T::out_t px[NF * CONFIG_T::lanes], const acc_t done[CONFIG_T::lanes],
                    const requant_param quant[CONFIG_T::requant_units][NF * S],
                    hls::stream<out_pixel_t<CONFIG_T> >& out) {
#pragma HLS INLINE  // part of the engine's pipelined loop
        if (pending && j < S) {
            requant_step<CONFIG_T>(px, done, quant, pf, j);
            if (j == S - 1) {
                pending = false;
                if (pf == NF - 1) emit_pixel<CONFIG_T>(px, out);
            }
        }
    }

    /// The next step (after the MACs of this one).
    void advance() {
#pragma HLS INLINE  // part of the engine's pipelined loop
        if (j == STEPS - 1) {
            pending = true;
            pf = f;
        }
        if (++j == STEPS) {
            j = 0;
            if (f == NF - 1) {
                f = 0;
            } else {
                f++;
            }
        }
    }

    /// After the frame's last MAC clock: the last fold's S steps, then its pixel.
    void finish(typename CONFIG_T::out_t px[NF * CONFIG_T::lanes], const acc_t done[CONFIG_T::lanes],
                const requant_param quant[CONFIG_T::requant_units][NF * S],
                hls::stream<out_pixel_t<CONFIG_T> >& out) {
    requantize_last:
        for (unsigned jj = 0; jj < S; jj++) {
#pragma HLS PIPELINE II = 1  // the last fold of the frame, S clocks
            requant_step<CONFIG_T>(px, done, quant, pf, jj);
        }
        emit_pixel<CONFIG_T>(px, out);
    }
};

/**
 * \brief The per-filter constants of one layer's blob section (spec section 3): Cout bias
 *        words, Cout mult words, Cout shift words; filter o goes to requantizer (o % P) / S,
 *        word (o / P) * S + (o % P) % S. A multiplier word with bit 31 set or a shift above
 *        62 cannot come from a valid model file and fails the load.
 * \tparam CONFIG_T layer configuration
 * \return true when every constant is in range
 */
template <class CONFIG_T>
bool load_requant_params(const word_t* blob,
                         requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span]) {
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned S = CONFIG_T::requant_span;
    static const unsigned C = CONFIG_T::cout;
    static const unsigned base = CONFIG_T::blob_offset;
    bool ok = true;
bias:
    for (unsigned o = 0; o < C; o++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        quant[(o % P) / S][(o / P) * S + (o % P) % S].bias = acc_t(blob[base + o]);
    }
mult:
    for (unsigned o = 0; o < C; o++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        word_t m = blob[base + C + o];
        if (m[31]) ok = false;
        quant[(o % P) / S][(o / P) * S + (o % P) % S].mult = m.range(30, 0);
    }
shift:
    for (unsigned o = 0; o < C; o++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        word_t sh = blob[base + 2 * C + o];
        if (sh > 62) ok = false;
        quant[(o % P) / S][(o / P) * S + (o % P) % S].shift = sh.range(5, 0);
    }
    return ok;
}

}  // namespace sentei

#endif
