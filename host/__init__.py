"""sentei.host: everything that runs beside the accelerator, with no torch.

- :class:`Segmenter` -- the user's API: ``Segmenter(model, backend="auto")``, ``seg(frame)``;
- :mod:`~sentei.host.modelfile.schema` -- the model file (read, write, validate, weight blob);
- :mod:`~sentei.host.modelfile.reference` -- the integer reference engine (the definition of correct);
- :mod:`~sentei.host.emulator.engine` -- the fast bit-exact emulator;
- :mod:`~sentei.host.runtime.driver`, :mod:`~sentei.host.runtime.emulated_overlay` -- the PYNQ driver and its emulated overlay;
- :class:`SenteiOverlay` (:mod:`~sentei.host.runtime.pynq_overlay`) -- the bitstream as a ``pynq.Overlay``
  that loads a model and runs frames; :mod:`~sentei.host.runtime.pynq_ip` -- its ``DefaultIP`` driver
  (both import pynq: on first use only);
- :mod:`~sentei.host.modelfile.synthetic` -- random valid models for tests and benchmarks.
"""

__all__ = ["Segmenter", "SenteiOverlay"]


def __getattr__(name):
    # Segmenter is imported on first use so that `import sentei.host` stays light
    if name == "Segmenter":
        from sentei.host.runtime.segmenter import Segmenter

        return Segmenter
    if name == "SenteiOverlay":  # imports pynq
        try:
            from sentei.host.runtime.pynq_overlay import SenteiOverlay
        except ModuleNotFoundError as exc:
            if exc.name != "pynq":
                raise
            from sentei.errors import SenteiError

            raise SenteiError("SenteiOverlay is a pynq.Overlay and pynq is not installed (on a PYNQ board: "
                              "pip install 'sentei[board]'; on a PC use Segmenter, the emulated overlay)") from None
        return SenteiOverlay
    raise AttributeError(f"module 'sentei.host' has no attribute {name!r}")
