"""Segmentation metrics by the CamVid protocol: a confusion matrix summed over the split.

IoU of class c = TP / (TP + FP + FN) with every count summed over all frames of the split
(not averaged per frame); void pixels (label >= num_classes, 11 = Unlabelled in CamVid) are
ignored; mIoU is the mean over the classes. A class absent from both prediction and ground
truth of the whole split has no IoU (NaN) and is left out of the mean.
"""
from __future__ import annotations

import numpy as np

from sentei.errors import SenteiError


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts, rows = ground truth, columns = prediction."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise SenteiError(f"prediction has {pred.size} pixels but the label map {gt.size}")
    keep = (gt >= 0) & (gt < num_classes)
    if np.any((pred[keep] < 0) | (pred[keep] >= num_classes)):
        raise SenteiError("prediction holds a class index outside the model's classes")
    return np.bincount(gt[keep] * num_classes + pred[keep],
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix (NaN where the class never occurs)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes that occur."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    """Fraction of non-void pixels labelled correctly."""
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")
