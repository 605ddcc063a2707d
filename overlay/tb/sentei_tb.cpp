/**
 * \file sentei_tb.cpp
 * \brief C-simulation testbench of the whole accelerator against the reference engine.
 *
 * Usage: `sentei_tb <vector_dir> <frames> <report.json>`. The directory holds what
 * `sentei overlay csim` (overlay/csim.py) wrote with the reference engine:
 *
 *   weights.npy           uint32 weight blob
 *   frame_<n>.npy         uint8 [H, W, 3] frame n
 *   stage_<n>_<s>.npy     int32 [h, w, C] expected stage s of frame n: s = 0 the input
 *                         activation, s = l + 1 the output of layer l (the last: logits)
 *
 * It loads the weights through the top function (CMD_LOAD_WEIGHTS), runs all frames in one
 * start (CMD_RUN_FRAME with FRAMES = <frames>: they overlap in the pipeline), compares every element of every stage and of the logits buffer, prints
 * the first mismatches with layer, channel and pixel, counts the MAC-loop iterations per
 * layer, writes a JSON report and returns the number of mismatches (capped at 255).
 */
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "network_config.h"
#include "npy.hpp"
#include "sentei_top.hpp"

using sentei::tb::npy_array;
using sentei::tb::read_npy;
namespace net = sentei::network;

static const unsigned max_printed = 10;

struct mismatch {
    unsigned frame, stage, channel, y, x;
    long long got, expected;
};

static std::string stage_name(unsigned s) {
    return s == 0 ? std::string("input") : std::string(net::layer_names[s - 1]);
}

