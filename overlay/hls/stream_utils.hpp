/**
 * \file stream_utils.hpp
 * \brief Stream plumbing between DDR and the layer pipeline.
 *
 * `read_words` streams the frame buffer (uint8 RGB, row-major HWC, as 32-bit words) and
 * `unpack_pixels` turns the words into a stream of RGB pixels; `write_logits` writes the
 * classifier's stream of int32 class-score vectors back as row-major HWC. The two that touch
 * DDR access it unconditionally, one word per cycle, strictly in address order, so the
 * m_axi adapters can burst.
 */
#ifndef SENTEI_STREAM_UTILS_HPP
#define SENTEI_STREAM_UTILS_HPP

#include "types.hpp"

namespace sentei {

/**
 * \brief Frame buffers -> stream of their 32-bit words, one per cycle.
 *
 * The `frames` frames lie back to back (frame n at word n * frame_words), so the whole
 * batch is one walk.
 * An unconditional pipelined walk over the buffer in address order: the m_axi adapter turns
 * it into bursts. (Reading a word only when the unpacker needs one would be a conditional
 * access, which Vitis HLS cannot burst: every word would be a single-beat transaction.)
 * \tparam CONFIG_T input configuration (`frame_words`); not deducible, name it
 */
template <class CONFIG_T>
void read_words(const word_t* frame, hls::stream<word_t>& out, unsigned frames) {
read_words:
    for (unsigned n = 0; n < frames * CONFIG_T::frame_words; n++) {
#pragma HLS PIPELINE II = 1  // one word per cycle, consecutive addresses: one long read burst
        out.write(frame[n]);
    }
}

/**
 * \brief Stream of frame words -> stream of RGB pixels, one pixel per cycle.
 *
 * Three bytes per pixel are consumed from 32-bit words: a 64-bit carry register keeps
 * the bytes not used yet, and a new word is taken whenever fewer than three remain, so at
 * most one word is taken per iteration and exactly ceil(3*H*W/4) words a frame -- what
 * read_words sends.
 * \tparam CONFIG_T input configuration (`height`, `width`); not deducible, name it
 */
template <class CONFIG_T>
void unpack_pixels(hls::stream<word_t>& in, hls::stream<rgb_t>& out, unsigned frames) {
frames:
    for (unsigned fr = 0; fr < frames; fr++) {
        ap_uint<64> carry = 0;  // unread bytes, lowest first (a frame starts on a word)
        unsigned have = 0;      // number of valid bytes in carry (0..5)
    unpack_pixels:
        for (unsigned n = 0; n < CONFIG_T::height * CONFIG_T::width; n++) {
#pragma HLS PIPELINE II = 1  // one pixel per cycle: the pipeline's input rate
            if (have < 3) {
                ap_uint<64> w = in.read();
                carry |= w << (8 * have);
                have += 4;
            }
            rgb_t px;
            for (unsigned c = 0; c < 3; c++) {
#pragma HLS UNROLL  // the three channel bytes of a pixel leave in one stream word
                px.data[c] = carry.range(8 * c + 7, 8 * c);
            }
            carry >>= 24;
            have -= 3;
            out.write(px);
        }
    }
}

/**
 * \brief Stream of class-score vectors -> logits buffers, row-major HWC, one int32 per cycle
 *        (the `frames` frames' logits back to back).
 * \tparam CONFIG_T the classifier's configuration (`out_height`, `out_width`, `cout`); not deducible
 */
template <class CONFIG_T>
void write_logits(hls::stream<out_pixel_t<CONFIG_T> >& in, logit_t* logits, unsigned frames) {
    out_pixel_t<CONFIG_T> px;
write_words:
    for (unsigned n = 0; n < frames * CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::cout; n++) {
#pragma HLS PIPELINE II = 1  // one word per cycle: consecutive addresses form AXI bursts
        unsigned c = n % CONFIG_T::cout;
        if (c == 0) px = in.read();
        logits[n] = px.data[c];
    }
}

}  // namespace sentei

#endif
