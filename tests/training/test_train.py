"""Commands end to end on synthetic data: train, compress, export, compare, the torch engine,
checkpoints (atomic, weights-only, resumable), and config paths kept inside the run."""
from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.cli import main  # noqa: E402
from sentei.errors import SenteiError  # noqa: E402
from sentei.host.modelfile import schema as fmt  # noqa: E402
from sentei.training import train  # noqa: E402
from sentei.training.engine import TorchEngine  # noqa: E402

from .conftest import compress_config, tiny_config  # noqa: E402


def test_teacher_run_files_and_slim_checkpoint(tiny_runs):
    tdir, _, _, _ = tiny_runs
    for name in ("last.pt", "best.pt", "teacher.pt", "train.log", "config.yaml", "metrics.json"):
        assert (tdir / name).exists(), name
    slim = train.load_checkpoint(tdir / "teacher.pt")
    assert set(slim) == {"format", "kind", "config", "model", "epoch", "val"}
    assert all(v.dtype != torch.float16 for v in slim["model"].values())
    metrics = json.loads((tdir / "metrics.json").read_text())
    assert metrics["val"]["miou"] > 0.12  # above chance (about 0.05) after a few seconds of training
    history = train.load_checkpoint(tdir / "last.pt")["history"]
    assert history[-1]["ce"] < 0.6 * history[0]["ce"]


def test_compressed_run_learns_and_selects_in_qat(tiny_runs):
    _, cdir, _, result = tiny_runs
    assert result["val"]["miou"] > 0.1
    best = train.load_checkpoint(cdir / "best.pt")
    assert best["phase"] == "qat"
    log = (cdir / "train.log").read_text()
    assert "QAT: calibrated" in log and "phase prune" in log


def test_torch_engine_predicts_labels(tiny_runs):
    tdir, cdir, data, _ = tiny_runs
    for path in (tdir / "teacher.pt", cdir / "best.pt"):
        eng = TorchEngine(path, device="cpu")
        assert eng.input_size == (32, 48) and len(eng.class_names) == 11
        frame = data.val.frames[0].permute(1, 2, 0).numpy()
        labels = eng.predict(frame)
        assert labels.shape == (32, 48) and labels.dtype == np.uint8 and labels.max() < 11
        with pytest.raises(SenteiError, match="the model takes 32x48"):
            eng.predict(np.zeros((10, 10, 3), np.uint8))


def test_export_and_compare_commands(tiny_runs, tmp_path, capsys):
    from PIL import Image

    tdir, cdir, data, _ = tiny_runs
    out = tmp_path / "m.sentei"
    assert main(["export", str(cdir / "best.pt"), "-o", str(out), "--name", "tiny"]) == 0
    model = fmt.load(out)
    assert model.name == "tiny"
    shipped = fmt.load(cdir / "model.sentei")
    for a, b in zip(model.layers, shipped.layers):  # the same integers as the run's own export
        assert np.array_equal(a.values, b.values) and np.array_equal(a.bias, b.bias)
    img = tmp_path / "f.png"
    Image.fromarray(data.val.frames[0].permute(1, 2, 0).numpy()).save(img)
    capsys.readouterr()
    assert main(["compare", "--model", str(out), "--checkpoint", str(cdir / "best.pt"), "--image", str(img),
                 "--exact"]) == 0
    text = capsys.readouterr().out
    assert "every layer bit-exact" in text and "classifier" in text
    assert main(["export", str(tdir / "teacher.pt"), "-o", str(tmp_path / "t.sentei")]) == 2
    assert not (tmp_path / "t.sentei").exists()


