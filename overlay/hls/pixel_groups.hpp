/**
 * \file pixel_groups.hpp
 * \brief Groups of output pixels: which pixels a lane computes together, the window columns
 *        they read, and the blocks in which they leave.
 *
 * The sparse engine may compute Q = `pixels` output pixels of a row per lane, each weight it
 * reads multiplying Q activations (sparse_conv.hpp). The pixels of a group are M = `spacing`
 * apart: 1 (adjacent) for undilated layers, `D / gcd(S, D)` for dilated ones, where pixels
 * that far apart share k - 1 window columns (adjacent pixels of a dilated layer share none).
 * Pixel q of a group reads window column kx at offset `q*M*S + kx*D` from the group's first
 * column (S stride, D dilation). The distinct offsets, ascending, are the group's `columns`
 * window columns: the line buffer sends them once per group (line_buffer.hpp) and every lane
 * keeps one copy of them (D = 1, S = 1: Q + k - 1 columns instead of Q*k; D = 4, S = 1, M = 4:
 * also Q + k - 1).
 *
 * A row is cut into blocks of M*Q pixels, `blocks` = ceil(Wo / (M*Q)) per row; block b holds
 * M groups, group r of it the pixels b*M*Q + r + q*M. The engine finishes a block's pixels out
 * of order and sends them in raster order once its last group is done (folds.hpp); the
 * pixels of a last block beyond the row are computed and dropped.
 *
 * Everything here is evaluated at compile time (C++14 constexpr); overlay/perf.py's
 * `group_offsets` computes the same set for the performance model and the code generator.
 */
#ifndef SENTEI_PIXEL_GROUPS_HPP
#define SENTEI_PIXEL_GROUPS_HPP

namespace sentei {

/// The window columns of Q output pixels M apart of a k-tap, stride-S, dilation-D layer.
template <unsigned Q, unsigned M, unsigned K, unsigned S, unsigned D>
struct pixel_group {
    static constexpr unsigned pixels = Q;
    static constexpr unsigned kernel = K;
    static constexpr unsigned span = (Q - 1) * M * S + (K - 1) * D + 1;  ///< offsets 0 .. span-1

    /// Whether some pixel q < Q reads the column at offset `o` (o = q*M*S + kx*D).
    static constexpr bool used(unsigned o) {
        for (unsigned q = 0; q < Q; q++) {
            for (unsigned kx = 0; kx < K; kx++) {
                if (q * M * S + kx * D == o) return true;
            }
        }
        return false;
    }

    /// Index of the column at offset `o` among the used ones (the number of used offsets below it).
    static constexpr unsigned index(unsigned o) {
        unsigned n = 0;
        for (unsigned u = 0; u < o; u++) {
            if (used(u)) n++;
        }
        return n;
    }

    static constexpr unsigned columns = index(span);  ///< the group's window columns

    /// The column pixel q reads for its tap kx.
    static constexpr unsigned column(unsigned q, unsigned kx) { return index(q * M * S + kx * D); }

