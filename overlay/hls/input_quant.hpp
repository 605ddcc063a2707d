/**
 * \file input_quant.hpp
 * \brief uint8 RGB pixel -> signed input activation (model-format spec section 2.1).
 *
 * `a0[c] = clamp((pix[c]*mul[c] + add[c] + R) >> shift, -2^(bits-1), 2^(bits-1)-1)` with
 * `R = 2^(shift-1)` (0 for shift 0), in 64-bit integers with an arithmetic shift, so the
 * rounding is round half up exactly as the reference engine does it. The constants are
 * run-time data (blob words 2..8); the bit width is compile-time (the config).
 */
#ifndef SENTEI_INPUT_QUANT_HPP
#define SENTEI_INPUT_QUANT_HPP

#include "csim_hooks.hpp"
#include "types.hpp"

namespace sentei {

/// Default input configuration; the generated `input_config` derives from it.
struct input_config_default {
    static const unsigned height = 1;  ///< frame height (compile-time input size)
    static const unsigned width = 1;   ///< frame width
    static const unsigned frame_words = 1;  ///< 32-bit words of the uint8 RGB frame: ceil(3*height*width/4)
    static const unsigned bits = 8;    ///< width of the signed input activation
    typedef ap_int<8> out_t;           ///< the input activation type, ap_int<bits>
    static const long long out_min = -128;
    static const long long out_max = 127;
};

/**
 * \brief Quantize one channel value.
 * \tparam CONFIG_T input configuration (`out_t`, `out_min`, `out_max`)
 */
template <class CONFIG_T>
typename CONFIG_T::out_t quantize_value(ap_uint<8> pix, ap_int<32> mul, ap_int<32> add, ap_uint<5> shift) {
    ap_int<64> prod = ap_int<64>(pix) * ap_int<64>(mul);  // |pix*mul| < 2^39
    ap_int<64> rnd = shift == 0 ? ap_int<64>(0) : ap_int<64>(ap_int<64>(1) << (shift - 1));
    ap_int<64> r = (prod + ap_int<64>(add) + rnd) >> shift;  // arithmetic: round half up
    if (r < CONFIG_T::out_min) r = CONFIG_T::out_min;
    if (r > CONFIG_T::out_max) r = CONFIG_T::out_max;
    return typename CONFIG_T::out_t(r);
}

/**
 * \brief Stream of RGB pixels -> stream of input activations (stage 0 of the network).
 * \tparam CONFIG_T input configuration
 */
template <class CONFIG_T>
void quantize_input(hls::stream<rgb_t>& in, hls::stream<vec<typename CONFIG_T::out_t, 3> >& out,
                    const input_quant_param& q, unsigned frames) {
quantize_pixels:
    for (unsigned n = 0; n < frames * CONFIG_T::height * CONFIG_T::width; n++) {
#pragma HLS PIPELINE II = 1  // one pixel per cycle, matching unpack_pixels
        rgb_t px = in.read();
        vec<typename CONFIG_T::out_t, 3> a;
        for (unsigned c = 0; c < 3; c++) {
#pragma HLS UNROLL  // three channel multipliers side by side
            a.data[c] = quantize_value<CONFIG_T>(px.data[c], q.mul[c], q.add[c], q.shift);
        }
        SENTEI_RECORD(0, a);
        out.write(a);
    }
}

}  // namespace sentei

#endif
