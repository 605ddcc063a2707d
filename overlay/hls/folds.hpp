/**
 * \file folds.hpp
 * \brief What both engines share: the fold sequencing of the lanes and the shared requantizers.
 *
 * An engine computes a layer's Cout filters NF = ceil(Cout/P) folds at a time on its P
 * lanes; a fold takes STEPS clocks (K stored weights for sparse_conv.hpp, L window chunks
 * for dense_conv.hpp). When a fold ends its P sums wait in `done` while the next fold
 * starts, and R = ceil(P/STEPS) shared requantizers turn them into output activations
 * during that fold's first S = ceil(P/R) <= STEPS clocks, one lane each per clock: 4R DSP48s
 * for requantization instead of 4P. Finished pixels collect in a block memory and leave in
 * raster order, a block at a time (pixel_groups.hpp; one pixel a block unless the sparse
 * engine computes groups of pixels).
 * Lanes of a partly empty last fold (P not dividing Cout) compute zeros that are never
 * requantized.
 */
#ifndef SENTEI_FOLDS_HPP
#define SENTEI_FOLDS_HPP

#include "csim_hooks.hpp"
#include "pixel_groups.hpp"
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
    static const unsigned pixels = 1;       ///< Q, output pixels a lane computes with each weight (sparse)
    static const unsigned spacing = 1;      ///< M, output pixels between the pixels of a group (pixel_groups.hpp)
    static const unsigned weight_bits = 8;  ///< W, signed weight width
    static const unsigned chunk_channels = 1;     ///< Wc, channels per line-buffer word (divides cin)
    static const unsigned chunks = 1;             ///< L = group columns * cin / Wc, window chunks per group of Q pixels
    static const unsigned pixel_iterations = 1;   ///< engine clocks per group: max(folds * k_nonzero, chunks) sparse, folds * chunks dense
    static const unsigned window_iterations = 1;  ///< line-buffer loop clocks per frame
    static const unsigned line_slots = 1;         ///< row memories: d*(k-1)+1 for k > 1, else 1 (unused)
    static const unsigned line_depth = 1;         ///< words per row memory: in_width * cin / Wc for k > 1
    static const unsigned requant_units = 1;      ///< R shared requantizers for the Q*lanes sums of a fold
    static const unsigned requant_span = 1;       ///< S = ceil(Q*lanes / R) sums per requantizer, S + Q - 1 <= steps of a fold
    static const unsigned bank_bits = 1;          ///< bits of a tap index (ky*Wc + ci % Wc: kernel * Wc taps a column), or of a shared window's bank
    static const unsigned col_bits = 1;           ///< bits of a window column index kx (sparse)
    static const unsigned slot_bits = 1;          ///< bits of a slot: ci / Wc (sparse), a chunk (dense)
    static const bool packed_products = false;    ///< two products that share an operand in one multiplier (sparse: a weight, Q > 1; dense x: an activation, two lanes; <= 8 bits)
    static const bool window_bram = false;        ///< the lanes' window copies in BRAM, columns packed (sparse; pixel_groups.hpp)
    static const bool shared_window = false;      ///< one window for all lanes in B banks, read through a crossbar (shared_window.hpp)
    static const unsigned window_banks = 1;       ///< B, banks of a shared window (perf.shared_banks)
    static const unsigned bank_slots = 1;         ///< words a half of a shared window's bank: ceil(cin * kernel / B)
    static const bool ddr_rows = false;           ///< line-buffer rows in DDR, 2k on chip (row_memory.hpp)
    static const unsigned row_offset = 0;         ///< its region of the row buffer, in 64-bit words
    static const unsigned window_memories = 1;    ///< memories a lane's copy: the performance model's count, checked
    static const unsigned window_blocks = 1;      ///< column blocks a memory: likewise
    static const unsigned blob_offset = 0;  ///< word offset of the layer's section in the blob
    static const int act = ACT_RELU;        ///< ACT_RELU, ACT_LINEAR or ACT_LOGITS
    static const long long out_min = 0;     ///< saturation bounds of the output activation
    static const long long out_max = 255;
    typedef acc_t sum_t;      ///< a lane's running sum: ap_int of sum_bits(K, weight_bits, in_t) (codegen), at most acc_t
    typedef ap_int<8> in_t;   ///< input activation type (the previous layer's out_t)
    typedef ap_uint<8> out_t; ///< output activation type: ap_uint<B> relu, ap_int<B> linear, ap_int<32> logits
};

/// Finished output pixels of a layer: two blocks of M*Q pixels (one filling, one leaving), all channels.
template <class CONFIG_T>
using pixel_block_t = typename CONFIG_T::out_t[2 * pixel_blocks<CONFIG_T>::size][CONFIG_T::folds * CONFIG_T::lanes];

