"""Broken data sets through `sentei eval` (and the split reader it shares with training): one
line naming the file and the fix, no metrics file written."""
import json

import numpy as np
import pytest
from PIL import Image

from sentei.errors import SenteiError
from sentei.host.data import camvid

from .conftest import H, W, assert_one_line_error, files_under, make_split, run_main


def _frame_without_label(root):
    return make_split(root, "val", {"a": 1}, frames=["a", "b"])


def _label_out_of_range(root):
    return make_split(root, "val", {"a": 1, "b": 40})


def _empty_split(root):
    return make_split(root, "val", {}, frames=[])


def _no_label_folder(root):
    (root / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "val" / "a.png")
    return root


def _rgb_label(root):
    make_split(root, "val", {}, frames=["a"])
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "valannot" / "a.png")
    return root


def _unreadable_label(root):
    make_split(root, "val", {}, frames=["a"])
    (root / "valannot" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def _unreadable_frame(root):
    make_split(root, "val", {"a": 0}, frames=[])
    (root / "val" / "a.png").write_text("not a frame")
    return root


BROKEN = {  # name -> (builder, fragment of the message)
    "frame-without-label": (_frame_without_label, "b.png has no label map"),
    "label-out-of-range": (_label_out_of_range, "label value 40 is outside the classes 0..10"),
    "empty-split": (_empty_split, "split val is empty"),
    "no-label-folder": (_no_label_folder, "label folder not found"),
    "rgb-label": (_rgb_label, "single-channel"),
    "unreadable-label": (_unreadable_label, "not a readable label map"),
    "unreadable-frame": (_unreadable_frame, "not a readable image"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_split_is_one_line_and_writes_no_metrics(name, tmp_path, capsys, model_file):
    build, fragment = BROKEN[name]
    root = build(tmp_path / "data")
    out = tmp_path / "out"
    status, stdout, err = run_main(["eval", "--model", model_file, "--data", root, "--split", "val",
                                    "--json", out / "metrics.json"], capsys)
    assert_one_line_error(status, err, fragment)
    assert files_under(out) == [] and "mIoU" not in stdout


def test_missing_root_and_wrong_split_name(tmp_path, capsys, model_file):
    status, _, err = run_main(["eval", "--model", model_file, "--data", tmp_path / "nowhere"], capsys)
    assert_one_line_error(status, err, "data root not found")
    root = make_split(tmp_path / "data", "val", {"a": 0})
    status, _, err = run_main(["eval", "--model", model_file, "--data", root, "--split", "tset"], capsys)
    assert_one_line_error(status, err, "split folder not found", "is --split right?")


def test_the_reader_refuses_before_reading_any_frame(tmp_path):
    """A frame without its label is found by listing, before the first frame is decoded."""
    root = _frame_without_label(tmp_path / "data")
    (root / "val" / "a.png").write_text("would fail to decode")  # never reached
    with pytest.raises(SenteiError, match="b.png has no label map"):
        camvid.list_split(root, "val")


def test_a_split_with_only_void_labels_is_refused_not_scored_nan(tmp_path, capsys, model_file):
    root = make_split(tmp_path / "data", "val", {"a": camvid.VOID, "b": camvid.VOID})
    status, stdout, err = run_main(["eval", "--model", model_file, "--data", root, "--json",
                                    tmp_path / "m.json"], capsys)
    assert_one_line_error(status, err, "every pixel of its 2 label map(s) is void")
    assert not (tmp_path / "m.json").exists()


def test_metrics_json_is_strict_json_even_for_classes_never_seen(tmp_path, capsys, model_file):
    root = make_split(tmp_path / "data", "val", {"a": 3, "b": camvid.VOID})
    status, stdout, err = run_main(["eval", "--model", model_file, "--data", root, "--json",
                                    tmp_path / "m.json"], capsys)
    assert status == 0, err

    def refuse(constant):
        raise AssertionError(f"{constant} in the metrics JSON")

    metrics = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert metrics["frames"] == 2 and metrics["iou"]["Sky"] is None  # a class absent from gt and pred


def test_write_json_turns_nan_into_null(tmp_path):
    from sentei.atomic_write import write_json

    write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.5, float("inf")], "c": np.float64("-inf")})
    assert (tmp_path / "r.json").read_text().split() == ['{', '"a":', 'null,', '"b":', '[', '1.5,', 'null',
                                                         '],', '"c":', 'null', '}']
