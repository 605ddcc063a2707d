/**
 * \file pipeline_sim.cpp
 * \brief Clock-level simulator of the generated dataflow pipeline (`sentei perf --simulate`).
 *
 * C-simulation runs the dataflow processes one after another with unbounded streams, so it
 * cannot see a stall. This program runs every process of `network::pipeline` (network.h)
 * clock by clock, as its HLS loop is written: each process is the state machine of its
 * pipelined II = 1 loop(s); an iteration does all its stream accesses in one clock or, when
 * one of them would block (a read from an empty stream, a write to a full one), waits
 * whole -- the stall of an HLS pipeline with blocking accesses. Streams are bounded FIFOs of
 * the depths codegen emits; a token is readable `latency` clocks after the iteration that
 * wrote it (the producer's pipeline depth), and a slot freed in a clock is writable from the
 * next. Frames follow each other through one start (the FRAMES register).
 *
 * The processes (and the loop of overlay/hls each follows):
 *   read_words      stream_utils.hpp  one word a clock, frames * frame_words
 *   unpack_pixels   stream_utils.hpp  a word when fewer than 3 bytes are left, a pixel a clock
 *   quantize_input  input_quant.hpp   a pixel a clock
 *   per layer: line_buffer / pointwise_window (line_buffer.hpp), then sparse_conv
 *              (sparse_conv.hpp) or dense_conv (dense_conv.hpp) with fold_sequencer (folds.hpp);
 *              with rows in DDR, rows_through_memory (row_memory.hpp) before a line_buffer
 *              that walks the k rows of each output row it sends
 *   write_logits    stream_utils.hpp  one int32 a clock, a pixel every cout clocks
 * Loop entries and exits cost `loop_overhead` clocks each (pipeline ramp of the next loop).
 *
 * Input (stdin), whitespace-separated: see overlay/simulate.py (`_describe`). Output
 * (stdout): one JSON object with the clock each frame's last logit was written, the largest
 * occupancy and the full clocks of every stream, and each process's busy and stalled clocks.
 *
 * Plain C++17, no Xilinx headers: it simulates timing, not values (C-simulation checks
 * values against the reference engine).
 */
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

/// A bounded FIFO of tokens, each with the clock it becomes readable.
struct fifo {
    std::string name;
    long depth;
    std::deque<long long> ready;  // readable-at clock of each token, oldest first
    long start_count = 0;         // tokens at the start of the clock
    long reads = 0, writes = 0;
    long max_count = 0;
    long long full_clocks = 0;  // clocks that began with the FIFO full
    long long blocked = 0;      // clocks its producer waited for room

    fifo(std::string n, long d) : name(std::move(n)), depth(d) {}
    void begin() {
        start_count = (long)ready.size();
        reads = writes = 0;
        if (start_count >= depth) full_clocks++;
    }
    bool can_read(long long t) const { return start_count - reads > 0 && ready[(size_t)reads] <= t; }
    bool can_write() const { return start_count + writes < depth; }
    void read() { reads++; }
    void write(long long visible) {
        ready.push_back(visible);
        writes++;
    }
    void end() {
        for (long r = 0; r < reads; r++) ready.pop_front();
        if ((long)ready.size() > max_count) max_count = (long)ready.size();
    }
};

/// One dataflow process: the state machine of its loops.
struct process {
    std::string name;
    fifo* in = nullptr;
    fifo* out = nullptr;
    long latency = 1;
    long long busy = 0, stalled_in = 0, stalled_out = 0, idle = 0;
    long long macs = 0;  // engines: iterations of the MAC loop that did MACs (what C-simulation counts)
    bool done = false;
    virtual ~process() {}
    /// What the current iteration accesses.
    virtual bool wants_read() const = 0;
    virtual bool wants_write() const = 0;
    /// Move to the next iteration (after it ran).
    virtual void advance() = 0;
    virtual void step(long long t) {
        if (done) {
            idle++;
            return;
        }
        bool r = wants_read(), w = wants_write();
        if (r && !in->can_read(t)) {
            stalled_in++;
            return;
        }
        if (w && !out->can_write()) {
            stalled_out++;
            out->blocked++;
            return;
        }
        if (r) in->read();
        if (w) out->write(t + latency);
        busy++;
        advance();
    }
};

