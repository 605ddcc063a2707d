"""sentei: hardware-aware filter-wise sparse CNNs for PYNQ.

The data path is visible in the sub-packages:

- :mod:`sentei.training` -- PyTorch: data, models, pruning, distillation, QAT, export;
- :mod:`sentei.host` -- the model file (the contract), the integer reference engine, the
  driver with its emulation, camera, benchmarks;
- :mod:`sentei.overlay` -- the accelerator's HLS sources, code generator, C-simulation
  and performance model.

``sentei.host`` never imports torch: it runs on a board image that has none.
"""
from sentei.errors import SenteiError

__version__ = "0.1.0"
__all__ = ["SenteiError", "__version__"]
