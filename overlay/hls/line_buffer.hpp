/**
 * \file line_buffer.hpp
 * \brief Sliding-window generators: stride, dilation and zero padding of a conv layer.
 *
 * Both turn a stream of input pixels (all Cin channels of one pixel per element, raster
 * order) into a stream of window chunks, L = k * Cin / Wc per output pixel: chunk
 * `c = kx * (Cin/Wc) + cw` holds channels `cw*Wc .. cw*Wc+Wc-1` of the k taps (ky = 0..k-1)
 * of window column kx, element `ky*Wc + w`; padding reads as the integer 0 (activations have
 * no zero point, so zero padding is exact). The engines (sparse_conv.hpp, dense_conv.hpp)
 * take the chunks in that order.
 *
 * `line_buffer` (k > 1) follows finn-hlslib's ConvolutionInputGenerator: it keeps
 * SLOTS = SPAN + S image rows (SPAN = d*(k-1)+1 rows under one window, S = stride), one row
 * memory each, used circularly (image row y in slot y mod SLOTS), as `W * Cin/Wc` words of
 * Wc channels: rows are deep sequences of narrow words that fill BRAM/URAM by depth. The S
 * rows beyond a window's span are where the next output row's new input rows land *while*
 * the current output row is read out, so one loop iteration writes one word *and* reads one
 * chunk: the producer is never blocked by the reads, nor the consumer by the writes.
 *
 * Its schedule is static, by output row ("phase"): phase -1 writes the rows the first output
 * row needs; phase yo (0 <= yo < Ho) reads the Wo*L chunks of output row yo while it writes
 * the image rows output row yo+1 needs beyond those (the rest of the image in the last
 * phase). A phase lasts max(Wo*L, writes + 2) clocks, the two spare clocks keep a word's
 * write >= 3 iterations before its first read (the dependence distance the loop declares).
 * rows_ready(yo) = clamp(yo*S - p + SPAN, 0, H) rows are written when phase yo starts. The
 * trip count per frame is the compile-time `window_iterations` (overlay/perf.py computes
 * the same sum; a wrong one would leave or miss stream data and fail the bit-exact tests).
 *
 * `pointwise_window` (k = 1) stores no rows: each padded position on the output grid emits
 * Cin/Wc chunks (its pixel's read in the first of those clocks), each position off the grid
 * takes one clock (a pixel read and dropped, or a padding position skipped).
 */
#ifndef SENTEI_LINE_BUFFER_HPP
#define SENTEI_LINE_BUFFER_HPP

#include "types.hpp"