long loop_overhead = 2;

struct source : process {  // read_words: frames * frame_words writes, optionally paced
    long long total, k = 0;
    double pace;  // clocks per word, 0 = as fast as possible
    long long now = 0;
    source(long long words, double p) : total(words), pace(p) {}
    bool wants_read() const override { return false; }
    bool wants_write() const override { return true; }
    bool allowed(long long t) const { return pace <= 0 || t >= (long long)(k * pace); }
    void advance() override {
        if (++k == total) done = true;
    }
};

struct unpack : process {  // unpack_pixels
    long frames, pixels, fr = 0, n = 0, have = 0;
    unpack(long f, long px) : frames(f), pixels(px) {}
    bool wants_read() const override { return have < 3; }
    bool wants_write() const override { return true; }
    void advance() override {
        if (have < 3) have += 4;
        have -= 3;
        if (++n == pixels) {
            n = 0;
            have = 0;
            if (++fr == frames) done = true;
        }
    }
};

struct pass : process {  // quantize_input: a read and a write every iteration
    long long total, k = 0;
    explicit pass(long long n) : total(n) {}
    bool wants_read() const override { return true; }
    bool wants_write() const override { return true; }
    void advance() override {
        if (++k == total) done = true;
    }
};

struct sink : process {  // write_logits
    long long total, k = 0;
    long cout_;
    long long pixel_words;  // words per frame
    std::vector<long long>* frame_done;
    long long* clock;
    sink(long long n, long c, long long per_frame, std::vector<long long>* fd, long long* t)
        : total(n), cout_(c), pixel_words(per_frame), frame_done(fd), clock(t) {}
    bool wants_read() const override { return k % cout_ == 0; }
    bool wants_write() const override { return false; }
    void advance() override {
        ++k;
        if (k % pixel_words == 0) frame_done->push_back(*clock);
        if (k == total) done = true;
    }
};

struct layer_geo {
    long engine, kernel, stride, dilation, padding, in_h, in_w, out_h, out_w, cin, cout, k_nonzero, lanes,
        folds, chunk_channels, chunks, pixel_iterations, window_iterations, requant_span, act_depth, win_depth,
        pixels, group_columns, spacing, row_groups, ddr_rows, pixel_beats, row_beats, fetch_depth;
};

long ddr_latency = 64;  // clocks from a read burst's request to its first word

/// What line_buffer and rows_through_memory share: SPAN + S row slots used circularly, rows
/// numbered across frames, the rows each output row needs written; each acts in its own step().
struct row_walker : process {
    layer_geo g;
    long frames, span, slots, delta, first, need;
    row_walker(const layer_geo& geo, long f) : g(geo), frames(f) {
        span = g.dilation * (g.kernel - 1) + 1;
        slots = span + g.stride;
        delta = g.in_h - (g.out_h - 1) * g.stride;  // rows from a frame's last window row 0 to the next frame's
        first = -g.padding;  // row (across frames) of window row 0 of the output row being read
        need = ready(0);     // rows (across frames) it needs complete
    }
    long ready(long y) const {
        long r = y * g.stride - g.padding + span;
        return r < 0 ? 0 : (r > g.in_h ? g.in_h : r);
    }
    bool wants_read() const override { return false; }
    bool wants_write() const override { return false; }
    void advance() override {}
};

