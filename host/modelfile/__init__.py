"""The model file and what reads it exactly, with no torch and no pynq (the bottom layer).

- :mod:`~sentei.host.modelfile.schema` -- the ``*.sentei`` file: writer, reader, validator, weight blob;
- :mod:`~sentei.host.modelfile.reference` -- the integer reference engine (the definition of correct);
- :mod:`~sentei.host.modelfile.synthetic` -- random valid models and frames for tests and benchmarks;
- :mod:`~sentei.host.modelfile.bundled` -- the trained models that ship in ``host/bundled``.
"""
