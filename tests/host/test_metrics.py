"""mIoU by the CamVid protocol against hand-computed examples."""
import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.data import metrics


def test_hand_computed_miou_with_void():
    gt = np.array([[0, 0, 1, 1], [2, 2, 11, 11]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    conf = metrics.confusion(pred, gt, 3)
    # void (11) ignored; class 0: TP 1, FP 1 (gt 2 -> 0), FN 1 (gt 0 -> 1) => 1/3
    # class 1: TP 2, FP 1, FN 0 => 2/3; class 2: TP 1, FP 0, FN 1 => 1/2
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics.iou_per_class(conf) == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert metrics.miou(conf) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert metrics.pixel_accuracy(conf) == pytest.approx(4 / 6)


def test_split_sums_before_dividing():
    """Intersections and unions are summed over the split, not averaged per frame."""
    a = metrics.confusion(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
    b = metrics.confusion(np.array([1]), np.array([1]), 2)
    total = a + b
    # class 0: 3 / 4, class 1: 1 / 2 -> 0.625; per-frame averaging would give a different number
    assert metrics.miou(total) == pytest.approx(0.625)
    assert metrics.miou(total) != pytest.approx((metrics.miou(a) + metrics.miou(b)) / 2)


def test_absent_class_is_left_out():
    conf = metrics.confusion(np.array([0, 1]), np.array([0, 1]), 3)
    assert np.isnan(metrics.iou_per_class(conf)[2])
    assert metrics.miou(conf) == 1.0


def test_bad_predictions_are_refused():
    with pytest.raises(SenteiError, match="pixels"):
        metrics.confusion(np.zeros(3), np.zeros(4), 2)
    with pytest.raises(SenteiError, match="outside"):
        metrics.confusion(np.array([5]), np.array([0]), 2)
