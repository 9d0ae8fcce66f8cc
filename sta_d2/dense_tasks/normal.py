"""Surface normals."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import DENSE_TASK_REGISTRY, DenseTask, divide, fail_file

THRESHOLDS = (11.25, 22.5, 30.0)
# Angles are binned at 1/ANGLE_BINS_PER_DEGREE degree to find the median of the split.
ANGLE_BINS_PER_DEGREE = 1000
_NUM_ANGLE_BINS = 180 * ANGLE_BINS_PER_DEGREE


@DENSE_TASK_REGISTRY.register()
class NormalTask(DenseTask):
    """Surface normals: float (3, H, W) unit vectors, all zero = invalid. The loss is 1 - cosine
    between the normalised prediction and the target; the prediction in label space is the
    normalised output. A horizontal flip negates the x component, a vertical one y.

    Metrics, over the pixels whose ground truth is finite and non-zero, from the angle in degrees
    between the directions of prediction and ground truth: ``mean``, ``median`` and
    ``within_<t>`` = % of pixels with angle < t. An all-zero prediction has no direction and
    counts as 90 degrees; a non-finite one makes ``mean`` and ``median`` NaN. ``mean`` and
    ``within_<t>`` are exact (float64); ``median`` is the median of the bin centres of a histogram
    of the split's angles with bins of 0.001 degree, within 0.0005 degree of the exact median.
    """

    name = "normal"
    METRICS = {"mean": True, "median": True, **{f"within_{t:g}": False for t in THRESHOLDS}}
    REPORT_COLUMNS = tuple(METRICS)
    channels = 3

    def decode(self, values, path):
        """Normals (H, W, 3) in [-1, 1], normalised. A pixel with a NaN or inf component is invalid
        as a whole (zeroing only that component would leave a wrong but valid-looking direction)."""
        if values.ndim != 3 or values.shape[2] != 3 or values.dtype.kind != "f":
            fail_file(path, f"normals of dtype {values.dtype} and shape {values.shape}; expected float "
                            "(H, W, 3)")
        normals = values.astype(np.float32)
        normals[~np.isfinite(normals).all(axis=2)] = 0
        if normals.size and np.abs(normals).max() > 1 + 1e-3:
            fail_file(path, f"normal components up to {np.abs(normals).max()}; expected [-1, 1]")
        norm = np.linalg.norm(normals, axis=2, keepdims=True)
        return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)

    def transform(self, target, geometry):
        signs = np.ones(3, dtype=np.float32)
        signs[0] = -1 if geometry.horizontal_flip else 1
        signs[1] = -1 if geometry.vertical_flip else 1
        return super().transform(target, geometry) * signs

    def valid(self, target):
        return target.abs().sum(dim=1) > 0

    def pixel_losses(self, prediction, target):
        return 1.0 - (F.normalize(prediction, dim=1) * target).sum(dim=1)

    def prediction(self, output):
        """Unit vectors."""
        return F.normalize(output, dim=1)

    def new_sums(self):
        return {**dict.fromkeys(("count", "sum", "non_finite"), 0),
                **{f"within_{t:g}": 0 for t in THRESHOLDS},
                "histogram": np.zeros(_NUM_ANGLE_BINS, dtype=np.int64)}

    def image_sums(self, prediction, target, where):
        if target.dim() != 3 or target.shape[0] != 3:
            raise ValueError(f"{where}: normals of shape {tuple(target.shape)} are not (3, H, W)")
        target, prediction = target.double(), prediction.double()
        valid = torch.isfinite(target).all(dim=0) & (target != 0).any(dim=0)
        target, prediction = target[:, valid], prediction[:, valid]
        # atan2(|p x g|, p . g) is the angle between the directions, accurate near 0 and 180
        cross = torch.linalg.cross(prediction, target, dim=0).norm(dim=0)
        angle = torch.rad2deg(torch.atan2(cross, (prediction * target).sum(dim=0)))
        angle[(prediction == 0).all(dim=0)] = 90.0
        finite = torch.isfinite(prediction).all(dim=0)
        angle[~finite] = math.nan
        bins = (angle[finite] * ANGLE_BINS_PER_DEGREE).long().clamp_(max=_NUM_ANGLE_BINS - 1)
        sums = {
            "count": angle.numel(),
            "sum": angle.sum().item(),
            "non_finite": int((~finite).sum()),
            "histogram": torch.bincount(bins, minlength=_NUM_ANGLE_BINS).numpy(),
        }
        for t in THRESHOLDS:
            sums[f"within_{t:g}"] = int((angle < t).sum())
        return sums

    def metrics(self, sums):
        count, histogram = sums["count"], sums["histogram"]
        results = {"mean": divide(sums["sum"], count), "median": math.nan}
        n = int(histogram.sum())
        if n and not sums["non_finite"]:
            # bins holding the (n-1)//2-th and n//2-th smallest angles (0-based)
            ends = np.cumsum(histogram)
            low, high = np.searchsorted(ends, [(n - 1) // 2 + 1, n // 2 + 1])
            results["median"] = float(low + high + 1) / 2 / ANGLE_BINS_PER_DEGREE
        for t in THRESHOLDS:
            results[f"within_{t:g}"] = 100 * divide(sums[f"within_{t:g}"], count)
        return results
