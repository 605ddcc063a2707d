/**
 * \file line_buffer.hpp
 * \brief Sliding-window generators: stride, dilation and zero padding of a conv layer.
 *
 * Both turn a stream of input pixels (all Cin channels of one pixel per element, raster
 * order) into a stream of window chunks, L = columns * Cin / Wc per group of Q = `pixels`
 * adjacent output pixels (pixel_groups.hpp; Q = 1: the k columns of one window): chunk
 * `c = j * (Cin/Wc) + cw` holds channels `cw*Wc .. cw*Wc+Wc-1` of the k taps (ky = 0..k-1)
 * of the group's window column j, element `ky*Wc + w`; padding reads as the integer 0
 * (activations have no zero point, so zero padding is exact). The engines (sparse_conv.hpp,
 * dense_conv.hpp) take the chunks in that order.
 *
 * `line_buffer` (k > 1) keeps SLOTS = SPAN + S image rows (SPAN = d*(k-1)+1 rows under one
 * window, S = stride), one row memory each, used circularly (image row y in slot y mod
 * SLOTS), as `W * Cin/Wc` words of Wc channels: rows are deep sequences of narrow words that
 * fill BRAM/URAM by depth. Like finn-hlslib's ConvolutionInputGenerator it has more rows
 * than one window spans -- the S rows the next output row adds are written *while* the
 * current output row is read -- but its writer and reader are not tied to one schedule:
 * each clock the writer stores one word if an input pixel is there (a non-blocking read) and
 * its row's slot is free (the reader is past the row that slot held), and the reader sends
 * one chunk if the rows under the window are complete and the output FIFO has room (a
 * non-blocking write). So neither side ever waits for the other's pace: the layer before
 * is never blocked while the engine works through a row, and the engine never waits while
 * rows arrive, as long as the SLOTS rows allow. A row counts as complete for the reader two
 * clocks after its last word is written (the dependence distance the loop declares).
 *
 * The vertical walk (stride, dilation, padding, rows of a frame) is `row_walk<CONFIG_T>`: the
 * layer's own, or, where the rows are kept in DDR (row_memory.hpp), that of the image
 * `rows_through_memory` sends, K rows per output row, each window's rows one after another.
 *
 * `pointwise_window` (k = 1) stores no rows: each padded position on the output grid emits
 * Cin/Wc chunks (its pixel's read in the first of those clocks), each position off the grid
 * takes one clock (a pixel read and dropped, or a padding position skipped).
 */
#ifndef SENTEI_LINE_BUFFER_HPP
#define SENTEI_LINE_BUFFER_HPP

#include "pixel_groups.hpp"
#include "types.hpp"