/// Compare one stage (HWC) element by element; append mismatches; return their count.
static unsigned long long compare(unsigned frame, unsigned stage, const std::vector<long long>& got,
                                  const npy_array& expected, std::vector<mismatch>& found) {
    const unsigned C = net::stage_channels[stage], H = net::stage_height[stage], W = net::stage_width[stage];
    unsigned long long errors = 0;
    if (got.size() != (size_t)C * H * W || expected.data.size() != got.size()) {
        std::printf("frame %u stage %u (%s): size mismatch, design produced %zu values, expected %zu\n", frame,
                    stage, stage_name(stage).c_str(), got.size(), expected.data.size());
        found.push_back(mismatch{frame, stage, 0, 0, 0, (long long)got.size(), (long long)expected.data.size()});
        return got.size() > expected.data.size() ? got.size() : expected.data.size();
    }
    for (size_t i = 0; i < got.size(); i++) {
        if (got[i] == expected.data[i]) continue;
        errors++;
        unsigned c = i % C, x = (i / C) % W, y = i / ((size_t)C * W);
        mismatch m = {frame, stage, c, y, x, got[i], expected.data[i]};
        if (found.size() < max_printed) {  // only the first few are reported: keep only those
            std::printf("MISMATCH frame %u %s %s: channel %u pixel (y=%u, x=%u): design %lld, reference %lld\n",
                        frame, stage == 0 ? "stage" : "layer", stage_name(stage).c_str(), c, y, x, m.got,
                        m.expected);
            found.push_back(m);
        }
    }
    return errors;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s <vector_dir> <frames> <report.json>\n", argv[0]);
        return 255;
    }
    const std::string dir = argv[1];
    const unsigned frames = std::stoul(argv[2]);
    unsigned long long errors = 0;
    std::vector<mismatch> found;
    std::vector<unsigned long long> iterations(net::num_layers, 0);
    unsigned status_load = 0;
    std::vector<unsigned> status_run;
    try {
        npy_array blob_npy = read_npy(dir + "/weights.npy");
        std::vector<sentei::word_t> blob(blob_npy.data.begin(), blob_npy.data.end());
        std::vector<sentei::word_t> frame_words((size_t)frames * SENTEI_FRAME_WORDS, 0);
        std::vector<sentei::logit_t> logits((size_t)frames * SENTEI_LOGIT_WORDS);
        std::vector<sentei::row_word_t> rows(SENTEI_ROW_BUFFER_WORDS + 1);  // the row buffer (rows in DDR), scratch
        sentei_top(frame_words.data(), blob.data(), logits.data(), sentei::CMD_LOAD_WEIGHTS, 0, 0, 0,
                   status_load SENTEI_ROW_BUFFER_ARGS(rows.data()));
        if (status_load != sentei::STATUS_OK) {
            std::printf("LOAD_WEIGHTS failed with status %u\n", status_load);
            errors++;
        }
        for (unsigned n = 0; n < frames; n++) {  // frame n at word n * SENTEI_FRAME_WORDS
            npy_array frame = read_npy(dir + "/frame_" + std::to_string(n) + ".npy");
            for (size_t i = 0; i < frame.data.size(); i++) {
                frame_words[n * SENTEI_FRAME_WORDS + i / 4] |= sentei::word_t(frame.data[i]) << (8 * (i % 4));
            }
        }
        if (status_load == sentei::STATUS_OK) {
            sentei::csim::reset();
            sentei::csim::tracing() = true;
            unsigned st = 0;
            sentei_top(frame_words.data(), blob.data(), logits.data(), sentei::CMD_RUN_FRAME,
                       net::input_config::height, net::input_config::width, frames, st SENTEI_ROW_BUFFER_ARGS(rows.data()));
            sentei::csim::tracing() = false;
            status_run.push_back(st);
            if (st != sentei::STATUS_OK) {
                std::printf("RUN_FRAME failed with status %u\n", st);
                errors++;
            }
            for (unsigned l = 0; l < net::num_layers; l++) iterations[l] += sentei::csim::mac_iterations()[l];
            // In RTL co-simulation the design is not C code and records nothing: logits only.
            bool traced = !sentei::csim::stage_output(0).empty();
            if (!traced) std::printf("note: no stage trace (RTL co-simulation?): comparing the logits only\n");
            for (unsigned n = 0; n < frames && st == sentei::STATUS_OK; n++) {
                for (unsigned s = 0; traced && s < net::num_layers; s++) {  // input and hidden layers, frame n's part
                    const std::vector<long long>& all = sentei::csim::stage_output(s);
                    size_t size = (size_t)net::stage_channels[s] * net::stage_height[s] * net::stage_width[s];
                    std::vector<long long> got;
                    if (all.size() >= (n + 1) * size) got.assign(all.begin() + n * size, all.begin() + (n + 1) * size);
                    npy_array expected = read_npy(dir + "/stage_" + std::to_string(n) + "_" + std::to_string(s) + ".npy");
                    errors += compare(n, s, got, expected, found);
                }
                // the logits buffer itself, as the host reads it from DDR
                npy_array expected = read_npy(dir + "/stage_" + std::to_string(n) + "_" +
                                              std::to_string(net::num_layers) + ".npy");
                std::vector<long long> got(logits.begin() + (size_t)n * SENTEI_LOGIT_WORDS,
                                           logits.begin() + (size_t)(n + 1) * SENTEI_LOGIT_WORDS);
                errors += compare(n, net::num_layers, got, expected, found);
            }
        }
    } catch (const std::exception& e) {
        std::printf("ERROR %s\n", e.what());
        return 255;
    }

    std::ofstream rep(argv[3]);
    rep << "{\"frames\": " << frames << ", \"errors\": " << errors << ", \"status_load\": " << status_load
        << ", \"status_run\": [";
    for (size_t i = 0; i < status_run.size(); i++) rep << (i ? ", " : "") << status_run[i];
    rep << "], \"iterations\": [";
    for (unsigned l = 0; l < net::num_layers; l++) rep << (l ? ", " : "") << iterations[l];
    rep << "], \"mismatches\": [";
    for (size_t i = 0; i < found.size() && i < max_printed; i++) {
        const mismatch& m = found[i];
        rep << (i ? ", " : "") << "{\"frame\": " << m.frame << ", \"stage\": " << m.stage << ", \"channel\": "
            << m.channel << ", \"y\": " << m.y << ", \"x\": " << m.x << ", \"got\": " << m.got
            << ", \"expected\": " << m.expected << "}";
    }
    rep << "]}\n";
    rep.close();
    std::printf("%s: %u frame(s), %llu mismatching values\n", errors ? "FAIL" : "PASS", frames, errors);
    return errors > 255 ? 255 : (int)errors;
}
