/**
 * \file shared_window.hpp
 * \brief One window for all lanes of a sparse layer: B banks, read through a crossbar.
 *
 * The per-lane copies of sparse_conv.hpp (`lane_copies`) give every lane a read port of its
 * own on the group's window, and LUTRAM pays each port with a copy of the storage. Here the
 * window is stored once: the Cin*k activations of a window column, t = ci*k + ky, in B
 * banks, t in bank `t mod B` at slot `t / B` (perf.shared_banks), each bank a LUTRAM memory
 * per group column of two halves of `bank_slots` words. In a clock every bank is read once
 * (each of its column memories at the same slot), at the address of the one lane whose
 * weight lies in it; each pixel of the group takes its column there (k:1, the lane's kx), and
 * each lane takes its pixels from the bank its weight names (the crossbar, B:1 a lane and
 * pixel).
 *
 * That needs no two lanes in one bank in a clock. The order of a filter's K weights is free
 * (the integer sum does not depend on it), and the host lays each filter's weights out in
 * an order where it holds (sentei.host.modelfile.schedule: an edge colouring of each fold's
 * lane x bank multigraph, K steps where no bank holds more than K of the fold's weights --
 * the condition under which the performance model offers the plan). The loader checks it:
 * a blob whose weights two lanes would read from one bank in one step fails the load
 * (`bank_claims`), so a model file loaded without that order cannot compute garbage.
 *
 * A chunk from the line buffer (Wc channels of one column, their k taps) is k*Wc consecutive
 * t, so it writes k*Wc different banks (k*Wc <= B), each at most once.
 */
#ifndef SENTEI_SHARED_WINDOW_HPP
#define SENTEI_SHARED_WINDOW_HPP

#include "folds.hpp"
#include "pixel_groups.hpp"
#include "types.hpp"

namespace sentei {

/// The shared window of layer CONFIG_T: `win[bank][column][half * bank_slots + slot]`.
template <class CONFIG_T>
using shared_window_t =
    typename CONFIG_T::in_t[CONFIG_T::window_banks][layer_group<CONFIG_T>::columns][2 * CONFIG_T::bank_slots];

/// Which column, channel word and first bank/slot the next chunk from the line buffer fills.
template <class CONFIG_T>
struct shared_cursor {
    static const unsigned COLS = layer_group<CONFIG_T>::columns;
    static const unsigned CW = CONFIG_T::cin / CONFIG_T::chunk_channels;
    static const unsigned TAPS = CONFIG_T::kernel * CONFIG_T::chunk_channels;
    static const unsigned B = CONFIG_T::window_banks;
    ap_uint<counter_bits<COLS>::value> col = 0;
    ap_uint<counter_bits<CW>::value> cw = 0;
    ap_uint<counter_bits<B>::value> bank = 0;  // (cw * TAPS) mod B: the bank of the chunk's first t
    ap_uint<counter_bits<CONFIG_T::bank_slots>::value> slot = 0;  // (cw * TAPS) / B

    /// The chunk after this one (word by word, column by column): t moves on by k*Wc.
    void advance() {
#pragma HLS INLINE  // part of the engine's pipelined loops
        if (++cw == CW) {
            cw = 0;
            bank = 0;
            slot = 0;
            if (++col == COLS) col = 0;
        } else if (bank + TAPS >= B) {  // k*Wc <= B: at most one wrap
            bank = bank + TAPS - B;
            slot++;
        } else {
            bank += TAPS;
        }
    }
};

/**
 * \brief The loader's check that no two lanes read one bank in one step of a fold.
 *
 * `taken[j]` holds the banks the fold's filters so far read in step j (a bit each); the
 * entries arrive filter by filter, so lane 0 of a fold starts each step afresh. Zero
 * weights (the idle lanes of a partly empty fold) claim no bank: whatever they read is
 * multiplied by zero.
 */
template <class CONFIG_T>
struct bank_claims {
    ap_uint<CONFIG_T::window_banks> taken[CONFIG_T::k_nonzero];

