/**
 * \file sparse_conv.hpp
 * \brief The filter-wise sparse convolution engine of one layer, and its weight loader.
 *
 * SENTEI's processing block: the Cout filters of the layer are folded onto `lanes`
 * parallel lanes, NF = ceil(Cout / lanes) folds. The output pixels run in groups of Q =
 * `pixels` pixels of a row, M = `spacing` apart (pixel_groups.hpp); for every group the engine runs NF
 * folds, and in a fold each lane walks the K stored weights (value, window address) of its
 * current filter and multiplies each with the Q activations of the group's pixels it points
 * at. Zero weights are not stored, so they cost no cycle; every filter has the same K, so
 * all lanes finish each fold together (no load imbalance, no control for it).
 *
 * Where the lanes read is the layer's window policy (`window_policy`): per-lane copies
 * (`lane_copies`, below) or one window shared by all lanes in banks read through a crossbar
 * (`shared_window`, shared_window.hpp: plan suffix h). Both are double-buffered the same way
 * and written from the same chunks; they differ in storage, chunk writes, reads and what the
 * loader checks.
 *
 * With copies, each lane owns a copy of the group's window: one memory per window column, `2*Cin/Wc`
 * words of the column's k*Wc taps (LUTRAM, or BRAM where LUTs are short: the caller binds
 * it). A pixel's read goes to the memory of the column its weight names *for that pixel*
 * (pixel q reads offset q*M*S + kx*D), so the Q reads of a lane hit Q different memories:
 * one read port each, and the columns the group's pixels share are stored once. The copies are double-buffered: while the
 * lanes work on group n from one half, the next group's window arrives from the line buffer
 * as L = columns * Cin/Wc chunks, one per clock, and is written into the other half of every
 * copy -- inside the same pipelined loop. Each chunk is read from the stream one clock before
 * it is written, into a register (`staged`), so that the broadcast to the lanes x columns
 * memories starts at a register, not at the stream's output: a net the implementation can
 * replicate where it is placed (the Vivado script runs phys_opt_design's fan-out
 * optimisation). The chunks are written in the middle of the
 * group's clocks, not at its start, so that a write is never near a read of the same half:
 * the last read of a half (the previous group) and the first write into it, and the last
 * write and the first read of it (the next group), are at least `window_distance` loop
 * iterations apart -- the dependence distance the loop declares to the scheduler, which is
 * true for every weight pattern.
 *
 * Two products that share a weight share a multiplier where `packed_products` says so
 * (Xilinx WP486): `(a1 << 18) + a0` times the weight in one 27 x 18 DSP48E2, both products
 * recovered exactly (`product_pair`).
 *
 * Requantization is shared (folds.hpp): R requantizers each serve S sums of the Q*P a fold
 * finishes, one sum per clock during the first S weights of the next fold, so a layer needs
 * 4R DSP48s for requantization instead of 4QP; the group's Q pixels then leave one a clock.
 *
 * Loop invariant of the MAC loop: after the iteration of weight j of fold f, the sum of lane
 * l and pixel q holds `sum_{i <= j} w[o, i] * window_q[addr[o, i]]` for filter o = f*lanes + l
 * (the bias is added at requantization). Iterations with a MAC per frame:
 * out_height * groups a row * NF * K -- the figure the testbench counts and the performance
 * model (overlay/perf.py) assumes. The loop itself runs `pixel_iterations` = max(NF*K, L)
 * clocks per group: the extra L - NF*K clocks (none when the code generator's chunk width
 * fits, L <= NF*K) only load the window.
 */
#ifndef SENTEI_SPARSE_CONV_HPP
#define SENTEI_SPARSE_CONV_HPP

#include "csim_hooks.hpp"
#include "folds.hpp"
#include "pixel_groups.hpp"
#include "products.hpp"
#include "shared_window.hpp"
#include "types.hpp"

