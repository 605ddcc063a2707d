"""sentei.host: everything that runs beside the accelerator, with no torch.

- :mod:`~sentei.host.format` -- the model file (read, write, validate, weight blob);
- :mod:`~sentei.host.reference` -- the integer reference engine (the definition of correct);
- :mod:`~sentei.host.synthetic` -- random valid models for tests and benchmarks.
"""
