"""sentei sensitivity: one layer pruned filter-wise at a time, exactly K per filter, cached figures."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from sentei import cli  # noqa: E402
from sentei.errors import SenteiError  # noqa: E402
from sentei.training import sensitivity  # noqa: E402
from sentei.training.pruning import filter_k  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny dense teacher of two epochs on the synthetic set (its accuracy does not matter here)."""
    from sentei.training import train
    from tests.training.conftest import tiny_config

    torch.set_num_threads(2)
    env = train.setup_env("cpu")
    cfg = tiny_config(epochs=2)
    run = tmp_path_factory.mktemp("sens-teacher")
    train.train_teacher(cfg, run, env, train.load_data(cfg, env, synthetic=True))
    return run / "teacher.pt"


def test_pruned_weight_keeps_exactly_k_per_filter():
    torch.manual_seed(0)
    w = torch.randn(6, 5, 3, 3)
    for s in (0.5, 0.9, 0.98):
        pruned, k = sensitivity.pruned_weight(w, s, "conv")
        assert k == filter_k(45, s)
        assert ((pruned.reshape(6, -1) != 0).sum(dim=1) == k).all()
        kept = pruned.reshape(6, -1).abs()
        dropped = (w.reshape(6, -1).abs() * (pruned.reshape(6, -1) == 0))
        assert (kept.max(dim=1).values >= dropped.max(dim=1).values).all()  # the largest magnitudes stay


def _run(teacher, out, **kw):
    args = dict(synthetic=True, limit=4, sparsities=(0.5, 0.9), cache_path=None, recalibrate=0, log=lambda *_: None)
    args.update(kw)
    return sensitivity.run(teacher, out, **args)


def test_figures_cached_and_reused(teacher, tmp_path, monkeypatch):
    from sentei.training import train

    seen = []
    real = train.evaluate

    def counting(net, split, *a, **kw):  # every evaluation: the K of each conv's filters as evaluated
        seen.append({n: sorted({int(c) for c in (conv.weight.reshape(conv.weight.shape[0], -1) != 0).sum(1)})
                     for n, conv in net.convs()})
        return real(net, split, *a, **kw)

    monkeypatch.setattr(train, "evaluate", counting)
    before = {n: c.weight.detach().clone() for n, c in
              train.build_from_checkpoint(train.load_checkpoint(teacher)).convs()}
    first = _run(teacher, tmp_path / "a", layers=["conv2", "conv4"], cache_path=tmp_path / "cache.json")
    assert len(seen) == 1 + 2 * 2  # the dense teacher, two layers at two sparsities
    for call, row in zip(seen[1:], first["rows"]):  # only that layer pruned, to exactly K per filter
        assert call[row["layer"]] == [row["k"]] == [filter_k(row["fan_in"], row["sparsity"])]
        assert all(len(v) == 1 and v[0] == before[n][0].numel() for n, v in call.items() if n != row["layer"])
    assert first["cache"] == {"path": str(tmp_path / "cache.json"), "hits": 0, "evaluated": 5}

    seen.clear()
    again = _run(teacher, tmp_path / "b", layers=["conv2", "conv4"], cache_path=tmp_path / "cache.json")
    assert seen == [] and again["rows"] == first["rows"] and again["cache"]["hits"] == 5
    more = _run(teacher, tmp_path / "b", layers=["conv2", "conv4"], sparsities=(0.5, 0.8, 0.9),
                cache_path=tmp_path / "cache.json")
    assert len(seen) == 2 and more["cache"] == {"path": str(tmp_path / "cache.json"), "hits": 5, "evaluated": 2}
    seen.clear()
    _run(teacher, tmp_path / "c", layers=["conv2"], size=(16, 24), cache_path=tmp_path / "cache.json")
    assert len(seen) == 3  # another resolution: other keys
    keys = json.loads((tmp_path / "cache.json").read_text())["entries"]
    assert any('"16x24"' in k for k in keys) and any('"32x48"' in k for k in keys)