namespace sentei {

/// Where layer CONFIG_T's window columns are kept: packed where the copies are in BRAM.
template <class CONFIG_T>
constexpr window_layout<layer_group<CONFIG_T> > layer_window_layout() {
    return make_window_layout<layer_group<CONFIG_T>, CONFIG_T::window_bram>();
}

/**
 * \brief The lanes' copies of a group's window: `win[lane][memory][tap][word]`, column c in
 *        memory `memory[c]`, tap `ky*Wc + ci % Wc`, word `(block[c]*2 + half)*Cin/Wc + ci / Wc`
 *        (window_layout: a memory per column in LUTRAM; in BRAM, columns never read in one
 *        clock share one).
 *
 * Declared by the generated caller (`layer<i>_engine` in network.h), which partitions it
 * into one memory per lane and memory index, reshapes a column's k*Wc taps into one word
 * and binds the memories to LUTRAM or BRAM as the performance model chose for the layer.
 */
template <class CONFIG_T>
using window_copies_t =
    typename CONFIG_T::in_t[CONFIG_T::lanes][layer_window_layout<CONFIG_T>().memories]
                           [CONFIG_T::kernel * CONFIG_T::chunk_channels]
                           [layer_window_layout<CONFIG_T>().blocks * 2 * (CONFIG_T::cin / CONFIG_T::chunk_channels)];

/// Which window column and channel word of a group the next chunk from the line buffer is.
template <class CONFIG_T>
struct chunk_cursor {
    static const unsigned COLS = layer_group<CONFIG_T>::columns;
    static const unsigned CW = CONFIG_T::cin / CONFIG_T::chunk_channels;
    ap_uint<counter_bits<COLS>::value> col = 0;
    ap_uint<counter_bits<CW>::value> cw = 0;

    /// The chunk after this one (chunks arrive word by word, column by column, L to a group).
    void advance() {
#pragma HLS INLINE  // part of the engine's pipelined loops
        if (++cw == CW) {
            cw = 0;
            if (++col == COLS) col = 0;
        }
    }
};

/**
 * \brief When the engine writes the next group's window chunks, and when it reads them.
 *
 * Writes: clocks D .. D+L-1 of every group but the frame's last (and the L iterations of the
 * first window before the loop). Reads: one clock ahead of each write -- the clock before in
 * the same group, or, when D = 0, the last clock of the group before -- into the register the
 * write then broadcasts from.
 */
template <unsigned TP, unsigned D, unsigned L, unsigned NG>
struct chunk_schedule {
    static bool writes(unsigned i, unsigned pix) {
#pragma HLS INLINE  // compares with constants
        return i >= D && i < D + L && pix + 1 < NG;
    }
    static bool reads(unsigned i, unsigned pix) {
#pragma HLS INLINE  // compares with constants
        return (i + 1 >= D && i + 1 < D + L && pix + 1 < NG) || (D == 0 && i == TP - 1 && pix + 2 < NG);
    }
};

/**
 * \brief Write one window chunk -- column `col`, channel word `cw` -- into buffer half `half`
 *        of every lane's copy.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
void write_chunk(window_copies_t<CONFIG_T>& win, unsigned half, unsigned col, unsigned cw,
                 const chunk_t<CONFIG_T>& chunk) {
#pragma HLS INLINE  // part of the caller's pipelined loop
    static const unsigned TAPS = CONFIG_T::kernel * CONFIG_T::chunk_channels;
    static const unsigned CW = CONFIG_T::cin / CONFIG_T::chunk_channels;
    static const unsigned COLS = layer_group<CONFIG_T>::columns;
    static constexpr window_layout<layer_group<CONFIG_T> > LAY = layer_window_layout<CONFIG_T>();  // constants
    for (unsigned m = 0; m < LAY.memories; m++) {
#pragma HLS UNROLL  // one write a memory: the block of the column `col` is, if it is one of this memory's
        bool hit = false;
        unsigned blk = 0;
        for (unsigned c = 0; c < COLS; c++) {
#pragma HLS UNROLL  // a compare with each of the memory's columns (constants)
            if (LAY.memory[c] == m && c == col) {
                hit = true;
                blk = LAY.block[c];
            }
        }
        if (hit) {
            for (unsigned l = 0; l < CONFIG_T::lanes; l++) {
#pragma HLS UNROLL  // the chunk is broadcast to every lane's copy
                for (unsigned e = 0; e < TAPS; e++) {
#pragma HLS UNROLL  // the k*Wc elements of the chunk, one word
                    win[l][m][e][(blk * 2 + half) * CW + cw] = chunk.data[e];
                }
            }
        }
    }
}

/// The loader's check for per-lane copies: every lane has its own, nothing to check.
template <class CONFIG_T>
struct no_claims {
    void claim(unsigned, unsigned, const sparse_entry<CONFIG_T>&, bool&) {
#pragma HLS INLINE  // nothing
    }
};

/**
 * \brief The window policy of sparse_conv for per-lane copies: storage, chunk writes, reads.
 * \tparam CONFIG_T layer configuration
 */
template <class CONFIG_T>
struct lane_copies {
    typedef window_copies_t<CONFIG_T> storage_t;
    typedef chunk_cursor<CONFIG_T> cursor_t;
    typedef no_claims<CONFIG_T> claims_t;
    typedef typename CONFIG_T::in_t in_t;
    typedef layer_group<CONFIG_T> group;
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned Q = CONFIG_T::pixels;
    static const unsigned CW = CONFIG_T::cin / CONFIG_T::chunk_channels;
    static const unsigned WC = CONFIG_T::chunk_channels;

