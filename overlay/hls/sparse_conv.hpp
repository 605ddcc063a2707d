/**
 * \file sparse_conv.hpp
 * \brief The filter-wise sparse convolution engine of one layer, and its weight loader.
 *
 * SENTEI's processing block: the Cout filters of the layer are folded onto `lanes`
 * parallel lanes, NF = Cout / lanes filters per lane. For every window the engine runs NF
 * folds; in a fold each lane walks the K stored weights (value, channel, window position)
 * of its current filter and multiplies each with the one activation of the window it
 * points at. Zero weights are not stored, so they cost no cycle; every filter has the
 * same K, so all lanes finish each fold together (no load imbalance, no control for it).
 *
 * Loop invariant of the MAC loop: after the iteration of weight j of fold f, lane l's
 * accumulator holds `bias[o] + sum_{i <= j} w[o, i] * window[pos[o, i]][ci[o, i]]` for
 * filter o = f*lanes + l.
 * Iterations per frame: out_height * out_width * NF * K -- the figure the testbench counts
 * and the performance model (overlay/perf.py) assumes.
 */
#ifndef SENTEI_SPARSE_CONV_HPP
#define SENTEI_SPARSE_CONV_HPP

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
    static const unsigned lanes = 1;        ///< P, filters computed in parallel (divides cout)
    static const unsigned folds = 1;        ///< NF = cout / lanes
    static const unsigned weight_bits = 8;  ///< W, signed weight width
    static const unsigned ci_bits = 1;      ///< bits of an input-channel index (>= 1)
    static const unsigned pos_bits = 1;     ///< bits of a window position (>= 1)
    static const unsigned blob_offset = 0;  ///< word offset of the layer's section in the blob
    static const int act = ACT_RELU;        ///< ACT_RELU, ACT_LINEAR or ACT_LOGITS
    static const long long out_min = 0;     ///< saturation bounds of the output activation
    static const long long out_max = 255;
    typedef ap_int<8> in_t;   ///< input activation type (the previous layer's out_t)
    typedef ap_uint<8> out_t; ///< output activation type: ap_uint<B> relu, ap_int<B> linear, ap_int<32> logits
};

/**
 * \brief One layer: stream of windows -> stream of output pixels.
 *
 * The whole layer is one pipelined loop of Ho*Wo*NF*K iterations (pixel, fold and weight
 * flattened by hand), so the pipeline fills once per frame, not once per fold: a new
 * window is taken at the first iteration of a pixel, the lanes' accumulators restart from
 * the bias at the first weight of a fold, and each lane's filter is requantized at the
 * last weight of the fold. The only loop-carried dependence is `acc += w*a`, one adder.
 *
 * \tparam CONFIG_T layer configuration (see conv_config_default); nothing is deducible
 * \param weights sparse entries, `weights[l][f*K + j]` = weight j of filter f*lanes + l
 * \param quant   requantization constants, `quant[l][f]` for filter f*lanes + l
 */
