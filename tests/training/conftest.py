"""Shared fixtures: a tiny teacher and a compressed (QAT) run on synthetic data, trained once."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

TINY = {"num_classes": 11,
        "input": {"height": 32, "width": 48},
        "layers": [{"name": "conv1", "out": 8, "stride": 2}, {"name": "conv2", "out": 16, "stride": 2},
                   {"name": "conv3", "out": 16, "dilation": 2}, {"name": "conv4", "out": 16, "stride": 2}]}


def tiny_config(epochs=30):
    return {"name": "tiny", "model": {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                                      for k, v in TINY.items()},
            "data": {"synthetic_frames": 16, "augment": {"scale": [0.9, 1.2]}},
            "train": {"epochs": epochs, "batch_size": 8, "lr": 0.01, "eval_every": 100, "seed": 0}}


def compress_config(scheme="filterwise", sparsity=0.75, epochs=(6, 4), **extra):
    comp = {"scheme": scheme, "sparsity": sparsity, "overrides": {"conv1": 0.0, "classifier": 0.0},
            "group_size": 8, "prune_epochs": epochs[0], "qat_epochs": epochs[1], "lr": 0.003, "qat_lr": 0.001,
            "batch_size": 8, "eval_every": 2, "seed": 0, "schedule": {"type": "cubic", "start": 0.0, "end": 0.5},
            "distill": {"enabled": True, "alpha": 0.5, "temperature": 2.0}, "weight_bits": 8, "act_bits": 8}
    comp.update(extra)
    return {"name": "tiny-compressed", "data": {"synthetic_frames": 16}, "compress": comp}


def tiny_teacher(run_dir, epochs=30):
    """Train the tiny teacher on the synthetic set, on the CPU, into ``run_dir``: (cfg, env, data)."""
    from sentei.training import train

    torch.set_num_threads(2)
    env = train.setup_env("cpu")
    cfg = tiny_config(epochs)
    data = train.load_data(cfg, env, synthetic=True)
    train.train_teacher(cfg, run_dir, env, data)
    return cfg, env, data


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """(teacher run dir, compressed run dir, data) on the synthetic set, on the CPU."""
    from sentei.training import train

    tdir = tmp_path_factory.mktemp("teacher")
    cfg, env, data = tiny_teacher(tdir)
    cdir = tmp_path_factory.mktemp("compressed")
    ccfg = compress_config()
    ccfg["model"] = cfg["model"]
    result = train.compress(ccfg, tdir / "teacher.pt", cdir, env, data)
    return tdir, cdir, data, result
