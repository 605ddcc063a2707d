"""Training loops: the dense teacher, and compression (prune + distil + QAT) from a teacher.

Everything a run writes lives in its run directory: ``last.pt`` (every epoch, atomic),
``best.pt`` (best val mIoU), ``train.log`` (one line per epoch), ``config.yaml`` (the exact
configuration), ``metrics.json``; compression also exports ``model.sentei``. ``resume``
continues from ``last.pt`` with the optimizer, the epoch and every random generator, so
an interrupted run ends where an uninterrupted one would (resumed on another device type,
CPU <-> CUDA, the augmentation generator is reseeded; see :func:`_set_rng_state`). Under ``torchrun`` (WORLD_SIZE > 1)
the network is wrapped in DistributedDataParallel and each rank trains on its share of
every epoch; rank 0 evaluates and writes.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import io
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.errors import SenteiError
from sentei.host.data import metrics
from sentei.host.options import DEFAULT_WORKERS
from sentei.training import data as D
from sentei.training.config import check_config, existing_file, first_difference, load_config, resolve_config, settings
from sentei.training.distill import Distillation
from sentei.training.models import (FCN, check_accelerator, check_model_config, class_argmax, output_stride,
                                    upsample_logits)
from sentei.training.pruning import Sparsifier, SparsityScheduler, make_schedule, make_scheme
from sentei.training.quantize import QATNet, per_layer_bits

CHECKPOINT_FORMAT = "sentei-checkpoint"
RUN_FILES = ("last", "best", "teacher", "metrics", "config", "model")  # stems a run writes atomically


# ---------------------------------------------------------------------------------------
# configuration and files


def dump_yaml(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def inside(run_dir, name: str) -> Path:
    """``run_dir / name``, refusing a name that would write outside the run directory."""
    base = Path(run_dir).resolve()
    target = (base / str(name)).resolve()
    if target != base and base not in target.parents:
        raise SenteiError(f"output path {name!r} points outside the run directory {base}; use a plain file name")
    return target


def save_checkpoint(obj: dict, path) -> Path:
    """``torch.save`` to a temporary file, then rename (a reader never sees half a file)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path) -> dict:
    """Load a checkpoint written here (plain dicts and tensors only: ``weights_only=True``)."""
    path = existing_file(path, "checkpoint", "a checkpoint file (e.g. RUN/best.pt)")
    not_ours = (f"{path}: not a sentei checkpoint (not a PyTorch file, or one written by something else); "
                f"pass a checkpoint written by sentei train/compress")
    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception:  # unpickling refuses anything but tensors and plain containers
        raise SenteiError(not_ours) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise SenteiError(not_ours)
    return check_checkpoint(ckpt, path)


CHECKPOINT_KINDS = ("teacher", "compressed")
PHASES = ("prune", "qat")