namespace sentei {

/// The vertical walk of a window generator over its input rows: the layer's own stride,
/// dilation, padding and rows (specialized in row_memory.hpp for rows kept in DDR).
template <class CONFIG_T>
struct row_walk {
    static const int stride = CONFIG_T::stride;
    static const int dilation = CONFIG_T::dilation;
    static const int padding = CONFIG_T::padding;
    static const int rows = CONFIG_T::in_height;
};

/// Image rows output row `yo` needs written: clamp(yo*S - p + SPAN, 0, rows).
inline int rows_ready(int yo, int stride, int padding, int span, int rows) {
#pragma HLS INLINE  // a few adders
    int r = yo * stride - padding + span;
    return r < 0 ? 0 : (r > rows ? rows : r);
}

/**
 * \brief The ring of SLOTS row memories a window generator walks: row r (numbered across
 * frames, row y of frame f is f*H + y) in slot r mod SLOTS, kept by counters, not a divider.
 * \tparam S, P vertical stride and padding; H rows a frame; HO output rows a frame
 */
template <int S, int P, int H, int HO, int SLOTS>
struct row_ring {
    static const unsigned first = (unsigned)((((-P) % SLOTS) + SLOTS) % SLOTS);  ///< slot of image row -p (window row 0 of yo = 0)
    static const int delta = H - (HO - 1) * S;  ///< rows from a frame's last window row 0 to the next frame's first
    static const unsigned next_frame = (unsigned)(((delta % SLOTS) + SLOTS) % SLOTS);  ///< ... in slots
    /// `slot` moved on by `step` < SLOTS slots: one conditional wrap
    static unsigned advance(unsigned slot, unsigned step) {
#pragma HLS INLINE  // an adder and a compare
        return slot + step >= (unsigned)SLOTS ? slot + step - SLOTS : slot + step;
    }
};

/**
 * \brief Stream of input pixels -> stream of window chunks (k > 1), `frames` frames.
 * \tparam CONFIG_T layer configuration: `cin`, `kernel`, `stride`, `dilation`, `padding`,
 *         `in_height`, `in_width`, `out_height`, `out_width`, `in_t`, `chunk_channels`,
 *         `pixels`, `line_slots` (= SPAN + S of the vertical walk), `line_depth`
 * \param lines the row memories, declared (and bound to BRAM, URAM or LUTRAM) by the
 *        generated caller in network.h
 */
template <class CONFIG_T>
void line_buffer(hls::stream<in_pixel_t<CONFIG_T> >& in, hls::stream<chunk_t<CONFIG_T> >& out,
                 line_word_t<CONFIG_T> lines[CONFIG_T::line_slots][CONFIG_T::line_depth], unsigned frames) {
    static const int K = CONFIG_T::kernel;
    static const int D = row_walk<CONFIG_T>::dilation;  // vertical; the columns are the group's (pixel_groups.hpp)
    static const int S = row_walk<CONFIG_T>::stride;
    static const int P = row_walk<CONFIG_T>::padding;
    static const int H = row_walk<CONFIG_T>::rows;
    static const int SX = CONFIG_T::stride;  // horizontal
    static const int PX = CONFIG_T::padding;
    static const int WI = CONFIG_T::in_width;
    static const int HO = CONFIG_T::out_height;
    typedef pixel_blocks<CONFIG_T> blocks;     // a row: blocks of M groups of Q pixels, M apart
    static const int SPAN = D * (K - 1) + 1;  // rows one window covers
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned CW = CONFIG_T::cin / WC;  // words per pixel
    typedef layer_group<CONFIG_T> group;
    static const unsigned COLS = group::columns;   // window columns per group
    static const unsigned L = COLS * CW;           // chunks per group
    static constexpr group_offsets<group> OFF = make_group_offsets<group>();  // column j's offset: a ROM of COLS entries
    static const unsigned ROW_WORDS = WI * CW;      // words per image row
    static const int SLOTS = CONFIG_T::line_slots;
    typedef row_ring<S, P, H, HO, SLOTS> ring;
    static_assert(K > 1, "line_buffer is for k > 1; k = 1 uses pointwise_window");
    static_assert(SLOTS == SPAN + S, "line_slots must be d*(k-1) + 1 + stride");

    // Rows are numbered across frames (row y of frame f is f*H + y), so the writer takes the next
    // frame's rows while the reader finishes this frame's last output rows: no bubble between frames.
    in_pixel_t<CONFIG_T> px;               // the pixel being written, word by word
    unsigned wf = 0;                       // frame being written (frames: all written)
    int wy = 0;                            // its image row
    unsigned wn = 0, wslot = 0, waddr = 0;  // word of the pixel, slot of its row, address in the row
    int done_rows = 0, done_d1 = 0, done_d2 = 0;  // complete rows (across frames), as the reader sees them 2 clocks later
    unsigned rf = 0;                       // frame being read (frames: all read)
    int yo = 0;                            // its output row
    unsigned xb = 0, xr = 0;               // block of the output row, group of the block
    unsigned c = 0, j = 0, cw = 0;         // chunk (column j, word cw) of the group's window
    unsigned base = ring::first;           // slot of window row 0 of output row yo
    int first = -P;                        // row (across frames) of window row 0 of output row yo
    int need = rows_ready(0, S, P, SPAN, H);  // rows (across frames) output row yo needs complete
walk:
    while (wf < frames || rf < frames) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1  // data-dependent; sentei perf --simulate gives its clocks
#pragma HLS PIPELINE II = 1  // one word written and one chunk read per clock, each when it can
#pragma HLS DEPENDENCE variable = lines type = intra dependent = false  // a clock writes a row its reads do not touch (a free slot)
#pragma HLS DEPENDENCE variable = lines type = inter direction = RAW dependent = true distance = 3  // a row is read from 2 clocks after its last word
        // the writer: the row's slot is free when the reader no longer needs the row it held
        bool slot_free = rf >= frames || (int)(wf * H) + wy < first + SLOTS;
        bool have = wn != 0;
        if (!have && wf < frames && slot_free) have = in.read_nb(px);
        bool wrote_row = false;
        if (have) {
            line_word_t<CONFIG_T> w;
            for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // Wc channels form one word
                w.data[u] = px.data[wn * WC + u];
            }
            lines[wslot][waddr] = w;
            wn = wn + 1 == CW ? 0 : wn + 1;
            if (++waddr == ROW_WORDS) {
                waddr = 0;
                wslot = ring::advance(wslot, 1);
                wrote_row = true;
                if (++wy == H) {
                    wy = 0;
                    wf++;
                }
            }
        }
        // the reader: the rows under output row yo are complete (as of 2 clocks ago)
        if (rf < frames && done_d2 >= need && !out.full()) {
            int col = (int)((xb * blocks::size + xr) * SX) - PX + (int)OFF.value[j];  // image column of the group's column j
            bool col_ok = col >= 0 && col < WI;
            unsigned addr = col_ok ? (unsigned)col * CW + cw : 0;
            line_word_t<CONFIG_T> row_out[SLOTS];
            for (int b = 0; b < SLOTS; b++) {
#pragma HLS UNROLL  // every row memory reads the same address: one read port each, no conflict
                row_out[b] = lines[b][addr];
            }
            chunk_t<CONFIG_T> chunk;
            for (int ky = 0; ky < K; ky++) {
#pragma HLS UNROLL  // the k taps of the column leave together
                int row = yo * S - P + ky * D;  // image row of window row ky (outside 0..H-1: padding)
                bool ok = col_ok && row >= 0 && row < H;
                unsigned r = ring::advance(base, ky * D);  // ky*D < SPAN <= SLOTS
                for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // Wc channels of the tap
                    chunk.data[ky * WC + u] = ok ? row_out[r].data[u] : typename CONFIG_T::in_t(0);
                }
            }
            out.write(chunk);
            if (++cw == CW) {
                cw = 0;
                j++;
            }
            if (++c == L) {
                c = j = 0;
                bool row_done = false;
                if (++xr == CONFIG_T::spacing) {
                    xr = 0;
                    if (++xb == blocks::per_row) {
                        xb = 0;
                        row_done = true;
                    }
                }
                if (row_done) {
                    unsigned step = S;  // slots to the next output row's window row 0
                    if (++yo == HO) {
                        yo = 0;
                        rf++;
                        step = ring::next_frame;
                        first += ring::delta;
                    } else {
                        first += S;
                    }
                    base = ring::advance(base, step);
                    need = (int)(rf * H) + rows_ready(yo, S, P, SPAN, H);
                }
            }
        }
        done_d2 = done_d1;
        done_d1 = done_rows;
        if (wrote_row) done_rows++;
    }
}

