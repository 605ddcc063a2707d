"""sentei.training: PyTorch side -- data, models, pruning, distillation, QAT, export.

Needs the ``train`` extra (``pip install "sentei[train]"``).
"""
