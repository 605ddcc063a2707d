/**
 * \file row_memory.hpp
 * \brief Line-buffer rows kept in DDR: a layer whose rows do not fit on chip.
 *
 * A dilated layer's window spans SPAN = d*(k-1)+1 image rows, and its line buffer keeps
 * SPAN + S of them on chip (line_buffer.hpp): 18 rows of 60 x 128 channels for the default
 * model's d = 8 layer, more BRAM than a PYNQ-Z2 has to spare. Its window only ever reads k of
 * them at once, so here the rows live in DDR and only the k rows of the output row being
 * read (and the k of the next, arriving) stay on chip:
 *
 *   rows_through_memory  one process, one m_axi port of its own (its own buffer region), a
 *                        writer and a reader like line_buffer's: each turn it writes an input
 *                        pixel into a ring of SPAN + S rows in DDR when one is there and its
 *                        row's slot is free (the reader is past the row the slot held) -- the
 *                        layer before is never kept waiting for more than one read --, else
 *                        it reads a pixel of the window's rows back when those rows are
 *                        written and the window generator has room (a pixel of a padding row
 *                        is a zero, no read) and sends them, output row by output row, as k
 *                        rows of an image of out_height * k rows. A pixel is one short burst of
 *                        `pixel_beats` 64-bit words each way;
 *   line_buffer<rows_config<CONFIG_T> >
 *                        the ordinary window generator over that image: stride k, dilation
 *                        1, no vertical padding, so its slots hold 2k rows (line_slots of
 *                        rows_config) -- its reader takes one output row's k rows while its
 *                        writer stores the next output row's.
 *
 * Writes and reads are one process on one pointer: a read of a row follows the writes of its
 * pixels in the code, a data dependence through `mem` that Vitis HLS keeps (it preserves the
 * sequential semantics of accesses to one argument), and C-simulation, which runs dataflow
 * processes one after another, computes what the hardware does (a ring one row shorter fails
 * the corner models). The performance model counts a written pixel as `pixel_beats` + 2
 * clocks and a read one as `pixel_beats` + 2 + the read latency (perf.row_memory_cycles); the
 * simulator runs the turns.
 *
 * A DDR word (`row_word_t`) is 64 bits, the width of a Zynq-7000 HP port; a pixel of Cin
 * channels takes `pixel_beats` = ceil(Cin / (64 / bits)) words, channel c in word
 * c / (64/bits) at bit (c % (64/bits)) * bits.
 */
#ifndef SENTEI_ROW_MEMORY_HPP
#define SENTEI_ROW_MEMORY_HPP

#include "line_buffer.hpp"
#include "types.hpp"

