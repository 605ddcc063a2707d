"""sentei.host: everything that runs beside the accelerator, with no torch.

- :class:`Segmenter` -- the user's API: ``Segmenter(model, backend="auto")``, ``seg(frame)``;
- :mod:`~sentei.host.format` -- the model file (read, write, validate, weight blob);
- :mod:`~sentei.host.reference` -- the integer reference engine (the definition of correct);
- :mod:`~sentei.host.emulator` -- the fast bit-exact emulator;
- :mod:`~sentei.host.driver`, :mod:`~sentei.host.emulation` -- the PYNQ driver and its emulated overlay;
- :mod:`~sentei.host.synthetic` -- random valid models for tests and benchmarks.
"""

__all__ = ["Segmenter"]


def __getattr__(name):
    # Segmenter is imported on first use so that `import sentei.host` stays light
    if name == "Segmenter":
        from sentei.host.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'sentei.host' has no attribute {name!r}")
