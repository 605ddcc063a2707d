/**
 * \file sentei_top.hpp
 * \brief The accelerator's top function and its command protocol.
 *
 * The numbers are those of overlay/registers.py (the Python side of the same contract;
 * tests/overlay check that both agree). docs/register-map.md documents the registers.
 */
#ifndef SENTEI_TOP_HPP
#define SENTEI_TOP_HPP

#include "network_config.h"  // the generated network: SENTEI_ROW_PARAMS, its row-memory ports (none for most)
#include "types.hpp"

namespace sentei {

static const unsigned BLOB_MAGIC = 0x544E4553u;  ///< "SENT" as a little-endian word

// commands (CMD register)
static const unsigned CMD_LOAD_WEIGHTS = 1;  ///< weight blob -> on-chip memory, checked against the network
static const unsigned CMD_RUN_FRAME = 2;     ///< frame -> logits with the loaded weights

// status codes (STATUS register)
static const status_t STATUS_OK = 0;
static const status_t STATUS_BAD_MAGIC = 1;    ///< blob word 0 is not BLOB_MAGIC
static const status_t STATUS_BAD_LAYOUT = 2;   ///< layer count, section offsets or an entry differ from the network
static const status_t STATUS_NO_WEIGHTS = 3;   ///< RUN_FRAME before a successful LOAD_WEIGHTS
static const status_t STATUS_BAD_SIZE = 4;     ///< HEIGHT/WIDTH differ from the compiled input size
static const status_t STATUS_BAD_COMMAND = 5;  ///< CMD is not a known command
static const status_t STATUS_BAD_FRAMES = 6;   ///< RUN_FRAME with FRAMES = 0

}  // namespace sentei

/**
 * \brief The accelerator: one command per start (ap_ctrl_hs).
 *
 * RUN_FRAME streams `frames` frames through the layer pipeline in one start: the frames
 * follow each other through the DATAFLOW region, so a frame leaves every pipeline interval
 * (the slowest stage), not every latency.
 *
 * \param frame   `frames` uint8 RGB frames, each height*width*3 bytes row-major HWC padded to
 *                a whole 32-bit word (frame n starts at word n * ceil(3*height*width/4))
 * \param weights the model's weight blob (docs/model-format.md section 4)
 * \param logits  `frames` int32 class-score maps, each out_height*out_width*num_classes, row-major HWC
 * \param cmd     CMD_LOAD_WEIGHTS or CMD_RUN_FRAME
 * \param height  frame height; must equal the compiled input height for RUN_FRAME
 * \param width   frame width; must equal the compiled input width for RUN_FRAME
 * \param frames  frames to run (RUN_FRAME), at least 1
 * \param status  STATUS_* code of this command
 * \param rows<n> (only where layer n keeps its line-buffer rows in DDR, row_memory.hpp) layer n's
 *                region of the row buffer: scratch the accelerator writes and reads back, never the host
 */
void sentei_top(const sentei::word_t* frame, const sentei::word_t* weights, sentei::logit_t* logits,
                unsigned cmd, unsigned height, unsigned width, unsigned frames, unsigned& status SENTEI_ROW_PARAMS);

#endif
