/**
 * \file csim_hooks.hpp
 * \brief Observation points for the C-simulation, compiled out of synthesis.
 *
 * The testbench and the ctypes library read two things the hardware never exports:
 * how many iterations each layer's pipelined MAC loop executed (the zero skipping made
 * visible: the count follows K, not Cin*k*k), and every layer's output activations, so
 * a mismatch names its layer, channel and pixel. Under `__SYNTHESIS__` the macros expand
 * to nothing.
 */
#ifndef SENTEI_CSIM_HOOKS_HPP
#define SENTEI_CSIM_HOOKS_HPP

#ifndef __SYNTHESIS__
#include <vector>

namespace sentei {
namespace csim {

/// Highest number of traced stages: the input activation plus 256 layers (the format's maximum).
static const unsigned max_stages = 257;

/// Executed MAC-loop iterations per layer since the last reset.
inline unsigned long long* mac_iterations() {
    static unsigned long long counts[max_stages];
    return counts;
}

/// Whether stage outputs are recorded (off by default: the ctypes path pays nothing).
inline bool& tracing() {
    static bool on = false;
    return on;
}

/// Recorded activations of stage `s` (0 = input activation, l + 1 = output of layer l), HWC.
inline std::vector<long long>& stage_output(unsigned s) {
    static std::vector<long long> stages[max_stages];
    return stages[s];
}

/// Forget the recorded activations and iteration counts.
inline void reset() {
    for (unsigned s = 0; s < max_stages; s++) {
        mac_iterations()[s] = 0;
        stage_output(s).clear();
    }
}

/// Record one pixel (all channels) of stage `s` when tracing is on.
template <typename T, unsigned N>
inline void record(unsigned s, const T (&data)[N]) {
    if (!tracing()) return;
    std::vector<long long>& out = stage_output(s);
    for (unsigned c = 0; c < N; c++) out.push_back((long long)data[c]);
}

}  // namespace csim
}  // namespace sentei

#define SENTEI_COUNT_ITERATION(layer) (++::sentei::csim::mac_iterations()[(layer)])
#define SENTEI_RECORD(stage, pixel) ::sentei::csim::record((stage), (pixel).data)
#else
#define SENTEI_COUNT_ITERATION(layer)
#define SENTEI_RECORD(stage, pixel)
#endif

#endif