def test_compare_exact_exits_1_and_names_the_first_divergence(tiny_runs, tmp_path, capsys):
    """--exact: the checkpoint's integer path must be the model file's; a checkpoint it was not
    exported from (activation scales changed) diverges at conv1, the input still agrees."""
    from PIL import Image

    _, cdir, data, _ = tiny_runs
    ck = train.load_checkpoint(cdir / "best.pt")
    ck["model"]["act_scale"] = ck["model"]["act_scale"] * 1.5
    train.save_checkpoint(ck, tmp_path / "other.pt")
    img = tmp_path / "f.png"
    Image.fromarray(data.val.frames[0].permute(1, 2, 0).numpy()).save(img)
    argv = ["compare", "--model", str(cdir / "model.sentei"), "--checkpoint", str(tmp_path / "other.pt"),
            "--image", str(img)]
    capsys.readouterr()
    assert main(argv + ["--exact"]) == 1
    out, err = capsys.readouterr()
    marked = [line.split()[0] for line in out.splitlines() if line.endswith("<-- first divergence")]
    assert marked == ["conv1"] and "every layer bit-exact" not in out
    assert err.count("\n") == 1 and "not bit-exact" in err and "(first divergence at conv1, labels agree on" in err
    assert main(argv) == 0  # the fake-quantized forward is compared for information only


def test_format_rows_marks_only_the_first_diverging_layer():
    from sentei.training.compare import LayerAgreement, first_divergence, format_rows

    rows = [LayerAgreement("input", (3, 4, 4), 1.0, 0), LayerAgreement("conv1", (8, 2, 2), 0.5, 3),
            LayerAgreement("conv2", (8, 2, 2), 0.25, 9)]
    text = format_rows(rows, 0.48)
    assert [line.split()[0] for line in text.splitlines() if "first divergence" in line] == ["conv1"]
    assert text.splitlines()[-1] == "labels agree on 48.0000 % of pixels"
    assert first_divergence(rows) is rows[1] and first_divergence(rows[:1]) is None
    assert format_rows(rows[:1], 1.0).endswith("(every layer bit-exact)")


