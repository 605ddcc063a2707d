/**
 * \file sparse_conv.hpp
 * \brief The filter-wise sparse convolution engine of one layer, and its weight loader.
 *
 * SENTEI's processing block: the Cout filters of the layer are folded onto `lanes`
 * parallel lanes, NF = Cout / lanes filters per lane. For every output pixel the engine runs
 * NF folds; in a fold each lane walks the K stored weights (value, window address) of its
 * current filter and multiplies each with the one activation of the window it points at.
 * Zero weights are not stored, so they cost no cycle; every filter has the same K, so all
 * lanes finish each fold together (no load imbalance, no control for it).
 *
 * Each lane owns a copy of the window in small memories (`k*Wc` banks of `2L` words,
 * LUTRAM): a lane reads the one activation its weight names straight from its copy,
 * through a `k*Wc`-to-1 bank multiplexer, instead of picking it out of `k*k*Cin` window
 * registers. The copies are double-buffered: while the lanes work on pixel n from one half,
 * the next window arrives from the line buffer as L = k*Cin/Wc chunks, one per clock, and is
 * written into the other half of every copy -- inside the same pipelined loop. The chunks
 * are written in the middle of the pixel's clocks, not at its start, so that a write is
 * never near a read of the same half: the last read of a half (the previous pixel) and the
 * first write into it, and the last write and the first read of it (the next pixel), are
 * at least `window_distance` loop iterations apart -- the dependence distance the loop
 * declares to the scheduler, which is true for every weight pattern.
 *
 * Requantization is shared (folds.hpp): R = ceil(P/K) requantizers each serve
 * S = ceil(P/R) <= K lanes, one lane per clock during the first S weights of the next fold,
 * so a layer needs 4R DSP48s for requantization instead of 4P.
 *
 * Loop invariant of the MAC loop: after the iteration of weight j of fold f, lane l's
 * accumulator holds `sum_{i <= j} w[o, i] * window[addr[o, i]]` for filter o = f*lanes + l
 * (the bias is added at requantization). Iterations with a MAC per frame:
 * out_height * out_width * NF * K -- the figure the testbench counts and the performance
 * model (overlay/perf.py) assumes. The loop itself runs `pixel_iterations` = max(NF*K, L)
 * clocks per output pixel: the extra L - NF*K clocks (none when the code generator's chunk
 * width fits, L <= NF*K) only load the window.
 */
#ifndef SENTEI_SPARSE_CONV_HPP
#define SENTEI_SPARSE_CONV_HPP

#include "csim_hooks.hpp"
#include "folds.hpp"
#include "types.hpp"