namespace sentei {

/// One word of a layer's row memory in DDR.
typedef ap_uint<64> row_word_t;

/// How layer CONFIG_T's rows lie in DDR.
template <class CONFIG_T>
struct row_layout {
    static const unsigned bits = CONFIG_T::in_t::width;
    static const unsigned per_beat = 64 / bits;                                  ///< channels a word
    static const unsigned pixel_beats = (CONFIG_T::cin + per_beat - 1) / per_beat;  ///< words a pixel
    static const unsigned row_beats = CONFIG_T::in_width * pixel_beats;          ///< words a row
    static const unsigned span = CONFIG_T::dilation * (CONFIG_T::kernel - 1) + 1;  ///< rows one window covers
    static const unsigned slots = span + CONFIG_T::stride;                       ///< rows of the ring
    static const unsigned words = slots * row_beats;                             ///< the layer's region of the buffer
};

/// The image `rows_through_memory` sends to the window generator: k rows per output row.
template <class CONFIG_T>
struct rows_config : CONFIG_T {
    static const unsigned line_slots = 2 * CONFIG_T::kernel;  ///< one output row's k rows read, the next's written
};

/// Its vertical walk: each window's k rows one after another, none shared, no padding.
template <class CONFIG_T>
struct row_walk<rows_config<CONFIG_T> > {
    static const int stride = CONFIG_T::kernel;
    static const int dilation = 1;
    static const int padding = 0;
    static const int rows = CONFIG_T::out_height * CONFIG_T::kernel;
};

/**
 * \brief Stream of input pixels -> DDR ring -> stream of the k rows of every output row.
 * \tparam CONFIG_T layer configuration (k > 1)
 * \param mem the layer's region of the row buffer (row_layout::words words), its own m_axi port
 */
template <class CONFIG_T>
void rows_through_memory(hls::stream<in_pixel_t<CONFIG_T> >& in, row_word_t* mem,
                         hls::stream<in_pixel_t<CONFIG_T> >& out, unsigned frames) {
    typedef row_layout<CONFIG_T> layout;
    typedef typename CONFIG_T::in_t in_t;
    static const int K = CONFIG_T::kernel;
    static const int S = CONFIG_T::stride;
    static const int D = CONFIG_T::dilation;
    static const int P = CONFIG_T::padding;
    static const int H = CONFIG_T::in_height;
    static const int WI = CONFIG_T::in_width;
    static const int HO = CONFIG_T::out_height;
    static const int SPAN = layout::span;
    static const int SLOTS = layout::slots;
    static const unsigned BEATS = layout::pixel_beats;
    static const unsigned ROW = layout::row_beats;
    static const unsigned PER = layout::per_beat;
    static const unsigned BITS = layout::bits;
    static_assert(K > 1, "rows in DDR are for k > 1");
    static_assert(BITS * PER <= 64, "a channel wider than a DDR word");
    typedef row_ring<S, P, H, HO, SLOTS> ring;  // the slots as line_buffer counts them

    // rows are numbered across frames (row y of frame f is f*H + y), as in line_buffer
    unsigned wf = 0;                   // frame being written (frames: all written)
    int wy = 0, wx = 0;                // the next input pixel's row and column
    int written = 0;                   // complete rows, across frames
    unsigned wslot = 0;                // the slot of row wy of frame wf
    unsigned rf = 0;                   // frame being read (frames: all read)
    int yo = 0, ky = 0, rx = 0;        // the next pixel sent: output row, its window row, column
    int first = -P;                    // row (across frames) of window row 0 of output row yo
    unsigned base = ring::first;       // its slot
    int need = rows_ready(0, S, P, SPAN, H);  // rows (across frames) output row yo needs complete
walk:
    while (wf < frames || rf < frames) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1  // data-dependent; sentei perf --simulate gives its clocks
        // the writer: an input pixel, if there is one and its row's slot is free (the reader no
        // longer needs the row SLOTS before it)
        bool slot_free = rf >= frames || (int)(wf * H) + wy < first + SLOTS;
        in_pixel_t<CONFIG_T> px;
        if (wf < frames && slot_free && in.read_nb(px)) {
            const unsigned at = wslot * ROW + (unsigned)wx * BEATS;
        write_beats:
            for (unsigned b = 0; b < BEATS; b++) {
#pragma HLS PIPELINE II = 1  // one 64-bit word a clock, consecutive addresses: a pixel is one write burst
                row_word_t w = 0;
                for (unsigned u = 0; u < PER; u++) {
#pragma HLS UNROLL  // the channels of one word
                    unsigned c = b * PER + u;
                    if (c < CONFIG_T::cin) w.range(u * BITS + BITS - 1, u * BITS) = px.data[c].range(BITS - 1, 0);
                }
                mem[at + b] = w;
            }
            if (++wx == WI) {
                wx = 0;
                written++;
                wslot = ring::advance(wslot, 1);
                if (++wy == H) {
                    wy = 0;
                    wf++;
                }
            }
        } else if (rf < frames && written >= need && !out.full()) {
            // the reader: a pixel of window row ky of output row yo, once its rows are complete
            const int y = yo * S - P + ky * D;  // image row (outside 0..H-1: padding)
            in_pixel_t<CONFIG_T> q;
            if (y >= 0 && y < H) {
                const unsigned at = ring::advance(base, ky * D) * ROW + (unsigned)rx * BEATS;
            read_beats:
                for (unsigned b = 0; b < BEATS; b++) {
#pragma HLS PIPELINE II = 1  // one 64-bit word a clock, consecutive addresses: a pixel is one read burst
                    row_word_t w = mem[at + b];
                    for (unsigned u = 0; u < PER; u++) {
#pragma HLS UNROLL  // the channels of one word
                        unsigned c = b * PER + u;
                        if (c < CONFIG_T::cin) q.data[c] = in_t(w.range(u * BITS + BITS - 1, u * BITS));
                    }
                }
            } else {
                for (unsigned c = 0; c < CONFIG_T::cin; c++) {
#pragma HLS UNROLL  // padding is the integer 0 (activations have no zero point)
                    q.data[c] = 0;
                }
            }
            out.write(q);  // not full: checked above (the only writer)
            if (++rx == WI) {
                rx = 0;
                if (++ky == K) {
                    ky = 0;
                    unsigned step = S;  // slots to the next output row's window row 0
                    if (++yo == HO) {
                        yo = 0;
                        rf++;
                        first += ring::delta;
                        step = ring::next_frame;
                    } else {
                        first += S;
                    }
                    base = ring::advance(base, step);
                    need = (int)(rf * H) + rows_ready(yo, S, P, SPAN, H);
                }
            }
        }
    }
}

}  // namespace sentei

#endif
