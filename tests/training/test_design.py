"""sentei design: the hardware model of a hypothetical K per layer, the NSGA-II search (seeded,
feasible, non-dominated) and the compression config it writes."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei import cli  # noqa: E402
from sentei.errors import SenteiError  # noqa: E402
from sentei.overlay import perf  # noqa: E402
from sentei.overlay.report import perf_report  # noqa: E402
from sentei.training import design  # noqa: E402
from sentei.training.commands import DEFAULT_COMPRESS_CONFIG, DEFAULT_TEACHER_CONFIG  # noqa: E402
from sentei.training.config import check_config, load_config  # noqa: E402
from sentei.training.pruning import filter_k  # noqa: E402

GRID = (0.5, 0.8, 0.9, 0.95)
# a made-up sensitivity table (no evaluation): every layer loses more the sparser it is, some more than others
WEIGHT = {"conv1": 8.0, "conv2": 2.0, "conv3": 1.0, "conv4": 0.7, "conv5": 0.5, "conv6": 0.4, "conv7": 0.6,
          "classifier": 3.0}


def fake_sensitivity() -> dict:
    model = load_config(DEFAULT_TEACHER_CONFIG)["model"]
    rows = [{"layer": n, "fan_in": None, "sparsity": s, "k": None, "miou": 0.66 - w * s ** 4 / 100}
            for n, w in WEIGHT.items() for s in GRID]
    return {"format": "sentei-sensitivity", "teacher": "teacher", "model": model, "dense": {"miou": 0.66},
            "rows": rows, "evaluated_on": {"split": "val", "frames": 3, "size": [360, 480]}}


@pytest.fixture(scope="module")
def space():
    return design.Space(fake_sensitivity())


def test_hardware_model_prices_like_the_exported_model_file():
    """The K-only stand-in of a design prices exactly like the model file compress exported."""
    from sentei.host.modelfile import bundled

    shipped = bundled.load_model("sentei-camvid-fw90")
    stand_in = design.hardware_model(load_config(DEFAULT_TEACHER_CONFIG)["model"],
                                     {layer.name: layer.k_nonzero for layer in shipped.layers})
    assert [(a.in_channels, a.out_channels, a.kernel, a.stride, a.dilation, a.padding, a.k_nonzero, a.act,
             a.out_bits, a.weight_bits) for a in stand_in.layers] == \
        [(b.in_channels, b.out_channels, b.kernel, b.stride, b.dilation, b.padding, b.k_nonzero, b.act,
          b.out_bits, b.weight_bits) for b in shipped.layers]
    assert stand_in.shapes() == shipped.shapes() and stand_in.input.bits == shipped.input.bits
    # the clocks depend on shapes and K only: the shipped plans, with copies for windows, alike
    plans = [dataclasses.replace(p, shared=False) for p in perf.allocate(shipped, "zcu104")]
    assert perf.pipeline_interval(stand_in, plans) == perf.pipeline_interval(shipped, plans)
    # where the weights lie sets a shared window's banks: the stand-in's K random positions per
    # filter (distinct, sorted, the same every time) are priced within 1 % of the trained ones
    assert all(len(set(row)) == len(row) and (np.diff(row.astype(np.int64)) > 0).all()
               for layer in stand_in.layers for row in layer.indices)
    again = design.hardware_model(load_config(DEFAULT_TEACHER_CONFIG)["model"],
                                  {layer.name: layer.k_nonzero for layer in shipped.layers})
    assert all((a.indices == b.indices).all() for a, b in zip(stand_in.layers, again.layers))

    def fps(model):
        return 200e6 / perf.pipeline_interval(model, perf.allocate(model, "zcu104"))

    assert fps(stand_in) == pytest.approx(fps(shipped), rel=0.01)


def test_the_base_config_design_is_the_shipped_model(space):
    from sentei.host.modelfile import bundled

    genes = design.config_genes(space, load_config(DEFAULT_COMPRESS_CONFIG)["compress"])
    shipped = bundled.load_model("sentei-camvid-fw90")
    assert space.ks(genes) == {layer.name: layer.k_nonzero for layer in shipped.layers}
    assert design.config_genes(space, {"scheme": "groupwise", "sparsity": 0.9}) is None
    assert design.config_genes(space, {"sparsity": 0.85}) is None  # off the grid


def test_predictor_is_the_sum_of_layer_drops(space):
    genes = tuple(range(len(space.searched)))[:len(space.searched)]
    genes = tuple(g % space.size for g in genes)
    expected = 0.66 - sum(WEIGHT[n] * space.options[g] ** 4 / 100 for n, g in zip(space.searched, genes))
    assert space.predicted(genes) == pytest.approx(expected)
    controlled = fake_sensitivity()  # with batch-norm re-estimation: drops against each layer's control
    for r in controlled["rows"]:
        r["control_miou"] = 0.65
    other = design.Space(controlled)
    assert other.predicted(genes) == pytest.approx(0.66 - sum(max(0.0, 0.65 - 0.66 + WEIGHT[n] * space.options[g] ** 4
                                                                  / 100) * (g > 0)
                                                              for n, g in zip(space.searched, genes)))
    ks = space.ks(genes)
    for n, g in zip(space.searched, genes):
        assert ks[n] == (space.fan_in[n] if g == 0 else filter_k(space.fan_in[n], space.options[g]))


def _search(space, seed, fps=400.0, board="zcu104"):
    hw = design.Hardware(space, board, None)
    return design.search(space, hw, fps, population=12, generations=4, seed=seed), hw


@pytest.fixture(scope="module")
def searched(space):
    """One search on ZCU104 at 400 frames/s, seed 0 (shared by the tests that only read it)."""
    return _search(space, seed=0)


def test_search_is_reproducible(space, searched):
    a, _ = searched
    b, _ = _search(space, seed=0)  # its own hardware model and generator
    assert list(a["evaluated"]) == list(b["evaluated"])  # the same designs, in the same order
    assert [d["genes"] for d in a["front"]] == [d["genes"] for d in b["front"]]


def test_front_is_feasible_and_non_dominated(space, searched):
    result, hw = searched
    front, feasible = result["front"], result["feasible"]
    assert len(front) >= 2
    for d in front:
        assert d["fps"] >= 400 and d["violation"] == 0
        report = perf_report(hw.model(space.ks(d["genes"])), "zcu104", 200.0)
        assert report["resources"]["within_ceilings"]
        assert report["frames_per_s"] == pytest.approx(d["fps"])
        assert not any(o["miou"] >= d["miou"] and o["fps"] >= d["fps"] and (o["miou"], o["fps"]) != (d["miou"], d["fps"])
                       for o in feasible)
    # the uniform designs start the search: the front is at least as good as the best uniform one
    uniform = [result["evaluated"][tuple([i] * len(space.searched))] for i in range(space.size)]
    best = max((u for u in uniform if u["violation"] == 0), key=lambda u: u["miou"])
    assert max(d["miou"] for d in front) >= best["miou"]


def test_written_config_gives_the_chosen_k(space, tmp_path):
    from sentei.training.models import FCN
    from sentei.training.pruning import nonzeros_per_filter
    from sentei.training.train import make_sparsifier

    (tmp_path / "sens.json").write_text(json.dumps(fake_sensitivity()))
    summary = design.run(tmp_path / "sens.json", "zcu104", 400, tmp_path / "d", base_config=DEFAULT_COMPRESS_CONFIG,
                         population=12, generations=3, seed=1, dense=("classifier",), log=lambda *_: None)
    for name in ("design.yaml", "design.md", "design.png", "design.json"):
        assert (tmp_path / "d" / name).stat().st_size > 0
    cfg = load_config(tmp_path / "d" / "design.yaml")
    check_config(cfg, "compress", "design.yaml")  # the compress command's own check
    comp = cfg["compress"]
    assert comp["scheme"] == "filterwise" and 0 < comp["sparsity"] < 1
    chosen = summary["chosen"]["k"]
    assert chosen["classifier"] == 128 and len(chosen) == 8  # kept dense (--dense): K = Cin*k*k
    fcn = FCN(load_config(DEFAULT_TEACHER_CONFIG)["model"])
    sparsifier = make_sparsifier(comp).prepare(fcn)
    sparsifier.step(1.0)  # what sentei compress ends its pruning at
    got = {n: sorted({int(c) for c in nonzeros_per_filter(conv.weight)}) for n, conv in fcn.convs()}
    assert got == {n: [k] for n, k in chosen.items()}
    assert summary["chosen"]["frames_per_s"] >= 400 and summary["chosen_report"]["within_ceilings"]
    ref = summary["base_config_design"]  # camvid-fw90.yaml itself: 0.9 in conv3-conv7
    from sentei.host.modelfile import bundled

    shipped = bundled.load_model("sentei-camvid-fw90")  # priced like the model file it was exported as
    assert ref["k"] == {layer.name: layer.k_nonzero for layer in shipped.layers}
    # its stand-in's weights lie elsewhere than the trained ones (hardware_model): within 1 %
    assert ref["frames_per_s"] == pytest.approx(200e6 / perf.pipeline_interval(shipped, perf.allocate(shipped, "zcu104")),
                                                rel=0.01)


def test_budget_and_infeasible_targets_are_one_line(space, searched, tmp_path, capsys):
    result, _ = searched
    front = result["front"]
    fastest = design.choose(front, budget_miou=100.0, base=space.base)
    assert fastest["fps"] == max(d["fps"] for d in front)
    assert design.choose(front, None, space.base)["miou"] == max(d["miou"] for d in front)
    with pytest.raises(SenteiError, match="--budget-miou 0: every design that reaches the frame rate loses more"):
        design.choose([d for d in front if d["miou"] < space.base], 0.0, space.base)
    (tmp_path / "sens.json").write_text(json.dumps(fake_sensitivity()))
    with pytest.raises(SenteiError, match="no design reaches 100000 frames/s on zcu104"):
        design.run(tmp_path / "sens.json", "zcu104", 1e5, tmp_path / "d", base_config=DEFAULT_COMPRESS_CONFIG,
                   population=6, generations=1, log=lambda *_: None)
    assert not (tmp_path / "d" / "design.yaml").exists()
    for argv, message in ((["--fps", "0"], "--fps 0: a frame rate must be above 0"),
                          (["--fps", "400", "--board", "nope"], "unknown board 'nope'"),
                          (["--fps", "400", "--dense", "conv9"], "--dense: no layer 'conv9'"),
                          (["--fps", "400", "--budget-miou", "-1"], "--budget-miou -1: a loss in mIoU points")):
        status = cli.main(["design", "--board", "zcu104", "--sensitivity", str(tmp_path / "sens.json"),
                           "--out", str(tmp_path / "e"), *argv])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and message in err, err


def test_designs_that_do_not_fit_are_graded_by_how_far_they_overshoot(space):
    """On a PYNQ-Z2 that keeps every line-buffer row on chip (its board file without
    ``ddr_rows``) the dense network overshoots more than uniform 90 % (BRAM18 of both), which
    does not fit either, and both rank behind uniform 95 %, which fits: the violation is each
    one's cheapest design's largest used / limit."""
    import dataclasses

    board = perf.load_board("pynqz2")
    board = dataclasses.replace(board, spec={**board.spec, "ddr_rows": False})
    hardware = design.Hardware(space, board, None)
    n = len(space.searched)
    dense, s90, s95 = (tuple([space.options.index(s)] * n) for s in (0.0, 0.9, 0.95))
    hw = {g: hardware(g) for g in (dense, s90, s95)}
    assert not hw[dense]["fits"] and not hw[s90]["fits"] and hw[s95]["fits"]
    with pytest.raises(perf.DoesNotFit) as exc:
        perf.allocate(hardware.model(space.ks(s90)), board)
    used, limits = exc.value.used, exc.value.limits
    assert hw[s90]["overshoot"] == max(used[k] / limits[k] for k in limits if limits[k]) > 1
    assert "BRAM18 at its cheapest" in str(exc.value) and used["bram18"] / limits["bram18"] == hw[s90]["overshoot"]
    v = {g: design.violation(hw[g], 30.0) for g in hw}
    assert v[dense] > v[s90] > 1.0 >= v[s95]


def test_a_layers_drops_are_fitted_non_decreasing_in_the_sparsity():
    """Noise that makes a sparser layer look better (the masks are nested: it is not) is pooled
    away in least squares; a table that is already monotone is used as measured."""
    assert design.monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert design.monotone([0.5, 0.2, 0.2, 3.0]) == pytest.approx([0.3, 0.3, 0.3, 3.0])
    assert design.monotone([0.1, 0.4, 0.9]) == [0.1, 0.4, 0.9]
    noisy = fake_sensitivity()
    for r in noisy["rows"]:  # conv3 at 90 % measured above conv3 at 80 %
        if r["layer"] == "conv3" and r["sparsity"] in (0.8, 0.9):
            r["miou"] = 0.66 - (0.004 if r["sparsity"] == 0.8 else 0.002)
    space = design.Space(noisy)
    drops = space.drop["conv3"]
    assert drops == sorted(drops) and drops[2] == drops[3] == pytest.approx(0.003)
    assert space.drop["conv4"] == pytest.approx([0.0] + [WEIGHT["conv4"] * s ** 4 / 100 for s in GRID])


def _tuned(seed: int, shift: dict) -> dict:
    """The made-up table as if fine-tuned with ``seed``: each layer's drops moved by ``shift[layer]``."""
    sens = fake_sensitivity()
    sens["evaluated_on"]["finetune"] = {"steps": 60, "crop": [176, 240], "seed": seed}
    for r in sens["rows"]:
        r["miou"] -= shift.get(r["layer"], 0.0)
    return sens