/**
 * \brief Stream of input pixels -> stream of window chunks (k = 1), `frames` frames.
 * \tparam CONFIG_T layer configuration (`window_iterations` clocks per frame)
 */
template <class CONFIG_T>
void pointwise_window(hls::stream<in_pixel_t<CONFIG_T> >& in, hls::stream<chunk_t<CONFIG_T> >& out,
                      unsigned frames) {
    static const int S = CONFIG_T::stride;
    static const int P = CONFIG_T::padding;
    static const int H = CONFIG_T::in_height;
    static const int WI = CONFIG_T::in_width;
    static const int WP = WI + 2 * P;
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned CW = CONFIG_T::cin / WC;
    static_assert(CONFIG_T::kernel == 1, "pointwise_window is for k = 1");

frames:
    for (unsigned fr = 0; fr < frames; fr++) {
        in_pixel_t<CONFIG_T> px;
        int yp = 0, xp = 0;  // padded position
        unsigned cw = 0;     // chunk of the position
    walk:
        for (unsigned it = 0; it < CONFIG_T::window_iterations; it++) {
#pragma HLS PIPELINE II = 1  // one chunk (or one position off the grid) per clock
            bool inside = yp >= P && yp < P + H && xp >= P && xp < P + WI;
            bool grid = yp % S == 0 && xp % S == 0 && yp / S < (int)CONFIG_T::out_height &&
                        xp / S < (int)CONFIG_T::out_width;
            if (inside && cw == 0) px = in.read();
            bool next = true;
            if (grid) {
                chunk_t<CONFIG_T> chunk;
                for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // a 1x1 window is the pixel itself, zero in the padding
                    chunk.data[u] = inside ? px.data[cw * WC + u] : typename CONFIG_T::in_t(0);
                }
                out.write(chunk);
                next = ++cw == CW;
                if (next) cw = 0;
            }
            if (next && ++xp == WP) {
                xp = 0;
                yp++;
            }
        }
    }
}

}  // namespace sentei

#endif