/**
 * \brief Step `j` of the R shared requantizers on the finished sums of fold `pf`: requantizer
 *        r turns sum u = r*S + j -- lane l = u / Q, pixel q = u % Q of the group -- into output
 *        channel pf*lanes + l of block pixel `base + q*M` (`base`: the block half and the
 *        group's place in its block).
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void requant_step(pixel_block_t<CONFIG_T>& px, const typename CONFIG_T::sum_t done[CONFIG_T::pixels * CONFIG_T::lanes],
                  const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span],
                  unsigned pf, unsigned j, unsigned base) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    static const unsigned Q = CONFIG_T::pixels;
    for (unsigned r = 0; r < CONFIG_T::requant_units; r++) {
#pragma HLS UNROLL  // the R shared requantizers, sum r*S + j each: R different lanes (S >= Q), R different channels
        unsigned u = r * CONFIG_T::requant_span + j;
        unsigned l = u / Q;  // Q is a small constant: a shift where it is a power of two
        if (u < Q * CONFIG_T::lanes && pf * CONFIG_T::lanes + l < CONFIG_T::cout) {  // idle lanes of a last fold: none
            const requant_param& p = quant[r][pf * CONFIG_T::requant_span + j];
            px[base + (u % Q) * CONFIG_T::spacing][pf * CONFIG_T::lanes + l] = requantize<CONFIG_T>(acc_t(done[u]) + p.bias, p);
        }
    }
}

/**
 * \brief Send a finished output pixel: its channels leave as one stream word.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void emit_pixel(const typename CONFIG_T::out_t px[CONFIG_T::folds * CONFIG_T::lanes],  // one pixel's channels
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
 * \brief The fold and step the lanes are in, the requantization of the fold before, and the
 *        pixels leaving.
 *
 * Call `requantize` at the start of every MAC clock, read `f`/`j` (`first()`, `last()`) for
 * the lanes' MACs, move the sums of a `last()` step to `done`, then `advance()`. A lane
 * computing Q pixels has Q sums, u = l*Q + q. The groups of a block (pixel_groups.hpp) fill
 * one half of the pixel block memory; when the last fold of the block's last group is
 * requantized, the block's pixels leave in raster order, one a MAC clock (the first in the
 * clock of the last requantization step), while the next block fills the other half. They
 * are gone before that half is written again: a block takes M groups of NF*K >= M*Q MAC
 * clocks (Q <= K). After the frame's last MAC clock `finish` sends what is left of a block
 * still leaving, requantizes the last fold and sends the last block.
 * \tparam CONFIG_T layer configuration
 * \tparam STEPS clocks of one fold
 */
template <class CONFIG_T, unsigned STEPS>
struct fold_sequencer {
    typedef pixel_blocks<CONFIG_T> blocks;
    static const unsigned NF = CONFIG_T::folds;
    static const unsigned S = CONFIG_T::requant_span;
    static const unsigned Q = CONFIG_T::pixels;
    static const unsigned M = CONFIG_T::spacing;
    static const unsigned MQ = blocks::size;
    typedef typename CONFIG_T::sum_t sum_t;  // the lanes' running sums
    static_assert(S <= STEPS && Q <= STEPS, "a fold's sums must be requantized within the next fold, and Q <= K");
    ap_uint<counter_bits<NF>::value> f = 0, pf = 0;  // fold of the lanes; fold whose sums wait in done[]
    ap_uint<counter_bits<STEPS>::value> j = 0;       // step of the lanes in the fold
    ap_uint<counter_bits<M>::value> r = 0, pr = 0;   // group of the lanes in its block; of the waiting sums
    ap_uint<counter_bits<blocks::per_row>::value> b = 0, pb = 0;  // block of the row; of the waiting sums
    ap_uint<1> h = 0, ph = 0, eh = 0;                // block-memory half: filling, of the waiting sums, leaving
    ap_uint<counter_bits<MQ>::value> en = 0, ecount = 0;  // next pixel to leave, pixels of the leaving block
    bool pending = false;                            // done[] holds sums not yet requantized

    bool first() const { return j == 0; }
    bool last() const { return j == STEPS - 1; }

    /// Sum u's MAC of this step: its running sum plus `product`, moved to done[u] at the fold's end.
    /// `sum_t` holds every partial sum of K products exactly (sum_bits: the file's weights fit
    /// weight_bits, the activations in_t), so the narrow adder computes what an int32 one does.
    void accumulate(sum_t acc[Q * CONFIG_T::lanes], sum_t done[Q * CONFIG_T::lanes], unsigned u,
                    sum_t product) const {
#pragma HLS INLINE  // part of the engine's pipelined loop, once per lane and pixel
        sum_t sum = (first() ? sum_t(0) : acc[u]) + product;
        acc[u] = sum;
        if (last()) done[u] = sum;
    }