/// rows_through_memory (row_memory.hpp): a turn at a time -- an input pixel written when one is
/// there and its row's slot is free (pixel_beats words and the loop's entry and exit), else a
/// window pixel sent when its rows are written and the FIFO has room (the same plus the read
/// latency; a padding pixel: the entry and exit only), else an idle clock.
struct row_memory : row_walker {
    long beats;
    long wf = 0, wy = 0, wx = 0, written = 0;
    long rf = 0, yo = 0, ky = 0, rx = 0;
    long long busy_until = 0;  // the clock the current turn ends
    row_memory(const layer_geo& geo, long fr) : row_walker(geo, fr), beats(geo.pixel_beats) {}
    void step(long long t) override {
        if (done) {
            idle++;
            return;
        }
        if (t < busy_until) {
            busy++;
            return;
        }
        bool slot_free = rf >= frames || wf * g.in_h + wy < first + slots;
        if (wf < frames && slot_free && in->can_read(t)) {
            in->read();
            busy_until = t + beats + loop_overhead;
            busy++;
            if (++wx == g.in_w) {
                wx = 0;
                written++;
                if (++wy == g.in_h) {
                    wy = 0;
                    wf++;
                }
            }
        } else if (rf < frames && written >= need && out->can_write()) {
            long y = yo * g.stride - g.padding + ky * g.dilation;
            long cost = (y >= 0 && y < g.in_h) ? beats + loop_overhead + ddr_latency : loop_overhead;
            out->write(t + cost - 1 + latency);
            busy_until = t + cost;
            busy++;
            if (++rx == g.in_w) {
                rx = 0;
                if (++ky == g.kernel) {
                    ky = 0;
                    if (++yo == g.out_h) {
                        yo = 0;
                        rf++;
                        first += delta;
                    } else {
                        first += g.stride;
                    }
                    need = rf * g.in_h + ready(yo);
                }
            }
        } else {
            if (rf < frames && written >= need) {
                stalled_out++;
                out->blocked++;
            } else {
                stalled_in++;
            }
        }
        if (wf >= frames && rf >= frames) done = true;
    }
};

/// line_buffer (k > 1): a writer and a reader, each acting in a clock when it can (non-blocking);
/// rows are numbered across frames, so the writer takes the next frame while the reader drains this one.
struct row_window : row_walker {
    long cw, L, groups, row_words;
    long wf = 0, wy = 0, wn = 0, waddr = 0, done_rows = 0, done_d1 = 0, done_d2 = 0;
    long rf = 0, yo = 0, xo = 0, c = 0;
    row_window(const layer_geo& geo, long f) : row_walker(geo, f) {
        cw = g.cin / g.chunk_channels;
        L = g.group_columns * cw;  // chunks per group of `pixels` output pixels
        groups = g.row_groups;     // groups per output row (blocks of `spacing` groups)
        row_words = g.in_w * cw;
    }
    bool wants_read() const override { return false; }
    bool wants_write() const override { return false; }
    void advance() override {}
    void step(long long t) override {
        if (done) {
            idle++;
            return;
        }
        bool slot_free = rf >= frames || wf * g.in_h + wy < first + slots;
        bool have = wn != 0;
        bool waited = false;
        if (!have && wf < frames && slot_free) {
            if (in->can_read(t)) {
                in->read();
                have = true;
            } else {
                waited = true;
            }
        }
        bool wrote_row = false;
        if (have) {
            wn = wn + 1 == cw ? 0 : wn + 1;
            if (++waddr == row_words) {
                waddr = 0;
                wrote_row = true;
                if (++wy == g.in_h) {
                    wy = 0;
                    wf++;
                }
            }
        }
        bool sent = false;
        if (rf < frames && done_d2 >= need) {
            if (out->can_write()) {
                out->write(t + latency);
                sent = true;
                if (++c == L) {
                    c = 0;
                    if (++xo == groups) {
                        xo = 0;
                        if (++yo == g.out_h) {
                            yo = 0;
                            rf++;
                            first += delta;
                        } else {
                            first += g.stride;
                        }
                        need = rf * g.in_h + ready(yo);
                    }
                }
            } else {
                stalled_out++;
                out->blocked++;
            }
        }
        if (have || sent) busy++;
        else if (waited) stalled_in++;
        done_d2 = done_d1;
        done_d1 = done_rows;
        if (wrote_row) done_rows++;
        if (wf >= frames && rf >= frames) done = true;
    }
};

