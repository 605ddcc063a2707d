"""sentei.host: everything that runs beside the accelerator, with no torch.

- :class:`Segmenter` -- the user's API: ``Segmenter(model, backend="auto")``, ``seg(frame)``;
- :mod:`~sentei.host.format` -- the model file (read, write, validate, weight blob);
- :mod:`~sentei.host.reference` -- the integer reference engine (the definition of correct);
- :mod:`~sentei.host.emulator` -- the fast bit-exact emulator;
- :mod:`~sentei.host.driver`, :mod:`~sentei.host.emulation` -- the PYNQ driver and its emulated overlay;
- :class:`SenteiOverlay` (:mod:`~sentei.host.pynq_overlay`) -- the bitstream as a ``pynq.Overlay``
  that loads a model and runs frames; :mod:`~sentei.host.pynq_ip` -- its ``DefaultIP`` driver
  (both import pynq: on first use only);
- :mod:`~sentei.host.synthetic` -- random valid models for tests and benchmarks.
"""

__all__ = ["Segmenter", "SenteiOverlay"]


def __getattr__(name):
    # Segmenter is imported on first use so that `import sentei.host` stays light
    if name == "Segmenter":
        from sentei.host.segmenter import Segmenter

        return Segmenter
    if name == "SenteiOverlay":  # imports pynq
        try:
            from sentei.host.pynq_overlay import SenteiOverlay
        except ModuleNotFoundError as exc:
            if exc.name != "pynq":
                raise
            from sentei.errors import SenteiError

            raise SenteiError("SenteiOverlay is a pynq.Overlay and pynq is not installed (on a PYNQ board: "
                              "pip install 'sentei[board]'; on a PC use Segmenter, the emulated overlay)") from None
        return SenteiOverlay
    raise AttributeError(f"module 'sentei.host' has no attribute {name!r}")
