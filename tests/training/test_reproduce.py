"""training/reproduce.sh: every command line it runs is one the ``sentei`` parser takes, with the
recipe's options (the bundled models come from these lines)."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sentei.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "reproduce.sh"


def lines(tmp_path, *args, **env):
    """The ``sentei`` argument lists reproduce.sh runs, recorded by a stand-in command (one file a
    call: the table's calls run in parallel)."""
    calls_dir = tmp_path / "calls"
    shutil.rmtree(calls_dir, ignore_errors=True)
    calls_dir.mkdir()
    fake = tmp_path / "fake-sentei"
    fake.write_text(f'#!/bin/sh\nf=$(mktemp {shlex.quote(str(calls_dir))}/call.XXXXXX)\n'
                    f'for a in "$@"; do printf "%s\\037" "$a"; done > "$f"\n')
    fake.chmod(0o755)
    subprocess.run(["bash", str(SCRIPT), *args], check=True, capture_output=True, timeout=60, cwd=tmp_path,
                   env={"PATH": "/usr/bin:/bin", "SENTEI": str(fake), **env})
    calls = [f.read_text().split("\x1f")[:-1] for f in sorted(calls_dir.iterdir())]
    for argv in calls:
        build_parser().parse_args(argv)  # argparse exits (SystemExit) on an option it does not know
    return calls


def options(argv: list[str]) -> dict:
    return vars(build_parser().parse_args(argv))


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_teacher_and_shipped_lines(tmp_path):
    (teacher,) = lines(tmp_path, "teacher", "DATA", "OUT", "400", CONFIG="training/configs/camvid-fcn7w.yaml")
    t = options(teacher)
    assert (t["command"], t["epochs"], t["config"], t["out"]) == ("train", 400, "training/configs/camvid-fcn7w.yaml",
                                                                  "OUT/teacher")
    (shipped,) = lines(tmp_path, "shipped", "DATA", "OUT")
    s = options(shipped)
    assert (s["command"], s["scheme"], s["sparsity"], s["dense"], s["prune_epochs"], s["qat_epochs"], s["crop"]) == \
        ("compress", "filterwise", 0.9, "conv1,conv2,classifier", 500, 120, None)
    assert s["teacher"] == "OUT/teacher/teacher.pt" and s["distill"] is True


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_cpu_recipe_of_the_wide_pair(tmp_path):
    (teacher,) = lines(tmp_path, "teacher", "DATA", "OUT", "300", CONFIG="training/configs/camvid-fcn7w.yaml",
                       CROP="240x320", EXTRA="--device cpu")
    t = options(teacher)
    assert (t["crop"], t["epochs"], t["device"]) == ("240x320", 300, "cpu")
    (shipped,) = lines(tmp_path, "shipped", "DATA", "OUT", CROP="240x320", PRUNE_EPOCHS="140", QAT_EPOCHS="40",
                       EXTRA="--device cpu", RUN="fw90w")
    s = options(shipped)
    assert (s["crop"], s["prune_epochs"], s["qat_epochs"], s["device"], s["out"]) == \
        ("240x320", 140, 40, "cpu", "OUT/fw90w")


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_table_runs_ten_compressions(tmp_path):
    calls = lines(tmp_path, "table", "DATA", "OUT", "100")
    runs = sorted(options(c)["name"] for c in calls)
    assert runs == sorted(["fw90-kd", "fw90-nokd", "gw90-kd", "un90-kd", "fw95-kd", "fw95-nokd", "gw95-kd",
                           "un95-kd", "nm24-kd", "dense-q8"])
    assert {(options(c)["prune_epochs"], options(c)["qat_epochs"]) for c in calls} == {(77, 23)}


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_controls_are_kangs_layout_and_per_layer_unstructured(tmp_path):
    calls = {options(c)["name"]: options(c) for c in lines(tmp_path, "controls", "DATA", "OUT")}
    assert sorted(calls) == ["gwk90-kd", "unl90-kd", "unl95-kd"]
    # G = 32 divides every pruned layer's input channels (32, 64, 128) and keeps 3 of 32 at 90 %
    assert (calls["gwk90-kd"]["group_layout"], calls["gwk90-kd"]["group_size"]) == ("channels", 32)
    assert (calls["unl95-kd"]["ranking"], calls["unl95-kd"]["sparsity"]) == ("layer", 0.95)


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_designs_runs_train_the_committed_designs_beside_uniform_and_the_other_schemes(tmp_path):
    calls = {options(c)["name"]: options(c) for c in lines(tmp_path, "designs", "DATA", "OUT", "60",
                                                            EXTRA="--device cpu --size 120x160")}
    assert sorted(calls) == sorted(["fw95", "design-pynqz2-42fps", "fw90", "design-zcu104-500fps", "pattern90",
                                    "smallworld90"])
    assert {(c["prune_epochs"], c["qat_epochs"], c["size"], c["seed"]) for c in calls.values()} == {(46, 14, "120x160", 0)}
    assert {c["teacher"] for c in calls.values()} == {"OUT/teacher/teacher.pt"}
    for name in ("design-pynqz2-42fps", "design-zcu104-500fps"):
        config = Path(calls[name]["config"])
        assert config.is_file() and config.parent.name == name and calls[name]["scheme"] is None
    assert (calls["fw95"]["scheme"], calls["fw95"]["sparsity"], calls["fw95"]["dense"]) == \
        ("filterwise", 0.95, "conv1,classifier")
    assert (calls["pattern90"]["scheme"], calls["smallworld90"]["scheme"]) == ("pattern", "smallworld")
    assert [options(c)["name"] for c in lines(tmp_path, "designs", "DATA", "OUT", RUNS="fw90")] == ["fw90"]


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_a_failed_run_of_the_table_fails_the_script(tmp_path):
    """The runs go in the background: one that fails must still fail the script, named."""
    fake = tmp_path / "fake-sentei"
    fake.write_text('#!/bin/sh\ncase "$*" in *"--name un95-kd"*) exit 3 ;; esac\nexit 0\n')
    fake.chmod(0o755)
    done = subprocess.run(["bash", str(SCRIPT), "table", "DATA", "OUT"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "SENTEI": str(fake)})
    assert done.returncode == 1
    assert done.stderr.strip() == "run un95-kd failed: see OUT/table/un95-kd.out"


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_full_size_pair_takes_the_bundled_teacher_and_its_own_epochs(tmp_path):
    calls = {options(c)["name"]: options(c) for c in lines(
        tmp_path, "designs", "DATA", "OUT", RUNS="fw90 design-ft-zcu104-450fps", TEACHER="teacher", PRUNE_EPOCHS="28",
        QAT_EPOCHS="8", EXTRA="--device cpu --eval-every 4")}
    assert sorted(calls) == ["design-ft-zcu104-450fps", "fw90"]
    assert {(c["teacher"], c["prune_epochs"], c["qat_epochs"], c["eval_every"], c["seed"]) for c in calls.values()} \
        == {("teacher", 28, 8, 4, 0)}
    assert Path(calls["design-ft-zcu104-450fps"]["config"]).parent.name == "design-ft-zcu104-450fps"