    /// Where stored position (ci, ky, kx) is read: tap bank ky*Wc + ci % Wc, column kx, slot ci / Wc.
    static void place(const blob_entry& d, sparse_entry<CONFIG_T>& e) {
#pragma HLS INLINE  // part of the loader's pipelined loop
        e.bank = d.ky * WC + d.ci % WC;
        e.col = d.kx;
        e.slot = d.ci / WC;
    }

    static void write(storage_t& win, unsigned half, const cursor_t& at, const chunk_t<CONFIG_T>& chunk) {
#pragma HLS INLINE  // part of the caller's pipelined loop
        write_chunk<CONFIG_T>(win, half, at.col, at.cw, chunk);
    }

    /// The Q activations each lane multiplies with its weight `e[l]` this clock, from half `half`.
    static void read(storage_t& win, const sparse_entry<CONFIG_T> e[P], unsigned half, in_t a[P][Q]) {
#pragma HLS INLINE  // part of the engine's pipelined loop
        static constexpr window_layout<group> LAY = layer_window_layout<CONFIG_T>();  // a ROM of constants
        for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the P lanes of the block, each on its own copy
            in_t word[LAY.memories];  // each memory read once, at one address
            for (unsigned m = 0; m < LAY.memories; m++) {
#pragma HLS UNROLL  // one read port a memory: the block the pixels read there for tap column kx
                unsigned blk = 0;
                for (unsigned kx = 0; kx < CONFIG_T::kernel; kx++) {
#pragma HLS UNROLL  // a k-input multiplexer of constants
                    if (e[l].col == kx) blk = LAY.reads[m][kx];
                }
                word[m] = win[l][m][e[l].bank][(blk * 2 + half) * CW + e[l].slot];
            }
            for (unsigned q = 0; q < Q; q++) {
#pragma HLS UNROLL  // pixel q takes the memory of the column its offset q*M*S + kx*D names: Q different ones
                unsigned mem = 0;
                for (unsigned kx = 0; kx < CONFIG_T::kernel; kx++) {
#pragma HLS UNROLL  // a k-input multiplexer of constants
                    if (e[l].col == kx) mem = LAY.memory[group::column(q, kx)];
                }
                a[l][q] = word[mem];
            }
        }
    }
};

/// The window policy of layer CONFIG_T: per-lane copies, or one shared window (shared_window.hpp).
template <class CONFIG_T, bool SHARED = CONFIG_T::shared_window>
struct window_policy {
    typedef lane_copies<CONFIG_T> type;
};
template <class CONFIG_T>
struct window_policy<CONFIG_T, true> {
    typedef shared_window<CONFIG_T> type;
};

/// The storage of layer CONFIG_T's window, as the generated caller declares and binds it.
template <class CONFIG_T>
using window_storage_t = typename window_policy<CONFIG_T>::type::storage_t;

