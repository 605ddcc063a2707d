"""The fast bit-exact emulator: the reference engine's integers computed the way the accelerator does.

- :mod:`~sentei.host.emulator.engine` -- :class:`~sentei.host.emulator.engine.Emulator`;
- :mod:`~sentei.host.emulator.kernels` -- its numba kernels (importing it imports numba);
- :mod:`~sentei.host.emulator.postprocess` -- logits to a label map at the frame's size.

Importing this package imports nothing: numba is imported on first use.
"""