    void claim(unsigned lane, unsigned j, const sparse_entry<CONFIG_T>& e, bool& ok) {
#pragma HLS INLINE  // part of the loader's pipelined loop
        ap_uint<CONFIG_T::window_banks> bit = 0;
        bit[e.bank] = (e.value != 0);
        ap_uint<CONFIG_T::window_banks> before = lane == 0 ? ap_uint<CONFIG_T::window_banks>(0) : taken[j];
        if ((before & bit) != 0) ok = false;
        taken[j] = before | bit;
    }
};

/**
 * \brief The window policy of sparse_conv for a shared window: storage, chunk writes, reads.
 * \tparam CONFIG_T layer configuration (`shared_window`, `window_banks`, `bank_slots`)
 */
template <class CONFIG_T>
struct shared_window {
    typedef shared_window_t<CONFIG_T> storage_t;
    typedef shared_cursor<CONFIG_T> cursor_t;
    typedef bank_claims<CONFIG_T> claims_t;
    typedef typename CONFIG_T::in_t in_t;
    typedef layer_group<CONFIG_T> group;
    static const unsigned P = CONFIG_T::lanes;
    static const unsigned Q = CONFIG_T::pixels;
    static const unsigned B = CONFIG_T::window_banks;
    static const unsigned SLOTS = CONFIG_T::bank_slots;
    static const unsigned K = CONFIG_T::kernel;
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned TAPS = K * WC;
    static_assert(TAPS <= B && P <= B, "a shared window has at least k*Wc and P banks (perf.shared_banks)");
    static_assert(B * SLOTS >= CONFIG_T::cin * K, "the banks must hold a column's Cin*k activations");

    /// Where stored position (ci, ky, kx) is read: bank t mod B, slot t / B of t = ci*k + ky, column kx.
    static void place(const blob_entry& d, sparse_entry<CONFIG_T>& e) {
#pragma HLS INLINE  // part of the loader's pipelined loop
        unsigned t = d.ci * K + d.ky;
        e.bank = t % B;  // constant dividers, at load time only
        e.slot = t / B;
        e.col = d.kx;
    }

    /// Write the chunk at `at` into half `half`: chunk element ky*Wc + i is t = (cw*Wc + i)*k + ky,
    /// offset i*k + ky from the chunk's first t; bank b takes the offset (b - at.bank) mod B, if any.
    static void write(storage_t& win, unsigned half, const cursor_t& at, const chunk_t<CONFIG_T>& chunk) {
#pragma HLS INLINE  // part of the caller's pipelined loop
        for (unsigned b = 0; b < B; b++) {
#pragma HLS UNROLL  // one write port a bank, each bank at most one tap of the chunk
            unsigned o = b >= at.bank ? b - at.bank : b + B - at.bank;
            unsigned slot = at.slot + (b < at.bank ? 1 : 0);  // the chunk's t wrapped past bank B-1
            if (o < TAPS) {
                in_t v = 0;
                for (unsigned oo = 0; oo < TAPS; oo++) {
#pragma HLS UNROLL  // a TAPS-input multiplexer of the chunk's elements
                    if (o == oo) v = chunk.data[(oo % K) * WC + oo / K];
                }
                for (unsigned c = 0; c < group::columns; c++) {
#pragma HLS UNROLL  // the column's memory of this bank
                    if (c == at.col) win[b][c][half * SLOTS + slot] = v;
                }
            }
        }
    }

    /// The Q activations each lane multiplies with its weight `e[l]` this clock, from half `half`.
    static void read(storage_t& win, const sparse_entry<CONFIG_T> e[P], unsigned half, in_t a[P][Q]) {
#pragma HLS INLINE  // part of the engine's pipelined loop
        in_t v[B][Q];  // bank b's activation for pixel q: its column of the claiming lane's kx
#pragma HLS ARRAY_PARTITION variable = v complete dim = 0  // registers: the crossbar's inputs
        for (unsigned b = 0; b < B; b++) {
#pragma HLS UNROLL  // every bank read once, at its claiming lane's address
            ap_uint<CONFIG_T::slot_bits> slot = 0;
            ap_uint<CONFIG_T::col_bits> col = 0;
            for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // at most one nonzero weight a bank a step (the loader checked): an OR of the lanes' addresses
                if (e[l].value != 0 && e[l].bank == b) {
                    slot |= e[l].slot;
                    col |= e[l].col;
                }
            }
            in_t word[group::columns];
            for (unsigned c = 0; c < group::columns; c++) {
#pragma HLS UNROLL  // one read port a column memory
                word[c] = win[b][c][half * SLOTS + slot];
            }
            for (unsigned q = 0; q < Q; q++) {
#pragma HLS UNROLL  // pixel q's column for tap column kx: a k-input multiplexer of constants
                unsigned c = 0;
                for (unsigned kx = 0; kx < K; kx++) {
#pragma HLS UNROLL  // the k candidates, constants
                    if (col == kx) c = group::column(q, kx);
                }
                v[b][q] = word[c];
            }
        }
        for (unsigned l = 0; l < P; l++) {
#pragma HLS UNROLL  // the crossbar: lane l's pixels from the bank of its weight
            for (unsigned q = 0; q < Q; q++) {
#pragma HLS UNROLL  // a B-input multiplexer a pixel
                a[l][q] = v[e[l].bank][q];
            }
        }
    }
};

}  // namespace sentei

#endif