/**
 * \brief One layer: stream of window chunks -> stream of output pixels.
 *
 * One pipelined loop of (groups a frame)*pixel_iterations clocks (group, fold and weight flattened
 * by hand), so the pipeline fills once per frame: at clock i of a group, chunk i - D of the
 * *next* group's window is written into the idle half of the window copies (D <= i < D + L,
 * D = (TP - L)/2 centres the writes in the TP clocks of the group), and, for i < NF*K, each
 * lane does the Q MACs of weight j of fold f (i = f*K + j); at j = K-1 the lanes' sums move
 * to `done`, and during the first S weights of the following fold the R requantizers turn
 * them into output activations, one sum each per clock. A block's pixels leave in raster
 * order after its last group's last fold is requantized (folds.hpp; after the loop for the
 * frame's last block). The first window is loaded before the loop (L + 1 clocks per frame:
 * every chunk passes the `staged` register, chunk_schedule).
 *
 * \tparam CONFIG_T layer configuration (see conv_config_default); nothing is deducible
 * \param weights sparse entries, `weights[l][f*K + j]` = weight j of filter f*lanes + l
 * \param quant   per-sum constants, `quant[r][f*S + j]` for sum u = r*S + j of fold f (load_requant_params)
 * \param win     the window (window_storage_t: the lanes' copies, or one shared window), declared and
 *                bound by the caller
 */
