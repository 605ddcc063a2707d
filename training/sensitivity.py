"""Per-layer pruning sensitivity of a dense teacher: ``sentei sensitivity``.

For every layer and every sparsity of a list, the teacher's mIoU on a split with *only that
layer* pruned filter-wise -- every filter keeps exactly ``K = filter_k(Cin*k*k, s)`` weights,
its largest magnitudes (the ``filterwise`` scheme of :mod:`sentei.training.pruning`, its
invariant checked) -- scored by :func:`sentei.training.train.evaluate` (the mIoU every
training log reports). The drops are what ``sentei design`` predicts a per-layer design's
accuracy from.

Two ways to measure a drop:

* inference only (the default): the pruned teacher as it is, its batch-norm statistics
  re-estimated (``recalibrate``). Minutes on a CPU, but it measures how far a layer is from
  working *without training*, and a compressed model is trained: on the bundled teacher it
  puts conv3 at 95 % 23 points down, where a model trained with conv2-conv7 all at 95 % loses
  5.5 in all.
* fine-tuned (``finetune_steps`` > 0): the pruned teacher (a fixed :class:`~sentei.training.
  pruning.Mask` on the one layer) trained for a few steps with distillation from the
  teacher, on random crops of the train split, as ``sentei compress`` trains (AdamW, the
  same loss); the drop is taken against the teacher fine-tuned the same way with nothing
  pruned. A short fine-tune is the part of a layer's loss that training does not win back
  quickly, so the table ranks layers (and designs) as training does.

Each figure is cached in a JSON file under a key of the teacher's SHA-256, the frames' own
checksum (pixels and labels), the split, the resolution, the layer and the sparsity, so a
rerun, or one with more sparsities, only evaluates what is new. Outputs (``--out DIR``):
``sensitivity.json`` (the rows, the teacher's model config, what was evaluated on),
``sensitivity.md`` (the table) and ``sensitivity.png`` (mIoU against sparsity per layer).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.errors import SenteiError
from sentei.host.options import DEFAULT_WORKERS

FORMAT = "sentei-sensitivity"
CACHE_FORMAT = "sentei-sensitivity-cache"
DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
DEFAULT_RECALIBRATE = 32  # train frames the batch-norm statistics are re-estimated on after each pruning
DEFAULT_FINETUNE_LR = 1e-3  # sentei compress's pruning-phase learning rate (config compress.lr)


def parse_sparsities(text: str) -> list[float]:
    """``"0.5,0.9"`` -> ``[0.5, 0.9]``: sorted, distinct, each in (0, 1)."""
    try:
        values = sorted({float(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        raise SenteiError(f"--sparsities {text!r}: expected comma-separated fractions, e.g. 0.5,0.8,0.9") from None
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise SenteiError(f"--sparsities {text!r}: every sparsity must lie in (0, 1), e.g. 0.5,0.8,0.9")
    return values


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_checksum(split) -> str:
    """SHA-256 (16 hex digits) of a split's frames and labels as evaluated (after resizing)."""
    digest = hashlib.sha256()
    for tensor in (split.frames, split.labels):
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_key(teacher_sha: str, data_sha: str, split: str, size, layer: str | None, sparsity: float,
              calibration: str | None = None, finetune: str | None = None) -> str:
    """The cache's key of one figure (``layer`` None: the dense teacher; ``calibration``: the
    batch-norm calibration frames' checksum, None without; ``finetune``: what the fine-tune
    was (:meth:`FineTune.key`), None without -- a fine-tuned figure's ``layer`` None is the
    teacher fine-tuned with nothing pruned)."""
    key = [teacher_sha, data_sha, split, f"{size[0]}x{size[1]}", layer, repr(float(sparsity))]
    if finetune is not None:
        return json.dumps(key + [f"finetuned:{finetune}"])
    return json.dumps(key if calibration is None or layer is None else key + [f"bn-recalibrated:{calibration}"])