def test_tables_of_several_seeds_are_averaged_drop_by_drop(tmp_path, capsys):
    """Two fine-tuned tables of other seeds: every drop is their mean (before the monotone fit,
    which leaves these monotone ones alone); the design records both; a table of another
    measurement, an inference-only one or the same seed twice is refused in one line."""
    a, b = _tuned(0, {"conv3": 0.004}), _tuned(1, {"conv3": -0.002, "conv5": 0.002})
    mean = design.Space([a, b])
    one = design.Space(fake_sensitivity())
    assert mean.tables == 2
    assert mean.drop["conv3"] == pytest.approx([0.0] + [d + 0.001 for d in one.drop["conv3"][1:]])
    assert mean.drop["conv5"] == pytest.approx([0.0] + [d + 0.001 for d in one.drop["conv5"][1:]])
    assert mean.drop["conv4"] == pytest.approx(one.drop["conv4"])
    paths = []
    for n, table in enumerate((a, b)):
        paths.append(tmp_path / f"s{n}.json")
        paths[-1].write_text(json.dumps(table))
    summary = design.run(paths, "zcu104", 400, tmp_path / "d", base_config=DEFAULT_COMPRESS_CONFIG,
                         population=6, generations=1, log=lambda *_: None)
    assert summary["sensitivity"] == [str(p) for p in paths] and summary["sensitivity_seeds"] == [0, 1]
    assert "mean of 2 tables" in (tmp_path / "d" / "design.yaml").read_text()
    other = _tuned(1, {})
    other["evaluated_on"]["frames"] = 5
    inference = fake_sensitivity()
    for bad, message in ((other, "its evaluated on differ from"), (_tuned(0, {}), "fine-tune seed 0 given twice"),
                         (inference, "an inference-only table gives the same figures")):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        status = cli.main(["design", "--board", "zcu104", "--fps", "400", "--sensitivity", str(paths[0]),
                           "--sensitivity", str(tmp_path / "bad.json"), "--out", str(tmp_path / "e")])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "e").exists()
