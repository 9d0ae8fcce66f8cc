"""Depth in metres."""
import logging
import math

import numpy as np
import torch

from .base import DENSE_TASK_REGISTRY, PositiveMapTask, divide

logger = logging.getLogger(__name__)


@DENSE_TASK_REGISTRY.register()
class DepthTask(PositiveMapTask):
    """Depth (metres): float (1, H, W) targets, 0 = invalid; L1 loss. Zooming an image by s makes
    the scene look s times closer, so its depth is divided by s.

    Metrics, over the pixels whose ground truth g is finite and > 0: ``abs_err``, ``rel_err`` (see
    :class:`PositiveMapTask`), ``rmse``, ``log_rmse`` and ``delta<k>`` = % of pixels with
    max(p/g, g/p) < 1.25^k. A prediction p <= 0 has no log or ratio: it is left out of
    ``log_rmse`` (which averages over the valid pixels with p > 0; their number is logged) and
    fails every ``delta<k>``.
    """

    name = "depth"
    METRICS = {**PositiveMapTask.METRICS, "rmse": True, "log_rmse": True, "delta1": False,
               "delta2": False, "delta3": False}

    def transform(self, target, geometry):
        return super().transform(target, geometry) / np.float32(geometry.zoom)

    def new_sums(self):
        more = ("sq", "log_count", "log_sq", "delta1", "delta2", "delta3")
        return {**super().new_sums(), **dict.fromkeys(more, 0)}

    def image_sums(self, prediction, target, where):
        sums = super().image_sums(prediction, target, where)
        prediction, target = self.valid_pixels(prediction, target)
        positive = prediction > 0
        ratio = torch.where(positive, torch.maximum(prediction / target, target / prediction), math.inf)
        log_err = prediction[positive].log() - target[positive].log()
        sums.update(sq=(prediction - target).square().sum().item(), log_count=int(positive.sum()),
                    log_sq=log_err.square().sum().item())
        for k in (1, 2, 3):
            sums[f"delta{k}"] = int((ratio < 1.25 ** k).sum())
        return sums

    def metrics(self, sums):
        count = sums["count"]
        non_positive = count - sums["log_count"]
        if non_positive:
            logger.warning(f"depth: {non_positive} of {count} valid pixels have predictions <= 0; they "
                           "are left out of log_rmse and fail delta1-3")
        results = super().metrics(sums)
        results["rmse"] = math.sqrt(divide(sums["sq"], count))
        results["log_rmse"] = math.sqrt(divide(sums["log_sq"], sums["log_count"]))
        for k in (1, 2, 3):
            results[f"delta{k}"] = 100 * divide(sums[f"delta{k}"], count)
        return results