    /// Step j of the requantizers on the waiting fold; a finished block's pixels leave one a clock.
    void requantize(pixel_block_t<CONFIG_T>& px, const sum_t done[Q * CONFIG_T::lanes],
                    const requant_param quant[CONFIG_T::requant_units][NF * S],
                    hls::stream<out_pixel_t<CONFIG_T> >& out) {
#pragma HLS INLINE  // part of the engine's pipelined loop
        if (pending && j < S) {
            requant_step<CONFIG_T>(px, done, quant, pf, j, ph * MQ + pr);
            if (j == S - 1) {
                pending = false;
                if (pf == NF - 1 && pr == M - 1) {  // the block is complete: its pixels leave
                    eh = ph;
                    en = 0;
                    ecount = pb == blocks::per_row - 1 ? blocks::last : MQ;
                }
            }
        }
        if (en < ecount) {
            emit_pixel<CONFIG_T>(px[eh * MQ + en], out);
            en++;
        }
    }

    /// The next step (after the MACs of this one); a group's last step moves the lanes to the next group.
    void advance() {
#pragma HLS INLINE  // part of the engine's pipelined loop
        if (j == STEPS - 1) {
            pending = true;
            pf = f;
            pr = r;
            pb = b;
            ph = h;
        }
        if (++j == STEPS) {
            j = 0;
            if (f == NF - 1) {
                f = 0;
                if (++r == M) {
                    r = 0;
                    h ^= 1;
                    if (++b == blocks::per_row) b = 0;
                }
            } else {
                f++;
            }
        }
    }

    /// After the frame's last MAC clock: the rest of a block still leaving, the last fold's S
    /// steps, then the last block's pixels.
    void finish(pixel_block_t<CONFIG_T>& px, const sum_t done[Q * CONFIG_T::lanes],
                const requant_param quant[CONFIG_T::requant_units][NF * S],
                hls::stream<out_pixel_t<CONFIG_T> >& out) {
    drain:
        for (unsigned e = en; e < ecount; e++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MQ  // a block whose pixels began to leave in the frame's last MAC clocks
#pragma HLS PIPELINE II = 1  // one pixel a clock
            emit_pixel<CONFIG_T>(px[eh * MQ + e], out);
        }
    requantize_last:
        for (unsigned jj = 0; jj < S; jj++) {
#pragma HLS PIPELINE II = 1  // the last fold of the frame, S clocks
            requant_step<CONFIG_T>(px, done, quant, pf, jj, ph * MQ + pr);
        }
    emit_last:
        for (unsigned e = 0; e < blocks::last; e++) {
#pragma HLS PIPELINE II = 1  // the frame's last block, one pixel a clock
            emit_pixel<CONFIG_T>(px[ph * MQ + e], out);
        }
    }
};

/**
 * \brief The per-filter constants of one layer's blob section (spec section 3): Cout bias
 *        words, Cout mult words, Cout shift words. Filter o = f*P + l's constants serve its Q
 *        sums u = l*Q + q: each goes to requantizer u / S, word f*S + u % S (Q copies). A
 *        multiplier word with bit 31 set or a shift above 62 cannot come from a valid model
 *        file and fails the load.
 * \tparam CONFIG_T layer configuration
 * \return true when every constant is in range
 */
template <class CONFIG_T>
bool load_requant_params(const word_t* blob,
                         requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span]) {
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned S = CONFIG_T::requant_span;
    static const unsigned Q = CONFIG_T::pixels;
    static const unsigned C = CONFIG_T::cout;
    static const unsigned base = CONFIG_T::blob_offset;
    bool ok = true;
bias:
    for (unsigned n = 0; n < C * Q; n++) {
#pragma HLS PIPELINE II = 1  // sequential words (each read Q times in a row): one burst
        unsigned o = n / Q, u = (o % P) * Q + n % Q;  // filter o's sum for pixel n % Q
        quant[u / S][(o / P) * S + u % S].bias = acc_t(blob[base + o]);
    }
mult:
    for (unsigned n = 0; n < C * Q; n++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        unsigned o = n / Q, u = (o % P) * Q + n % Q;
        word_t m = blob[base + C + o];
        if (m[31]) ok = false;
        quant[u / S][(o / P) * S + u % S].mult = m.range(30, 0);
    }
shift:
    for (unsigned n = 0; n < C * Q; n++) {
#pragma HLS PIPELINE II = 1  // sequential words: one burst
        unsigned o = n / Q, u = (o % P) * Q + n % Q;
        word_t sh = blob[base + 2 * C + o];
        if (sh > 62) ok = false;
        quant[u / S][(o / P) * S + u % S].shift = sh.range(5, 0);
    }
    return ok;
}

}  // namespace sentei

#endif