def test_outputs_and_table(teacher, tmp_path):
    result = _run(teacher, tmp_path / "out")
    names = ["conv1", "conv2", "conv3", "conv4", "classifier"]
    assert [r["layer"] for r in result["rows"]] == [n for n in names for _ in (0.5, 0.9)]
    for name in ("sensitivity.json", "sensitivity.md", "sensitivity.png", "sensitivity-cache.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    loaded = sensitivity.load_result(tmp_path / "out" / "sensitivity.json")
    assert loaded["evaluated_on"]["frames"] == 4 and loaded["evaluated_on"]["size"] == [32, 48]
    table = (tmp_path / "out" / "sensitivity.md").read_text()
    assert "4 frames of split synthetic at 32x48" in table and "| conv2 | 72 |" in table
    for row in result["rows"]:
        assert row["drop"] == pytest.approx(result["dense"]["miou"] - row["miou"])


def test_bad_input_is_one_line(teacher, tmp_path, capsys):
    with pytest.raises(SenteiError, match=r"every sparsity must lie in \(0, 1\)"):
        sensitivity.parse_sparsities("0.5,1.0")
    with pytest.raises(SenteiError, match="no layer 'conv9'"):
        _run(teacher, tmp_path / "x", layers=["conv9"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SenteiError, match="not the sensitivity.json of sentei sensitivity"):
        sensitivity.load_result(tmp_path / "bad.json")
    status = cli.main(["sensitivity", "--teacher", str(teacher), "--synthetic", "--sparsities", "0.5,x",
                       "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--sparsities '0.5,x'" in err


def test_recalibration_touches_only_the_pruned_layer_on_and_is_undone(teacher, tmp_path, monkeypatch):
    from sentei.training import data as D
    from sentei.training import train

    net = train.build_from_checkpoint(train.load_checkpoint(teacher)).eval()
    stats = lambda: [(b[1].running_mean.clone(), b[1].running_var.clone()) for b in net.blocks]  # noqa: E731
    before = stats()
    seen = []
    real = train.evaluate

    def recording(net_, split, *a, **kw):
        seen.append(stats())
        return real(net_, split, *a, **kw)

    monkeypatch.setattr(train, "evaluate", recording)
    frames = D.synthetic_split(4, 32, 48, seed=2)
    calib = D.synthetic_split(6, 32, 48, seed=1)
    cache = sensitivity.Cache(tmp_path / "c.json")
    out = sensitivity.measure(net, frames, [0.9], ["conv3"], cache=cache, key=lambda n, s: f"{n}{s}",
                              calibration=calib)
    assert len(seen) == 3  # the dense teacher as trained; conv3's control (re-estimated, unpruned); conv3 pruned
    for (m0, v0), (m1, v1) in zip(before, seen[0]):
        assert torch.equal(m0, m1) and torch.equal(v0, v1)
    for call in seen[1:]:  # conv1, conv2 as trained; conv3, conv4 re-estimated
        for n, ((m0, v0), (m1, v1)) in enumerate(zip(before, call)):
            assert torch.equal(m0, m1) == (n < 2) and torch.equal(v0, v1) == (n < 2)
    row = out["rows"][0]
    assert row["drop"] == pytest.approx(row["control_miou"] - row["miou"])
    assert cache.entries["conv30.0"]["miou"] == row["control_miou"]
    for (m0, v0), (m1, v1) in zip(before, stats()):  # and every statistic back afterwards
        assert torch.equal(m0, m1) and torch.equal(v0, v1)
    assert all(b[1].momentum == 0.1 for b in net.blocks) and not net.training
    assert out["rows"][0]["k"] == filter_k(16 * 9, 0.9)
    plain = sensitivity.cache_key("t", "d", "val", (32, 48), "conv3", 0.9)
    assert sensitivity.cache_key("t", "d", "val", (32, 48), "conv3", 0.9, "c") != plain
    assert sensitivity.cache_key("t", "d", "val", (32, 48), None, 0.0, "c") == \
        sensitivity.cache_key("t", "d", "val", (32, 48), None, 0.0)  # the dense teacher is never re-estimated
    result = _run(teacher, tmp_path / "r", layers=["conv2"], recalibrate=3)
    assert result["evaluated_on"]["bn_recalibration"]["frames"] == 3
    assert "batch-norm re-estimated on 3 synthetic-train frames" in (tmp_path / "r" / "sensitivity.md").read_text()


def test_finetune_trains_each_pruned_copy_and_keeps_its_k(teacher, tmp_path, monkeypatch):
    """--finetune-steps: every figure is a fine-tuned copy -- the pruned layer at exactly K a
    filter, the other weights trained away from the teacher's -- scored against one control
    (the teacher fine-tuned the same way, nothing pruned); the teacher itself untouched."""
    from sentei.training import train

    original = {n: c.weight.detach().clone() for n, c in
                train.build_from_checkpoint(train.load_checkpoint(teacher)).convs()}
    seen = []
    real = train.evaluate

    def recording(net, split, *a, **kw):
        seen.append({n: c.weight.detach().clone() for n, c in net.convs()})
        return real(net, split, *a, **kw)

    monkeypatch.setattr(train, "evaluate", recording)
    result = _run(teacher, tmp_path / "ft", layers=["conv2", "conv3"], sparsities=(0.9,), finetune_steps=2,
                  finetune_crop=(16, 24), cache_path=tmp_path / "cache.json")
    assert len(seen) == 1 + 1 + 2  # the teacher as trained, the fine-tuned control, two layers at one sparsity
    assert all(torch.equal(seen[0][n], w) for n, w in original.items())
    control = seen[1]
    assert all(not torch.equal(control[n], w) for n, w in original.items())  # trained, nothing pruned
    assert all(bool((control[n] != 0).all()) for n in original)
    for call, row in zip(seen[2:], result["rows"]):
        w = call[row["layer"]]
        assert ((w.reshape(w.shape[0], -1) != 0).sum(1) == filter_k(row["fan_in"], 0.9)).all()
        assert all(not torch.equal(call[n], original[n]) for n in original if n != row["layer"])
        assert row["control_miou"] == result["finetuned_control"]["miou"]
        assert row["drop"] == pytest.approx(row["control_miou"] - row["miou"])
    tuned = result["evaluated_on"]["finetune"]
    assert tuned["steps"] == 2 and tuned["crop"] == [16, 24] and result["evaluated_on"]["bn_recalibration"] is None
    assert "fine-tuned 2 steps of 8 random 16x24 crops" in (tmp_path / "ft" / "sensitivity.md").read_text()
    # cached apart from the inference-only figures: a rerun evaluates nothing, an inference-only run everything
    seen.clear()
    again = _run(teacher, tmp_path / "ft2", layers=["conv2", "conv3"], sparsities=(0.9,), finetune_steps=2,
                 finetune_crop=(16, 24), cache_path=tmp_path / "cache.json")
    assert seen == [] and again["rows"] == result["rows"]
    _run(teacher, tmp_path / "plain", layers=["conv2", "conv3"], sparsities=(0.9,), cache_path=tmp_path / "cache.json")
    assert len(seen) == 2


def test_the_finetunes_seed_draws_other_batches(teacher, tmp_path):
    """--seed: the fine-tune's batches and crops, and so its figures, under their own cache keys."""
    common = dict(layers=["conv3"], sparsities=(0.9,), finetune_steps=2, finetune_crop=(16, 24),
                  cache_path=tmp_path / "cache.json")
    a = _run(teacher, tmp_path / "a", **common)
    b = _run(teacher, tmp_path / "b", seed=1, **common)
    assert b["cache"]["hits"] == 1 and b["cache"]["evaluated"] == 2  # the dense teacher only is shared
    assert (a["evaluated_on"]["finetune"]["seed"], b["evaluated_on"]["finetune"]["seed"]) == (0, 1)
    assert _run(teacher, tmp_path / "c", seed=1, **common)["rows"] == b["rows"]