template <class CONFIG_T>
void sparse_conv(hls::stream<chunk_t<CONFIG_T> >& in, hls::stream<out_pixel_t<CONFIG_T> >& out,
                 const sparse_entry<CONFIG_T> weights[CONFIG_T::lanes][CONFIG_T::folds * CONFIG_T::k_nonzero],
                 const requant_param quant[CONFIG_T::requant_units][CONFIG_T::folds * CONFIG_T::requant_span],
                 unsigned frames, window_storage_t<CONFIG_T>& win) {
#pragma HLS INLINE  // the body of the generated layer<i>_engine process, which declares `win`
#pragma HLS AGGREGATE variable = weights compact = bit  // an entry (value, bank, col, slot) is one packed field, as the resource model counts it
#pragma HLS ARRAY_RESHAPE variable = weights dim = 1 complete  // every lane reads address f*K + j in the same clock: one memory, P entries a word
#pragma HLS ARRAY_PARTITION variable = quant dim = 1 complete    // one constant memory per requantizer
    typedef layer_group<CONFIG_T> group;
    typedef typename window_policy<CONFIG_T>::type window;
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned Q = CONFIG_T::pixels;
    static const unsigned NF = CONFIG_T::folds;  // = ceil(cout / P)
    static const unsigned K = CONFIG_T::k_nonzero;
    static const unsigned T = NF * K;             // MAC clocks per group
    static const unsigned L = CONFIG_T::chunks;   // window chunks per group
    static const unsigned TP = CONFIG_T::pixel_iterations;  // = max(T, L)
    static const unsigned NG = pixel_blocks<CONFIG_T>::groups;  // groups per frame
    static const unsigned D = (TP - L) / 2;  // clock of the group at which the next window starts to arrive
    // Loop iterations between accesses of one window half, whatever the weights' addresses:
    // a half is last read at clock <= T-1 of group n-1 and first written at clock D of group n
    // (WAR: >= TP - T + 1 + D), last written at clock D+L-1 of group n and first read at
    // clock 0 of group n+1 (RAW: >= TP - D - L + 1); writes of one half are a group apart.
    static const unsigned WAR = TP - T + 1 + D;
    static const unsigned RAW = TP - D - L + 1;
    static const unsigned DIST = WAR < RAW ? WAR : RAW;
    static_assert(TP >= T && TP >= L && D + L <= TP, "pixel_iterations must be max(folds * k_nonzero, chunks)");
    static_assert(L == group::columns * (CONFIG_T::cin / CONFIG_T::chunk_channels),
                  "chunks must be the group's columns times cin / chunk_channels");
    static constexpr window_layout<group> LAY = layer_window_layout<CONFIG_T>();
    static_assert(LAY.memories == CONFIG_T::window_memories && LAY.blocks == CONFIG_T::window_blocks,
                  "window_memories / window_blocks must be the window layout's (perf.window_memories)");

    typedef typename CONFIG_T::sum_t sum_t;  // as wide as K products need (sum_bits), not 32 bits
    sum_t acc[Q * P];
#pragma HLS ARRAY_PARTITION variable = acc complete  // one accumulator register per lane and pixel
    sum_t done[Q * P];
#pragma HLS ARRAY_PARTITION variable = done complete  // finished sums waiting for a requantizer
    pixel_block_t<CONFIG_T> px;
#pragma HLS ARRAY_PARTITION variable = px dim = 2 complete  // a memory per channel: R requantizers write R channels per clock, a pixel word reads them all

    typedef chunk_schedule<TP, D, L, NG> chunks;
    chunk_t<CONFIG_T> staged;  // the chunk written next, read a clock ahead: the broadcast's one driver

frames:
    for (unsigned fr = 0; fr < frames; fr++) {
        typename window::cursor_t next;  // the chunk the line buffer sends next
    load_first:
        for (unsigned c = 0; c <= L; c++) {
#pragma HLS PIPELINE II = 1  // the first window, one chunk per clock, a clock behind its read
            if (c > 0) {
                window::write(win, 0, next, staged);
                next.advance();
            }
            if (c < L || chunks::writes(0, 0)) staged = in.read();  // c = L: the chunk the loop writes first (D = 0)
        }

        pixel_clock<TP, NG> clk;
        fold_sequencer<CONFIG_T, K> seq;
    macs:
        for (unsigned it = 0; it < NG * TP; it++) {
#pragma HLS PIPELINE II = 1  // one stored weight per lane per clock: the loop the zero skipping shortens
#pragma HLS DEPENDENCE variable = win type = inter dependent = true distance = DIST  // see DIST: the analysis cannot see the halves through the data-dependent read address
            if (chunks::writes(clk.i, clk.pix)) {
                window::write(win, clk.half ^ 1, next, staged);
                next.advance();
            }
            if (chunks::reads(clk.i, clk.pix)) staged = in.read();
            if (clk.i < T) {
                SENTEI_COUNT_ITERATION(CONFIG_T::index);
                seq.requantize(px, done, quant, out);
                sparse_entry<CONFIG_T> e[P];  // the lanes' weights of this step: one memory word
#pragma HLS ARRAY_PARTITION variable = e complete  // registers
                for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the P entries of address f*K + j
                    e[l] = weights[l][seq.f * K + seq.j];
                }
                typename CONFIG_T::in_t a[P][Q];
#pragma HLS ARRAY_PARTITION variable = a complete dim = 0  // registers: Q activations a lane
                window::read(win, e, clk.half, a);
                for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the P lanes of the block
                    for (unsigned q = 0; q < Q; q += 2) {
#pragma HLS UNROLL  // the pixels in pairs: one multiplier per pair where packed
                        if (q + 1 < Q) {
                            sum_t p0, p1;
                            product_pair<CONFIG_T::packed_products>::mul(e[l].value, a[l][q], a[l][q + 1], p0, p1);
                            seq.accumulate(acc, done, l * Q + q, p0);
                            seq.accumulate(acc, done, l * Q + q + 1, p1);
                        } else {
                            seq.accumulate(acc, done, l * Q + q, e[l].value * a[l][q]);
                        }
                    }
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
 * Filter o goes to lane l = o % P, fold f = o / P, its entry j to step j; its constants to requantizer l / S, word
 * f*S + l % S (Q copies, load_requant_params). Each position idx = (ci*k + ky)*k + kx becomes
 * the window address the lane reads (the policy's `place`: with copies tap bank ky*Wc + ci % Wc,
 * column kx, slot ci / Wc; in a shared window bank t mod B, slot t / B of t = ci*k + ky, column
 * kx). A shared window also needs no two lanes' nonzero weights in one bank in a step (the
 * host's schedule order: sentei.host.modelfile.schedule), and a blob that breaks it fails the
 * load. So does one that cannot come from a valid model file: an entry whose position lies
 * outside Cin*k*k or whose value does not fit `weight_bits`, a multiplier word with bit 31
 * set or a shift word above 62 (spec section 3: 0 <= mult < 2^31, 0 <= shift <= 62).
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
    static const unsigned C = CONFIG_T::cout;

    typedef typename window_policy<CONFIG_T>::type window;
    bool ok = load_requant_params<CONFIG_T>(blob, quant);
    typename window::claims_t claims;  // a shared window: no two lanes in one bank a step
    if (C % P) {  // the idle lanes of the last fold multiply zeros (their sums are never requantized)
    idle_lanes:
        for (unsigned n = 0; n < (P - C % P) * K; n++) {
#pragma HLS PIPELINE II = 1  // load time only
            sparse_entry<CONFIG_T> zero;
            zero.value = 0;
            zero.bank = 0;
            zero.col = 0;
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
        window::place(d, e);
        claims.claim(lane, j, e, ok);
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
