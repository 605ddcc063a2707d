/**
 * \file sentei_top.cpp
 * \brief Top function: AXI interfaces and command dispatch.
 *
 * The network itself -- one processing block per layer wired in a DATAFLOW region, and
 * the loader of the weight blob -- is in the generated `network.h`
 * (`sentei overlay codegen --model M`), which this file includes from the build
 * directory. This file does not change from model to model.
 */
#include "network.h"
#include "sentei_top.hpp"

void sentei_top(const sentei::word_t* frame, const sentei::word_t* weights, sentei::logit_t* logits,
                unsigned cmd, unsigned height, unsigned width, unsigned frames, unsigned& status SENTEI_ROW_PARAMS) {
// Three AXI masters so that frame reads, logit writes and weight loads never share a port.
#pragma HLS INTERFACE mode = m_axi port = frame offset = slave bundle = gmem0 depth = SENTEI_FRAME_BUFFER_WORDS  // input frames, read once per RUN_FRAME (depth: what co-simulation allocates)
#pragma HLS INTERFACE mode = m_axi port = weights offset = slave bundle = gmem1 depth = SENTEI_BLOB_WORDS  // weight blob, read once per LOAD_WEIGHTS
#pragma HLS INTERFACE mode = m_axi port = logits offset = slave bundle = gmem2 depth = SENTEI_LOGIT_BUFFER_WORDS  // logits, written once per RUN_FRAME
// Buffer addresses, scalars and the block protocol on one AXI4-Lite slave: the driver's register map.
#pragma HLS INTERFACE mode = s_axilite port = frame bundle = control    // FRAME_LO/HI
#pragma HLS INTERFACE mode = s_axilite port = weights bundle = control  // WEIGHTS_LO/HI
#pragma HLS INTERFACE mode = s_axilite port = logits bundle = control   // LOGITS_LO/HI
#pragma HLS INTERFACE mode = s_axilite port = cmd bundle = control      // CMD
#pragma HLS INTERFACE mode = s_axilite port = height bundle = control   // HEIGHT
#pragma HLS INTERFACE mode = s_axilite port = width bundle = control    // WIDTH
#pragma HLS INTERFACE mode = s_axilite port = frames bundle = control   // FRAMES
#pragma HLS INTERFACE mode = s_axilite port = status bundle = control   // STATUS (+ STATUS_CTRL valid bit)
#pragma HLS INTERFACE mode = s_axilite port = return bundle = control   // AP_CTRL start/done/idle
#pragma HLS INTERFACE mode = ap_ctrl_hs port = return                   // one command per start; RUN_FRAME overlaps its frames inside
// Layers with rows in DDR: an m_axi port each (one process reads and writes it) and its ROWS<n> address (network_config.h).
    SENTEI_ROW_INTERFACES

    // On-chip state kept between commands: whether a blob was loaded and its input constants.
    // (The per-layer weight arrays are the globals of network.h.)
    static bool loaded = false;
    static sentei::input_quant_param input_quant;

    unsigned st;
    if (cmd == sentei::CMD_LOAD_WEIGHTS) {
        st = sentei::network::check(weights);  // header only: a rejected blob changes nothing on chip
        if (st == sentei::STATUS_OK) {
            loaded = false;  // from here the on-chip weights are being overwritten
            st = sentei::network::load(weights, input_quant);
            loaded = st == sentei::STATUS_OK;
        }
    } else if (cmd == sentei::CMD_RUN_FRAME) {
        if (height != sentei::network::input_config::height || width != sentei::network::input_config::width) {
            st = sentei::STATUS_BAD_SIZE;
        } else if (frames == 0) {
            st = sentei::STATUS_BAD_FRAMES;
        } else if (!loaded) {
            st = sentei::STATUS_NO_WEIGHTS;
        } else {
            sentei::network::run(frame, logits, input_quant, frames SENTEI_ROW_ARGS);
            st = sentei::STATUS_OK;
        }
    } else {
        st = sentei::STATUS_BAD_COMMAND;
    }
    status = st;
}
