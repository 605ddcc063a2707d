"""The benchmarking toolkit's library: what ``sentei bench`` times and how it reports.

- :mod:`~sentei.host.bench.engine` -- :class:`~sentei.host.bench.engine.BenchEngine`, what the timing loop needs;
- :mod:`~sentei.host.bench.report` -- merging reports into a Markdown table and a plot;
- :mod:`~sentei.host.bench.power` -- power sources (one module per source), choosing one, the sampler.
"""
