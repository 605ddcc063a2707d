"""The benchmarking toolkit's library: what ``sentei bench`` times and how it reports.

- :mod:`~sentei.host.commands.bench.engine` -- :class:`~sentei.host.commands.bench.engine.BenchEngine`, what the timing loop needs;
- :mod:`~sentei.host.commands.bench.report` -- merging reports into a Markdown table and a plot;
- :mod:`~sentei.host.commands.bench.power` -- power sources and the background sampler.
"""