template <class CONFIG_T>
void sparse_conv(hls::stream<window_t<CONFIG_T> >& in, hls::stream<out_pixel_t<CONFIG_T> >& out,
                 const sparse_entry<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::k_nonzero],
                 const requant_param quant[CONFIG_T::lanes][CONFIG_T::folds]) {
#pragma HLS ARRAY_PARTITION variable = weights dim = 1 complete  // one weight memory per lane: P reads per cycle
#pragma HLS ARRAY_PARTITION variable = quant dim = 1 complete    // each lane requantizes its own filter
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned NF = CONFIG_T::folds;  // = cout / P
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned KK = CONFIG_T::kernel * CONFIG_T::kernel;

    typename CONFIG_T::in_t taps[KK][CONFIG_T::cin];
#pragma HLS ARRAY_PARTITION variable = taps dim = 0 complete  // registers: every lane may pick any tap each cycle
    acc_t acc[P];
#pragma HLS ARRAY_PARTITION variable = acc complete  // one accumulator register per lane
    out_pixel_t<CONFIG_T> px;

    unsigned f = 0, j = 0;  // current fold and weight: filter f*P + l of lane l, its weight j
macs:
    for (unsigned it = 0; it < CONFIG_T::out_height * CONFIG_T::out_width * NF * K; it++) {
#pragma HLS PIPELINE II = 1  // one stored weight per lane per cycle: the loop the zero skipping shortens
        SENTEI_COUNT_ITERATION(CONFIG_T::index);
        if (f == 0 && j == 0) {
            window_t<CONFIG_T> win = in.read();
            for (unsigned t = 0; t < KK; t++) {
#pragma HLS UNROLL  // wiring, no cycles: the window word fans out into the tap registers
                for (unsigned c = 0; c < CONFIG_T::cin; c++) {
#pragma HLS UNROLL  // every channel of the tap
                    taps[t][c] = win.data[t].data[c];
                }
            }
        }
        for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the P lanes of the block
            const sparse_entry<CONFIG_T>& e = weights[l][f * K + j];
            acc_t base = j == 0 ? quant[l][f].bias : acc[l];
            acc[l] = base + e.value * taps[e.pos][e.ci];
            if (j == K - 1) px.data[f * P + l] = requantize<CONFIG_T>(acc[l], quant[l][f]);
        }
        if (j == K - 1 && f == NF - 1) {
            SENTEI_RECORD(CONFIG_T::index + 1, px);
            out.write(px);
        }
        if (++j == K) {
            j = 0;
            f = f + 1 == NF ? 0 : f + 1;
        }
    }
}

/**
 * \brief Copy one layer's section of the weight blob into its on-chip arrays.
 *
 * Section layout (spec section 4): Cout bias words, Cout mult words, Cout shift words,
 * then Cout*K entries filter-major, each `value` in bits 7..0 and `idx` in bits 31..8.
 * Filter o goes to lane o % P, fold o / P. An entry whose position lies outside
 * Cin*k*k or whose value does not fit `weight_bits` cannot come from a model of this
 * bitstream, and fails the load.
 *
 * \tparam CONFIG_T layer configuration
 * \return true when every entry fits the compiled layer
 */
template <class CONFIG_T>
bool load_conv_weights(const word_t* blob,
                       sparse_entry<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::k_nonzero],
                       requant_param quant[CONFIG_T::lanes][CONFIG_T::folds]) {
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned KK = CONFIG_T::kernel * CONFIG_T::kernel;
    static const unsigned C = CONFIG_T::cout;
    static const unsigned base = CONFIG_T::blob_offset;
    static const int wmax = (1 << (CONFIG_T::weight_bits - 1)) - 1;

bias:
    for (unsigned o = 0; o < C; o++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        quant[o % P][o / P].bias = acc_t(blob[base + o]);
    }
mult:
    for (unsigned o = 0; o < C; o++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        quant[o % P][o / P].mult = blob[base + C + o].range(30, 0);
    }
shift:
    for (unsigned o = 0; o < C; o++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        quant[o % P][o / P].shift = blob[base + 2 * C + o].range(5, 0);
    }

    bool ok = true;
    unsigned lane = 0, fold = 0, j = 0;  // filter o = fold*P + lane, weight j
entries:
    for (unsigned n = 0; n < C * K; n++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst, one entry per cycle
        word_t w = blob[base + 3 * C + n];
        ap_int<8> value = w.range(7, 0);
        unsigned idx = w.range(31, 8);
        if (idx >= CONFIG_T::cin * KK || value > wmax || value < -wmax - 1) ok = false;
        sparse_entry<CONFIG_T> e;
        e.value = value;
        e.ci = idx / KK;   // KK is 1 or 9: a constant divider, at load time only
        e.pos = idx % KK;
        weights[lane][fold * K + j] = e;
        if (++j == K) {
            j = 0;
            if (++lane == P) {
                lane = 0;
                fold++;
            }
        }
    }
    return ok;
}

}  // namespace sentei

#endif