def check_checkpoint(ckpt: dict, path) -> dict:
    """Refuse a checkpoint whose structure is not one sentei writes, before any network is built.

    Its keys and their types (``kind``, ``config`` with a ``model`` section, ``model`` a state
    dict of tensors, ``epoch``, ``val``; a compressed one's ``phase`` and ``compress``), its model
    config within the model format's limits (:func:`~sentei.training.models.check_model_config`:
    widths, input size, feature maps, dense weights), and its state dict's keys, shapes and
    kinds of tensor against the network the config describes, built on the ``meta`` device
    (no memory). One line naming the file and the field; returns ``ckpt``.
    """
    def refuse(problem: str):
        raise SenteiError(f"{path}: {problem}; pass a checkpoint written by sentei train or sentei compress")

    kind = ckpt.get("kind")
    if kind not in CHECKPOINT_KINDS:
        refuse(f"kind {kind!r:.80} is not one of {', '.join(CHECKPOINT_KINDS)}")
    for key in ("config", "model"):
        if not isinstance(ckpt.get(key), dict):
            refuse(f"{key!r} is {'missing' if key not in ckpt else 'a ' + type(ckpt[key]).__name__}; "
                   f"it must be a mapping")
    epoch = ckpt.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        refuse(f"epoch {epoch!r:.80} is not a count of epochs")
    if not isinstance(ckpt.get("val", {}), dict):
        refuse(f"val is a {type(ckpt['val']).__name__}; it must be a mapping of metrics")
    fraction = ckpt.get("sparsity_fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        refuse(f"sparsity_fraction {fraction!r:.80} is not a number in [0, 1]")
    try:
        check_model_config(ckpt["config"].get("model"), "config.model")
        if kind == "compressed":
            _check_compress_structure(ckpt)
    except SenteiError as exc:
        refuse(str(exc))
    state = ckpt["model"]
    if not state:
        refuse("its state dict ('model') is empty")
    expected = _expected_state(ckpt)
    missing = [k for k in expected if k not in state]
    if missing:
        refuse(f"state dict: missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
               + f" (a {kind}{' ' + ckpt['phase'] if kind == 'compressed' else ''} network of its config)")
    unexpected = [str(k) for k in state if k not in expected]
    if unexpected:
        refuse(f"state dict: unexpected {unexpected[0]!r:.80}"
               + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor):
            refuse(f"state dict: {key}: a {type(got).__name__}, expected a tensor")
        if tuple(got.shape) != tuple(want.shape):
            refuse(f"state dict: {key}: shape {list(got.shape)}, expected {list(want.shape)}")
        if torch.bool not in (got.dtype, want.dtype) and got.is_floating_point() != want.is_floating_point() \
                or got.is_complex():  # (a mask is saved as bool or float)
            refuse(f"state dict: {key}: {got.dtype}, expected {want.dtype}")
    return ckpt


def _check_compress_structure(ckpt: dict) -> None:
    from sentei.training.config import COMPRESS

    phase = ckpt.get("phase")
    if phase not in PHASES:
        raise SenteiError(f"phase {phase!r:.80} is not one of {', '.join(PHASES)}")
    comp = ckpt.get("compress")
    if not isinstance(comp, dict):
        raise SenteiError(f"'compress' is {'missing' if 'compress' not in ckpt else 'a ' + type(comp).__name__}; "
                          f"it must be the compression's mapping")
    for key in STRUCTURE:  # what builds the network; the rest is how it was trained
        if key in comp:
            problem = COMPRESS[key][0].problem(comp[key])
            if problem:
                raise SenteiError(f"compress.{key} {comp[key]!r:.80} must be {problem}")


def _expected_state(ckpt: dict) -> dict:
    """The state dict (keys, shapes, dtypes) of the network ``ckpt`` describes, built without memory."""
    try:
        with torch.device("meta"):
            net = _network(ckpt)
    except SenteiError:
        raise
    except Exception:  # an operation the meta device lacks: build it (its size is bounded by now)
        net = _network(ckpt)
    return net.state_dict()


class Log:
    """Lines to ``train.log`` (appended, flushed) and to stdout; silent on ranks > 0."""

    def __init__(self, path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


# ---------------------------------------------------------------------------------------
# networks from checkpoints


def _network(ckpt: dict) -> nn.Module:
    """The network a checkpoint describes, without its weights (``sparsifier`` attached)."""
    fcn = FCN(ckpt["config"]["model"])
    if ckpt.get("kind") == "teacher":
        return fcn
    comp = settings(ckpt["compress"], "compress", legacy=True)  # a key it leaves out: what its run took
    sparsifier = make_sparsifier(comp).prepare(fcn)
    net = make_qat(fcn, comp) if ckpt.get("phase") == "qat" else fcn
    net.sparsifier = sparsifier
    return net


def build_from_checkpoint(ckpt: dict) -> nn.Module:
    """The network a checkpoint describes, with its weights: FCN (teacher, pruning) or QATNet.

    ``ckpt`` is what :func:`load_checkpoint` returns (checked by :func:`check_checkpoint`)."""
    net = _network(ckpt)
    net.load_state_dict(ckpt["model"])
    if ckpt.get("kind") != "teacher":
        net.sparsifier.current = float(ckpt.get("sparsity_fraction", 1.0))
    return net


def target_sparsity(comp: dict) -> float:
    """The sparsity a compression config aims at: 1 - N/M for N:M, else its ``sparsity``."""
    comp = settings(comp, "compress", legacy=True)
    if comp["scheme"] == "nm":
        return 1.0 - int(comp["n"]) / int(comp["m"])
    return float(comp["sparsity"])


# what a compression's network is (kept by ``compress --from``), as opposed to how it is trained
STRUCTURE = ("scheme", "sparsity", "overrides", "group_size", "group_layout", "ranking", "n", "m", "patterns",
             "pattern_size", "clusters", "rewire", "schedule",
             "weight_bits", "act_bits")


def make_qat(fcn: FCN, comp: dict) -> QATNet:
    """The quantization-aware network of ``fcn`` at the bit widths of a compression config."""
    comp = settings(comp, "compress", legacy=True)
    act_bits = int(comp["act_bits"])
    if act_bits > 11:  # weights are 8 bits at most
        # TF32 (cuDNN's default for fp32 convolutions on Ampere and later) keeps 11 significant bits:
        # a fake-quantized activation of 12 bits or more would no longer be the integer it stands for
        torch.backends.cudnn.allow_tf32 = False
    return QATNet(fcn, weight_bits=comp["weight_bits"], act_bits=act_bits)


def check_compress(cfg: dict, run_dir) -> None:
    """Refuse a compression config before any work: its keys and values
    (:func:`~sentei.training.config.check_config`), its model file inside the run."""
    check_config(cfg, "compress")
    inside(run_dir, settings(cfg["compress"], "compress")["model_file"])


def make_sparsifier(comp: dict) -> Sparsifier:
    """The sparsifier of a compression config or a checkpoint's ``compress`` (a key it leaves out:
    the schema's default, or for a checkpoint written before the schema what its run took)."""
    comp = settings(comp, "compress", legacy=True)
    scheme = make_scheme(comp["scheme"], group_size=int(comp["group_size"]), n=int(comp["n"]), m=int(comp["m"]),
                         group_layout=comp["group_layout"], ranking=comp["ranking"], patterns=int(comp["patterns"]),
                         pattern_size=int(comp["pattern_size"]), clusters=int(comp["clusters"]),
                         rewire=float(comp["rewire"]), seed=int(comp["seed"]))
    return Sparsifier(scheme, target_sparsity(comp), comp["overrides"] or {})


# ---------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(net: nn.Module, split: D.Split, device, batch_size: int = 8, exact: bool = True,
             num_classes: int = 11, *, amp: bool) -> dict:
    """mIoU of ``net`` on a split (frames at the model's input size), by the CamVid protocol.

    A :class:`QATNet` runs its exact integer path (``exact``): the figure is the integer
    engine's. Labels come from bilinear upsampling and argmax by the host's formula, through
    ``F.interpolate`` (another float operation order than ``reference.resample``: a few labels
    in 100,000 differ; the reported figures come from ``sentei eval``).
    """
    was_training = net.training
    net.eval()
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for i in range(0, len(split), batch_size):
        frames = split.frames[i:i + batch_size].to(device, non_blocking=True)
        labels = split.labels[i:i + batch_size].to(device, non_blocking=True).long()
        if isinstance(net, QATNet):
            logits = net(frames, exact=exact)
        else:
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                logits = net(frames)
        pred = class_argmax(upsample_logits(logits.float(), labels.shape[-2], labels.shape[-1]))
        keep = labels < num_classes
        conf += torch.bincount(labels[keep] * num_classes + pred[keep], minlength=num_classes**2)
    net.train(was_training)
    conf = conf.view(num_classes, num_classes).cpu().numpy()
    iou = metrics.iou_per_class(conf)
    return {"miou": metrics.miou(conf), "pixel_accuracy": metrics.pixel_accuracy(conf),
            "iou": [None if np.isnan(v) else float(v) for v in iou]}


# ---------------------------------------------------------------------------------------
# the loop


@dataclass
class Env:
    """Where a run trains: device, DDP rank/world, and whether this rank writes."""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_env(device: str | None = None) -> Env:
    """The device, and the process group under torchrun (WORLD_SIZE > 1).

    Under torchrun each process takes ``cuda:LOCAL_RANK`` (NCCL) unless ``--device cpu`` asks
    for the CPU (gloo); a LOCAL_RANK beyond the visible GPUs is refused in one line.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        on_gpu = torch.cuda.is_available() and (device is None or not str(device).startswith("cpu"))
        if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
            raise SenteiError(f"--device {device}: no CUDA device is visible; use --device cpu")
        if on_gpu and local >= torch.cuda.device_count():
            raise SenteiError(f"torchrun started process {local} of this node, but {torch.cuda.device_count()} "
                              f"GPU(s) are visible: use --nproc_per_node {torch.cuda.device_count()} or fewer")
        dev = torch.device(f"cuda:{local}") if on_gpu else torch.device("cpu")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # before the process group, so NCCL binds this GPU
        if not dist.is_initialized():
            dist.init_process_group("nccl" if on_gpu else "gloo")
        return Env(dev, dist.get_rank(), world, local)
    return Env(resolve_device(device))


def resolve_device(device: str | None = None) -> torch.device:
    """``--device`` in one process: the device named, checked, or (None) CUDA when available, else the CPU."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise SenteiError(f"--device {device}: not a device this can train on; pass cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SenteiError("--device cuda: no CUDA device is visible; use --device cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise SenteiError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices "
                          f"(cuda:0 ...); pass one of them")
    return dev


def _barrier(env: Env) -> None:
    if env.world > 1:
        import torch.distributed as dist

        dist.barrier()


def teardown_env(env: Env) -> None:
    """Leave the process group (torchrun's runs; nothing on one device)."""
    if env.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def run_env(device: str | None = None):
    """:func:`setup_env` for the length of a command, the process group left however it ends."""
    env = setup_env(device)
    try:
        yield env
    finally:
        teardown_env(env)


def bf16_autocast_ok(device: torch.device) -> bool:
    """bf16 autocast pays on this CUDA device: compute capability 8.0 or more (Ampere and later).
    Older GPUs (V100, T4, RTX 20xx, Xavier) emulate bf16 convolutions outside cuDNN, far slower
    than fp32 -- torch's ``is_bf16_supported()`` still says yes."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def lr_at(base: float, progress: float, warmup: float, floor: float = 0.01) -> float:
    """Linear warm-up over ``warmup`` (fraction of the run), then cosine to ``floor * base``."""
    if warmup > 0 and progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    t = (progress - warmup) / max(1e-9, 1.0 - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _rng_state(cpu_gen, dev_gen) -> dict:
    state = {"cpu_gen": cpu_gen.get_state(), "dev_gen": dev_gen.get_state(), "torch": torch.get_rng_state(),
             "dev_type": dev_gen.device.type}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict, cpu_gen, dev_gen, reseed: int) -> str | None:
    """Restore the generators a checkpoint saved; returns a note when the device's could not be.

    A CPU generator's state (Mersenne twister) and a CUDA one's (Philox) do not convert, so a
    run started on one device type and resumed on the other reseeds the augmentation generator
    with ``reseed``: the run goes on from the same weights, optimizer and data order, but its
    random crops and flips are no longer those of an uninterrupted run.
    """
    cpu_gen.set_state(state["cpu_gen"])
    torch.set_rng_state(state["torch"])
    saved = state.get("dev_type", "cuda" if state["dev_gen"].numel() != state["cpu_gen"].numel() else "cpu")
    note = None
    if saved == dev_gen.device.type:
        dev_gen.set_state(state["dev_gen"])
    else:
        dev_gen.manual_seed(reseed)
        note = (f"the checkpoint was written on {saved} and this run is on {dev_gen.device.type}: the "
                f"augmentation generator is reseeded, so from here the run is not bit-identical to an "
                f"uninterrupted one")
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    return note


@dataclass
class Data:
    """The splits of a run, already on the training device."""

    train: D.Split
    val: D.Split
    class_weights: torch.Tensor


def load_data(cfg: dict, env: Env, workers: int = DEFAULT_WORKERS, synthetic: bool = False, limit: int | None = None) -> Data:
    """Train and val splits at the model's input size (CamVid from ``cfg['data']['root']``)."""
    inp = cfg["model"].get("input", {})
    size = (int(inp.get("height", 360)), int(inp.get("width", 480)))
    dcfg = settings(cfg.get("data"), "data")
    D.Augment.from_config(dcfg["augment"]).check(*size, output_stride(cfg["model"]))  # before the frames are read
    if synthetic:
        train = D.synthetic_split(int(dcfg["synthetic_frames"]), *size, seed=1)
        val = D.synthetic_split(max(4, int(dcfg["synthetic_frames"]) // 3), *size, seed=2)
    else:
        root = dcfg["root"]
        if not root:
            raise SenteiError("no data set: pass --data ROOT (the CamVid folder with train/ and val/)")
        show = env.main
        train = D.load_camvid(root, dcfg["train_split"], size, limit, workers, progress=show)
        val = D.load_camvid(root, dcfg["val_split"], size, limit, workers, progress=show)
    weights = D.median_frequency_weights(train.labels)
    return Data(train.to(env.device), val.to(env.device), weights.to(env.device))


def _progress(iterable, desc, total=None, enabled=True, leave=True):
    from tqdm import tqdm

    # disable=None: tqdm draws only on a terminal (logs and CI stay free of bar fragments)
    return tqdm(iterable, desc=desc, total=total, disable=None if enabled else True, leave=leave, mininterval=2.0,
                file=sys.stderr, dynamic_ncols=True)


def removed_if_failed(run):
    """Decorate a run (a function of ``run_dir`` and ``env``): should it fail before its first checkpoint, the
    folders it created (``run_dir``, and parents that were missing) are removed again; a folder
    that was there before is left alone."""

    signature = inspect.signature(run)

    @functools.wraps(run)
    def guarded(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        run_dir, env = Path(given["run_dir"]), given["env"]
        missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        try:
            return run(*args, **kwargs)
        except BaseException:
            if missing and env.main and not (run_dir / "last.pt").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
                for parent in missing[1:]:  # made for this run, and empty unless another run uses it
                    try:
                        parent.rmdir()
                    except OSError:
                        break
            raise

    return guarded


@removed_if_failed
def train_teacher(cfg: dict, run_dir, env: Env, data: Data, resume: bool = False) -> dict:
    """Train the dense network of ``cfg``; returns the final metrics (rank 0)."""
    check_config(cfg, "train")
    cfg = resolve_config(cfg, "train")  # every key, at the schema's default where the config has none
    run_dir = Path(run_dir)
    resumed = resume_checkpoint(run_dir, resume)
    tcfg = cfg["train"]
    torch.manual_seed(int(tcfg["seed"]))
    check_resumed(resumed, cfg, run_dir)
    net = FCN(cfg["model"])
    check_accelerator(net)
    run_dir.mkdir(parents=True, exist_ok=True)  # after the checks: a refused run leaves no folder
    log = Log(run_dir / "train.log", env.main)
    net = net.to(env.device, memory_format=torch.channels_last)  # NHWC: faster on CUDA and on CPU (oneDNN)
    opt = torch.optim.AdamW(net.parameters(), lr=float(tcfg["lr"]), weight_decay=float(tcfg["weight_decay"]))
    state = _Loop(cfg, run_dir, env, data, log, kind="teacher")
    start, cpu_gen, dev_gen = state.start(net, opt, resumed)
    if env.main and not resume:
        atomic_write_bytes(run_dir / "config.yaml", dump_yaml(cfg).encode("utf-8"))
    model = _ddp(net, env)
    epochs = int(tcfg["epochs"])
    for epoch in _progress(range(start, epochs), "train", total=epochs, enabled=env.main):
        stats = state.epoch(model, opt, epoch, epochs, float(tcfg["lr"]), cpu_gen, dev_gen,
                            Distillation(enabled=False))
        state.after_epoch(net, opt, epoch, epochs, stats, cpu_gen, dev_gen, extra={})
    result = {}
    if env.main:
        best = load_checkpoint(run_dir / "best.pt")
        result = state.finish(best)
        slim = {k: best[k] for k in ("format", "kind", "config", "model", "epoch", "val")}
        slim["model"] = {k: v.float() if v.is_floating_point() else v for k, v in slim["model"].items()}
        save_checkpoint(slim, run_dir / "teacher.pt")
        write_json(run_dir / "metrics.json", result)  # NaN -> null (strict JSON)
    _barrier(env)
    return result


def last_checkpoint(run_dir) -> Path:
    """``run_dir/last.pt``, which ``--resume`` continues from; refused when it is not there."""
    last = Path(run_dir) / "last.pt"
    if not last.exists():
        raise SenteiError(f"--resume: no checkpoint {last} to continue from (drop --resume to start a new run)")
    return last


def resume_checkpoint(run_dir, resume: bool) -> dict | None:
    """``run_dir/last.pt`` for ``--resume`` (loaded once per run), or None without it."""
    if not resume:
        return None
    last = last_checkpoint(run_dir)
    for stale in Path(run_dir).glob(".*.tmp"):  # half-written by a killed run (atomic_write_bytes)
        if stale.name.split(".")[1] in RUN_FILES:
            stale.unlink(missing_ok=True)  # under torchrun every rank looks
    return load_checkpoint(last)


def check_resumed(resumed: dict | None, cfg: dict, run_dir) -> None:
    """Refuse to resume a run under another recipe than the one it was started with: a resumed run
    takes its options from the new command line, and a forgotten ``--crop`` or another ``--epochs``
    would silently train the rest of it otherwise (the learning-rate schedule spans the epochs)."""
    if resumed is None:
        return
    best = resumed.get("best") or {}
    if best.get("epoch", -1) >= 0 and not (Path(run_dir) / "best.pt").is_file():
        # the run's product is taken from best.pt at its end: without it the run would train on
        # and then fail (or, beaten later, select from the evaluations after the move only)
        raise SenteiError(f"--resume: {run_dir}/last.pt records its best evaluation at epoch {best['epoch'] + 1} "
                          f"but {run_dir}/best.pt is missing; carry best.pt with last.pt when moving a run")
    section = "compress" if resumed.get("kind") == "compressed" else "train"
    # a run started before the schema (its config without some keys) ran with the code's defaults of then
    found = first_difference(resolve_config(resumed.get("config") or {}, section, legacy=True), cfg)
    if found is not None:
        path, was, now = found
        command = (resumed.get("config") or {}).get("command")
        if command and "--resume" not in command.split():
            command += " --resume"
        raise SenteiError(f"--resume: {run_dir} was started with {'.'.join(map(str, path))} = {was}, this command "
                          f"gives {now}; resume with the run's own options" + (f" ({command})" if command else "")
                          + " or start a new run in another --out")


def _ddp(net, env: Env):
    if env.world <= 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[env.local_rank] if env.device.type == "cuda" else None)


class _Loop:
    """State shared by both loops: data, generators, checkpoints, evaluation, the log."""

    def __init__(self, cfg, run_dir, env, data, log, kind):
        self.cfg, self.run_dir, self.env, self.data, self.log, self.kind = cfg, Path(run_dir), env, data, log, kind
        section = "train" if kind == "teacher" else "compress"
        self.tcfg = settings(cfg[section], section)  # every key (a resolved run config has them all already)
        self.augment = D.Augment.from_config(settings(cfg.get("data"), "data")["augment"])
        self.best = {"miou": -1.0, "epoch": -1}
        self.history = []
        self.eval_every = int(self.tcfg["eval_every"])
        self.batch_size = int(self.tcfg["batch_size"])
        if self.batch_size % env.world:
            raise SenteiError(f"batch_size {self.batch_size} does not split over {env.world} processes: "
                              f"give a multiple of {env.world} (the batch is divided among them)")
        self.rank_batch = self.batch_size // env.world  # each process's share of one batch
        self.amp = env.device.type == "cuda" and self.tcfg["amp"] == "bf16"
        if self.amp and not bf16_autocast_ok(env.device):
            self.amp = False
            cc = ".".join(str(v) for v in torch.cuda.get_device_capability(env.device))
            log(f"amp bf16 off: this GPU (compute capability {cc}) has no bf16 convolutions in cuDNN; "
                f"training in fp32")

    def start(self, net, opt, ck: dict | None):
        """Seeded generators, and with ``ck`` (:func:`resume_checkpoint`) the state it saved."""
        seed = int(self.tcfg["seed"])
        cpu_gen = torch.Generator().manual_seed(seed)
        dev_gen = torch.Generator(device=self.env.device).manual_seed(seed * 1000 + self.env.rank + 1)
        start = 0
        if ck is not None:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            start = int(ck["epoch"]) + 1
            reseed = (seed * 1000 + self.env.rank + 1) * 100003 + start
            note = _set_rng_state(ck["rng"], cpu_gen, dev_gen, reseed=reseed)
            if self.env.world > 1:
                # only rank 0's generator was saved: every rank restoring it would draw the same crops
                # and flips; each reseeds its own instead (the data order, cpu_gen, is shared anyway)
                dev_gen.manual_seed(reseed)
                note = ("resumed under DDP: each process's augmentation generator is reseeded (only rank 0's "
                        "was saved), so from here the run is not bit-identical to an uninterrupted one")
            if note:
                self.log(note)
            self.best, self.history = ck["best"], ck["history"]
            self.log(f"resumed from {self.run_dir / 'last.pt'} at epoch {start}")
        return start, cpu_gen, dev_gen

    def epoch(self, model, opt, epoch, epochs, base_lr, cpu_gen, dev_gen, distill: Distillation,
              teacher=None, on_step=None, warmup=None, after_step=None):
        env, data = self.env, self.data
        model.train()
        idx_batches = D.batches(len(data.train), self.rank_batch, cpu_gen, rank=env.rank, world=env.world)
        totals, count, t0 = {}, 0, time.perf_counter()
        warm = float(self.tcfg["warmup"]) if warmup is None else warmup
        want_feats = distill.enabled and distill.hint_layer is not None and distill.hint_weight > 0
        inner = _progress(idx_batches, f"epoch {epoch + 1}/{epochs}", enabled=env.main, leave=False)
        for it, idx in enumerate(inner):
            progress = (epoch + it / max(1, len(idx_batches))) / epochs
            for group in opt.param_groups:
                group["lr"] = lr_at(base_lr, progress, warm)
            if on_step is not None:  # the run's time in epochs, and its iteration count (1, 2, ...)
                on_step(epoch + it / max(1, len(idx_batches)), epoch * len(idx_batches) + it + 1)
            idx_dev = idx.to(data.train.frames.device)
            frames, labels = self.augment(data.train.frames[idx_dev], data.train.labels[idx_dev], dev_gen)
            frames = frames.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=env.device.type, dtype=torch.bfloat16, enabled=self.amp):
                t_logits = t_feat = s_feat = None
                if teacher is not None and distill.enabled:
                    with torch.no_grad():
                        if want_feats:  # the teacher's block outputs only when a hint loss uses one
                            t_logits, t_feats = teacher(frames, features=True)
                            t_feat = t_feats[distill.hint_layer]
                        else:
                            t_logits = teacher(frames)
                logits, s_feat = _student_forward(model, frames, distill.hint_layer if want_feats else None)
            loss, parts = distill.loss(logits, labels, data.class_weights, t_logits, s_feat, t_feat)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            count += 1
        stats = {k: float(v) / max(1, count) for k, v in totals.items()}
        stats["seconds"] = time.perf_counter() - t0
        stats["lr"] = opt.param_groups[0]["lr"]
        return stats

    def after_epoch(self, net, opt, epoch, epochs, stats, cpu_gen, dev_gen, extra, eval_now=None,
                    selectable=True, averaged=None):
        """Evaluate (every ``eval_every`` epochs), keep the best, checkpoint, log.

        ``averaged``: an ``AveragedModel`` of ``net`` (``--ema``): its weights are the ones
        evaluated, selected into ``best.pt`` and exported; ``last.pt`` keeps both.
        """
        env = self.env
        do_eval = (epoch + 1) % self.eval_every == 0 or epoch + 1 == epochs if eval_now is None else eval_now
        scored = net if averaged is None else averaged.module
        if do_eval and env.main:
            res = evaluate(scored, self.data.val, env.device, self.batch_size, amp=self.amp)
            stats["val_miou"] = res["miou"]
            if selectable and res["miou"] > self.best["miou"]:
                self.best = {"miou": res["miou"], "epoch": epoch}
                save_checkpoint(self._ckpt(scored, opt, epoch, cpu_gen, dev_gen, extra, val=res),
                                self.run_dir / "best.pt")
        self.history.append(dict(stats, epoch=epoch))
        if env.main:  # checkpoint first: a logged epoch is a saved epoch
            last = self._ckpt(net, opt, epoch, cpu_gen, dev_gen, extra)
            if averaged is not None:
                last["averaged"] = {k: v.detach().cpu() for k, v in averaged.state_dict().items()}
            save_checkpoint(last, self.run_dir / "last.pt")
            parts = " ".join(f"{k} {v:.4f}" for k, v in stats.items() if k not in ("seconds", "lr", "val_miou"))
            val = f" val mIoU {100 * stats['val_miou']:.2f}" if "val_miou" in stats else ""
            self.log(f"{self.kind} epoch {epoch + 1}/{epochs} {parts} lr {stats['lr']:.2e} "
                     f"{stats['seconds']:.1f}s{val}" + "".join(f" {k} {v}" for k, v in extra.items()
                                                              if isinstance(v, (int, float, str))))
        _barrier(env)

    def _ckpt(self, net, opt, epoch, cpu_gen, dev_gen, extra, val=None):
        ck = {"format": CHECKPOINT_FORMAT, "kind": self.kind, "config": self.cfg,
              "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
              "optimizer": opt.state_dict(), "epoch": epoch, "rng": _rng_state(cpu_gen, dev_gen),
              "best": self.best, "history": self.history}
        ck.update({k: v for k, v in extra.items()})
        if val is not None:
            ck["val"] = val
        return ck

    def finish(self, best: dict) -> dict:
        """The run's metrics, with ``best`` the loaded ``best.pt``."""
        return {"best_epoch": int(best["epoch"]) + 1, "val": best["val"], "epochs": len(self.history),
                "seconds": float(sum(h.get("seconds", 0.0) for h in self.history))}


def _student_forward(model, frames, hint_layer):
    inner = model.module if hasattr(model, "module") else model
    if hint_layer is None:
        return model(frames), None
    if isinstance(inner, QATNet):
        logits, acts = model(frames, return_acts=True)
        return logits, acts[hint_layer + 1] * inner.act_scale[hint_layer].abs()
    logits, feats = model(frames, features=True)
    return logits, feats[hint_layer]


# ---------------------------------------------------------------------------------------
# compression


@removed_if_failed
def compress(cfg: dict, teacher_path, run_dir, env: Env, data: Data, resume: bool = False,
             init_path=None) -> dict:
    """Prune (gradually) with distillation, then quantization-aware training; export the model file.

    ``cfg['compress']`` holds: scheme, sparsity, overrides, group_size, group_layout, ranking, n, m, schedule,
    prune_epochs, qat_epochs, lr, qat_lr, distill, weight_bits, act_bits, batch_size, seed,
    ema (decay of the weight average of the QAT phase; 0 or absent: none).

    ``init_path``: a QAT checkpoint of an earlier compression (its ``best.pt``, or the
    bundled ``*-qat`` one) to continue from (``sentei compress --from``): its network, masks,
    activation scales and bit widths are kept, pruning is skipped, and ``qat_epochs`` more
    epochs of distillation and QAT run -- more training, or fine-tuning on other data.
    """
    run_dir = Path(run_dir)
    check_compress(cfg, run_dir)  # refuse before any epoch runs (and before the run directory is made)
    cfg = resolve_config(cfg, "compress")  # every key, at the schema's default where the config has none
    comp = cfg["compress"]
    resumed = resume_checkpoint(run_dir, resume)
    tck = load_checkpoint(teacher_path)
    if tck.get("kind") != "teacher":
        raise SenteiError(f"{teacher_path}: --teacher must be a dense teacher checkpoint from sentei train")
    cfg = copy.deepcopy(cfg)
    cfg["model"] = copy.deepcopy(tck["config"]["model"])
    cfg["teacher"] = {"path": str(teacher_path), "val": tck.get("val", {}).get("miou")}
    torch.manual_seed(int(comp["seed"]))
    teacher = FCN(cfg["model"])
    teacher.load_state_dict(tck["model"])
    teacher.to(env.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    if resumed is not None:  # a run continued --from a checkpoint resumes only as one (and vice versa)
        was_from = (resumed.get("config") or {}).get("from")
        if was_from and init_path is None:
            raise SenteiError(f"{run_dir} continued from {was_from['path']}: resume it with --from "
                              f"{was_from['path']} --resume")
        if init_path is not None and not was_from:
            raise SenteiError(f"{run_dir} was not started with --from: resume it without --from")
    init = None
    if init_path is not None:
        init = load_checkpoint(init_path)
        if init.get("kind") != "compressed" or init.get("phase") != "qat":
            raise SenteiError(f"{init_path}: --from needs a quantization-aware checkpoint of sentei compress "
                              f"(a run's best.pt, or a bundled *-qat model)")
        size = [((c["model"].get("input") or {}).get("height"), (c["model"].get("input") or {}).get("width"))
                for c in (init["config"], tck["config"])]
        if size[0] != size[1]:
            raise SenteiError(f"--from {init_path}: its input {size[0]} differs from the teacher's {size[1]}; "
                              f"distil from the teacher it was compressed from")
        # the network is the checkpoint's: none of the config's structure keys may stay behind
        comp = {k: v for k, v in comp.items() if k not in STRUCTURE}
        comp.update((k, v) for k, v in settings(init["compress"], "compress", legacy=True).items() if k in STRUCTURE)
        comp["prune_epochs"] = 0
        cfg["compress"] = comp
        cfg["model"] = copy.deepcopy(init["config"]["model"])
        cfg["from"] = {"path": str(init_path), "epoch": int(init["epoch"]) + 1,
                       "val": init.get("val", {}).get("miou"), "command": init["config"].get("command")}
        qat = build_from_checkpoint(init)
        fcn, sparsifier = qat.fcn, qat.sparsifier
    else:
        fcn = FCN(cfg["model"])
        fcn.load_state_dict(tck["model"])
        sparsifier = make_sparsifier(comp).prepare(fcn)
    fcn = fcn.to(env.device, memory_format=torch.channels_last)
    teacher = teacher.to(memory_format=torch.channels_last)
    schedule = make_schedule(comp["schedule"])
    distill = Distillation.from_config(comp["distill"])
    p_epochs, q_epochs = int(comp["prune_epochs"]), int(comp["qat_epochs"])
    if p_epochs == 0 and init is None and target_sparsity(comp) > 0:
        raise SenteiError(f"compress.prune_epochs 0: pruning to {100 * target_sparsity(comp):.0f} % zeros needs "
                          f"at least one epoch (0 only with scheme dense); set prune_epochs")
    per_layer_bits(comp["weight_bits"], fcn.layer_names())  # before the run exists, not at QAT
    check_resumed(resumed, cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)  # after the checks: a refused run leaves no folder
    log = Log(run_dir / "train.log", env.main)
    epochs = p_epochs + q_epochs
    loop = _Loop(cfg, run_dir, env, data, log, kind="compressed")

    # the network of the phase the run is in: a --from checkpoint's (its calibrated and learned
    # activation scales come with it), or on resume the phase the checkpoint was in
    if init is not None:
        net = qat.to(env.device)
    elif resumed is not None and resumed.get("phase") == "qat":
        net = make_qat(fcn, comp).to(env.device)
    else:
        net = fcn
    phase = "qat" if isinstance(net, QATNet) else "prune"
    opt = _optimizer(net, comp, phase)
    start, cpu_gen, dev_gen = loop.start(net, opt, resumed)
    ema = float(comp["ema"] or 0.0)
    averaged = _averaged(net, ema) if phase == "qat" else None
    if resumed is not None:
        sparsifier.current = float(resumed.get("sparsity_fraction", 1.0))
        if averaged is not None and "averaged" in resumed:
            averaged.load_state_dict(resumed["averaged"])
    elif env.main:
        atomic_write_bytes(run_dir / "config.yaml", dump_yaml(cfg).encode("utf-8"))
    if init is not None and start == 0:
        log(f"continuing from {init_path} (epoch {cfg['from']['epoch']}, val mIoU "
            f"{100 * (cfg['from']['val'] or 0):.2f}): {q_epochs} more QAT epochs, pruning skipped")

    def into_qat():
        qat = make_qat(fcn, comp).to(env.device)
        calib = [data.train.frames[i:i + loop.batch_size] for i in range(0, min(len(data.train), 64),
                                                                           loop.batch_size)]
        qat.calibrate(calib)
        log(f"QAT: calibrated activation scales {[round(float(s), 5) for s in qat.act_scale.detach()]}")
        return qat, _optimizer(qat, comp, "qat")

    mask_every = int(comp["mask_every"])
    scheduler = SparsityScheduler(sparsifier, schedule, p_epochs) if p_epochs else None

    def on_step(t, step):
        """Zhu & Gupta: new masks every ``mask_every`` iterations while the sparsity ramps up.

        ``step`` counts iterations from the run's start (not this process's), so a resumed run
        updates its masks on the same iterations as an uninterrupted one.
        """
        frac = scheduler.fraction_at(t)
        if frac != sparsifier.current and (step % mask_every == 0 or frac == 1.0):
            scheduler.step(t)  # every layer's level: its target times frac
            sparsifier.step()

    model = _ddp(net, env)  # wrapped once per phase, not per epoch (DDP broadcasts and builds its reducer)
    for epoch in _progress(range(start, epochs), "compress", total=epochs, enabled=env.main):
        if epoch >= p_epochs and not isinstance(net, QATNet):
            net, opt = into_qat()
            model = _ddp(net, env)
            averaged = _averaged(net, ema)
        if epoch < p_epochs:

            stats = loop.epoch(model, opt, epoch, p_epochs, float(comp["lr"]), cpu_gen, dev_gen,
                               distill, teacher, on_step=on_step)
            if epoch + 1 == p_epochs and sparsifier.current != 1.0:
                sparsifier.step(1.0)
            sparsifier.check()
            extra = {"phase": "prune", "sparsity_fraction": sparsifier.current, "compress": comp}
            loop.after_epoch(net, opt, epoch, epochs, stats, cpu_gen, dev_gen, extra,
                             eval_now=(epoch + 1) % loop.eval_every == 0 or epoch + 1 == p_epochs, selectable=False)
        else:
            qe = epoch - p_epochs
            stats = loop.epoch(model, opt, qe, q_epochs, float(comp["qat_lr"]), cpu_gen, dev_gen,
                               distill, teacher, warmup=0.0,
                               after_step=None if averaged is None else lambda: averaged.update_parameters(net))
            sparsifier.check()
            extra = {"phase": "qat", "sparsity_fraction": sparsifier.current, "compress": comp}
            loop.after_epoch(net, opt, epoch, epochs, stats, cpu_gen, dev_gen, extra,
                             eval_now=(qe + 1) % loop.eval_every == 0 or epoch + 1 == epochs, averaged=averaged)
    result = {}
    if env.main:
        result = finish_compressed(run_dir, cfg, loop)
    _barrier(env)
    return result


def _averaged(net, decay: float):
    """The exponential moving average of ``net``'s weights (``torch.optim.swa_utils``), or None.

    Only over the QAT phase: its masks are fixed, so the average of masked weights keeps
    every zero (and every filter's K); batch-norm statistics are frozen in QAT, so nothing
    needs recomputing. Averaging smooths the last epochs' noise (SWA / EMA of weights).
    """
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay))


def _optimizer(net, comp, phase):
    lr = float(comp["qat_lr"] if phase == "qat" else comp["lr"])
    wd = float(comp["weight_decay"])
    if isinstance(net, QATNet):
        scales = [net.act_scale]
        others = [p for n, p in net.named_parameters() if n != "act_scale"]
        return torch.optim.AdamW([{"params": others}, {"params": scales, "weight_decay": 0.0}], lr=lr,
                                 weight_decay=wd)
    return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)