/// pointwise_window (k = 1).
struct point_window : process {
    layer_geo g;
    long frames, fr = 0;
    long long it = 0;
    long yp = 0, xp = 0, c = 0, cw;
    point_window(const layer_geo& geo, long f) : g(geo), frames(f) { cw = g.cin / g.chunk_channels; }
    bool inside() const {
        return yp >= g.padding && yp < g.padding + g.in_h && xp >= g.padding && xp < g.padding + g.in_w;
    }
    bool grid() const {
        return yp % g.stride == 0 && xp % g.stride == 0 && yp / g.stride < g.out_h && xp / g.stride < g.out_w;
    }
    bool wants_read() const override { return inside() && c == 0; }
    bool wants_write() const override { return grid(); }
    void advance() override {
        bool next = true;
        if (grid()) {
            next = ++c == cw;
            if (next) c = 0;
        }
        if (next && ++xp == g.in_w + 2 * g.padding) {
            xp = 0;
            yp++;
        }
        if (++it == g.window_iterations) {
            it = 0;
            yp = xp = c = 0;
            if (++fr == frames) done = true;
        }
    }
};

/// sparse_conv / dense_conv: load_first (L reads; the sparse engine's L + 1 clocks, each chunk
/// written a clock after its read, chunk_schedule), the MAC loop (groups * TP), finish (the rest
/// of a block still leaving, S clocks, then the last block's writes). A block's pixels leave one a MAC clock, the first in the clock
/// of its last group's last fold's last requantization step (fold_sequencer in folds.hpp).
struct engine : process {
    layer_geo g;
    long frames, fr = 0;
    int phase = 0;  // 0 load_first, 1 macs, 2 finish, 3 emit, -k: loop overhead clocks left before phase k
    long long k = 0;
    long steps, T, D, NPIX;  // NPIX: groups per frame
    long block, blocks, last;  // pixels a block, blocks a row, pixels of a row's last block
    long pix = 0, i = 0, f = 0, j = 0, pf = 0, r = 0, pr = 0, b = 0, pb = 0, en = 0, ecount = 0;
    bool pending = false;
    int next_phase = 0;
    long overhead = 0;
    engine(const layer_geo& geo, long fr_) : g(geo), frames(fr_) {
        steps = g.engine == 0 ? g.k_nonzero : g.chunks;
        T = g.folds * steps;
        D = (g.pixel_iterations - g.chunks) / 2;
        NPIX = g.out_h * g.row_groups;
        block = g.spacing * g.pixels;
        blocks = g.row_groups / g.spacing;
        last = g.out_w - (blocks - 1) * block;
    }
    bool block_done() const {
        return pending && j == g.requant_span - 1 && pf == g.folds - 1 && pr == g.spacing - 1;
    }
    bool mac_clock() const { return g.engine == 1 || i < T; }
    bool sparse() const { return g.engine == 0; }
    /// chunk_schedule::writes: the clocks of a group the next window's chunks are written.
    bool writes(long ii, long p) const { return ii >= D && ii < D + g.chunks && p + 1 < NPIX; }
    bool wants_read() const override {
        if (overhead) return false;
        if (phase == 0) return k < g.chunks || writes(0, 0);  // sparse only reaches k = L
        if (phase == 1) {
            if (!sparse()) return writes(i, pix);
            // chunk_schedule::reads: a clock ahead of each write, into the register it is broadcast from
            return writes(i + 1, pix) || (D == 0 && i == g.pixel_iterations - 1 && pix + 2 < NPIX);
        }
        return false;
    }
    bool wants_write() const override {
        if (overhead) return false;
        if (phase == 1) return mac_clock() && (block_done() || en < ecount);
        if (phase == 2) return en < ecount;  // drain: a block still leaving
        return phase == 3;
    }
    void go(int p) {
        phase = p;
        k = 0;
        overhead = loop_overhead;
    }
    void advance() override {
        if (overhead) {
            overhead--;
            return;
        }
        if (phase == 0) {
            if (++k == g.chunks + (sparse() ? 1 : 0)) {
                go(1);
                pix = i = f = j = pf = 0;
                pending = false;
                r = pr = b = pb = en = ecount = 0;
            }
        } else if (phase == 1) {
            if (mac_clock()) {
                macs++;
                if (block_done()) {
                    ecount = pb == blocks - 1 ? last : block;
                    en = 1;  // the first pixel left in this clock
                } else if (en < ecount) {
                    en++;
                }
                if (pending && j == g.requant_span - 1) pending = false;  // fold_sequencer::requantize
                if (j == steps - 1) {
                    pending = true;
                    pf = f;
                    pr = r;
                    pb = b;
                }
                if (++j == steps) {
                    j = 0;
                    if (++f == g.folds) {
                        f = 0;
                        if (++r == g.spacing) {
                            r = 0;
                            if (++b == blocks) b = 0;
                        }
                    }
                }
            }
            if (++i == g.pixel_iterations) {
                i = 0;
                pix++;
            }
            if (++k == NPIX * g.pixel_iterations) go(2);
        } else if (phase == 2) {
            if (en < ecount) {
                en++;
                return;
            }
            if (++k >= g.requant_span) {
                phase = 3;
                k = 0;
            }
        } else {  // phase 3: the last block's pixels, one a clock
            if (++k < last) return;
            if (++fr == frames) {
                done = true;
            } else {
                go(0);
            }
        }
    }
};

}  // namespace

