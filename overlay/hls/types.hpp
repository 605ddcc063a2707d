/**
 * \file types.hpp
 * \brief Data types shared by every block of the sentei accelerator.
 *
 * A feature map travels between blocks as a stream of pixels in raster order; one stream
 * element holds all channels of one pixel (`vec<act_t, C>`), so a block reads one word per
 * input pixel. The weights of a layer live on chip as decoded sparse entries
 * (`sparse_entry`), split by lane; the per-filter requantization constants as
 * `requant_param`.
 */
#ifndef SENTEI_TYPES_HPP
#define SENTEI_TYPES_HPP

#include "ap_int.h"
#include "hls_stream.h"

namespace sentei {

/// One 32-bit word of a DDR buffer (frame bytes, weight blob).
typedef ap_uint<32> word_t;
/// One int32 logit in the output buffer.
typedef ap_int<32> logit_t;
/// The layer accumulator: 32-bit signed, the model file guarantees it never overflows.
typedef ap_int<32> acc_t;
/// The value written to the STATUS register (codes in overlay/registers.py).
typedef unsigned status_t;

/// Activation functions of a layer (field `act` of the model file).
enum activation { ACT_RELU = 0, ACT_LINEAR = 1, ACT_LOGITS = 2 };

/**
 * \brief A fixed-size vector: all channels of one pixel, or the k*k pixels of a window.
 * \tparam T element type
 * \tparam N number of elements
 */
template <typename T, unsigned N>
struct vec {
    T data[N];
};

/**
 * \brief One stored weight of a filter, decoded at load time from its blob word.
 *
 * The blob word holds `value` (8-bit two's complement) and the dense position
 * `idx = (ci*k + ky)*k + kx`; the loader splits `idx` into the input channel `ci` and the
 * window position `pos = ky*k + kx`, so the engine needs no division per MAC.
 * \tparam CONFIG_T layer configuration (`weight_bits`, `ci_bits`, `pos_bits`)
 */
template <class CONFIG_T>
struct sparse_entry {
    ap_int<CONFIG_T::weight_bits> value;
    ap_uint<CONFIG_T::ci_bits> ci;
    ap_uint<CONFIG_T::pos_bits> pos;
};

/// Requantization constants of one filter (spec section 3): bias, multiplier, shift.
struct requant_param {
    acc_t bias;
    ap_uint<31> mult;  // 0 <= mult < 2^31
    ap_uint<6> shift;  // 0 <= shift <= 62
};

/// Input quantization constants (spec section 2.1), loaded from blob words 2..8.
struct input_quant_param {
    ap_int<32> mul[3];
    ap_int<32> add[3];
    ap_uint<5> shift;  // 0 <= shift <= 31
};

/// All channels of one input pixel of layer CONFIG_T.
template <class CONFIG_T>
using in_pixel_t = vec<typename CONFIG_T::in_t, CONFIG_T::cin>;

/// All channels of one output pixel of layer CONFIG_T.
template <class CONFIG_T>
using out_pixel_t = vec<typename CONFIG_T::out_t, CONFIG_T::cout>;

/// The k*k input pixels one output pixel of layer CONFIG_T sees, index `ky*k + kx`.
template <class CONFIG_T>
using window_t = vec<in_pixel_t<CONFIG_T>, CONFIG_T::kernel * CONFIG_T::kernel>;

/// One uint8 RGB pixel of the frame.
typedef vec<ap_uint<8>, 3> rgb_t;

}  // namespace sentei

#endif
