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
 * Requantization is shared: R = ceil(P/K) requantizers each serve S = ceil(P/R) <= K lanes,
 * one lane per clock during the first S weights of the next fold, so a layer needs 4R
 * DSP48s for requantization instead of 4P.
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
 * \brief Step `j` of the R shared requantizers on the finished sums of fold `pf`:
 *        requantizer r turns lane r*S + j into output channel pf*lanes + r*S + j.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void requant_step(typename CONFIG_T::out_t px[CONFIG_T::cout], const acc_t done[CONFIG_T::lanes],
                  const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span],
                  unsigned pf, unsigned j) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    for (unsigned r = 0; r < CONFIG_T::requant_units; r++) {
#pragma HLS UNROLL  // the R shared requantizers, lane r*S + j each
        unsigned l = r * CONFIG_T::requant_span + j;
        if (l < CONFIG_T::lanes) {
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
void emit_pixel(const typename CONFIG_T::out_t px[CONFIG_T::cout], hls::stream<out_pixel_t<CONFIG_T> >& out) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    out_pixel_t<CONFIG_T> word;
    for (unsigned c = 0; c < CONFIG_T::cout; c++) {
#pragma HLS UNROLL  // wires: every channel of the partitioned pixel into the word
        word.data[c] = px[c];
    }
    SENTEI_RECORD(CONFIG_T::index + 1, word);
    out.write(word);
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
                 const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span]) {
#pragma HLS ARRAY_PARTITION variable = weights dim = 1 complete  // one weight memory per lane: P reads per cycle
#pragma HLS ARRAY_PARTITION variable = quant dim = 1 complete    // one constant memory per requantizer
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned NF = CONFIG_T::folds;  // = cout / P
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned T = NF * K;             // MAC clocks per output pixel
    static const unsigned L = CONFIG_T::chunks;   // window chunks per output pixel
    static const unsigned TP = CONFIG_T::pixel_iterations;  // = max(T, L)
    static const unsigned S = CONFIG_T::requant_span;
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
    typename CONFIG_T::out_t px[CONFIG_T::cout];
#pragma HLS ARRAY_PARTITION variable = px complete  // R requantizers write R channels per clock, at fold-dependent positions

load_first:
    for (unsigned c = 0; c < L; c++) {
#pragma HLS PIPELINE II = 1  // the first window, one chunk per clock
        write_chunk<CONFIG_T>(win, 0, c, in.read());
    }

    unsigned pix = 0, i = 0, f = 0, j = 0, half = 0;  // pixel, clock within it, fold, weight, window half
    unsigned pf = 0;        // fold whose sums wait in done[]
    bool pending = false;   // done[] holds sums not yet requantized
macs:
    for (unsigned it = 0; it < NPIX * TP; it++) {
#pragma HLS PIPELINE II = 1  // one stored weight per lane per clock: the loop the zero skipping shortens
#pragma HLS DEPENDENCE variable = win type = inter dependent = true distance = DIST  // see DIST: the analysis cannot see the halves through the data-dependent read address
        if (i >= D && i < D + L && pix + 1 < NPIX) write_chunk<CONFIG_T>(win, half ^ 1, i - D, in.read());
        if (i < T) {
            SENTEI_COUNT_ITERATION(CONFIG_T::index);
            if (pending && j < S) {
                requant_step<CONFIG_T>(px, done, quant, pf, j);
                if (j == S - 1) {
                    pending = false;
                    if (pf == NF - 1) emit_pixel<CONFIG_T>(px, out);
                }
            }
            for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the P lanes of the block
                const sparse_entry<CONFIG_T>& e = weights[l][f * K + j];
                acc_t sum = (j == 0 ? acc_t(0) : acc[l]) + e.value * win[l][e.bank][half * L + e.slot];
                acc[l] = sum;
                if (j == K - 1) done[l] = sum;
            }
            if (j == K - 1) {
                pending = true;
                pf = f;
            }
            if (++j == K) {
                j = 0;
                f = f + 1 == NF ? 0 : f + 1;
            }
        }
        if (++i == TP) {
            i = 0;
            pix++;
            half ^= 1;
        }
    }

requantize_last:
    for (unsigned jj = 0; jj < S; jj++) {
#pragma HLS PIPELINE II = 1  // the last fold of the frame, S clocks
        requant_step<CONFIG_T>(px, done, quant, pf, jj);
    }
    emit_pixel<CONFIG_T>(px, out);
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
    static const unsigned S = CONFIG_T::requant_span;
    static const unsigned KS = CONFIG_T::kernel;
    static const unsigned KK = KS * KS;
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned CW = CONFIG_T::cin / WC;
    static const unsigned C = CONFIG_T::cout;
    static const unsigned base = CONFIG_T::blob_offset;
    static const int wmax = (1 << (CONFIG_T::weight_bits - 1)) - 1;

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
        unsigned ci = idx / KK;  // constant dividers (KK, k, Wc), at load time only
        unsigned ky = (idx % KK) / KS;
        unsigned kx = idx % KS;
        e.bank = ky * WC + ci % WC;
        e.slot = kx * CW + ci / WC;
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
