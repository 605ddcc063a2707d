/**
 * \file requant.hpp
 * \brief Accumulator -> output activation: requantize, activate, saturate (spec section 3).
 *
 * `r = (acc*mult + R) >> shift` in 64-bit integers with `R = 2^(shift-1)` (0 for shift 0)
 * and an arithmetic shift (round half up); then `relu` clamps to [0, 2^B - 1], `linear` to
 * [-2^(B-1), 2^(B-1) - 1], and `logits` passes the int32 accumulator through unchanged.
 * The constants are per filter and loaded at run time; B and the activation are compiled in.
 */
#ifndef SENTEI_REQUANT_HPP
#define SENTEI_REQUANT_HPP

#include "types.hpp"

namespace sentei {

/**
 * \brief Requantize one accumulator.
 * \tparam CONFIG_T layer configuration (`act`, `out_t`, `out_min`, `out_max`)
 */
template <class CONFIG_T>
typename CONFIG_T::out_t requantize(acc_t acc, const requant_param& q) {
    if (CONFIG_T::act == ACT_LOGITS) return typename CONFIG_T::out_t(acc);
    ap_int<64> prod = ap_int<64>(acc) * ap_int<64>(q.mult);  // |acc*mult| < 2^62 (spec)
    ap_int<64> rnd = q.shift == 0 ? ap_int<64>(0) : ap_int<64>(ap_int<64>(1) << (q.shift - 1));
    ap_int<64> r = (prod + rnd) >> q.shift;  // arithmetic shift: round half up
    if (r < CONFIG_T::out_min) r = CONFIG_T::out_min;
    if (r > CONFIG_T::out_max) r = CONFIG_T::out_max;
    return typename CONFIG_T::out_t(r);
}

}  // namespace sentei

#endif
