"""sentei.overlay.commands: a model too big for a board names the bundled models that fit it.

Since the dilated layers' rows may go to DDR every bundled model fits PYNQ-Z2 itself; with a
quarter of its BRAM18 kept free (``--ceiling bram18=0.75``) only the model made for it does."""
from sentei import cli
from sentei.host.modelfile import bundled
from sentei.host.modelfile.schema import save
from sentei.host.modelfile.synthetic import LayerSpec, random_model
from sentei.overlay import perf
from sentei.overlay.commands import models_that_fit


TIGHT = {"bram18": 0.75}


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def test_models_that_fit_are_those_the_allocator_fits_most_accurate_first():
    on_kv260 = models_that_fit("kv260")  # every bundled model: the order is the mIoU's
    accuracy = {name: e["metrics"]["val_miou"] for name, e in bundled.bundled_models().items()}
    assert len(on_kv260) >= 3 and [accuracy[n] for n in on_kv260] == sorted((accuracy[n] for n in on_kv260), reverse=True)
    names = models_that_fit("pynqz2", TIGHT)
    fits = []
    for name, entry in bundled.bundled_models().items():
        if entry["kind"] != "model-file":
            continue
        try:
            perf.allocate(bundled.load_model(name), "pynqz2", ceilings=TIGHT)
        except perf.DoesNotFit:
            continue
        fits.append((entry["metrics"]["val_miou"], name))
    assert names == [name for _, name in sorted(fits, reverse=True)]
    assert "sentei-design-pynqz2" in names and bundled.default_model_name() not in names
    assert models_that_fit("pynqz2", TIGHT, skip="sentei-design-pynqz2") == [n for n in names if n != "sentei-design-pynqz2"]
    assert bundled.default_model_name() in models_that_fit("pynqz2")  # its rows in DDR: it fits the whole board


def test_perf_of_the_default_model_on_pynqz2_names_the_model_made_for_it(capsys):
    err = _error(capsys, ["perf", "--board", "pynqz2", "--ceiling", "bram18=0.75"])
    assert "at its cheapest" in err and "pynqz2" in err
    assert err.rstrip().endswith("bundled models that fit pynqz2: --model sentei-design-pynqz2")


def test_codegen_for_a_board_too_small_names_them_and_writes_nothing(capsys, tmp_path):
    specs = (LayerSpec(64, stride=2, density=0.1), LayerSpec(512, density=0.1), LayerSpec(512, density=0.1))
    wide = tmp_path / "wide.sentei"  # 512-channel rows at 180x240: far more BRAM18 than a PYNQ-Z2 has
    save(random_model(seed=0, height=360, width=480, specs=specs, name="too-wide"), wide)
    out = tmp_path / "hls"
    err = _error(capsys, ["overlay", "codegen", "--model", str(wide), "--board", "pynqz2", "--fifo-depths", "rule",
                          "--out", str(out)])
    assert "too-wide needs" in err and "--model sentei-design-pynqz2" in err
    assert not out.exists()


def test_no_model_fits_then_the_message_is_the_allocators_alone(capsys):
    err = _error(capsys, ["perf", "--board", "pynqz2", "--ceiling", "bram18=0.1"])
    assert "at its cheapest" in err and "bundled models" not in err