    /// The offset of column j (j < columns).
    static constexpr unsigned offset(unsigned j) {
        unsigned n = 0;
        for (unsigned o = 0; o < span; o++) {
            if (used(o)) {
                if (n == j) return o;
                n++;
            }
        }
        return 0;
    }
};

/// The offsets of a group's columns as an array (a ROM where a loop indexes it).
template <class GROUP_T>
struct group_offsets {
    unsigned value[GROUP_T::columns];
};

/// The table of GROUP_T's column offsets, built at compile time.
template <class GROUP_T>
constexpr group_offsets<GROUP_T> make_group_offsets() {
    group_offsets<GROUP_T> t{};
    for (unsigned j = 0; j < GROUP_T::columns; j++) t.value[j] = GROUP_T::offset(j);
    return t;
}

/**
 * \brief Which memory of a lane's window copy holds each column of GROUP_T, and where.
 *
 * Unpacked (`PACK` false: LUTRAM copies), a memory per column. Packed (BRAM copies), columns
 * that no tap kx reads in the same clock share a memory, one above the other: in a clock all
 * Q pixels read the same kx, i.e. the columns `column(q, kx)`, q < Q -- those must sit in Q
 * different memories (one read port each) -- so column c takes the lowest memory that no
 * column before it read together with it holds (greedy colouring, in column order), as
 * block `block(c)` of that memory. A BRAM18 holds 512 words of up to 36 bits, and a column's
 * 2*Cin/Wc words are often fewer (Cin = 128, Wc = 1: 256): packed, the Q + k - 1 columns of a
 * stride-1 group (dilated ones too: their pixels are D apart) fill Q memories, two blocks
 * each, where unpacked they took Q + k - 1 half-empty ones.
 * overlay/perf.py's `window_memories` computes the same layout (the generated configuration
 * carries its counts and `sparse_conv` checks them against these).
 */
template <class GROUP_T>
struct window_layout {
    unsigned memory[GROUP_T::columns];  ///< the memory column c is stored in
    unsigned block[GROUP_T::columns];   ///< its block there (the columns before it in that memory)
    unsigned memories;                  ///< memories a copy
    unsigned blocks;                    ///< blocks a memory (its depth: blocks * 2*Cin/Wc words)
    unsigned reads[GROUP_T::columns][GROUP_T::kernel];  ///< the block memory m reads for tap column kx (0: none)
};

/// Whether columns a and b of GROUP_T are read in the same clock: both some pixel's column for one kx.
template <class GROUP_T>
constexpr bool read_together(unsigned a, unsigned b) {
    for (unsigned kx = 0; kx < GROUP_T::kernel; kx++) {
        bool has_a = false, has_b = false;
        for (unsigned q = 0; q < GROUP_T::pixels; q++) {
            has_a = has_a || GROUP_T::column(q, kx) == a;
            has_b = has_b || GROUP_T::column(q, kx) == b;
        }
        if (has_a && has_b) return true;
    }
    return false;
}

/// GROUP_T's window layout, built at compile time (a ROM where a loop indexes it).
template <class GROUP_T, bool PACK>
constexpr window_layout<GROUP_T> make_window_layout() {
    window_layout<GROUP_T> t{};
    t.memories = t.blocks = 0;
    for (unsigned c = 0; c < GROUP_T::columns; c++) {
        unsigned m = c;  // unpacked: a memory per column
        if (PACK) {      // the lowest memory no column before c that is read with c holds
            for (m = 0;; m++) {
                bool free = true;
                for (unsigned b = 0; b < c; b++) {
                    if (t.memory[b] == m && read_together<GROUP_T>(b, c)) free = false;
                }
                if (free) break;
            }
        }
        unsigned n = 0;
        for (unsigned b = 0; b < c; b++) {
            if (t.memory[b] == m) n++;
        }
        t.memory[c] = m;
        t.block[c] = n;
        if (m + 1 > t.memories) t.memories = m + 1;
        if (n + 1 > t.blocks) t.blocks = n + 1;
    }
    for (unsigned kx = 0; kx < GROUP_T::kernel; kx++) {
        for (unsigned m = 0; m < GROUP_T::columns; m++) t.reads[m][kx] = 0;
        for (unsigned q = 0; q < GROUP_T::pixels; q++) {
            unsigned c = GROUP_T::column(q, kx);
            t.reads[t.memory[c]][kx] = t.block[c];
        }
    }
    return t;
}

/// The pixel group of layer CONFIG_T (its `pixels`, `spacing`, `kernel`, `stride`, `dilation`).
template <class CONFIG_T>
using layer_group =
    pixel_group<CONFIG_T::pixels, CONFIG_T::spacing, CONFIG_T::kernel, CONFIG_T::stride, CONFIG_T::dilation>;

/// How layer CONFIG_T's output rows are cut into blocks of M*Q pixels.
template <class CONFIG_T>
struct pixel_blocks {
    static const unsigned size = CONFIG_T::spacing * CONFIG_T::pixels;                 ///< M*Q pixels a block
    static const unsigned per_row = (CONFIG_T::out_width + size - 1) / size;           ///< blocks a row
    static const unsigned last = CONFIG_T::out_width - (per_row - 1) * size;           ///< pixels of a row's last block
    static const unsigned groups = per_row * CONFIG_T::spacing * CONFIG_T::out_height;  ///< groups a frame
};

}  // namespace sentei

#endif
