/**
 * \file products.hpp
 * \brief Two products that share an operand, in one DSP48E2 where they fit (Xilinx WP486).
 *
 * The sparse engine's lane multiplies one weight with the activations of two output pixels;
 * the dense engine's `x` plans multiply one activation with the weights of two lanes. Either
 * way `s * x0` and `s * x1` share `s`, and a DSP48E2 -- whose pre-adder forms a 27-bit
 * operand and whose multiplier is 27 x 18 -- computes both at once: `((x1 << 18) + x0) * s =
 * s*x1 * 2^18 + s*x0`. The low 18 bits, read as signed, are `s*x0` exactly while |s*x0| <
 * 2^17 (operands of <= 8 bits: at most 2^15); the rest, shifted down, is `s*x1`.
 */
#ifndef SENTEI_PRODUCTS_HPP
#define SENTEI_PRODUCTS_HPP

#include "types.hpp"

namespace sentei {

/**
 * \brief `s * x0` and `s * x1`: two multipliers, or one (PACKED).
 * \tparam PACKED one multiplier for both (both operands of <= 8 bits)
 */
template <bool PACKED>
struct product_pair {
    template <class S_T, class X_T, class P_T>
    static void mul(S_T s, X_T x0, X_T x1, P_T& p0, P_T& p1) {
#pragma HLS INLINE  // part of the engine's pipelined loop
        p0 = s * x0;
        p1 = s * x1;
    }
};

template <>
struct product_pair<true> {
    template <class S_T, class X_T, class P_T>
    static void mul(S_T s, X_T x0, X_T x1, P_T& p0, P_T& p1) {
#pragma HLS INLINE  // part of the engine's pipelined loop
        static_assert(S_T::width <= 8 && X_T::width <= 8, "packed products need operands of <= 8 bits");
        ap_int<27> x = (ap_int<27>(x1) << 18) + ap_int<27>(x0);  // pre-adder: x1 above x0 (x0 sign-extended)
        ap_int<45> p = x * s;                                    // one 27 x 18 multiply
#pragma HLS BIND_OP variable = p op = mul impl = dsp  // one DSP48E2 (its pre-adder forms x), not two LUT multipliers
        ap_int<18> lo = p.range(17, 0);                          // s*x0, exactly
        p0 = lo;
        p1 = (p - lo) >> 18;                                     // s*x1 * 2^18, shifted down
    }
};

}  // namespace sentei

#endif
