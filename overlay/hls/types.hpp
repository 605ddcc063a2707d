/**
 * \file types.hpp
 * \brief Data types shared by every block of the sentei accelerator.
 *
 * A feature map travels between layers as a stream of pixels in raster order; one stream
 * element holds all channels of one pixel (`vec<act_t, C>`). Inside a layer the line buffer
 * stores W channels per word (`line_word_t`) and hands the engine each window as
 * `k * Cin / W` chunks of `k * W` activations (`chunk_t`). The weights of a layer live on
 * chip as decoded sparse entries (`sparse_entry`: value and window address), split by lane;
 * the per-filter constants as `requant_param`, split by requantizer.
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
 * `idx = (ci*k + ky)*k + kx`; the loader turns `idx` into the address of that activation in
 * a lane's window memory -- tap bank `ky*W + ci % W`, window column `kx`, slot `ci / W` (W =
 * `chunk_channels`) -- so the engine reads it directly; only the column becomes, per
 * pixel of a group, a bank of its own (sparse_conv.hpp).
 * \tparam CONFIG_T layer configuration (`weight_bits`, `bank_bits`, `col_bits`, `slot_bits`)
 */
template <class CONFIG_T>
struct sparse_entry {
    ap_int<CONFIG_T::weight_bits> value;
    ap_uint<CONFIG_T::bank_bits> bank;
    ap_uint<CONFIG_T::col_bits> col;
    ap_uint<CONFIG_T::slot_bits> slot;
};

/// Per-filter constants (spec section 3): bias (added at requantization), multiplier, shift.
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

/// One word of a line-buffer row: W = `chunk_channels` consecutive channels of one pixel.
template <class CONFIG_T>
using line_word_t = vec<typename CONFIG_T::in_t, CONFIG_T::chunk_channels>;

/// One chunk of a window: channels `cw*W .. cw*W+W-1` of the k taps of column kx, element `ky*W + w`.
template <class CONFIG_T>
using chunk_t = vec<typename CONFIG_T::in_t, CONFIG_T::kernel * CONFIG_T::chunk_channels>;

/// One uint8 RGB pixel of the frame.
typedef vec<ap_uint<8>, 3> rgb_t;

}  // namespace sentei

#endif