class Cache:
    """The cached figures: ``{key: {"miou", "pixel_accuracy", "k", "seconds"}}`` in one JSON file."""

    def __init__(self, path):
        self.path = Path(path)
        self.entries: dict = {}
        self.hits = self.misses = 0
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise SenteiError(f"--cache {self.path}: not a sensitivity cache (not JSON); pass another "
                                  f"--cache or delete the file") from None
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or \
                    not isinstance(data.get("entries"), dict):
                raise SenteiError(f"--cache {self.path}: not a sensitivity cache; pass another --cache or delete "
                                  f"the file")
            self.entries = data["entries"]

    def get(self, key: str):
        found = self.entries.get(key)
        if found is not None:
            self.hits += 1
        return found

    def put(self, key: str, value: dict) -> None:
        self.misses += 1
        self.entries[key] = value
        self.save()  # after every figure: an interrupted run keeps what it measured

    def save(self) -> None:
        text = json.dumps({"format": CACHE_FORMAT, "entries": self.entries}, indent=1, sort_keys=True)
        atomic_write_bytes(self.path, (text + "\n").encode("utf-8"))


def pruned_weight(weight, sparsity: float, layer: str):
    """``weight`` pruned filter-wise at ``sparsity`` (exactly K per filter, the invariant checked), and K."""
    from sentei.training.pruning import FilterWise, filter_k

    scheme = FilterWise()
    mask = scheme.mask(weight, sparsity)
    scheme.check(mask, sparsity, layer)
    return weight * mask, filter_k(weight[0].numel(), sparsity)


@contextlib.contextmanager
def recalibrated(net, layer: str, frames, batch_size: int = 8):
    """Inside: the running statistics of the batch-norms at and after ``layer`` re-estimated on
    ``frames`` (a :class:`~sentei.training.data.Split`; None: as trained), the layers before it
    untouched; afterwards as they were. Adaptive batch-norm (EagleEye, Li et al. 2020): a pruned
    layer's outputs no longer have the statistics its batch-norm was trained on, so without it
    an inference-only figure mostly measures that mismatch, which any fine-tuning removes."""
    import torch

    names = [n for n, _ in net.convs()]
    bns = [] if frames is None else [block[1] for block in net.blocks[names.index(layer):]]
    if not bns:
        yield
        return
    saved = [(bn.momentum, {k: v.clone() for k, v in bn.state_dict().items()}) for bn in bns]
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average over every calibration batch
            bn.train()
        with torch.no_grad():
            for i in range(0, len(frames), batch_size):
                net(frames.frames[i:i + batch_size])
        net.eval()
        yield
    finally:
        net.eval()
        for bn, (momentum, state) in zip(bns, saved):
            bn.momentum = momentum
            bn.load_state_dict(state)


