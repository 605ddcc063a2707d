/**
 * \file dense_conv.hpp
 * \brief The dense (matrix-vector) engine of one layer, and its weight loader.
 *
 * For layers that keep (nearly) every weight -- the first layers, which the pruning keeps
 * dense for accuracy -- skipping zeros buys nothing, and one MAC per lane per clock makes
 * them the pipeline's slowest stage. This engine is finn-hlslib's MVAU: `lanes` (PE) filters
 * at once, each lane multiplying a whole window chunk (SIMD = k*Wc activations) with its
 * weights in one clock. All lanes read the *same* chunk, so the window is stored once and
 * broadcast (the sparse engine keeps a copy per lane, because its lanes read different
 * activations). Per output pixel: NF = ceil(Cout/PE) folds of L = k*Cin/Wc clocks; the
 * window of the next pixel arrives during them into the other half of the window memory.
 *
 * The weights are the model file's entries expanded to a dense array at load time (a
 * position without an entry holds 0): `weights[l][f*L + c].data[e]` is the weight of filter
 * f*PE + l at chunk c = kx*(Cin/Wc) + ci/Wc, element e = ky*Wc + ci%Wc. The integer sum is
 * the same in any order, so the result is bit-exact with the reference engine.
 *
 * Requantization is shared as in sparse_conv.hpp: R = ceil(PE/L) requantizers serve
 * S = ceil(PE/R) <= L lanes each, during the first S clocks of the next fold.
 *
 * Lanes 2m and 2m+1 multiply the same activations, so where `packed_products` says so (the
 * plan's `x`: weights and activations of <= 8 bits) each of their k*Wc product pairs is one
 * DSP48E2 (products.hpp, Xilinx WP486): half the DSP48s, a sign fix-up in LUTs a pair.
 */
#ifndef SENTEI_DENSE_CONV_HPP
#define SENTEI_DENSE_CONV_HPP

#include "csim_hooks.hpp"
#include "folds.hpp"
#include "products.hpp"
#include "types.hpp"

namespace sentei {

/// The weights of one lane for one window chunk: k*Wc values, read as one word.
template <class CONFIG_T>
using dense_word_t = vec<ap_int<CONFIG_T::weight_bits>, CONFIG_T::kernel * CONFIG_T::chunk_channels>;

/**
 * \brief One lane's MAC over one chunk: `sum_e w[e] * a[e]`, k*Wc products in one clock.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
typename CONFIG_T::sum_t dot_chunk(const dense_word_t<CONFIG_T>& w, const chunk_t<CONFIG_T>& a) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    typename CONFIG_T::sum_t sum = 0;  // a partial sum of the filter's K products: sum_t holds it
    for (unsigned e = 0; e < CONFIG_T::kernel * CONFIG_T::chunk_channels; e++) {
#pragma HLS UNROLL  // SIMD: the chunk's k*Wc products and their adder tree in one clock
        sum += w.data[e] * a.data[e];
    }
    return sum;
}

/**
 * \brief Lanes l and l+1 over one chunk: their two dot products with the same activations,
 *        each activation's two products in one multiplier where PACKED.
 */
template <class CONFIG_T>
void dot_chunk_pair(const dense_word_t<CONFIG_T>& w0, const dense_word_t<CONFIG_T>& w1,
                    const chunk_t<CONFIG_T>& a, typename CONFIG_T::sum_t& s0, typename CONFIG_T::sum_t& s1) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    s0 = 0;
    s1 = 0;
    for (unsigned e = 0; e < CONFIG_T::kernel * CONFIG_T::chunk_channels; e++) {
#pragma HLS UNROLL  // SIMD: k*Wc product pairs and the two adder trees in one clock
        typename CONFIG_T::sum_t p0, p1;
        product_pair<CONFIG_T::packed_products>::mul(a.data[e], w0.data[e], w1.data[e], p0, p1);
        s0 += p0;
        s1 += p1;
    }
}

/**
 * \brief One layer: stream of window chunks -> stream of output pixels (dense weights).
 *
 * One pipelined loop of Ho*Wo*NF*L clocks per frame (pixel, fold and chunk flattened): at
 * clock i = f*L + c of a pixel every lane adds `dot(weights[l][f*L + c], window[c])`; at
 * c = L-1 the sums move to `done` and are requantized during the next fold's first S clocks;
 * chunk i - D of the next window is written at clocks D <= i < D + L (D = (NF*L - L)/2).
 * An address of the window memory is written >= L clocks after its last read and read >= L
 * clocks after its write: the dependence distance the loop declares.
 *
 * \tparam CONFIG_T layer configuration (`pixel_iterations` = folds * chunks)
 */
