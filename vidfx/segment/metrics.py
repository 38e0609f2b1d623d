"""Segmentation metrics: confusion matrix, per-class IoU, mean IoU (void ignored)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int | None = None) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    Pixels whose target is ``ignore`` (or outside 0..num_classes-1) are skipped.
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = (target >= 0) & (target < num_classes)
    if ignore is not None:
        keep &= target != ignore
    idx = target[keep] * num_classes + np.clip(pred[keep], 0, num_classes - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class = TP / (TP + FP + FN); NaN for a class absent from both
    prediction and ground truth."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean of the per-class IoUs, over classes that occur (NaNs skipped)."""
    return float(np.nanmean(iou_per_class(conf)))