namespace sentei {

/// Image rows written before output row `yo` (of `rows` in all): clamp(yo*S - p + SPAN, 0, rows).
inline int rows_ready(int yo, int stride, int padding, int span, int rows) {
#pragma HLS INLINE  // a few adders at a phase boundary
    int r = yo * stride - padding + span;
    return r < 0 ? 0 : (r > rows ? rows : r);
}

/**
 * \brief Stream of input pixels -> stream of window chunks (k > 1), `frames` frames.
 * \tparam CONFIG_T layer configuration: `cin`, `kernel`, `stride`, `dilation`, `padding`,
 *         `in_height`, `in_width`, `out_height`, `out_width`, `in_t`, `chunk_channels`,
 *         `line_slots` (= SPAN + S), `line_depth`, `window_iterations`
 * \param lines the row memories, declared (and bound to BRAM, URAM or LUTRAM) by the
 *        generated caller in network.h
 */
template <class CONFIG_T>
void line_buffer(hls::stream<in_pixel_t<CONFIG_T> >& in, hls::stream<chunk_t<CONFIG_T> >& out,
                 line_word_t<CONFIG_T> lines[CONFIG_T::line_slots][CONFIG_T::line_depth], unsigned frames) {
    static const int K = CONFIG_T::kernel;
    static const int D = CONFIG_T::dilation;
    static const int S = CONFIG_T::stride;
    static const int P = CONFIG_T::padding;
    static const int H = CONFIG_T::in_height;
    static const int WI = CONFIG_T::in_width;
    static const int HO = CONFIG_T::out_height;
    static const int WO = CONFIG_T::out_width;
    static const int SPAN = D * (K - 1) + 1;  // rows/columns one window covers
    static const unsigned WC = CONFIG_T::chunk_channels;
    static const unsigned CW = CONFIG_T::cin / WC;  // words per pixel
    static const unsigned L = K * CW;               // chunks per window
    static const unsigned ROW_WORDS = WI * CW;      // words per image row
    static const unsigned READS = WO * L;           // chunks per output row
    static const int SLOTS = CONFIG_T::line_slots;
    static const int FIRST = (((-P) % SLOTS) + SLOTS) % SLOTS;  // slot of image row -p (window row 0 of yo = 0)
    static_assert(K > 1, "line_buffer is for k > 1; k = 1 uses pointwise_window");
    static_assert(SLOTS == SPAN + S, "line_slots must be d*(k-1) + 1 + stride");

frames:
    for (unsigned fr = 0; fr < frames; fr++) {
        in_pixel_t<CONFIG_T> px;  // the pixel being written, word by word
        int yo = -1;              // phase: output row being read (-1: the rows before the first)
        unsigned t = 0;           // clock within the phase
        unsigned writes = (unsigned)rows_ready(0, S, P, SPAN, H) * ROW_WORDS;  // words to write in this phase
        unsigned length = writes ? writes + 2 : 0;  // clocks of this phase (phase -1 may have none)
        unsigned wn = 0, wslot = 0, waddr = 0;  // write: word of the pixel, slot of its row, address in the row
        unsigned xo = 0, c = 0, kx = 0, cw = 0;  // read: output column, chunk (kx, cw) of its window
        unsigned base = FIRST;                   // slot of window row 0 (image row yo*S - p, maybe padding)
    walk:
        for (unsigned it = 0; it < CONFIG_T::window_iterations; it++) {
#pragma HLS PIPELINE II = 1  // one word written and one chunk read per clock
#pragma HLS DEPENDENCE variable = lines type = intra dependent = false  // a clock writes a row its reads do not touch (rows beyond the window)
#pragma HLS DEPENDENCE variable = lines type = inter direction = RAW dependent = true distance = 3  // a phase ends >= 2 clocks after its last write; its words are read from the next phase on
            if (t == length) {  // phase boundary; every phase from 0 on lasts >= Wo*L clocks, so one step
                yo++;
                t = 0;
                unsigned next = yo + 1 < HO ? (unsigned)rows_ready(yo + 1, S, P, SPAN, H) : (unsigned)H;
                writes = (next - (unsigned)rows_ready(yo, S, P, SPAN, H)) * ROW_WORDS;
                length = READS > writes + 2 ? READS : writes + 2;
                if (yo > 0) base = base + S >= (unsigned)SLOTS ? base + S - SLOTS : base + S;
            }
            if (t < writes) {  // write one word of the next input rows
                if (wn == 0) px = in.read();
                line_word_t<CONFIG_T> w;
                for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // Wc channels form one word
                    w.data[u] = px.data[wn * WC + u];
                }
                lines[wslot][waddr] = w;
                wn = wn + 1 == CW ? 0 : wn + 1;
                if (++waddr == ROW_WORDS) {
                    waddr = 0;
                    wslot = wslot + 1 == (unsigned)SLOTS ? 0 : wslot + 1;
                }
            }
            if (yo >= 0 && t < READS) {  // read one chunk of output pixel (yo, xo)
                int col = (int)(xo * S) - P + (int)(kx * D);  // image column of window column kx
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
                    int row = yo * S - P + ky * D;  // image row of window row ky
                    bool ok = col_ok && row >= 0 && row < H;
                    unsigned r = base + ky * D;  // < 2*SLOTS: one conditional wrap
                    if (r >= (unsigned)SLOTS) r -= SLOTS;
                    for (unsigned u = 0; u < WC; u++) {
#pragma HLS UNROLL  // Wc channels of the tap
                        chunk.data[ky * WC + u] = ok ? row_out[r].data[u] : typename CONFIG_T::in_t(0);
                    }
                }
                out.write(chunk);
                if (++cw == CW) {
                    cw = 0;
                    kx++;
                }
                if (++c == L) {
                    c = kx = 0;
                    xo = xo + 1 == (unsigned)WO ? 0 : xo + 1;
                }
            }
            t++;
        }
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
