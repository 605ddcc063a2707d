"""The board runtime: frames in, label maps out, on the FPGA or on its register-level emulation.

- :mod:`~sentei.host.runtime.segmenter` -- :class:`~sentei.host.runtime.segmenter.Segmenter`, the user's API;
- :mod:`~sentei.host.runtime.driver` -- the register protocol and the buffers;
- :mod:`~sentei.host.runtime.emulated_overlay` -- the accelerator's register file and DDR on a PC;
- :mod:`~sentei.host.runtime.pynq_ip`, :mod:`~sentei.host.runtime.pynq_overlay` -- ``SenteiIP`` (a
  ``pynq.DefaultIP``) and ``SenteiOverlay`` (a ``pynq.Overlay``); both import pynq;
- :mod:`~sentei.host.runtime.camera` -- live frames from a camera, stream or video file;
- :mod:`~sentei.host.runtime.demo` -- :func:`run_demo`, the shipped model on the bundled samples;
- :mod:`~sentei.host.runtime.evaluation` -- scoring a model on a CamVid split.
"""