int main() {
    std::string key;
    long frames = 1, height = 0, width = 0, frame_words = 0, layers = 0, num_classes = 0, out_h = 0, out_w = 0;
    double pace = 0;
    long long max_clocks = 0;
    std::vector<layer_geo> geo;
    long words_depth = 2, rgb_depth = 2, last_depth = 2;
    long lat_io = 2, lat_engine = 10, lat_window = 3;
    while (std::cin >> key) {
        if (key == "frames") std::cin >> frames;
        else if (key == "pace") std::cin >> pace;
        else if (key == "max_clocks") std::cin >> max_clocks;
        else if (key == "loop_overhead") std::cin >> loop_overhead;
        else if (key == "ddr_latency") std::cin >> ddr_latency;
        else if (key == "latency") std::cin >> lat_io >> lat_window >> lat_engine;
        else if (key == "input") std::cin >> height >> width >> frame_words;
        else if (key == "depths") std::cin >> words_depth >> rgb_depth >> last_depth;
        else if (key == "output") std::cin >> out_h >> out_w >> num_classes;
        else if (key == "layers") std::cin >> layers;
        else if (key == "layer") {
            layer_geo g;
            std::cin >> g.engine >> g.kernel >> g.stride >> g.dilation >> g.padding >> g.in_h >> g.in_w >> g.out_h >>
                g.out_w >> g.cin >> g.cout >> g.k_nonzero >> g.lanes >> g.folds >> g.chunk_channels >> g.chunks >>
                g.pixel_iterations >> g.window_iterations >> g.requant_span >> g.act_depth >> g.win_depth >>
                g.pixels >> g.group_columns >> g.spacing >> g.row_groups >> g.ddr_rows >> g.pixel_beats >>
                g.row_beats >> g.fetch_depth;
            geo.push_back(g);
        } else {
            std::fprintf(stderr, "pipeline_sim: unknown key %s\n", key.c_str());
            return 2;
        }
    }
    if (geo.empty() || (long)geo.size() != layers || frames < 1) {
        std::fprintf(stderr, "pipeline_sim: incomplete description\n");
        return 2;
    }

    std::vector<std::unique_ptr<fifo>> fifos;
    auto make_fifo = [&](const std::string& name, long depth) {
        fifos.emplace_back(new fifo(name, depth < 1 ? 1 : depth));
        return fifos.back().get();
    };
    std::vector<std::unique_ptr<process>> procs;
    std::vector<long long> frame_done;
    long long t = 0;

    fifo* words = make_fifo("words", words_depth);
    fifo* rgb = make_fifo("rgb", rgb_depth);
    fifo* act = make_fifo("act0", geo[0].act_depth);
    source* src = new source((long long)frames * frame_words, pace / (double)frame_words);
    src->name = "read_words";
    src->out = words;
    src->latency = lat_io;
    procs.emplace_back(src);
    unpack* up = new unpack(frames, height * width);
    up->name = "unpack_pixels";
    up->in = words;
    up->out = rgb;
    up->latency = lat_io;
    procs.emplace_back(up);
    pass* q = new pass((long long)frames * height * width);
    q->name = "quantize_input";
    q->in = rgb;
    q->out = act;
    q->latency = lat_io;
    procs.emplace_back(q);
    for (size_t n = 0; n < geo.size(); n++) {
        const layer_geo& g = geo[n];
        fifo* win = make_fifo("win" + std::to_string(n), g.win_depth);
        long next_depth = n + 1 < geo.size() ? geo[n + 1].act_depth : last_depth;
        fifo* next = make_fifo("act" + std::to_string(n + 1), next_depth);
        fifo* window_in = act;
        layer_geo walk = g;  // the window generator's vertical walk
        if (g.ddr_rows) {
            window_in = make_fifo("fetch" + std::to_string(n), g.fetch_depth);
            row_memory* rm = new row_memory(g, frames);
            rm->name = "layer" + std::to_string(n) + "_rows";
            rm->in = act;
            rm->out = window_in;
            rm->latency = lat_io;
            procs.emplace_back(rm);
            walk.in_h = g.out_h * g.kernel;  // each output row's k rows, one after another
            walk.stride = g.kernel;
            walk.dilation = 1;
            walk.padding = 0;
        }
        process* w = g.kernel > 1 ? (process*)new row_window(walk, frames) : (process*)new point_window(g, frames);
        w->name = "layer" + std::to_string(n) + "_window";
        w->in = window_in;
        w->out = win;
        w->latency = lat_window;
        procs.emplace_back(w);
        engine* e = new engine(g, frames);
        e->name = std::string(g.engine == 0 ? "sparse_conv" : "dense_conv") + std::to_string(n);
        e->in = win;
        e->out = next;
        e->latency = lat_engine;
        procs.emplace_back(e);
        act = next;
    }
    sink* out = new sink((long long)frames * out_h * out_w * num_classes, num_classes,
                         (long long)out_h * out_w * num_classes, &frame_done, &t);
    out->name = "write_logits";
    out->in = act;
    procs.emplace_back(out);

    bool all_done = false;
    for (; !all_done && (max_clocks <= 0 || t < max_clocks); t++) {
        for (auto& f : fifos) f->begin();
        all_done = true;
        for (auto& p : procs) {
            if (p.get() == src && !src->done && !src->allowed(t)) {
                src->idle++;
                all_done = false;
                continue;
            }
            p->step(t);
            all_done = all_done && p->done;
        }
        for (auto& f : fifos) f->end();
    }
    bool finished = all_done;

    std::printf("{\"finished\": %s, \"clocks\": %lld, \"frame_done\": [", finished ? "true" : "false", t);
    for (size_t n = 0; n < frame_done.size(); n++) std::printf("%s%lld", n ? ", " : "", frame_done[n]);
    std::printf("], \"fifos\": {");
    for (size_t n = 0; n < fifos.size(); n++) {
        const fifo& f = *fifos[n];
        std::printf("%s\"%s\": {\"depth\": %ld, \"max\": %ld, \"full_clocks\": %lld, \"blocked\": %lld}",
                    n ? ", " : "", f.name.c_str(), f.depth, f.max_count, f.full_clocks, f.blocked);
    }
    std::printf("}, \"processes\": {");
    for (size_t n = 0; n < procs.size(); n++) {
        const process& p = *procs[n];
        std::printf("%s\"%s\": {\"busy\": %lld, \"stalled_in\": %lld, \"stalled_out\": %lld, \"macs\": %lld, "
                    "\"done\": %s}", n ? ", " : "", p.name.c_str(), p.busy, p.stalled_in, p.stalled_out, p.macs,
                    p.done ? "true" : "false");
    }
    std::printf("}}\n");
    return finished ? 0 : 3;
}
