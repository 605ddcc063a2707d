/**
 * \file line_buffer.hpp
 * \brief Line buffer and sliding window: stride, dilation and zero padding of a conv layer.
 *
 * The block walks the *padded* input (H + 2p rows by W + 2p columns) in raster order, one
 * position per cycle. Positions inside the image consume one pixel from the input stream;
 * positions in the border are the integer 0 (activations have no zero point, so zero
 * padding is exact). Each position is written into a line buffer of SPAN = d*(k-1) + 1
 * rows used circularly, and a k x SPAN register array keeps the last SPAN columns of the
 * k window rows (rows y*s + ky*d). When the position is the bottom-right corner of an
 * output pixel's receptive field -- both coordinates >= SPAN-1 and on the stride grid --
 * the k*k taps `cols[ky][kx*d]` leave as one window.
 *
 * Invariant: when padded position (yp, xp) is processed, line-buffer slot
 * `(slot + 1 + ky*d) mod SPAN` holds padded row `yp - (SPAN-1) + ky*d` for every ky < k-1,
 * and the current row is `slot`; so the k taps of one column come from k different slots.
 */
#ifndef SENTEI_LINE_BUFFER_HPP
#define SENTEI_LINE_BUFFER_HPP

#include "types.hpp"

namespace sentei {

/**
 * \brief Stream of input pixels -> stream of k x k windows, one per output pixel.
 * \tparam CONFIG_T layer configuration: `cin`, `kernel`, `stride`, `dilation`, `padding`,
 *         `in_height`, `in_width`, `in_t` (`out_height`, `out_width` follow from them).
 */
template <class CONFIG_T>
void sliding_window(hls::stream<in_pixel_t<CONFIG_T> >& in, hls::stream<window_t<CONFIG_T> >& out) {
    static const unsigned K = CONFIG_T::kernel;
    static const unsigned D = CONFIG_T::dilation;
    static const unsigned S = CONFIG_T::stride;
    static const unsigned P = CONFIG_T::padding;
    static const unsigned SPAN = D * (K - 1) + 1;  // rows/columns one window covers
    static const unsigned HP = CONFIG_T::in_height + 2 * P;
    static const unsigned WP = CONFIG_T::in_width + 2 * P;

    in_pixel_t<CONFIG_T> lines[SPAN][WP];
#pragma HLS ARRAY_PARTITION variable = lines dim = 1 complete  // one memory per row: k taps read per cycle
#pragma HLS DEPENDENCE variable = lines type = inter false     // a slot is read only in rows after it was written
    in_pixel_t<CONFIG_T> cols[K][SPAN];
#pragma HLS ARRAY_PARTITION variable = cols dim = 0 complete  // shift register: every tap read each cycle

    in_pixel_t<CONFIG_T> zero;
    for (unsigned c = 0; c < CONFIG_T::cin; c++) {
#pragma HLS UNROLL  // a constant: the padding pixel
        zero.data[c] = 0;
    }

    unsigned slot = 0;  // line-buffer slot of the current padded row (yp mod SPAN)
rows:
    for (unsigned yp = 0; yp < HP; yp++) {
    columns:
        for (unsigned xp = 0; xp < WP; xp++) {
#pragma HLS PIPELINE II = 1  // one padded position per cycle
            bool inside = yp >= P && yp < P + CONFIG_T::in_height && xp >= P && xp < P + CONFIG_T::in_width;
            in_pixel_t<CONFIG_T> px = inside ? in.read() : zero;
            lines[slot][xp] = px;

            for (unsigned ky = 0; ky < K; ky++) {
#pragma HLS UNROLL  // the k rows of the window shift together
                for (unsigned c = 0; c + 1 < SPAN; c++) {
#pragma HLS UNROLL  // register shift by one column
                    cols[ky][c] = cols[ky][c + 1];
                }
                if (ky == K - 1) {
                    cols[ky][SPAN - 1] = px;  // the bottom window row is the current row
                } else {
                    unsigned r = slot + 1 + ky * D;  // < 2*SPAN: one conditional wrap
                    if (r >= SPAN) r -= SPAN;
                    cols[ky][SPAN - 1] = lines[r][xp];
                }
            }

            bool on_grid = yp + 1 >= SPAN && xp + 1 >= SPAN && (yp + 1 - SPAN) % S == 0 && (xp + 1 - SPAN) % S == 0;
            if (on_grid) {
                window_t<CONFIG_T> w;
                for (unsigned ky = 0; ky < K; ky++) {
#pragma HLS UNROLL  // the whole window leaves in one stream word
                    for (unsigned kx = 0; kx < K; kx++) {
#pragma HLS UNROLL  // k taps of a row, all at once
                        w.data[ky * K + kx] = cols[ky][kx * D];
                    }
                }
                out.write(w);
            }
        }
        slot = slot + 1 == SPAN ? 0 : slot + 1;
    }
}

}  // namespace sentei

#endif
