"""The packed multiply of products.hpp (``product_pair<true>``, Xilinx WP486): two products that
share an operand from one 27 x 18 multiplication, exactly, for every 8-bit operand -- the
sparse engine's (one weight, two pixels' activations) and the dense engine's plan x (one
activation, two lanes' weights).

The C-simulation checks it on random models; this checks it exhaustively (every shared
operand, every first packed one, the extreme second ones, unsigned and signed activations),
compiled with g++ against Xilinx's own ap_int.h from the hls4ml wheel.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sentei.overlay.toolchain import find_compiler, hls_include_dir

HLS = Path(__file__).resolve().parents[2] / "overlay" / "hls"

PROGRAM = r"""
#include <cstdio>
#include "products.hpp"

template <class A_T>
long long check(int lo, int hi) {
    const int extremes[] = {lo, lo + 1, -1, 0, 1, hi - 1, hi};
    long long wrong = 0, checked = 0;
    for (int w = -128; w <= 127; w++) {
        for (int a0 = lo; a0 <= hi; a0++) {
            for (int a1 : extremes) {
                if (a1 < lo || a1 > hi) continue;
                sentei::acc_t p0, p1;
                sentei::product_pair<true>::mul(ap_int<8>(w), A_T(a0), A_T(a1), p0, p1);
                checked++;
                if (p0 != w * a0 || p1 != w * a1) {
                    if (wrong++ < 3) std::printf("w=%d a0=%d a1=%d -> %d %d\n", w, a0, a1, (int)p0, (int)p1);
                }
            }
        }
    }
    std::printf("checked %lld wrong %lld\n", checked, wrong);
    return wrong;
}

// the dense engine's roles: the activation a (unsigned or signed) shared, two lanes' weights packed
template <class A_T>
long long check_lanes(int lo, int hi) {
    const int extremes[] = {-128, -127, -1, 0, 1, 126, 127};
    long long wrong = 0, checked = 0;
    for (int a = lo; a <= hi; a++) {
        for (int w0 = -128; w0 <= 127; w0++) {
            for (int w1 : extremes) {
                sentei::acc_t p0, p1;
                sentei::product_pair<true>::mul(A_T(a), ap_int<8>(w0), ap_int<8>(w1), p0, p1);
                checked++;
                if (p0 != a * w0 || p1 != a * w1) {
                    if (wrong++ < 3) std::printf("a=%d w0=%d w1=%d -> %d %d\n", a, w0, w1, (int)p0, (int)p1);
                }
            }
        }
    }
    std::printf("checked %lld wrong %lld\n", checked, wrong);
    return wrong;
}

int main() {
    long long wrong = check<ap_uint<8> >(0, 255) + check<ap_int<8> >(-128, 127);
    wrong += check_lanes<ap_uint<8> >(0, 255) + check_lanes<ap_int<8> >(-128, 127);
    return wrong ? 1 : 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    folder = tmp_path_factory.mktemp("packed")
    src, exe = folder / "packed.cpp", folder / "packed"
    src.write_text(PROGRAM)
    build = subprocess.run([find_compiler(), "-O1", "-std=c++14", f"-I{HLS}", f"-I{hls_include_dir()}",
                            str(src), "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    return exe


def test_both_products_are_exact_for_every_8_bit_operand(program):
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout
    lines = run.stdout.split("\n")
    # unsigned: 256 weights x 256 first activations x 6 second ones (-1 is out of range); signed: x 7
    assert lines[0] == f"checked {256 * 256 * 6} wrong 0"
    assert lines[1] == f"checked {256 * 256 * 7} wrong 0"
    # the dense engine's lane pairs: 256 activations (unsigned, then signed) x 256 weights x 7
    assert lines[2] == f"checked {256 * 256 * 7} wrong 0"
    assert lines[3] == f"checked {256 * 256 * 7} wrong 0"