class FineTune:
    """A short distilled fine-tune of a pruned teacher (see the module's docstring).

    ``train``: the frames (a :class:`~sentei.training.data.Split` on the device); ``steps``
    optimizer steps of ``batch_size`` random crops of ``crop`` (height, width) augmented as
    ``augment`` (an :class:`~sentei.training.data.Augment` config) -- the crop keeps the
    pixel scale, so a step costs its area's share of a whole frame; AdamW at ``lr``, the
    mixed loss of :class:`~sentei.training.distill.Distillation` (its defaults, as
    ``sentei compress``) with the class weights of ``train``; batches drawn from ``seed``,
    the same for every layer and sparsity.
    """

    def __init__(self, train, steps: int, crop, *, augment: dict | None = None, batch_size: int = 8,
                 lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0):
        from sentei.training import data as D

        self.train, self.steps, self.crop = train, int(steps), tuple(crop)
        self.batch_size, self.lr, self.weight_decay, self.seed = int(batch_size), float(lr), float(weight_decay), seed
        self.augment = D.Augment.from_config(dict(augment or {}, crop=list(self.crop)))
        self.class_weights = D.median_frequency_weights(train.labels.cpu()).to(train.labels.device)

    def key(self, train_sha: str) -> str:
        return (f"{self.steps} steps x {self.batch_size} crops {self.crop[0]}x{self.crop[1]} of {train_sha}, "
                f"lr {self.lr:g}, wd {self.weight_decay:g}, seed {self.seed}")

    def describe(self) -> str:
        return (f"fine-tuned {self.steps} steps of {self.batch_size} random {self.crop[0]}x{self.crop[1]} crops "
                f"of {len(self.train)} train frames with distillation from the teacher (AdamW lr {self.lr:g})")

    def run(self, teacher, layer: str | None, sparsity: float):
        """A fine-tuned copy of ``teacher`` with ``layer`` pruned at ``sparsity`` (None: nothing
        pruned), in eval mode; the layer's mask is a :class:`~sentei.training.pruning.Mask`
        parametrization, so every step keeps exactly its K weights a filter."""
        import copy

        import torch
        from torch.nn.utils import parametrize

        from sentei.training.distill import Distillation
        from sentei.training.pruning import FilterWise, Mask

        net = copy.deepcopy(teacher)
        if layer is not None:
            conv = dict(net.convs())[layer]
            scheme = FilterWise()
            mask = scheme.mask(conv.weight.detach(), sparsity)
            scheme.check(mask, sparsity, layer)
            parametrize.register_parametrization(conv, "weight", Mask(mask))
        device = self.train.frames.device
        gen = torch.Generator(device=device).manual_seed(self.seed)
        pick = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_of = Distillation()
        teacher.eval()
        net.train()
        for _ in range(self.steps):
            idx = torch.randint(0, len(self.train), (self.batch_size,), generator=pick).to(device)
            frames, labels = self.augment(self.train.frames[idx], self.train.labels[idx], gen)
            with torch.no_grad():
                target = teacher(frames)
            loss, _ = loss_of.loss(net(frames), labels, self.class_weights, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return net.eval()


def measure(net, split, sparsities, layers=None, *, cache: Cache, key, device="cpu", batch_size: int = 8,
            num_classes: int = 11, progress=None, calibration=None, finetune: FineTune | None = None) -> dict:
    """The teacher's figures: ``{"dense": {...}, "rows": [{layer, fan_in, sparsity, k, miou, ...}]}``.

    ``net`` is the dense :class:`~sentei.training.models.FCN`; ``key(layer, sparsity)`` its
    cache key; ``layers`` the names to prune (default every conv, classifier included);
    ``calibration`` frames to re-estimate the batch-norm statistics from the pruned layer on
    (:func:`recalibrated`; None: none); ``finetune`` a :class:`FineTune` to train each pruned
    copy with instead (``key(layer, sparsity)`` then names fine-tuned figures, and the control
    of every layer is the teacher fine-tuned with nothing pruned). Each layer's weight is put
    back after its figures.
    """
    import torch

    from sentei.training.pruning import filter_k
    from sentei.training.train import evaluate

    convs = dict(net.convs())
    layers = list(convs) if layers is None else list(layers)
    unknown = [n for n in layers if n not in convs]
    if unknown:
        raise SenteiError(f"--layers: no layer {unknown[0]!r} in the teacher; its layers are {', '.join(convs)}")

    def scored(layer, sparsity, k, tuned=False):
        found = cache.get(key(layer, sparsity, tuned) if finetune is not None else key(layer, sparsity))
        if found is None:
            start = time.perf_counter()
            if tuned:
                res = evaluate(finetune.run(net, layer, sparsity), split, device, batch_size,
                               num_classes=num_classes, amp=False)
            else:
                with recalibrated(net, layer, calibration if layer is not None else None, batch_size):
                    res = evaluate(net, split, device, batch_size, num_classes=num_classes, amp=False)
            found = {"miou": res["miou"], "pixel_accuracy": res["pixel_accuracy"], "k": k,
                     "seconds": round(time.perf_counter() - start, 3)}
            if tuned:
                found["finetuned"] = True
            cache.put(key(layer, sparsity, tuned) if finetune is not None else key(layer, sparsity), found)
        if progress is not None:
            progress(layer, sparsity, found)
        return found

    def row(layer, fan_in, sparsity, k, fig, control):
        return {"layer": layer, "fan_in": fan_in, "sparsity": float(sparsity), "k": k, "miou": fig["miou"],
                "pixel_accuracy": fig["pixel_accuracy"], "control_miou": control["miou"],
                "drop": control["miou"] - fig["miou"]}

    net.eval()
    dense = scored(None, 0.0, None)
    # fine-tuned, the control is the teacher fine-tuned the same way with nothing pruned: what the
    # steps themselves do (crops, a higher learning rate than the teacher's last epochs) is not the layer's
    tuned_control = scored(None, 0.0, None, tuned=True) if finetune is not None else None
    rows = []
    for name in layers:
        conv = convs[name]
        original = conv.weight.detach().clone()
        fan_in = original[0].numel()
        if finetune is not None:
            for s in sparsities:
                k = filter_k(fan_in, s)
                rows.append(row(name, fan_in, s, k, scored(name, s, k, tuned=True), tuned_control))
            continue
        # the drop is taken against the same network with its batch-norms re-estimated the same way and
        # nothing pruned: the re-estimate's own effect (a few frames, no augmentation) is not the layer's
        control = dense if calibration is None else scored(name, 0.0, fan_in)
        try:
            for s in sparsities:
                with torch.no_grad():
                    pruned, k = pruned_weight(original, s, name)
                    conv.weight.copy_(pruned)
                rows.append(row(name, fan_in, s, k, scored(name, s, k), control))
        finally:
            with torch.no_grad():
                conv.weight.copy_(original)
    out = {"dense": dense, "rows": rows}
    if tuned_control is not None:
        out["finetuned_control"] = tuned_control
    return out


def markdown(result: dict) -> str:
    """The table: one row per layer, one column per sparsity, mIoU (%) and K."""
    sparsities = sorted({r["sparsity"] for r in result["rows"]})
    layers = list(dict.fromkeys(r["layer"] for r in result["rows"]))
    cell = {(r["layer"], r["sparsity"]): r for r in result["rows"]}
    head = "| layer | Cin·k·k | 0 % (control) | " + " | ".join(f"{100 * s:g} %" for s in sparsities) + " |"
    lines = [head, "|" + "---|" * (len(sparsities) + 3)]
    for name in layers:
        first = cell.get((name, sparsities[0]), {})
        parts = [f"{100 * cell[(name, s)]['miou']:.2f} (K {cell[(name, s)]['k']})" if (name, s) in cell else ""
                 for s in sparsities]
        control = f"{100 * first['control_miou']:.2f}" if "control_miou" in first else ""
        lines.append(f"| {name} | {first.get('fan_in', '')} | {control} | " + " | ".join(parts) + " |")
    ev = result["evaluated_on"]
    lines.append("")
    tuned = ev.get("finetune")
    lines.append(f"{ev['split']} mIoU (%) of the dense teacher {100 * result['dense']['miou']:.2f}, one layer pruned "
                 f"filter-wise at a time ({_training(ev)}); {ev['frames']} frames of split "
                 f"{ev['split']} at {ev['size'][0]}x{ev['size'][1]}{_recalibration(ev)}. A layer's drop is taken "
                 f"against its control: the same network"
                 + (" fine-tuned the same way with nothing pruned." if tuned else
                    " with the batch-norm statistics re-estimated the same way and nothing pruned."
                    if ev.get("bn_recalibration") else ", nothing pruned (the dense teacher)."))
    return "\n".join(lines) + "\n"


def _training(ev: dict) -> str:
    tuned = ev.get("finetune")
    if not tuned:
        return "inference only, no fine-tuning"
    return (f"each fine-tuned {tuned['steps']} steps of {tuned['batch_size']} random {tuned['crop'][0]}x"
            f"{tuned['crop'][1]} crops with distillation")


def _recalibration(ev: dict) -> str:
    cal = ev.get("bn_recalibration")
    return "" if not cal else f", batch-norm re-estimated on {cal['frames']} {cal['split']} frames"


def plot(result: dict, path) -> None:
    """mIoU against sparsity, one line per layer, the dense teacher as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sentei.host.data.visualize import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in dict.fromkeys(r["layer"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["layer"] == name]
        pts = sorted([(r["sparsity"], r["miou"]) for r in rows] + [(0.0, rows[0].get("control_miou", result["dense"]["miou"]))])
        ax.plot([100 * s for s, _ in pts], [100 * m for _, m in pts], marker="o", label=name)
    ax.axhline(100 * result["dense"]["miou"], color="k", linestyle="--", linewidth=1, label="dense teacher")
    ev = result["evaluated_on"]
    ax.set_xlabel("sparsity of the one pruned layer (%), filter-wise (0: its control)")
    ax.set_ylabel(f"{ev['split']} mIoU (%)")
    ax.set_title(f"{ev['frames']} frames at {ev['size'][0]}x{ev['size'][1]}, {_training(ev)}{_recalibration(ev)}",
                 fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def load_result(path) -> dict:
    """A ``sensitivity.json`` written by :func:`run`; one-line errors for anything else."""
    from sentei.host.modelfile.schema import parse_json_text, read_regular_file
    from sentei.training.config import existing_file

    path = existing_file(path, "--sensitivity", "the sensitivity.json of sentei sensitivity")
    data = parse_json_text(read_regular_file(path, 1 << 24, "--sensitivity", "a sensitivity.json"),
                           f"--sensitivity {path}")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rows"), list) \
            or not data["rows"] or not isinstance(data.get("model"), dict):
        raise SenteiError(f"--sensitivity {path}: not the sensitivity.json of sentei sensitivity; run sentei "
                          f"sensitivity --out DIR and pass DIR/sensitivity.json")
    return data


def run(teacher, out, *, data_root=None, synthetic=False, split="val", size=None, limit=None,
        sparsities=DEFAULT_SPARSITIES, layers=None, cache_path=None, device=None, batch_size=8,
        workers=DEFAULT_WORKERS, recalibrate: int = DEFAULT_RECALIBRATE, calibration_split: str = "train",
        finetune_steps: int = 0, finetune_crop=None, finetune_lr: float = DEFAULT_FINETUNE_LR, seed: int = 0,
        log=print) -> dict:
    """Measure (or take from the cache), then write ``sensitivity.json/.md/.png`` into ``out``.

    ``device``: a torch device (None: CUDA when available, else the CPU, as ``--device``);
    ``recalibrate``: frames of ``calibration_split`` (the first ones) to re-estimate the
    batch-norm statistics on after each pruning (:func:`recalibrated`); 0: none.
    ``finetune_steps`` > 0: fine-tune each pruned copy instead (:class:`FineTune`) on random
    ``finetune_crop`` crops (default half the size each way) of ``calibration_split`` at
    ``finetune_lr`` with batches and crops drawn from ``seed``; ``recalibrate`` is then not used
    (the batch-norms train)."""
    import torch

    from sentei.training import data as D
    from sentei.training.engine import resolve_checkpoint
    from sentei.training.train import build_from_checkpoint, load_checkpoint, resolve_device

    device = resolve_device(device)

    path = resolve_checkpoint(teacher)
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "teacher":
        raise SenteiError(f"--teacher {teacher}: a {ckpt.get('kind')} checkpoint; sensitivity prunes the dense "
                          f"teacher (teacher.pt of sentei train, or the bundled name teacher)")
    net = build_from_checkpoint(ckpt).to(device)
    model_cfg = ckpt["config"]["model"]
    inp = model_cfg.get("input", {})
    native = (int(inp.get("height", 360)), int(inp.get("width", 480)))
    size = tuple(size) if size is not None else native
    if synthetic:
        frames = D.synthetic_split(limit or 8, *size, num_classes=net.num_classes, seed=2)
        calib = D.synthetic_split(recalibrate, *size, num_classes=net.num_classes, seed=1) if recalibrate else None
        tune = D.synthetic_split(8, *size, num_classes=net.num_classes, seed=1) if finetune_steps else None
        split_name = "synthetic"
    else:
        if not data_root:
            raise SenteiError("no data set: pass --data ROOT (the CamVid folder with val/ and valannot/), or "
                              "--synthetic")
        frames = D.load_camvid(data_root, split, size, limit, workers, progress=False)
        calib = D.load_camvid(data_root, calibration_split, size, recalibrate, workers, progress=False) \
            if recalibrate and not finetune_steps else None
        tune = D.load_camvid(data_root, calibration_split, size, None, workers, progress=False) \
            if finetune_steps else None
        split_name = split
    frames = frames.to(device)
    if finetune_steps:
        calib = None
        from sentei.training.models import output_stride

        stride = output_stride(model_cfg)
        crop = tuple(finetune_crop) if finetune_crop else \
            tuple(max(stride, side // 2 - side // 2 % stride) for side in size)  # half, on the output grid
        finetune = FineTune(tune.to(device), finetune_steps, crop, augment=ckpt["config"].get("data", {}).get("augment"),
                            batch_size=batch_size, lr=finetune_lr, seed=seed)
        finetune.augment.check(*size, stride)
        tune_key = finetune.key(split_checksum(tune))
    else:
        finetune = tune_key = None
    calib = calib.to(device) if calib is not None else None
    calib_sha = split_checksum(calib) if calib is not None else None
    calib_name = "synthetic-train" if synthetic else calibration_split
    teacher_sha = file_sha256(path)
    data_sha = split_checksum(frames)
    out = Path(out)
    cache = Cache(cache_path or out / "sensitivity-cache.json")
    where = (f"{len(frames)} frames of {split_name} at {size[0]}x{size[1]}"
             + ("" if size == native else f" (the teacher's input is {native[0]}x{native[1]})")
             + ("" if not limit or synthetic else f" (--limit {limit})")
             + ("" if calib is None else f"; batch-norm statistics re-estimated after each pruning on "
                                        f"{len(calib)} frames of {calib_name}")
             + ("" if finetune is None else f"; each pruned copy {finetune.describe()}"))
    log(f"sensitivity of {teacher} ({path.name}, sha256 {teacher_sha[:12]}): {where}, device {device}")

    def key(layer, sparsity, tuned=False):
        return cache_key(teacher_sha, data_sha, split_name, size, layer, sparsity, calib_sha,
                         tune_key if tuned else None)

    def progress(layer, sparsity, fig):
        what = ("dense teacher" + (", fine-tuned, nothing pruned" if fig.get("finetuned") else "")) \
            if layer is None else f"{layer} at {100 * sparsity:g} % (K {fig['k']})"
        log(f"  {what}: mIoU {100 * fig['miou']:.2f}")

    torch.manual_seed(0)
    result = measure(net, frames, list(sparsities), layers, cache=cache, key=key, device=device,
                     batch_size=batch_size, num_classes=net.num_classes, progress=progress, calibration=calib,
                     finetune=finetune)
    result.update({
        "format": FORMAT, "teacher": str(teacher), "teacher_file": str(path), "teacher_sha256": teacher_sha,
        "model": model_cfg,
        "evaluated_on": {"split": split_name, "frames": len(frames), "size": list(size), "native_size": list(native),
                         "limit": limit, "data_sha256": data_sha, "data": None if synthetic else str(data_root),
                         "bn_recalibration": None if calib is None else
                         {"split": calib_name, "frames": len(calib), "data_sha256": calib_sha},
                         "finetune": None if finetune is None else
                         {"split": calib_name, "frames": len(finetune.train), "steps": finetune.steps,
                          "batch_size": finetune.batch_size, "crop": list(finetune.crop), "lr": finetune.lr,
                          "weight_decay": finetune.weight_decay, "seed": finetune.seed,
                          "data_sha256": split_checksum(finetune.train)}},
        "method": "one layer at a time pruned filter-wise (exactly K = floor((1 - s) * Cin*k*k) largest-magnitude "
                  "weights per filter, at least 1), "
                  + (f"then {finetune.describe()}; a drop is against the teacher fine-tuned the same way with "
                     f"nothing pruned" if finetune is not None else
                     "inference only (no weight is trained"
                     + ("" if calib is None else "; the batch-norm statistics from the pruned layer on re-estimated")
                     + ")")
                  + "; mIoU by sentei.training.train.evaluate",
        "cache": {"path": str(cache.path), "hits": cache.hits, "evaluated": cache.misses},
    })
    result["dense"] = dict(result["dense"], k=None)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sensitivity.json", result)
    table = markdown(result)
    atomic_write_bytes(out / "sensitivity.md", table.encode("utf-8"))
    plot(result, out / "sensitivity.png")
    log(table.rstrip())
    log(f"{cache.hits} figures from the cache {cache.path}, {cache.misses} evaluated -> {out / 'sensitivity.json'}, "
        f"{out / 'sensitivity.md'}, {out / 'sensitivity.png'}")
    return result
