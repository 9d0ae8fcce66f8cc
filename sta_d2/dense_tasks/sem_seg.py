"""Semantic segmentation: a class per pixel."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import DENSE_TASK_REGISTRY, DenseTask, divide, fail_file

# The ignored label of decoded targets, as detectron2's datasets have it.
IGNORE_LABEL = 255


def integer_labels(path, labels: np.ndarray, low: int, high: int) -> np.ndarray:
    """``labels`` as int64 after checking it is 2-D and holds integers in [low, high]."""
    if labels.ndim != 2 or labels.dtype.kind not in "iuf":
        fail_file(path, f"label map of dtype {labels.dtype} and shape {labels.shape}; expected "
                        "integers (H, W)")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        fail_file(path, "label map holds non-integer values")
    labels = labels.astype(np.int64)
    bad = labels[(labels < low) | (labels > high)]
    if bad.size:
        fail_file(path, f"label value {bad[0]} outside {low}..{high}")
    return labels


@DENSE_TASK_REGISTRY.register()
class SemSegTask(DenseTask):
    """Semantic segmentation: int64 (H, W) targets, classes 0..C-1 and the ignored label; the head
    outputs C class scores; cross-entropy over the pixels not ignored.

    Metrics: ``mIoU`` from one confusion matrix over the split, averaging the IoU of every class
    that occurs in the ground truth or the prediction of the split (a class absent from both is
    left out; its "IoU-<class>" is NaN), and ``pixAcc`` = correct / non-ignored pixels, both in
    percent; with ``class_names``, also "IoU-<name>" per class.

    Args:
        num_classes (int): C; the model and the evaluator need it, decoding only checks labels
            against it.
        class_names (list[str]): names of the classes, for the per-class IoUs.
        ignore_value (int): the ignored label.
    """

    name = "sem_seg"
    CONTEXT = ("num_classes", "class_names", "ignore_value")
    METRICS = {"mIoU": False, "pixAcc": False}
    REPORT_COLUMNS = ("mIoU", "pixAcc")

    def __init__(self, num_classes=None, class_names=None, ignore_value=IGNORE_LABEL):
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None
        self.invalid_value = ignore_value

    @property
    def channels(self):
        return self.num_classes

    def decode(self, values, path):
        """mtan's label maps: integers 0..C-1 (0..254 without C), -1 = ignored."""
        high = self.num_classes - 1 if self.num_classes else IGNORE_LABEL - 1
        labels = integer_labels(path, values, -1, high)
        labels[labels == -1] = self.invalid_value
        return labels

    def to_tensor(self, target):
        return torch.from_numpy(target).long()

    def valid(self, target):
        return target != self.invalid_value

    def pixel_losses(self, prediction, target):
        return F.cross_entropy(prediction, target.clamp_min(0) * self.valid(target), reduction="none")

    def prediction(self, output):
        """Class probabilities."""
        return output.softmax(dim=1)

    def inference_output(self, output):
        """Class scores (logits), as detectron2's semantic segmentation models return them."""
        return output

    def joint_target(self, target):
        """One-hot classes."""
        return F.one_hot(target.clamp_min(0) * self.valid(target), self.num_classes).permute(0, 3, 1, 2)

    def metric_names(self):
        return list(self.METRICS) + [f"IoU-{name}" for name in self.class_names or ()]

    def as_label(self, prediction, where):
        """The class of highest score of (C, H, W) logits."""
        if prediction.dim() != 3 or prediction.shape[0] != self.num_classes:
            raise ValueError(f"{where}: prediction of shape {tuple(prediction.shape)} is not "
                             f"({self.num_classes}, H, W) logits")
        return prediction.argmax(dim=0)

    def new_sums(self):
        if not self.num_classes:
            raise ValueError("sem_seg needs the number of classes (num_classes, or class_names such "
                             "as a dataset's metadata 'stuff_classes')")
        return {"confusion": np.zeros((self.num_classes,) * 2, dtype=np.int64)}

    def image_sums(self, prediction, target, where):
        n = self.num_classes
        valid = self.valid(target)
        target, prediction = target[valid].long(), prediction[valid]
        bad = (target < 0) | (target >= n)
        if bad.any():
            raise ValueError(f"{where}: label {int(target[bad][0])} is neither in [0, {n}) nor the "
                             f"ignore label {self.invalid_value}")
        confusion = torch.bincount(target * n + prediction, minlength=n * n).reshape(n, n)
        return {"confusion": confusion.numpy()}

    def metrics(self, sums):
        confusion = sums["confusion"].astype(np.float64)
        tp = np.diag(confusion)
        union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
        present = union > 0
        iou = np.full(self.num_classes, math.nan)
        iou[present] = tp[present] / union[present]
        results = {
            "mIoU": 100 * float(iou[present].mean()) if present.any() else math.nan,
            "pixAcc": 100 * divide(tp.sum(), confusion.sum()),
        }
        for name, value in zip(self.class_names or (), iou):
            results[f"IoU-{name}"] = 100 * float(value)
        return results