template <class CONFIG_T>
void dense_conv(hls::stream<chunk_t<CONFIG_T> >& in, hls::stream<out_pixel_t<CONFIG_T> >& out,
                const dense_word_t<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::chunks],
                const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span],
                unsigned frames) {
#pragma HLS AGGREGATE variable = weights compact = bit  // a lane's k*Wc weights are one packed field of k*Wc*weight_bits
#pragma HLS ARRAY_RESHAPE variable = weights dim = 1 complete  // every lane reads address f*L + c in the same clock: one memory, PE x k*Wc weights a word
#pragma HLS ARRAY_PARTITION variable = quant dim = 1 complete    // one constant memory per requantizer
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned NF = CONFIG_T::folds;  // = ceil(cout / P)
    static const unsigned L = CONFIG_T::chunks;  // clocks per fold: one chunk each
    static const unsigned TP = CONFIG_T::pixel_iterations;
    static const unsigned NPIX = CONFIG_T::out_height * CONFIG_T::out_width;
    static const unsigned D = (TP - L) / 2;
    static_assert(TP == NF * L && L >= 2 && CONFIG_T::requant_span <= L, "dense engine: pixel_iterations = folds * chunks, chunks >= 2");
    static_assert(CONFIG_T::pixels == 1 && CONFIG_T::spacing == 1, "the dense engine computes one pixel at a time");

    chunk_t<CONFIG_T> win[2 * L];
#pragma HLS AGGREGATE variable = win compact = bit  // a chunk is one memory word, written and read whole
#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = lutram  // 2L chunks, one write and one read port
    typedef typename CONFIG_T::sum_t sum_t;  // as wide as K products need (sum_bits), not 32 bits
    sum_t acc[P];
#pragma HLS ARRAY_PARTITION variable = acc complete  // one accumulator register per lane
    sum_t done[P];
#pragma HLS ARRAY_PARTITION variable = done complete  // finished sums waiting for a requantizer
    pixel_block_t<CONFIG_T> px;  // two blocks of one pixel
#pragma HLS ARRAY_PARTITION variable = px complete dim = 0  // registers: R requantizers write R channels per clock

frames:
    for (unsigned fr = 0; fr < frames; fr++) {
    load_first:
        for (unsigned c = 0; c < L; c++) {
#pragma HLS PIPELINE II = 1  // the first window, one chunk per clock
            win[c] = in.read();
        }

        pixel_clock<TP, NPIX> clk;
        fold_sequencer<CONFIG_T, L> seq;  // a fold is L clocks: step j reads chunk j
    macs:
        for (unsigned it = 0; it < NPIX * TP; it++) {
#pragma HLS PIPELINE II = 1  // PE x SIMD MACs per clock
#pragma HLS DEPENDENCE variable = win type = inter dependent = true distance = L  // see the function's comment
            if (clk.i >= D && clk.i < D + L && clk.pix + 1 < NPIX) win[(clk.half ^ 1) * L + clk.i - D] = in.read();
            SENTEI_COUNT_ITERATION(CONFIG_T::index);
            seq.requantize(px, done, quant, out);
            const chunk_t<CONFIG_T> a = win[clk.half * L + seq.j];  // broadcast to every lane
            for (unsigned l = 0; l < P; l += 2) {
#pragma HLS UNROLL  // the PE lanes of the block, in pairs that share each activation
                if (l + 1 < P) {
                    sum_t s0, s1;
                    dot_chunk_pair<CONFIG_T>(weights[l][seq.f * L + seq.j], weights[l + 1][seq.f * L + seq.j], a, s0, s1);
                    seq.accumulate(acc, done, l, s0);
                    seq.accumulate(acc, done, l + 1, s1);
                } else {
                    seq.accumulate(acc, done, l, dot_chunk<CONFIG_T>(weights[l][seq.f * L + seq.j], a));
                }
            }
            seq.advance();
            clk.tick();
        }
        seq.finish(px, done, quant, out);
    }
}

/**
 * \brief Copy one layer's section of the weight blob into its dense on-chip arrays.
 *
 * Same section and checks as load_conv_weights (sparse_conv.hpp); the weights are cleared
 * first and each entry is written into its lane, fold, chunk and element.
 * \return true when every entry fits the compiled layer
 */
template <class CONFIG_T>
bool load_dense_weights(const word_t* blob,
                        dense_word_t<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::chunks],
                        requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span]) {
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned L = CONFIG_T::chunks;
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned C = CONFIG_T::cout;

    bool ok = load_requant_params<CONFIG_T>(blob, quant);
clear:
    for (unsigned n = 0; n < CONFIG_T::folds * L; n++) {
#pragma HLS PIPELINE II = 1  // every lane's word n at once
        for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the lanes' memories are separate
            for (unsigned e = 0; e < CONFIG_T::kernel * WC; e++) {
#pragma HLS UNROLL  // a whole word
                weights[l][n].data[e] = 0;
            }
        }
    }
    unsigned o = 0, j = 0;  // filter, weight
entries:
    for (unsigned n = 0; n < C * K; n++) {
#pragma HLS PIPELINE II = 2  // a read-modify-write of one weight word per entry (load time only)
        blob_entry d = decode_entry<CONFIG_T>(blob[CONFIG_T::blob_offset + 3 * C + n], ok);
        unsigned addr = (o / P) * L + d.kx * (CONFIG_T::cin / WC) + d.ci / WC;
        dense_word_t<CONFIG_T> word = weights[o % P][addr];
        word.data[d.ky * WC + d.ci % WC] = d.value;
        weights[o % P][addr] = word;
        if (++j == K) {
            j = 0;
            o++;
        }
    }
    return ok;
}

}  // namespace sentei

#endif
