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