@contextlib.contextmanager
def crash_after(epochs: int):
    """Raise KeyboardInterrupt (a killed run) after ``epochs`` epochs have been checkpointed."""
    real, calls = train._Loop.after_epoch, {"n": 0}

    def crashing(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == epochs:
            raise KeyboardInterrupt

    train._Loop.after_epoch = crashing
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        train._Loop.after_epoch = real


@pytest.fixture(scope="module")
def crashed_teacher(tmp_path_factory):
    """(cfg, env, data, run dir) of a 3-epoch teacher run killed after its second epoch, trained once."""
    torch.set_num_threads(1)
    env = train.setup_env("cpu")
    cfg = tiny_config(epochs=3)
    data = train.load_data(cfg, env, synthetic=True)
    run = tmp_path_factory.mktemp("crashed") / "run"
    with crash_after(2):
        train.train_teacher(cfg, run, env, data)
    return cfg, env, data, run


def test_resume_after_a_crash_is_bit_identical(tmp_path, crashed_teacher):
    cfg, env, data, crashed = crashed_teacher
    shutil.copytree(crashed, tmp_path / "crashed")
    torch.set_num_threads(1)
    train.train_teacher(cfg, tmp_path / "straight", env, data)
    assert train.load_checkpoint(tmp_path / "crashed" / "last.pt")["epoch"] == 1
    train.train_teacher(cfg, tmp_path / "crashed", env, data, resume=True)
    a = train.load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = train.load_checkpoint(tmp_path / "crashed" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_on_another_device_type_reseeds_only_the_augmentation(tmp_path, crashed_teacher):
    """A run checkpointed on CUDA (Philox state) resumes on a CPU: same weights, optimizer and
    data order, the augmentation generator reseeded and the log saying so."""
    cfg, env, data, crashed = crashed_teacher
    shutil.copytree(crashed, tmp_path / "run")
    torch.set_num_threads(1)
    last = tmp_path / "run" / "last.pt"
    ck = train.load_checkpoint(last)
    assert ck["rng"]["dev_type"] == "cpu"
    ck["rng"]["dev_gen"] = torch.zeros(16, dtype=torch.uint8)  # what a CUDA generator saves
    ck["rng"]["dev_type"] = "cuda"
    train.save_checkpoint(ck, last)
    train.train_teacher(cfg, tmp_path / "run", env, data, resume=True)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "written on cuda and this run is on cpu" in log and "resumed from" in log
    done = train.load_checkpoint(last)
    assert done["epoch"] == 2 and done["rng"]["dev_type"] == "cpu"
    # checkpoints from before dev_type was recorded: the state's size tells the device
    del ck["rng"]["dev_type"]
    gen = torch.Generator()
    assert train._set_rng_state(ck["rng"], torch.Generator(), gen, reseed=7) is not None
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(7).get_state())


def test_checkpoint_is_weights_only_and_atomic(tmp_path):
    path = tmp_path / "c.pt"
    model = tiny_config()["model"]  # a whole teacher checkpoint: load_checkpoint checks the structure
    train.save_checkpoint({"format": train.CHECKPOINT_FORMAT, "kind": "teacher", "config": {"model": model},
                           "model": train.FCN(model).state_dict(), "x": torch.ones(2)}, path)
    assert list(tmp_path.iterdir()) == [path]
    assert torch.equal(train.load_checkpoint(path)["x"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": train.CHECKPOINT_FORMAT, "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(SenteiError, match="not a sentei checkpoint"):
        train.load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(SenteiError, match="not found"):
        train.load_checkpoint(tmp_path / "missing.pt")


def test_config_paths_stay_inside_the_run(tmp_path):
    assert train.inside(tmp_path, "model.sentei") == (tmp_path / "model.sentei").resolve()
    for bad in ("../x.sentei", "/etc/passwd", "a/../../x"):
        with pytest.raises(SenteiError, match="outside the run directory"):
            train.inside(tmp_path, bad)


@pytest.mark.slow
@pytest.mark.parametrize("scheme, extra", [("groupwise", {"group_size": 8}), ("unstructured", {}),
                                           ("nm", {"n": 2, "m": 4}),
                                           ("groupwise", {"group_size": 8, "group_layout": "channels"}),
                                           ("unstructured", {"ranking": "layer"})],
                         ids=["groupwise", "unstructured", "nm", "groupwise-channels", "unstructured-layer"])
def test_every_scheme_exports(tiny_runs, tmp_path, scheme, extra):
    tdir, _, data, _ = tiny_runs
    cfg = compress_config(scheme, 0.75 if scheme != "nm" else 0.5, epochs=(2, 1), **extra)
    cfg["model"] = tiny_config()["model"]
    result = train.compress(cfg, tdir / "teacher.pt", tmp_path, train.setup_env("cpu"), data)
    model = fmt.load(tmp_path / "model.sentei")
    assert {layer.scheme for layer in model.layers[1:-1]} == {scheme}
    assert result["min_pruned_sparsity"] >= (0.5 if scheme == "nm" else 0.6)
    if scheme in ("groupwise", "nm"):
        assert result["nnz_spread"] <= 2  # balanced by construction (up to quantization zeros)
    if extra.get("ranking") == "layer":  # every pruned layer at the target, not only the network on average
        assert result["min_pruned_sparsity"] >= 0.74
    if extra.get("group_layout") == "channels":  # Kang's groups in the file: 8 channels at a tap keep 2 (or
        for layer in model.layers[1:-1]:        # fewer where a kept weight rounded to 0)
            groups = (layer.dense_weights() != 0).transpose(0, 2, 3, 1).reshape(-1, 8).sum(1)
            assert groups.max() == 2 and (groups == 2).mean() > 0.9


def test_cli_refuses_without_data(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--epochs", "1"]) == 2
    assert "--data" in capsys.readouterr().err


def test_a_batch_is_split_over_the_processes(tmp_path):
    """Under torchrun the configured batch is the global one: each of N processes takes 1/N of
    it (the recipe's steps per epoch and learning rate stay those of one device)."""
    cfg = tiny_config(epochs=1)
    cfg["train"]["batch_size"] = 8
    two = train._Loop(cfg, tmp_path, train.Env(torch.device("cpu"), rank=1, world=2), None, print, "teacher")
    assert (two.batch_size, two.rank_batch) == (8, 4)
    with pytest.raises(SenteiError, match="batch_size 8 does not split over 3 processes: give a multiple of 3"):
        train._Loop(cfg, tmp_path, train.Env(torch.device("cpu"), rank=0, world=3), None, print, "teacher")


def test_torchrun_with_more_processes_than_gpus_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SenteiError, match=r"^torchrun started process 1 of this node, but 1 GPU\(s\) are visible"):
        train.setup_env(None)


def test_bf16_autocast_only_where_the_gpu_has_bf16_convolutions(tmp_path, monkeypatch):
    """A pre-Ampere GPU (T4: 7.5) trains in fp32 and says so; Ampere (8.0) keeps bf16."""
    lines = []
    cuda = train.Env(torch.device("cuda:0"))
    for cc, amp in (((7, 5), False), ((8, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, cc=cc: cc)
        assert train.bf16_autocast_ok(cuda.device) is amp
        loop = train._Loop(tiny_config(epochs=1), tmp_path, cuda, None, lines.append, "teacher")
        assert loop.amp is amp
    assert lines == ["amp bf16 off: this GPU (compute capability 7.5) has no bf16 convolutions in cuDNN; "
                     "training in fp32"]


@contextlib.contextmanager
def _ports_held(*ports):
    """Listen on ``ports`` (those that are free) for the block, as another run on this machine would."""
    import socket

    held = []
    try:
        for port in ports:
            sock = socket.socket()
            try:
                sock.bind(("", port))
                sock.listen()
            except OSError:  # already taken: by someone else, which serves as well
                sock.close()
                continue
            held.append(sock)
        yield
    finally:
        for sock in held:
            sock.close()


@pytest.mark.slow
def test_torchrun_two_processes_train_with_ddp(tmp_path):
    """Both torchrun calls take a free port (--standalone: rendezvous on localhost:0), so two test
    runs at once do not collide: the ports another run would hold are held here throughout
    (torchrun's default 29500, and 29517/29518, which this test once fixed)."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("torchrun") is None and not (os.path.exists(os.path.join(os.path.dirname(sys.executable),
                                                                              "torchrun"))):
        pytest.skip("torchrun is not installed")
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with _ports_held(29500, 29517, 29518):
        _torchrun_train_and_compress(torchrun, env, tmp_path)


def _torchrun_train_and_compress(torchrun, env, tmp_path):
    import subprocess

    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "sentei", "train",
                           "--synthetic", "--size", "32x48", "--epochs", "2", "--eval-every", "1", "--device", "cpu",
                           "--out", str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert log.count("teacher epoch") == 2  # rank 0 alone writes
    assert train.load_checkpoint(tmp_path / "ddp" / "teacher.pt")["kind"] == "teacher"
    assert "process group has NOT been destroyed" not in proc.stderr
    # compression too (masks, distillation, QAT under DDP), from that teacher
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "sentei", "compress",
                           "--synthetic", "--teacher", str(tmp_path / "ddp" / "teacher.pt"), "--prune-epochs", "2",
                           "--qat-epochs", "1", "--sparsity", "0.5", "--device", "cpu", "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["nnz_spread"] == 0 and metrics["min_pruned_sparsity"] >= 0.49  # filter-wise, equal K
    assert fmt.load(tmp_path / "c" / "model.sentei").layers
    assert (tmp_path / "c" / "train.log").read_text().count("compressed epoch") == 3


@pytest.mark.parametrize("change, message", [
    (lambda c: c["train"].update(epochs=5), "train.epochs = 3, this command gives 5"),
    (lambda c: c["data"]["augment"].update(crop=[16, 24]), "data.augment.crop = None, this command gives [16, 24]"),  # the run records every key
    (lambda c: c["model"]["layers"][2].update(out=12), "model.layers.2.out = 16, this command gives 12"),
    (lambda c: c["train"].update(lr=0.02), "train.lr = 0.01, this command gives 0.02"),
], ids=["epochs", "crop", "width", "lr"])
def test_resume_under_another_recipe_is_refused_and_keeps_the_run(tmp_path, crashed_teacher, change, message):
    """A resumed run takes its options from the new command: one that differs from the run's own
    (a forgotten --crop, another --epochs) is refused instead of training the rest on it."""
    cfg, env, data, crashed = crashed_teacher
    run = tmp_path / "run"
    shutil.copytree(crashed, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    other = copy.deepcopy(cfg)
    change(other)
    with pytest.raises(SenteiError, match="--resume: .* was started with " + re.escape(message)):
        train.train_teacher(other, run, env, data, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_without_the_best_checkpoint_is_refused(tmp_path, crashed_teacher):
    """A run carried to another place without its best.pt would train on and then have nothing to
    take its product from (or select among the later evaluations only): refused before training."""
    cfg, env, data, _ = crashed_teacher
    cfg = copy.deepcopy(cfg)
    cfg["train"]["eval_every"] = 1  # an evaluation, hence a best.pt, before the crash
    run = tmp_path / "run"
    torch.set_num_threads(1)
    with crash_after(2):
        train.train_teacher(cfg, run, env, data)
    assert train.load_checkpoint(run / "last.pt")["best"]["epoch"] >= 0
    (run / "best.pt").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(SenteiError, match=r"--resume: .*last.pt records its best evaluation at epoch \d+ "
                                          r"but .*best.pt is missing; carry best.pt"):
        train.train_teacher(cfg, run, env, data, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_may_move_the_data_and_score_val_more_often(tmp_path, crashed_teacher):
    cfg, env, data, crashed = crashed_teacher
    shutil.copytree(crashed, tmp_path / "run")
    torch.set_num_threads(1)
    other = copy.deepcopy(cfg)
    other["data"]["root"], other["train"]["eval_every"], other["command"] = "/elsewhere/camvid", 1, "sentei train"
    train.train_teacher(other, tmp_path / "run", env, data, resume=True)
    assert train.load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2


def test_compress_resumed_under_another_sparsity_is_refused(tiny_runs, tmp_path):
    tdir, _, data, _ = tiny_runs
    torch.set_num_threads(1)
    env = train.setup_env("cpu")
    cfg = compress_config(epochs=(2, 1), eval_every=5)
    cfg["model"] = train.load_checkpoint(tdir / "teacher.pt")["config"]["model"]
    with crash_after(1):
        train.compress(cfg, tdir / "teacher.pt", tmp_path / "run", env, data)
    cfg["compress"]["sparsity"] = 0.5
    with pytest.raises(SenteiError, match=r"was started with compress\.sparsity = 0\.75, this command gives 0\.5"):
        train.compress(cfg, tdir / "teacher.pt", tmp_path / "run", env, data, resume=True)


def test_compress_resumed_while_pruning_ends_where_a_straight_run_does(tiny_runs, tmp_path):
    """Masks are recomputed every ``mask_every`` iterations of the *run*: a run resumed in the
    middle of the sparsity ramp updates them on the same iterations (it restarted the count)."""
    tdir, _, data, _ = tiny_runs
    torch.set_num_threads(1)
    env = train.setup_env("cpu")
    cfg = compress_config(epochs=(4, 1), mask_every=3, eval_every=5,
                          schedule={"type": "cubic", "start": 0.0, "end": 1.0})
    cfg["model"] = train.load_checkpoint(tdir / "teacher.pt")["config"]["model"]
    train.compress(cfg, tdir / "teacher.pt", tmp_path / "straight", env, data)
    with crash_after(1):  # 2 iterations an epoch: stopped at iteration 2, between mask updates at 0 and 3
        train.compress(cfg, tdir / "teacher.pt", tmp_path / "crashed", env, data)
    assert train.load_checkpoint(tmp_path / "crashed" / "last.pt")["phase"] == "prune"
    train.compress(cfg, tdir / "teacher.pt", tmp_path / "crashed", env, data, resume=True)
    a = train.load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = train.load_checkpoint(tmp_path / "crashed" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_compress_from_a_qat_checkpoint_with_weight_averaging(tiny_runs, tmp_path, capsys):
    """--from continues a finished compression: same masks (K per filter), scales kept, no pruning;
    --ema evaluates and exports the averaged weights, and resumes bit-identically."""
    from sentei.training.pruning import nonzeros_per_filter

    tdir, cdir, data, _ = tiny_runs
    torch.set_num_threads(1)
    env = train.setup_env("cpu")
    base = train.load_checkpoint(cdir / "best.pt")
    cfg = compress_config(qat_epochs=3, eval_every=3, ema=0.9, scheme="groupwise", sparsity=0.5)  # structure: ignored
    cfg["model"] = base["config"]["model"]
    out = tmp_path / "more"
    result = train.compress(cfg, tdir / "teacher.pt", out, env, data, init_path=cdir / "best.pt")
    last = train.load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["compress"]["prune_epochs"] == 0 and last["compress"]["scheme"] == "filterwise"
    assert "averaged" in last and int(last["averaged"]["n_averaged"]) == 3 * 2  # 16 frames / batch 8, 3 epochs
    log = (out / "train.log").read_text()
    assert "continuing from" in log and "phase prune" not in log and "QAT: calibrated" not in log
    best = train.load_checkpoint(out / "best.pt")
    masks = [k for k in base["model"] if k.endswith("weight.0.mask")]
    assert masks and all(torch.equal(best["model"][k], base["model"][k]) for k in masks)  # not pruned again
    net = train.build_from_checkpoint(best)
    for name, conv in net.sparsifier.layers:
        nnz = nonzeros_per_filter(conv.weight.detach())
        assert nnz.min() == nnz.max() > 0, name  # filter-wise: every filter keeps the same K
    assert best["epoch"] == last["epoch"] == 2  # evaluated once, at the end (eval_every 3)
    assert all(torch.equal(v, last["averaged"][f"module.{k}"]) for k, v in best["model"].items())  # the average...
    assert any(not torch.equal(best["model"][k], v) for k, v in last["model"].items() if k.endswith("original"))
    assert fmt.load(out / "model.sentei").layers[2].k_nonzero == fmt.load(cdir / "model.sentei").layers[2].k_nonzero
    assert result["val"]["miou"] > 0.1
    # resume from the middle gives the same end, the average included
    crashed = tmp_path / "crashed"
    with crash_after(1):
        train.compress(cfg, tdir / "teacher.pt", crashed, env, data, init_path=cdir / "best.pt")
    with pytest.raises(SenteiError, match="resume it with --from"):
        train.compress(cfg, tdir / "teacher.pt", crashed, env, data, resume=True)
    train.compress(cfg, tdir / "teacher.pt", crashed, env, data, resume=True, init_path=cdir / "best.pt")
    again = train.load_checkpoint(crashed / "last.pt")
    for key in last["averaged"]:
        assert torch.equal(last["averaged"][key], again["averaged"][key]), key


def test_compress_from_refuses_pruning_flags_and_float_checkpoints(tiny_runs, tmp_path, capsys):
    tdir, cdir, _, _ = tiny_runs
    assert main(["compress", "--synthetic", "--teacher", str(tdir / "teacher.pt"), "--from", str(cdir / "best.pt"),
                 "--sparsity", "0.5", "--out", str(tmp_path / "r"), "--device", "cpu"]) == 2
    assert "--sparsity with --from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse's error
        main(["compress", "--synthetic", "--teacher", str(tdir / "teacher.pt"), "--from", str(cdir / "best.pt"),
              "--ema", "1.5", "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert refused.value.code == 2
    assert "argument --ema: 1.5 must be a number in [0, 1)" in capsys.readouterr().err
    assert main(["compress", "--synthetic", "--size", "32x48", "--teacher", str(tdir / "teacher.pt"), "--from",
                 str(tdir / "teacher.pt"), "--qat-epochs", "1", "--out", str(tmp_path / "r"), "--device", "cpu"]) == 2
    assert "--from needs a quantization-aware checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_compress_from_keeps_no_structure_key_of_the_new_config(tiny_runs, tmp_path):
    """--from: the network is the checkpoint's; a structure key the checkpoint leaves at its default
    must not be taken from the new config (a 4-bit config would relabel an 8-bit network)."""
    tdir, cdir, data, _ = tiny_runs
    torch.set_num_threads(1)
    init = train.load_checkpoint(cdir / "best.pt")
    del init["compress"]["weight_bits"]  # 8 by default
    train.save_checkpoint(init, tmp_path / "init.pt")
    cfg = compress_config(qat_epochs=1, weight_bits=4)
    out = tmp_path / "run"
    train.compress(cfg, tdir / "teacher.pt", out, train.setup_env("cpu"), data, init_path=tmp_path / "init.pt")
    assert train.load_checkpoint(out / "last.pt")["compress"]["weight_bits"] == 8  # the checkpoint's, recorded
    assert {layer.weight_bits for layer in fmt.load(out / "model.sentei").layers} == {8}


def test_eval_agree_with_measures_the_qat_forward_against_the_integer_engine(tiny_runs, tmp_path, capsys):
    """`sentei eval --agree-with CKPT`: the share of pixels whose labels the model file (integer
    engine) and the checkpoint's fake-quantized forward agree on, over every pixel of the split."""
    from PIL import Image

    from sentei.host.modelfile import reference
    from sentei.training.engine import TorchEngine

    _, cdir, data, _ = tiny_runs
    root = tmp_path / "camvid"
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    frames = [data.val.frames[i].permute(1, 2, 0).numpy() for i in range(4)]
    for i, (frame, labels) in enumerate(zip(frames, data.val.labels[:4])):
        Image.fromarray(frame).save(root / "val" / f"f{i}.png")
        Image.fromarray(labels.numpy().astype(np.uint8)).save(root / "valannot" / f"f{i}.png")
    fake = TorchEngine(cdir / "best.pt", device="cpu", exact=False)
    paths, forward = [], fake.net.forward
    fake.net.forward = lambda x, exact=False, **kw: paths.append(exact) or forward(x, exact=exact, **kw)
    fake.logits(np.stack(frames))
    assert paths == [False] and fake.path == "fake-quantized forward"  # (its labels equal the exact path's here)
    # a model file that disagrees with the checkpoint on some pixels: class 3 favoured in its logits
    model = fmt.load(cdir / "model.sentei")
    model.layers[-1].bias[3] += int(np.abs(model.layers[-1].bias).max()) + 200
    path = fmt.save(model, tmp_path / "shifted.sentei")
    expected = np.mean([reference.predict(model, f) == fake.predict(f) for f in frames])
    assert 0.05 < expected < 0.999
    out = tmp_path / "e.json"
    capsys.readouterr()
    assert main(["eval", "--model", str(path), "--data", str(root), "--backend", "reference",
                 "--agree-with", str(cdir / "best.pt"), "--json", str(out)]) == 0
    agreement = json.loads(out.read_text())["agreement"]
    assert agreement["path"] == "fake-quantized forward" and agreement["pixels"] == 4 * 32 * 48
    assert agreement["agree"] == pytest.approx(expected, abs=1e-12)
    assert f"{100 * expected:.3f} % of 6144 pixels" in capsys.readouterr().out


def test_torch_labels_a_frame_of_another_size_as_the_segmenter_does(tiny_runs):
    """A frame larger than the model's input: the checkpoint's exact path labels it from the
    logits upsampled to the frame (as the Segmenter does), not by resizing model-size labels."""
    from sentei.host.data import preprocess
    from sentei.host.runtime.segmenter import Segmenter
    from sentei.training.engine import TorchEngine

    _, cdir, data, _ = tiny_runs
    engine = TorchEngine(cdir / "best.pt", device="cpu")
    with Segmenter(fmt.load(cdir / "model.sentei"), backend="reference", quiet=True) as seg:
        for i in range(3):
            frame = preprocess.prepare_frame(data.val.frames[i].permute(1, 2, 0).numpy(), 72, 100)
            want = seg(frame)
            small = preprocess.prepare_frame(frame, *engine.input_size)
            assert np.array_equal(engine.predict(small, size=frame.shape[:2]), want)
    resized = preprocess.resize_labels(engine.predict(small), *frame.shape[:2])
    assert not np.array_equal(resized, want)  # what eval --backend torch did before
