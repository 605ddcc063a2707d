/**
 * \file line_buffer.hpp
 * \brief Channel-serial line buffer: stride, dilation and zero padding of a conv layer.
 *
 * The block walks the *padded* input (H + 2p rows by W + 2p columns) in raster order. A
 * position inside the image consumes one pixel from the input stream and stores it in the
 * row memory of its image row as `Cin / Wc` words of Wc channels (`line_word_t`, Wc =
 * `chunk_channels`): rows are deep sequences of narrow words, so a row of 128 channels
 * fills BRAM/URAM by depth instead of needing a 1,024-bit-wide word per column. There are
 * SPAN = d*(k-1) + 1 row memories, used circularly (image row y lives in slot y mod SPAN).
 * Padding is never stored: a read whose row or column falls outside the image yields the
 * integer 0 (activations have no zero point, so zero padding is exact).
 *
 * When a position is the bottom-right corner of an output pixel's receptive field (both
 * coordinates >= SPAN-1 and on the stride grid), the window leaves as L = k * Cin / Wc
 * chunks: chunk `c = kx * (Cin/Wc) + cw` holds channels `cw*Wc .. cw*Wc+Wc-1` of the k taps
 * (ky = 0..k-1) of window column kx, element `ky*Wc + w`. The engine writes chunk c into
 * slot c of its window banks `ky*Wc + w` (sparse_conv.hpp).
 *
 * One pipelined loop, one action per clock: write one word of the current pixel, or read
 * one chunk (the k taps come from k different row memories, read in the same clock), or
 * step over a border position that needs neither. Its trip count is the compile-time
 * `window_iterations` = H*W*Wr + Ho*Wo*L + (border positions off the output grid), Wr =
 * Cin/Wc words per pixel (1 for k = 1, which stores nothing) -- the figure of
 * overlay/perf.py.
 *
 * Invariant: while padded row yp is walked, `slot` = (yp - p) mod SPAN, the slot of its image
 * row; the window row ky of the output pixel completing at (yp, xp) is image row
 * yp - p - (SPAN-1) + ky*d, in slot (slot + 1 + ky*d) mod SPAN.
 */
#ifndef SENTEI_LINE_BUFFER_HPP
#define SENTEI_LINE_BUFFER_HPP

#include "types.hpp"

namespace sentei {

/**
 * \brief Stream of input pixels -> stream of window chunks, L per output pixel.
 * \tparam CONFIG_T layer configuration: `cin`, `kernel`, `stride`, `dilation`, `padding`,
 *         `in_height`, `in_width`, `in_t`, `chunk_channels`, `line_slots`, `line_depth`,
 *         `window_iterations`
 * \param lines the row memories, declared (and bound to BRAM, URAM or LUTRAM) by the
 *        generated caller in network.h
 */
template <class CONFIG_T>
void line_buffer(hls::stream<in_pixel_t<CONFIG_T> >& in, hls::stream<chunk_t<CONFIG_T> >& out,
                 line_word_t<CONFIG_T> lines[CONFIG_T::line_slots][CONFIG_T::line_depth]) {
    static const int K = CONFIG_T::kernel;
    static const int D = CONFIG_T::dilation;
    static const int S = CONFIG_T::stride;
    static const int P = CONFIG_T::padding;
    static const int H = CONFIG_T::in_height;
    static const int WI = CONFIG_T::in_width;
    static const int SPAN = D * (K - 1) + 1;  // rows/columns one window covers
    static const int WP = WI + 2 * P;
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned CW = CONFIG_T::cin / WC;     // words per pixel
    static const unsigned WR = K > 1 ? CW : 1;         // write-phase clocks per pixel (k = 1: latch only)
    static const unsigned L = K * CW;                  // chunks per window
    static const unsigned SLOTS = CONFIG_T::line_slots;  // = SPAN for k > 1

    in_pixel_t<CONFIG_T> px;  // the current pixel
    int yp = 0, xp = 0;
    unsigned slot = (SPAN - P % SPAN) % SPAN;  // (yp - p) mod SPAN at yp = 0
    unsigned n = 0, kx = 0, cw = 0;            // word of the write phase; chunk n = (kx, cw) of the read phase
    bool reading = false;
walk:
    for (unsigned it = 0; it < CONFIG_T::window_iterations; it++) {
#pragma HLS PIPELINE II = 1  // one word written, one chunk read or one border position skipped per clock
#pragma HLS DEPENDENCE variable = lines type = inter direction = RAW dependent = true distance = 3  // a word is read >= k*Cin/Wc >= 3 clocks after it is written
        bool inside = yp >= P && yp < P + H && xp >= P && xp < P + WI;
        bool grid = yp + 1 >= SPAN && xp + 1 >= SPAN && (yp + 1 - SPAN) % S == 0 && (xp + 1 - SPAN) % S == 0;
        bool advance = false;
        if (inside && !reading) {
            if (n == 0) px = in.read();
            if (K > 1) {
                line_word_t<CONFIG_T> w;
                for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // Wc channels form one word
                    w.data[u] = px.data[n * WC + u];
                }
                lines[slot][(xp - P) * CW + n] = w;
            }
            if (++n == WR) {
                n = 0;
                if (grid) {
                    reading = true;
                } else {
                    advance = true;
                }
            }
        } else if (grid) {
            chunk_t<CONFIG_T> c;
            if (K == 1) {
                for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // a 1x1 window is the pixel itself, zero in the padding
                    c.data[u] = inside ? px.data[cw * WC + u] : typename CONFIG_T::in_t(0);
                }
            } else {
                int col = xp - P - (SPAN - 1) + (int)kx * D;  // image column of window column kx
                bool col_ok = col >= 0 && col < WI;
                unsigned addr = col_ok ? (unsigned)col * CW + cw : 0;
                line_word_t<CONFIG_T> row_out[SLOTS];
                for (unsigned b = 0; b < SLOTS; b++) {
#pragma HLS UNROLL  // every row memory reads the same address: one read port each, no conflict
                    row_out[b] = lines[b][addr];
                }
                for (int ky = 0; ky < K; ky++) {
#pragma HLS UNROLL  // the k taps of the column leave together
                    int row = yp - P - (SPAN - 1) + ky * D;  // image row of window row ky
                    bool ok = col_ok && row >= 0 && row < H;
                    unsigned r = slot + 1 + ky * D;  // < 2*SPAN: one conditional wrap
                    if (r >= SLOTS) r -= SLOTS;
                    for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // Wc channels of the tap
                        c.data[ky * WC + u] = ok ? row_out[r].data[u] : typename CONFIG_T::in_t(0);
                    }
                }
            }
            out.write(c);
            if (++cw == CW) {
                cw = 0;
                kx++;
            }
            if (++n == L) {
                n = 0;
                kx = 0;
                reading = false;
                advance = true;
            }
        } else {
            advance = true;  // a border position off the output grid: nothing to store or emit
        }
        if (advance && ++xp == WP) {
            xp = 0;
            yp++;
            slot = slot + 1 == SLOTS ? 0 : slot + 1;
        }
    }
}

}  // namespace sentei

#endif