namespace sentei {

/**
 * \brief Write one window chunk into buffer half `half` of every lane's window copy.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void write_chunk(typename CONFIG_T::in_t win[CONFIG_T::lanes][CONFIG_T::kernel * CONFIG_T::chunk_channels]
                                          [2 * CONFIG_T::chunks],
                 unsigned half, unsigned c, const chunk_t<CONFIG_T>& chunk) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    for (unsigned l = 0; l < CONFIG_T::lanes; l++) {
#pragma HLS UNROLL  // the chunk is broadcast to every lane's copy
        for (unsigned e = 0; e < CONFIG_T::kernel * CONFIG_T::chunk_channels; e++) {
#pragma HLS UNROLL  // one element per bank: the whole chunk in one clock
            win[l][e][half * CONFIG_T::chunks + c] = chunk.data[e];
        }
    }
}

/**
 * \brief One layer: stream of window chunks -> stream of output pixels.
 *
 * One pipelined loop of Ho*Wo*pixel_iterations clocks (pixel, fold and weight flattened by
 * hand), so the pipeline fills once per frame: at clock i of a pixel, chunk i - D of the *next*
 * window is written into the idle half of the window copies (D <= i < D + L, D = (TP - L)/2
 * centres the writes in the TP clocks of the pixel), and, for i < NF*K, each
 * lane does the MAC of weight j of fold f (i = f*K + j); at j = K-1 the lanes' sums move to
 * `done`, and during the first S weights of the following fold the R requantizers turn
 * them into output activations, one lane each per clock. The pixel leaves when its last fold
 * is requantized (during the next pixel's first fold; after the loop for the last pixel).
 * The first window is loaded before the loop (L clocks per frame).
 *
 * \tparam CONFIG_T layer configuration (see conv_config_default); nothing is deducible
 * \param weights sparse entries, `weights[l][f*K + j]` = weight j of filter f*lanes + l
 * \param quant   per-filter constants, `quant[r][f*S + j]` for filter f*lanes + r*S + j
 */
template <class CONFIG_T>
void sparse_conv(hls::stream<chunk_t<CONFIG_T> >& in, hls::stream<out_pixel_t<CONFIG_T> >& out,
                 const sparse_entry<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::k_nonzero],
                 const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span],
                 unsigned frames) {
#pragma HLS AGGREGATE variable = weights compact = bit  // an entry (value, bank, slot) is one packed field of weight_bits + bank_bits + slot_bits, as the resource model counts it
#pragma HLS ARRAY_RESHAPE variable = weights dim = 1 complete  // every lane reads address f*K + j in the same clock: one memory, P entries a word
#pragma HLS ARRAY_PARTITION variable = quant dim = 1 complete    // one constant memory per requantizer
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned NF = CONFIG_T::folds;  // = ceil(cout / P)
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned T = NF * K;             // MAC clocks per output pixel
    static const unsigned L = CONFIG_T::chunks;   // window chunks per output pixel
    static const unsigned TP = CONFIG_T::pixel_iterations;  // = max(T, L)
    static const unsigned NPIX = CONFIG_T::out_height * CONFIG_T::out_width;
    static const unsigned BANKS = CONFIG_T::kernel * CONFIG_T::chunk_channels;
    static const unsigned D = (TP - L) / 2;  // clock of the pixel at which the next window starts to arrive
    // Loop iterations between accesses of one window half, whatever the weights' addresses:
    // a half is last read at clock <= T-1 of pixel n-1 and first written at clock D of pixel n
    // (WAR: >= TP - T + 1 + D), last written at clock D+L-1 of pixel n and first read at
    // clock 0 of pixel n+1 (RAW: >= TP - D - L + 1); writes of one half are a pixel apart.
    static const unsigned WAR = TP - T + 1 + D;
    static const unsigned RAW = TP - D - L + 1;
    static const unsigned DIST = WAR < RAW ? WAR : RAW;
    static_assert(TP >= T && TP >= L && D + L <= TP, "pixel_iterations must be max(folds * k_nonzero, chunks)");

    typename CONFIG_T::in_t win[P][BANKS][2 * L];
#pragma HLS ARRAY_PARTITION variable = win dim = 1 complete  // a window copy per lane: P independent reads per clock
#pragma HLS ARRAY_PARTITION variable = win dim = 2 complete  // k*Wc banks: a whole chunk is written per clock
#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = lutram  // 2L-deep banks, one write and one read port
    acc_t acc[P];
#pragma HLS ARRAY_PARTITION variable = acc complete  // one accumulator register per lane
    acc_t done[P];
#pragma HLS ARRAY_PARTITION variable = done complete  // finished sums waiting for a requantizer
    typename CONFIG_T::out_t px[NF * P];
#pragma HLS ARRAY_PARTITION variable = px complete  // R requantizers write R channels per clock, at fold-dependent positions

frames:
    for (unsigned fr = 0; fr < frames; fr++) {
    load_first:
        for (unsigned c = 0; c < L; c++) {
#pragma HLS PIPELINE II = 1  // the first window, one chunk per clock
            write_chunk<CONFIG_T>(win, 0, c, in.read());
        }

        pixel_clock<TP, NPIX> clk;
        fold_sequencer<CONFIG_T, K> seq;
    macs:
        for (unsigned it = 0; it < NPIX * TP; it++) {
#pragma HLS PIPELINE II = 1  // one stored weight per lane per clock: the loop the zero skipping shortens
#pragma HLS DEPENDENCE variable = win type = inter dependent = true distance = DIST  // see DIST: the analysis cannot see the halves through the data-dependent read address
            if (clk.i >= D && clk.i < D + L && clk.pix + 1 < NPIX) {
                write_chunk<CONFIG_T>(win, clk.half ^ 1, clk.i - D, in.read());
            }
            if (clk.i < T) {
                SENTEI_COUNT_ITERATION(CONFIG_T::index);
                seq.requantize(px, done, quant, out);
                for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the P lanes of the block
                    const sparse_entry<CONFIG_T>& e = weights[l][seq.f * K + seq.j];
                    seq.accumulate(acc, done, l, e.value * win[l][e.bank][clk.half * L + e.slot]);
                }
                seq.advance();
            }
            clk.tick();
        }
        seq.finish(px, done, quant, out);
    }
}

/**
 * \brief Copy one layer's section of the weight blob into its on-chip arrays.
 *
 * Section layout (spec section 4): Cout bias words, Cout mult words, Cout shift words,
 * then Cout*K entries filter-major, each `value` in bits 7..0 and `idx` in bits 31..8.
 * Filter o goes to lane l = o % P, fold f = o / P; its constants to requantizer l / S, word
 * f*S + l % S. Each position idx = (ci*k + ky)*k + kx becomes the window address the lane
 * reads (bank ky*Wc + ci % Wc, slot kx*Cin/Wc + ci / Wc). An entry whose position lies
 * outside Cin*k*k or whose value does not fit `weight_bits`, a multiplier word with bit 31
 * set or a shift word above 62 cannot come from a valid model file, and fails the load
 * (spec section 3: 0 <= mult < 2^31, 0 <= shift <= 62).
 *
 * \tparam CONFIG_T layer configuration
 * \return true when every entry fits the compiled layer
 */
template <class CONFIG_T>
bool load_conv_weights(const word_t* blob,
                       sparse_entry<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::k_nonzero],
                       requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span]) {
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned C = CONFIG_T::cout;

    bool ok = load_requant_params<CONFIG_T>(blob, quant);
    if (C % P) {  // the idle lanes of the last fold multiply zeros (their sums are never requantized)
    idle_lanes:
        for (unsigned n = 0; n < (P - C % P) * K; n++) {
#pragma HLS PIPELINE II = 1  // load time only
            sparse_entry<CONFIG_T> zero;
            zero.value = 0;
            zero.bank = 0;
            zero.slot = 0;
            weights[C % P + n / K][(C / P) * K + n % K] = zero;
        }
    }
    unsigned lane = 0, fold = 0, j = 0;  // filter o = fold*P + lane, weight j
entries:
    for (unsigned n = 0; n < C * K; n++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst, one entry per cycle
        blob_entry d = decode_entry<CONFIG_T>(blob[CONFIG_T::blob_offset + 3 * C + n], ok);
        sparse_entry<CONFIG_T> e;
        e.value = d.value;
        e.bank = d.ky * WC + d.ci % WC;
        e.slot = d.kx * (CONFIG_T::cin / WC) + d.ci / WC;
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
