/**
 * \file csim_api.cpp
 * \brief C entry points of the C-simulation library, for Python's ctypes (overlay/csim.py).
 *
 * Like hls4ml's `compile()/predict()` bridge: the very HLS sources of the accelerator,
 * built into a shared library, called with numpy buffers. Only these symbols are exported
 * (the library is compiled with hidden visibility), so several networks can be loaded in
 * one process without sharing state.
 */
#include <cstdint>
#include <cstring>
#include <vector>

#include "network_config.h"
#include "sentei_top.hpp"

#define SENTEI_EXPORT extern "C" __attribute__((visibility("default")))

namespace net = sentei::network;

/// Number of layers of the compiled network.
SENTEI_EXPORT unsigned sentei_csim_num_layers() { return net::num_layers; }

/// Words of the weight blob the compiled network reads.
SENTEI_EXPORT unsigned sentei_csim_blob_words() { return SENTEI_BLOB_WORDS; }

/// Words of the frame buffer (ceil(3*H*W/4)) and of the logits buffer.
SENTEI_EXPORT unsigned sentei_csim_frame_words() { return SENTEI_FRAME_WORDS; }
SENTEI_EXPORT unsigned sentei_csim_logit_words() { return SENTEI_LOGIT_WORDS; }

/**
 * One start of the accelerator with the given registers. Buffers are copied in and out
 * as the m_axi ports would read and write DDR; `frame` must hold `buffered` * frame_words
 * words, `weights` blob_words words, `logits` `buffered` * logit_words words, where
 * `buffered` (>= 1) is the number of frames the caller's buffers hold and `frames` is the
 * FRAMES register (a FRAMES above `buffered` would read past the buffers: the caller
 * refuses it).
 */
SENTEI_EXPORT unsigned sentei_csim_execute(const uint32_t* frame, const uint32_t* weights, int32_t* logits,
                                           unsigned cmd, unsigned height, unsigned width, unsigned frames,
                                           unsigned buffered, int trace) {
    const size_t nf = (size_t)buffered * SENTEI_FRAME_WORDS, nl = (size_t)buffered * SENTEI_LOGIT_WORDS;
    std::vector<sentei::word_t> f(nf), w(SENTEI_BLOB_WORDS);
    std::vector<sentei::logit_t> out(nl);
    for (size_t i = 0; i < nf; i++) f[i] = frame[i];
    for (unsigned i = 0; i < SENTEI_BLOB_WORDS; i++) w[i] = weights[i];
    for (size_t i = 0; i < nl; i++) out[i] = logits[i];
    sentei::csim::reset();
    sentei::csim::tracing() = trace != 0;
    unsigned status = 0;
    static std::vector<sentei::row_word_t> rows(SENTEI_ROW_BUFFER_WORDS + 1);  // scratch in "DDR" (the accelerator's only)
    sentei_top(f.data(), w.data(), out.data(), cmd, height, width, frames, status SENTEI_ROW_BUFFER_ARGS(rows.data()));
    sentei::csim::tracing() = false;
    for (size_t i = 0; i < nl; i++) logits[i] = (int32_t)out[i].to_int();
    return status;
}

/// MAC-loop iterations of each layer during the last execute (num_layers values).
SENTEI_EXPORT void sentei_csim_iterations(unsigned long long* out) {
    for (unsigned l = 0; l < net::num_layers; l++) out[l] = sentei::csim::mac_iterations()[l];
}

/// Values recorded for stage s during the last traced execute (0 when not traced).
SENTEI_EXPORT unsigned long long sentei_csim_stage_size(unsigned s) {
    return s < net::num_stages ? sentei::csim::stage_output(s).size() : 0;
}

/// Copy stage s's recorded values (HWC) into out (stage_size(s) values).
SENTEI_EXPORT void sentei_csim_stage(unsigned s, int32_t* out) {
    if (s >= net::num_stages) return;
    const std::vector<long long>& v = sentei::csim::stage_output(s);
    for (size_t i = 0; i < v.size(); i++) out[i] = (int32_t)v[i];
}
