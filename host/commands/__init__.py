"""The host's command-line handlers (listed in :data:`sentei.cli.COMMAND_MODULES`), thin over the library.

- :mod:`~sentei.host.commands.models` -- ``sentei models | info | segment | eval``;
- :mod:`~sentei.host.commands.demo` -- ``sentei demo`` and ``sentei camera``;
- :mod:`~sentei.host.commands.bench` -- ``sentei bench`` and ``sentei bench-report``.
"""
