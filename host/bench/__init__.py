"""The benchmarking toolkit's library: what ``sentei bench`` times and how it reports.

- :mod:`~sentei.host.bench.engine` -- :class:`~sentei.host.bench.engine.BenchEngine`, what the timing loop needs;
- :mod:`~sentei.host.bench.backends` -- the Segmenter backends and the modeled FPGA it times;
- :mod:`~sentei.host.bench.timing` -- one timed run (frames, power, rounds) and its statistics;
- :mod:`~sentei.host.bench.trtexec` -- TensorRT baselines through ``trtexec``;
- :mod:`~sentei.host.bench.environment` -- the machine a run ran on;
- :mod:`~sentei.host.bench.report` -- merging reports into a Markdown table and a plot;
- :mod:`~sentei.host.bench.power` -- power sources (one module per source), choosing one, the sampler.
"""
