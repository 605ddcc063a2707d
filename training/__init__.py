"""sentei.training: PyTorch side -- data, models, pruning, distillation, QAT, export.

Needs the ``train`` extra (``pip install "sentei[train]"``). The pipeline, as commands::

    sentei train    --data CAMVID --out runs/teacher                      # dense teacher
    sentei compress --data CAMVID --teacher runs/teacher/teacher.pt \\
                    --out runs/fw90 --scheme filterwise --sparsity 0.9     # prune + distil + QAT
    sentei export   runs/fw90/best.pt -o fw90.sentei                      # checkpoint -> model file
    sentei eval     --model fw90.sentei --data CAMVID --split val --backend emu
    sentei compare  --model fw90.sentei --checkpoint runs/fw90/best.pt --image frame.png

Modules: :mod:`~sentei.training.data` (CamVid, synthetic set, GPU augmentation),
:mod:`~sentei.training.models` (config-driven FCN, accelerator checker),
:mod:`~sentei.training.pruning` (schemes, schedules, sparsifier),
:mod:`~sentei.training.distill`, :mod:`~sentei.training.quantize` (QAT),
:mod:`~sentei.training.export`, :mod:`~sentei.training.engine` (``--backend torch``),
:mod:`~sentei.training.compare`, :mod:`~sentei.training.config` (config files and their keys),
:mod:`~sentei.training.train` (loops, checkpoints, DDP),
:mod:`~sentei.training.results` (docs/results.md). ``torchrun --nproc_per_node N -m sentei
train ...`` trains on N GPUs with DistributedDataParallel. Configs: ``training/configs``;
the command lines of the bundled models: ``training/reproduce.sh``.
"""

# the torch engines of `--backend torch` go into the host's engine registry (host/ never
# imports training/); light: torch is imported when an engine is opened
from sentei.training import torch_engines  # noqa: E402,F401