def export_checkpoint(ckpt: dict, net, out, name: str):
    """Write the model file of a QAT checkpoint (``net`` built from it), with its run's provenance."""
    from sentei.training import export

    comp = settings(ckpt["compress"], "compress", legacy=True)
    schemes = {n: comp["scheme"] for n, _ in net.sparsifier.layers}
    meta = {"config": ckpt["config"], "val": ckpt.get("val"), "epoch": int(ckpt["epoch"]) + 1}
    return export.export(net, out, name, schemes, meta)


def finish_compressed(run_dir: Path, cfg: dict, loop: _Loop) -> dict:
    """Export the best QAT checkpoint to ``model.sentei`` and write ``metrics.json``."""
    best = load_checkpoint(run_dir / "best.pt")
    net = build_from_checkpoint(best)
    comp = settings(cfg["compress"], "compress")
    out = inside(run_dir, comp["model_file"])
    model = export_checkpoint(best, net, out, comp.get("name") or cfg.get("name") or "sentei-model")
    return summarize(model, dict(loop.finish(best), model_file=str(out.name)))


def summarize(model, extra: dict | None = None) -> dict:
    """Sparsity, weight memory and nonzero spread of a model file (for metrics and the results table)."""
    from sentei.host.modelfile.schema import describe

    info = describe(model)
    pruned = [r for r in info["layers"] if r["scheme"] != "dense"]
    spread = max((r["nnz_max"] - r["nnz_min"] for r in pruned), default=0)
    out = {"name": model.name,
           "layers": {r["name"]: {"sparsity": r["sparsity"], "k_nonzero": r["k_nonzero"], "nnz_min": r["nnz_min"],
                                  "nnz_max": r["nnz_max"], "scheme": r["scheme"], "weight_bits": r["weight_bits"]}
                      for r in info["layers"]},
           "min_pruned_sparsity": min((r["sparsity"] for r in pruned), default=0.0),
           "total_sparsity": info["totals"]["sparsity"],
           "weight_bytes": info["totals"]["weight_bytes_packed"],
           "weight_bytes_dense": info["totals"]["weight_bytes_dense"],
           "nnz_spread": spread}
    out.update(extra or {})
    return out


__all__ = ["load_config", "inside", "save_checkpoint", "load_checkpoint", "check_checkpoint", "build_from_checkpoint",
           "evaluate", "setup_env", "load_data", "train_teacher", "compress", "summarize", "target_sparsity"]
